"""Integrated Gradients (Sundararajan et al. 2017) through Captum, with its completeness check."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from imaudit.audits.explain.base import BatchResult, Explainer, spatial_sum
from imaudit.audits.explain.methods import EXPLAINERS


@EXPLAINERS.register()
class IntegratedGradientsExplainer(Explainer):
    """IG_i = (x_i - x'_i) * mean over alpha of d f(x' + alpha (x - x')) / d x_i.

    The baseline x' is zeros after normalisation: a flat image of the
    normalisation mean colour (timm's data-config mean, e.g. ImageNet's grey-brown),
    not the dataset's mean image.
    Completeness (sum_i IG_i = f(x) - f(x')) is checked per image: Captum's
    convergence delta is recorded in ``extras["delta"]``, summarised in
    ``extras["completeness"]``. Maps are signed sums over channels.

    Settings: ``n_steps`` 32 (path points), ``method`` "gausslegendre".
    ``internal_batch_size`` is the device batch size (images x steps per pass).
    Typical sample: 16-32 images.
    """

    name = "ig"
    defaults = {"n_steps": 32, "method": "gausslegendre"}
    needs_gradients = True
    typical_samples = 16
    samples_per_class = 12
    max_samples = 96
    baseline = "zeros after normalisation: a flat image of the normalisation mean colour"

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        x = self.to_model(images).detach().requires_grad_(True)
        ig = IntegratedGradients(self.model)
        attr, delta = ig.attribute(
            x,
            baselines=torch.zeros_like(x),
            target=targets.to(self.device),
            n_steps=int(self.settings["n_steps"]),
            method=self.settings["method"],
            internal_batch_size=self.pass_size,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            out = self.model(x) - self.model(torch.zeros_like(x))
            gap = out.gather(1, targets.to(self.device)[:, None]).squeeze(1)
        attr = attr.detach().float().cpu()
        return BatchResult(
            maps=spatial_sum(attr),
            channel_maps=attr.numpy(),
            per_image={"delta": delta.detach().float().cpu().numpy(), "output_gap": gap.float().cpu().numpy()},
        )

    def _summarise(self, extras: dict[str, Any]) -> dict[str, Any]:
        if "delta" not in extras or not len(extras["delta"]):
            return {}
        delta = np.abs(extras["delta"])
        gap = np.abs(extras["output_gap"])
        return {
            "completeness": {
                "mean_abs_delta": float(delta.mean()),
                "max_abs_delta": float(delta.max()),
                # relative to |f(x) - f(baseline)|: how much of the output change IG fails to account for
                "mean_relative_delta": float((delta / np.maximum(gap, 1e-8)).mean()),
            }
        }
