"""folder: and csv: refs, unreadable files, image modes and bad refs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from imaudit.audits.data import MANIFEST_COLUMNS, ImageDataset, load_dataset, load_image
from imaudit.errors import RefError


def png(path: Path, colour=(200, 10, 10), size=(40, 36), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def tree(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """split -> class -> n distinct images (each a different colour, so no accidental duplicates)."""
    k = 0
    for split, classes in layout.items():
        for cls, n in classes.items():
            for _ in range(n):
                k += 1
                png(root / split / cls / f"img{k:03d}.png", colour=(k * 7 % 256, k * 13 % 256, k * 29 % 256))
    return root


def timm_transform():
    cfg = timm.data.resolve_data_config({"input_size": (3, 32, 32)}, model=timm.create_model("test_resnet"))
    return timm.data.create_transform(**cfg), cfg


def test_folder_with_split_folders(tmp_path):
    root = tree(tmp_path / "ds", {"train": {"cat": 3, "dog": 2}, "validation": {"cat": 1, "dog": 1}})
    (root / "train" / "README.txt").write_text("not data")
    b = load_dataset(f"folder:{root}", progress=False)
    assert list(b.manifest.columns) == MANIFEST_COLUMNS
    assert b.classes == ["cat", "dog"]
    assert b.splits == ["train", "val"]  # "validation" folds into val
    assert b.counts() == {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 1}}
    assert b.excluded == [] and b.split_method == "folders"
    assert b.manifest["id"].is_unique
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in b.manifest["path"])
    row = b.manifest.iloc[0]
    assert (row["width"], row["height"], row["mode"]) == (40, 36, "RGB")
    assert b.manifest["mask"].isna().all() and not b.has_masks
    again = load_dataset(f"folder:{root}", progress=False)
    assert again.manifest["id"].tolist() == b.manifest["id"].tolist() and again.digest == b.digest


def test_digest_follows_content_not_location(tmp_path):
    a = tree(tmp_path / "a", {"train": {"x": 2, "y": 2}, "val": {"x": 1, "y": 1}})
    b = tree(tmp_path / "b", {"train": {"x": 2, "y": 2}, "val": {"x": 1, "y": 1}})
    da, db = load_dataset(f"folder:{a}", progress=False), load_dataset(f"folder:{b}", progress=False)
    assert da.digest == db.digest
    png(b / "val" / "y" / "img006.png", colour=(1, 2, 3))  # one changed pixel value
    assert load_dataset(f"folder:{b}", progress=False).digest != da.digest


def test_folder_without_split_folders_gets_deterministic_stratified_split(tmp_path):
    root = tmp_path / "flat"
    for cls, n in {"a": 10, "b": 5}.items():
        for i in range(n):
            png(root / cls / f"{i}.png", colour=(i * 20, 50 if cls == "a" else 150, 0))
    png(root / "a" / "copy.png", colour=(0, 50, 0))  # identical to a/0.png
    b = load_dataset(f"folder:{root}", progress=False)
    assert b.split_method.startswith("auto")
    counts = b.counts()
    # 20% of distinct files per class go to val; the duplicate pair counts once.
    assert counts["val"]["a"] == 2 and counts["val"]["b"] == 1
    assert counts["train"]["a"] + counts["val"]["a"] == 11
    pair = b.manifest[b.manifest["id"].isin(["a/0.png", "a/copy.png"])]
    assert pair["split"].nunique() == 1
    again = load_dataset(f"folder:{root}", progress=False)
    assert again.manifest[["id", "split"]].equals(b.manifest[["id", "split"]])


def test_csv_ref_resolves_relative_paths_masks_and_missing_files(tmp_path):
    png(tmp_path / "imgs" / "a.png", colour=(255, 0, 0))
    png(tmp_path / "imgs" / "b.png", colour=(0, 255, 0))
    png(tmp_path / "masks" / "a.png", colour=255, mode="L")
    csv = tmp_path / "data.csv"
    csv.write_text(
        "path,label,split,mask\n"
        "imgs/a.png,red,train,masks/a.png\n"
        "imgs/b.png,green,train,\n"
        "imgs/a.png,red,val,\n"
        "imgs/gone.png,green,val,\n"
    )
    b = load_dataset(f"csv:{csv}", progress=False)
    assert b.classes == ["green", "red"]
    assert len(b.manifest) == 3 and b.manifest["id"].is_unique
    assert b.has_masks
    with_mask = b.manifest[b.manifest["mask"].notna()]
    assert with_mask["path"].tolist() == [str(tmp_path / "imgs" / "a.png")]
    assert with_mask["mask"].tolist() == [str(tmp_path / "masks" / "a.png")]
    assert [(e["reason"], Path(e["path"]).name) for e in b.excluded] == [("file not found", "gone.png")]


def test_unreadable_files_are_excluded_with_reasons_and_the_rest_load(tmp_path):
    root = tree(tmp_path / "ds", {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}})
    bad = root / "train" / "a"
    (bad / "empty.png").write_bytes(b"")
    buf = bad / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, quality=90)
    (bad / "cut.jpg").write_bytes(buf.read_bytes()[:800])
    buf.unlink()
    (bad / "notes.jpg").write_text("this is text, not a JPEG")
    (bad / "notes.txt").write_text("ignored: not an image extension")
    b = load_dataset(f"folder:{root}", progress=False)
    reasons = {Path(e["path"]).name: e["reason"] for e in b.excluded}
    assert set(reasons) == {"empty.png", "cut.jpg", "notes.jpg"}
    assert reasons["empty.png"] == "zero-byte file"
    assert reasons["cut.jpg"].startswith("truncated")
    assert reasons["notes.jpg"].startswith("not an image")
    assert all(e["split"] == "train" and e["label"] == "a" for e in b.excluded)
    assert len(b.manifest) == 6


MODES = {
    "L": (128, lambda: Image.new("L", (20, 20), 128)),
    "1": (255, lambda: Image.new("1", (20, 20), 1)),
    "P": (0, lambda: _transparent_p()),
    "RGBA": (0, lambda: Image.new("RGBA", (20, 20), (255, 255, 255, 0))),
    "LA": (255, lambda: Image.new("LA", (20, 20), (255, 255))),
    "CMYK": (255, lambda: Image.new("CMYK", (20, 20), (0, 0, 0, 0))),
    "I;16": (255, lambda: Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16))),
    "F": (255, lambda: Image.fromarray(np.full((20, 20), 1.0, dtype=np.float32))),
}


def _transparent_p() -> Image.Image:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    im.info["transparency"] = 0  # palette entry 0 (white) is fully transparent
    return im


@pytest.mark.parametrize("mode", list(MODES))
def test_modes_load_as_rgb_with_known_values(tmp_path, mode):
    expected, make = MODES[mode]
    im = make()
    assert im.mode == mode
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.tif"
    if mode == "F":
        path = tmp_path / "x.tif"
    im.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (20, 20)
    assert np.all(np.asarray(rgb) == expected), (mode, np.unique(np.asarray(rgb)))


def test_image_dataset_gives_rgb_tensors_for_every_mode(tmp_path):
    rows = []
    for i, mode in enumerate(["L", "P", "RGBA", "CMYK", "I;16"]):
        path = tmp_path / "odd" / f"c{i % 2}" / f"{mode.replace(';', '')}.{'tif' if mode == 'CMYK' else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        MODES[mode][1]().save(path)
    b = load_dataset(f"folder:{tmp_path / 'odd'}", progress=False)
    assert sorted(b.manifest["mode"]) == sorted(["L", "P", "RGBA", "CMYK", "I;16"])
    transform, cfg = timm_transform()
    ds = ImageDataset(b.manifest, b.classes, transform)
    for i in range(len(ds)):
        x, y, idx = ds[i]
        assert isinstance(x, torch.Tensor) and x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert idx == i and b.classes[y] == b.manifest["label"].iloc[i]
        rows.append(x)
    # Normalised with mean = std = 0.5: white is +1, black is -1.
    i16 = b.manifest.index[b.manifest["mode"] == "I;16"][0]
    assert torch.allclose(rows[i16], torch.ones(3, 32, 32))
    rgba = b.manifest.index[b.manifest["mode"] == "RGBA"][0]
    assert torch.allclose(rows[rgba], -torch.ones(3, 32, 32))


@pytest.mark.parametrize(
    "ref, needle",
    [
        ("s3:bucket/x", "s3:bucket/x"),
        ("nocolon", "nocolon"),
        ("folder:{tmp}/missing", "missing"),
        ("csv:{tmp}/missing.csv", "missing.csv"),
        ("builtin:imagenet", "builtin:imagenet"),
        ("builtin:shapes?colour=red", "colour"),
        ("builtin:shapes?n=lots", "n='lots'"),
        ("builtin:shapes?classes=circle,blob", "blob"),
        ("builtin:shapes?shortcut=middle", "middle"),
    ],
)
def test_bad_refs_raise_one_line_ref_errors(tmp_path, ref, needle):
    with pytest.raises(RefError) as err:
        load_dataset(ref.format(tmp=tmp_path), progress=False)
    msg = str(err.value)
    assert needle.format(tmp=tmp_path) in msg and "\n" not in msg


def test_csv_missing_column_names_column_and_file(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\na.png,x\n")
    with pytest.raises(RefError, match=r"labels\.csv.*'split'"):
        load_dataset(f"csv:{csv}", progress=False)


def test_folder_with_only_unreadable_images_is_a_ref_error(tmp_path):
    (tmp_path / "ds" / "train" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(RefError, match="no readable images"):
        load_dataset(f"folder:{tmp_path / 'ds'}", progress=False)
