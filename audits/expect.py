"""Data gates: Great Expectations suites over the manifest and over predictions.

Checks that span rows (an image in two splits, an empty class in a split) are
first turned into per-row columns or small tables with pandas; GX then
validates those, so every gate result is a real GX validation result. Each
failed check becomes a Finding whose evidence (ids, paths, counts) comes from
the same tables.

GX starts slowly (~2 s), so one ephemeral context is built per process, on
first use, and reused; a lock guards it because Prefect may run tasks in
threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imaudit.audits.data import DatasetBundle
from imaudit.audits.result import Finding
from imaudit.audits.spec import DataThresholds
from imaudit.errors import BadInputError
from imaudit.io import text_safe

COMMON_MODES = ["RGB", "L"]  # anything else is converted on load, worth a note
PROB_SUM_TOLERANCE = 1e-3
MAX_EVIDENCE = 50  # rows listed in a finding's evidence; counts are always complete

_lock = threading.RLock()
_state: dict[str, Any] = {}


@dataclass
class GateReport:
    """One suite's outcome: GX expectation records, findings and a JSON-ready summary."""

    suite: str
    expectations: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return all(e["success"] for e in self.expectations)


# --- manifest suite --------------------------------------------------------------------------

def check_manifest(bundle: DatasetBundle, thresholds: DataThresholds) -> GateReport:
    """Validate a dataset's manifest: labels, empty classes, unreadable files, leakage, balance, sizes, modes."""
    gx = _gx()
    exp = gx["expectations"]
    m = bundle.manifest.copy()
    # GX hashes the frame as UTF-8: file paths that are not UTF-8 enter (and are quoted) escaped.
    for col in ("path", "mask"):
        m[col] = m[col].map(lambda p: text_safe(p) if isinstance(p, str) else p)
    m["n_splits_of_file"] = m.groupby("sha256")["split"].transform("nunique").astype(int)
    files = pd.DataFrame(
        {"path": list(m["path"]) + [e["path"] for e in bundle.excluded],
         "readable": [True] * len(m) + [False] * len(bundle.excluded)}
    )
    counts = _class_counts(bundle)
    balance = _balance(counts)

    report = GateReport(suite="manifest")
    res = {}
    res |= _validate(report, "manifest", m, {
        "ids": exp.ExpectColumnValuesToBeUnique(column="id"),
        "labels": exp.ExpectColumnValuesToBeInSet(column="label", value_set=list(bundle.classes)),
        "hashes": exp.ExpectColumnValuesToNotBeNull(column="sha256"),
        "leakage": exp.ExpectColumnValuesToBeBetween(column="n_splits_of_file", min_value=1, max_value=1),
        "duplicates": exp.ExpectCompoundColumnsToBeUnique(column_list=["split", "sha256"]),
        "width": exp.ExpectColumnValuesToBeBetween(column="width", min_value=1),
        "height": exp.ExpectColumnValuesToBeBetween(column="height", min_value=1),
        "modes": exp.ExpectColumnValuesToBeInSet(column="mode", value_set=COMMON_MODES),
    })
    res |= _validate(report, "files", files, {
        "readable": exp.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
    })
    res |= _validate(report, "class_counts", counts, {
        "empty": exp.ExpectColumnValuesToBeBetween(column="count", min_value=1),
    })
    res |= _validate(report, "split_balance", balance, {
        "imbalance": exp.ExpectColumnValuesToBeBetween(column="imbalance_ratio", max_value=thresholds.imbalance_ratio),
    })

    f = report.findings
    if not res["ids"]:
        dup = m.loc[m["id"].duplicated(keep=False), "id"]
        f.append(Finding(code="duplicate-ids", severity="error", message=f"{dup.nunique()} manifest ids are not unique",
                         evidence={"ids": dup.unique()[:MAX_EVIDENCE].tolist()}))
    if not res["labels"]:
        bad = m.loc[~m["label"].isin(bundle.classes)]
        f.append(Finding(code="unknown-labels", severity="error",
                         message=f"{len(bad)} images have labels outside the class list",
                         evidence={"count": len(bad), "labels": sorted(bad["label"].unique())[:MAX_EVIDENCE]}))
    if not res["empty"]:
        for split, rows in counts[counts["count"] == 0].groupby("split", sort=False):
            names = rows["class"].tolist()
            listed = ", ".join(repr(c) for c in names)
            f.append(Finding(
                code="empty-class", severity="error",
                message=f"split {split!r} has no images of class{'es' if len(names) > 1 else ''} {listed}",
                evidence={"split": split, "classes": names},
            ))
    if not res["readable"]:
        n = len(bundle.excluded)
        f.append(Finding(
            code="corrupt-images", severity="warning",
            message=f"{n} unreadable file{'s' if n > 1 else ''} left out (e.g. {bundle.excluded[0]['path']}: "
                    f"{bundle.excluded[0]['reason']})",
            evidence={"count": n, "files": [{"path": e["path"], "reason": e["reason"], "split": e.get("split")}
                                            for e in bundle.excluded[:MAX_EVIDENCE]]},
        ))
    if not res["leakage"]:
        groups = _leak_groups(m)
        n_img = int((m["n_splits_of_file"] > 1).sum())
        f.append(Finding(
            code="data-leakage", severity="error",
            message=f"{len(groups)} identical file{'s' if len(groups) > 1 else ''} appear in more than one split "
                    f"({n_img} images), e.g. {groups[0]['ids'][0]} and {groups[0]['ids'][1]}",
            evidence={"count": len(groups), "images": n_img, "pairs": groups[:MAX_EVIDENCE]},
        ))
    if not res["duplicates"]:
        dup = m[m.duplicated(["split", "sha256"], keep=False)]
        extra = int(m.duplicated(["split", "sha256"]).sum())
        f.append(Finding(
            code="duplicate-images", severity="info",
            message=f"{extra} exact duplicate image{'s' if extra > 1 else ''} within a split",
            evidence={"count": extra, "groups": [
                {"split": s, "sha256": h, "ids": g["id"].tolist()}
                for (s, h), g in list(dup.groupby(["split", "sha256"]))[:MAX_EVIDENCE]]},
        ))
    if not res["imbalance"]:
        for row in balance[balance["imbalance_ratio"] > thresholds.imbalance_ratio].itertuples():
            f.append(Finding(
                code="class-imbalance", severity="warning",
                message=f"split {row.split!r}: largest class {row.max_class!r} ({row.max_count}) has "
                        f"{row.imbalance_ratio:.1f}x the images of the smallest {row.min_class!r} ({row.min_count}); "
                        f"limit {thresholds.imbalance_ratio:g}x",
                evidence={"split": row.split, "ratio": float(row.imbalance_ratio), "limit": thresholds.imbalance_ratio,
                          "max_class": row.max_class, "max_count": int(row.max_count),
                          "min_class": row.min_class, "min_count": int(row.min_count)},
            ))
    modes = {str(k): int(v) for k, v in m["mode"].value_counts().items()}
    if not res["modes"]:
        odd = {k: v for k, v in modes.items() if k not in COMMON_MODES}
        f.append(Finding(
            code="odd-image-modes", severity="info",
            message="images in modes " + ", ".join(f"{k} ({v})" for k, v in odd.items()) + " are converted to RGB",
            evidence={"modes": odd},
        ))

    report.summary = {
        "n_images": len(m),
        "n_excluded": len(bundle.excluded),
        "n_classes": len(bundle.classes),
        "split_method": bundle.split_method,
        "counts": bundle.counts(),
        "sizes": {dim: _stats(m[dim]) for dim in ("width", "height")},
        "modes": modes,
        "excluded_reasons": dict(Counter(e["reason"].split(" (")[0] for e in bundle.excluded)),
        "duplicates": {
            "across_splits_files": int(m.loc[m["n_splits_of_file"] > 1, "sha256"].nunique()),
            "within_split_copies": int(m.duplicated(["split", "sha256"]).sum()),
        },
        "imbalance": {r.split: _finite(r.imbalance_ratio) for r in balance.itertuples()},
        "has_masks": bundle.has_masks,
    }
    return report


