"""The audit end to end through the CLI and the Prefect flow, and its bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imaudit.cli import app
from spine_helpers import SIZE, nan_checkpoint, trained_digits

pytestmark = pytest.mark.slow
runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def test_audit_end_to_end(tmp_path, tmp_path_factory, monkeypatch):
    ckpt, _ = trained_digits(str(tmp_path_factory.getbasetemp()))
    store = tmp_path / "store"
    from imaudit.audits import explain_checks

    traced = []  # the sanity check's block tracing: once per audit, whatever the number of methods
    original = explain_checks.model_blocks

    def counting(*args, **kwargs):
        traced.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(explain_checks, "model_blocks", counting)
    copies = []  # and the model is deep-copied once per audit, not once per method

    class CountedCopy(explain_checks.ScratchCopy):
        def __init__(self, model):
            copies.append(1)
            super().__init__(model)

    monkeypatch.setattr(explain_checks, "ScratchCopy", CountedCopy)
    code, out = run_cli(
        "audit", "--model", f"file:{ckpt}", "--dataset", "builtin:digits", "--methods", "saliency,gradcam",
        "--samples", "6", "--out", str(store), "--train-cap", "300",
    )
    assert code == 0, out
    folders = [p for p in store.iterdir() if p.is_dir()]
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    audit = json.loads((folders[0] / "audit.json").read_text())
    assert audit["schema"] == "imaudit.audit/1"
    assert audit["model"]["digest"] and audit["dataset"]["digest"] and len(audit["dataset"]["classes"]) == 10
    for split in ("train", "val"):
        assert set(audit["metrics"][split]) >= {"accuracy", "loss", "ece"}
    assert audit["fit"]["verdict"] == "ok"
    assert audit["metrics"]["val"]["accuracy"] > 0.8
    assert audit["gates"]["passed"] is True
    for m in ("saliency", "gradcam"):
        rec = audit["explanations"][m]
        assert rec["count"] == 6 and rec["seconds"] > 0 and rec["per_image_rate"] > 0
        grid = audit["global_importance"][m]["grid"]
        # cells are rounded to 6 decimals in audit.json: 64 cells x 5e-7 bounds the error
        assert abs(sum(map(sum, grid)) - 1) < 1e-4 and min(map(min, grid)) >= 0
    # Both methods' sanity cascades ran over the same blocks, found once for the audit.
    sanity = audit["quality"]["sanity"]
    assert set(sanity) == {"saliency", "gradcam"} and sanity["saliency"]["blocks"] == sanity["gradcam"]["blocks"] > 1
    assert traced == [1] and copies == [1]
    assert (folders[0] / "report.html").stat().st_size > 1000
    assert (store / "index.html").exists()


def test_fail_on_gate_exits_1(tmp_path):
    # An untrained model underfits: an error finding, so --fail-on error fails the gate.
    code, out = run_cli(
        "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=60&size=32", "--input-size", str(SIZE),
        "--methods", "", "--out", str(tmp_path), "--fail-on", "error",
    )
    assert code == 1, out
    audit = json.loads(next(tmp_path.glob("*/audit.json")).read_text())
    assert audit["gates"]["passed"] is False and audit["fit"]["verdict"] == "underfitting"


def test_config_file_beats_the_defaults_and_the_command_line_beats_the_file(tmp_path):
    """`--config` values are not overridden by the CLI's defaults; options given on the command line win."""
    config = tmp_path / "spec.yaml"
    config.write_text("samples: 5\ndevice: cpu\ntarget: 'true'\ntrain_cap: 7\nseed: 11\ntask_runner: dask\n")
    store = tmp_path / "store"
    code, out = run_cli(
        "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=60&size=32",
        "--input-size", str(SIZE), "--methods", "", "--out", str(store), "--config", str(config),
        "--seed", "3", "--task-runner", "sequential",
    )
    assert code == 0, out  # an untrained model underfits, but no gate was asked for
    audit = json.loads(next(store.glob("*/audit.json")).read_text())
    spec = audit["spec"]
    # From the file, over the CLI's defaults (auto, pred, 2000, none):
    assert (spec["samples"], spec["device"], spec["target"], spec["train_cap"]) == (5, "cpu", "true", 7)
    assert audit["metrics"]["train"]["n"] == 7  # the file's train_cap did cap the train split (42 images)
    # Given on the command line, over the file:
    assert (spec["seed"], spec["task_runner"]) == (3, "sequential")


def test_the_cli_defaults_are_the_audit_spec_defaults():
    """Options left at their default are not passed on (AuditSpec's defaults apply); --help shows the same values."""
    import typer.main

    from imaudit.audits.spec import AuditSpec

    command = typer.main.get_command(app).commands["audit"]
    checked = 0
    for param in command.params:
        field = {"out_dir": "out"}.get(param.name, param.name)
        if field in AuditSpec.model_fields and param.default is not None and not param.required:
            spec_default = AuditSpec.model_fields[field].get_default(call_default_factory=True)
            assert param.default == spec_default or (param.default is False and not spec_default), param.name
            checked += 1
    assert checked >= 6  # device, target, train_cap, seed, task_runner, counterfactuals, rehash


