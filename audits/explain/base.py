"""The one explainer interface: fixed things in the constructor, a batch per call.

Modelled on Captum (one class per method, one call shape) and pytorch-grad-cam
(a small base class, a new method is ~20 lines). The base class owns what every
method needs and must get right the same way: frozen parameters while
explaining, device-sized chunks with out-of-memory back-off, and failure
isolation (a chunk that raises is retried image by image so one bad image is
recorded with its id and error while the others are still explained).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from imaudit.audits.device import backoff_chunks, default_batch_size, prepare_model
from imaudit.errors import BadInputError

log = logging.getLogger(__name__)


@dataclass
class Explanation:
    """Attribution maps for the images a method could explain, plus the ones it could not."""

    maps: np.ndarray  # (N, H, W) float32 at model input resolution, aligned with ids
    ids: list[str]
    failures: list[dict]  # {"id", "error"}
    channel_maps: np.ndarray | None = None  # (N, C, H, W) float32 where the method has them
    extras: dict = field(default_factory=dict)  # per-image arrays (aligned with ids) and summaries


@dataclass
class BatchResult:
    """What a method returns for one chunk of images (all arrays aligned with the chunk)."""

    maps: np.ndarray
    channel_maps: np.ndarray | None = None
    per_image: dict[str, np.ndarray] = field(default_factory=dict)


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and requires_grad False for the duration; the previous state comes back after.

    Explanations need input gradients only: frozen parameters save the memory and
    time of parameter gradients, and restoring keeps the caller's model intact.
    """
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def _error_text(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


class Explainer(ABC):
    """Base class of every attribution method.

    Subclasses set ``name``, ``defaults`` (documented settings) and
    ``needs_gradients``, and implement ``_attribute`` for a chunk of images.
    ``per_image = True`` marks methods whose library explains one image per call
    (LIME, SHAP partition): they are called image by image, with their model
    calls batched inside.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict] = {}
    needs_gradients: ClassVar[bool] = True
    per_image: ClassVar[bool] = False
    #: Sample size the audit should use for this method when the spec does not say.
    typical_samples: ClassVar[int] = 16
    #: Images per explained class in a default audit: cheap gradient methods explain many, LIME/SHAP few.
    samples_per_class: ClassVar[int] = 8
    #: At most this many in a default audit, however many classes (the sample stays stratified).
    max_samples: ClassVar[int] = 64
    #: What the method compares the image with (its baseline, fill or background), as recorded in audit.json.
    baseline: ClassVar[str] = "none"

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        input_shape: Sequence[int] | None = None,
        progress: bool | None = None,
        **settings: Any,
    ) -> None:
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise BadInputError(
                f"method_settings.{self.name}: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.model = model
        if device is None:
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self._batch_given = batch_size is not None  # else sized to the images in explain()
        self.pass_size = self.batch_size  # inputs per forward pass inside a method; halved on OOM
        self.seed = seed
        self.settings: dict[str, Any] = {**self.defaults, **settings}
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.progress = progress

    # -- what subclasses implement ---------------------------------------------------------------

    def applicable(self) -> str | None:
        """None when the method applies to this model; otherwise the reason it does not."""
        return None

    def _prepare(self, images: Tensor, targets: Tensor) -> None:  # noqa: B027 - optional hook
        """Per-call set-up that sees the whole request (e.g. a SHAP background sample)."""

    @abstractmethod
    def _attribute(self, images: Tensor, targets: Tensor) -> BatchResult:
        """Attributions for a chunk: ``images`` normalised (n,C,H,W) on CPU, ``targets`` (n,)."""

    # -- the shared driver ------------------------------------------------------------------------

    def explain(self, images: Tensor, targets: Tensor, ids: list[str]) -> Explanation:
        """Explain ``images`` (normalised, (N,C,H,W), CPU) for class ``targets`` (N,)."""
        if images.dim() != 4:
            raise BadInputError(f"images: expected a (N, C, H, W) tensor, got shape {tuple(images.shape)}")
        targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if not (len(images) == len(targets) == len(ids)):
            raise BadInputError(
                f"images/targets/ids: lengths differ ({len(images)}, {len(targets)}, {len(ids)})"
            )
        ids = [str(i) for i in ids]
        images = images.detach().float().cpu()
        n, _, h, w = images.shape
        self.input_shape = tuple(images.shape[1:])
        if not self._batch_given:
            self.batch_size = self.pass_size = default_batch_size(self.device, (h, w))
        done: list[tuple[int, BatchResult]] = []  # (start index, result)
        failures: list[dict] = []

        with frozen(self.model):
            prepare_model(self.model, self.device)  # device + layout; frozen() restores requires_grad after
            try:
                self._prepare(images, targets)
            except Exception as e:  # noqa: BLE001 - recorded: every image fails with the set-up error
                log.warning("%s: set-up failed: %s", self.name, e)
                failures = [{"id": i, "error": _error_text(e)} for i in ids]
                return self._assemble(done, failures, ids, (h, w), targets)
            step = 1 if self.per_image else self.batch_size
            bar = tqdm(total=n, desc=f"explain {self.name}", unit="img", disable=self._bar_disabled(), leave=False)
            for start in range(0, n, step):
                stop = min(n, start + step)
                try:
                    done.extend(self._run_chunk(images, targets, start, stop))
                except Exception as e:  # noqa: BLE001 - isolate the failing image(s), record, go on
                    if stop - start == 1:
                        log.warning("%s failed on %s: %s", self.name, ids[start], e)
                        failures.append({"id": ids[start], "error": _error_text(e)})
                    else:
                        self._retry_each(images, targets, ids, start, stop, done, failures)
                bar.update(stop - start)
            bar.close()
        return self._assemble(done, failures, ids, (h, w), targets)

    def _bar_disabled(self) -> bool | None:
        return None if self.progress is None else not self.progress

    def _run_chunk(self, images: Tensor, targets: Tensor, start: int, stop: int) -> list[tuple[int, BatchResult]]:
        """One chunk, halved on out-of-memory (device.backoff_chunks)."""

        def run(a: int, b: int) -> tuple[int, BatchResult]:
            # After an out-of-memory the chunk shrinks; inner passes (IG steps, occlusion
            # perturbations, SHAP samples) shrink with it.
            self.pass_size = max(1, self.batch_size * (b - a) // (stop - start))
            return start + a, self._attribute(images[start + a : start + b], targets[start + a : start + b])

        return list(backoff_chunks(stop - start, stop - start, run))

    def _retry_each(
        self,
        images: Tensor,
        targets: Tensor,
        ids: list[str],
        start: int,
        stop: int,
        done: list[tuple[int, BatchResult]],
        failures: list[dict],
    ) -> None:
        self.pass_size = self.batch_size
        for i in range(start, stop):
            try:
                done.append((i, self._attribute(images[i : i + 1], targets[i : i + 1])))
            except Exception as e:  # noqa: BLE001 - recorded with the image id
                log.warning("%s failed on %s: %s", self.name, ids[i], e)
                failures.append({"id": ids[i], "error": _error_text(e)})

    def _assemble(
        self,
        done: list[tuple[int, BatchResult]],
        failures: list[dict],
        ids: list[str],
        hw: tuple[int, int],
        targets: Tensor,
    ) -> Explanation:
        done.sort(key=lambda d: d[0])
        index: list[int] = []
        maps, chans = [], []
        per_image: dict[str, list[np.ndarray]] = {}
        for start, res in done:
            k = len(res.maps)
            index.extend(range(start, start + k))
            maps.append(np.asarray(res.maps, dtype=np.float32).reshape(k, *hw))
            if res.channel_maps is not None:
                chans.append(np.asarray(res.channel_maps, dtype=np.float32))
            for key, val in res.per_image.items():
                per_image.setdefault(key, []).append(np.asarray(val).reshape(k))
        all_maps = np.concatenate(maps) if maps else np.zeros((0, *hw), np.float32)
        channel_maps = np.concatenate(chans) if chans and len(chans) == len(maps) else None
        extras: dict[str, Any] = {
            "index": index,  # positions of the explained images in the request
            "targets": [int(targets[i]) for i in index],
            "settings": self.settings_record(),
        }
        for key, parts in per_image.items():
            extras[key] = np.concatenate(parts)
        extras.update(self._summarise(extras))
        return Explanation(
            maps=np.nan_to_num(all_maps, copy=False),
            ids=[ids[i] for i in index],
            failures=failures,
            channel_maps=channel_maps,
            extras=extras,
        )

    def _summarise(self, extras: dict[str, Any]) -> dict[str, Any]:
        """Method-specific summaries of per-image extras (e.g. IG completeness)."""
        return {}

    def settings_record(self) -> dict[str, Any]:
        """Settings as JSON-safe values (tensors/arrays described by their shape)."""
        out: dict[str, Any] = {}
        for k, v in self.settings.items():
            if isinstance(v, (Tensor, np.ndarray)):
                out[k] = f"array{tuple(v.shape)}"
            elif v is None or isinstance(v, (bool, int, float, str)):
                out[k] = v
            elif isinstance(v, (list, tuple)):
                out[k] = list(v)
            else:
                out[k] = repr(v)
        out.update(batch_size=self.batch_size, seed=self.seed, device=str(self.device), baseline=self.baseline_text())
        try:
            out["native_resolution"] = self.native_resolution()
        except Exception as e:  # noqa: BLE001 - a model that cannot be probed: say so, the record stays
            out["native_resolution"] = {"cells": None, "note": f"could not be determined: {type(e).__name__}: {e}"}
        return out

    def baseline_text(self) -> str:
        """What the method compares the image with, in words (audit.json settings.baseline)."""
        return self.baseline

    def native_resolution(self) -> dict[str, Any]:
        """The resolution the method really attributes at: {"cells": [h, w] or None, "note"}.

        Maps are stored at the input size; a coarser method (Grad-CAM, occlusion,
        superpixels) is upsampled, and the report says so.
        """
        hw = list(self.input_shape[-2:]) if self.input_shape else None
        return {"cells": hw, "note": "pixel level"}

    # -- pixel space, for methods that perturb images as pictures (LIME, SHAP) ---------------------

    def _norm_stats(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        mean = np.zeros(channels) if self.mean is None else np.asarray(self.mean, dtype=np.float64)
        std = np.ones(channels) if self.std is None else np.asarray(self.std, dtype=np.float64)
        for name, v in (("mean", mean), ("std", std)):
            if v.size == 1:
                v = np.repeat(v, channels)
            if v.size != channels:
                raise BadInputError(f"{name}: {v.size} values for {channels}-channel images")
            if name == "mean":
                mean = v
            else:
                std = v
        return mean.astype(np.float32), std.astype(np.float32)

    def to_pixels(self, images: Tensor) -> np.ndarray:
        """Normalised (n,C,H,W) tensor -> float32 (n,H,W,C) pixel values (not clipped, so it round-trips)."""
        c = images.shape[1]
        mean, std = self._norm_stats(c)
        arr = images.detach().cpu().numpy().transpose(0, 2, 3, 1)
        return (arr * std + mean).astype(np.float32)

    def from_pixels(self, pixels: np.ndarray) -> Tensor:
        """Inverse of ``to_pixels``: (n,H,W,C) pixel values -> normalised (n,C,H,W) float32 tensor."""
        pixels = np.asarray(pixels, dtype=np.float32)
        mean, std = self._norm_stats(pixels.shape[-1])
        return torch.from_numpy(((pixels - mean) / std).transpose(0, 3, 1, 2).copy())

    def to_model(self, x: Tensor) -> Tensor:
        """Move a batch to the model's device in the model's memory layout."""
        x = x.to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def spatial_sum(attr: Tensor | np.ndarray) -> np.ndarray:
    """(n,C,H,W) attributions -> (n,H,W) by summing over channels (signed)."""
    if isinstance(attr, Tensor):
        attr = attr.detach().float().cpu().numpy()
    return np.asarray(attr, dtype=np.float32).sum(axis=1)


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """numpy's global RNG seeded for the block and restored after (shap draws from it)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
