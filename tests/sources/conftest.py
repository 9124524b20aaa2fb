"""Local stand-ins for where teams keep models and data, all on 127.0.0.1 and stopped at the end.

- ``s3``: moto's S3 server (a real HTTP endpoint, one per test process), with
  imaudit pointed at it through IMAUDIT_STORAGE_OPTIONS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

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
