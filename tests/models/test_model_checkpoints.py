"""file: refs: bare and full checkpoints, safetensors, misfits and unreadable files."""

from __future__ import annotations

import argparse
import os

import pytest
import safetensors.torch
import torch
from model_helpers import same_outputs, tiny_model

from imaudit.errors import CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models import load_model, read_checkpoint, save_checkpoint


class NotPlainData:
    """Pickled by reference: a weights_only load must refuse it."""


def test_bare_state_dict_needs_arch_and_reads_class_count(tmp_path):
    module = tiny_model("test_resnet", num_classes=7)
    path = tmp_path / "bare.pth"
    torch.save(module.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"bare\.pth.*--arch"):
        load_model(f"file:{path}")
    loaded = load_model(f"file:{path}", arch="test_resnet", input_size=32)
    assert loaded.num_classes == 7 and loaded.arch == "test_resnet"
    assert loaded.digest == sha256_file(path)
    assert same_outputs(loaded.module, module)


def test_full_checkpoint_round_trip_with_metadata(make_checkpoint):
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1}, {"epoch": 0, "train_loss": 2.0, "val_loss": 2.1}]
    path, module, digest = make_checkpoint(classes=["a", "b", "c"], input_size=32, history=history,
                                           extra={"dataset": "builtin:digits"})
    assert digest == sha256_file(path)
    loaded = load_model(f"file:{path}")
    assert loaded.ref == f"file:{path}" and loaded.digest == digest
    assert loaded.classes == ["a", "b", "c"] and loaded.num_classes == 3
    assert [row["epoch"] for row in loaded.history] == [0, 1]
    assert read_checkpoint(path).meta["extra"] == {"dataset": "builtin:digits"}
    assert same_outputs(loaded.module, module)


def test_digest_stable_across_loads_and_different_for_different_weights(make_checkpoint):
    one, _, _ = make_checkpoint(name="one.pt", seed=1)
    two, _, _ = make_checkpoint(name="two.pt", seed=2)
    assert load_model(f"file:{one}").digest == load_model(f"file:{one}").digest
    assert load_model(f"file:{one}").digest != load_model(f"file:{two}").digest


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict", "state_dict_ema"])
def test_training_checkpoint_layouts_and_wrapper_prefixes(tmp_path, key):
    module = tiny_model("test_resnet", num_classes=4)
    # DataParallel + torch.compile prefixes, and timm train.py's argparse args next to the weights.
    state = {f"module._orig_mod.{k}": v for k, v in module.state_dict().items()}
    path = tmp_path / "train.pth.tar"
    torch.save({key: state, "arch": "test_resnet", "epoch": 3, "args": argparse.Namespace(lr=0.1),
                "optimizer": {"state": {}, "param_groups": []}}, path)
    loaded = load_model(f"file:{path}")
    assert loaded.num_classes == 4
    assert same_outputs(loaded.module, module)


def test_safetensors_with_metadata_header(tmp_path):
    module = tiny_model("test_vit", num_classes=5, img_size=32)
    path = tmp_path / "vit.safetensors"
    digest = save_checkpoint(path, module, arch="test_vit", classes=list("vwxyz"), input_size=32)
    loaded = load_model(f"file:{path}")
    assert (loaded.arch, loaded.classes, loaded.digest) == ("test_vit", list("vwxyz"), digest)
    assert loaded.data_config["input_size"] == (3, 32, 32)
    assert same_outputs(loaded.module, module)
    plain = tmp_path / "plain.safetensors"  # no header metadata: arch comes from the caller
    safetensors.torch.save_file(module.state_dict(), plain)
    assert load_model(f"file:{plain}", arch="test_vit", input_size=32).num_classes == 5


def test_wrong_number_of_classes_names_checkpoint_and_arch(make_checkpoint):
    path, _, _ = make_checkpoint(name="five.pt", num_classes=5)
    with pytest.raises(CheckpointError, match=r"five\.pt.*test_resnet.*5 classes.*3 were asked"):
        load_model(f"file:{path}", num_classes=3)
    with pytest.raises(CheckpointError, match=r"five\.pt.*test_resnet.*5 classes.*2 were asked"):
        load_model(f"file:{path}", classes=["a", "b"])


def test_wrong_architecture_names_both(make_checkpoint):
    path, _, _ = make_checkpoint(name="resnet.pt")
    with pytest.raises(CheckpointError, match=r"resnet\.pt does not fit timm architecture test_vit: \d+ missing keys"):
        load_model(f"file:{path}", arch="test_vit")


def test_shape_mismatch_is_reported(tmp_path):
    state = tiny_model("test_resnet", num_classes=3).state_dict()
    state["conv1.0.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "shapes.pt"
    torch.save(state, path)
    expected = r"shapes\.pt does not fit.*1 shape mismatches \(e\.g\. conv1\.0\.weight: checkpoint \[1, 1, 1, 1\]"
    with pytest.raises(CheckpointError, match=expected):
        load_model(f"file:{path}", arch="test_resnet")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", os.urandom(512), "truncated"])
def test_corrupt_files_are_checkpoint_errors(tmp_path, make_checkpoint, content):
    path = tmp_path / "broken.pt"
    if content == "truncated":
        good, _, _ = make_checkpoint()
        data = good.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.pt"):
        load_model(f"file:{path}", arch="test_resnet")
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"broken\.safetensors"):
        load_model(f"file:{bad_st}", arch="test_resnet")


def test_pickled_objects_are_refused_unless_trusted(tmp_path, monkeypatch):
    state = tiny_model("test_resnet", num_classes=3).state_dict()
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": state, "arch": "test_resnet", "thing": NotPlainData()}, path)
    with pytest.raises(CheckpointError, match=r"pickled\.pt holds Python objects .*NotPlainData.*IMAUDIT_TRUST"):
        load_model(f"file:{path}")
    monkeypatch.setenv("IMAUDIT_TRUST_CHECKPOINTS", "1")
    assert load_model(f"file:{path}").num_classes == 3


def test_no_state_dict_and_missing_file(tmp_path):
    path = tmp_path / "meta-only.pt"
    torch.save({"arch": "test_resnet", "epoch": 1}, path)
    with pytest.raises(CheckpointError, match=r"meta-only\.pt holds no state_dict.*arch, epoch"):
        load_model(f"file:{path}")
    with pytest.raises(RefError, match=r"nowhere\.pt does not exist"):
        load_model(f"file:{tmp_path / 'nowhere.pt'}", arch="test_resnet")


def test_bad_metadata_field_is_named(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"state_dict": tiny_model().state_dict(), "arch": "test_resnet", "classes": "abc"}, path)
    with pytest.raises(CheckpointError, match=r"meta\.pt: metadata field 'classes'"):
        load_model(f"file:{path}")


def test_unknown_arch_in_metadata(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"state_dict": tiny_model().state_dict(), "arch": "test_resnot"}, path)
    with pytest.raises(RefError, match=r"test_resnot.*odd\.pt.*test_resnet"):
        load_model(f"file:{path}")
