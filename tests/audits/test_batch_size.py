"""The default batch size: 256 on CUDA; on CPU 64, fewer for large inputs (audits/device.py)."""

from __future__ import annotations

import torch
from torch import nn

from imaudit.audits.device import CPU_BATCH_PIXELS, default_batch_size
from imaudit.audits.explain import create_explainer

CPU = torch.device("cpu")


def test_cpu_batch_stays_within_its_pixel_budget():
    # the two sizes the bench measured: 64 px peaks at 64 images, 224 px at 8
    assert default_batch_size(CPU, (64, 64)) == 64
    assert default_batch_size(CPU, (224, 224)) == 8
    assert default_batch_size(CPU, (32, 32)) == 64 and default_batch_size(CPU) == 64  # never above 64
    assert default_batch_size(CPU, (2000, 2000)) == 1  # one image over the budget still runs alone
    for hw in [(96, 96), (128, 160), (299, 299), (384, 384), (512, 512)]:
        bs = default_batch_size(CPU, hw)
        pixels = hw[0] * hw[1]
        # the largest power of two that fits: doubling it would leave the budget
        assert bs & (bs - 1) == 0 and bs * pixels <= CPU_BATCH_PIXELS < 2 * bs * pixels, (hw, bs)
    assert default_batch_size(torch.device("cuda"), (224, 224)) == 256


def test_an_explainer_sizes_its_batches_to_the_images_unless_told():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x, t = torch.randn(2, 3, 224, 224), torch.tensor([0, 1])
    ex = create_explainer("saliency", model, device="cpu", progress=False)
    assert ex.explain(x, t, ["a", "b"]).failures == [] and ex.batch_size == 8
    ex = create_explainer("saliency", model, device="cpu", progress=False, batch_size=3)
    ex.explain(x, t, ["a", "b"])
    assert ex.batch_size == 3  # --batch-size wins
