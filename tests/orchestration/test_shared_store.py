"""The shared-nothing store (IMAUDIT_STORAGE) against an S3-compatible server on 127.0.0.1 (moto):
two "machines" are two homes with nothing in common but the bucket.

- a release made from one home is listed, read and loaded (digest-checked) from another, empty home;
- a chunk computed on one worker is reused by another;
- an audit published from one home is what the index, `imaudit compare` and the review app of
  another home read, a folder without its audit.json is not an audit yet, and failure records
  show in the index.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from moto_s3 import AWS_ENV, moto_server
from orch_helpers import DATASET, tiny_checkpoint
from typer.testing import CliRunner

from imaudit import storage
from imaudit.cli import app
from imaudit.errors import BadInputError
from imaudit.io import sha256_file
from imaudit.models import Registry, load_model

_spec = importlib.util.spec_from_file_location(
    "reports_factory", Path(__file__).resolve().parents[1] / "reports" / "reports_factory.py")
reports_factory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reports_factory)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def s3_server():
    with moto_server() as server:
        yield server


@pytest.fixture
def machines(s3_server, tmp_path, monkeypatch):
    """Environment switchers for two machines (homes a and b) sharing one fresh bucket prefix."""
    url = f"{s3_server.bucket('imaudit-tests')}/{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("IMAUDIT_STORAGE", url)
    monkeypatch.setenv("IMAUDIT_STORAGE_OPTIONS", json.dumps({"s3": s3_server.options}))
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)

    def on(name: str) -> Path:
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        monkeypatch.setenv("IMAUDIT_HOME", str(home))
        monkeypatch.setenv("IMAUDIT_CACHE", str(home / "cache"))
        return home

    on.url = url
    on.s3 = s3_server
    return on


def test_release_from_one_home_is_audited_input_on_another(machines, tmp_path):
    home_a = machines("a")
    ckpt = tiny_checkpoint(tmp_path)
    manifest = Registry().release("tiny", "1", arch="test_resnet", checkpoint=ckpt, dataset=DATASET)
    keys = machines.s3.fs().find(machines.url.removeprefix("s3://") + "/registry")
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == ["manifest.json", "model.pt"]

    home_b = machines("b")
    assert not any(home_b.iterdir())  # nothing shared on disk
    reg = Registry()
    assert reg.models() == ["tiny"] and reg.versions("tiny") == ["1"]
    assert reg.latest("tiny").sha256 == manifest.sha256 == sha256_file(ckpt)
    lm = load_model("release:tiny@1")  # fetched into b's cache, digest checked against the manifest
    assert lm.release.ref == "release:tiny@1" and lm.num_classes == 3
    assert home_a != home_b and str(home_b) in str(reg.checkpoint_path(manifest))

    # The registry is one for both machines: b may not replace a's release with other weights.
    with pytest.raises(BadInputError, match="tiny@1"):
        Registry().release("tiny", "1", arch="test_resnet", checkpoint=tiny_checkpoint(tmp_path, seed=3),
                           dataset=DATASET)


def test_chunk_computed_on_one_worker_is_reused_by_another(machines):
    from imaudit.audits import chunks

    machines("a")
    c = chunks.plan("predict", [f"{i:064x}" for i in range(4)], 4, model_digest="m" * 64,
                    config={"input_size": [3, 8, 8]})[0]
    assert chunks.lookup(c) == (False, None)
    chunks.save_array(c.path, np.arange(12, dtype=np.float32).reshape(4, 3))

    machines("b")
    c_b = chunks.plan("predict", [f"{i:064x}" for i in range(4)], 4, model_digest="m" * 64,
                      config={"input_size": [3, 8, 8]})[0]
    assert c_b.key == c.key and c_b.path != c.path  # same content key, another machine's cache
    assert chunks.lookup(c_b) == (True, None)
    np.testing.assert_array_equal(chunks.load_array(c_b.path), np.arange(12).reshape(4, 3))


def test_published_audits_are_read_from_the_store_by_another_home(machines, tmp_path):
    from imaudit.reports import published
    from imaudit.reports.failures import FailureRecord
    from imaudit.tasks.report_tasks import refresh_index

    machines("a")
    a = reports_factory.make_result(tmp_path / "local" / "audit-a", accuracy=0.7, flip_ids=(1,))
    b = reports_factory.make_result(tmp_path / "local" / "audit-b", accuracy=0.9,
                                    created="2024-05-02T10:00:00+00:00")
    for folder in (tmp_path / "local" / "audit-a", tmp_path / "local" / "audit-b"):
        assert published.publish_audit(folder).endswith(f"/reports/{folder.name}/report.html")
    # A folder whose audit.json is not there yet is still being published: not an audit.
    half = tmp_path / "local" / "audit-half"
    reports_factory.make_result(half)
    shared = published.shared_reports()
    shared.put_file(half / "predictions.csv", "audit-half/predictions.csv")
    published.publish_failure(tmp_path / "local", FailureRecord(
        id="0a1b2c", model="release:broken@1", dataset="folder:/nowhere", trigger="schedule",
        error="RefError: folder:/nowhere does not exist", flow_run="audit-broken@1",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/0a1b2c"))
    refresh_index.fn()

    home_b = machines("b")
    page = shared.read_bytes("index.html").decode()  # the index in the store lists both audits and the failure
    assert "audit-a" in page and "audit-b" in page and "audit-half" not in page
    assert "release:broken@1" in page and "folder:/nowhere does not exist" in page
    assert 'href="http://127.0.0.1:4200/runs/flow-run/0a1b2c"' in page

    out = CliRunner().invoke(app, ["compare", a.id, b.id, "--out", str(tmp_path / "cmp.html")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "cmp.html").is_file() and a.id in (tmp_path / "cmp.html").read_text()

    # The review app of machine b serves the mirror, which a background thread keeps up with the store.
    import threading
    import time

    from imaudit.reports.app import create_app
    from imaudit.reports.auth import AuthConfig

    mirror = published.readable_store()
    assert str(home_b) in str(mirror) and (mirror / b.id / "audit.json").is_file()
    stop = threading.Event()
    published.keep_mirrored(every_s=0.2, stop=stop)
    try:
        reports_factory.make_result(tmp_path / "local" / "audit-c", created="2024-05-03T10:00:00+00:00")
        published.publish_audit(tmp_path / "local" / "audit-c")
        deadline = time.monotonic() + 60
        while not (mirror / "audit-c" / "audit.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
    with TestClient(create_app(mirror, auth=AuthConfig(insecure_no_auth=True)), base_url="http://127.0.0.1") as c:
        assert {"audit-a", "audit-b", "audit-c"} <= {row["id"] for row in c.get("/api/audits").json()}
        assert c.get(f"/audits/{b.id}").status_code == 200


def test_unfilled_storage_template_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("IMAUDIT_STORAGE", "{{ $IMAUDIT_STORAGE }}")
    with pytest.raises(BadInputError, match="prefect deploy"):
        storage.shared_url()
    monkeypatch.setenv("IMAUDIT_STORAGE", "/shared/imaudit")
    with pytest.raises(BadInputError, match="expected a URL"):
        storage.shared_url()
    monkeypatch.setenv("IMAUDIT_STORAGE", "")
    assert storage.shared_url() is None and Registry().shared is None
