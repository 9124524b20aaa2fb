"""Local stand-ins for where teams keep models and data, all on 127.0.0.1 and stopped at the end.

- ``s3``: moto's S3 server (a real HTTP endpoint, one per test process), with
  imaudit pointed at it through IMAUDIT_STORAGE_OPTIONS.
- ``hf_cache``: an empty, offline Hugging Face cache the test fills itself.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class S3:
    endpoint: str
    options: dict

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)

    def upload(self, local: Path, url: str) -> None:
        """Copy a local file or folder to ``s3://bucket/key``."""
        fs = self.fs()
        bucket = url.removeprefix("s3://").split("/", 1)[0]
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        fs.put(str(local), url.removeprefix("s3://"), recursive=Path(local).is_dir())


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield S3(endpoint, {"endpoint_url": endpoint, "key": "testing", "secret": "testing"})
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3, monkeypatch) -> S3:
    """The S3 server, with imaudit's storage options and AWS's variables pointing at it."""
    monkeypatch.setenv("IMAUDIT_STORAGE_OPTIONS", json.dumps({"s3": s3_server.options}))
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("IMAUDIT_STORAGE_BLOCK", raising=False)
    return s3_server


# Helpers of the model tests (tiny models, fake hub repos) and orchestration tests (tiny checkpoints).
for _folder in ("models", "orchestration"):
    _path = str(Path(__file__).resolve().parents[1] / _folder)
    if _path not in sys.path:
        sys.path.append(_path)


@pytest.fixture
def hf_cache(tmp_path_factory, monkeypatch) -> Path:
    """An empty Hugging Face hub cache for this test, offline."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def hf_datasets_cache(tmp_path_factory, monkeypatch) -> Path:
    """An empty Hugging Face datasets cache for this test, offline."""
    cache = tmp_path_factory.mktemp("hf-datasets") / "datasets"
    cache.mkdir()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
