"""Findings people act on: what each means for a release, what to do, and the evidence behind it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.audits.findings import kind_of
from imaudit.audits.result import SEVERITY_RANK, Finding
from imaudit.audits.verdict import group_of
from imaudit.reports import figures as figs
from imaudit.reports.evidence import flatten, records
from imaudit.reports.page import Page, array_key
from imaudit.reports.sections import Section, register

GROUPS = (
    ("model", "About the model"),
    ("data", "About the data"),
    ("run", "About the audit run"),
    ("explainer", "Explainer caveats: about the explanation methods, not the model"),
)
# Where each finding's evidence is drawn in the report.
SEE = {
    "overfitting": ("fit", "learning curves and train/val gap"), "underfitting": ("fit", "learning curves"),
    "miscalibration": ("calibration", "reliability diagram"), "weak-class": ("performance", "per-class table"),
    "shortcut": ("shortcuts", "the box on the class's images"),
    "unfaithful-explanation": ("quality", "deletion and insertion curves"),
    "failed-sanity-check": ("quality", "sanity check"), "low-method-agreement": ("agreement", "agreement matrix"),
    "stage-failed": ("run", "errors"), "gate-error": ("data", "data checks"),
    "nonfinite-outputs": ("data", "output checks"), "invalid-probabilities": ("data", "output checks"),
}
MESSAGE_LIMIT = 280
FOLD_AT = 3  # this many findings of one code and severity are shown as one entry with a row each
SHOWN_BY_FIGURE = ("box", "image_size", "intervention", "confirmed", "pairs", "class_index")


def _classes_of(f: Finding) -> list[str]:
    """The classes a finding is about (names, whether the evidence lists names or per-class records)."""
    ev = f.evidence
    out = ev.get("classes") if isinstance(ev.get("classes"), list) else [ev.get("class")]
    out = [c.get("class") if isinstance(c, Mapping) else c for c in out]
    return [str(c) for c in out if isinstance(c, (str, int)) and str(c)][:4]


def _record_table(ev: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """The evidence's list of records (pairs, per-class rows, failed images...) as a table, lowest first for pairs."""
    for key, val in ev.items():
        if isinstance(val, list) and val and all(isinstance(x, Mapping) for x in val):
            rows = sorted(val, key=lambda p: p.get("mean", 0)) if key == "pairs" else val
            return key, records(rows, limit=8)
    return None, None


def intervention_rows(iv: Any) -> list[dict[str, Any]]:
    """A shortcut's intervention numbers as rows: what was done, on how many images, before -> after,
    and the control (the same intervention somewhere else) when the check ran one."""
    if not isinstance(iv, Mapping):
        return []
    rows = []
    cover = iv.get("cover")
    if isinstance(cover, Mapping):
        rows.append({"what": "cover the box in the class's images", "n": cover.get("n"), "measure": "accuracy",
                     "before": cover.get("accuracy_before"), "after": cover.get("accuracy_after"),
                     "control": cover.get("control_accuracy_after")})
        if cover.get("confidence_before") is not None:
            rows.append({"what": "", "n": None, "measure": "confidence", "before": cover.get("confidence_before"),
                         "after": cover.get("confidence_after"), "control": cover.get("control_confidence_after")})
    paste = iv.get("paste")
    if isinstance(paste, Mapping):
        rows.append({"what": "paste the box into other classes' images", "n": paste.get("n"), "before": 0.0,
                     "after": paste.get("flip_rate"), "measure": "predicted as the class",
                     "control": paste.get("control_flip_rate")})
    return rows


def finding_value(f: Finding, page: Page) -> dict[str, Any]:
    kind = kind_of(f.code)
    msg = f.message
    see = SEE.get(f.code) or (("data", "data checks") if kind.group == "data" else None)
    ev = f.evidence or {}
    table_key, table = _record_table(ev)
    return {
        "many": False, "code": f.code, "severity": f.severity, "title": kind.title, "group": group_of(f),
        "message": msg if len(msg) <= MESSAGE_LIMIT else msg[: MESSAGE_LIMIT - 1] + "…",
        "full": msg if len(msg) > MESSAGE_LIMIT else None,
        "meaning": kind.meaning, "action": kind.action,
        "rows": flatten(ev, skip=SHOWN_BY_FIGURE + ("per_class", table_key or "")) if ev else [],
        "table": table, "table_key": table_key,
        "see": {"anchor": see[0], "what": see[1]} if see else None,
        "classes": _classes_of(f),
        "box": ev.get("box") if isinstance(ev.get("box"), list) and len(ev.get("box")) == 4 else None,
        "image_size": ev.get("image_size"),
        "confirmed": ev.get("confirmed"),
        "intervention": intervention_rows(ev.get("intervention")),
    }


