"""SHAP GradientExplainer: expected gradients (Erion et al. 2021) against a small background sample."""

from __future__ import annotations

import numpy as np
import shap
import torch
from torch import Tensor, nn

from imaudit.audits.device import forward_batched
from imaudit.audits.explain.base import BatchResult, Explainer, seeded_numpy
from imaudit.audits.explain.methods import EXPLAINERS


class _OneOutput(nn.Module):
    """The model restricted to one class's logit, so shap explains exactly the target."""

    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.index : self.index + 1]


@EXPLAINERS.register()
class ShapGradientExplainer(Explainer):
    """E over background x', alpha of (x - x') * d f_target(x' + alpha (x - x')) / dx (shap.GradientExplainer).

    Background: ``background`` (a normalised (B,C,H,W) tensor): the audit passes
    ``background_size`` 16 images drawn (seeded, stratified by class) from the
    train split, the same for every image and chunk, so an image's map does not
    depend on which other images share its batch, and one image alone gets a
    real map. Without one, the background is a single flat image of the
    normalisation mean colour (zeros after normalisation, IG's baseline).
    Background images the model cannot score are left out. ``nsamples`` 64
    interpolation points per image, evaluated ``batch_size`` at a time. The
    target logit is explained (images grouped by target class: equal to
    ranked_outputs=1 when the target is the predicted class). Map = values
    summed over channels (signed). Typical sample: 16 images.
    """

    name = "shap-gradient"
    defaults = {"nsamples": 64, "background_size": 16, "background": None}
    needs_gradients = True
    typical_samples = 16

    samples_per_class = 8
    max_samples = 48

    def baseline_text(self) -> str:
        given = self.settings["background"]
        if given is None:
            return "a flat image of the normalisation mean colour (no background given)"
        return f"expected gradients over a fixed background of {len(given)} train images (seeded)"

    def _prepare(self, images: Tensor, targets: Tensor) -> None:
        given = self.settings["background"]
        if given is not None:
            candidates = torch.as_tensor(given, dtype=torch.float32)
        else:
            candidates = torch.zeros((1, *images.shape[1:]), dtype=torch.float32)
        self._background = self.to_model(self._scorable(candidates))

    def _scorable(self, candidates: Tensor) -> Tensor:
        """Candidates the model can score: one bad background image must not poison every explanation."""
        try:
            forward_batched(self.model, candidates, self.device, self.batch_size)
            return candidates
        except Exception:  # noqa: BLE001 - find the bad ones below; each is dropped, not hidden
            keep = []
            for i in range(len(candidates)):
                try:
                    forward_batched(self.model, candidates[i : i + 1], self.device, 1)
                    keep.append(i)
                except Exception:  # noqa: BLE001,S112 - that image is left out of the background
                    continue
            if not keep:
                raise RuntimeError("no background image could be scored by the model") from None
            return candidates[keep]

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        values = np.zeros(tuple(images.shape), dtype=np.float32)
        for cls in torch.unique(targets).tolist():
            rows = (targets == cls).nonzero().flatten()
            explainer = shap.GradientExplainer(
                _OneOutput(self.model, int(cls)), self._background, batch_size=self.pass_size
            )
            for row in rows.tolist():
                # One image per call, each with the same seed: shap's draws would otherwise depend
                # on the image's position in the chunk (and so on batch size and OOM back-off).
                # shap loops over images internally anyway, so this costs no batching.
                with seeded_numpy(self.seed):
                    phi = explainer.shap_values(
                        self.to_model(images[row : row + 1]), nsamples=int(self.settings["nsamples"]), rseed=self.seed
                    )
                values[row] = np.asarray(phi, dtype=np.float32).reshape(images.shape[1:])
        return BatchResult(maps=values.sum(axis=1), channel_maps=values)
