"""Every registered model source keeps the LoadedModel contract (parametrised over the registry).

A new source module registers itself in ``imaudit.models.sources.MODEL_SOURCES``;
this test then fails until ``EXAMPLES`` builds a small example for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from model_helpers import fake_hub_repo, tiny_model

from imaudit.errors import RefError
from imaudit.models import MODEL_SOURCES, Registry, load_model, parse_ref, save_checkpoint


def _timm(tmp: Path, monkeypatch, request) -> tuple[str, dict]:
    return "timm:test_resnet?pretrained=false", {"num_classes": 3}


def _hub(tmp: Path, monkeypatch, request) -> tuple[str, dict]:
    cache = tmp / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    fake_hub_repo(cache, "acme/contract", tiny_model("test_resnet", 3, seed=2), ["a", "b", "c"])
    return "hf-hub:acme/contract", {}


def _file(tmp: Path, monkeypatch, request) -> tuple[str, dict]:
    path = tmp / "m.pt"
    save_checkpoint(path, tiny_model("test_resnet", 3, seed=3), arch="test_resnet", classes=["a", "b", "c"])
    return f"file:{path}", {}


def _release(tmp: Path, monkeypatch, request) -> tuple[str, dict]:
    ref, _ = _file(tmp, monkeypatch, request)
    Registry().release("contract", "1", arch="test_resnet", checkpoint=Path(ref[5:]), dataset="builtin:digits")
    return "release:contract@1", {}


def _mlflow(tmp: Path, monkeypatch, request) -> tuple[str, dict]:
    from mlflow import MlflowClient
    from mlflow_store import log_version

    uri = request.getfixturevalue("mlflow_uri")
    version = log_version(uri, "contract", tiny_model("test_resnet", 3, seed=4),
                          metadata={"arch": "test_resnet", "classes": ["a", "b", "c"]})
    MlflowClient(tracking_uri=uri).set_registered_model_alias("contract", "champion", version)
    return "mlflow:models:/contract@champion", {}


# source name -> builder(tmp folder, monkeypatch, pytest request) -> (ref, load_model keyword arguments)
EXAMPLES: dict[str, Callable] = {"timm": _timm, "hf-hub": _hub, "file": _file, "release": _release, "mlflow": _mlflow}


@pytest.mark.parametrize("name", MODEL_SOURCES.names())
def test_every_model_source_honours_the_contract(name: str, tmp_path: Path, monkeypatch, request) -> None:
    assert name in EXAMPLES, f"model source {name!r} has no example in {__file__}"
    assert MODEL_SOURCES.get(name).usage.startswith(f"{name}:"), "usage must show the ref form"
    ref, kwargs = EXAMPLES[name](tmp_path, monkeypatch, request)
    assert parse_ref(ref)[0] == name
    a = load_model(ref, input_size=32, **kwargs)
    b = load_model(ref, input_size=32, **kwargs)
    assert a.ref == ref and a.digest == b.digest and len(a.digest) == 64
    assert not a.module.training and a.data_config["input_size"] == (3, 32, 32)
    assert a.classes is None or len(a.classes) == a.num_classes
    with torch.no_grad():
        out = a.module(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, a.num_classes) and torch.equal(out, b.module(torch.zeros(2, 3, 32, 32)))


def test_malformed_ref_lists_every_source() -> None:
    with pytest.raises(RefError) as err:
        parse_ref("onnx:model.onnx")
    for name in MODEL_SOURCES.names():
        assert MODEL_SOURCES.get(name).usage in str(err.value)
