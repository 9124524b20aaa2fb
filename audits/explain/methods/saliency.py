"""Gradient saliency (Simonyan et al. 2014) through Captum's Saliency."""

from __future__ import annotations

from captum.attr import Saliency
from torch import Tensor

from imaudit.audits.explain.base import BatchResult, Explainer
from imaudit.audits.explain.methods import EXPLAINERS
from imaudit.errors import BadInputError


@EXPLAINERS.register()
class SaliencyExplainer(Explainer):
    """|d logit_target / d x|: one backward pass per batch, the cheapest method.

    Settings: ``reduce`` "max" (paper: max over channels of |grad|) or "sum"
    (sum of |grad| over channels). ``channel_maps`` keeps |grad| per channel.
    Typical sample: 64+ images (milliseconds each).
    """

    name = "saliency"
    defaults = {"reduce": "max"}
    needs_gradients = True
    typical_samples = 64
    samples_per_class = 16
    max_samples = 256
    baseline = "none: the gradient at the image itself"

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        x = self.to_model(images).detach().requires_grad_(True)
        grads = Saliency(self.model).attribute(x, target=targets.to(self.device), abs=True).detach().float().cpu()
        reduce = self.settings["reduce"]
        if reduce == "max":
            maps = grads.amax(dim=1)
        elif reduce == "sum":
            maps = grads.sum(dim=1)
        else:
            raise BadInputError(f"method_settings.saliency.reduce: {reduce!r} is not 'max' or 'sum'")
        return BatchResult(maps=maps.numpy(), channel_maps=grads.numpy())
