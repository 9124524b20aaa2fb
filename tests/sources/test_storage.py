"""imaudit.storage: URLs fetched once into the content-addressed cache; options; the Location view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imaudit import storage
from imaudit.errors import BadInputError, RefError
from imaudit.io import sha256_file


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and not p.name.startswith(".")}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for rel, data in {"a/1.png": b"one", "a/2.png": b"two", "b/3.png": b"one", "notes.txt": b"text"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_tree_from_s3_is_fetched_once_and_follows_changes(s3, tree, tmp_path, monkeypatch):
    s3.upload(tree, "s3://data/ds")
    calls: list[int] = []
    real = storage._download
    monkeypatch.setattr(storage, "_download", lambda fs, remote, *a: calls.append(len(remote)) or real(fs, remote, *a))

    local = storage.fetch_tree("s3://data/ds", cache=tmp_path / "cache", progress=False)
    assert _files(local) == _files(tree)
    blobs = list((tmp_path / "cache" / "fetched" / "blobs").iterdir())
    assert len(blobs) == 3  # b/3.png has a/1.png's bytes: stored once
    assert all(b.name.split(".")[0] == sha256_file(b) for b in blobs)
    assert storage.fetch_tree("s3://data/ds", cache=tmp_path / "cache", progress=False) == local
    assert calls == [4]  # the second fetch downloaded nothing

    s3.fs().pipe_file("data/ds/a/2.png", b"changed")
    again = storage.fetch_tree("s3://data/ds", cache=tmp_path / "cache", progress=False)
    assert again != local and (again / "a" / "2.png").read_bytes() == b"changed"
    assert calls == [4, 1]  # only the changed object
    images = storage.fetch_tree("s3://data/ds", cache=tmp_path / "cache", progress=False, suffixes={".png"})
    assert "notes.txt" not in _files(images)


def test_single_file_and_missing_objects(s3, tree, tmp_path):
    s3.upload(tree / "a" / "1.png", "s3://data/one.png")
    local = storage.fetch_file("s3://data/one.png", cache=tmp_path / "c")
    assert local.read_bytes() == b"one" and local.suffix == ".png"
    with pytest.raises(RefError, match=r"s3://data/absent.pt does not exist"):
        storage.fetch_file("s3://data/absent.pt", cache=tmp_path / "c")
    with pytest.raises(RefError, match=r"s3://data/none: no files found|s3://data/none is not a folder"):
        storage.fetch_tree("s3://data/none", cache=tmp_path / "c")


def test_only_listed_paths_are_fetched_and_escapes_refused(s3, tree, tmp_path):
    s3.upload(tree, "s3://data/listed")
    local = storage.fetch_tree("s3://data/listed", cache=tmp_path / "c", only=["a/1.png", "gone.png"])
    assert _files(local) == {"a/1.png": b"one"}
    with pytest.raises(RefError, match="leaves the folder"):
        storage.fetch_tree("s3://data/listed", cache=tmp_path / "c", only=["../secret"])
    assert not storage.inside("/etc/passwd") and not storage.inside("a/../../x") and storage.inside("a/../b")


def test_file_urls_and_unknown_protocols(tree, tmp_path):
    local = storage.fetch_tree(tree.as_uri(), cache=tmp_path / "c", progress=False)
    assert _files(local) == _files(tree)
    with pytest.raises(RefError, match="unknown storage protocol 'nosuch://'"):
        storage.fetch_file("nosuch://x/y", cache=tmp_path / "c")


def test_options_come_from_the_environment_per_protocol(monkeypatch):
    monkeypatch.setenv(storage.OPTIONS_ENV, json.dumps({"s3": {"endpoint_url": "http://e"}, "timeout": 5,
                                                       "gs": {"project": "p"}}))
    assert storage.storage_options("s3") == {"timeout": 5, "endpoint_url": "http://e"}
    assert storage.storage_options("gs") == {"timeout": 5, "project": "p"}
    monkeypatch.setenv(storage.OPTIONS_ENV, "{not json")
    with pytest.raises(BadInputError, match=storage.OPTIONS_ENV):
        storage.storage_options("s3")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_location_reads_writes_and_lists(where, tmp_path, request):
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        s3.fs().mkdir("store")
        url = "s3://store/reports"
    else:
        url = str(tmp_path / "reports")
    loc = storage.Location(url)
    assert loc.list() == [] and not loc.exists("x/audit.json")
    loc.write_bytes("x/audit.json", b"{}")
    loc.write_bytes("y/audit.json", b"[]")
    assert loc.read_bytes("x/audit.json") == b"{}" and loc.exists("x/audit.json")
    assert loc.list() == ["x/audit.json", "y/audit.json"] and loc.list("y") == ["y/audit.json"]
    loc.delete("x/audit.json")
    assert loc.list() == ["y/audit.json"]
    with pytest.raises(FileNotFoundError):
        loc.read_bytes("x/audit.json")
    with pytest.raises(RefError, match="leaves the folder"):
        loc.read_bytes("../elsewhere")
