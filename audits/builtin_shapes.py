"""builtin:shapes: generated shapes on textured backgrounds, with object masks
and an optional planted shortcut.

This is the audit's calibration set for explanation checks: the object mask is
the ground truth for localisation, and a planted cue gives the class away in
every image of a class (or ``shortcut_fraction`` of them, in every split):

- ``shortcut=CORNER`` (top-left, top-right, bottom-left, bottom-right): a small
  patch in that corner whose colour is the class's;
- ``shortcut=interior``: the same patch at a fixed place inside the image, away
  from every corner and edge (a watermark or stamp);
- ``shortcut=edge``: the same patch on the bottom edge, halfway between the
  corners (a caption, a scanner's mark);
- ``shortcut=background``: the background's stripes run at the class's angle
  (a class-dependent background; the masks say where the object is).

Shapes never touch a patch. With ``shortcut_labels=random`` the cue is drawn
for a random class instead of the image's own, so it is present but says
nothing about the label: a model cannot rely on it, and a shortcut check must
not confirm it. A model trained with a class cue learns it, so a shortcut check
that does not flag that model is broken.

Ref syntax: ``builtin:shapes?n=600&size=64&seed=0&shortcut=top-left&shortcut_fraction=0.9&classes=circle,square,triangle``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from imaudit.errors import RefError

VERSION = "shapes-v1"
SHAPES = ("circle", "square", "triangle", "cross", "star", "ring", "hexagon")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
INTERIOR = "interior"
EDGE = "edge"
BACKGROUND = "background"
CUES = (*CORNERS, EDGE, INTERIOR, BACKGROUND)
# Centre of the interior mark, as fractions of the side: inside the image's middle
# half on both axes (no corner, no edge band), off the exact centre where shapes sit.
INTERIOR_CENTRE = (0.625, 0.375)
# Shortcut patch colours, one per class index: saturated and far apart, so the
# patch is trivially separable (that is the point of a planted shortcut).
PATCH_COLOURS = [
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
]
TRAIN_FRACTION = 0.7


@dataclass(frozen=True)
class ShapesOptions:
    """Options of builtin:shapes (the ref's query string)."""

    n: int = 600
    size: int = 64
    seed: int = 0
    shortcut: str | None = None
    shortcut_fraction: float = 0.0
    classes: tuple[str, ...] = ("circle", "square", "triangle")
    shortcut_labels: str = "class"

    def key(self) -> str:
        """Folder name of the cached set: a hash of the options and the generator version."""
        opts = asdict(self)
        if opts["shortcut_labels"] == "class":
            del opts["shortcut_labels"]  # sets made before the option existed keep their folder
        blob = json.dumps({"version": VERSION, **opts}, sort_keys=True)
        return f"shapes-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"

    def patch_box(self) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1), exclusive ends, of the shortcut patch; None without a patch."""
        if self.shortcut is None or self.shortcut == BACKGROUND:
            return None
        k, m = max(2, self.size // 8), max(1, self.size // 32)
        if self.shortcut == INTERIOR:
            x0 = int(round(INTERIOR_CENTRE[0] * self.size)) - k // 2
            y0 = int(round(INTERIOR_CENTRE[1] * self.size)) - k // 2
            return x0, y0, x0 + k, y0 + k
        if self.shortcut == EDGE:
            x0, y0 = (self.size - k) // 2, self.size - m - k
            return x0, y0, x0 + k, y0 + k
        x0 = m if self.shortcut.endswith("left") else self.size - m - k
        y0 = m if self.shortcut.startswith("top") else self.size - m - k
        return x0, y0, x0 + k, y0 + k

    def stripe_angle(self, cls: int) -> float:
        """Angle of the background stripes that give class index ``cls`` away (shortcut=background)."""
        return np.pi * cls / len(self.classes)


def parse_options(query: str, ref: str) -> ShapesOptions:
    """Parse and check the query string; bad options raise RefError naming them."""
    raw = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False)) if query else {}
    known = {"n", "size", "seed", "shortcut", "shortcut_fraction", "shortcut_labels", "classes"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RefError(f"{ref}: unknown option {unknown[0]!r} (known: {', '.join(sorted(known))})")

    def number(name: str, cast: type, default: Any) -> Any:
        if name not in raw:
            return default
        try:
            return cast(raw[name])
        except ValueError:
            raise RefError(f"{ref}: option {name}={raw[name]!r} is not a {cast.__name__}") from None

    n, size, seed = number("n", int, 600), number("size", int, 64), number("seed", int, 0)
    shortcut = raw.get("shortcut", "").strip().lower() or None
    if shortcut == "none":
        shortcut = None
    if shortcut is not None and shortcut not in CUES:
        raise RefError(f"{ref}: option shortcut={shortcut!r} must be one of {', '.join(CUES)}")
    fraction = number("shortcut_fraction", float, 1.0 if shortcut else 0.0)
    if not 0.0 <= fraction <= 1.0:
        raise RefError(f"{ref}: option shortcut_fraction={fraction} must lie in [0, 1]")
    if fraction > 0 and shortcut is None:
        raise RefError(f"{ref}: option shortcut_fraction needs shortcut=CUE ({', '.join(CUES)})")
    labels = raw.get("shortcut_labels", "class").strip().lower() or "class"
    if labels not in ("class", "random"):
        raise RefError(f"{ref}: option shortcut_labels={labels!r} must be class or random")
    classes = tuple(c.strip().lower() for c in raw.get("classes", "circle,square,triangle").split(",") if c.strip())
    bad = [c for c in classes if c not in SHAPES]
    if bad:
        raise RefError(f"{ref}: option classes has unknown shape {bad[0]!r} (known: {', '.join(SHAPES)})")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise RefError(f"{ref}: option classes needs at least two different shapes")
    if size < 16 or size > 1024:
        raise RefError(f"{ref}: option size={size} must lie in 16..1024")
    if n < 4 * len(classes):
        raise RefError(f"{ref}: option n={n} is too small: every class needs images in train and val (n >= {4 * len(classes)})")
    return ShapesOptions(n=n, size=size, seed=seed, shortcut=shortcut, shortcut_fraction=fraction, classes=classes,
                         shortcut_labels=labels)


def generate(folder: Path, opts: ShapesOptions, progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Write images under ``folder``/images and masks under ``folder``/masks.

    Returns manifest rows (paths relative to ``folder``, plus a ``shortcut``
    column saying which images carry the patch) and metadata describing the
    planted shortcut. Everything is drawn from one seeded numpy Generator in a
    fixed order, so the same options give byte-identical files.
    """
    rng = np.random.default_rng(opts.seed)
    k = len(opts.classes)
    labels = rng.permutation(np.arange(opts.n) % k)
    splits = np.empty(opts.n, dtype=object)
    patched = np.zeros(opts.n, dtype=bool)
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        n_train = int(round(TRAIN_FRACTION * len(idx)))
        splits[idx[:n_train]] = "train"
        splits[idx[n_train:]] = "val"
        # Exactly the requested fraction of each class in each split carries the patch.
        for part in (idx[:n_train], idx[n_train:]):
            chosen = rng.permutation(part)[: int(round(opts.shortcut_fraction * len(part)))]
            patched[chosen] = True

    # The class whose cue each image carries: its own, or (shortcut_labels=random) any class at random.
    cue_cls = rng.integers(0, k, opts.n) if opts.shortcut_labels == "random" else labels
    box = opts.patch_box()
    background_cue = opts.shortcut == BACKGROUND
    rows = []
    for i in tqdm(range(opts.n), desc="builtin:shapes", unit="img", disable=None if progress else True):
        cls = opts.classes[labels[i]]
        angle = opts.stripe_angle(int(cue_cls[i])) if background_cue and patched[i] else None
        img, mask = _draw(rng, opts.size, cls, box, stripe_angle=angle, classes=k)
        if patched[i] and box is not None:
            x0, y0, x1, y1 = box
            img[y0:y1, x0:x1] = PATCH_COLOURS[cue_cls[i] % len(PATCH_COLOURS)]
        rel = f"images/{splits[i]}/{cls}/{i:05d}.png"
        rel_mask = f"masks/{splits[i]}/{cls}/{i:05d}.png"
        digest = _write_png(folder / rel, Image.fromarray(img))
        _write_png(folder / rel_mask, Image.fromarray(mask))
        rows.append(
            {
                "path": rel, "label": cls, "split": splits[i], "sha256": digest,
                "width": opts.size, "height": opts.size, "mode": "RGB", "mask": rel_mask,
                "shortcut": bool(patched[i] and (box is not None or background_cue)),
            }
        )
    meta = {
        "generator": VERSION,
        "options": {**asdict(opts), "classes": list(opts.classes)},
        "shortcut": None if opts.shortcut is None else _cue_meta(opts, box),
    }
    return pd.DataFrame(rows), meta


