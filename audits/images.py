"""Reading image files: a readability probe for manifests, RGB loading for models,
and the torch Dataset over a manifest.

Files are checked cheap-first: size from the file system before any byte is
read, dimensions from the header before any pixel is decoded (ImageLimits),
so a 4 GB file named .png or a 12000x12000 decompression bomb costs a stat
and a header read, not gigabytes of memory.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from imaudit.audits.spec import ImageLimits
from imaudit.io import sha256_file

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MIB = 1 << 20
# Images above this many pixels are decoded one at a time (the probe runs in threads), which
# bounds the probe's memory at about threads x 64 MB + one max-size image.
LARGE_PIXELS = 16_000_000
_LARGE_DECODE = threading.BoundedSemaphore(1)
# ImageLimits.max_pixels, checked on the header before decoding, replaces PIL's own bomb
# warning (89 MP by default); PIL's hard error (twice that) is raised to any larger limit asked for.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
log = logging.getLogger(__name__)


class UnreadableImage(Exception):
    """A file with an image extension that cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_file_size(path: Path, limits: ImageLimits) -> int:
    """The file's size in bytes; UnreadableImage when it is empty or over the limit (nothing read)."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableImage("zero-byte file")
    if size > limits.max_file_mb * MIB:
        raise UnreadableImage(f"file is {size / MIB:,.0f} MB, over the {limits.max_file_mb:g} MB limit (limits.max_file_mb)")
    return size


def check_dimensions(im: Image.Image, limits: ImageLimits) -> None:
    """UnreadableImage when the header's width x height is over the limit (nothing decoded yet)."""
    w, h = im.size
    if w * h > limits.max_pixels:
        raise UnreadableImage(
            f"image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {limits.max_pixels / 1e6:g} MP limit (limits.max_pixels)"
        )
    if Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels  # the user raised the limit: PIL must not refuse below it


@contextlib.contextmanager
def _decode_slot(pixels: int) -> Iterator[None]:
    """Large decodes take turns (see LARGE_PIXELS); small ones run freely."""
    if pixels <= LARGE_PIXELS:
        yield
        return
    with _LARGE_DECODE:
        yield


