"""Local stand-ins for where teams keep models and data, all on 127.0.0.1 and stopped at the end.

- ``s3``: moto's S3 server (a real HTTP endpoint, one per test process), with
  imaudit pointed at it through IMAUDIT_STORAGE_OPTIONS.
- ``hf_cache``: an empty, offline Hugging Face cache the test fills itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto_s3 import AWS_ENV, S3, moto_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    with moto_server() as server:
        yield server


@pytest.fixture
def s3(s3_server: S3, monkeypatch) -> S3:
    """The S3 server, with imaudit's storage options and AWS's variables pointing at it."""
    monkeypatch.setenv("IMAUDIT_STORAGE_OPTIONS", json.dumps({"s3": s3_server.options}))
    for var, value in AWS_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("IMAUDIT_STORAGE_BLOCK", raising=False)
    return s3_server


# Helpers of the model tests (tiny models, fake hub repos) and orchestration tests (tiny checkpoints).
for _folder in ("models", "orchestration"):
    _path = str(Path(__file__).resolve().parents[1] / _folder)
    if _path not in sys.path:
        sys.path.append(_path)


def _offline_cache(tmp_path_factory, monkeypatch, folder: str, variable: str) -> Path:
    """An empty cache folder named by ``variable``, with the hub offline."""
    cache = tmp_path_factory.mktemp(f"hf-{folder}") / folder
    cache.mkdir()
    monkeypatch.setenv(variable, str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def hf_cache(tmp_path_factory, monkeypatch) -> Path:
    """An empty Hugging Face hub cache for this test, offline."""
    return _offline_cache(tmp_path_factory, monkeypatch, "hub", "HF_HUB_CACHE")


@pytest.fixture
def hf_datasets_cache(tmp_path_factory, monkeypatch) -> Path:
    """An empty Hugging Face datasets cache for this test, offline."""
    return _offline_cache(tmp_path_factory, monkeypatch, "datasets", "HF_DATASETS_CACHE")


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory) -> str:
    """A local MLflow tracking and registry store (SQLite file) for this test process; its URI."""
    from mlflow_store import local_store

    return local_store(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def mlflow_uri(mlflow_store: str, monkeypatch) -> str:
    """The local MLflow store, named by MLFLOW_TRACKING_URI as a team's server would be."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    return mlflow_store
