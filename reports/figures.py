"""Small report figures drawn with matplotlib (Agg canvas, no pyplot global state).

Each function returns PNG bytes (or SVG text for the index trends) so callers decide
where they go. Figures are kept small (low dpi, few inches) so a report stays light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 90
CMAP_COUNTS = "Blues"
CMAP_HEAT = "inferno"


def plain(text: object, limit: int = 28) -> str:
    """Label text safe for matplotlib: '$' would start mathtext (and can fail to parse)."""
    s = str(text).replace("$", r"\$")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _matrix(fig: Figure, colours: np.ndarray, labels: Sequence[str], texts: np.ndarray | None, *, cmap: Any,
            vmin: float, vmax: float, bar: str, step: int = 1, bar_size: float = 7, rotation: int = 45) -> Any:
    """A class-by-class (or method-by-method) matrix: coloured cells, their numbers written in (``texts``,
    white on dark cells), labelled rows and columns, and a colour bar saying what a colour means."""
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(colours), cmap=cmap, vmin=vmin, vmax=vmax)
    k = colours.shape[0]
    ax.set_xticks(range(0, k, step), labels[::step], rotation=rotation, ha="right", fontsize=8)
    ax.set_yticks(range(0, k, step), labels[::step], fontsize=8)
    if texts is not None:
        for i in range(k):
            for j in range(k):
                if texts[i, j]:
                    ax.text(j, i, texts[i, j], ha="center", va="center", fontsize=7,
                            color="white" if abs(colours[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(bar, fontsize=bar_size)
    return ax


def confusion_png(matrix: Sequence[Sequence[float]], classes: Sequence[str], title: str) -> bytes:
    """Confusion matrix heatmap, rows = true class, columns = predicted; row-normalised colour, raw counts written."""
    m = np.asarray(matrix, dtype=float)
    k = m.shape[0]
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = min(3.0 + 0.35 * k, 9.0)
    fig = Figure(figsize=(size, size * 0.9))
    labels = [plain(c, 16) for c in classes] if len(classes) == k else [str(i) for i in range(k)]
    texts = np.vectorize(lambda v: f"{int(v)}")(m) if k <= 15 else None
    ax = _matrix(fig, norm, labels, texts, cmap=CMAP_COUNTS, vmin=0, vmax=1, bar="share of true class",
                 step=max(1, math.ceil(k / 30)), bar_size=10, rotation=60)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(plain(title, 60), fontsize=10)
    return _png(fig)


def reliability_png(bins: Sequence[Mapping], ece: float | None, title: str) -> bytes:
    """Reliability diagram: accuracy against mean confidence per bin; bar width = bin, gap to diagonal = miscalibration."""
    fig = Figure(figsize=(4.2, 3.6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
    rows = [b for b in bins if b.get("count") and b.get("accuracy") is not None]
    if rows:
        lo = np.array([float(b.get("lo", 0.0)) for b in rows])
        hi = np.array([float(b.get("hi", 1.0)) for b in rows])
        acc = np.array([float(b["accuracy"]) for b in rows])
        conf = np.array([float(b.get("confidence") or (l + h) / 2) for b, l, h in zip(rows, lo, hi)])
        ax.bar(lo, acc, width=hi - lo, align="edge", color="#4c72b0", edgecolor="white", alpha=0.85, label="accuracy")
        ax.scatter(conf, acc, color="#dd8452", s=12, zorder=3, label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    suffix = f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else ""
    ax.set_title(plain(title, 40) + suffix, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def learning_curves_png(rows: Sequence[Mapping]) -> bytes:
    """Train/val loss and accuracy per epoch, side by side."""
    fig = Figure(figsize=(7.5, 3.0))
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(rows)]
    for idx, (kind, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, idx + 1)
        for split, colour in (("train", "#4c72b0"), ("val", "#dd8452")):
            ys = [r.get(f"{split}_{kind}") for r in rows]
            pts = [(e, y) for e, y in zip(epochs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, color=colour, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _show_grid(ax, grid: np.ndarray, title: str) -> None:
    ax.imshow(grid, cmap=CMAP_HEAT, interpolation="nearest")
    ax.set_title(plain(title, 22), fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def heatmaps_png(grids: Mapping[str, Sequence[Sequence[float]]], cols: int = 6) -> bytes:
    """A montage of importance grids (title -> 2-D grid), each on its own colour scale."""
    items = [(t, np.asarray(g, dtype=float)) for t, g in grids.items()]
    items = [(t, g) for t, g in items if g.ndim == 2 and g.size]
    n = max(len(items), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.7 * cols, 1.85 * rows))
    for i, (title, grid) in enumerate(items):
        _show_grid(fig.add_subplot(rows, cols, i + 1), np.nan_to_num(grid), title)
    fig.tight_layout()
    return _png(fig)


def trend_png(labels: Sequence[str], series: Mapping[str, Sequence[float | None]],
              limits: Mapping[str, tuple[float, float]] | None = None) -> bytes:
    """Small multiples (one panel per metric) across audits, oldest to newest; missing points are gaps.

    ``limits`` bounds a panel's axis where the metric is bounded (accuracy never above 1): matplotlib's
    margins would otherwise draw ticks that no value can reach.

    The index embeds it as a data: URL so index.html stays one file that a strict
    content security policy accepts (matplotlib's SVG needs inline style attributes).
    """
    names = [n for n, ys in series.items() if any(isinstance(y, (int, float)) for y in ys)]
    n = max(len(names), 1)
    fig = Figure(figsize=(2.3 * n, 1.9))
    x = list(range(len(labels)))
    ticks = [plain(lbl, 12) for lbl in labels]
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, n, i + 1)
        ys = [y if isinstance(y, (int, float)) and math.isfinite(y) else np.nan for y in series[name]]
        ax.plot(x, ys, marker="o", ms=3, color="#4c72b0", lw=1.5, clip_on=False)
        if limits and name in limits:
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, limits[name][0]), min(hi, limits[name][1]))
        ax.set_title(plain(name, 24), fontsize=9)
        step = max(1, math.ceil(len(x) / 6))
        ax.set_xticks(x[::step], ticks[::step], fontsize=7, rotation=30, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --- figures of the sectioned report -----------------------------------------------------------

def _grey(image: np.ndarray | None) -> np.ndarray | None:
    """An RGB image in [0, 1] as luminance, for a quiet background under a heatmap."""
    if image is None:
        return None
    img = np.asarray(image, dtype=float)
    return img if img.ndim == 2 else img[..., :3] @ np.array([0.299, 0.587, 0.114])


def _lift(grid: Sequence[Sequence[float]]) -> np.ndarray:
    """A grid of attribution shares (summing to 1) as multiples of a cell's area share (1 = uniform)."""
    g = np.nan_to_num(np.abs(np.asarray(grid, dtype=float)))
    total = g.sum()
    return g / total * g.size if total > 0 else g


def importance_png(grids: Mapping[str, Sequence[Sequence[float]]], images: Mapping[str, np.ndarray | None],
                   cols: int = 6, panel: float = 1.75) -> bytes:
    """Importance grids over class-average images, on one colour scale with a colour bar.

    Each cell's colour is its share of the attribution divided by its share of the
    area (1 = as important as any other cell, 3 = three times its share), so panels
    and methods read on the same scale. The grid is drawn at its own resolution
    (nearest), never smoothed into detail it does not have.
    """
    items = [(t, _lift(g)) for t, g in grids.items()]
    items = [(t, g) for t, g in items if g.ndim == 2 and g.size]
    n = max(len(items), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    vmax = max([float(np.percentile(g, 99.5)) for _, g in items] + [2.0])
    fig = Figure(figsize=(panel * cols + 0.9, panel * 1.08 * rows))
    grid_spec = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [0.08])
    im = None
    for i, (title, g) in enumerate(items):
        ax = fig.add_subplot(grid_spec[i // cols, i % cols])
        bg = _grey(images.get(title))
        h, w = (bg.shape[:2] if bg is not None else g.shape)
        if bg is not None:
            ax.imshow(bg, cmap="gray", vmin=0, vmax=1, extent=(0, w, h, 0))
        im = ax.imshow(g, cmap=CMAP_HEAT, vmin=0, vmax=vmax, alpha=0.62 if bg is not None else 1.0,
                       interpolation="nearest", extent=(0, w, h, 0))
        ax.set_title(plain(title, 22), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        cax = fig.add_subplot(grid_spec[:, cols])
        fig.colorbar(im, cax=cax).set_label("× area share", fontsize=7)
        cax.tick_params(labelsize=7)
    fig.subplots_adjust(wspace=0.08, hspace=0.25)
    return _png(fig)


def reliability_counts_png(bins: Sequence[Mapping], ece: float | None, title: str) -> bytes:
    """Reliability diagram with the number of images per confidence bin underneath.

    Top: accuracy per confidence bin (bars) against the diagonal (perfect calibration);
    the gap between a bar and the diagonal is the miscalibration in that bin.
    Bottom: how many images fall in each bin, so a big gap in an empty bin is read as noise.
    """
    fig = Figure(figsize=(4.4, 4.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
    rows = [b for b in bins if b.get("count") and b.get("accuracy") is not None]
    lo = np.array([float(b.get("lo", 0.0)) for b in bins]) if bins else np.zeros(0)
    hi = np.array([float(b.get("hi", 1.0)) for b in bins]) if bins else np.zeros(0)
    counts = np.array([float(b.get("count") or 0) for b in bins]) if bins else np.zeros(0)
    if rows:
        rlo = np.array([float(b.get("lo", 0.0)) for b in rows])
        rhi = np.array([float(b.get("hi", 1.0)) for b in rows])
        acc = np.array([float(b["accuracy"]) for b in rows])
        conf = np.array([float(b.get("confidence") or (a + c) / 2) for b, a, c in zip(rows, rlo, rhi)])
        top.bar(rlo, acc, width=rhi - rlo, align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
        top.scatter(conf, acc, color="#dd8452", s=14, zorder=3, label="mean confidence")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    suffix = f" (ECE {ece:.3f})" if isinstance(ece, (int, float)) else ""
    top.set_title(plain(title, 40) + suffix, fontsize=10, pad=18)
    top.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    if len(counts):
        bottom.bar(lo, counts, width=hi - lo, align="edge", color="#9aa5b1", edgecolor="white")
        for x, c in zip((lo + hi) / 2, counts):
            if c > 0:
                bottom.text(x, c, f"{int(c)}", ha="center", va="bottom", fontsize=6)
        if counts.max() > 0:
            bottom.set_ylim(0, counts.max() * 1.35)
    bottom.set_ylabel("images", fontsize=8)
    bottom.set_xlabel("confidence")
    bottom.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def _band(c: Mapping, key: str) -> tuple[list, list] | None:
    """A random-order band for curve ``key`` in the shapes producers use: key_lo/key_hi, key_band, key_std."""
    lo, hi = c.get(f"{key}_lo"), c.get(f"{key}_hi")
    if lo is not None and hi is not None:
        return list(lo), list(hi)
    band = c.get(f"{key}_band")
    if isinstance(band, Sequence) and len(band) == 2:
        return list(band[0]), list(band[1])
    std, mean = c.get(f"{key}_std"), c.get(key)
    if std is not None and mean is not None:
        m, s = np.asarray(mean, float), 1.96 * np.asarray(std, float)
        return list(m - s), list(m + s)
    return None


def faithfulness_band_png(curves: Mapping[str, Mapping[str, Sequence[float]]], cols: int = 4) -> bytes:
    """Deletion and insertion curves per method (solid) against random orders (dashed, with their band).

    A faithful map makes the deletion curve fall below the random band and the
    insertion curve rise above it.
    """
    items = [(m, c) for m, c in curves.items() if isinstance(c, Mapping) and c.get("x")]
    n = max(len(items), 1)
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.7 * ncols, 2.35 * nrows))
    for i, (method, c) in enumerate(items):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        x = list(c["x"])
        for key, colour, label in (("deletion", "#c44e52", "deletion"), ("insertion", "#4c72b0", "insertion")):
            ys = c.get(key)
            if ys and len(ys) == len(x):
                ax.plot(x, ys, "-", color=colour, lw=1.5, label=label)
            rnd = c.get(f"random_{key}")
            if rnd and len(rnd) == len(x):
                ax.plot(x, rnd, "--", color=colour, lw=1, alpha=0.8, label=f"{label}, random")
            band = _band(c, f"random_{key}")
            if band and len(band[0]) == len(x):
                ax.fill_between(x, band[0], band[1], color=colour, alpha=0.15, lw=0)
        ax.set_title(plain(method, 22), fontsize=9)
        ax.set_xlabel("fraction of image removed / inserted", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        if i == 0 and ax.lines:
            ax.set_ylabel("target probability", fontsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def sanity_png(curves: Mapping[str, Mapping[str, Sequence[Any]]]) -> bytes:
    """Cascading randomisation (Adebayo et al. 2018): similarity of maps to the original as more
    layers, from the top, are re-initialised. A method that passes drops towards 0."""
    fig = Figure(figsize=(6.2, 2.8))
    ax = fig.add_subplot()
    labels: list[str] = []
    low = -0.2
    for method, c in curves.items():
        ys = [float(y) if isinstance(y, (int, float)) else np.nan for y in c.get("rank_corr") or []]
        if not ys:
            continue
        low = min(low, np.nanmin(ys) - 0.05) if np.isfinite(ys).any() else low
        layers = [str(v) for v in (c.get("layers") or [])][: len(ys)]
        if len(layers) > len(labels):
            labels = layers
        ax.plot(range(len(ys)), ys, marker="o", ms=3, lw=1.4, label=plain(method, 16))
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_ylim(max(low, -1.02), 1.02)  # a correlation can fall to -1: never cut a curve off
    ax.set_ylabel("rank correlation", fontsize=8)
    ax.set_xlabel("layers randomised, from the top", fontsize=8)
    if labels:
        step = max(1, math.ceil(len(labels) / 10))
        ax.set_xticks(range(0, len(labels), step), [plain(v, 14) for v in labels[::step]], rotation=35,
                      ha="right", fontsize=6)
    ax.tick_params(labelsize=7)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def agreement_png(names: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> bytes:
    """Mean rank correlation (Spearman) between methods' maps, coloured from -1 (opposite) to 1 (same)."""
    m = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    k = len(names)
    size = min(2.4 + 0.45 * k, 7.0)
    fig = Figure(figsize=(size + 0.8, size * 0.85))
    texts = np.vectorize(lambda v: f"{v:.2f}" if np.isfinite(v) else "")(m) if m.size else None
    _matrix(fig, m, [plain(n, 14) for n in names], texts, cmap="RdBu", vmin=-1, vmax=1, bar="Spearman ρ", bar_size=8)
    fig.tight_layout()
    return _png(fig)


def box_png(image: np.ndarray | None, box: Sequence[float], image_size: Sequence[float] | None, title: str) -> bytes:
    """An image (the class average) with a candidate shortcut's box drawn on it."""
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(2.2, 2.35))
    ax = fig.add_subplot()
    w, h = (float(image_size[0]), float(image_size[1])) if image_size else (None, None)
    if image is not None:
        ih, iw = np.asarray(image).shape[:2]
        w, h = w or iw, h or ih
        ax.imshow(image, extent=(0, w, h, 0))
    w, h = w or 1.0, h or 1.0
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="#ff2d55", lw=2))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(plain(title, 30), fontsize=8)
    ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _png(fig)


def box_montage_png(images: Sequence[np.ndarray], box: Sequence[float], image_size: Sequence[float] | None,
                    titles: Sequence[str], cols: int = 6) -> bytes:
    """Example images with the same box drawn on each (where a shortcut candidate sits)."""
    from matplotlib.patches import Rectangle

    n = max(len(images), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.5 * cols, 1.62 * rows))
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    for i, (img, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ih, iw = np.asarray(img).shape[:2]
        w, h = (float(image_size[0]), float(image_size[1])) if image_size else (iw, ih)
        ax.imshow(img, extent=(0, w, h, 0))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="#ff2d55", lw=1.6))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(plain(title, 18), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _png(fig)
