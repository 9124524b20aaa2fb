"""folder:, csv: and file: refs that name S3 URLs, against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from source_helpers import SHAPES, age_files, audit_json, audit_predictions, count_probes, oracle_logits
from typer.testing import CliRunner

from imaudit.audits.data import load_dataset
from imaudit.cli import app
from imaudit.io import sha256_file
from imaudit.models import load_model

pytestmark = pytest.mark.slow


def _shapes_folder() -> Path:
    """builtin:shapes' generated split/class tree (a plain folder: dataset)."""
    return load_dataset(SHAPES, progress=False).root / "images"


def _tiny_checkpoint(folder: Path) -> Path:
    from orch_helpers import tiny_checkpoint

    return tiny_checkpoint(folder, seed=3)


def test_audit_of_an_s3_folder_and_an_s3_checkpoint_through_the_cli(s3, tmp_path):
    local_data, ckpt = _shapes_folder(), _tiny_checkpoint(tmp_path)
    s3.upload(local_data, "s3://data/shapes")
    s3.upload(ckpt, "s3://models/tiny.pt")
    result = CliRunner().invoke(app, [
        "audit", "--model", "file:s3://models/tiny.pt", "--dataset", "folder:s3://data/shapes",
        "--methods", "", "--out", str(tmp_path / "store"), "--train-cap", "8",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    audit = audit_json(tmp_path / "store")
    local = load_dataset(f"folder:{local_data}", progress=False)
    assert audit["model"]["ref"] == "file:s3://models/tiny.pt" and audit["dataset"]["ref"] == "folder:s3://data/shapes"
    assert audit["model"]["digest"] == sha256_file(ckpt)  # same weights, same identity, wherever they lie
    assert audit["dataset"]["digest"] == local.digest and audit["dataset"]["counts"] == local.counts()
    logits, y = oracle_logits(load_model(f"file:{ckpt}"), local)
    preds = audit_predictions(tmp_path / "store")
    assert preds["id"].tolist() == local.split("val")["id"].tolist()
    assert preds["pred"].tolist() == logits.argmax(1).tolist()
    assert audit["metrics"]["val"]["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()), abs=1e-9)


def test_csv_on_s3_fetches_only_its_rows_and_keeps_paths_inside(s3, tmp_path):
    root = tmp_path / "csvdata"
    shutil.copytree(_shapes_folder(), root / "images")
    rows = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))[:12]
    lines = ["path,label,split"] + [f"{r},{r.split('/')[2]},{r.split('/')[1]}" for r in rows]
    lines.append("../outside.png,circle,val")  # must never be fetched from beside the folder
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "outside.png").write_bytes((root / rows[0]).read_bytes())
    s3.upload(tmp_path, "s3://bucket/t")
    remote = load_dataset("csv:s3://bucket/t/csvdata/labels.csv", cache=tmp_path / "cache", progress=False)
    here = load_dataset(f"csv:{root / 'labels.csv'}", progress=False)
    # Both leave ../outside.png out as outside the CSV's folder (imaudit.audits.confine), the remote one
    # without fetching it (nothing beside the CSV's folder is fetched): the same 12 images, the same digest.
    assert len(remote.manifest) == 12 and remote.digest == here.digest
    for bundle, folder in ((remote, "s3://bucket/t/csvdata"), (here, str(root))):  # named as the user named it
        assert [e["reason"].startswith(f"outside the dataset's folder {folder};") for e in bundle.excluded] == [True]
    fetched = Path(remote.meta["fetched"]["local"])
    assert sorted(p.name for p in fetched.rglob("*.png")) == sorted(Path(r).name for r in rows)
    assert json.dumps(remote.counts()) and remote.ref == "csv:s3://bucket/t/csvdata/labels.csv"


def test_storage_options_from_a_prefect_block(s3, tmp_path, monkeypatch):
    """A deployment keeps its S3 endpoint and keys in a Prefect Secret block instead of the environment."""
    from prefect.blocks.system import Secret

    from imaudit import storage

    Secret(value={"s3": s3.options}).save("imaudit-test-s3", overwrite=True)
    monkeypatch.delenv(storage.OPTIONS_ENV)
    monkeypatch.setenv(storage.BLOCK_ENV, "secret/imaudit-test-s3")
    storage._block_options.cache_clear()
    s3.fs().pipe_file("models/block.bin", b"weights")
    try:
        assert storage.storage_options("s3") == s3.options
        assert storage.fetch_file("s3://models/block.bin", cache=tmp_path).read_bytes() == b"weights"
    finally:
        storage._block_options.cache_clear()


def test_a_re_audit_of_an_s3_folder_reads_no_image_again(s3, tmp_path, monkeypatch):
    """The manifest cache works for URL-fetched folders: the second audit probes nothing (audit.json cache.manifest)."""
    from imaudit.audits.stages import inputs
    from imaudit.storage import fetch_root

    probed = count_probes(monkeypatch)
    local = _shapes_folder()
    s3.upload(local, "s3://data/again")
    ckpt = _tiny_checkpoint(tmp_path)

    def audit(store: str) -> dict:
        inputs.forget()  # a new audit process would not have the bundle in memory either
        args = ["audit", "--model", f"file:{ckpt}", "--dataset", "folder:s3://data/again", "--methods", "",
                "--out", str(tmp_path / store), "--train-cap", "8"]
        result = CliRunner().invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return audit_json(tmp_path / store)

    cold = audit("cold")
    n = len(list(local.rglob("*.png")))
    assert cold["cache"]["manifest"] == {"total": n, "reused": 0, "computed": n, "rejected": 0} and len(probed) == n
    # Fetched blobs are fresh: age them past the cache's racy window, as time would.
    age_files(fetch_root())
    inputs.forget()
    load_dataset("folder:s3://data/again", progress=False)  # the cache is rewritten with the aged mtimes
    probed.clear()
    warm = audit("warm")
    assert probed == [] and warm["cache"]["manifest"] == {"total": n, "reused": n, "computed": 0, "rejected": 0}
    assert warm["dataset"]["digest"] == cold["dataset"]["digest"] and warm["dataset"]["excluded"] == cold["dataset"]["excluded"]
    inputs.forget()
