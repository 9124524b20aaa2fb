"""The tensor store: an image is decoded once per transform, read back bit for bit, and a damaged file is redone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from imaudit.audits import images as images_module
from imaudit.audits.images import ImageDataset
from imaudit.audits.tensor_store import cached_images, store_dir
from imaudit.models.loaded import LoadedModel

CLASSES = ["a", "b"]


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rows(folder, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(path)
        out.append({"id": path.name, "path": str(path), "label": CLASSES[i % 2], "split": "val", "sha256": f"sha{i}",
                    "width": 28, "height": 20, "mode": "RGB", "mask": None})
    return pd.DataFrame(out)


def _model_parts():
    module = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    cfg = dict(timm.data.resolve_model_data_config(module), input_size=(3, 16, 16))
    return cfg, LoadedModel(module, "timm:test_resnet", "test_resnet", "x", 2, None, cfg).transform()


def _count_decodes(monkeypatch) -> list[str]:
    seen: list[str] = []
    original = images_module.load_image

    def counting(path, *a, **k):
        seen.append(str(path))
        return original(path, *a, **k)

    monkeypatch.setattr(images_module, "load_image", counting)
    return seen


def test_each_image_is_decoded_once_and_read_back_bit_for_bit(tmp_path, own_cache, monkeypatch):
    rows = _rows(tmp_path, 5)
    cfg, transform = _model_parts()
    direct = torch.stack([ImageDataset(rows, CLASSES, transform)[i][0] for i in range(5)])
    decodes = _count_decodes(monkeypatch)
    first = cached_images(rows, CLASSES, transform, cfg)
    assert torch.equal(first, direct) and len(decodes) == 5
    again = cached_images(rows.iloc[[4, 0, 0]], CLASSES, transform, cfg)  # any order, repeats
    assert torch.equal(again, direct[[4, 0, 0]]) and len(decodes) == 5  # no decode the second time
    # Another transform is another entry.
    other = dict(cfg, input_size=(3, 12, 12), crop_pct=1.0)
    assert store_dir(other) != store_dir(cfg)


def test_a_damaged_or_wrong_shaped_file_is_decoded_again(tmp_path, own_cache, monkeypatch):
    rows = _rows(tmp_path, 2)
    cfg, transform = _model_parts()
    good = cached_images(rows, CLASSES, transform, cfg)
    (store_dir(cfg) / "sha0.npy").write_bytes(b"\x93NUMPY truncated")
    np.save(store_dir(cfg) / "sha1.npy", np.zeros((3, 4, 4), np.float32))
    decodes = _count_decodes(monkeypatch)
    assert torch.equal(cached_images(rows, CLASSES, transform, cfg), good)
    assert len(decodes) == 2
    assert np.load(store_dir(cfg) / "sha1.npy").shape == (3, 16, 16)  # rewritten whole


def test_masks_without_decoding_the_image_match_the_full_path(tmp_path):
    im = Image.new("RGB", (40, 20), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: 20 wide, 40 high
    im.save(tmp_path / "img.jpg", exif=exif)
    mask = Image.new("L", (20, 40), 0)
    mask.paste(255, (0, 0, 20, 20))  # the top half of the upright image
    mask.save(tmp_path / "mask.png")
    rows = pd.DataFrame([{"id": "img.jpg", "path": str(tmp_path / "img.jpg"), "label": "a", "split": "val",
                          "sha256": "s", "width": 40, "height": 20, "mode": "RGB", "mask": str(tmp_path / "mask.png")}])
    _, transform = _model_parts()
    ds = ImageDataset(rows, CLASSES, transform, return_mask=True, mask_size=16)
    full = ds[0][3]
    assert torch.equal(ds.mask(0), full)
    assert full.shape == (16, 16)
    assert float(full[:4].mean()) > 0.9 and float(full[-4:].mean()) < 0.1  # upright: the top half is object


def test_a_changed_byte_of_the_right_shape_is_not_trusted(tmp_path, own_cache, monkeypatch):
    """A file that still loads as a float32 (C, H, W) array but whose bytes changed (same size) fails its
    sha256 (the .sum beside it) and is decoded again: no method is fed a wrong image."""
    rows = _rows(tmp_path, 1)
    cfg, transform = _model_parts()
    good = cached_images(rows, CLASSES, transform, cfg)
    path = store_dir(cfg) / "sha0.npy"
    data = bytearray(path.read_bytes())
    data[-4:] = np.float32(123.0).tobytes()  # the last pixel of the last channel, size unchanged
    path.write_bytes(bytes(data))
    assert np.load(path).shape == good.shape[1:]  # a shape check alone would take it
    decodes = _count_decodes(monkeypatch)
    assert torch.equal(cached_images(rows, CLASSES, transform, cfg), good)
    assert len(decodes) == 1