def _class_counts(bundle: DatasetBundle) -> pd.DataFrame:
    """One row per (split, class), zeros included: what 'no class empty in any split' is checked on."""
    rows = [(s, c, n) for s, per in bundle.counts().items() for c, n in per.items()]
    return pd.DataFrame(rows, columns=["split", "class", "count"]).astype({"count": int})


def _balance(counts: pd.DataFrame) -> pd.DataFrame:
    """Per split: the largest and smallest non-empty class and their ratio (empty classes are their own finding)."""
    out = []
    for split, g in counts[counts["count"] > 0].groupby("split", sort=False):
        hi, lo = g.loc[g["count"].idxmax()], g.loc[g["count"].idxmin()]
        out.append({"split": split, "max_class": hi["class"], "max_count": int(hi["count"]),
                    "min_class": lo["class"], "min_count": int(lo["count"]),
                    "imbalance_ratio": float(hi["count"]) / float(lo["count"])})
    cols = ["split", "max_class", "max_count", "min_class", "min_count", "imbalance_ratio"]
    return pd.DataFrame(out, columns=cols).astype({"imbalance_ratio": float})


def _leak_groups(m: pd.DataFrame) -> list[dict]:
    """Identical files found in several splits: their ids, paths and splits."""
    leaked = m[m["n_splits_of_file"] > 1]
    return [
        {"sha256": h, "ids": g["id"].tolist(), "paths": g["path"].tolist(), "splits": g["split"].tolist()}
        for h, g in leaked.groupby("sha256", sort=False)
    ]


