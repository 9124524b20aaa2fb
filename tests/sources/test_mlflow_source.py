"""mlflow:models:/ refs against a real MLflow registry (SQLite store): what was logged comes back.

Models are logged the way teams log them (mlflow.pytorch.log_model with a
signature, an input example and metadata); the loaded module must compute what
the logged one computed, and metadata, signature, tags and run metrics must
arrive where audits read them.
"""

from __future__ import annotations

import pytest
import torch
from mlflow_store import log_version
from model_helpers import tiny_model
from torch import nn

from imaudit.errors import BadInputError, CheckpointError, RefError
from imaudit.models import load_model
from imaudit.models.sources.mlflow import MlflowSource

HISTORY = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_acc": 0.3 + 0.1 * e}
           for e in range(3)]


class SmallNet(nn.Module):
    """Not a timm model: MLflow's own serialisation has to carry it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).relu().mean(dim=(2, 3)))


def _logits(module: nn.Module, n: int = 5, size: int = 32) -> torch.Tensor:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module.eval()(x)


@pytest.fixture(scope="module")
def registry(mlflow_store) -> dict:
    """'pets' v1 and v2 (timm, pt2, alias champion on v1), 'plain' v1 (pt2, batch of one), 'pickled' v1."""
    from mlflow import MlflowClient

    meta = {"arch": "test_resnet", "classes": ["cat", "dog", "fox"]}  # input size: from the signature
    pets = [tiny_model("test_resnet", 3, seed=s) for s in (11, 12)]
    v1 = log_version(mlflow_store, "pets", pets[0], metadata=meta, history=HISTORY,
                     tags={"imaudit.dataset": "builtin:shapes?n=48&size=32"})
    v2 = log_version(mlflow_store, "pets", pets[1], metadata=meta)
    client = MlflowClient(tracking_uri=mlflow_store)
    client.set_registered_model_alias("pets", "champion", v1)
    plain = SmallNet(seed=3)
    log_version(mlflow_store, "plain", plain, batch=1, metadata={"classes": list("abcde")})
    pickled = tiny_model("test_resnet", 3, seed=13)
    log_version(mlflow_store, "pickled", pickled, fmt="pickle")
    return {"pets": pets, "versions": (v1, v2), "plain": plain, "pickled": pickled, "client": client}


def test_a_timm_model_comes_back_with_its_metadata_signature_tags_and_history(registry, mlflow_uri):
    lm = load_model("mlflow:models:/pets@champion")
    assert lm.arch == "test_resnet" and lm.classes == ["cat", "dog", "fox"] and lm.num_classes == 3
    assert lm.data_config["input_size"] == (3, 32, 32)  # from the logged signature's tensor spec
    assert torch.allclose(_logits(lm.module), _logits(registry["pets"][0]), atol=1e-5)
    assert type(lm.module).__module__.startswith("timm.")  # rebuilt, so hooks on named layers work
    assert lm.origin["name"] == "pets" and lm.origin["version"] == registry["versions"][0]
    assert lm.origin["aliases"] == ["champion"] and lm.origin["offline"] is False
    assert [r["epoch"] for r in lm.history] == [0, 1, 2] and lm.history[2]["val_loss"] == pytest.approx(0.4)
    assert MlflowSource().dataset("models:/pets@champion") == "builtin:shapes?n=48&size=32"
    assert MlflowSource().dataset(f"models:/pets/{registry['versions'][1]}") is None
    # The same version by number: same weights, same digest.
    assert load_model(f"mlflow:models:/pets/{registry['versions'][0]}").digest == lm.digest


def test_an_alias_follows_the_registry(registry, mlflow_uri):
    before = load_model("mlflow:models:/pets@champion")
    registry["client"].set_registered_model_alias("pets", "champion", registry["versions"][1])
    try:
        after = load_model("mlflow:models:/pets@champion")
    finally:
        registry["client"].set_registered_model_alias("pets", "champion", registry["versions"][0])
    assert after.origin["version"] == registry["versions"][1] and after.digest != before.digest
    assert torch.allclose(_logits(after.module), _logits(registry["pets"][1]), atol=1e-5)


def test_a_plain_pytorch_model_exported_for_one_image_runs_on_batches(registry, mlflow_uri):
    lm = load_model("mlflow:models:/plain/1")
    assert lm.arch == "pytorch" and lm.num_classes == 5 and lm.classes == list("abcde")
    assert lm.data_config["input_size"] == (3, 32, 32) and not lm.module.training
    assert torch.allclose(_logits(lm.module, n=5), _logits(registry["plain"], n=5), atol=1e-5)
    with pytest.raises(CheckpointError, match="exported for 32x32"):
        load_model("mlflow:models:/plain/1", input_size=48)


def test_the_pickle_format_needs_trust(registry, mlflow_uri, monkeypatch):
    with pytest.raises(CheckpointError, match="pickle format.*IMAUDIT_TRUST_CHECKPOINTS=1"):
        load_model("mlflow:models:/pickled/1")
    monkeypatch.setenv("IMAUDIT_TRUST_CHECKPOINTS", "1")
    lm = load_model("mlflow:models:/pickled/1")
    assert torch.allclose(_logits(lm.module), _logits(registry["pickled"]), atol=1e-5)


def test_bad_refs_are_one_line_errors(registry, mlflow_uri, monkeypatch):
    with pytest.raises(RefError, match="expected mlflow:models:/NAME/VERSION or mlflow:models:/NAME@ALIAS"):
        load_model("mlflow:runs:/abc/model")
    with pytest.raises(RefError, match="mlflow:models:/nobody/1: not found in the MLflow registry"):
        load_model("mlflow:models:/nobody/1")
    with pytest.raises(RefError, match="mlflow:models:/pets@retired: not found"):
        load_model("mlflow:models:/pets@retired")
    with pytest.raises(BadInputError, match="--arch resnet18 conflicts with mlflow:models:/pets/1"):
        load_model("mlflow:models:/pets/1", arch="resnet18")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(RefError, match="need MLFLOW_TRACKING_URI"):
        load_model("mlflow:models:/pets/1")