def _cue_meta(opts: ShapesOptions, box: tuple[int, int, int, int] | None) -> dict[str, Any]:
    """What was planted: the cue, where, in what share of images, and what gives each class away."""
    meta: dict[str, Any] = {
        "cue": opts.shortcut,
        "corner": opts.shortcut if opts.shortcut in CORNERS else None,
        "fraction": opts.shortcut_fraction,
        "labels": opts.shortcut_labels,
        "box": list(box) if box is not None else None,
    }
    if box is not None:
        meta["colours"] = {c: list(PATCH_COLOURS[j % len(PATCH_COLOURS)]) for j, c in enumerate(opts.classes)}
    else:
        meta["stripe_angles"] = {c: round(float(np.degrees(opts.stripe_angle(j))), 2) for j, c in enumerate(opts.classes)}
    return meta


def _write_png(path: Path, im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _draw(
    rng: np.random.Generator,
    size: int,
    shape: str,
    box: tuple[int, int, int, int] | None,
    *,
    stripe_angle: float | None = None,
    classes: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W, 3) uint8 and its object mask (H, W) uint8 in {0, 255}.

    ``stripe_angle``: the background's stripes run at this angle (jittered by at
    most a quarter of the gap between the ``classes`` class angles) instead of a
    random one.
    """
    bg = _background(rng, size, stripe_angle, classes)
    base = bg.reshape(-1, 3).mean(0)
    colour = rng.integers(0, 256, 3)
    for _ in range(20):  # a colour that stands out from the background
        if np.linalg.norm(colour - base) > 120:
            break
        colour = rng.integers(0, 256, 3)
    r = rng.uniform(0.18, 0.30) * size
    # Keep the shape off the patch corner (with a 2 px margin) in every image,
    # patched or not, so that the patch is the only thing that differs.
    forbidden = None if box is None else (box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2)
    # A corner patch leaves room for every radius, tested by bounding box. An interior mark
    # sits where shapes go: tested by the shape's circle, and a radius that finds no free
    # place in 50 tries shrinks by 15 %.
    interior = forbidden is not None and min(forbidden[0], forbidden[1]) > 0.2 * size and max(forbidden[2], forbidden[3]) < 0.8 * size
    for attempt in range(1000):
        if interior and attempt and attempt % 50 == 0:
            r *= 0.85
        cx, cy = rng.uniform(r + 1, size - r - 1, 2)
        if forbidden is None:
            break
        if interior and _circle_clear(cx, cy, r, forbidden):
            break
        if not interior and not _overlaps((cx - r, cy - r, cx + r, cy + r), forbidden):
            break
    else:  # pragma: no cover - the free area is always large enough for these radii
        raise RuntimeError("could not place a shape off the shortcut patch")
    mask_im = Image.new("L", (size, size), 0)
    _draw_shape(ImageDraw.Draw(mask_im), shape, cx, cy, r, rng.uniform(0, 2 * np.pi))
    mask = np.asarray(mask_im)
    img = bg.copy()
    img[mask > 0] = colour
    return img, mask


def _background(rng: np.random.Generator, size: int, stripe_angle: float | None = None, classes: int = 3) -> np.ndarray:
    """A random base colour with Gaussian noise and a stripe pattern of random (or the given) orientation."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta, period, phase = rng.uniform(0, np.pi), rng.uniform(size / 8, size / 3), rng.uniform(0, 2 * np.pi)
    if stripe_angle is not None:
        # The same draws as a random background (so other images are unchanged), the angle replaced.
        theta = stripe_angle + (theta / np.pi - 0.5) * np.pi / (2 * classes)
    stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
    base = rng.integers(40, 216, 3).astype(np.float64)
    tint = rng.uniform(0.5, 1.0, 3)
    img = base + 30.0 * stripes[..., None] * tint + rng.normal(0, 15, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _circle_clear(cx: float, cy: float, r: float, box: tuple[float, ...]) -> bool:
    """True when the circle of radius ``r`` around (cx, cy) stays outside ``box``."""
    dx = max(box[0] - cx, 0.0, cx - box[2])
    dy = max(box[1] - cy, 0.0, cy - box[3])
    return dx * dx + dy * dy > r * r


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _polygon(cx: float, cy: float, radii: list[float], angle: float) -> list[tuple[float, float]]:
    """Vertices at the given radii, evenly spaced in angle, rotated by ``angle``."""
    n = len(radii)
    return [
        (cx + rr * np.cos(angle + 2 * np.pi * j / n), cy + rr * np.sin(angle + 2 * np.pi * j / n))
        for j, rr in enumerate(radii)
    ]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float) -> None:
    """Fill ``shape`` with 255 inside the circle of radius ``r`` around (cx, cy)."""
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        draw.ellipse((cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r), fill=0)
    elif shape in ("square", "triangle", "hexagon"):
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        draw.polygon(_polygon(cx, cy, [r] * sides, angle), fill=255)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, [r, 0.42 * r] * 5, angle), fill=255)
    elif shape == "cross":
        # The 12 corners of a plus sign (arm length a, half-width w), rotated;
        # a is chosen so that the outer corners stay within radius r.
        a = 0.95 * r
        w = 0.3 * a
        pts = [(w, a), (w, w), (a, w), (a, -w), (w, -w), (w, -a), (-w, -a), (-w, -w), (-a, -w), (-a, w), (-w, w), (-w, a)]
        c, s = np.cos(angle), np.sin(angle)
        draw.polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