# --- predictions suite -----------------------------------------------------------------------

def check_predictions(pred: pd.DataFrame, probs: np.ndarray, logits: np.ndarray) -> GateReport:
    """Validate model outputs: finite logits, probabilities in [0, 1] summing to 1, valid class indices.

    ``probs`` and ``logits`` are (N, K) arrays aligned with the rows of ``pred``.
    """
    probs, logits = np.asarray(probs, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or probs.shape != logits.shape or len(logits) != len(pred):
        raise BadInputError(
            f"predictions: logits {logits.shape} and probs {probs.shape} must both be (N, K) with N = {len(pred)} table rows"
        )
    gx = _gx()
    exp = gx["expectations"]
    k = logits.shape[1]
    t = pred.reset_index(drop=True).copy()
    t["logits_finite"] = np.isfinite(logits).all(axis=1)
    p_ok = np.isfinite(probs).all(axis=1)
    # Non-finite probabilities from finite logits are a softmax bug, not a model's NaN.
    t["probs_finite"] = p_ok | ~t["logits_finite"].to_numpy()
    # Range checks run on rows with finite probabilities (NaN counts as missing
    # in GX); rows with non-finite outputs are reported once, as such.
    t["prob_min"] = np.where(p_ok, probs.min(axis=1, initial=np.inf), np.nan)
    t["prob_max"] = np.where(p_ok, probs.max(axis=1, initial=-np.inf), np.nan)
    t["prob_sum"] = np.where(p_ok, probs.sum(axis=1), np.nan)

    report = GateReport(suite="predictions")
    checks = {
        "finite": exp.ExpectColumnValuesToBeInSet(column="logits_finite", value_set=[True]),
        "probs_finite": exp.ExpectColumnValuesToBeInSet(column="probs_finite", value_set=[True]),
        "prob_min": exp.ExpectColumnValuesToBeBetween(column="prob_min", min_value=0.0, max_value=1.0),
        "prob_max": exp.ExpectColumnValuesToBeBetween(column="prob_max", min_value=0.0, max_value=1.0),
        "prob_sum": exp.ExpectColumnValuesToBeBetween(
            column="prob_sum", min_value=1 - PROB_SUM_TOLERANCE, max_value=1 + PROB_SUM_TOLERANCE),
    }
    if "id" in t.columns:
        checks["ids"] = exp.ExpectColumnValuesToBeUnique(column="id")
    for col in ("y", "pred"):
        if col in t.columns:
            checks[col] = exp.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=k - 1)
    res = _validate(report, "predictions", t, checks)

    ids = t["id"].astype(str) if "id" in t.columns else pd.Series(t.index.astype(str))
    f = report.findings
    bad_logits = ~t["logits_finite"]
    if not res["finite"]:
        n = int(bad_logits.sum())
        by_split = {str(s): int(v) for s, v in t.loc[bad_logits, "split"].value_counts().items()} if "split" in t else {}
        f.append(Finding(
            code="nonfinite-outputs", severity="error",
            message=f"the model returned NaN or infinite logits for {n} of {len(t)} images",
            evidence={"count": n, "by_split": by_split, "ids": ids[bad_logits].tolist()[:MAX_EVIDENCE]},
        ))
    bad_probs = (
        ((t["prob_min"] < 0) | (t["prob_max"] > 1) | ((t["prob_sum"] - 1).abs() > PROB_SUM_TOLERANCE))
        | ~t["probs_finite"]
    )
    if not all(res[c] for c in ("probs_finite", "prob_min", "prob_max", "prob_sum")):
        n = int(bad_probs.sum())
        f.append(Finding(
            code="invalid-probabilities", severity="error",
            message=f"{n} rows of probabilities lie outside [0, 1] or do not sum to 1 (tolerance {PROB_SUM_TOLERANCE:g})",
            evidence={"count": n, "ids": ids[bad_probs].tolist()[:MAX_EVIDENCE]},
        ))
    bad_idx = [c for c in ("y", "pred") if c in res and not res[c]]
    if bad_idx:
        f.append(Finding(
            code="invalid-class-index", severity="error",
            message=f"column{'s' if len(bad_idx) > 1 else ''} {', '.join(bad_idx)} hold class indices outside 0..{k - 1}",
            evidence={"columns": bad_idx},
        ))
    if "ids" in res and not res["ids"]:
        f.append(Finding(code="duplicate-ids", severity="error", message="prediction ids are not unique",
                         evidence={"ids": ids[ids.duplicated()].unique()[:MAX_EVIDENCE].tolist()}))

    report.summary = {
        "n": len(t),
        "n_classes": k,
        "nonfinite": int(bad_logits.sum()),
        "invalid_probabilities": int(bad_probs.sum()),
        "per_split": {str(s): int(v) for s, v in t["split"].value_counts().items()} if "split" in t else {},
        "prob_sum": _stats(t["prob_sum"]),
    }
    return report


