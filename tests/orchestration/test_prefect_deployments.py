"""Against a real Prefect server: deployments from prefect.yaml, a process worker, and
`imaudit release` triggering an audit whose report then exists; the schedule is registered.

The server is the session's shared one (conftest.py); the worker this module
starts is stopped, with its process group, when the module ends.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from orch_helpers import DATASET, FAST, tiny_checkpoint
from prefect_procs import BIN, REPO, Proc, prefect_env, run, sync_client

pytestmark = pytest.mark.slow

POOL = "imaudit"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def repo_prefect_yaml() -> dict:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def stack(prefect_api, tmp_path_factory):
    """Deployments from prefect.yaml (with fast audit settings) on the shared server + one process worker."""
    api, server, prefect_home = prefect_api
    root = tmp_path_factory.mktemp("prefect-stack")
    home = root / "imaudit-home"
    home.mkdir()
    # IMAUDIT_STORAGE '' fills prefect.yaml's job variable: no shared store, the worker's home is the store.
    env = prefect_env(prefect_home, api, IMAUDIT_HOME=str(home), IMAUDIT_CACHE=str(home / "cache"),
                      PREFECT_WORKER_QUERY_SECONDS="1", IMAUDIT_STORAGE="")
    config = repo_prefect_yaml()
    # The registry watcher polls on its own schedule; this stack audits exactly the one release it makes
    # (test_mlflow_watcher.py deploys the watcher).
    config["deployments"] = [d for d in config["deployments"] if d["name"] != "watch-registries"]
    for dep in config["deployments"]:
        dep["parameters"]["overrides"] = FAST
    prefect_file = root / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
    out = run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env, timeout=120)
    assert out.returncode == 0, out.stdout
    out = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
              env, timeout=240)
    assert out.returncode == 0, out.stdout
    worker = Proc([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                  env, root / "worker.log")
    try:
        yield {"api": api, "env": env, "home": home, "root": root, "procs": [server, worker]}
    finally:
        worker.stop()


def _logs(stack) -> str:
    return "\n".join(p.tail(80) for p in stack["procs"])


def test_release_event_triggers_an_audit_whose_report_exists(stack, tmp_path):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ckpt = tiny_checkpoint(tmp_path)
    out = run([str(BIN / "imaudit"), "release", "--name", "tiny", "--version", "1", "--arch", "test_resnet",
               "--checkpoint", str(ckpt), "--dataset", DATASET], stack["env"], timeout=180)
    assert out.returncode == 0, out.stdout
    assert "imaudit.model.released" in out.stdout and "sent" in out.stdout
    assert (stack["home"] / "registry" / "tiny" / "1" / "manifest.json").is_file()

    deadline = time.monotonic() + 360
    run_state = None
    with sync_client(stack["api"]) as client:
        dep = client.read_deployment_by_name("imaudit-on-release/audit-on-release")
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
            if runs and runs[0].state_type is not None and runs[0].state_type.value in TERMINAL:
                run_state = runs[0]
                break
            time.sleep(2)
    assert run_state is not None, f"no finished audit-on-release run within the time limit\n{_logs(stack)}"
    assert run_state.state_type.value == "COMPLETED", f"{run_state.state}\n{_logs(stack)}"
    # The trigger filled the flow's parameters from the event payload.
    assert run_state.parameters["ref"] == "release:tiny@1"
    assert run_state.parameters["dataset"] == DATASET

    reports = list((stack["home"] / "reports").glob("*/report.html"))
    assert len(reports) == 1, f"reports: {reports}\n{_logs(stack)}"
    audit = json.loads((reports[0].parent / "audit.json").read_text())
    assert audit["model"]["ref"] == "release:tiny@1"
    assert audit["model"]["release"]["version"] == "1"  # the index shows it "pending review"
    assert audit["dataset"]["ref"] == DATASET
    assert list(audit["explanations"]) == ["saliency"]  # the deployment's overrides applied


def test_schedule_and_trigger_are_registered_from_prefect_yaml(stack):
    config = repo_prefect_yaml()
    by_name = {d["name"]: d for d in config["deployments"]}
    want = by_name["scheduled-audit"]["schedules"][0]
    trigger = by_name["audit-on-release"]["triggers"][0]
    with sync_client(stack["api"]) as client:
        dep = client.read_deployment_by_name("imaudit-scheduled/scheduled-audit")
        assert dep.work_pool_name == POOL
        assert len(dep.schedules) == 1
        got = dep.schedules[0]
        assert got.schedule.cron == want["cron"]
        assert got.slug == want["slug"]
        assert got.active
        automations = client.read_automations_by_name(trigger["name"])
    assert len(automations) == 1
    auto = automations[0]
    assert auto.trigger.expect == {"imaudit.model.released"}
    assert auto.trigger.match.model_dump()["prefect.resource.id"] == "imaudit.model.*"
