"""Grad-CAM (Selvaraju et al. 2017) through Captum's LayerGradCam on an automatically chosen layer."""

from __future__ import annotations

import contextlib

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from imaudit.audits.explain.base import BatchResult, Explainer
from imaudit.audits.explain.layers import TokenGridHook, gradcam_layer, guess_input_shape
from imaudit.audits.explain.methods import EXPLAINERS
from imaudit.errors import BadInputError


@EXPLAINERS.register()
class GradCamExplainer(Explainer):
    """ReLU(sum_k alpha_k A^k), alpha_k = spatial mean of d y_target / d A^k, upsampled bilinearly.

    The layer A is found by probing a forward pass: the last module (called
    once, and not a pass-through such as Identity or DropPath, whose output is
    its input) whose output is a (N, C, h, w) map with h, w > 1, i.e. the last
    convolutional stage; channels-last stages (N, h, w, C), as in Swin, are
    permuted. For timm ViTs (token outputs (N, T, D)) the last block's norm1
    tokens are reshaped to a (N, D, h, w) grid without the prefix
    (class/register) tokens, as pytorch-grad-cam's reshape_transform.

    The map's native resolution is that layer's h x w: on a 2 x 2 feature map
    Grad-CAM says which quarter of the image mattered, nothing finer; the
    upsampled map only smooths it. ``settings_record`` states the layer and
    its size.

    Settings: ``layer`` None (auto) or a module name (``model.get_submodule``);
    ``interpolate`` "bilinear". Typical sample: 64+ images (one backward pass).
    """

    name = "gradcam"
    defaults = {"layer": None, "interpolate": "bilinear"}
    needs_gradients = True
    typical_samples = 64
    samples_per_class = 16
    max_samples = 256
    baseline = "none: gradients of the target at the chosen layer's activations"

    def _find_layer(self) -> tuple[nn.Module, str, TokenGridHook | None, tuple[int, int] | None] | str:
        """(module Captum hooks, its name, token hook or None), or why there is none.

        Remembered per input shape: ``applicable()`` and every ``explain()`` call would
        otherwise each probe the model with a forward pass (measured by ``imaudit bench``).
        """
        key = (self.input_shape, self.settings["layer"])
        cached = getattr(self, "_found_layer", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        found = self._probe_layer()
        self._found_layer = (key, found)
        return found

    def _probe_layer(self) -> tuple[nn.Module, str, TokenGridHook | None, tuple[int, int] | None] | str:
        shape = self.input_shape or guess_input_shape(self.model)
        name = self.settings["layer"]
        if name:
            try:
                module = self.model.get_submodule(name)
            except AttributeError:
                raise BadInputError(f"method_settings.gradcam.layer: no module named {name!r}") from None
            return module, name, None, None
        found = gradcam_layer(self.model, shape)
        if found is None:
            return "no spatial layer: no module outputs a (C, h, w) map with h, w > 1 or a square token grid"
        if found.grid is not None:
            hook = TokenGridHook(found.info.module, found.prefix, found.grid)
            return hook.layer, f"{found.info.name} (tokens as {found.grid[0]}x{found.grid[1]} grid)", hook, found.spatial
        if found.layout == "nhwc":
            hook = TokenGridHook(found.info.module, channels_last=True)
            return hook.layer, f"{found.info.name} (channels-last, permuted)", hook, found.spatial
        return found.info.module, found.info.name, None, found.spatial

    def applicable(self) -> str | None:
        try:
            found = self._find_layer()
        except BadInputError:  # a misspelt ``layer`` setting is the user's to fix, not "does not apply"
            raise
        except Exception as e:  # noqa: BLE001 - a model the probe cannot run: reported, not raised
            return f"could not probe the model for a spatial layer: {type(e).__name__}: {e}"
        return found if isinstance(found, str) else None

    def _prepare(self, images: Tensor, targets: Tensor) -> None:
        found = self._find_layer()
        if isinstance(found, str):
            raise RuntimeError(found)
        self._layer, self.settings_used_layer, self._hook, self.layer_spatial = found

    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        x = self.to_model(images).detach().requires_grad_(True)
        ctx = self._hook if self._hook is not None else contextlib.nullcontext()
        with ctx:
            cam = LayerGradCam(self.model, self._layer).attribute(
                x, target=targets.to(self.device), relu_attributions=True
            )
        cam = LayerAttribution.interpolate(cam.detach().float(), tuple(images.shape[-2:]), self.settings["interpolate"])
        return BatchResult(maps=torch.relu(cam[:, 0]).cpu().numpy())

    def settings_record(self) -> dict:
        out = super().settings_record()
        if getattr(self, "settings_used_layer", None):
            out["layer_used"] = self.settings_used_layer
        return out

    def native_resolution(self) -> dict:
        found = self._find_layer()
        hw = None if isinstance(found, str) else found[3]
        if hw is None:
            return {"cells": None, "note": "the chosen layer's spatial size"}
        return {"cells": list(hw), "note": f"Grad-CAM weighs a {hw[0]}x{hw[1]} feature map: a {hw[0] * hw[1]}-cell map, "
                                           "upsampled to the image for display"}
