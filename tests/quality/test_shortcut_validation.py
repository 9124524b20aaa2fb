"""Validation on built-in cases (issue 4, part 5), small enough for CI.

A small CNN trained on builtin:shapes with a class-coloured patch planted in
the top-left corner of every image learns the patch; its explanations must
draw a ``shortcut`` finding naming that corner. The same recipe without the
patch learns the shapes and must draw none. A randomly initialised copy's
explanations must fail the faithfulness check where the trained model's pass
both faithfulness and the randomisation sanity check.

Seeds are fixed; margins were measured over seeds 0-3 (see the report).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imaudit.audits.aggregate import ImportanceAggregator
from imaudit.audits.data import ImageDataset, load_dataset
from imaudit.audits.explain import create_explainer
from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.quality import deletion_insertion, method_explain_fn, randomisation_sanity
from imaudit.audits.spec import ExplanationThresholds
from imaudit.audits.strategies import spray_clusters
from imaudit.models.train import train_classifier

pytestmark = pytest.mark.slow

SEED = 0
METHODS = ("saliency", "gradcam")
QUALITY_IMAGES = 32


def small_cnn(num_classes: int, width: int = 16) -> nn.Module:
    """Three conv blocks and a max-pooled head: learns the 32 px shapes in ~10 CPU epochs."""
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(3, width), nn.MaxPool2d(2), *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 4 * width),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes),
    )


def _tensors(ds: ImageDataset) -> list[torch.Tensor]:
    # Decode every PNG once instead of once per epoch.
    return next(iter(DataLoader(ds, batch_size=len(ds))))


def build_case(shortcut: str | None, epochs: int, seed: int = SEED) -> dict:
    """Train (or, with epochs=0, only initialise) the CNN and explain its val predictions."""
    ref = f"builtin:shapes?n=600&size=32&seed={seed}" + (f"&shortcut={shortcut}" if shortcut else "")
    bundle = load_dataset(ref, progress=False)
    xt, yt, _ = _tensors(ImageDataset(bundle.split("train"), bundle.classes))
    xv, yv, _, mv = _tensors(ImageDataset(bundle.split("val"), bundle.classes, return_mask=True))
    xt, xv = (xt - 0.5) / 0.25, (xv - 0.5) / 0.25
    torch.manual_seed(seed)
    model = small_cnn(len(bundle.classes))
    if epochs:
        train_classifier(model, TensorDataset(xt, yt), epochs=epochs, lr=0.02, seed=seed, progress=False)
    model.eval()
    with torch.no_grad():
        pred = model(xv).argmax(1)
    ids = [str(i) for i in range(len(xv))]
    gi, strategies, faith, sanity = {}, {}, {}, {}
    thresholds = ExplanationThresholds()
    for method in METHODS:
        exp = create_explainer(method, model, progress=False).explain(xv, pred, ids)
        assert not exp.failures
        agg = ImportanceAggregator(bundle.classes, hot_lift=thresholds.shortcut_lift)
        agg.update(exp.maps, pred.numpy(), masks=mv.numpy(), ids=exp.ids)
        gi[method] = agg.compute()
        strategies[method] = spray_clusters(exp.maps, pred.numpy(), exp.ids, bundle.classes, masks=mv.numpy())
        k = QUALITY_IMAGES
        faith[method] = deletion_insertion(model, xv[:k], pred[:k], exp.maps[:k], steps=16, batch_size=512)
        sanity[method] = randomisation_sanity(
            model, xv[:k], pred[:k], method_explain_fn(method, progress=False), original_maps=exp.maps[:k],
            max_rank_corr=thresholds.sanity_max_rank_corr, max_ssim=thresholds.sanity_max_ssim,
        )
    quality = {"faithfulness": faith, "sanity": sanity}
    findings = explanation_findings(gi, quality, strategies, thresholds, bundle.classes)
    return {"classes": bundle.classes, "accuracy": float((pred == yv).float().mean()), "findings": findings,
            "quality": quality, "global": gi}


@pytest.fixture(scope="module")
def shortcut_case() -> dict:
    return build_case("top-left", epochs=3)


@pytest.fixture(scope="module")
def clean_case() -> dict:
    return build_case(None, epochs=10)


@pytest.fixture(scope="module")
def random_case() -> dict:
    return build_case(None, epochs=0)


def _codes(case: dict, code: str) -> list:
    return [f for f in case["findings"] if f.code == code]


def test_planted_corner_shortcut_draws_a_finding_naming_it(shortcut_case):
    assert shortcut_case["accuracy"] > 0.9  # the patch is learned
    shortcuts = _codes(shortcut_case, "shortcut")
    corner = [f for f in shortcuts if f.evidence["region"] == "top-left"]
    assert len(corner) == 1, [f.message for f in shortcuts]
    f = corner[0]
    assert "top-left corner" in f.message
    assert set(f.evidence["classes"]) <= set(shortcut_case["classes"]) and len(f.evidence["classes"]) >= 2
    assert all(c in f.message for c in f.evidence["classes"])
    assert f.severity == "error"  # both methods see it
    assert {f.evidence["region"] for f in shortcuts} == {"top-left"}  # no other region blamed


def test_same_data_without_the_shortcut_draws_none(clean_case):
    assert clean_case["accuracy"] > 0.5  # chance is 1/3: the shapes themselves are learned
    assert _codes(clean_case, "shortcut") == []


def test_random_model_fails_the_faithfulness_check_where_the_trained_model_passes(random_case, clean_case):
    unfaithful = {f.evidence["method"] for f in _codes(random_case, "unfaithful-explanation")}
    assert unfaithful == set(METHODS)
    assert _codes(clean_case, "unfaithful-explanation") == []
    assert _codes(clean_case, "failed-sanity-check") == []
    for method in METHODS:
        assert clean_case["quality"]["sanity"][method]["passed"] is True
        assert clean_case["quality"]["faithfulness"][method]["insertion_gain"] > 0.1
