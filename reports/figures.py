"""Small report figures drawn with matplotlib (Agg canvas, no pyplot global state).

Each function returns PNG bytes (or SVG text for the index trends) so callers decide
where they go. Figures are kept small (low dpi, few inches) so a report stays light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

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


def confusion_png(matrix: Sequence[Sequence[float]], classes: Sequence[str], title: str) -> bytes:
    """Confusion matrix heatmap, rows = true class, columns = predicted; row-normalised colour, raw counts written."""
    m = np.asarray(matrix, dtype=float)
    k = m.shape[0]
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = min(3.0 + 0.35 * k, 9.0)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap=CMAP_COUNTS, vmin=0, vmax=1)
    labels = [plain(c, 16) for c in classes] if len(classes) == k else [str(i) for i in range(k)]
    step = max(1, math.ceil(k / 30))
    ax.set_xticks(range(0, k, step), labels[::step], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(0, k, step), labels[::step], fontsize=8)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(plain(title, 60), fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
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


def faithfulness_png(curves: Mapping[str, Mapping[str, Sequence[float]]], cols: int = 4) -> bytes:
    """Deletion and insertion curves per method (solid) against the random order (dashed).

    A faithful map makes the deletion curve fall faster and the insertion curve
    rise faster than the random order does.
    """
    items = [(m, c) for m, c in curves.items() if isinstance(c, Mapping) and c.get("x")]
    n = max(len(items), 1)
    ncols = min(cols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.3 * nrows))
    for i, (method, c) in enumerate(items):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        x = c["x"]
        for key, colour, style, label in (
            ("deletion", "#c44e52", "-", "deletion"), ("random_deletion", "#c44e52", "--", "deletion, random"),
            ("insertion", "#4c72b0", "-", "insertion"), ("random_insertion", "#4c72b0", "--", "insertion, random"),
        ):
            ys = c.get(key)
            if ys and len(ys) == len(x):
                ax.plot(x, ys, style, color=colour, lw=1.4, label=label)
        ax.set_title(plain(method, 22), fontsize=9)
        ax.set_xlabel("fraction of image", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        if i == 0 and ax.lines:
            ax.legend(fontsize=6)
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


def trend_svg(labels: Sequence[str], series: Mapping[str, Sequence[float | None]]) -> str:
    """Small multiples (one panel per metric) across releases, as inline-able SVG text.

    SVG keeps index.html a single self-contained file; text stays text (svg.fonttype none)
    so the markup is small. Matplotlib escapes the text it writes into the SVG.
    """
    import matplotlib

    names = [n for n, ys in series.items() if any(isinstance(y, (int, float)) for y in ys)]
    n = max(len(names), 1)
    fig = Figure(figsize=(2.3 * n, 1.9))
    x = list(range(len(labels)))
    ticks = [plain(lbl, 12) for lbl in labels]
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, n, i + 1)
        ys = [y if isinstance(y, (int, float)) and math.isfinite(y) else np.nan for y in series[name]]
        ax.plot(x, ys, marker="o", ms=3, color="#4c72b0", lw=1.5)
        ax.set_title(plain(name, 24), fontsize=9)
        step = max(1, math.ceil(len(x) / 6))
        ax.set_xticks(x[::step], ticks[::step], fontsize=7, rotation=30, ha="right")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    FigureCanvasAgg(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    # Drop the XML prolog/doctype: the SVG is embedded in HTML.
    return svg[svg.index("<svg"):]
