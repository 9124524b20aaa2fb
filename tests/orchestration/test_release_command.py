"""`imaudit release`: registry copy + sha256 + manifest, refusal of a changed checkpoint,
manifest files, and the event that prefect.yaml's trigger listens for."""

from __future__ import annotations

import fnmatch
import json
import re

import yaml
from orch_helpers import CLASSES, DATASET, tiny_checkpoint
from prefect_procs import REPO
from typer.testing import CliRunner

from imaudit import paths
from imaudit.cli import app
from imaudit.io import sha256_file

runner = CliRunner()


def release(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["release", *args])
    return r.exit_code, r.output


def base(ckpt, version: str = "1") -> list[str]:
    return ["--name", "tiny", "--version", version, "--arch", "test_resnet", "--checkpoint", str(ckpt),
            "--dataset", DATASET, "--no-emit"]


def test_release_copies_checkpoint_with_digest_and_manifest(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    code, out = release(*base(ckpt))
    assert code == 0, out
    folder = paths.registry_dir() / "tiny" / "1"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(ckpt)
    assert sha256_file(paths.registry_dir() / manifest["checkpoint"]) == manifest["sha256"]
    assert manifest["dataset"] == DATASET
    assert manifest["classes"] == CLASSES and manifest["arch"] == "test_resnet"

    code, out = release(*base(ckpt))  # the same checkpoint again: accepted, nothing changes
    assert code == 0 and "already released" in out


def test_rereleasing_a_version_with_another_checkpoint_is_refused(tmp_path):
    assert release(*base(tiny_checkpoint(tmp_path, seed=0)))[0] == 0
    code, out = release(*base(tiny_checkpoint(tmp_path, seed=1)))
    assert code == 2
    assert len(out.strip().splitlines()) == 1 and "tiny@1" in out and "refusing" in out
    assert release(*base(tiny_checkpoint(tmp_path, seed=1), version="2"))[0] == 0  # a new version is fine


def test_checkpoint_that_does_not_fit_the_architecture_is_bad_input(tmp_path):
    args = base(tiny_checkpoint(tmp_path))
    args[args.index("test_resnet")] = "test_vit"
    code, out = release(*args)
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert not (paths.registry_dir() / "tiny" / "1").exists()


def test_missing_dataset_names_the_option(tmp_path):
    args = base(tiny_checkpoint(tmp_path))
    i = args.index("--dataset")
    del args[i : i + 2]
    code, out = release(*args)
    assert code == 2 and "--dataset" in out


def test_manifest_file_with_paths_relative_to_it(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    (tmp_path / "history.json").write_text(json.dumps([{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1}]))
    spec = {"name": "tiny", "version": "3", "arch": "test_resnet", "checkpoint": ckpt.name,
            "dataset": DATASET, "history": "history.json", "notes": "from a file"}
    (tmp_path / "release.yaml").write_text(yaml.safe_dump(spec))
    code, out = release("--manifest", str(tmp_path / "release.yaml"), "--no-emit")
    assert code == 0, out
    manifest = json.loads((paths.registry_dir() / "tiny" / "3" / "manifest.json").read_text())
    assert manifest["notes"] == "from a file" and manifest["history"][0]["epoch"] == 1


def test_emitting_without_a_prefect_server_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    args = base(tiny_checkpoint(tmp_path))[:-1]  # without --no-emit
    code, out = release(*args)
    assert code == 3 and "PREFECT_API_URL" in out  # registered, not announced: could not complete
    assert (paths.registry_dir() / "tiny" / "1" / "manifest.json").is_file()  # the release itself stands


def test_release_event_is_what_the_on_release_trigger_expects(tmp_path):
    from imaudit.flows.release import release_event
    from imaudit.models import Registry

    manifest = Registry().release("tiny", "7", arch="test_resnet", checkpoint=tiny_checkpoint(tmp_path),
                                  dataset=DATASET)
    event = release_event(manifest)
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    trigger = next(d for d in config["deployments"] if d["name"] == "audit-on-release")["triggers"][0]
    assert event["event"] in trigger["expect"]
    for label, pattern in trigger["match"].items():
        assert fnmatch.fnmatchcase(event["resource"][label], pattern)
    # Each templated parameter names a payload field, which holds what the flow needs.
    rendered = {}
    for param, template in trigger["parameters"].items():
        field = re.fullmatch(r"\{\{\s*event\.payload\.(\w+)\s*\}\}", template).group(1)
        rendered[param] = event["payload"][field]
    assert rendered == {"ref": "release:tiny@7", "dataset": DATASET}
