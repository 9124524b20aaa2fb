"""Release-to-release comparison of two audits: the settings that differ (first, because they
decide what the deltas mean), metric and per-class deltas, what happened to every image
(fixed, regressed, wrong in both), the changed images with both audits' maps side by side,
and how global importance moved for every class (Spearman rank correlation of grids)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from skimage.transform import resize

from imaudit.audits.coverage_groups import by_check
from imaudit.audits.result import AuditResult
from imaudit.errors import BadInputError
from imaudit.io import atomic_write_text
from imaudit.paths import report_store
from imaudit.audits.verdict import headline_split, verdict
from imaudit.reports.history import comparable, settings_diff
from imaudit.reports.identity import model_identity
from imaudit.reports.page import Page
from imaudit.reports.store import load_audit, safe_file
from imaudit.reports.templating import render

METRICS = ("accuracy", "top5", "loss", "ece")
CLASS_METRICS = ("precision", "recall", "f1", "support")
MOVED_BELOW = 0.5  # Spearman rho under this: the class's attribution map moved
STEADY_WITHIN = 0.02  # |accuracy delta| within this: the class's accuracy did not move
ROW_LIMIT = 1000
SHOWN_IMAGES = 24  # changed images drawn with both audits' maps


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _delta(a: Any, b: Any) -> float | None:
    return float(b) - float(a) if _num(a) and _num(b) else None


def _identity(r: AuditResult, folder: Path | None) -> dict[str, Any]:
    name, version = model_identity(r)
    v = verdict(r)
    return {"id": r.id, "model": name, "version": version, "ref": r.model.ref, "digest": r.model.digest,
            "dataset": r.dataset.ref, "dataset_digest": r.dataset.digest, "created": r.created,
            "fit": r.fit.verdict, "folder": str(folder) if folder else None, "status": str(r.status),
            "verdict": v.state, "verdict_label": v.label}


def metric_deltas(a: AuditResult, b: AuditResult) -> list[dict[str, Any]]:
    """One row per (split, metric) present in either audit."""
    rows = []
    splits = list(a.metrics) + [s for s in b.metrics if s not in a.metrics]
    for split in splits:
        ma = a.metrics[split].model_dump() if split in a.metrics else {}
        mb = b.metrics[split].model_dump() if split in b.metrics else {}
        for metric in METRICS:
            va, vb = ma.get(metric), mb.get(metric)
            if va is None and vb is None:
                continue
            rows.append({"split": split, "metric": metric, "a": va, "b": vb, "delta": _delta(va, vb)})
    return rows


def _per_class_table(r: AuditResult, split: str) -> dict[str, dict[str, Any]]:
    return {str(row.get("class")): row for row in r.per_class.get(split, []) if isinstance(row, Mapping)}


def class_deltas(a: AuditResult, b: AuditResult) -> dict[str, list[dict[str, Any]]]:
    """split -> one row per class with a/b/delta of precision, recall, f1, support."""
    out: dict[str, list[dict[str, Any]]] = {}
    for split in [s for s in a.per_class if s in b.per_class]:
        ta, tb = _per_class_table(a, split), _per_class_table(b, split)
        classes = list(ta) + [c for c in tb if c not in ta]
        rows = []
        for cls in classes:
            ra, rb = ta.get(cls, {}), tb.get(cls, {})
            rows.append({"class": cls, **{m: {"a": ra.get(m), "b": rb.get(m), "delta": _delta(ra.get(m), rb.get(m))}
                                          for m in CLASS_METRICS}})
        out[split] = rows
    return out


def _predictions(r: AuditResult, folder: Path | None) -> pd.DataFrame | None:
    if folder is None:
        return None
    rel = r.artifacts.get("predictions") if isinstance(r.artifacts.get("predictions"), str) else "predictions.csv"
    path = safe_file(folder, rel)
    if path is None:
        return None
    try:
        df = pd.read_csv(path, dtype={"id": str, "split": str, "label": str, "pred_label": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BadInputError(f"{path}: unreadable predictions ({exc})") from exc
    if "id" not in df.columns or "pred" not in df.columns:
        raise BadInputError(f"{path}: needs columns 'id' and 'pred'")
    if "split" not in df.columns:
        df["split"] = ""
    if "y" in df.columns:
        df["correct"] = df["y"] == df["pred"]
    elif "label" in df.columns and "pred_label" in df.columns:
        df["correct"] = df["label"] == df["pred_label"]
    else:
        df["correct"] = pd.NA
    return df


def changed_predictions(a: AuditResult, b: AuditResult, a_folder: Path | None, b_folder: Path | None) -> dict[str, Any]:
    """Images (matched by id and split) whose prediction differs between the audits."""
    pa, pb = _predictions(a, a_folder), _predictions(b, b_folder)
    if pa is None or pb is None:
        missing = [x.id for x, p in ((a, pa), (b, pb)) if p is None]
        return {"available": False, "reason": f"predictions.csv missing for {', '.join(missing)}", "rows": []}
    keep = [c for c in ("id", "split", "label", "y", "pred", "pred_label", "confidence", "correct") if c in pa.columns]
    joined = pa[keep].merge(pb[[c for c in keep if c in pb.columns]], on=["id", "split"], suffixes=("_a", "_b"))
    right_a, right_b = joined["correct_a"] == True, joined["correct_b"] == True  # noqa: E712 (pandas masks)
    wrong_a, wrong_b = joined["correct_a"] == False, joined["correct_b"] == False  # noqa: E712
    changed = joined[joined["pred_a"] != joined["pred_b"]].copy()
    fixed = joined[wrong_a & right_b]
    broke = joined[right_a & wrong_b]
    both_wrong = joined[wrong_a & wrong_b]
    # Regressions first (right -> wrong), then fixes, then wrong -> differently wrong.
    changed["order"] = 2
    changed.loc[changed.index.intersection(fixed.index), "order"] = 1
    changed.loc[changed.index.intersection(broke.index), "order"] = 0
    changed = changed.sort_values(["order", "split", "id"])
    rows = []
    for rec in changed.head(ROW_LIMIT).to_dict("records"):
        rows.append({
            "id": rec["id"], "split": rec["split"],
            "label": rec.get("label_a", rec.get("y_a")),
            "pred_a": rec.get("pred_label_a", rec.get("pred_a")), "pred_b": rec.get("pred_label_b", rec.get("pred_b")),
            "conf_a": rec.get("confidence_a"), "conf_b": rec.get("confidence_b"),
            "kind": {0: "regressed", 1: "fixed", 2: "changed"}[int(rec["order"])],
        })
    return {"available": True, "reason": None, "n_common": int(len(joined)), "n_a": int(len(pa)), "n_b": int(len(pb)),
            "changed": int(len(changed)), "fixed": int(len(fixed)), "regressed": int(len(broke)),
            "wrong_both": int(len(both_wrong)), "wrong_both_changed": int((both_wrong["pred_a"] != both_wrong["pred_b"]).sum()),
            "right_both": int((right_a & right_b).sum()), "rows": rows}


def rank_correlation(ga: Any, gb: Any) -> tuple[float | None, bool]:
    """Spearman rho between two importance grids (b resampled to a's shape when they differ), and whether it was resampled."""
    a = np.asarray(ga, dtype=float)
    b = np.asarray(gb, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.size < 2 or b.size < 2:
        return None, False
    resampled = a.shape != b.shape
    if resampled:
        b = resize(b, a.shape, order=1, anti_aliasing=True, preserve_range=True)
    a, b = np.nan_to_num(a).ravel(), np.nan_to_num(b).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, resampled  # a constant map has no ranking
    rho = float(spearmanr(a, b).statistic)
    return (rho if math.isfinite(rho) else None), resampled


def _class_accuracy(r: AuditResult, split: str | None) -> dict[str, float]:
    """Per-class accuracy (recall) on ``split`` from the per-class table."""
    if split is None:
        return {}
    return {str(row.get("class")): float(row["recall"]) for row in r.per_class.get(split, [])
            if isinstance(row, Mapping) and _num(row.get("recall"))}


def importance_movement(a: AuditResult, b: AuditResult, *, moved_below: float = MOVED_BELOW,
                        steady_within: float = STEADY_WITHIN) -> dict[str, Any]:
    """Per method: rank correlation of the overall grid and of each class's grid; flags classes
    whose attribution moved (rho < moved_below) while their accuracy did not (|delta| <= steady_within)."""
    split = headline_split(b) or headline_split(a)
    acc_a, acc_b = _class_accuracy(a, split), _class_accuracy(b, split)
    methods: dict[str, Any] = {}
    flagged = []
    for method in [m for m in a.global_importance if m in b.global_importance]:
        ia, ib = a.global_importance[method], b.global_importance[method]
        if not isinstance(ia, Mapping) or not isinstance(ib, Mapping):
            continue
        overall, resampled = (rank_correlation(ia.get("grid"), ib.get("grid"))
                              if ia.get("grid") and ib.get("grid") else (None, False))
        pa = {str(k): v for k, v in ia["per_class"].items()} if isinstance(ia.get("per_class"), Mapping) else {}
        pb = {str(k): v for k, v in ib["per_class"].items()} if isinstance(ib.get("per_class"), Mapping) else {}
        classes = []
        for cls in list(pa) + [c for c in pb if c not in pa]:
            if cls not in pa or cls not in pb:
                classes.append({"class": cls, "rho": None, "resampled": False, "acc_a": acc_a.get(cls),
                                "acc_b": acc_b.get(cls), "acc_delta": _delta(acc_a.get(cls), acc_b.get(cls)),
                                "moved": False, "moved_not_accuracy": False,
                                "missing": "not explained in A" if cls not in pa else "not explained in B"})
                continue
            rho, res = rank_correlation(pa[cls], pb[cls])
            da = _delta(acc_a.get(cls), acc_b.get(cls))
            moved = rho is not None and rho < moved_below
            steady = da is not None and abs(da) <= steady_within
            row = {"class": cls, "rho": rho, "resampled": res, "acc_a": acc_a.get(cls), "acc_b": acc_b.get(cls),
                   "acc_delta": da, "moved": moved, "moved_not_accuracy": moved and steady, "missing": None}
            classes.append(row)
            if row["moved_not_accuracy"]:
                flagged.append({"method": method, **row})
        methods[method] = {"overall": overall, "resampled": resampled, "classes": classes}
    return {"split": split, "moved_below": moved_below, "steady_within": steady_within,
            "methods": methods, "moved_not_accuracy": flagged}


def compare_audits(a: AuditResult, b: AuditResult, *, a_folder: Path | None = None, b_folder: Path | None = None,
                   moved_below: float = MOVED_BELOW, steady_within: float = STEADY_WITHIN) -> dict[str, Any]:
    """Everything that changed from audit ``a`` (before) to ``b`` (after).

    Predictions are read from predictions.csv beside each audit; folders default to the
    audit's id in the report store.
    """
    a_folder = Path(a_folder) if a_folder else _default_folder(a)
    b_folder = Path(b_folder) if b_folder else _default_folder(b)
    return {
        "a": _identity(a, a_folder),
        "b": _identity(b, b_folder),
        "same_dataset": a.dataset.digest == b.dataset.digest,
        "settings": settings_diff(a, b),
        "comparable": {k: comparable(a, b, k) for k in ("accuracy", "faithfulness")},
        "metrics": metric_deltas(a, b),
        "per_class": class_deltas(a, b),
        "predictions": changed_predictions(a, b, a_folder, b_folder),
        "importance": importance_movement(a, b, moved_below=moved_below, steady_within=steady_within),
        "findings": _finding_changes(a, b),
        "gates": {"a": a.gates.passed, "b": b.gates.passed},
    }


# The coverage check whose run can raise a finding code: a code B lacks because B never ran that check
# was not fixed, it was not looked for.
CHECK_OF_CODE = {"shortcut": "shortcut_search", "unfaithful-explanation": "faithfulness",
                 "failed-sanity-check": "sanity", "low-method-agreement": "agreement",
                 "counterfactual-hotspot": "counterfactuals"}


def _finding_changes(a: AuditResult, b: AuditResult) -> dict[str, list[str]]:
    """Finding codes added and removed from A to B; a code gone because B did not run its check is
    ``unchecked``, not removed."""
    codes_a, codes_b = {f.code for f in a.findings}, {f.code for f in b.findings}
    checks_b = by_check(b.coverage) if isinstance(b.coverage, Mapping) else {}

    def ran_in_b(code: str) -> bool:
        check = CHECK_OF_CODE.get(code)
        if check is None or not checks_b:
            return True  # no coverage to tell: take its absence at its word
        return any(c.get("ran") for _, c in checks_b.get(check, []))

    gone = sorted(codes_a - codes_b)
    return {"added": sorted(codes_b - codes_a), "removed": [c for c in gone if ran_in_b(c)],
            "unchecked": [c for c in gone if not ran_in_b(c)], "kept": sorted(codes_a & codes_b)}


def _default_folder(r: AuditResult) -> Path | None:
    folder = report_store() / r.id
    return folder if folder.is_dir() else None


def changed_images(c: dict[str, Any], a: AuditResult, b: AuditResult, a_folder: Path, b_folder: Path,
                   a_base: str, b_base: str, explain_into: Path | None = None) -> dict[str, Any]:
    """Changed images explained in either audit: the image and each common method's map in A and in B.

    With ``explain_into`` (the compare page's folder; ``imaudit compare``), a gradient method's map that
    one audit lacks for an image the other explained is computed with that audit's model and written
    there (reports/compare_maps); such maps are flagged, and why any could not be drawn is listed."""
    pa, pb = Page(a, a_folder, base=a_base), Page(b, b_folder, base=b_base)
    ga = {row["id"]: row for row in pa.gallery_rows}
    gb = {row["id"]: row for row in pb.gallery_rows}
    methods = [m for m in b.explanations if m in a.explanations]
    rows = [row for row in c["predictions"]["rows"] if row["id"] in ga or row["id"] in gb][:SHOWN_IMAGES]
    computed: dict[str, Any] = {"maps": {}, "notes": [], "methods": []}
    if explain_into is not None and rows:
        from imaudit.reports.compare_maps import explain_changed

        shown = {"a": {i: set((r.get("overlays") or {})) for i, r in ga.items()},
                 "b": {i: set((r.get("overlays") or {})) for i, r in gb.items()}}
        computed = explain_changed(rows, a, b, a_folder, b_folder, shown, Path(explain_into))
    extra = computed["maps"]
    shown_rows = []
    for row in rows:
        ra, rb = ga.get(row["id"]), gb.get(row["id"])
        image = pb.src((rb or {}).get("image")) or pa.src((ra or {}).get("image"))
        maps = []
        for m in methods:
            sa = pa.src(((ra or {}).get("overlays") or {}).get(m))
            sb = pb.src(((rb or {}).get("overlays") or {}).get(m))
            ca, cb = sa is None and ("a", m, row["id"]) in extra, sb is None and ("b", m, row["id"]) in extra
            sa, sb = sa or extra.get(("a", m, row["id"])), sb or extra.get(("b", m, row["id"]))
            if sa or sb:
                maps.append((m, sa, sb, ca, cb))
        shown_rows.append({**row, "image": image, "maps": maps})
    return {"methods": methods, "rows": shown_rows, "computed": bool(extra), "computed_methods": computed["methods"],
            "notes": computed["notes"]}


def _base(folder: Path, out_dir: Path | None, app_base: str | None) -> str:
    if app_base is not None:
        return app_base
    if out_dir is None:
        return ""
    rel = Path(os.path.relpath(Path(folder).resolve(), out_dir.resolve())).as_posix()
    return "" if rel == "." else rel + "/"


def compare_html(a_folder: Path, b_folder: Path, *, a_href: str | None = None, b_href: str | None = None,
                 app: bool = False, out_dir: Path | None = None, a_files: str | None = None,
                 b_files: str | None = None, cmp: dict[str, Any] | None = None, explain_changed: bool = False,
                 **page: Any) -> str:
    """The comparison page as HTML text for two audit folders.

    Image URLs are relative to ``out_dir`` (where the page is written) or, in the app,
    prefixed with ``a_files``/``b_files``; ``page`` holds the app's per-request template values.
    """
    a, b = load_audit(a_folder), load_audit(b_folder)
    cmp = cmp or compare_audits(a, b, a_folder=a_folder, b_folder=b_folder)
    images = changed_images(cmp, a, b, Path(a_folder), Path(b_folder), _base(a_folder, out_dir, a_files),
                            _base(b_folder, out_dir, b_files),
                            explain_into=out_dir if explain_changed and out_dir is not None else None)
    return render("compare.html", c=cmp, images=images, a_href=a_href, b_href=b_href, app=app,
                  title=f"Compare {a.id} → {b.id}", shown=200, **page)


def summary_lines(c: dict[str, Any]) -> list[str]:
    """A short terminal summary of a comparison (what `imaudit compare` prints)."""
    lines = [f"A {c['a']['id']} ({c['a']['verdict_label']}) -> B {c['b']['id']} ({c['b']['verdict_label']})"]
    if c["settings"]:
        lines.append("settings differ: " + "; ".join(f"{d['name']} {d['a_text']} -> {d['b_text']}" for d in c["settings"][:6])
                     + (f"; +{len(c['settings']) - 6} more" if len(c["settings"]) > 6 else ""))
    for row in c["metrics"]:
        if row["metric"] == "accuracy" and row["delta"] is not None:
            lines.append(f"{row['split']} accuracy {row['a']:.3f} -> {row['b']:.3f} ({row['delta']:+.3f})")
    p = c["predictions"]
    if p["available"]:
        lines.append(f"{p['n_common']} images in both: {p['fixed']} fixed, {p['regressed']} regressed, "
                     f"{p['wrong_both']} wrong in both ({p['wrong_both_changed']} with a different wrong class)")
    else:
        lines.append(f"predictions not compared: {p['reason']}")
    f = c["findings"]
    if f["added"] or f["removed"]:
        lines.append(f"findings added: {', '.join(f['added']) or 'none'}; removed: {', '.join(f['removed']) or 'none'}")
    if f.get("unchecked"):
        lines.append(f"not checked in B (its check did not run): {', '.join(f['unchecked'])}")
    moved = c["importance"]["moved_not_accuracy"]
    if moved:
        why = "" if c["comparable"]["faithfulness"] else " (explanation settings differ)"
        lines.append(f"attribution moved while accuracy did not{why}: " + ", ".join(f"{m['class']} ({m['method']})" for m in moved[:6]))
    return lines


def compare_folders(a_folder: Path, b_folder: Path) -> dict[str, Any]:
    """compare_audits for two audit folders."""
    return compare_audits(load_audit(a_folder), load_audit(b_folder), a_folder=Path(a_folder), b_folder=Path(b_folder))


def render_compare(a_folder: Path, b_folder: Path, out: Path, *, cmp: dict[str, Any] | None = None,
                   explain_changed: bool = True) -> Path:
    """Write compare.html for audits ``a_folder`` (before) and ``b_folder`` (after).

    ``out`` is the file to write, or a folder (an existing one, or a path without a suffix)
    that receives compare.html. ``explain_changed``: compute the gradient maps a changed image lacks in
    one audit (reports/compare_maps), written under compare-maps/ beside the page.
    """
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / "compare.html"
    base = out.resolve().parent

    def href(folder: Path) -> str | None:
        report = Path(folder).resolve() / "report.html"
        return Path(os.path.relpath(report, base)).as_posix() if report.is_file() else None

    html = compare_html(Path(a_folder), Path(b_folder), a_href=href(a_folder), b_href=href(b_folder), out_dir=base,
                        cmp=cmp, explain_changed=explain_changed)
    return atomic_write_text(out, html)
