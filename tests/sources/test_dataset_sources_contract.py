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

from source_helpers import save_hf_dataset

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


def _folder(tmp: Path, request) -> tuple[str, dict]:
    return f"folder:{write_tree(tmp / 'ds')}", LAYOUT


def _folder_url(tmp: Path, request) -> tuple[str, dict]:
    return f"folder:{write_tree(tmp / 'ds').as_uri()}", LAYOUT


def _csv(tmp: Path, request) -> tuple[str, dict]:
    root = write_tree(tmp / "ds")
    lines = ["path,label,split"] + [
        f"{p.relative_to(root).as_posix()},{p.parent.name},{p.parent.parent.name}" for p in sorted(root.rglob("*.png"))
    ]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{root / 'labels.csv'}", LAYOUT


def _builtin(tmp: Path, request) -> tuple[str, dict | None]:
    return "builtin:shapes?n=24&size=16&seed=7", None


def _hf(tmp: Path, request) -> tuple[str, dict]:
    cache = request.getfixturevalue("hf_datasets_cache")
    root = write_tree(tmp / "ds")
    names = sorted(LAYOUT["train"])
    splits = {("validation" if split == "val" else split): [
        (p.read_bytes(), names.index(p.parent.name)) for p in sorted((root / split).rglob("*.png"))
    ] for split in LAYOUT}
    save_hf_dataset(cache, "acme/pets", splits, names)
    return "hf:acme/pets", LAYOUT


# source name -> builder(tmp folder, pytest request) -> (ref, expected split -> class -> count, or None);
# a source may have several examples (local and URL forms).
EXAMPLES: dict[str, list[Callable[..., tuple[str, dict | None]]]] = {
    "folder": [_folder, _folder_url],
    "csv": [_csv],
    "builtin": [_builtin],
    "hf": [_hf],
}
CASES = [(name, build) for name in SOURCES.names() for build in EXAMPLES.get(name, [None])]


@pytest.mark.parametrize("name, build", CASES, ids=[f"{n}-{b.__name__ if b else 'missing'}" for n, b in CASES])
def test_every_source_honours_the_bundle_contract(name: str, build, tmp_path: Path, request) -> None:
    assert build is not None, f"dataset source {name!r} has no example in {__file__}"
    assert SOURCES.get(name).usage.startswith(f"{name}:"), "usage must show the ref form"
    ref, counts = build(tmp_path, request)
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
