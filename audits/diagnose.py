"""Metrics, calibration and the fit verdict, turned into findings.

Values (metrics, tables) are kept apart from their judgement (findings with
thresholds from AuditSpec), as deepchecks keeps a check's value apart from
its condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from imaudit.audits.predict import Predictions, softmax
from imaudit.audits.result import Finding, FitResult, SplitMetrics
from imaudit.audits.spec import CalibrationThresholds, FitThresholds, Thresholds


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error with its reliability table (Guo et al. 2017).

    ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)| over equal-width confidence
    bins. Written by hand: sklearn's calibration_curve is binary-only and
    drops empty bins, and the report needs the per-bin counts.
    """
    n = len(confidence)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        cnt = int(m.sum())
        conf = float(confidence[m].mean()) if cnt else None
        acc = float(correct[m].mean()) if cnt else None
        if cnt:
            ece += cnt / n * abs(acc - conf)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": cnt, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece) if n else None, "bins": rows}


@dataclass
class SplitDiagnosis:
    metrics: SplitMetrics
    per_class: list[dict[str, Any]]
    confusion: list[list[int]]
    calibration: dict[str, Any]


def diagnose_split(table: pd.DataFrame, logits: np.ndarray, classes: list[str], bins: int = 15) -> SplitDiagnosis:
    """Accuracy, top-5, loss, per-class P/R/F1, confusion and calibration of one split.

    These use the table's main columns: the ``all`` view, or for a subset audit
    (the table has ``*_full`` columns) the ``restricted`` view.
    """
    view = "restricted" if "correct_full" in table.columns else "all"
    k = len(classes)
    finite = table["finite"].to_numpy(dtype=bool)
    t, lg = table[finite], logits[finite]
    n = len(t)
    y, pred = t["y"].to_numpy(), t["pred"].to_numpy()
    if n == 0:
        return SplitDiagnosis(
            SplitMetrics(view=view, n=0, accuracy=None, loss=None, ece=None, nonfinite=int((~finite).sum())),
            [],
            [[0] * k for _ in range(k)],
            {"ece": None, "bins": []},
        )
    probs = softmax(lg)
    topk = min(5, k)
    top = np.argsort(-probs, axis=1)[:, :topk]
    cal = reliability(t["confidence"].to_numpy(), t["correct"].to_numpy(dtype=float), bins)
    p, r, f1, s = precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    per_class = [
        {"class": c, "precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    ]
    metrics = SplitMetrics(
        view=view,
        n=n,
        accuracy=float((y == pred).mean()),
        top5=float((top == y[:, None]).any(axis=1).mean()),
        loss=float(t["loss"].mean()),
        ece=cal["ece"],
        nonfinite=int((~finite).sum()),
    )
    cm = confusion_matrix(y, pred, labels=list(range(k)))
    return SplitDiagnosis(metrics, per_class, cm.tolist(), cal)


def full_view_metrics(table: pd.DataFrame, bins: int = 15) -> SplitMetrics | None:
    """The ``full`` view of one split of a subset audit: top-1 over all outputs (None for other audits)."""
    if "correct_full" not in table.columns:
        return None
    finite = table["finite"].to_numpy(dtype=bool)
    t = table[finite]
    if not len(t):
        return SplitMetrics(view="full", n=0, accuracy=None, loss=None, ece=None, nonfinite=int((~finite).sum()))
    correct = t["correct_full"].to_numpy(dtype=bool)
    return SplitMetrics(
        view="full",
        n=len(t),
        accuracy=float(correct.mean()),
        top5=float(t["top5_correct_full"].to_numpy(dtype=bool).mean()),
        loss=float(t["loss_full"].mean()),
        ece=reliability(t["confidence_full"].to_numpy(), correct.astype(float), bins)["ece"],
        nonfinite=int((~finite).sum()),
        outside=float(1.0 - t["in_classes"].to_numpy(dtype=bool).mean()),
    )


def history_overfitting(history: list[dict[str, Any]] | None, th: FitThresholds) -> str | None:
    """A reason string when the loss curves show overfitting, else None.

    Pattern: val loss bottoms out, then rises for at least ``history_patience``
    epochs to more than (1 + history_rise) x its minimum while train loss
    keeps falling.
    """
    rows = [r for r in (history or []) if r.get("val_loss") is not None and r.get("train_loss") is not None]
    if len(rows) < th.history_patience + 2:
        return None
    val = np.array([r["val_loss"] for r in rows], float)
    tr = np.array([r["train_loss"] for r in rows], float)
    best = int(np.argmin(val))
    after = len(val) - 1 - best
    if after >= th.history_patience and val[-1] > val[best] * (1 + th.history_rise) and tr[-1] < tr[best]:
        return (
            f"val loss rose from {val[best]:.3f} (epoch {rows[best].get('epoch', best + 1)}) to {val[-1]:.3f} "
            f"over {after} epochs while train loss fell to {tr[-1]:.3f}"
        )
    return None


def fit_verdict(
    metrics: dict[str, SplitMetrics], num_classes: int, th: FitThresholds, history: list[dict[str, Any]] | None = None
) -> FitResult:
    """ok / overfitting / underfitting from the train-vs-val gap and, when present, the training history."""
    tr, va = metrics.get("train"), metrics.get("val") or metrics.get("test")
    gap: dict[str, float | None] = {"accuracy": None, "loss": None}
    reasons: list[str] = []
    verdict = "unknown"
    chance = 1.0 / max(num_classes, 1)
    if tr and va and tr.accuracy is not None and va.accuracy is not None:
        verdict = "ok"
        gap["accuracy"] = tr.accuracy - va.accuracy
        gap["loss"] = (va.loss - tr.loss) if (va.loss is not None and tr.loss is not None) else None
        floor = chance + th.underfit_margin * (1 - chance)
        loss_ratio = (va.loss / max(tr.loss, 1e-6)) if gap["loss"] is not None else None
        if tr.accuracy < floor:
            verdict = "underfitting"
            reasons.append(f"train accuracy {tr.accuracy:.3f} is below {floor:.3f} (chance {chance:.3f} + margin)")
        elif gap["accuracy"] > th.overfit_accuracy_gap:
            verdict = "overfitting"
            reasons.append(
                f"train accuracy {tr.accuracy:.3f} exceeds val {va.accuracy:.3f} by {gap['accuracy']:.3f} "
                f"(> {th.overfit_accuracy_gap})"
            )
        elif loss_ratio is not None and loss_ratio > th.overfit_loss_ratio and gap["accuracy"] > th.overfit_accuracy_gap / 2:
            verdict = "overfitting"
            reasons.append(f"val loss is {loss_ratio:.1f}x train loss (> {th.overfit_loss_ratio})")
    hist_reason = history_overfitting(history, th)
    if hist_reason and verdict in ("ok", "unknown"):
        verdict = "overfitting"
    if hist_reason:
        reasons.append(f"training history: {hist_reason}")
    if verdict == "unknown":
        reasons.append("needs both a train and a val (or test) split with finite predictions")
    return FitResult(
        verdict=verdict,
        reasons=reasons,
        gap=gap,
        thresholds=th.model_dump(),
        history={"rows": history, "overfitting_pattern": hist_reason} if history else None,
    )


@dataclass
class Diagnosis:
    metrics: dict[str, SplitMetrics] = field(default_factory=dict)
    metrics_full: dict[str, SplitMetrics] = field(default_factory=dict)  # subset audits only
    per_class: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit: FitResult = field(default_factory=lambda: FitResult(verdict="unknown"))
    findings: list[Finding] = field(default_factory=list)


def calibration_findings(cal: dict[str, dict[str, Any]], th: CalibrationThresholds) -> list[Finding]:
    """`miscalibration` on the evaluation split (val, else test)."""
    split = "val" if "val" in cal else ("test" if "test" in cal else None)
    ece = cal[split]["ece"] if split else None
    if ece is None or ece <= th.ece_warning:
        return []
    sev = "error" if ece > th.ece_error else "warning"
    return [
        Finding(
            code="miscalibration",
            severity=sev,
            message=f"{split} expected calibration error is {ece:.3f} (limit {th.ece_warning})",
            evidence={"split": split, "ece": ece, "ece_warning": th.ece_warning, "ece_error": th.ece_error},
        )
    ]


def fit_findings(fit: FitResult, th: FitThresholds) -> list[Finding]:
    if fit.verdict not in ("overfitting", "underfitting"):
        return []
    gap = fit.gap.get("accuracy")
    severe = fit.verdict == "underfitting" or (gap is not None and gap > 2 * th.overfit_accuracy_gap)
    return [
        Finding(
            code=fit.verdict,
            severity="error" if severe else "warning",
            message="; ".join(fit.reasons),
            evidence={"gap": fit.gap, "thresholds": th.model_dump()},
        )
    ]


def weak_class_findings(per_class: list[dict[str, Any]], accuracy: float | None, split: str) -> list[Finding]:
    """`weak-class`: a class whose recall is under half the split's accuracy."""
    if accuracy is None:
        return []
    weak = [c for c in per_class if c["support"] > 0 and c["recall"] < 0.5 * accuracy]
    if not weak:
        return []
    names = ", ".join(f"{c['class']} ({c['recall']:.2f})" for c in weak[:10])
    return [
        Finding(
            code="weak-class",
            severity="warning",
            message=f"{len(weak)} class(es) have {split} recall under half the accuracy {accuracy:.2f}: {names}",
            evidence={"split": split, "classes": weak},
        )
    ]


def diagnose(pred: Predictions, classes: list[str], thresholds: Thresholds, history: list[dict] | None = None) -> Diagnosis:
    """Everything in the metrics half of audit.json, plus its findings."""
    d = Diagnosis()
    for split in pd.unique(pred.table["split"]):
        t, lg = pred.split(split)
        s = diagnose_split(t, lg, classes, thresholds.calibration.bins)
        d.metrics[split], d.per_class[split], d.confusion[split], d.calibration[split] = (
            s.metrics,
            s.per_class,
            s.confusion,
            s.calibration,
        )
        full = full_view_metrics(t, thresholds.calibration.bins)
        if full is not None:
            d.metrics_full[split] = full
    d.fit = fit_verdict(d.metrics, len(classes), thresholds.fit, history)
    d.findings += fit_findings(d.fit, thresholds.fit)
    d.findings += calibration_findings(d.calibration, thresholds.calibration)
    ev = "val" if "val" in d.metrics else ("test" if "test" in d.metrics else None)
    if ev:
        d.findings += weak_class_findings(d.per_class[ev], d.metrics[ev].accuracy, ev)
    return d
