"""Generative in-fill: per-image content that plugs into deletion/insertion and Captum occlusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Occlusion

from imaudit.audits.generative import GeneratorArtifact, generative_infill
from imaudit.audits.quality import deletion_insertion
from imaudit.errors import BadInputError

from gen_helpers import BlockGenerator, QuadrantRule, block_images, quadrant


@pytest.fixture
def blocks():
    """Block mosaics the BlockGenerator can reproduce exactly, with labels from the top-left rule."""
    x = block_images(5, seed=3)
    y = (quadrant(x, "top-left").mean((1, 2, 3)) > 0.5).long()
    return GeneratorArtifact.in_memory(BlockGenerator(), ["dark", "bright"]), x, y


def test_reconstruction_infill_reproduces_representable_images(blocks):
    art, x, y = blocks
    fill = generative_infill(art, x, y, mode="reconstruction")
    content = fill(x)
    assert content.shape == x.shape
    assert (content - x).abs().max() < 0.02
    assert fill.recon_error.max() < 0.01
    assert fill.mask_independent and fill.__name__ == "generative-reconstruction"
    with pytest.raises(BadInputError, match="labels"):
        generative_infill(art, x, mode="reconstruction")


def test_neutral_infill_never_sees_the_labels(blocks):
    art, x, y = blocks
    neutral = generative_infill(art, x)  # the default: no labels needed
    assert neutral.__name__ == "generative-neutral"
    # Labels make no difference to it (they are not even read) ...
    assert torch.equal(neutral(x), generative_infill(art, x, 1 - y)(x))
    # ... and it fits the images with the mean class code: BlockGenerator's style code can draw any block image.
    assert neutral.recon_error.max() < 0.02


def test_lookup_follows_the_images_not_their_order(blocks):
    art, x, y = blocks
    fill = generative_infill(art, x, normalize=lambda t: (t - 0.5) / 0.25)
    inputs = (x - 0.5) / 0.25
    assert torch.equal(fill(inputs[[3, 0, 0]]), fill(inputs)[[3, 0, 0]])
    # Content comes back in the space it was asked in: model input.
    assert (fill(inputs) * 0.25 + 0.5 - x).abs().max() < 0.02
    with pytest.raises(BadInputError, match="not among"):
        fill(inputs + 0.3)
    with pytest.raises(BadInputError, match="labels"):
        generative_infill(art, x, y[:2], mode="reconstruction")


def test_deletion_with_a_perfect_infill_leaves_the_prediction_unchanged(blocks):
    art, x, y = blocks
    model = QuadrantRule("top-left")
    maps = np.random.default_rng(0).random((len(x), 32, 32))
    gen = deletion_insertion(model, x, y, maps, steps=4, baseline=generative_infill(art, x), random_trials=0)
    p = model(x).softmax(1)[torch.arange(len(x)), y].numpy()
    # Replacing pixels by (near-)identical content keeps every point of the curve at p0.
    assert gen["deletion_auc"] == pytest.approx(float(p.mean()), abs=0.02)
    assert gen["insertion_auc"] == pytest.approx(float(p.mean()), abs=0.02)
    assert gen["curves"]["deletion"][-1] == pytest.approx(float(p.mean()), abs=0.02)
    # Grey (zeros) ends on a black image, which the rule calls class 0 with certainty.
    grey = deletion_insertion(model, x, y, maps, steps=4, baseline="zero", random_trials=0)
    assert grey["curves"]["deletion"][-1] == pytest.approx(float((y == 0).float().mean()), abs=1e-3)


def test_occlusion_accepts_the_infill_as_per_image_baselines(blocks):
    art, x, y = blocks
    model = QuadrantRule("top-left")
    fill = generative_infill(art, x)
    occ = Occlusion(model)
    attr_gen = occ.attribute(x, sliding_window_shapes=(1, 8, 8), strides=(1, 8, 8), baselines=fill.baselines(x), target=y)
    attr_zero = occ.attribute(x, sliding_window_shapes=(1, 8, 8), strides=(1, 8, 8), baselines=0.0, target=y)
    assert attr_gen.abs().max() < 0.05 < attr_zero.abs().max()
