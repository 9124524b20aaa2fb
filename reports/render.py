"""AuditResult -> report.html (+ small figure PNGs in figures/ beside it).

The page opens offline: CSS is inline, images are files beside the report
referenced by relative URL, and nothing heavy (maps, predictions) is inlined,
so a 1,000-image audit's report stays a few MB. Every section is optional:
producers own their shapes, so the context builder below tolerates missing keys
and unknown structures (shown as generic tables).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imaudit import paths
from imaudit.audits import chunks
from imaudit.audits.result import SEVERITY_RANK, AuditResult
from imaudit.io import atomic_write_bytes, atomic_write_text, read_verified, write_verified
from imaudit.reports import figures as figs
from imaudit.reports.store import safe_file
from imaudit.reports.templating import num, render

log = logging.getLogger(__name__)

FIGURES = "figures"
GALLERY_LIMIT = 48  # per group (correct / misclassified); the full list is predictions.csv
CLASS_LIMIT = 30  # per-class heatmaps per method
CLUSTER_LIMIT = 6
EXEMPLAR_LIMIT = 6
ROW_LIMIT = 200
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
SPLIT_ORDER = ("train", "val", "valid", "validation", "test")


def render_report(result: AuditResult, folder: Path) -> Path:
    """Write ``folder/report.html`` (and its figures) for ``result``; returns the report path."""
    folder = Path(folder)
    html = report_html(result, folder)
    return atomic_write_text(folder / "report.html", html)


def report_html(result: AuditResult, folder: Path, *, base: str = "", template: str = "report.html",
                redraw: bool = True, **extra: Any) -> str:
    """The report as HTML text.

    ``base`` prefixes every file URL (the app serves files under /audits/<id>/files/);
    ``redraw=False`` reuses figures already on disk and draws only missing ones.
    """
    ctx = ReportContext(result, Path(folder), base=base, redraw=redraw).build()
    ctx.update(extra)
    return render(template, **ctx)


def overall_verdict(r: AuditResult) -> dict[str, Any]:
    """The headline a reviewer sees first: fail (gates failed or error findings), warn, or pass."""
    counts = {s: 0 for s in ("error", "warning", "info")}
    for f in r.findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    if r.status == "failed":
        state, headline = "fail", "Incomplete: a required stage failed"
    elif not r.gates.passed or counts["error"]:
        state, headline = "fail", ("Gates failed" if not r.gates.passed else "Errors found")
    elif counts["warning"] or r.fit.verdict in ("overfitting", "underfitting") or r.status == "partial":
        state, headline = "warn", "Needs attention"
    else:
        state, headline = "pass", "Passed"
    return {"state": state, "headline": headline, "counts": counts, "fit": r.fit.verdict,
            "gates_passed": r.gates.passed, "status": r.status}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")[:40] or "x"


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _split_key(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def history_rows(history: Any) -> list[dict[str, Any]]:
    """Training history as rows, from rows ({'rows': [...]} or a list) or columns ({'train_loss': [...]})."""
    if not history:
        return []
    if isinstance(history, Mapping) and isinstance(history.get("rows"), list):
        history = history["rows"]
    if isinstance(history, list):
        return [r for r in history if isinstance(r, Mapping)]
    if isinstance(history, Mapping):
        cols = {k: v for k, v in history.items() if isinstance(v, list)}
        n = max((len(v) for v in cols.values()), default=0)
        return [{k: (v[i] if i < len(v) else None) for k, v in cols.items()} for i in range(n)]
    return []


CHECK_SECTIONS = ("faithfulness", "sanity", "localisation")


def _figure_cache(name: str, key: Any) -> Path:
    """Where the figure ``name`` drawn from ``key`` by the current figures.py is cached."""
    code = chunks.source_digest(("imaudit.reports.figures",))
    return paths.cache_dir() / "figures" / f"{chunks.digest('figure', name, key, code)}.png"


class ReportContext:
    """Turns an AuditResult into plain template data, drawing figures as it goes."""

    def __init__(self, result: AuditResult, folder: Path, *, base: str = "", redraw: bool = True) -> None:
        self.r = result
        self.folder = folder
        self.base = base
        self.redraw = redraw
        self.classes = list(result.model.classes or result.dataset.classes or [])
        self.n_fig = 0
        self.figure_errors: list[dict[str, str]] = []

    # --- files -------------------------------------------------------------------------
    def src(self, rel: Any) -> str | None:
        """URL of a file beside audit.json, or None when the path is unsafe or the file is missing."""
        if not isinstance(rel, str) or safe_file(self.folder, rel) is None:
            return None
        return self.base + quote(rel.replace("\\", "/"), safe="/")

    def figure(self, name: str, draw: Callable[[], bytes], key: Any = None) -> str | None:
        """Draw one figure into figures/ (a failed figure is recorded and shown, the report goes on).

        ``key`` is the data the figure shows: figures are cached by it (and by the
        drawing code), so re-auditing an unchanged model copies them instead of
        redrawing dozens of matplotlib figures.
        """
        self.n_fig += 1
        rel = f"{FIGURES}/{self.n_fig:03d}-{_slug(name)}.png"
        path = self.folder / rel
        if self.redraw or not path.is_file():
            cached = _figure_cache(name, key) if key is not None else None
            try:
                png, problem = read_verified(cached) if cached is not None else (None, None)
                if problem:  # a damaged cache entry is never shown: redrawn and rewritten
                    log.warning("cached figure %s did not verify (%s); redrawn", cached, problem)
                if png is None:
                    png = draw()
                    if cached is not None:
                        write_verified(cached, png)
                atomic_write_bytes(path, png)
            except Exception as exc:  # a bad grid must not sink the whole report
                log.warning("figure %s failed: %s", name, exc)
                self.figure_errors.append({"stage": f"figure {name}", "error": f"{type(exc).__name__}: {exc}"})
                return None
        return self.src(rel)

    def class_name(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.classes):
            return self.classes[value]
        if isinstance(value, str) and value.isdigit() and value not in self.classes and int(value) < len(self.classes):
            return self.classes[int(value)]
        return "—" if value is None else str(value)

    # --- generic display of unknown structures -------------------------------------------
    def tree(self, v: Any, depth: int = 0) -> dict[str, Any]:
        """A display node for any JSON value: kv tables, row tables, images, text."""
        if v is None or isinstance(v, (bool, int, float)):
            return {"k": "num", "v": v}
        if isinstance(v, str):
            if v.lower().endswith(IMAGE_EXT) and (url := self.src(v)):
                return {"k": "img", "src": url, "alt": v}
            return {"k": "text", "v": v if len(v) <= 500 else v[:499] + "…"}
        if depth >= 4:
            return {"k": "text", "v": f"({type(v).__name__} nested too deep to show)"}
        if isinstance(v, Mapping):
            items = list(v.items())
            return {"k": "kv", "entries": [(str(k), self.tree(x, depth + 1)) for k, x in items[:60]],
                    "more": max(0, len(items) - 60)}
        if isinstance(v, (list, tuple)):
            if v and all(isinstance(x, Mapping) for x in v):
                cols: list[str] = []
                for x in v[:ROW_LIMIT]:
                    cols += [str(k) for k in x if str(k) not in cols]
                rows = [[self.tree(x.get(c), depth + 1) for c in cols] for x in v[:ROW_LIMIT]]
                return {"k": "table", "cols": cols[:16], "rows": [r[:16] for r in rows],
                        "more": max(0, len(v) - ROW_LIMIT)}
            if v and all(isinstance(x, (list, tuple)) for x in v) and all(_num(y) for x in v[:3] for y in x):
                return {"k": "text", "v": f"grid {len(v)}×{len(v[0]) if v[0] else 0}"}
            if all(x is None or isinstance(x, (str, int, float, bool)) for x in v):
                shown = ", ".join(num(x) for x in v[:30])
                return {"k": "text", "v": shown + (f" … (+{len(v) - 30})" if len(v) > 30 else "")}
            return {"k": "list", "entries": [self.tree(x, depth + 1) for x in v[:30]], "more": max(0, len(v) - 30)}
        return {"k": "text", "v": str(v)}

    # --- sections ------------------------------------------------------------------------
    def build(self) -> dict[str, Any]:
        r = self.r
        ctx: dict[str, Any] = {
            "r": r,
            "title": f"Audit {r.id}",
            "verdict": self.verdict(),
            "gates": self.gates(),
            "findings": self.findings(),
            "identity": self.identity(),
            "data_checks": self.data_checks(),
            "metrics": self.metrics(),
            "per_class": self.per_class(),
            "confusion": self.confusion(),
            "calibration": self.calibration(),
            "fit": self.fit(),
            "importance": self.importance(),
            "strategies": self.strategies(),
            "quality": self.quality(),
            "gallery": self.gallery(),
            "views": self.views(),
            "rates": self.rates(),
            "timings": self.timings(),
            "generative": self.counterfactuals(),
            "review": None,  # decisions come from the review app's log, never from a claim inside audit.json
            "app": False,
        }
        errors = [e if isinstance(e, Mapping) else {"error": str(e)} for e in r.errors] + self.figure_errors
        ctx["errors"] = self.tree(errors) if errors else None
        ctx["toc"] = [(anchor, label) for anchor, label, key in (
            ("identity", "Identity", "identity"), ("data", "Data checks", "data_checks"),
            ("metrics", "Metrics", "metrics"), ("per-class", "Per class", "per_class"),
            ("confusion", "Confusion", "confusion"), ("calibration", "Calibration", "calibration"),
            ("fit", "Fit", "fit"), ("importance", "Global importance", "importance"),
            ("strategies", "Strategies", "strategies"), ("quality", "Explanation quality", "quality"),
            ("gallery", "Gallery", "gallery"), ("views", "Layer views", "views"),
            ("timings", "Timings", "timings"), ("errors", "Errors", "errors"),
            ("generative", "Counterfactuals", "generative"),
        ) if ctx.get(key)]
        return ctx

    def verdict(self) -> dict[str, Any]:
        return overall_verdict(self.r)

    def counterfactuals(self) -> dict[str, Any] | None:
        """The generative section: per item the four PNGs and the confidence path; the in-fill table."""
        g = self.r.generative
        if not g:
            return None
        if g.get("skipped"):
            return {"skipped": g["skipped"]}
        items = []
        for it in g.get("items") or []:
            pngs = it.get("pngs") or {}
            path = [c for c in (it.get("path_confidence") or []) if _num(c)]
            items.append({
                "id": it.get("id"),
                "source": self.class_name(it.get("source")),
                "target": self.class_name(it.get("target")),
                "success": it.get("success"),
                "distance": it.get("distance"),
                "selected_as": it.get("selected_as"),
                "images": [(k, self.src(pngs.get(k))) for k in ("original", "reconstruction", "counterfactual", "difference")],
                "path": [round(float(c), 3) for c in path[:: max(1, len(path) // 12)]],
            })
        infill = g.get("infill") or {}
        rows = [
            {"name": name, **{k: v.get(k) for k in ("deletion_auc", "insertion_auc", "deletion_gain", "insertion_gain")}}
            for name, v in (infill.get("baselines") or {}).items() if isinstance(v, Mapping)
        ]
        gen = g.get("generator") or {}
        return {
            "skipped": None,
            "generator": self.tree({k: gen.get(k) for k in ("path", "dataset_digest", "version", "image_size", "losses_final") if k in gen}),
            "success_rate": g.get("success_rate"),
            "mean_distance": g.get("mean_distance"),
            "samples": self.src(g.get("samples_png")),
            "items": items,
            "infill": rows,
            "infill_error": infill.get("error"),
            "infill_note": infill.get("note"),
        }

    def gates(self) -> dict[str, Any]:
        g = self.r.gates
        rows = []
        for e in g.expectations:
            if not isinstance(e, Mapping):
                continue
            name = e.get("expectation") or e.get("expectation_type") or e.get("type") or e.get("name") or "—"
            rows.append({"name": str(name), "success": e.get("success"), "severity": e.get("severity"),
                         "detail": self.tree({k: v for k, v in e.items()
                                              if k not in ("expectation", "expectation_type", "type", "name",
                                                           "success", "severity")})})
        return {"passed": g.passed, "fail_on": g.fail_on, "counts": g.counts, "rows": rows}

    def findings(self) -> list[dict[str, Any]]:
        groups: dict[str, list] = {}
        for f in self.r.sorted_findings():
            groups.setdefault(f.severity, []).append(
                {"code": f.code, "message": f.message, "evidence": self.tree(f.evidence) if f.evidence else None})
        return [{"severity": s, "entries": groups[s]} for s in sorted(groups, key=lambda s: -SEVERITY_RANK[s])]

    def identity(self) -> dict[str, Any]:
        m, d = self.r.model, self.r.dataset
        model_rows = [("ref", m.ref), ("digest", m.digest), ("architecture", m.arch),
                      ("classes", m.num_classes), ("parameters", f"{m.params:,}" if m.params else None)]
        if m.release:
            model_rows.append(("release", self.tree(m.release)))
        if m.data_config:
            model_rows.append(("data config", self.tree(m.data_config)))
        data_rows = [("ref", d.ref), ("digest", d.digest), ("images", d.n_images),
                     ("object masks", d.has_masks)]
        splits = sorted(d.counts, key=_split_key)
        counts = [{"cls": c, "n": [d.counts[s].get(c, 0) for s in splits]} for c in d.classes]
        extra_classes = sorted({c for s in splits for c in d.counts[s]} - set(d.classes))
        counts += [{"cls": c, "n": [d.counts[s].get(c, 0) for s in splits]} for c in extra_classes]
        return {
            "model": [(k, v if isinstance(v, dict) else self.tree(v)) for k, v in model_rows],
            "dataset": [(k, self.tree(v)) for k, v in data_rows],
            "splits": splits,
            "split_totals": [sum(d.counts[s].values()) for s in splits],
            "counts": counts,
            "classes": self.classes,
            "excluded": self.tree(d.excluded) if d.excluded else None,
            "spec": self.tree(self.r.spec) if self.r.spec else None,
            "created": self.r.created,
            "finished": self.r.finished,
            "version": self.r.imaudit_version,
        }

    def data_checks(self) -> list[dict[str, Any]]:
        out = []
        for suite, body in self.r.data_checks.items():
            if not isinstance(body, Mapping):
                out.append({"suite": suite, "summary": self.tree(body), "rows": []})
                continue
            rows = []
            for e in body.get("expectations") or []:
                if not isinstance(e, Mapping):
                    continue
                name = e.get("expectation") or e.get("expectation_type") or e.get("type") or e.get("name") or "—"
                kwargs = e.get("kwargs") if isinstance(e.get("kwargs"), Mapping) else {}
                column = e.get("column") or kwargs.get("column") or kwargs.get("column_list")
                observed = e.get("observed", e.get("observed_value", e.get("result")))
                rows.append({"name": str(name), "column": self.tree(column), "success": e.get("success"),
                             "observed": self.tree(observed), "note": self.tree(e.get("message") or e.get("note"))})
            summary = body.get("summary")
            rest = {k: v for k, v in body.items() if k not in ("expectations", "summary")}
            out.append({"suite": suite, "summary": self.tree(summary) if summary else None,
                        "extra": self.tree(rest) if rest else None, "rows": rows})
        return out

    def metrics(self) -> dict[str, Any] | None:
        if not self.r.metrics:
            return None
        splits = sorted(self.r.metrics, key=_split_key)
        base_cols = ["n", "accuracy", "top5", "loss", "ece", "nonfinite"]
        dumped = {s: self.r.metrics[s].model_dump() for s in splits}
        extra = sorted({k for d in dumped.values() for k, v in d.items() if k not in base_cols and (_num(v) or v is None)})
        cols = [c for c in base_cols + extra if any(dumped[s].get(c) is not None for s in splits)]
        return {"cols": cols, "rows": [(s, [dumped[s].get(c) for c in cols]) for s in splits]}

    def per_class(self) -> list[dict[str, Any]]:
        out = []
        for split in sorted(self.r.per_class, key=_split_key):
            rows = [r for r in self.r.per_class[split] if isinstance(r, Mapping)]
            if not rows:
                continue
            cols = [c for c in ("precision", "recall", "f1", "support") if any(c in r for r in rows)]
            cols += sorted({k for r in rows for k, v in r.items() if k not in cols and k != "class" and _num(v)})
            out.append({"split": split, "cols": cols,
                        "rows": [{"cls": self.class_name(r.get("class")), "vals": [r.get(c) for c in cols],
                                  "weak": _num(r.get("f1")) and r["f1"] < 0.5} for r in rows]})
        return out

    def confusion(self) -> list[dict[str, Any]]:
        out = []
        for split in sorted(self.r.confusion, key=_split_key):
            matrix = self.r.confusion[split]
            if not matrix:
                continue
            url = self.figure(f"confusion-{split}", lambda m=matrix, s=split: figs.confusion_png(m, self.classes, f"{s}"),
                              key=(matrix, self.classes, split))
            out.append({"split": split, "src": url})
        return out

    def calibration(self) -> list[dict[str, Any]]:
        out = []
        for split in sorted(self.r.calibration, key=_split_key):
            cal = self.r.calibration[split]
            if not isinstance(cal, Mapping):
                continue
            bins = [b for b in cal.get("bins") or [] if isinstance(b, Mapping)]
            ece = cal.get("ece")
            url = self.figure(f"reliability-{split}",
                              lambda b=bins, e=ece, s=split: figs.reliability_png(b, e if _num(e) else None, s),
                              key=(bins, ece, split)) if bins else None
            rest = {k: v for k, v in cal.items() if k not in ("bins", "ece")}
            out.append({"split": split, "ece": ece, "src": url, "extra": self.tree(rest) if rest else None})
        return out

    def fit(self) -> dict[str, Any] | None:
        f = self.r.fit
        rows = history_rows(f.history)
        if f.verdict == "unknown" and not f.reasons and not f.gap and not rows:
            return None
        curves = self.figure("learning-curves", lambda: figs.learning_curves_png(rows), key=rows) if rows else None
        return {"verdict": f.verdict, "reasons": f.reasons, "gap": self.tree(f.gap) if f.gap else None,
                "thresholds": self.tree(f.thresholds) if f.thresholds else None, "curves": curves,
                "epochs": len(rows)}

    def importance(self) -> list[dict[str, Any]]:
        out = []
        for method, body in self.r.global_importance.items():
            if not isinstance(body, Mapping):
                continue
            grid = body.get("grid")
            overall = self.figure(f"importance-{method}", lambda g=grid, m=method: figs.heatmaps_png({m: g}, cols=1),
                                  key=(grid, method)) if grid else None
            per = body.get("per_class") if isinstance(body.get("per_class"), Mapping) else {}
            shown = dict(list(per.items())[:CLASS_LIMIT])
            per_url = self.figure(f"importance-{method}-classes", lambda p=shown: figs.heatmaps_png(
                {self.class_name(k): g for k, g in p.items()}), key=(shown, self.classes)) if shown else None
            rest = {k: v for k, v in body.items() if k not in ("grid", "per_class")}
            out.append({"method": method, "overall": overall, "per_class": per_url, "n_classes": len(per),
                        "shown": len(shown), "extra": self.tree(rest) if rest else None})
        return out

    def _image_index(self) -> dict[str, str]:
        """image id -> relative image path, from the gallery (for strategy exemplars)."""
        index: dict[str, str] = {}
        for row in self._gallery_rows():
            if isinstance(row.get("image"), str):
                index[str(row.get("id"))] = row["image"]
        return index

    def _exemplar(self, item: Any, method: str, images: dict[str, str]) -> dict[str, Any]:
        if isinstance(item, Mapping):
            ident = item.get("id")
            path = item.get("image") or item.get("png") or item.get("overlay")
        else:
            ident, path = item, None
        if path is None and isinstance(ident, str) and ident.lower().endswith(IMAGE_EXT):
            path, ident = ident, None
        if path is None and ident is not None:
            overlays = self._overlays(method)
            path = overlays.get(str(ident)) or images.get(str(ident))
        return {"id": None if ident is None else str(ident), "src": self.src(path)}

    def strategies(self) -> list[dict[str, Any]]:
        out = []
        images = self._image_index() if self.r.strategies else {}
        for method, per_class in self.r.strategies.items():
            if not isinstance(per_class, Mapping):
                continue
            # spray_clusters' shape: {"classes": {cls: {"count", "k", "clusters": [...]}}}; a plain
            # {cls: [clusters]} mapping is accepted too.
            if isinstance(per_class.get("classes"), Mapping):
                per_class = {
                    cls: (v.get("clusters") if isinstance(v, Mapping) else v) for cls, v in per_class["classes"].items()
                }
            classes = []
            for cls, clusters in list(per_class.items())[:CLASS_LIMIT]:
                if not isinstance(clusters, list):
                    continue
                clusters = [c for c in clusters if isinstance(c, Mapping)]
                if not clusters:
                    continue
                maps = {f"cluster {i + 1} (n={c.get('size', len(c.get('ids') or []))})": c["mean_map"]
                        for i, c in enumerate(clusters[:CLUSTER_LIMIT]) if c.get("mean_map")}
                url = self.figure(f"strategy-{method}-{cls}", lambda m=maps: figs.heatmaps_png(m), key=maps) if maps else None
                rows = []
                for i, c in enumerate(clusters[:CLUSTER_LIMIT]):
                    ex = c.get("exemplars") or c.get("exemplar_ids") or (c.get("ids") or [])[:EXEMPLAR_LIMIT]
                    rest = {k: v for k, v in c.items()
                            if k not in ("mean_map", "exemplars", "exemplar_ids", "ids", "size")}
                    rows.append({"n": i + 1, "size": c.get("size", len(c.get("ids") or [])),
                                 "exemplars": [self._exemplar(e, method, images) for e in ex[:EXEMPLAR_LIMIT]],
                                 "extra": self.tree(rest) if rest else None})
                classes.append({"cls": self.class_name(cls), "src": url, "clusters": rows,
                                "more": max(0, len(clusters) - CLUSTER_LIMIT)})
            out.append({"method": method, "classes": classes, "more": max(0, len(per_class) - CLASS_LIMIT)})
        return out

    def quality(self) -> dict[str, Any] | None:
        per_method: dict[str, dict[str, Any]] = {}
        for method, rec in self.r.explanations.items():
            if rec.quality:
                per_method.setdefault(method, {}).update(rec.quality)
        agreement = None
        for key, body in self.r.quality.items():
            if key == "agreement":
                # agreement(): {"methods", "matrix": {a: {b: mean}}, "pairs": [...], "per_class"}
                agreement = body.get("matrix", body) if isinstance(body, Mapping) else body
            elif key in CHECK_SECTIONS:
                # Per-check, per-image detail (faithfulness/sanity/localisation): each method's
                # summary already sits in explanations.<method>.quality.
                continue
            elif isinstance(body, Mapping):
                per_method.setdefault(key, {}).update(body)
        if not per_method and agreement is None:
            return None
        flat: dict[str, dict[str, Any]] = {}
        nested: dict[str, dict[str, Any]] = {}
        for method, body in per_method.items():
            row: dict[str, Any] = {}
            for k, v in body.items():
                if _num(v) or v is None or isinstance(v, bool):
                    row[k] = v
                elif isinstance(v, Mapping):
                    for k2, v2 in v.items():
                        if _num(v2) or isinstance(v2, bool):
                            row[f"{k}.{k2}"] = v2
                        else:
                            nested.setdefault(method, {}).setdefault(k, {})[k2] = v2
                else:
                    nested.setdefault(method, {})[k] = v
            flat[method] = row
        cols: list[str] = []
        for row in flat.values():
            cols += [c for c in row if c not in cols]
        faith = self.r.quality.get("faithfulness") if isinstance(self.r.quality, Mapping) else None
        curves = {m: f["curves"] for m, f in (faith or {}).items() if isinstance(f, Mapping) and f.get("curves")}
        return {
            "curves": self.figure("faithfulness-curves", lambda: figs.faithfulness_png(curves), key=curves)
            if curves else None,
            "cols": cols,
            "rows": [(m, [flat[m].get(c) for c in cols]) for m in flat],
            "nested": [(m, self.tree(v)) for m, v in nested.items()],
            "agreement": self._matrix(agreement) if agreement is not None else None,
        }

    def _matrix(self, body: Any) -> dict[str, Any]:
        """Method agreement as a square table when it is {a: {b: value}}, otherwise generic."""
        if isinstance(body, Mapping) and body and all(isinstance(v, Mapping) for v in body.values()) \
                and all(_num(x) or x is None for v in body.values() for x in v.values()):
            names = list(body)
            names += [n for v in body.values() for n in v if n not in names]
            return {"k": "matrix", "names": names,
                    "rows": [(a, [body.get(a, {}).get(b, body.get(b, {}).get(a) if a != b else 1.0) for b in names])
                             for a in names]}
        return self.tree(body)

    def _overlays(self, method: str) -> dict[str, str]:
        rec = self.r.explanations.get(method)
        ov = (rec.model_extra or {}).get("overlays") if rec is not None else None
        return {str(k): v for k, v in ov.items()} if isinstance(ov, Mapping) else {}

    def _gallery_rows(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        sources = [self.r.artifacts.get("gallery")]
        sources += [(rec.model_extra or {}).get("gallery") for rec in self.r.explanations.values()]
        for src in sources:
            if not isinstance(src, list):
                continue
            for row in src:
                if isinstance(row, Mapping) and row.get("id") is not None:
                    merged = rows.setdefault(str(row["id"]), {})
                    ov = {**(merged.get("overlays") or {}), **(row.get("overlays") or {})}
                    merged.update(row)
                    merged["overlays"] = ov
        return list(rows.values())

    def gallery(self) -> dict[str, Any] | None:
        rows = self._gallery_rows()
        if not rows:
            return None
        methods = list(self.r.explanations)
        overlays = {m: self._overlays(m) for m in methods}
        for row in rows:
            methods += [m for m in (row.get("overlays") or {}) if m not in methods]
        groups: dict[str, list] = {"correct": [], "wrong": []}
        for row in rows:
            correct = row.get("correct")
            if not isinstance(correct, bool):
                correct = row.get("label") is not None and row.get("label") == row.get("pred")
            group = groups["correct" if correct else "wrong"]
            if len(group) >= GALLERY_LIMIT:
                group.append(None)  # counted, not shown
                continue
            ov = row.get("overlays") or {}
            group.append({
                "id": str(row.get("id")),
                "label": self.class_name(row.get("label")),
                "pred": self.class_name(row.get("pred")),
                "confidence": row.get("confidence"),
                "src": self.src(row.get("image")),
                "overlays": [(m, self.src(ov.get(m) or overlays.get(m, {}).get(str(row.get("id"))))) for m in methods],
            })
        return {
            "methods": methods,
            "groups": [{"key": k, "title": "Misclassified" if k == "wrong" else "Correct",
                        "entries": [x for x in v if x], "total": len(v)} for k, v in (("wrong", groups["wrong"]),
                                                                                  ("correct", groups["correct"]))],
            "predictions": self.src(self.r.artifacts.get("predictions")),
        }

    def views(self) -> dict[str, Any] | None:
        views = self.r.artifacts.get("views")
        if not isinstance(views, Mapping):
            return None
        out = []
        for kind, body in views.items():
            items = []
            entries = body.items() if isinstance(body, Mapping) else enumerate(body if isinstance(body, list) else [])
            for key, val in entries:
                if isinstance(val, str):
                    items.append({"title": str(key), "src": self.src(val), "caption": None})
                elif isinstance(val, Mapping):
                    png = val.get("png") or val.get("image") or val.get("path")
                    title = val.get("layer") or val.get("title") or val.get("name") or str(key)
                    shape = val.get("shape")
                    caption = "×".join(str(s) for s in shape) if isinstance(shape, list) else shape
                    items.append({"title": str(title), "src": self.src(png), "caption": caption})
                elif isinstance(val, list):
                    for i, v in enumerate(val):
                        items.append({"title": f"{key} {i}", "src": self.src(v), "caption": None})
            if items:
                out.append({"kind": kind, "entries": items})
        return {"groups": out} if out else None

    def rates(self) -> list[dict[str, Any]]:
        out = []
        for method, rec in self.r.explanations.items():
            out.append({"method": method, "applicable": rec.applicable, "reason": rec.reason, "count": rec.count,
                        "seconds": rec.seconds, "rate": rec.per_image_rate, "n_failures": len(rec.failures),
                        "failures": self.tree(rec.failures[:ROW_LIMIT]) if rec.failures else None,
                        "settings": self.tree(rec.settings) if rec.settings else None})
        return out

    def timings(self) -> dict[str, Any] | None:
        if not self.r.timings and not self.r.explanations:
            return None
        rows = [(k, v) for k, v in self.r.timings.items()]
        total = sum(v for _, v in rows if _num(v) and math.isfinite(v))
        return {"rows": rows, "total": total}
