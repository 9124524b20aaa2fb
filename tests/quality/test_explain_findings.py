"""Explanation findings from synthetic global importance, strategies and quality results."""

from __future__ import annotations

import numpy as np

from imaudit.audits.aggregate import ImportanceAggregator
from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.spec import ExplanationThresholds
from imaudit.audits.strategies import spray_clusters

CLASSES = ["circle", "square", "triangle"]


def _maps(corner_classes: set[int], n_per_class: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform-ish maps; classes in ``corner_classes`` put half their mass in the bottom-right corner."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    maps = rng.random((len(labels), 32, 32))
    for i, c in enumerate(labels):
        if c in corner_classes:
            maps[i, 26:30, 26:30] += maps[i].sum() / 16
    return maps, labels


def _global(maps: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None) -> dict:
    agg = ImportanceAggregator(CLASSES)
    agg.update(maps, labels, masks=masks)
    return agg.compute()


def test_corner_shortcut_names_the_corner_and_the_classes():
    maps, labels = _maps({0, 2})
    gi = _global(maps, labels)
    findings = explanation_findings({"saliency": gi, "gradcam": gi}, {}, {}, ExplanationThresholds(), CLASSES)
    assert [f.code for f in findings] == ["shortcut"]
    f = findings[0]
    assert f.evidence["region"] == "bottom-right" and f.evidence["classes"] == ["circle", "triangle"]
    assert f.severity == "error" and "bottom-right corner" in f.message  # two methods agree
    one = explanation_findings({"saliency": gi}, {}, {}, ExplanationThresholds(), CLASSES)
    assert one[0].severity == "warning"
    hit = one[0].evidence["hits"][0]
    assert hit["mass"] >= 0.35 and hit["lift"] >= 2.5 and hit["consistency"] == 1.0


def test_no_shortcut_without_concentrated_mass_or_when_it_is_on_the_object():
    maps, labels = _maps(set())
    assert explanation_findings({"m": _global(maps, labels)}, {}, {}, ExplanationThresholds(), CLASSES) == []
    corner, labels = _maps({0, 1, 2})
    masks = np.zeros(corner.shape, dtype=bool)
    masks[:, 24:, 24:] = True  # the object is what sits in that corner
    assert explanation_findings({"m": _global(corner, labels, masks)}, {}, {}, ExplanationThresholds(), CLASSES) == []


def test_thresholds_are_honoured():
    maps, labels = _maps({1})
    strict = ExplanationThresholds(shortcut_mass=0.9)
    assert explanation_findings({"m": _global(maps, labels)}, {}, {}, strict, CLASSES) == []


def test_spray_cluster_flags_a_shortcut_in_part_of_a_class():
    rng = np.random.default_rng(3)
    labels = np.zeros(24, dtype=int)
    maps = rng.random((24, 32, 32))
    maps[:8, 0:4, 0:4] += maps[:8].sum(axis=(1, 2))[:, None, None] / 8  # a third of the class: two thirds in a corner
    ids = [f"im{i}" for i in range(24)]
    gi = _global(maps, labels)
    sp = spray_clusters(maps, labels, ids, CLASSES)
    assert explanation_findings({"m": gi}, {}, {}, ExplanationThresholds(), CLASSES) == []  # diluted in the mean
    findings = explanation_findings({"m": gi}, {}, {"m": sp}, ExplanationThresholds(), CLASSES)
    assert len(findings) == 1 and findings[0].evidence["region"] == "top-left"
    hit = findings[0].evidence["hits"][0]
    assert hit["source"] == "spray" and set(hit["exemplar_ids"]) <= {f"im{i}" for i in range(8)}
    assert findings[0].severity == "warning"


def test_quality_findings_and_their_severities():
    quality = {
        "faithfulness": {
            "good": {"deletion_auc": 0.2, "random_deletion_auc": 0.4, "deletion_gain": 0.5, "insertion_gain": 0.3},
            "flat": {"deletion_auc": 0.39, "random_deletion_auc": 0.4, "deletion_gain": 0.02, "insertion_gain": 0.01},
            "rescued": {"deletion_auc": 0.4, "random_deletion_auc": 0.4, "deletion_gain": 0.0, "insertion_gain": 0.3},
            "worse": {"deletion_auc": 0.6, "random_deletion_auc": 0.4, "deletion_gain": -0.5, "insertion_gain": -0.2},
        },
        "sanity": {
            "ok": {"rank_corr": 0.1, "ssim": 0.1, "n_layers": 3},
            "one": {"rank_corr": 0.8, "ssim": 0.2, "n_layers": 3},
            "both": {"rank_corr": 0.9, "ssim": 0.9, "n_layers": 3},
        },
        "agreement": {"pairs": [{"a": "x", "b": "y", "mean": 0.05, "count": 8, "per_class": {}},
                                {"a": "x", "b": "z", "mean": 0.6, "count": 8, "per_class": {}}]},
    }
    found = {(f.code, f.evidence.get("method")): f.severity
             for f in explanation_findings({}, quality, {}, ExplanationThresholds(), CLASSES)}
    assert found == {
        ("unfaithful-explanation", "flat"): "warning",
        ("unfaithful-explanation", "worse"): "error",
        ("failed-sanity-check", "one"): "warning",
        ("failed-sanity-check", "both"): "error",
        ("low-method-agreement", None): "info",
    }
    deletion_only = ExplanationThresholds(faithfulness_use_insertion=False)
    codes = [f.evidence.get("method") for f in explanation_findings({}, quality, {}, deletion_only, CLASSES)
             if f.code == "unfaithful-explanation"]
    assert codes == ["flat", "rescued", "worse"]
