"""hf-hub: refs loaded offline from a Hugging Face cache the test builds itself.

The fake repo is written with timm's own save_for_hf (config.json with
architecture, num_classes, pretrained_cfg and label_names, plus
model.safetensors), laid out as huggingface_hub caches it:
models--ORG--NAME/snapshots/<commit>/ and refs/main.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_helpers import fake_hub_repo, same_outputs, tiny_model

from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.io import sha256_file
from imaudit.models import load_model


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_model_from_offline_cache(hub_cache):
    module = tiny_model("test_resnet", num_classes=3, seed=5)
    weights = fake_hub_repo(hub_cache, "acme/tiny-shapes", module, ["circle", "square", "triangle"])
    loaded = load_model("hf-hub:acme/tiny-shapes", input_size=32)
    assert loaded.arch == "test_resnet" and loaded.num_classes == 3
    assert loaded.classes == ["circle", "square", "triangle"]
    assert loaded.digest == sha256_file(weights)
    assert loaded.data_config["input_size"] == (3, 32, 32)
    assert same_outputs(loaded.module, module)
    assert load_model("hf-hub:acme/tiny-shapes").data_config["input_size"] == (3, 160, 160)  # from config.json


def test_hub_vit_rebuilt_at_requested_size(hub_cache):
    module = tiny_model("test_vit", num_classes=2, seed=5, img_size=32)
    fake_hub_repo(hub_cache, "acme/tiny-vit", module, None)
    loaded = load_model("hf-hub:acme/tiny-vit", input_size=32)
    assert loaded.classes is None and loaded.data_config["input_size"] == (3, 32, 32)
    assert same_outputs(loaded.module, module)


def test_hub_class_count_and_arch_conflicts(hub_cache):
    fake_hub_repo(hub_cache, "acme/tiny", tiny_model("test_resnet", num_classes=3), None)
    with pytest.raises(CheckpointError, match="hf-hub:acme/tiny has 3 classes but 4 were asked.*test_resnet"):
        load_model("hf-hub:acme/tiny", num_classes=4)
    with pytest.raises(BadInputError, match="--arch test_vit conflicts"):
        load_model("hf-hub:acme/tiny", arch="test_vit")


def test_missing_repo_offline_is_a_ref_error(hub_cache):
    with pytest.raises(RefError, match=r"hf-hub:acme/absent: weights acme/absent are not in the local Hugging Face cache .*offline"):
        load_model("hf-hub:acme/absent")
