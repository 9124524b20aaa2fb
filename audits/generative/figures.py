"""PNG figures of the counterfactual section, all at the model's input size and on fixed scales.

Per item: original, reconstruction, counterfactual, *change* (absolute
per-pixel change counterfactual - reconstruction, the largest over channels,
on a fixed 0..CHANGE_SCALE colour scale, so maps of different images compare)
and *colour* (the signed change per channel, 0.5 + change clipped to [0, 1]:
grey means unchanged, a red cast means red was added, cyan that red was
taken away). One legend per section states both scales. Per target class: the
mean change map with its boxes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .counterfactual import CounterfactualBatch

CHANGE_SCALE = 0.5  # |change| (pixel range 0..1) at the top of the change colour scale; larger values saturate
CHANGE_CMAP = "magma"
KINDS = ("original", "reconstruction", "counterfactual", "change", "colour")


def stem(id_: str) -> str:
    """File-name stem of an item: readable, and unique per id (ids may hold slashes and other characters)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", re.sub(r"\.[A-Za-z]{3,4}$", "", id_)).strip("_")[-60:]
    return f"cf-{readable}-{hashlib.sha1(id_.encode()).hexdigest()[:6]}"


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def _save_rgb(a: np.ndarray, path: Path) -> None:
    """(C, H, W) in [0, 1] -> PNG (grey for one channel)."""
    arr = _to_uint8(np.transpose(a, (1, 2, 0)))
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]).save(path)


def change_rgb(change: np.ndarray) -> np.ndarray:
    """(H, W) absolute change -> (H, W, 3) uint8 on the fixed colour scale."""
    from matplotlib import colormaps

    return _to_uint8(colormaps[CHANGE_CMAP](np.clip(change / CHANGE_SCALE, 0, 1))[..., :3])


def colour_rgb(diff: np.ndarray) -> np.ndarray:
    """(C, H, W) signed change -> (H, W, 3) uint8: 0.5 + change (grey = no change)."""
    if diff.shape[0] == 1:
        diff = np.repeat(diff, 3, axis=0)
    return _to_uint8(np.transpose(0.5 + diff[:3] / (2 * CHANGE_SCALE), (1, 2, 0)))


def save_item_pngs(batch: "CounterfactualBatch", j: int, id_: str, out_dir: Path) -> dict[str, str]:
    """The item's five images (KINDS) as PNGs in ``out_dir``; returns kind -> file name.

    Items left out before the search have no counterfactual: only original and reconstruction.
    """
    base = stem(id_)
    names = {}
    for kind, t in (("original", batch.originals), ("reconstruction", batch.reconstructions)):
        names[kind] = f"{base}-{kind}.png"
        _save_rgb(t[j].numpy(), out_dir / names[kind])
    if batch.outcomes[j] not in ("success", "not-reached"):
        return names
    names["counterfactual"] = f"{base}-counterfactual.png"
    _save_rgb(batch.counterfactuals[j].numpy(), out_dir / names["counterfactual"])
    diff = batch.differences[j].numpy()
    names["change"] = f"{base}-change.png"
    Image.fromarray(change_rgb(np.abs(diff).max(0))).save(out_dir / names["change"])
    names["colour"] = f"{base}-colour.png"
    Image.fromarray(colour_rgb(diff)).save(out_dir / names["colour"])
    return names


def save_legend(path: Path) -> Path:
    """One strip stating both scales: the change colour bar and the colour-change swatches."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 0.9), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    ax1.imshow(np.linspace(0, 1, 256)[None], aspect="auto", cmap=CHANGE_CMAP, extent=(0, CHANGE_SCALE, 0, 1))
    ax1.set_yticks([])
    ax1.set_xticks([0, CHANGE_SCALE / 2, CHANGE_SCALE])
    ax1.set_xticklabels(["0", f"{CHANGE_SCALE / 2:g}", f"≥{CHANGE_SCALE:g}"])
    ax1.set_title("|change| per pixel (largest channel; pixels 0–1)", fontsize=8)
    swatches = [np.full(3, 0.5)]
    for channel in range(3):
        for sign in (1, -1):
            v = np.full(3, 0.5)
            v[channel] += sign * 0.5  # a change of +-CHANGE_SCALE in one channel
            swatches.append(v)
    ax2.imshow(np.array(swatches)[None], aspect="auto")
    ax2.set_yticks([])
    ax2.set_xticks(range(7))
    ax2.set_xticklabels(["none", "+R", "−R", "+G", "−G", "+B", "−B"], fontsize=7)
    ax2.set_title(f"colour change (±{CHANGE_SCALE:g} saturates)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save_concentration_png(summary: dict[str, Any], path: Path, title: str) -> Path:
    """The mean change map of one target class with its boxes (scale: share of change per pixel x pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    share = np.asarray(summary["map"])
    lift = share * share.size  # 1 = the change spread evenly over the image
    fig, ax = plt.subplots(figsize=(2.6, 2.3), dpi=110)
    im = ax.imshow(lift, cmap="viridis", vmin=0, interpolation="nearest")
    for k, b in enumerate(summary.get("boxes") or []):
        x0, y0, x1, y1 = b["box"]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5,
                               ec="white" if k == 0 else "#ff9f1c"))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.ax.tick_params(labelsize=6)
    bar.set_label("x even spread", fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
