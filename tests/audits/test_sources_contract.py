"""Every registered dataset source keeps the bundle contract (parametrised over the registry).

A new source module registers itself in ``imaudit.audits.sources.SOURCES``;
this test then fails until ``EXAMPLES`` has a small example for it, and every
example must load into the same shape of manifest, twice with the same digest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from imaudit.audits.data import MANIFEST_COLUMNS, ImageDataset, load_dataset
from imaudit.audits.sources import SOURCES
from imaudit.errors import RefError
from imaudit.io import sha256_file

LAYOUT = {"train": {"cat": 3, "dog": 2}, "val": {"cat": 1, "dog": 2}}


def write_tree(root: Path, layout: dict[str, dict[str, int]] = LAYOUT) -> Path:
    """split/class/imgN.png with a distinct colour per image (no accidental duplicates)."""
    k = 0
    for split, classes in layout.items():
        for cls, n in classes.items():
            for _ in range(n):
                k += 1
                path = root / split / cls / f"img{k:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (24, 20), (k * 37 % 256, k * 71 % 256, k * 113 % 256)).save(path)
    return root


def _folder(tmp: Path) -> tuple[str, dict]:
    return f"folder:{write_tree(tmp / 'ds')}", LAYOUT


def _csv(tmp: Path) -> tuple[str, dict]:
    root = write_tree(tmp / "ds")
    lines = ["path,label,split"] + [
        f"{p.relative_to(root).as_posix()},{p.parent.name},{p.parent.parent.name}" for p in sorted(root.rglob("*.png"))
    ]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{root / 'labels.csv'}", LAYOUT


def _builtin(tmp: Path) -> tuple[str, dict | None]:
    return "builtin:shapes?n=24&size=16&seed=7", None


# source name -> builder(tmp folder) -> (ref, expected split -> class -> count, or None)
EXAMPLES: dict[str, Callable[[Path], tuple[str, dict | None]]] = {
    "folder": _folder,
    "csv": _csv,
    "builtin": _builtin,
}


@pytest.mark.parametrize("name", SOURCES.names())
def test_every_source_honours_the_bundle_contract(name: str, tmp_path: Path) -> None:
    assert name in EXAMPLES, f"dataset source {name!r} has no example in {__file__}"
    assert SOURCES.get(name).usage.startswith(f"{name}:"), "usage must show the ref form"
    ref, counts = EXAMPLES[name](tmp_path)
    a = load_dataset(ref, progress=False)
    b = load_dataset(ref, progress=False)
    m = a.manifest
    assert list(m.columns) == MANIFEST_COLUMNS and len(m) > 0
    assert a.ref == ref and a.digest == b.digest and m["id"].tolist() == b.manifest["id"].tolist()
    assert m["id"].is_unique and set(m["label"]) <= set(a.classes)
    assert {"train", "val"} <= set(a.splits)
    if counts is not None:
        assert a.counts() == counts
    row = m.iloc[-1]
    assert Path(row["path"]).is_file() and sha256_file(row["path"]) == row["sha256"]
    image, label, _ = ImageDataset(m.iloc[-1:], a.classes)[0]
    assert tuple(image.shape) == (3, row["height"], row["width"]) and a.classes[label] == row["label"]


def test_unknown_scheme_lists_every_source() -> None:
    with pytest.raises(RefError) as err:
        load_dataset("zip:/data/x.zip", progress=False)
    for name in SOURCES.names():
        assert SOURCES.get(name).usage in str(err.value)
