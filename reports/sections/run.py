"""Run details: what was audited (model and data identity), with which settings, how long it took, what failed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imaudit.reports.evidence import flatten, records
from imaudit.reports.history import samples_text
from imaudit.reports.page import Page
from imaudit.reports.sections import Section, register

SETTINGS = ("methods", "samples", "method_samples", "target", "seed", "input_size", "train_cap", "device",
            "batch_size", "chunk_size", "fail_on", "task_runner", "counterfactuals")


def _short(digest: Any) -> str:
    s = str(digest or "")
    return s.split(":", 1)[-1][:12] if s else "—"


@register
class Run(Section):
    name = "run"
    title = "Run details"
    nav = "Run"
    order = 950
    intro = "What exactly was audited and how: identities and digests, settings, time per stage, and anything that failed."
    template = """{% import "_macros.html" as m %}
<div class="grid2">
  <div><h3>Model</h3>{{ m.kv(v.model) }}</div>
  <div><h3>Dataset</h3>{{ m.kv(v.dataset) }}</div>
</div>
{% if v.problems %}<h3>Problems</h3><div class="scroll"><table><thead><tr><th>stage</th><th>error</th></tr></thead><tbody>{% for e in v.problems %}<tr><td>{{ e.stage }}</td><td class="small">{{ e.error }}</td></tr>{% endfor %}</tbody></table></div>{% endif %}
<div class="grid2">
  <div><h3>Settings</h3>{{ m.kv(v.settings) }}{% if v.thresholds %}<details><summary>thresholds</summary>{{ m.kv(v.thresholds) }}</details>{% endif %}</div>
  <div>{% if v.timings %}<h3>Seconds per stage</h3><table>{% for k, x in v.timings %}<tr><td>{{ k }}</td><td class="n">{{ x|num(3) }}</td></tr>{% endfor %}<tr><th>total</th><th class="n">{{ v.total|num(3) }}</th></tr></table>{% endif %}
  {% if v.cache %}<p class="small muted">Cache: {{ v.cache }}</p>{% endif %}</div>
</div>
{% if v.methods %}<h3>Explanation methods</h3><div class="scroll"><table class="sortable"><thead><tr><th>method</th><th>applies</th><th class="n">images</th><th class="n">seconds</th><th class="n">images/s</th><th class="n">failed</th></tr></thead><tbody>
{% for x in v.methods %}<tr><td>{{ x.method }}</td><td>{% if x.applicable %}yes{% else %}no <span class="muted small">({{ x.reason or "not applicable" }})</span>{% endif %}</td><td class="n">{{ x.count }}</td><td class="n">{{ x.seconds|num(3) }}</td><td class="n">{{ x.rate|num(3) }}</td><td class="n">{{ x.n_failures }}</td></tr>{% endfor %}
</tbody></table></div>
{% for x in v.methods %}{% if x.failures %}<details><summary>{{ x.method }}: {{ x.n_failures }} images failed</summary><div class="scroll"><table><thead><tr>{% for c in x.failures.cols %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>{% for row in x.failures.rows %}<tr>{% for y in row %}<td class="small">{{ y }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div></details>{% endif %}{% endfor %}
<details><summary>settings of each method</summary><div class="scroll"><table>{% for x in v.methods %}<tr><th>{{ x.method }}</th><td class="small">{% for k, val in x.settings or [] %}{{ k }} {{ val|num if val is number else val }}{{ " · " if not loop.last }}{% endfor %}</td></tr>{% endfor %}</table></div></details>
{% endif %}
<p class="muted small">imaudit {{ v.version }} · audit <code>{{ v.id }}</code> · status {{ v.status }} · created {{ v.created }}{% if v.finished %} · finished {{ v.finished }}{% endif %}</p>"""

    def value(self, page: Page) -> dict[str, Any]:
        r = page.r
        m, d = r.model, r.dataset
        cfg = m.data_config or {}
        model = [("ref", m.ref), ("architecture", m.arch), ("classes", m.num_classes),
                 ("parameters", f"{m.params:,}" if m.params else "—"), ("weights digest", _short(m.digest)),
                 ("input size", "×".join(map(str, cfg["input_size"])) if isinstance(cfg.get("input_size"), list) else cfg.get("input_size", "—"))]
        if isinstance(cfg.get("mean"), list):
            model.append(("normalisation", f"mean {', '.join(f'{x:.3g}' for x in cfg['mean'])}; std {', '.join(f'{x:.3g}' for x in cfg.get('std') or [])}"))
        rel = m.release if isinstance(m.release, Mapping) else {}
        if rel:
            model += [("release", f"{rel.get('name', '?')} {rel.get('version', '')}".strip()),
                      ("released", str(rel.get("created") or "—")[:16].replace("T", " "))]
            if rel.get("notes"):
                model.append(("notes", str(rel["notes"])))
        dataset = [("ref", d.ref), ("images", f"{d.n_images:,}"), ("classes", len(d.classes)),
                   ("splits", ", ".join(f"{s} {sum(c.values()):,}" for s, c in d.counts.items()) or "—"),
                   ("object masks", "yes" if d.has_masks else "no"), ("content digest", _short(d.digest)),
                   ("files left out", len(d.excluded))]
        spec = r.spec or {}
        settings = flatten({k: spec.get(k) for k in SETTINGS if k in spec}, max_rows=20)
        # A setting left at its default says what the default did, never a bare dash.
        size = cfg.get("input_size")
        defaults = {"samples": samples_text(r), "fail on": "no gate (--fail-on not set)", "batch size": "by device",
                    "input size": f"the model's ({'×'.join(map(str, size[-2:]))} px)" if isinstance(size, list) else "the model's"}
        settings = [(k, defaults[k] if k in defaults and (x in ("—", None) or k == "samples") else x) for k, x in settings]
        thresholds = flatten(spec.get("thresholds") or {}, max_rows=40)
        methods = [{"method": name, "applicable": rec.applicable, "reason": rec.reason, "count": rec.count,
                    "seconds": rec.seconds, "rate": rec.per_image_rate, "n_failures": len(rec.failures),
                    "failures": records(rec.failures, limit=20), "settings": flatten(rec.settings) if rec.settings else None}
                   for name, rec in r.explanations.items()]
        cache = "; ".join(f"{k} {x.get('reused', 0)}/{x.get('total', 0)} chunks reused" for k, x in
                          ((r.model_extra or {}).get("cache") or {}).items() if isinstance(x, Mapping))
        total = sum(x for x in r.timings.values() if isinstance(x, (int, float)))
        problems = [{"stage": str(e.get("stage", "")), "error": str(e.get("error", e))} if isinstance(e, Mapping)
                    else {"stage": "", "error": str(e)} for e in r.errors]
        problems += page.problems  # figures or sections of this page that could not be drawn (this section is last)
        return {"model": model, "dataset": dataset, "settings": settings, "thresholds": thresholds, "methods": methods,
                "timings": list(r.timings.items()), "total": total, "cache": cache, "problems": problems,
                "version": r.imaudit_version, "id": r.id, "status": r.status, "created": r.created, "finished": r.finished}
