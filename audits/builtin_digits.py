"""builtin:digits: scikit-learn's bundled 1,797 handwritten digits as 32x32 RGB PNGs.

The 8x8 originals ship inside scikit-learn (no download). They are upscaled
bilinearly so that ordinary CNN stems (which downsample 4-32x) still see a
picture, and split 80/20 train/val, stratified, with a fixed seed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

VERSION = "digits-v1"
SIZE = 32
VAL_FRACTION = 0.2
SEED = 0


def generate(folder: Path, progress: bool = True) -> pd.DataFrame:
    """Write the PNGs under ``folder``/{split}/{digit}/ and return their manifest rows.

    Rows carry paths relative to ``folder`` plus sha256, width, height and mode,
    so loading the cached set needs no second pass over the files.
    """
    digits = load_digits()
    labels = digits.target.astype(int)
    index = np.arange(len(labels))
    _, val_idx = train_test_split(index, test_size=VAL_FRACTION, stratify=labels, random_state=SEED)
    split = np.full(len(labels), "train", dtype=object)
    split[val_idx] = "val"

    rows = []
    # load_digits intensities are 0..16 (counts of set pixels in 4x4 blocks).
    pixels = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    for i in tqdm(index, desc="builtin:digits", unit="img", disable=None if progress else True):
        im = Image.fromarray(pixels[i]).resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        data = buf.getvalue()
        rel = f"{split[i]}/{labels[i]}/{i:04d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        rows.append(
            {
                "path": rel,
                "label": str(labels[i]),
                "split": split[i],
                "sha256": hashlib.sha256(data).hexdigest(),
                "width": SIZE,
                "height": SIZE,
                "mode": "RGB",
                "mask": None,
            }
        )
    return pd.DataFrame(rows)
