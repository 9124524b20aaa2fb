"""Runs one method over a sample and records it: the entry points the audit flow calls."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imaudit.audits.explain.base import Explanation
from imaudit.audits.explain.overlay import denormalize, render_overlays
from imaudit.audits.explain.registry import create_explainer
from imaudit.audits.explain.sample import select_sample
from imaudit.audits.explain.views import layer_views
from imaudit.audits.result import MethodRecord
from imaudit.io import atomic_write_bytes

__all__ = [
    "denormalize",
    "explain_method",
    "layer_views",
    "load_maps",
    "render_overlays",
    "save_maps",
    "select_sample",
]
log = logging.getLogger(__name__)


def _json_summary(extras: dict[str, Any]) -> dict[str, Any]:
    """The scalar/small-dict parts of ``extras`` (per-image arrays go to the npz, not audit.json)."""
    return {
        k: v
        for k, v in extras.items()
        if k not in ("index", "targets", "settings") and not isinstance(v, (np.ndarray, list))
    }


def explain_method(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    ids: list[str],
    method: str,
    *,
    settings: dict | None = None,
    device: torch.device | str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
) -> tuple[Explanation, MethodRecord]:
    """Explain ``images`` with ``method``; returns the maps and the audit.json record (timed).

    A method that does not apply returns no maps and a record with
    applicable=False and the reason; unknown methods/settings raise BadInputError.
    """
    explainer = create_explainer(
        method, model, device=device, mean=mean, std=std, seed=seed, input_shape=tuple(images.shape[1:]),
        **(settings or {}),
    )
    reason = explainer.applicable()
    if reason is not None:
        log.info("%s does not apply: %s", method, reason)
        h, w = images.shape[-2:]
        empty = Explanation(maps=np.zeros((0, h, w), np.float32), ids=[], failures=[], extras={})
        return empty, MethodRecord(settings=explainer.settings_record(), applicable=False, reason=reason)
    t0 = time.perf_counter()
    expl = explainer.explain(images, targets, ids)
    seconds = time.perf_counter() - t0
    count = len(expl.ids)
    record = MethodRecord(
        settings=expl.extras.get("settings", explainer.settings_record()),
        applicable=True,
        count=count,
        seconds=round(seconds, 4),
        per_image_rate=(count / seconds) if seconds > 0 and count else None,
        failures=expl.failures,
        quality={},
    )
    summary = _json_summary(expl.extras)
    if summary:
        record.details = summary  # type: ignore[attr-defined] - MethodRecord allows extra keys
    return expl, record


def _aligned(values: Any, expl: Explanation, name: str) -> np.ndarray | None:
    """``values`` for the explained ids: a mapping id -> value, or a sequence aligned with
    ``expl.ids`` or with the request the explanation came from (``extras["index"]``)."""
    if values is None:
        return None
    if isinstance(values, Mapping):
        return np.asarray([values[i] for i in expl.ids])
    arr = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values)
    if len(arr) == len(expl.ids):
        return arr
    index = expl.extras.get("index")
    if index is not None and len(arr) > max(index, default=-1):
        return arr[np.asarray(index, dtype=int)]
    raise ValueError(f"save_maps: {name} has {len(arr)} values for {len(expl.ids)} explained images")


def save_maps(
    expl: Explanation, path: Path, *, targets: Any, labels: Any = None, preds: Any = None
) -> None:
    """Write maps (N,H,W float32), ids, targets, labels, preds, channel_importance and per-image extras to npz.

    ``channel_importance`` (N,C) is the sum of |channel_maps| over pixels, where the method has channel maps.
    """
    arrays: dict[str, np.ndarray] = {
        "maps": np.asarray(expl.maps, dtype=np.float32),
        "ids": np.asarray(expl.ids, dtype=str),
        "targets": _aligned(targets, expl, "targets").astype(np.int64),
    }
    for name, values in (("labels", labels), ("preds", preds)):
        got = _aligned(values, expl, name)
        if got is not None:
            arrays[name] = got if got.dtype.kind in "iufb" else got.astype(str)
    if expl.channel_maps is not None:
        arrays["channel_importance"] = np.abs(expl.channel_maps).sum(axis=(2, 3)).astype(np.float32)
    for key, val in expl.extras.items():
        if isinstance(val, np.ndarray) and len(val) == len(expl.ids):
            arrays[f"extra_{key}"] = val
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_maps(path: Path) -> dict[str, Any]:
    """Read a ``save_maps`` file: numpy arrays by name, ``ids`` as a list of str."""
    with np.load(Path(path), allow_pickle=False) as data:
        out: dict[str, Any] = {k: data[k] for k in data.files}
    out["ids"] = [str(i) for i in out["ids"]]
    return out