def _pct(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def shortcut_parts(f: Finding) -> tuple[dict, Mapping, Mapping, list | None, Any]:
    """A shortcut finding's evidence read defensively: (evidence, cover, paste, box, methods); shared by the
    findings table and the shortcuts section so both read the audit.json contract the same way."""
    ev = f.evidence or {}
    iv = ev.get("intervention") if isinstance(ev.get("intervention"), Mapping) else {}
    cover = iv.get("cover") if isinstance(iv.get("cover"), Mapping) else {}
    paste = iv.get("paste") if isinstance(iv.get("paste"), Mapping) else {}
    box = ev.get("box") if isinstance(ev.get("box"), list) and len(ev["box"]) == 4 else None
    return ev, cover, paste, box, ev.get("methods") or ev.get("method")


def instance_row(f: Finding, page: Page) -> dict[str, Any]:
    """One finding of a folded group as a table row: its class, its key numbers and its own sentence."""
    ev, cover, paste, box, methods = shortcut_parts(f)
    msg = f.message
    about = ", ".join(_classes_of(f))
    return {
        "about": f"class {about}" if about else (str(ev.get("method")) if ev.get("method") else "—"),
        "classes": about or None,
        "box": box,
        "methods": ", ".join(map(str, methods)) if isinstance(methods, list) else methods,
        "hot": _pct(ev.get("hot_frequency")),
        "cover_before": _pct(cover.get("accuracy_before")), "cover_after": _pct(cover.get("accuracy_after")),
        "flip": _pct(paste.get("flip_rate")),
        "message": msg if len(msg) <= MESSAGE_LIMIT else msg[: MESSAGE_LIMIT - 1] + "…",
    }


def fold(entries: list[Finding], page: Page) -> list[dict[str, Any]]:
    """Findings in page order; ``FOLD_AT`` or more of one code, severity and confirmation become one entry.

    Twelve unconfirmed shortcut candidates are one fact for a reviewer (the maps favour
    some spots the model does not depend on), so they are one entry with a row each
    instead of twelve cards repeating what the kind means.
    """
    def key(f: Finding) -> tuple[str, str, Any]:
        return (f.code, f.severity, (f.evidence or {}).get("confirmed"))

    counts: dict[tuple[str, str, Any], int] = {}
    for f in entries:
        counts[key(f)] = counts.get(key(f), 0) + 1
    out: list[dict[str, Any]] = []
    folded: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for f in entries:
        k = key(f)
        if counts[k] < FOLD_AT:
            out.append(finding_value(f, page))
            continue
        if k not in folded:
            kind = kind_of(f.code)
            see = SEE.get(f.code) or (("data", "data checks") if kind.group == "data" else None)
            folded[k] = {"many": True, "code": f.code, "severity": f.severity, "title": kind.title,
                         "confirmed": k[2], "meaning": kind.meaning, "action": kind.action, "instances": [],
                         "see": {"anchor": see[0], "what": see[1]} if see else None}
            out.append(folded[k])
        folded[k]["instances"].append(instance_row(f, page))
    for entry in folded.values():
        rows = entry["instances"]
        entry["count"] = len(rows)
        entry["has_box"] = any(r["box"] for r in rows)
        entry["has_iv"] = any(r["cover_after"] is not None or r["flip"] is not None for r in rows)
        entry["has_hot"] = any(r["hot"] is not None for r in rows)
        classes = sorted({r["classes"] for r in rows if r["classes"]}, key=lambda c: (len(c), c))
        entry["about"] = (("class" if len(classes) == 1 else "classes") + " " + ", ".join(classes) if classes else
                          ", ".join(dict.fromkeys(r["about"] for r in rows if r["about"] != "—")))
    return out


@register
class Findings(Section):
    name = "findings"
    title = "Findings"
    nav = "Findings"
    order = 20
    intro = ("Each finding says what it means for a release and what to do, with the numbers behind it and a link "
             "to the figure or images. Findings about the model and the data come first; explainer caveats, which "
             "qualify the explanation maps rather than the model, come last.")
    template = """{% import "_macros.html" as m %}
{% for g in v.groups %}
  <h3 class="group {{ g.key }}">{{ g.title }} <span class="muted small">({{ g.n }})</span></h3>
  {% for f in g.entries %}
  {% if f.many %}
  <article class="finding {{ f.severity }} many" id="finding-{{ loop.index }}-{{ f.code }}">
    <header>{{ m.badge(f.severity) }} <b>{{ f.count }} × {{ f.title }}</b>{% if f.confirmed is sameas true %} {{ m.badge("confirmed by intervention", "error") }}{% elif f.confirmed is sameas false %} {{ m.badge("none confirmed", "info") }}{% endif %} <code class="muted">{{ f.code }}</code></header>
    <p class="msg">{{ f.count }} findings of this kind{% if f.about %}, about {{ f.about }}{% endif %}; one row each below.</p>
    <dl class="what"><dt>What it means</dt><dd>{{ f.meaning }}</dd><dt>What to do</dt><dd>{{ f.action }}</dd></dl>
    <details{% if f.severity != "info" %} open{% endif %}><summary>the {{ f.count }} findings</summary>
    <div class="scroll"><table class="instances"><thead><tr><th>about</th>{% if f.has_box %}<th>box (x, y)</th><th>methods</th>{% endif %}{% if f.has_hot %}<th class="n"><dfn title="share of the class's explanation maps in which this box is among the hottest cells">hot in</dfn></th>{% endif %}{% if f.has_iv %}<th class="n"><dfn title="class accuracy before and after covering the box in its images">covered: accuracy</dfn></th><th class="n"><dfn title="share of other classes' images predicted as this class once the box is pasted into them">pasted: flipped</dfn></th>{% else %}<th>message</th>{% endif %}</tr></thead><tbody>
    {% for x in f.instances %}<tr><td>{{ x.about }}</td>{% if f.has_box %}<td>{% if x.box %}{{ x.box[0]|num }}–{{ x.box[2]|num }}, {{ x.box[1]|num }}–{{ x.box[3]|num }}{% else %}—{% endif %}</td><td>{{ x.methods or "—" }}</td>{% endif %}{% if f.has_hot %}<td class="n">{{ x.hot|pct(0) }}</td>{% endif %}{% if f.has_iv %}<td class="n">{{ x.cover_before|pct(0) }} → {{ x.cover_after|pct(0) }}</td><td class="n">{{ x.flip|pct(0) }}</td>{% else %}<td class="small">{{ x.message }}</td>{% endif %}</tr>{% endfor %}
    </tbody></table></div></details>
    <p class="links small">{% if f.see %}See: <a href="#{{ f.see.anchor }}">{{ f.see.what }}</a>{% endif %}</p>
  </article>
  {% else %}
  <article class="finding {{ f.severity }}" id="finding-{{ loop.index }}-{{ f.code }}">
    <header>{{ m.badge(f.severity) }} <b>{{ f.title }}</b>{% if f.confirmed is sameas true %} {{ m.badge("confirmed by intervention", "error") }}{% elif f.confirmed is sameas false %} {{ m.badge("not confirmed", "info") }}{% endif %} <code class="muted">{{ f.code }}</code></header>
    <p class="msg">{{ f.message }}</p>
    {% if f.full %}<details><summary>whole message</summary><p class="small">{{ f.full }}</p></details>{% endif %}
    <dl class="what"><dt>What it means</dt><dd>{{ f.meaning }}</dd><dt>What to do</dt><dd>{{ f.action }}</dd></dl>
    {% if f.box_src or f.intervention %}<div class="figs">
      {% if f.box_src %}{{ m.fig(f.box_src, "box of the shortcut on class " ~ (f.classes|join(", ")), "box " ~ f.box|join(", ") ~ " (x0, y0, x1, y1) in model-input pixels", "small-fig") }}{% endif %}
      {% if f.intervention %}<div class="scroll">{{ m.intervention(f.intervention) }}</div>{% endif %}
    </div>{% endif %}
    {% if f.rows or f.table %}<details{% if f.severity == "error" %} open{% endif %}><summary>evidence</summary>
      {% if f.rows %}{{ m.kv(f.rows) }}{% endif %}
      {% if f.table %}<div class="scroll"><table><thead><tr>{% for c in f.table.cols %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>{% for row in f.table.rows %}<tr>{% for x in row %}<td{% if x is number %} class="n"{% endif %}>{{ x|num(3) if x is number else x }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>{% if f.table.more %}<p class="muted small">{{ "lowest " if f.table_key == "pairs" }}{{ f.table.rows|length }} shown; {{ f.table.more }} more in audit.json</p>{% endif %}{% endif %}
    </details>{% endif %}
    <p class="links small">{% if f.see %}See: <a href="#{{ f.see.anchor }}">{{ f.see.what }}</a>{% endif %}{% for c in f.classes %}{% if page.gallery_rows %} · <a href="#gallery" data-gallery-class="{{ c }}">images of class {{ c }}</a>{% endif %}{% endfor %}</p>
  </article>
  {% endif %}
  {% endfor %}
{% else %}
  <p class="ok-box">No findings: every check that ran found nothing to report.</p>
{% endfor %}"""

    def value(self, page: Page) -> dict[str, Any]:
        by_group: dict[str, list[Finding]] = {}
        for f in sorted(page.r.findings, key=lambda f: -SEVERITY_RANK[f.severity]):
            by_group.setdefault(group_of(f), []).append(f)
        known = [k for k, _ in GROUPS]
        titles = dict(GROUPS)
        keys = known + sorted(k for k in by_group if k not in known)
        return {"groups": [{"key": k, "title": titles.get(k, k), "entries": fold(by_group[k], page),
                            "n": len(by_group[k])} for k in keys if k in by_group]}

    def display(self, value: dict[str, Any], page: Page) -> dict[str, Any]:
        for g in value["groups"]:
            for f in g["entries"]:
                f["box_src"] = None
                if f.get("box"):
                    cls = f["classes"][0] if f["classes"] else ""
                    image = page.class_means.get(cls) if cls else None
                    f["box_src"] = page.figure(f"shortcut-box-{cls}", lambda fv=f, im=image, c=cls: figs.box_png(
                        im, fv["box"], fv["image_size"], f"class {c}" if c else "shortcut"),
                        key=(f["box"], f["image_size"], cls, array_key(image)))
        return value
