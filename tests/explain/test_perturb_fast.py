"""LIME and SHAP with their perturbed images built on the device: the library path's maps, and known answers.

``perturb: device`` (the default) replaces only how the perturbed images are
assembled; lime's neighbourhood draws, ridge fit and shap's Owen values stay
the libraries'. So on a fixed seed the maps must equal the library path's bit
for bit, and on models whose answer is known in closed form both must find it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import SIZE, QuadrantNet, make_images
from torch import nn

from imaudit.audits.explain import create_explainer
from imaudit.audits.explain.methods.lime_method import _unit_range
from imaudit.errors import BadInputError

SMALL = {"lime": {"num_samples": 120, "compactness": 100.0}, "shap": {"max_evals": 120}}


def _maps(method: str, model: nn.Module, images: torch.Tensor, perturb: str, **kw) -> np.ndarray:
    targets = model(images).argmax(1)
    ex = create_explainer(method, model, seed=3, progress=False, perturb=perturb, batch_size=16,
                          **{**SMALL[method], **kw})
    e = ex.explain(images, targets, [str(i) for i in range(len(images))])
    assert e.failures == []
    return e.maps


@pytest.mark.parametrize("method", ["lime", "shap"])
@pytest.mark.parametrize("channels", [3, 1])
def test_device_path_equals_the_library_path_on_a_fixed_seed(method, channels):
    model, images = QuadrantNet(channels=channels), make_images(2, channels=channels, seed=5)
    norm = {"mean": [0.45] * channels, "std": [0.22] * channels}
    fast = _maps(method, model, images, "device", **norm)
    library = _maps(method, model, images, "library", **norm)
    assert np.abs(library).max() > 0
    np.testing.assert_array_equal(fast, library)


def test_unknown_perturb_mode_is_bad_input():
    model, images = QuadrantNet(), make_images(1)
    for method in ("lime", "shap"):
        ex = create_explainer(method, model, perturb="gpu", progress=False)
        e = ex.explain(images, torch.tensor([0]), ["a"])
        assert e.ids == [] and "perturb" in e.failures[0]["error"]
    with pytest.raises(BadInputError):
        create_explainer("lime", model, perturbb="device")


class PixelLinearProbability(nn.Module):
    """Two classes; P(class 0) = 0.5 + sum(v * x): a probability linear in the pixels.

    Logits are (log p, log(1 - p)), so lime's softmax over them gives p back.
    LIME hides a superpixel by filling it with its mean colour, so the
    probability is linear in lime's on/off bits z: p(z) = p(all off) +
    sum_j z_j * sum_{i in superpixel j} v_i (x_i - mean_j), and the ridge fit
    must recover those per-superpixel coefficients.
    """

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("v", v)
        self.anchor = nn.Parameter(torch.zeros(1))  # explainers look up the device from a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (0.5 + (x * self.v).sum(dim=(1, 2, 3))).clamp(1e-6, 1 - 1e-6) + self.anchor
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_lime_recovers_the_superpixel_coefficients_of_a_linear_probability():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 3, SIZE, SIZE, generator=g) * 2e-3
    model, image = PixelLinearProbability(v), make_images(1, seed=2)
    ex = create_explainer("lime", model, seed=0, progress=False, num_samples=600, compactness=100.0)
    e = ex.explain(image, torch.tensor([0]), ["a"])
    # The known answer, from lime's own superpixels of this image and its mean-colour fill.
    pixels = image[0].permute(1, 2, 0).double().numpy()
    segments = ex.segmenter(SIZE, SIZE)(_unit_range(pixels))
    contrib = ((v[0].permute(1, 2, 0).double().numpy()) * pixels).sum(-1)
    vsum = v[0].permute(1, 2, 0).double().numpy()
    expected = np.zeros(segments.max() + 1)
    for j in np.unique(segments):
        inside = segments == j
        fill = pixels[inside].mean(axis=0)  # lime's fudged colour of superpixel j
        expected[j] = contrib[inside].sum() - (vsum[inside] * fill).sum()
    got = np.array([e.maps[0][segments == j].mean() for j in range(len(expected))])
    # Ridge (alpha 1) shrinks the coefficients a little; the kernel weights sum to hundreds.
    np.testing.assert_allclose(got, expected, atol=0.05 * np.abs(expected).max())
    assert np.corrcoef(got, expected)[0, 1] > 0.995


class PixelLinearLogits(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w)  # (K, C, H, W)
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.w) + self.anchor


def test_shap_gives_a_linear_models_exact_contributions_against_the_blurred_image():
    """For an additive model Owen values are each pixel's own contribution: w_i (x_i - blur(x)_i)."""
    # 4 x 4 x 3 features: 3000 evaluations expand the partition tree down to every pixel in both contexts.
    size, g = 4, torch.Generator().manual_seed(1)
    w = torch.randn(2, 3, size, size, generator=g)
    model, image = PixelLinearLogits(w), torch.rand(1, 3, size, size, generator=g)
    ex = create_explainer("shap", model, seed=0, progress=False, max_evals=3000)
    e = ex.explain(image, torch.tensor([1]), ["a"])
    hwc = image[0].permute(1, 2, 0).numpy()
    blurred = cv2.blur(hwc, (2, 2))  # the blur masker's kernel: an eighth of the side, at least 2
    expected = (w[1].permute(1, 2, 0).numpy() * (hwc - blurred)).transpose(2, 0, 1)
    np.testing.assert_allclose(e.channel_maps[0], expected, atol=1e-5)


def test_shap_credits_each_region_it_reached_with_that_regions_contribution():
    """With a small budget the tree is cut short, but for an additive model every region the recursion
    reached holds exactly its pixels' contributions (the quadrants, at two splits), and all values
    sum to f(image) - f(fully blurred image)."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(2, 3, SIZE, SIZE, generator=g)
    model, image = PixelLinearLogits(w), make_images(1, seed=4)
    e = create_explainer("shap", model, seed=0, progress=False, max_evals=60).explain(image, torch.tensor([0]), ["a"])
    hwc = image[0].permute(1, 2, 0).numpy()
    blurred = cv2.blur(hwc, (SIZE // 8, SIZE // 8))
    contrib = (w[0].permute(1, 2, 0).numpy() * (hwc - blurred)).sum(-1)
    half = SIZE // 2
    for rows in (slice(0, half), slice(half, None)):
        for cols in (slice(0, half), slice(half, None)):
            assert e.maps[0][rows, cols].sum() == pytest.approx(contrib[rows, cols].sum(), rel=1e-4, abs=1e-5)
    assert e.maps[0].sum() == pytest.approx(contrib.sum(), rel=1e-4, abs=1e-5)


def test_device_masker_never_takes_a_new_image_for_the_last_one():
    """Regression: the masker knew its current image by id(); once an image was freed the next one could get
    the same id and be explained with the last one's pixels (seen as SHAP maps of the wrong image in one
    test ordering). It now holds the image it read and compares identity, so every new image is read."""
    import gc

    from imaudit.audits.explain.methods.shap_method import DeviceImageMasker

    shape = (16, 16, 3)
    masker = DeviceImageMasker("blur(4,4)", shape, 3, lambda p: torch.from_numpy(np.ascontiguousarray(p)), None)
    for k in range(50):
        x = np.full(shape, float(k), dtype=np.float32).reshape(-1)
        masker(None, x)
        assert float(masker._image[0, 0, 0]) == k and masker._source is x
        del x
        gc.collect()
