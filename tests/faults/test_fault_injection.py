"""Fault injection: what a user or an attacker can do to an audit, and what imaudit must then do.

Exit codes mean one thing each (0 passed, 1 gate failed, 2 bad input, 3 could
not complete); a failed stage never reads as passed; bad input is refused
cheap-first; hostile files cost a stat and a header read; non-UTF-8 names are
escaped, not fatal; a killed audit leaves no process of its own behind.
Everything goes through the product's own path: the CLI (in-process or as a
child process, as CI runs it) at its default settings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from fault_helpers import (
    SHAPES, Tree, bomb_png, cli_command, cli_env, run_cli, small_images, sparse_file, wait_for,
)
from imaudit.cli import app

runner = CliRunner()
GIB = 1 << 30
MODEL = "timm:test_resnet?pretrained=false"  # seeded random weights, one output per dataset class


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


# --- bad input: exit 2, one line, before any work ---------------------------------------------

def _forbid(*a, **k):
    raise AssertionError("work done before the bad input was refused")


@pytest.fixture
def no_dataset_work(monkeypatch):
    """Fail the test if any dataset is listed, read or generated."""
    from imaudit.audits.stages import inputs

    inputs.forget()
    monkeypatch.setattr(inputs, "_dataset", _forbid)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_exits_2_before_any_work(no_dataset_work, tmp_path, monkeypatch):
    from imaudit.audits.stages import inputs

    monkeypatch.setattr(inputs, "_model", _forbid)  # not even the model is loaded
    r = invoke("audit", "--model", MODEL, "--dataset", "builtin:digits", "--device", "cuda",
               "--out", str(tmp_path))
    assert r.exit_code == 2, r.output
    assert "--device cuda" in r.output and "CUDA is not available" in r.output and "Traceback" not in r.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("model,needle", [
    ("file:/no/such/model.pt", "/no/such/model.pt"),
    ("timm:resnet_nope", "resnet_nope"),
    ("weights.pt", "weights.pt"),
])
def test_bad_model_exits_2_before_the_dataset_is_read(no_dataset_work, model, needle):
    r = invoke("audit", "--model", model, "--dataset", "builtin:digits")
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_bad_files_given_as_options_exit_2_naming_them(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    broken = tmp_path / "spec.json"
    broken.write_text('{"samples": 3,')
    a_file = tmp_path / "report.html"
    a_file.write_text("x")
    cases = [
        (["--config", str(binary)], "spec.yaml"),
        (["--config", str(broken)], "spec.json"),
        (["--config", str(tmp_path)], str(tmp_path)),
        (["--out", str(a_file)], "report.html is a file"),
        (["--out", str(a_file / "sub")], "report.html is a file"),
    ]
    for extra, needle in cases:
        r = invoke("audit", "--model", MODEL, "--dataset", "builtin:digits", *extra)
        assert r.exit_code == 2, (extra, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("imaudit: error:") and needle in lines[0], (extra, r.output)


def test_one_class_and_non_utf8_refs_are_bad_input(tmp_path):
    small_images(tmp_path / "one", {"cat": 6})
    r = invoke("audit", "--model", MODEL, "--dataset", f"folder:{tmp_path / 'one'}", "--methods", "")
    assert r.exit_code == 2 and "one class only ('cat')" in r.output, r.output
    odd = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    r = invoke("audit", "--model", MODEL, "--dataset", f"folder:{odd}", "--methods", "")
    assert r.exit_code == 2 and "caf\\xe9" in r.output and "not UTF-8" in r.output, r.output


# --- a failed stage never reads as passed ------------------------------------------------------

def test_forced_predict_failure_exits_3_and_nothing_says_passed(tmp_path, monkeypatch):
    from imaudit.audits.stages import predict

    def broken(*a, **k):
        raise RuntimeError("injected: GPU fell off the bus")

    monkeypatch.setattr(predict, "chunk", broken)
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))  # no cached chunk may answer for the broken stage
    store = tmp_path / "store"
    r = invoke("audit", "--model", MODEL, "--dataset", SHAPES, "--input-size", "32", "--methods", "",
               "--out", str(store))
    assert r.exit_code == 3, r.output
    last = r.output.strip().splitlines()[-1]
    assert "could not complete" in last and "predict" in last and "injected" in last and "(log: " in last
    assert "passed" not in r.output.lower() and "Traceback" not in r.output
    log = Path(last.rsplit("(log: ", 1)[1].rstrip(")"))
    assert "injected: GPU fell off the bus" in log.read_text()
    folder = next(p for p in store.iterdir() if p.is_dir())
    audit = json.loads((folder / "audit.json").read_text())
    assert audit["status"] == "failed" and audit["gates"]["passed"] is False
    assert any(e["stage"] == "predict" for e in audit["errors"])
    # Report and index say it in the verdict vocabulary (audits/verdict.py): Incomplete, with the failed stage.
    report = (folder / "report.html").read_text()
    assert "Incomplete" in report and "stage predict failed" in report and "passed" not in report.lower()
    index = (store / "index.html").read_text()
    row = index[index.index(f'data-id="{folder.name}"'):]
    row = row[:row.index("</tr>")]
    assert 'data-verdict="incomplete"' in index and "predict failed: RuntimeError: injected" in row


@pytest.mark.parametrize("how", ["no generator", "the stage raises"])
def test_counterfactuals_that_do_not_run_fail_the_gate_and_nothing_says_passed(how, tmp_path, monkeypatch):
    """--counterfactuals N asked for and not done (no generator stored for the data, or the stage crashed):
    the audit is partial, so its gate fails (exit 1) and the summary says why; never 'passed'."""
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))  # an empty cache: no generator for this data
    if how == "the stage raises":
        from imaudit.audits.stages import counterfactuals

        def broken(*a, **k):
            raise RuntimeError("injected: generator exploded")

        monkeypatch.setattr(counterfactuals, "counterfactual_stage", broken)
    store = tmp_path / "store"
    r = invoke("audit", "--model", MODEL, "--dataset", SHAPES, "--input-size", "32", "--methods", "",
               "--counterfactuals", "2", "--out", str(store))
    assert r.exit_code == 1, r.output
    assert "passed" not in r.output.lower() and "Traceback" not in r.output
    assert "gate FAILED (the audit is partial: stage counterfactuals failed)" in r.output
    assert "stage-failed: stage counterfactuals failed" in r.output  # (the verdict: Fail, random weights underfit)
    audit = json.loads(next(store.glob("*/audit.json")).read_text())
    assert audit["status"] == "partial" and audit["gates"]["passed"] is False
    [failed] = [f for f in audit["findings"] if f["code"] == "stage-failed"]
    cov = audit["coverage"]["counterfactuals"]
    assert cov["ran"] is False and cov["failed"] is True  # red in the report, not "switched off"
    if how == "no generator":  # the report's section and the coverage say how to make one
        assert "no generator for this dataset" in failed["message"] and "imaudit generative train" in cov["reason"]
        assert audit["generative"]["skipped"] == cov["reason"]
    else:
        assert "injected: generator exploded" in failed["message"] and "injected" in cov["reason"]


def test_partial_audit_fails_the_gate_without_fail_on():
    from imaudit.audits.assemble import assemble, audit_status
    from imaudit.audits.result import DatasetIdentity, ModelIdentity
    from imaudit.audits.spec import AuditSpec
    from imaudit.audits.stages.records import Identity, StageError, StageOutputs

    ident = Identity(model=ModelIdentity(ref="timm:x", digest="d", arch="x", num_classes=2),
                     dataset=DatasetIdentity(ref="builtin:shapes", digest="e", classes=["a", "b"]))
    spec = AuditSpec(model="timm:x", dataset="builtin:shapes")
    for errors, status in (([], "complete"), ([StageError(stage="insights", error="x")], "partial"),
                           ([StageError(stage="diagnose", error="x")], "failed")):
        r = assemble(spec, "id", StageOutputs(identity=ident, errors=errors))
        assert audit_status([e.model_dump() for e in errors]) == r.status == status
        assert r.gates.passed is (status == "complete"), status


def test_truncated_and_corrupted_chunk_files_are_recomputed_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "store"
    args = ["audit", "--model", MODEL, "--dataset", "builtin:shapes?n=36&size=32", "--input-size", "32",
            "--methods", "saliency", "--samples", "4", "--out", str(store)]
    assert invoke(*args).exit_code == 0
    chunk_dir = tmp_path / "cache" / "chunks"
    npy, npz = next(chunk_dir.glob("*.npy")), next(chunk_dir.glob("*.npz"))
    npy.write_bytes(npy.read_bytes()[:-100])  # truncated: a killed copy, a full disk
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only the checksum can tell
    npz.write_bytes(bytes(data))
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    first, second = (json.loads(p.read_text()) for p in sorted(store.glob("*/audit.json"), key=lambda p: p.stat().st_mtime))
    assert second["cache"]["predict"] == {"total": 1, "reused": 0, "computed": 1, "rejected": 1}
    assert second["cache"]["explain:saliency"] == {"total": 1, "reused": 0, "computed": 1, "rejected": 1}
    assert second["metrics"] == first["metrics"] and second["explanations"]["saliency"]["count"] == 4
    assert second["cache"]["insights"]["reused"] == 1  # the same maps again: the verified insights entry
    assert invoke(*args).exit_code == 0  # and a third audit reuses the recomputed chunks
    third = max(store.glob("*/audit.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(third.read_text())["cache"]["predict"]["reused"] == 1


# --- hostile files, non-UTF-8 names, a broken review database: the audit goes on -----------------

def test_hostile_dataset_audits_cleanly_through_the_cli(tmp_path):
    """A folder with non-UTF-8 class and file names, a 4 GB sparse .png, a 12000x12000 PNG and a corrupt
    file with a non-UTF-8 name, into a store whose review database is corrupt: exit 0, everything listed,
    escaped, the index written (without decisions, saying why), and stage lines but no progress bars
    (stderr is not a terminal)."""
    root = tmp_path / "data"
    for split, n in (("train", 6), ("val", 3)):
        small_images(root / split, {b"caf\xe9": n, "plain": n}, seed=len(split))
    val_plain = os.path.join(os.fsencode(root / "val" / "plain"), b"")
    sparse_file(Path(os.fsdecode(val_plain + b"huge.png")), 4 * GIB)
    bomb_png(Path(os.fsdecode(val_plain + b"bomb.png")), 12000, 12000)
    Path(os.fsdecode(val_plain + b"broken\xff.png")).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    store = tmp_path / "store"
    store.mkdir()
    (store / "reviews.db").write_bytes(b"this is not a database" * 100)

    r = run_cli("audit", "--model", MODEL, "--dataset", f"folder:{root}", "--input-size", "32",
                "--methods", "saliency", "--samples", "4", "--out", str(store), env=cli_env(tmp_path / "home"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr
    assert "predict done" in r.stderr and "\r" not in r.stderr and "it/s" not in r.stderr  # lines, no bars
    # The corrupt review database costs the index its decisions, said on the page, not the audit.
    assert 'id="db-problem"' in (store / "index.html").read_text(encoding="utf-8")
    folder = next(p for p in store.iterdir() if p.is_dir() and not p.name.startswith("."))
    audit = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
    assert audit["status"] == "complete"
    assert sorted(audit["dataset"]["classes"]) == ["caf\\xe9", "plain"]
    reasons = {Path(e["path"]).name: e["reason"] for e in audit["dataset"]["excluded"]}
    assert "over the 1024 MB limit" in reasons["huge.png"]
    assert "12000x12000" in reasons["bomb.png"] and "MP limit" in reasons["bomb.png"]
    assert "broken\\xff.png" in reasons
    assert "caf\\xe9" in (folder / "report.html").read_text(encoding="utf-8")
    manifest = (folder / "manifest.csv").read_text(encoding="utf-8")
    assert "caf\\xe9/img0.png" in manifest


def test_huge_and_bomb_files_cost_a_header_read_not_their_size(tmp_path):
    """Peak memory while loading the dataset stays within 64 MB of the process's baseline."""
    root = tmp_path / "data"
    small_images(root, {"a": 4, "b": 4})
    sparse_file(root / "a" / "huge.png", 4 * GIB)
    bomb_png(root / "b" / "bomb.png", 12000, 12000)
    warm = tmp_path / "warm"
    small_images(warm, {"a": 4, "b": 4}, seed=3)
    script = (
        "import json, resource, sys\n"
        "from imaudit.audits.data import load_dataset\n"
        "load_dataset(sys.argv[2], progress=False)  # imports (pyarrow...) and threads paid before the baseline\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "ds = load_dataset(sys.argv[1], progress=False)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'delta_mb': (peak - base) / 1024, 'n': len(ds.manifest), 'excluded': ds.excluded}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, f"folder:{root}", f"folder:{warm}"], capture_output=True, text=True,
                         timeout=300, env=cli_env(tmp_path / "home"))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 8 and {Path(e["path"]).name for e in res["excluded"]} == {"huge.png", "bomb.png"}
    assert res["delta_mb"] < 64, res  # reading the 4 GB file or decoding the bomb would cost 144 MB-4 GB