def probe_image(path: str | Path, limits: ImageLimits | None = None) -> dict[str, Any]:
    """Check, hash and fully decode one file: ``{sha256, width, height, mode}``.

    Size and dimensions are checked first (ImageLimits); then the file is
    hashed in blocks and every pixel decoded (``load``), which is what catches
    truncated files. Raises UnreadableImage with a short reason otherwise.
    """
    path, limits = Path(path), limits or ImageLimits()
    check_file_size(path, limits)
    try:
        with Image.open(path) as im:  # reads the header only
            check_dimensions(im, limits)
            digest = sha256_file(path)
            with _decode_slot(im.width * im.height):
                im.load()
            return {"sha256": digest, "width": im.width, "height": im.height, "mode": im.mode}
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (no known image format)") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImage(f"too large to decode safely ({e})") from None
    except MemoryError:
        raise UnreadableImage("not enough memory to decode it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        text = str(e)
        if "truncated" in text or isinstance(e, EOFError):
            raise UnreadableImage(f"truncated image ({text or type(e).__name__})") from None
        raise UnreadableImage(f"cannot decode image ({type(e).__name__}: {text})") from None


def mask_unusable(path: str | Path, limits: ImageLimits) -> str | None:
    """Why a mask file cannot serve (missing, too big, not an image), from its size and header only; or None."""
    path = Path(path)
    if not path.is_file():
        return "mask file not found"
    try:
        check_file_size(path, limits)
        with Image.open(path) as im:
            check_dimensions(im, limits)
    except UnreadableImage as e:
        return f"mask {e.reason}"
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        return f"mask is not a readable image ({type(e).__name__})"
    return None


def load_image(path: str | Path, expect_size: tuple[int, int] | None = None) -> Image.Image:
    """Open an image as RGB whatever its mode, upright per its EXIF orientation.

    ``expect_size`` is the (width, height) the probe saw: a file whose header
    now says otherwise changed since it was checked and is refused before
    decoding; without it the default ImageLimits apply. Transparent pixels
    are composited on black (the convention for masks and shapes here);
    16/32-bit and float images are rescaled, not clipped.
    """
    with Image.open(path) as im:
        if expect_size is not None and tuple(im.size) != tuple(expect_size):
            raise UnreadableImage(f"{path} changed since it was checked: {im.size[0]}x{im.size[1]}, was {expect_size[0]}x{expect_size[1]}")
        if expect_size is None:
            check_dimensions(im, ImageLimits())
        im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (see load_image)."""
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _high_depth_to_l(im)
    if im.mode == "RGBA":
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, im).convert("RGB")
    return im.convert("RGB")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images to 8-bit grey.

    Written by hand because PIL's ``convert("L")`` clips such values at 255
    instead of rescaling, which turns most 16-bit images white. 16-bit images
    (and 32-bit ones holding 16-bit values) are taken as full range, float
    images in [0, 1] are scaled by 255, values already in 0..255 are kept and
    anything else is min-max scaled.
    """
    a = np.nan_to_num(np.asarray(im, dtype=np.float64))
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        a = a / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1.0:
        a = a * 255.0
    elif lo < 0 or hi > 255:
        a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image as load_image returns it (EXIF rotations swap them), from the header only."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def load_mask(path: str | Path) -> Image.Image:
    """An object mask as 8-bit grey (non-zero = object); alpha masks use their alpha."""
    with Image.open(path) as im:
        check_dimensions(im, ImageLimits())
        im.load()
        if im.mode in ("RGBA", "LA", "PA"):
            return im.getchannel("A")
        return to_rgb(im).convert("L")


# Transform steps that move or resize pixels: the mask follows them so it stays
# aligned with the image the model sees. Colour, tensor and normalisation steps
# do not apply to a mask.
_GEOMETRIC = ("Resize", "CenterCrop", "ResizeKeepRatio", "CenterCropOrPad", "Pad", "TrimBorder")


class ImageDataset(torch.utils.data.Dataset):
    """A torch Dataset over manifest rows: ``(image, label index, row index[, mask])``.

    ``transform`` should come from the model's timm data config
    (``timm.data.create_transform``); without it images become float tensors in
    [0, 1]. With ``return_mask`` each item also carries a (H, W) float mask in
    [0, 1]: the transform's geometric steps (resize, crop, pad) are applied to
    it, then it is resized to ``mask_size`` when given. Rows without a mask get
    zeros. Row index is the position in ``manifest``.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        classes: list[str],
        transform: Callable | None = None,
        return_mask: bool = False,
        mask_size: int | None = None,
    ):
        self.paths = [str(p) for p in manifest["path"]]  # not astype(str): names need not be UTF-8
        has_size = {"width", "height"} <= set(manifest.columns)
        self.sizes = list(zip(manifest["width"], manifest["height"])) if has_size else [None] * len(manifest)
        self.modes = manifest["mode"].tolist() if "mode" in manifest.columns else [None] * len(manifest)
        index = {c: i for i, c in enumerate(classes)}
        self.labels = [index[str(v)] for v in manifest["label"]]
        masks = manifest["mask"] if "mask" in manifest.columns else [None] * len(manifest)
        self.masks = [m if isinstance(m, str) and m else None for m in masks]
        self.classes = list(classes)
        self.transform = transform
        self.return_mask = return_mask
        self.mask_size = mask_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple:
        img = load_image(self.paths[i], self.sizes[i])
        x = self.transform(img) if self.transform is not None else _to_tensor(img)
        if not self.return_mask:
            return x, self.labels[i], i
        return x, self.labels[i], i, self._mask(i, img.size, x)

    def mask(self, i: int) -> torch.Tensor:
        """Row i's mask at ``mask_size`` without decoding the image (its upright size comes from the header)."""
        if self.mask_size is None:
            raise ValueError("ImageDataset.mask needs mask_size")
        return self._mask(i, upright_size(self.paths[i]), None)

    def _load_mask(self, i: int, size: tuple[int, int]) -> Image.Image:
        """Row i's mask, or an empty one: a mask that cannot be read affects its own image only
        (localisation then skips it as an empty mask) and is logged with the reason."""
        path = self.masks[i]
        if path:
            try:
                return load_mask(path)
            except (OSError, UnreadableImage, SyntaxError, ValueError) as e:
                log.warning("mask %s of %s ignored: %s", path, self.paths[i], e)
        return Image.new("L", size, 0)

    def _mask(self, i: int, size: tuple[int, int], x: Any) -> torch.Tensor:
        m = self._load_mask(i, size)
        if m.size != size:
            m = m.resize(size, Image.Resampling.NEAREST)
        for step in getattr(self.transform, "transforms", []):
            if type(step).__name__ in _GEOMETRIC:
                m = step(m)
        if self.mask_size is not None:
            out = (self.mask_size, self.mask_size)
        elif isinstance(x, torch.Tensor) and x.ndim == 3:
            out = (int(x.shape[-1]), int(x.shape[-2]))
        else:
            out = m.size
        if m.size != out:
            m = m.resize(out, Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
