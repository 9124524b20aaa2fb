"""Generated image sets for the realistic and scale rows, made once per machine and reused.

Both are builtin:shapes drawings (no download): the realistic set re-encoded
as JPEG photos-sized images (what users audit, what the GPU decoder reads),
the scale sets as PNG class folders of 1k, 4k, 16k... images, read through
``folder:`` so an audit lists, probes and caches them as it would a user's
folder. They live under ``cache_dir()/bench/`` keyed by their options.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from imaudit import paths
from imaudit.audits import builtin_shapes
from imaudit.io import atomic_dir


def _folder(name: str) -> Path:
    return paths.cache_dir() / "bench" / name


def jpeg_set(n: int, size: int = 320, quality: int = 90, seed: int = 0) -> Path:
    """``n`` shapes as ``size`` px JPEGs in val/<class>/ folders (train/ holds one per class); its folder."""
    final = _folder(f"jpeg-{builtin_shapes.VERSION}-n{n}-s{size}-q{quality}-seed{seed}")
    if (final / "done").is_file():
        return final
    with atomic_dir(final, replace=True) as tmp:
        rows, _ = builtin_shapes.generate(tmp / "png", builtin_shapes.ShapesOptions(n=n, size=size, seed=seed),
                                          progress=False)
        seen: set[str] = set()
        for r in rows.itertuples(index=False):
            split = "train" if r.label not in seen else "val"  # one train image per class: the folder has both splits
            seen.add(r.label)
            out = tmp / split / r.label / (Path(r.path).stem + ".jpg")
            out.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            with Image.open(tmp / "png" / r.path) as im:
                im.convert("RGB").save(buf, format="JPEG", quality=quality)
            out.write_bytes(buf.getvalue())
        _drop(tmp / "png")
        (tmp / "done").write_text("ok", encoding="utf-8")
    return final


def png_set(n: int, size: int = 64, seed: int = 0) -> Path:
    """``n`` shapes as PNGs in train/ and val/ class folders (70/30); the folder a ``folder:`` ref names."""
    final = _folder(f"png-{builtin_shapes.VERSION}-n{n}-s{size}-seed{seed}")
    if (final / "done").is_file():
        return final / "images"
    with atomic_dir(final, replace=True) as tmp:
        builtin_shapes.generate(tmp, builtin_shapes.ShapesOptions(n=n, size=size, seed=seed), progress=False)
        _drop(tmp / "masks")
        (tmp / "done").write_text("ok", encoding="utf-8")
    return final / "images"


def _drop(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
