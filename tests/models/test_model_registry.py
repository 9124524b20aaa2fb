"""The release registry: round trips, immutability, tampering and name checks."""

from __future__ import annotations

import json

import pytest
from model_helpers import same_outputs

from imaudit import paths
from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.models import Registry, ReleaseManifest, load_model

HISTORY = [{"epoch": 0, "train_loss": 2.0, "val_loss": 2.1}, {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}]


def test_release_round_trip_and_latest(make_checkpoint):
    registry = Registry()
    assert registry.root == paths.registry_dir() and registry.models() == []
    released = {}
    for version, seed in (("1", 1), ("10", 3), ("2", 2)):
        path, module, digest = make_checkpoint(name=f"m{version}.pt", seed=seed, classes=["a", "b", "c"])
        manifest = registry.release("digits", version, arch="test_resnet", checkpoint=path,
                                    dataset="builtin:digits", history=HISTORY, notes="tiny")
        assert manifest.sha256 == digest and manifest.ref == f"release:digits@{version}"
        released[version] = module
    assert registry.versions("digits") == ["1", "2", "10"]
    assert registry.models() == ["digits"]
    assert registry.latest("digits").version == "10"

    on_disk = json.loads((registry.root / "digits" / "2" / "manifest.json").read_text())
    assert ReleaseManifest.model_validate(on_disk) == registry.get("digits", "2")
    assert registry.checkpoint_path(registry.get("digits", "2")).is_file()

    loaded = load_model("release:digits@latest", input_size=32)
    assert loaded.ref == "release:digits@10" and loaded.release.version == "10"
    assert loaded.digest == registry.get("digits", "10").sha256
    assert loaded.classes == ["a", "b", "c"] and loaded.history == HISTORY
    assert same_outputs(loaded.module, released["10"])
    assert same_outputs(load_model("release:digits@1").module, released["1"])


def test_release_takes_metadata_from_checkpoint(make_checkpoint):
    path, _, _ = make_checkpoint(classes=["x", "y", "z"], input_size=32, history=HISTORY)
    manifest = Registry().release("meta", "0.1", arch="test_resnet", checkpoint=path, dataset=None)
    assert (manifest.classes, manifest.input_size, manifest.num_classes) == (["x", "y", "z"], 32, 3)
    assert manifest.history == HISTORY and manifest.dataset is None


def test_re_release_same_digest_is_a_no_op_and_different_is_refused(make_checkpoint):
    registry = Registry()
    path, _, _ = make_checkpoint(name="a.pt", seed=1)
    first = registry.release("m", "1", arch="test_resnet", checkpoint=path, dataset="builtin:digits")
    again = registry.release("m", "1", arch="test_resnet", checkpoint=path, dataset="builtin:digits")
    assert again == first
    other, _, _ = make_checkpoint(name="b.pt", seed=2)
    refused = rf"release m@1 exists with digest {first.sha256[:12]}.*refusing to overwrite"
    with pytest.raises(BadInputError, match=refused):
        registry.release("m", "1", arch="test_resnet", checkpoint=other, dataset="builtin:digits")
    assert registry.get("m", "1").sha256 == first.sha256


def test_tampered_checkpoint_is_refused_on_load(make_checkpoint):
    path, _, _ = make_checkpoint()
    registry = Registry()
    manifest = registry.release("m", "1", arch="test_resnet", checkpoint=path, dataset=None)
    copy = registry.checkpoint_path(manifest)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="release:m@1 has sha256 .* but its manifest says"):
        load_model("release:m@1")


def test_misfit_checkpoint_is_not_released(make_checkpoint):
    path, _, _ = make_checkpoint(name="resnet.pt")
    registry = Registry()
    with pytest.raises(CheckpointError, match="resnet.pt does not fit timm architecture test_vit"):
        registry.release("m", "1", arch="test_vit", checkpoint=path, dataset=None)
    assert registry.models() == [] and not (registry.root / "m" / "1").exists()


def test_unknown_releases_list_what_exists(make_checkpoint):
    path, _, _ = make_checkpoint()
    Registry().release("known", "1", arch="test_resnet", checkpoint=path, dataset=None)
    with pytest.raises(RefError, match=r"no released model named 'other'.*known: known"):
        load_model("release:other@1")
    with pytest.raises(RefError, match=r"no release known@2 .*versions of known: 1"):
        load_model("release:known@2")
    with pytest.raises(RefError, match="release:NAME@VERSION"):
        load_model("release:known@")
    assert load_model("release:known").ref == "release:known@1"  # no version: the latest
    with pytest.raises(RefError, match="not a valid release ref"):
        load_model("release:../known@1")


@pytest.mark.parametrize("name, version", [("../evil", "1"), ("a/b", "1"), ("ok", "latest"), ("ok", ""), (".x", "1")])
def test_unsafe_names_and_versions_are_refused(make_checkpoint, name, version):
    path, _, _ = make_checkpoint()
    with pytest.raises(BadInputError, match="release"):
        Registry().release(name, version, arch="test_resnet", checkpoint=path, dataset=None)


def test_missing_checkpoint_is_a_ref_error(tmp_path):
    with pytest.raises(RefError, match="gone.pt does not exist"):
        Registry().release("m", "1", arch="test_resnet", checkpoint=tmp_path / "gone.pt", dataset=None)


def test_corrupt_manifest_is_named(make_checkpoint):
    path, _, _ = make_checkpoint()
    registry = Registry()
    registry.release("m", "1", arch="test_resnet", checkpoint=path, dataset=None)
    (registry.root / "m" / "1" / "manifest.json").write_text("{not json")
    with pytest.raises(BadInputError, match=r"m/1/manifest.json is invalid"):
        registry.get("m", "1")