# --- GX plumbing -----------------------------------------------------------------------------

def _gx() -> dict[str, Any]:
    """The process-wide GX context with one pandas data source (built on first use)."""
    with _lock:
        if not _state:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            # GX logs its ephemeral docs folder at INFO on every start: noise in a CLI's output.
            logging.getLogger("great_expectations").setLevel(logging.WARNING)
            import great_expectations as gx
            import great_expectations.expectations as gxe
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # ... and this module pins its own logger to INFO at import time.
            logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _state.update(
                gx=gx, expectations=gxe, context=context,
                source=context.data_sources.add_pandas("imaudit"), batches={},
            )
        return _state


def _validate(report: GateReport, table: str, df: pd.DataFrame, checks: dict[str, Any]) -> dict[str, bool]:
    """Validate ``df`` against the named expectations; append records to ``report``; name -> success.

    An expectation that raises inside GX counts as failed and its error is
    recorded, so a broken check can never pass silently.
    """
    gx = _gx()
    with _lock:
        batches = gx["batches"]
        if table not in batches:
            batches[table] = gx["source"].add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole")
        suite = gx["gx"].ExpectationSuite(name=f"{report.suite}.{table}")
        for name, expectation in checks.items():
            expectation.meta = {"check": name}
            suite.add_expectation(expectation)
        batch = batches[table].get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format="SUMMARY")

    out: dict[str, bool] = {}
    for r in result.results:
        cfg, res = r.expectation_config, r.result or {}
        name = (cfg.meta or {}).get("check", cfg.type)
        error = (r.exception_info or {}).get("exception_message") if (r.exception_info or {}).get("raised_exception") else None
        out[name] = bool(r.success) and error is None
        record = {
            "suite": report.suite,
            "table": table,
            "check": name,
            "expectation": cfg.type,
            "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
            "success": out[name],
            "unexpected_count": _plain(res.get("unexpected_count")),
            "observed": _plain(res.get("observed_value")),
            "details": {
                "element_count": _plain(res.get("element_count")),
                "partial_unexpected": _plain((res.get("partial_unexpected_list") or [])[:5]),
            },
        }
        if error:
            record["details"]["error"] = str(error).splitlines()[0][:300]
            report.findings.append(Finding(
                code="gate-error", severity="warning",
                message=f"data gate check {report.suite}.{name} could not run: {record['details']['error']}",
                evidence={"table": table, "expectation": cfg.type},
            ))
        report.expectations.append(record)
    missing = set(checks) - set(out)
    if missing:  # would mean GX dropped an expectation: never treat that as a pass
        raise RuntimeError(f"GX returned no result for checks {sorted(missing)} of {report.suite}.{table}")
    return out


def _stats(s: pd.Series) -> dict[str, float | None]:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return {"min": None, "median": None, "max": None}
    return {"min": _finite(s.min()), "median": _finite(s.median()), "max": _finite(s.max())}


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _plain(v: Any) -> Any:
    """GX results hold numpy scalars, tuples and NaN: make them JSON-ready."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return _finite(v)
    if v is None or isinstance(v, str):
        return v
    return str(v)