def test_nan_model_is_a_finding_not_a_crash(tmp_path):
    ckpt = nan_checkpoint(tmp_path, n_classes=3)
    code, out = run_cli(
        "audit", "--model", f"file:{ckpt}", "--dataset", "builtin:shapes?n=60&size=32", "--methods", "saliency",
        "--samples", "4", "--out", str(tmp_path / "s"),
    )
    assert code == 0, out
    audit = json.loads(next((tmp_path / "s").glob("*/audit.json")).read_text())
    codes = {f["code"] for f in audit["findings"]}
    assert "nonfinite-outputs" in codes
    val = audit["metrics"]["val"]
    assert val["nonfinite"] == 18 and val["n"] == 0 and val["accuracy"] is None  # 30% of 60 images are val


def cli_subprocess(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point, to see exactly what a user sees on stderr."""
    return subprocess.run(
        [sys.executable, "-c", "from imaudit.cli import main; main()", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "nope:x", "--dataset", "builtin:digits"], "nope:x"),
        (["--model", "timm:test_resnet?pretrained=false", "--dataset", "folder:/no/such/dir"], "/no/such/dir"),
        (["--model", "file:/no/such.pt", "--dataset", "builtin:digits"], "/no/such.pt"),
        (["--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:digits", "--methods", "saliency,magic"], "magic"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle):
    r = cli_subprocess("audit", *args, *([] if "--methods" in args else ["--methods", ""]))
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]  # progress bars may precede it
    assert "Traceback" not in r.stderr
    assert len(errors) == 1 and needle in errors[0] and errors[0].startswith("imaudit: error:")


def test_unreadable_and_wrong_checkpoints_exit_2(tmp_path, tmp_path_factory):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    r = cli_subprocess("audit", "--model", f"file:{junk}", "--dataset", "builtin:digits", "--methods", "")
    assert r.returncode == 2 and "junk.pt" in r.stderr and "Traceback" not in r.stderr
    # A 10-class checkpoint against a 3-class dataset: names both sides.
    ckpt, _ = trained_digits(str(tmp_path_factory.getbasetemp()))
    r = cli_subprocess("audit", "--model", f"file:{ckpt}", "--dataset", "builtin:shapes?n=60&size=32", "--methods", "")
    assert r.returncode == 2 and "10" in r.stderr and "3" in r.stderr and "Traceback" not in r.stderr


def test_failed_audit_leaves_no_half_report(tmp_path, monkeypatch):
    import imaudit.reports.render as render

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "render_report", boom)
    r = runner.invoke(
        app,
        ["audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=60&size=32", "--input-size", "32",
         "--methods", "", "--out", str(tmp_path)],
        catch_exceptions=False,
    )
    # A crash is "could not complete" (3), never the gate's 1; the traceback is in the log, not on the console.
    assert r.exit_code == 3, r.output
    assert "could not complete" in r.output and "disk full" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.glob("*/audit.json")) and not list(tmp_path.glob(".tmp-*"))


def test_odd_modes_and_corrupt_files_audit(tmp_path):
    """A folder dataset with L/P/RGBA/CMYK images, a zero-byte file and a text .jpg still audits."""
    root = tmp_path / "data"
    modes = ["L", "P", "RGBA", "CMYK", "RGB"]
    for split, n in (("train", 6), ("val", 4)):
        for ci, cls in enumerate(["a", "b"]):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = Image.new("RGB", (20, 20), (200 * ci, 30 * i, 90)).convert(modes[i % len(modes)])
                img.save(d / f"{i}.{'jpg' if img.mode == 'CMYK' else 'png'}")
    (root / "val" / "a" / "empty.png").write_bytes(b"")
    (root / "val" / "b" / "text.jpg").write_text("hello")
    code, out = run_cli(
        "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", f"folder:{root}", "--input-size", "32",
        "--methods", "saliency", "--samples", "4", "--out", str(tmp_path / "s"),
    )
    assert code == 0, out
    audit = json.loads(next((tmp_path / "s").glob("*/audit.json")).read_text())
    assert {Path(e["path"]).name for e in audit["dataset"]["excluded"]} == {"empty.png", "text.jpg"}
    assert "corrupt-images" in {f["code"] for f in audit["findings"]}
    assert audit["metrics"]["val"]["n"] == 8


def test_method_samples_option_and_bad_pairs(tmp_path):
    code, out = run_cli(
        "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=60&size=32", "--input-size", "32",
        "--methods", "saliency,gradcam", "--samples", "6", "--method-samples", "gradcam=2", "--out", str(tmp_path),
    )
    assert code == 0, out
    audit = json.loads(next(tmp_path.glob("*/audit.json")).read_text())
    assert audit["explanations"]["saliency"]["count"] == 6 and audit["explanations"]["gradcam"]["count"] == 2
    r = cli_subprocess("audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:digits", "--method-samples", "lime")
    assert r.returncode == 2 and "--method-samples" in r.stderr and "Traceback" not in r.stderr


def test_decoding_workers_inside_the_flow(tmp_path):
    """DataLoader worker processes inside the Prefect flow (forked ones died silently there)."""
    code, out = run_cli(
        "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", "builtin:shapes?n=100&size=32", "--input-size", "32",
        "--methods", "", "--workers", "1", "--batch-size", "16", "--out", str(tmp_path),
    )
    assert code == 0, out
    audit = json.loads(next(tmp_path.glob("*/audit.json")).read_text())
    assert audit["errors"] == [] and audit["metrics"]["train"]["n"] + audit["metrics"]["val"]["n"] == 100
