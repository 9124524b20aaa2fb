"""Diagnostics: ECE by hand, fit verdicts from metrics and from training histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imaudit.audits.diagnose import diagnose, diagnose_split, fit_verdict, history_overfitting, reliability
from imaudit.audits.predict import Predictions, build_table
from imaudit.audits.result import SplitMetrics
from imaudit.audits.spec import FitThresholds, Thresholds


def test_ece_matches_hand_computation():
    # Two bins used (of 2): [0, .5] holds confidences .3 (wrong) and .4 (right) -> |0.5 - 0.35| = .15
    # (.5, 1] holds .9 (right), .8 (right) -> |1 - .85| = .15; ECE = 2/4*.15 + 2/4*.15 = .15
    conf = np.array([0.3, 0.4, 0.9, 0.8])
    correct = np.array([0, 1, 1, 1], float)
    r = reliability(conf, correct, bins=2)
    assert r["ece"] == pytest.approx(0.15)
    assert [b["count"] for b in r["bins"]] == [2, 2]
    assert r["bins"][0]["accuracy"] == pytest.approx(0.5)


def test_perfectly_calibrated_has_zero_ece():
    conf = np.full(10, 0.7)
    correct = np.array([1] * 7 + [0] * 3, float)
    assert reliability(conf, correct)["ece"] == pytest.approx(0.0, abs=1e-12)


def m(acc, loss):
    return SplitMetrics(n=100, accuracy=acc, loss=loss, ece=0.0)


@pytest.mark.parametrize(
    "train,val,expected",
    [
        (m(0.99, 0.02), m(0.97, 0.08), "ok"),
        (m(1.00, 0.001), m(0.60, 1.5), "overfitting"),
        (m(0.20, 2.2), m(0.19, 2.2), "underfitting"),
        (m(0.93, 0.10), m(0.85, 0.5), "overfitting"),  # loss ratio 5x with an accuracy gap of 0.08
    ],
)
def test_fit_verdict(train, val, expected):
    fit = fit_verdict({"train": train, "val": val}, num_classes=10, th=FitThresholds())
    assert fit.verdict == expected
    assert fit.gap["accuracy"] == pytest.approx(train.accuracy - val.accuracy)


def test_fit_verdict_needs_two_splits():
    assert fit_verdict({"val": m(0.9, 0.3)}, 10, FitThresholds()).verdict == "unknown"


def test_history_pattern_detects_rising_val_loss():
    th = FitThresholds(history_patience=3, history_rise=0.1)
    rising = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": v} for i, v in enumerate([1.0, 0.6, 0.5, 0.6, 0.7, 0.8])]
    falling = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "val_loss": 1.0 / (i + 1)} for i in range(6)]
    assert history_overfitting(rising, th) is not None
    assert history_overfitting(falling, th) is None
    fit = fit_verdict({"train": m(0.95, 0.1), "val": m(0.93, 0.2)}, 10, th, rising)
    assert fit.verdict == "overfitting" and "history" in fit.reasons[-1]


def _preds(labels, logits, split="val"):
    rows = pd.DataFrame({"id": [f"i{i}" for i in range(len(labels))], "label": labels, "split": split})
    return build_table(rows, ["a", "b", "c"], np.asarray(logits, np.float32))


def test_nonfinite_rows_are_flagged_not_scored():
    t = _preds(["a", "b", "c"], [[5, 0, 0], [np.nan, 0, 0], [0, 0, 5]])
    assert t["finite"].tolist() == [True, False, True]
    s = diagnose_split(t, np.asarray([[5, 0, 0], [np.nan, 0, 0], [0, 0, 5]], np.float32), ["a", "b", "c"])
    assert s.metrics.n == 2 and s.metrics.nonfinite == 1
    assert s.metrics.accuracy == 1.0


def test_per_class_and_confusion():
    logits = [[5, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]]
    t = _preds(["a", "b", "b", "c"], logits)
    s = diagnose_split(t, np.asarray(logits, np.float32), ["a", "b", "c"])
    assert s.confusion == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    b = next(r for r in s.per_class if r["class"] == "b")
    assert b["recall"] == pytest.approx(0.5) and b["precision"] == pytest.approx(1.0)
    assert s.metrics.accuracy == pytest.approx(0.75)


def test_diagnose_emits_findings():
    # Train perfect and confident, val mostly wrong but confident: overfitting + miscalibration.
    n = 30
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    labels = np.array(["a", "b", "c"])[y]
    good = np.eye(3)[y] * 10
    bad = np.eye(3)[(y + 1) % 3] * 10
    bad[:5] = good[:5]
    tables = [_preds(list(labels), good, "train"), _preds(list(labels), bad, "val")]
    t = pd.concat(tables, ignore_index=True)
    d = diagnose(Predictions(t, np.concatenate([good, bad]).astype(np.float32)), ["a", "b", "c"], Thresholds())
    codes = {f.code for f in d.findings}
    assert d.fit.verdict == "overfitting"
    assert {"overfitting", "miscalibration"} <= codes
