"""Review: the decision on this audit, after the evidence (the form in the review app)."""

from __future__ import annotations

from typing import Any

from imaudit.audits.verdict import REVIEW_LABELS
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


@register
class Review(Section):
    name = "review"
    title = "Review"
    nav = "Review"
    order = 900
    intro = ("Record the decision once you have read the evidence above. Approve releases the model, reject "
             "blocks it, needs-work sends it back with your comment.")
    template = """{% import "_macros.html" as m %}
{% if v.recorded %}<p class="ok-box" role="status" id="review-confirmation">Decision recorded: <b>{{ v.recorded.label }}</b>{% if v.recorded.reviewer %} by {{ v.recorded.reviewer }}{% endif %}{% if v.recorded.when %} at {{ v.recorded.when }} UTC{% endif %}. It shows in the banner at the top and on the index.</p>{% endif %}
{% if v.history %}<div class="scroll"><table><thead><tr><th>when (UTC)</th><th>decision</th><th>reviewer</th><th>comment</th></tr></thead><tbody>
{% for d in v.history %}<tr class="decision"><td class="small">{{ d.when }}</td><td>{{ m.badge(d.label, d.decision) }}</td><td>{{ d.reviewer }}</td><td>{{ d.comment }}</td></tr>{% endfor %}
</tbody></table></div>{% elif not v.app %}<p class="muted">No decision recorded in this report.</p>{% else %}<p class="muted">No decision recorded yet.</p>{% endif %}
{% if v.app %}
  {% if v.message %}<p class="error-box" role="alert" id="review-error">{{ v.message }}</p>{% endif %}
  <form class="review" method="post" action="{{ v.action }}">
    <label for="decision">Decision</label>
    <select id="decision" name="decision" required><option value="">choose…</option>{% for d, label in v.decisions %}<option value="{{ d }}"{% if v.form.decision == d %} selected{% endif %}>{{ label }}</option>{% endfor %}</select>
    <label for="reviewer">Your name</label>
    <input id="reviewer" name="reviewer" type="text" maxlength="100" required autocomplete="name" value="{{ v.form.reviewer }}">
    <label for="comment">Comment</label>
    <textarea id="comment" name="comment" maxlength="5000" placeholder="What you checked and why you decided so">{{ v.form.comment }}</textarea>
    <span></span><button type="submit">Record decision</button>
  </form>
{% else %}
  <p class="small">Decisions are recorded in the review app: <code>imaudit serve</code>, then open this audit there.</p>
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any]:
        app = page.app
        history = []
        if app is not None:
            for d in app.get("history") or []:
                decision = str(getattr(d, "decision", ""))
                history.append({"decision": decision, "label": REVIEW_LABELS.get(decision, decision),
                                "reviewer": getattr(d, "reviewer", ""), "comment": getattr(d, "comment", ""),
                                "when": str(getattr(d, "created", ""))[:16].replace("T", " ")})
        elif page.review:
            d = page.review
            history.append({"decision": d.get("decision", ""), "label": REVIEW_LABELS.get(d.get("decision", ""), d.get("decision", "")),
                            "reviewer": d.get("reviewer", ""), "comment": d.get("comment", ""),
                            "when": str(d.get("created") or "")[:16].replace("T", " ")})
        history.reverse()  # newest first
        recorded = None
        if app is not None and app.get("recorded") and history:
            recorded = {"label": history[0]["label"], "reviewer": history[0]["reviewer"], "when": history[0]["when"]}
        return {
            "app": app is not None, "history": history, "recorded": recorded,
            "message": (app or {}).get("message"), "action": (app or {}).get("review_action"),
            "form": (app or {}).get("form") or {"decision": "", "reviewer": "", "comment": ""},
            "decisions": [(d, REVIEW_LABELS.get(d, d)) for d in (app or {}).get("decisions") or ()],
        }
