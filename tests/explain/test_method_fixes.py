"""Method fixes: shap-gradient's fixed background, Grad-CAM's layer choice, recorded baselines and resolutions."""

from __future__ import annotations

import numpy as np
import timm
import torch
from torch import nn

from conftest import FAST, SIZE, QuadrantNet, make_images
from imaudit.audits.explain import create_explainer, list_methods


def test_shap_gradient_explains_one_image_alone_and_ignores_its_batch_mates():
    model = QuadrantNet()
    images = make_images(4, seed=5)
    targets = model(images).argmax(1)
    background = make_images(6, seed=9)
    settings = {**FAST["shap-gradient"], "background": background}
    alone = create_explainer("shap-gradient", model, **settings).explain(images[:1], targets[:1], ["a"])
    batch = create_explainer("shap-gradient", model, **settings).explain(images, targets, ["a", "b", "c", "d"])
    assert np.abs(alone.maps).max() > 0  # not (x - x) * grad = 0: the background is not the image itself
    np.testing.assert_allclose(alone.maps[0], batch.maps[0], rtol=1e-5, atol=1e-7)
    rec = create_explainer("shap-gradient", model, **settings).settings_record()
    assert "6 train images" in rec["baseline"]
    no_bg = create_explainer("shap-gradient", model, **FAST["shap-gradient"])
    one = no_bg.explain(images[:1], targets[:1], ["a"])
    assert np.abs(one.maps).max() > 0 and "normalisation mean" in no_bg.settings_record()["baseline"]


class ResidualWithDropPath(nn.Module):
    """A conv trunk whose last modules are a residual branch's Identity and DropPath (as in Swin's blocks)."""

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import DropPath

        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.branch = nn.Conv2d(8, 8, 1)
        self.drop_path = DropPath(0.1)
        self.identity = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        h = self.identity(h + self.drop_path(self.branch(h)))
        return self.head(h.mean(dim=(2, 3)))


def test_gradcam_never_hooks_identity_or_droppath_and_records_layer_and_size():
    model = ResidualWithDropPath().eval()
    e = create_explainer("gradcam", model, progress=False)
    out = e.explain(make_images(2), torch.tensor([0, 1]), ["a", "b"])
    rec = out.extras["settings"]
    assert rec["layer_used"] in ("conv", "branch") and out.failures == []
    assert rec["native_resolution"]["cells"] == [SIZE // 2, SIZE // 2]


def test_gradcam_reshapes_channels_last_stages():
    model = timm.create_model("test_mambaout", num_classes=3).eval()  # stages output (N, h, w, C)
    e = create_explainer("gradcam", model, progress=False)
    out = e.explain(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]), ["a", "b"])
    assert out.failures == [] and "channels-last" in out.extras["settings"]["layer_used"]
    assert out.extras["settings"]["native_resolution"]["cells"] == [2, 2]
    assert np.ptp(out.maps[0]) > 0


def test_every_method_records_its_baseline_and_native_resolution():
    model = QuadrantNet()
    for method in list_methods():
        rec = create_explainer(method, model, input_shape=(3, SIZE, SIZE)).settings_record()
        assert rec["baseline"] and "native_resolution" in rec, method
    ig = create_explainer("ig", model).settings_record()["baseline"]
    assert "zeros after normalisation" in ig and "normalisation mean" in ig
    occ = create_explainer("occlusion", model, input_shape=(3, SIZE, SIZE)).settings_record()["native_resolution"]
    assert occ["cells"] == [15, 15] and "4x4 px windows every 2 px" in occ["note"]  # an eighth of 32 px, half-window stride
