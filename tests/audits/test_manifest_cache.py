"""The manifest cache: an unchanged dataset is not read again, a changed file is, --rehash reads everything."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imaudit.audits import data as data_module
from imaudit.audits.data import load_dataset
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs

@pytest.fixture()
def probes(monkeypatch) -> list[str]:
    """Paths whose bytes were read and decoded (probe_image calls)."""
    seen: list[str] = []
    original = data_module.probe_image

    def counting(path, *a, **k):
        seen.append(str(path))
        return original(path, *a, **k)

    monkeypatch.setattr(data_module, "probe_image", counting)
    return seen


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)


def _age(root, seconds: int = 3600) -> None:
    """Set every file's mtime well in the past (files the cache may trust: not racy)."""
    past = time.time_ns() - seconds * 10**9
    for f in root.rglob("*"):
        if f.is_file():
            os.utime(f, ns=(past, past))


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            for i in range(3):
                _image(root / split / c / f"{i}.png", hash((split, c, i)) % 1000)
    (root / "val" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _age(root)
    return root


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    assert a.excluded == b.excluded and a.digest == b.digest


def test_an_unchanged_folder_is_not_read_again_and_gives_the_same_manifest(folder, probes):
    ref = f"folder:{folder}"
    first = load_dataset(ref, progress=False)
    assert len(probes) == 13 and first.meta["manifest_cache"] == {"total": 13, "reused": 0, "computed": 13, "rejected": 0}
    assert [e["reason"] for e in first.excluded] and "broken.png" in first.excluded[0]["path"]
    probes.clear()
    second = load_dataset(ref, progress=False)
    assert probes == []  # nothing read: every file's size and mtime matched
    assert second.meta["manifest_cache"] == {"total": 13, "reused": 13, "computed": 0, "rejected": 0}
    _same(first, second)  # the left-out file is still left out, with its reason


def test_a_changed_added_or_removed_file_is_seen(folder, probes):
    ref = f"folder:{folder}"
    first = load_dataset(ref, progress=False)
    changed = folder / "val" / "cat" / "0.png"
    _image(changed, 999)  # new content (and size or mtime)
    _image(folder / "val" / "cat" / "new.png", 998)
    (folder / "train" / "dog" / "2.png").unlink()
    probes.clear()
    second = load_dataset(ref, progress=False)
    assert sorted(probes) == sorted([str(changed), str(folder / "val" / "cat" / "new.png")])
    assert second.digest != first.digest and len(second.manifest) == len(first.manifest)
    assert "train/dog/2.png" not in set(second.manifest["id"]) and "val/cat/new.png" in set(second.manifest["id"])


def test_rehash_reads_every_file_and_catches_what_size_and_mtime_miss(folder, probes):
    ref = f"folder:{folder}"
    first = load_dataset(ref, progress=False)
    # Same size and mtime, other pixels: only a full re-hash can tell.
    target = folder / "train" / "cat" / "1.png"
    st = target.stat()
    raw = bytearray(target.read_bytes())
    other = folder / "train" / "cat" / "0.png"
    sneaky = other.read_bytes()
    if len(sneaky) == len(raw):
        target.write_bytes(sneaky)
    else:  # flip one byte of the pixel data instead (PNG CRC then fails: still a different probe result)
        raw[-20] ^= 0xFF
        target.write_bytes(bytes(raw))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    probes.clear()
    trusted = load_dataset(ref, progress=False)
    assert probes == [] and trusted.digest == first.digest  # what --rehash is for
    rehashed = load_dataset(ref, progress=False, rehash=True)
    assert len(probes) == 13 and rehashed.meta["manifest_cache"]["reused"] == 0
    assert rehashed.digest != first.digest


def test_files_written_just_before_the_cache_are_read_again(tmp_path, probes):
    root = tmp_path / "fresh"
    for c in ("a", "b"):
        for i in range(2):
            _image(root / c / f"{i}.png", i + ord(c))  # mtimes now: as racy as it gets
    load_dataset(f"folder:{root}", progress=False)
    probes.clear()
    load_dataset(f"folder:{root}", progress=False)
    assert len(probes) == 4  # written within the cache's clock tick: not trusted yet


def test_csv_datasets_use_the_cache_too(tmp_path, probes):
    root = tmp_path / "csvset"
    for i in range(4):
        _image(root / "img" / f"{i}.png", i)
    (root / "list.csv").write_text("path,label,split\n" + "".join(
        f"img/{i}.png,{'ab'[i % 2]},{'train' if i < 2 else 'val'}\n" for i in range(4)))
    _age(root)
    first = load_dataset(f"csv:{root / 'list.csv'}", progress=False)
    probes.clear()
    second = load_dataset(f"csv:{root / 'list.csv'}", progress=False)
    assert probes == []
    _same(first, second)


def test_the_audit_spec_rehash_reaches_the_dataset(folder, probes):
    inputs.forget()
    spec = AuditSpec(model="timm:test_resnet", dataset=f"folder:{folder}")
    inputs.dataset(spec)
    inputs.forget()
    probes.clear()
    inputs.dataset(spec)
    assert probes == []
    inputs.dataset(spec.model_copy(update={"rehash": True}))
    assert len(probes) == 13
    inputs.forget()


def test_a_damaged_cache_file_is_not_trusted(folder, probes, tmp_path, monkeypatch):
    """The cache file verifies itself (size + sha256 in its .sum): one changed character of a recorded
    sha256 would otherwise give the dataset a wrong digest; then every file is read again."""
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "own-cache"))
    ref = f"folder:{folder}"
    first = load_dataset(ref, progress=False)
    [cache_file] = (tmp_path / "own-cache" / "manifests").glob("*.csv")
    text = cache_file.read_text()
    sha = first.manifest["sha256"].iloc[0]
    cache_file.write_text(text.replace(sha, ("0" if sha[0] != "0" else "1") + sha[1:], 1))  # same size
    probes.clear()
    again = load_dataset(ref, progress=False)
    assert len(probes) == 13 and again.meta["manifest_cache"] == {"total": 13, "reused": 0, "computed": 13, "rejected": 13}
    _same(first, again)


@pytest.mark.parametrize("ref,needle", [("timm:no_such_architecture?pretrained=false", "unknown timm architecture"),
                                        ("file:/no/such/model.pt", "/no/such/model.pt")])
def test_a_bad_model_is_answered_before_any_image_is_read(folder, probes, ref, needle):
    """Random weights are sized by the dataset's classes, but a name timm does not know needs no dataset to refuse."""
    from typer.testing import CliRunner

    from imaudit.cli import app

    inputs.forget()
    r = CliRunner().invoke(app, ["audit", "--model", ref, "--dataset", f"folder:{folder}", "--rehash", "--methods", ""])
    assert r.exit_code == 2 and needle in r.output, r.output
    assert probes == []  # not one dataset file read (--rehash: the manifest cache could not hide it)