def test_limits_are_configurable(tmp_path):
    from imaudit.audits.data import load_dataset
    from imaudit.audits.spec import ImageLimits

    root = tmp_path / "data"
    small_images(root, {"big": 3}, size=40)
    small_images(root, {"small": 3}, size=20)
    ds = load_dataset(f"folder:{root}", progress=False, limits=ImageLimits(max_pixels=1000))
    assert set(ds.manifest["label"]) == {"small"}
    assert len(ds.excluded) == 3 and all("40x40" in e["reason"] for e in ds.excluded)
    r = invoke("audit", "--model", MODEL, "--dataset", f"folder:{root}", "--max-image-pixels", "0")
    assert r.exit_code == 2 and "--limits.max-pixels" in r.output, r.output


# --- no leaks: a killed, interrupted or terminated audit leaves no process behind --------------------

def _audit_until_working(tmp_path: Path) -> tuple[subprocess.Popen, Tree, Path]:
    """Start a CLI audit in a child process and return once Prefect's server runs and the audit's
    temp folder exists (the audit is mid-way)."""
    store = tmp_path / "store"
    args = cli_command("audit", "--model", MODEL, "--dataset", SHAPES, "--input-size", "32",
                       "--methods", "saliency,ig,occlusion", "--samples", "8", "--out", str(store))
    proc = subprocess.Popen(args, env=cli_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    tree = Tree(psutil.Process(proc.pid))

    def working() -> bool:
        tree.scan()
        if proc.poll() is not None:
            raise AssertionError(f"the audit ended before it could be interrupted:\n{proc.stdout.read()}")
        server = any("uvicorn" in cmd for _, cmd in tree.seen.values())
        return server and store.is_dir() and any(store.glob(".tmp-*"))

    wait_for(working, 600, "the audit to start working")
    return proc, tree, store


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_killed_audit_leaves_no_process_behind(tmp_path, sig):
    proc, tree, store = _audit_until_working(tmp_path)
    try:
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The kernel (SIGKILL: PR_SET_PDEATHSIG) or the CLI itself (SIGTERM/SIGINT) ends every child.
    wait_for(lambda: not tree.alive(), 60, f"the children to go: {tree.alive()}")
    assert any("uvicorn" in cmd for _, cmd in tree.seen.values())  # the server was there to be cleaned up
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return  # nothing can clean up after SIGKILL in-process; its temp folder is swept by a later audit
    assert proc.returncode == 3, out
    last = out.strip().splitlines()[-1]
    assert "could not complete: interrupted by" in last and sig.name in last and "(log: " in last, out
    assert "Traceback" not in out
    assert not list(store.glob(".tmp-*")) and not list(store.glob("*/audit.json"))


def test_prefect_that_cannot_start_exits_3_and_leaves_nothing(tmp_path):
    """A start-up timeout too short for any machine stands in for a machine too busy to start Prefect."""
    env = cli_env(tmp_path / "home", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    proc = subprocess.Popen(cli_command("audit", "--model", MODEL, "--dataset", SHAPES, "--input-size",
                                        "32", "--methods", "", "--out", str(tmp_path / "store")),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    tree = Tree(psutil.Process(proc.pid))
    wait_for(lambda: bool(tree.scan()) or proc.poll() is not None, 600, "the CLI to start Prefect or end")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "starting Prefect" in err and "could not complete: Prefect could not start" in err and "(log: " in err
    assert "Traceback" not in err
    wait_for(lambda: not tree.alive(), 60, f"the server to go: {tree.alive()}")


# --- datasets confined to their folder; events confined to the deployment's roots ---------------

def _csv_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A CSV dataset in data/ whose rows also point outside it, three ways; returns (csv, outside folder)."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    small_images(data, {"a": 4, "b": 4})
    small_images(elsewhere, {"a": 1}, seed=7)
    secret = elsewhere / "a" / "img0.png"
    (data / "a" / "link.png").symlink_to(secret)  # a link inside the folder pointing out of it
    (data / "mask_ok.png").write_bytes((data / "a" / "img0.png").read_bytes())
    (data / "mask_bad.png").write_text("not an image")
    rows = ["path,label,split,mask"]
    rows += [f"{c}/img{i}.png,{c},{'train' if i < 3 else 'val'}," for c in "ab" for i in range(4)]
    rows[1] = rows[1].rstrip(",") + ",mask_ok.png"
    rows[2] = rows[2].rstrip(",") + ",mask_bad.png"
    rows[3] = rows[3].rstrip(",") + f",{secret}"  # an absolute mask path out of the folder
    rows += ["../elsewhere/a/img0.png,a,train,", f"{secret},a,train,", "a/link.png,a,train,",
             "../../../../../../etc/passwd,b,val,"]
    csv = data / "data.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv, elsewhere


def test_csv_paths_stay_inside_the_csv_folder(tmp_path):
    from imaudit.audits.data import load_dataset

    csv, elsewhere = _csv_dataset(tmp_path)
    ds = load_dataset(f"csv:{csv}", progress=False)
    assert len(ds.manifest) == 8  # the eight images inside data/
    outside = {e["path"]: e["reason"] for e in ds.excluded}
    assert len(outside) == 4 and all("outside the dataset's folder" in r for r in outside.values()), outside
    assert any("a link to" in r for p, r in outside.items() if p.endswith("link.png"))
    masks = {Path(m["path"]).name: m["reason"] for m in ds.meta["dropped_masks"]}
    assert "outside the dataset's folder" in masks["img0.png"] and "not a readable image" in masks["mask_bad.png"]
    kept = ds.manifest.set_index("id")["mask"]
    assert kept["a/img0.png"].endswith("mask_ok.png")  # a good mask is used
    assert kept["a/img1.png"] is None and kept["a/img2.png"] is None  # a bad one costs its own image its mask only
    allowed = load_dataset(f"csv:{csv}", progress=False, roots=(elsewhere,))
    assert len(allowed.manifest) == 8 + 3 and len(allowed.excluded) == 1  # /etc/passwd stays out


def test_a_mask_that_breaks_later_affects_its_own_image_only(tmp_path):
    from imaudit.audits.data import load_dataset
    from imaudit.audits.images import ImageDataset

    csv, _ = _csv_dataset(tmp_path)
    ds = load_dataset(f"csv:{csv}", progress=False)
    (csv.parent / "mask_ok.png").write_bytes(b"corrupted after the dataset was checked")
    items = ImageDataset(ds.manifest, ds.classes, return_mask=True, mask_size=16)
    masks = [items[i][3] for i in range(len(items))]
    assert len(masks) == 8 and all(float(m.sum()) == 0 for m in masks)


def test_event_datasets_must_lie_under_the_deployment_roots(tmp_path, monkeypatch):
    from imaudit.audits.confine import ROOTS_ENV, event_refs, roots_from
    from imaudit.errors import BadInputError
    from imaudit.flows.on_release import on_release

    root = tmp_path / "datasets"
    (root / "digits").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path)
    ok = [("release:m@1", None), ("release:m@1", "builtin:digits"), ("release:m@1", f"folder:{root / 'digits'}")]
    for ref, ds in ok:
        assert event_refs(ref, ds, [root]) == (ref, ds)
    refused = [("file:/etc/passwd", None), ("release:m@1", "folder:/etc"), ("release:m@1", f"csv:{root}/../x.csv"),
               ("release:m@1", f"folder:{root / 'escape'}"), ("release:m@1", "folder:s3://bucket/x")]
    for ref, ds in refused:
        with pytest.raises(BadInputError):
            event_refs(ref, ds, [root])
    with pytest.raises(BadInputError, match="configures no dataset_roots"):
        event_refs("release:m@1", f"folder:{root / 'digits'}", [])
    # URL roots (a shared store's datasets): the URL's path is normalised before it is compared.
    monkeypatch.setenv(ROOTS_ENV, f"s3://bucket/datasets/, {root}")
    url_roots = roots_from(None)
    assert url_roots == ["s3://bucket/datasets", root]
    assert event_refs("release:m@1", "folder:s3://bucket/datasets/v2", url_roots)[1] == "folder:s3://bucket/datasets/v2"
    for ds in ("folder:s3://bucket/datasets/../private", "folder:s3://bucket/datasets2/x",
               "csv:s3://bucket/datasets/x.csv?versionId=1", "folder:s3://other/datasets/v2", "hf:org/name"):
        with pytest.raises(BadInputError):
            event_refs("release:m@1", ds, url_roots)
    monkeypatch.delenv(ROOTS_ENV)
    # The deployed flow applies it before anything else runs (parameter, else the worker's environment);
    # the refused run is a failure record that says "bad input", as the CLI's exit 2 would.
    with pytest.raises(BadInputError, match="not under the deployment's dataset_roots"):
        on_release(ref="release:m@1", dataset="folder:/etc", dataset_roots=[str(root)])
    from imaudit import paths
    from imaudit.reports.failures import list_failures

    [record] = list_failures(paths.report_store())
    assert (record.exit_code, record.outcome, record.dataset) == (2, "bad input", "folder:/etc")
    assert "not under the deployment's dataset_roots" in record.error
    monkeypatch.setenv(ROOTS_ENV, str(root))
    with pytest.raises(BadInputError, match="not under"):
        on_release.fn(ref="release:m@1", dataset="csv:/etc/passwd")


# --- caches that verify themselves -----------------------------------------------------------------

def test_damaged_builtin_set_and_figure_cache_entries_are_rebuilt_not_trusted(tmp_path):
    from imaudit.audits.data import load_dataset
    from imaudit.io import read_verified, write_verified

    ref = "builtin:shapes?n=12&size=16&seed=3"
    first = load_dataset(ref, cache=tmp_path, progress=False)
    assert first.meta["cache"] == {"total": 1, "reused": 0, "computed": 1, "rejected": 0}
    assert load_dataset(ref, cache=tmp_path, progress=False).meta["cache"]["reused"] == 1
    victim = Path(first.manifest["path"].iloc[0])
    victim.write_bytes(victim.read_bytes()[:40])  # truncated in place
    again = load_dataset(ref, cache=tmp_path, progress=False)
    assert again.meta["cache"]["rejected"] == 1 and "bytes, recorded" in again.meta["cache"]["reason"]
    assert again.digest == first.digest and len(victim.read_bytes()) > 40  # generated again, identical

    entry = tmp_path / "figure.png"
    write_verified(entry, b"\x89PNG figure bytes")
    assert read_verified(entry) == (b"\x89PNG figure bytes", None)
    entry.write_bytes(b"\x89PNG figure bytez")  # same size, other content
    data, problem = read_verified(entry)
    assert data is None and "checksum" in problem and not entry.exists()  # removed, to be drawn again
    assert read_verified(entry) == (None, None)
