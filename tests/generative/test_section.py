"""Which images the section explains, the settings the audit hands it, and the fair in-fill comparison."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from imaudit.audits.generative import GeneratorArtifact, SearchSettings, Selection, compare_infill, select_images
from imaudit.audits.generative.stage import search_of, selection_of
from imaudit.audits.spec import AuditSpec
from imaudit.errors import BadInputError

from gen_helpers import BlockGenerator, QuadrantRule, block_images, quadrant


def _probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows)


# label, probs:      pred  margin
CASES = [
    (0, [0.10, 0.90]),  # 1 wrong, confident
    (0, [0.45, 0.55]),  # 1 wrong, unsure
    (0, [0.55, 0.45]),  # 0 right, margin 0.10: near the boundary
    (1, [0.02, 0.98]),  # 1 right, margin 0.96
    (0, [0.99, 0.01]),  # 0 right, margin 0.98
    (1, [0.48, 0.52]),  # 1 right, margin 0.04: nearest the boundary
    (0, [0.95, 0.05]),  # 0 right, margin 0.90
]


def _select(n: int, **kw) -> list[tuple[int, str]]:
    labels = torch.tensor([c[0] for c in CASES])
    return [(c["index"], c["selected_as"]) for c in select_images(_probs([c[1] for c in CASES]), labels, n, Selection(**kw))]


def test_selection_order_and_honest_labels():
    assert _select(7) == [(0, "misclassified"), (1, "misclassified"), (5, "near-boundary"), (2, "near-boundary"),
                          (6, "correct"), (3, "correct"), (4, "correct")]  # correct: classes in turn, smallest margin
    # A 0.99-confidence image is never "near the boundary": with a tight margin only the 0.04 one is.
    assert _select(7, select=("near-boundary",), margin=0.05) == [(5, "near-boundary")]
    assert _select(2, select=("correct", "misclassified")) == [(6, "correct"), (3, "correct")]
    assert _select(7, classes=(1,)) == [(5, "near-boundary"), (3, "correct")]  # only images labelled 1
    # Towards class 1: images already predicted 1 are not explained.
    assert [i for i, _ in _select(7, target=1)] == [2, 6, 4]
    with pytest.raises(BadInputError, match="select"):
        Selection(select=("everything",))


def test_the_audit_spec_reaches_the_search_and_the_selection_unchanged():
    values = {"confidence": 0.8, "steps": 12, "lr": 0.1, "proximity": 3.0, "prior": 0.5, "realism": 0.0,
              "invert_steps": 7, "masked": False, "smoothness": 2.0}
    spec = AuditSpec(model="timm:test_resnet", generative={**values, "select": "misclassified,correct",
                                                           "margin": 0.3, "classes": ["b"], "target": "a"})
    assert dataclasses.asdict(search_of(spec)) == values
    assert selection_of(spec, ["a", "b"]) == Selection(select=("misclassified", "correct"), margin=0.3, classes=(1,),
                                                       target=0)
    with pytest.raises(BadInputError, match="generative.target: unknown class 'c'"):
        selection_of(AuditSpec(model="x", generative={"target": "c"}), ["a", "b"])
    # The search's defaults are the AuditSpec's: one place to read and change them.
    default = AuditSpec(model="x").generative
    assert dataclasses.asdict(SearchSettings()) == {k: getattr(default, k) for k in values}


def test_infill_comparison_uses_the_same_maps_and_no_label_conditioned_fill():
    model = QuadrantRule("top-left")
    art = GeneratorArtifact.in_memory(BlockGenerator(), ["dark", "bright"])
    x = block_images(4, seed=5)
    quadrant(x, "top-left")[:2] = 0.2
    quadrant(x, "top-left")[2:] = 0.8
    maps = torch.zeros(4, 32, 32)
    maps[:, :16, :16] = 1.0  # the right answer: the quadrant the rule reads
    out = compare_infill(model, art, x, lambda t: t, maps=maps.numpy(), steps=4, random_trials=2)
    assert out["maps"] == "given" and set(out["fills"]) == {"blur", "grey", "generative-neutral"}
    assert "true label is not offered" in out["note"]
    for name, f in out["fills"].items():
        assert f["count"] == 4 and f["start"] == pytest.approx(f["curves"]["deletion"][0])
        assert f["deletion_gain"] == pytest.approx(
            (f["random_deletion_auc"] - f["deletion_auc"]) / f["random_deletion_auc"], rel=1e-6)
    # The neutral fill redraws these images almost exactly: deleting "into" it barely moves the model,
    # whatever the order - which is what the random-order column shows and why AUCs do not compare across fills.
    neutral = out["fills"]["generative-neutral"]
    assert neutral["all_replaced"] == pytest.approx(neutral["start"], abs=0.05)
    assert out["fills"]["grey"]["all_replaced"] < neutral["all_replaced"]
