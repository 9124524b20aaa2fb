"""builtin:digits and builtin:shapes: counts, determinism, masks and the planted shortcut."""

from __future__ import annotations

import numpy as np
import pytest
import timm
from PIL import Image

from imaudit.audits.builtin_shapes import PATCH_COLOURS
from imaudit.audits.data import MANIFEST_COLUMNS, ImageDataset, load_dataset

SHAPES = "builtin:shapes?n=60&size=32&seed=3"


def test_digits_counts_classes_and_split(tmp_path):
    b = load_dataset("builtin:digits", progress=False)
    assert len(b.manifest) == 1797 and b.excluded == []
    assert b.classes == [str(d) for d in range(10)]
    assert list(b.manifest.columns) == MANIFEST_COLUMNS
    assert b.splits == ["train", "val"]
    n_val = len(b.split("val"))
    assert abs(n_val - 0.2 * 1797) <= 1
    for digit, n in b.counts()["val"].items():  # stratified: every digit ~20% in val
        total = n + b.counts()["train"][digit]
        assert abs(n - 0.2 * total) <= 1
    im = Image.open(b.manifest["path"].iloc[0])
    assert im.size == (32, 32) and im.mode == "RGB"
    assert b.manifest["sha256"].is_unique

    # Generated again from scratch elsewhere: same ids, splits and digest.
    fresh = load_dataset("builtin:digits", cache=tmp_path / "elsewhere", progress=False)
    assert fresh.root != b.root
    assert fresh.manifest[["id", "split", "sha256"]].equals(b.manifest[["id", "split", "sha256"]])
    assert fresh.digest == b.digest


def test_shapes_are_deterministic_by_seed(tmp_path):
    a = load_dataset(SHAPES, cache=tmp_path / "one", progress=False)
    b = load_dataset(SHAPES, cache=tmp_path / "two", progress=False)
    assert a.manifest["sha256"].tolist() == b.manifest["sha256"].tolist() and a.digest == b.digest
    other = load_dataset(SHAPES.replace("seed=3", "seed=4"), progress=False)
    assert other.digest != a.digest
    assert a.classes == ["circle", "square", "triangle"]
    assert a.counts() == {"train": {c: 14 for c in a.classes}, "val": {c: 6 for c in a.classes}}


def test_shape_masks_cover_the_object_and_nothing_else():
    b = load_dataset(SHAPES + "&classes=circle,ring,star,cross", progress=False)
    assert b.has_masks and b.manifest["mask"].notna().all()
    for row in b.manifest.head(12).itertuples():
        img = np.asarray(Image.open(row.path)).reshape(-1, 3)
        mask = np.asarray(Image.open(row.mask)).reshape(-1)
        assert set(np.unique(mask)) == {0, 255}
        inside = img[mask > 0]
        # The object is drawn in one flat colour exactly where the mask is set;
        # the textured background never repeats that colour across the outside.
        assert (inside == inside[0]).all()
        outside_same = (img[mask == 0] == inside[0]).all(axis=1).mean()
        assert outside_same < 0.05


@pytest.mark.parametrize("cue, fraction", [("top-left", 0.5), ("bottom-right", 1.0), ("edge", 1.0), ("interior", 1.0)])
def test_shortcut_patch_at_its_place_fraction_and_class_colour(cue, fraction):
    b = load_dataset(f"{SHAPES}&shortcut={cue}&shortcut_fraction={fraction}", progress=False)
    meta = b.meta["shortcut"]
    x0, y0, x1, y1 = meta["box"]
    k = x1 - x0
    assert k == 32 // 8 and y1 - y0 == k
    if cue == "edge":  # on the bottom edge, halfway between the corners
        assert y1 >= 31 and abs((x0 + x1) / 2 - 16) <= 1
    elif cue == "interior":  # inside the middle half on both axes: no corner, no edge band
        assert min(x0, y0) >= 8 and max(x1, y1) <= 24
    else:
        assert (x0 < 16) == cue.endswith("left") and (y0 < 16) == cue.startswith("top")
    colours = {c: tuple(v) for c, v in meta["colours"].items()}
    assert len(set(colours.values())) == len(colours)  # class-dependent
    palette = set(map(tuple, PATCH_COLOURS))

    seen = {s: 0 for s in b.splits}
    for row in b.manifest.itertuples():
        img = np.asarray(Image.open(row.path))
        patch = img[y0:y1, x0:x1].reshape(-1, 3)
        flat = (patch == patch[0]).all()
        has_patch = bool(flat and tuple(patch[0]) in palette)
        assert has_patch == (row.id in meta["ids"])
        if has_patch:
            seen[row.split] += 1
            assert tuple(patch[0]) == colours[row.label]
        mask = np.asarray(Image.open(row.mask))
        assert not mask[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1].any()  # shape never touches the patch
    for split, n in seen.items():
        assert n == sum(round(fraction * c) for c in b.counts()[split].values())


def test_shapes_without_shortcut_have_no_patch_metadata():
    b = load_dataset(SHAPES, progress=False)
    assert b.meta["shortcut"] is None and b.split_method == "generated"


def test_image_dataset_masks_stay_aligned_through_timm_transform():
    b = load_dataset(SHAPES, progress=False)
    # A strong centre crop (crop_pct 0.6): a mask merely resized, not cropped, would miss the object.
    cfg = timm.data.resolve_data_config(
        {"input_size": (3, 48, 48), "crop_pct": 0.6}, model=timm.create_model("test_resnet")
    )
    transform = timm.data.create_transform(**cfg)
    ds = ImageDataset(b.manifest.head(12), b.classes, transform, return_mask=True, mask_size=48)
    checked = 0
    for i in range(len(ds)):
        x, y, idx, mask = ds[i]
        assert mask.shape == (48, 48) and 0 <= float(mask.min()) and float(mask.max()) <= 1
        row = b.manifest.iloc[idx]
        src = np.asarray(Image.open(row.path)).reshape(-1, 3)
        colour = src[np.asarray(Image.open(row["mask"])).reshape(-1) > 0][0]
        rgb = (x.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255
        on_object = np.abs(rgb - colour).max(axis=2) < 12  # where the transformed image shows the object
        in_mask = mask.numpy() > 0.5
        if on_object.sum() < 20:  # object mostly cropped away
            continue
        checked += 1
        iou = (on_object & in_mask).sum() / (on_object | in_mask).sum()
        assert iou > 0.8, (row.id, iou)
    assert checked >= 4
