"""Explanation findings from tested shortcut candidates and quality results: severities, groups, messages."""

from __future__ import annotations

from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.findings import kind_of
from imaudit.audits.spec import ExplanationThresholds


def _candidate(confirmed: bool, kind: str = "box") -> dict:
    return {
        "class": "3", "class_index": 3, "kind": kind, "box": [4, 50, 14, 60], "image_size": [64, 64],
        "methods": ["gradcam", "saliency"], "hot_frequency": 0.9, "area": 0.8, "confirmed": confirmed,
        "same_spot_classes": ["3"],
        "intervention": {
            "fill": "blur",
            "cover": {"n": 20, "accuracy_before": 1.0, "accuracy_after": 0.41 if confirmed else 0.95,
                      "confidence_before": 0.9, "confidence_after": 0.3, "control_accuracy_after": 1.0},
            "paste": {"n": 40, "flip_rate": 0.93 if confirmed else 0.1, "control_flip_rate": 0.02},
        },
    }


def test_a_confirmed_shortcut_is_an_error_with_the_intervention_numbers_in_its_message():
    [f] = explanation_findings({}, ExplanationThresholds(), shortcuts=[_candidate(True)])
    assert f.code == "shortcut" and f.severity == "error" and kind_of(f.code).group == "model"
    assert "covering the 10x10 box at x=4..14, y=50..60 drops class 3 accuracy from 1.00 to 0.41" in f.message
    assert "flips 93% of 40 other images to 3" in f.message and "gradcam, saliency" in f.message
    ev = f.evidence
    assert ev["box"] == [4, 50, 14, 60] and ev["class_index"] == 3 and ev["confirmed"] is True
    assert ev["intervention"]["paste"]["flip_rate"] == 0.93 and "confirm_flip_rate" in ev["thresholds"]


def test_an_unconfirmed_candidate_is_info_and_says_so():
    [f] = explanation_findings({}, ExplanationThresholds(), shortcuts=[_candidate(False)])
    assert f.severity == "info" and "not confirmed" in f.message
    assert "drops class 3 accuracy from 1.00 to 0.95" in f.message
    bg = explanation_findings({}, ExplanationThresholds(), shortcuts=[_candidate(True, kind="off-object")])[0]
    assert "the background (off the object, 80% of the image)" in bg.message and bg.severity == "error"


def test_quality_findings_and_their_severities():
    quality = {
        "faithfulness": {
            "good": {"deletion_auc": 0.2, "random_deletion_auc": 0.4, "deletion_gain": 0.5, "deletion_gain_ci": [0.3, 0.7]},
            "flat": {"deletion_auc": 0.39, "random_deletion_auc": 0.4, "deletion_gain": 0.02,
                     "deletion_gain_ci": [-0.03, 0.07], "insertion_gain": 0.01, "insertion_gain_ci": [-0.02, 0.04]},
            "rescued": {"deletion_auc": 0.4, "random_deletion_auc": 0.4, "deletion_gain": 0.0,
                        "deletion_gain_ci": [-0.05, 0.05], "insertion_gain": 0.3, "insertion_gain_ci": [0.2, 0.4]},
            "worse": {"deletion_auc": 0.6, "random_deletion_auc": 0.4, "deletion_gain": -0.5,
                      "deletion_gain_ci": [-0.7, -0.3]},
            # better than random beyond the interval, but by a negligible 1 % (an untrained model's flat outputs)
            "tiny": {"deletion_auc": 0.396, "random_deletion_auc": 0.4, "deletion_gain": 0.01,
                     "deletion_gain_ci": [0.005, 0.015]},
        },
        "sanity": {
            "ok": {"judged": [{"depth": 3, "rank_corr": 0.1, "ssim": 0.1, "passed": True}], "blocks": 4},
            "one": {"judged": [{"depth": 3, "rank_corr": 0.8, "ssim": 0.2, "passed": False}], "blocks": 4},
            "both": {"judged": [{"depth": 3, "rank_corr": 0.1, "ssim": 0.1, "passed": True},
                                {"depth": 4, "rank_corr": 0.9, "ssim": 0.9, "passed": False}], "blocks": 4},
            "vanished": {"judged": [{"depth": 4, "rank_corr": None, "ssim": None, "passed": None,
                                     "inconclusive": "8 of 8 randomised maps came out all zero"}], "blocks": 4},
        },
        "agreement": {"pairs": [{"a": "x", "b": "y", "mean": 0.05, "count": 8, "per_class": {}},
                                {"a": "x", "b": "z", "mean": 0.01, "count": 8, "per_class": {}}]},
    }
    found = {(f.code, f.evidence.get("method")): f.severity for f in explanation_findings(quality, ExplanationThresholds())}
    assert found == {
        ("unfaithful-explanation", "flat"): "warning",
        ("unfaithful-explanation", "rescued"): "warning",
        ("unfaithful-explanation", "worse"): "error",
        ("unfaithful-explanation", "tiny"): "warning",
        ("failed-sanity-check", "one"): "warning",
        ("failed-sanity-check", "both"): "error",
        ("low-method-agreement", None): "info",  # never more: it is about the explainers, not the model
    }
    with_insertion = ExplanationThresholds(faithfulness_use_insertion=True)
    methods = [f.evidence["method"] for f in explanation_findings(quality, with_insertion) if f.code == "unfaithful-explanation"]
    assert methods == ["flat", "worse", "tiny"]
    both = next(f for f in explanation_findings(quality, ExplanationThresholds()) if f.evidence.get("method") == "both")
    assert both.evidence["depth"] == 4 and "top 4 of 4 blocks" in both.message
    for code in ("unfaithful-explanation", "failed-sanity-check", "low-method-agreement"):
        assert kind_of(code).group == "explainer"


def test_unknown_threshold_keys_are_rejected():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shortcut_mas"):
        ExplanationThresholds.model_validate({"shortcut_mas": 0.2})
