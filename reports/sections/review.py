"""Review: the sign-off on this audit, after the evidence (the decision form in the review app).

The static report shows that decisions live in the review app. In the app the section
shows the release gate, decisions on other audits of the release, this audit's decision
log, a confirmation after a decision, and the form (identity, CSRF token and the
acknowledgements that approving requires are the app's; see reports/app.py).
"""

from __future__ import annotations

from typing import Any

from imaudit.audits.findings import kind_of
from imaudit.audits.verdict import REVIEW_LABELS
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register


def _when(value: Any) -> str:
    return str(value or "")[:16].replace("T", " ")


@register
class Review(Section):
    name = "review"
    title = "Review"
    nav = "Review"
    order = 900
    intro = ("Record the decision once you have read the evidence above. Approve releases the model, reject "
             "blocks it, needs work sends it back with your comment. Approving asks you to acknowledge each "
             "error and warning finding.")
    template = """{% import "_macros.html" as m %}
{% if v.recorded %}<p class="ok-box" role="status" id="review-confirmation">Decision recorded: <b>{{ v.recorded.label }}</b> by {{ v.recorded.reviewer }} at {{ v.recorded.when }} UTC. The banner at the top and the index show it.</p>{% endif %}
{% if v.release %}<p class="small" id="release-status">Release <code>{{ v.release }}</code> gate: {% if v.gate.passed %}{{ m.badge("open", "pass") }}{% else %}{{ m.badge("closed", "fail") }}{% endif %} {{ v.gate.reason }}</p>{% endif %}
{% if v.related %}<div class="small" id="release-decisions"><p>Decisions on other audits of this release apply to those audits, not to this one:</p><ul>
{% for r in v.related %}<li>{{ m.badge(r.label, r.decision) }} by {{ r.reviewer }} ({{ r.when }}) on the {{ "older" if r.older else "newer" }} audit <a href="/audits/{{ r.audit_id|urlencode }}">{{ r.audit_id }}</a>{% if not r.same_model %}, a different model file{% endif %}</li>{% endfor %}
</ul></div>{% endif %}
{% if v.history %}<div class="scroll"><table><thead><tr><th>when (UTC)</th><th>decision</th><th>reviewer</th><th>acknowledged</th><th>comment</th></tr></thead><tbody>
{% for d in v.history %}<tr class="decision"><td class="small">{{ d.when }}</td><td>{{ m.badge(d.label, d.decision) }}</td><td>{{ d.reviewer }}{% if d.how %} <span class="muted small">{{ d.how }}</span>{% endif %}</td><td class="small">{{ d.acknowledged }}</td><td>{{ d.comment }}</td></tr>{% endfor %}
</tbody></table></div>{% elif v.app %}<p class="muted">No decision recorded yet.</p>{% endif %}
{% if not v.app %}
  <p>Decisions are recorded in the review app, by signed-in reviewers: <code>imaudit serve</code>, then open this audit there. This file shows none, so that nobody can claim one by editing it.</p>
{% else %}
  {% if v.message %}<p class="error-box" role="alert" id="review-error">{{ v.message }}</p>{% endif %}
  {% if v.can_review %}
  <form class="review" method="post" action="{{ v.action }}">
    <input type="hidden" name="csrf" value="{{ v.csrf_token }}">
    <input type="hidden" name="audit_digest" value="{{ v.audit_digest }}">
    <span>Reviewer</span><span id="reviewer">{{ v.user.name }}{% if v.user.auth == "none" %} <span class="muted small">(not signed in: this decision will not open the release gate)</span>{% endif %}</span>
    {% if v.ack_items %}
    <fieldset class="acks" id="acks"><legend>Acknowledge each error and warning finding (required to approve)</legend>
    {% for a in v.ack_items %}<label><input type="checkbox" name="ack" value="{{ a.code }}"{% if a.code in v.form.ack %} checked{% endif %}> {{ m.badge(a.severity) }} <b>{{ a.title }}</b> <code class="muted">{{ a.code }}</code>{% if a.caveat %} <span class="muted small">(explainer caveat: about the maps, not the model)</span>{% endif %} <span class="small block">{% if a.messages|length > 1 %}{{ a.messages|length }} findings, the first: {% endif %}{{ a.messages[0]|truncate(180) }} <a href="#findings">in Findings</a></span></label>{% endfor %}
    </fieldset>
    {% endif %}
    <label for="decision">Decision</label>
    <select id="decision" name="decision" required><option value="">choose…</option>{% for d, label in v.decisions %}<option value="{{ d }}"{% if v.form.decision == d %} selected{% endif %}>{{ label }}</option>{% endfor %}</select>
    <label for="comment">Comment</label>
    <textarea id="comment" name="comment" maxlength="5000" placeholder="What you checked and why you decided so">{{ v.form.comment }}</textarea>
    <span></span><button type="submit">Record decision</button>
  </form>
  {% elif v.user and v.user.auth == "none" %}
  <p class="muted" id="review-closed">Read-only: nobody can record decisions until a reviewer account exists (<code>imaudit reviewers add NAME</code>); then sign in.</p>
  {% else %}
  <p class="muted" id="review-closed">Signed in as a {{ v.user.role if v.user else "visitor" }}: only reviewers and admins record decisions.</p>
  {% endif %}
{% endif %}"""

    def value(self, page: Page) -> dict[str, Any]:
        app = page.app or {}
        history = []
        for d in reversed(list(app.get("history") or [])):  # newest first
            decision = str(getattr(d, "decision", ""))
            auth = getattr(d, "auth", "")
            how = {"none": "not signed in", "proxy": "single sign-on"}.get(auth, "")
            history.append({"decision": decision, "label": REVIEW_LABELS.get(decision, decision),
                            "reviewer": getattr(d, "reviewer", ""), "comment": getattr(d, "comment", ""),
                            "when": _when(getattr(d, "created", "")),
                            "how": ", ".join(x for x in (getattr(d, "role", ""), how) if x),
                            "acknowledged": ", ".join(getattr(d, "acknowledged", ()) or ())})
        recorded = history[0] if app.get("recorded") and history else None
        return {
            "app": page.app is not None, "history": history, "recorded": recorded,
            "message": app.get("message"), "action": app.get("review_action"),
            "form": {"decision": "", "comment": "", "ack": [], **(app.get("form") or {})},
            "decisions": [(d, REVIEW_LABELS.get(d, d)) for d in app.get("decisions") or ()],
            "release": app.get("release"), "gate": app.get("gate"),
            "related": [{**r, "label": REVIEW_LABELS.get(r.get("decision"), r.get("decision")), "when": _when(r.get("created"))}
                        for r in app.get("related") or []],
            # One line per code: its title, how many findings and the first message (the rest is in Findings above).
            "ack_items": [{**a, "title": kind_of(a["code"]).title, "caveat": kind_of(a["code"]).group == "explainer"}
                          for a in app.get("ack_items") or []],
            "can_review": bool(app.get("can_review")), "user": app.get("user"),
            "csrf_token": app.get("csrf_token", ""), "audit_digest": app.get("audit_digest", ""),
        }
