"""Chunked, cached audits: an unchanged re-run reuses every chunk, an audit killed midway
resumes from its finished chunks, and a Dask LocalCluster gives the sequential run's numbers."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from orch_helpers import DATASET, FAST, same_numbers
from prefect_procs import BIN, prefect_env, run, run_then_reap

from imaudit.audits.spec import AuditSpec

pytestmark = pytest.mark.slow

CHUNK = 8  # 48 images -> 6 prediction chunks
KILL_AFTER = 3

# Runs an audit and SIGKILLs itself when chunk KILL_AFTER + 1 is about to be predicted:
# the first KILL_AFTER chunks finished, nothing was cleaned up.
KILLER = """
import os, signal, sys
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import predict
from imaudit.flows.audit import run_audit

done = 0
real = predict.chunk

def predict_then_die(spec, chunk, progress=False):
    global done
    if done == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    out = real(spec, chunk, progress)
    done += 1
    return out

predict.chunk = predict_then_die
if __name__ == "__main__":
    run_audit(AuditSpec.model_validate_json(sys.argv[1]))
"""


def _spec(out: Path, **kw) -> AuditSpec:
    return AuditSpec.model_validate({**FAST, "model": "timm:test_resnet?pretrained=false", "dataset": DATASET,
                                     "chunk_size": CHUNK, "out": out, **kw})


def _cache(folder: Path) -> dict:
    return json.loads((folder / "audit.json").read_text())["cache"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, prefect_api):
    """A sequential audit with its own empty chunk cache: the numbers every other run must match."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from imaudit.flows.audit import run_audit

    root = tmp_path_factory.mktemp("baseline")
    with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: prefect_api[0]}):
        mp.setenv("IMAUDIT_CACHE", str(root / "cache"))
        folder = run_audit(_spec(root / "reports"))
    return folder


def test_first_run_computes_every_chunk(baseline):
    c = _cache(baseline)
    assert c["predict"] == {"total": 6, "reused": 0, "computed": 6, "rejected": 0}
    assert c["explain:saliency"]["computed"] == c["explain:saliency"]["total"] == 1
    assert json.loads((baseline / "audit.json").read_text())["status"] == "complete"


def test_killed_audit_resumes_from_finished_chunks(baseline, tmp_path, monkeypatch, use_prefect_api):
    from imaudit.flows.audit import run_audit

    cache = tmp_path / "cache"
    monkeypatch.setenv("IMAUDIT_CACHE", str(cache))
    spec = _spec(tmp_path / "reports")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = prefect_env(tmp_path / "prefect-client", use_prefect_api)
    rc = run_then_reap([sys.executable, str(script), spec.model_dump_json(), str(KILL_AFTER)], env,
                       tmp_path / "killed.log")
    assert rc == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert len(list((cache / "chunks").glob("*.npy"))) == KILL_AFTER
    assert not [p for p in (tmp_path / "reports").glob("*") if not p.name.startswith(".")]  # no half report

    before = {p: p.stat().st_mtime_ns for p in (cache / "chunks").glob("*.npy")}
    folder = run_audit(spec)
    assert _cache(folder)["predict"] == {"total": 6, "reused": KILL_AFTER, "computed": 6 - KILL_AFTER, "rejected": 0}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished chunks were not rewritten
    # The killed run's chunks came from another process (other torch threads): equal up to float rounding.
    assert same_numbers(baseline, folder, rel=1e-4) == []

    again = run_audit(spec)  # nothing changed: every chunk comes from the cache
    assert _cache(again)["predict"] == {"total": 6, "reused": 6, "computed": 0, "rejected": 0}
    assert _cache(again)["explain:saliency"]["computed"] == 0
    assert again != folder  # two audits, two folders
    assert same_numbers(folder, again) == []  # two audits of the same inputs: identical numbers


def test_dask_local_cluster_matches_sequential_and_stays_quiet(baseline, tmp_path, use_prefect_api):
    """`imaudit audit --task-runner dask` (the README's command, a local cluster) gives the sequential run's numbers,
    and without -v prints none of Dask's or Prefect's INFO lines."""
    import torch

    config = tmp_path / "spec.json"
    config.write_text(json.dumps({k: v for k, v in _spec(tmp_path).model_dump(mode="json").items()
                                  if k in ("methods", "quality", "chunk_size")}))
    # Computed afresh, on the workers; torch with this process's threads (the baseline's), as the CLI gives its workers.
    env = prefect_env(tmp_path / "prefect-client", use_prefect_api, IMAUDIT_CACHE=str(tmp_path / "cache"),
                      OMP_NUM_THREADS=str(torch.get_num_threads()))
    env.pop("PREFECT_LOGGING_LEVEL")  # the CLI's default, not the test's
    out = run([str(BIN / "imaudit"), "audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", DATASET,
               "--config", str(config), "--samples", str(FAST["samples"]), "--device", "cpu",
               "--task-runner", "dask", "--out", str(tmp_path / "reports")], env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "predict done in" in out.stdout  # the CLI's own progress lines
    # Dask's and Prefect's INFO lines only with -v (warnings, e.g. a slow worker shutdown, still show).
    noisy = [line for line in out.stdout.splitlines() if re.search(r"\bINFO\b", line)]
    assert noisy == [], "\n".join(noisy[:20])
    (folder,) = [f for f in (tmp_path / "reports").iterdir() if (f / "audit.json").is_file()]
    c = _cache(folder)
    assert c["predict"] == {"total": 6, "reused": 0, "computed": 6, "rejected": 0}
    assert json.loads((folder / "audit.json").read_text())["spec"]["task_runner"] == "dask"
    # Same chunks, same torch threads, ties broken the same way: identical numbers, not merely close ones.
    assert same_numbers(baseline, folder, ignore=frozenset({".spec.task_runner"})) == []


def test_concurrent_index_rebuilds_list_every_audit(baseline, tmp_path):
    """Audits finishing together each rebuild index.html; the lock and atomic writes keep it whole."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from imaudit.tasks.report_tasks import refresh_index

    store = tmp_path / "store"
    ids = [f"{baseline.name}-copy{i}" for i in range(4)]
    for aid in ids:
        shutil.copytree(baseline, store / aid)
        d = json.loads((store / aid / "audit.json").read_text())
        (store / aid / "audit.json").write_text(json.dumps({**d, "id": aid}))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: refresh_index.fn(store), range(4)))
    html = (store / "index.html").read_text()
    assert all(aid in html for aid in ids)
    assert not [p for p in store.iterdir() if p.name.startswith(".index.html")]  # no temp files left
