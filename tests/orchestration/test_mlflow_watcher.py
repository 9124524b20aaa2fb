"""A release in MLflow is audited with no extra step: a real MLflow tracking server (SQLite, 127.0.0.1),
the deployments of prefect.yaml on the session's Prefect server, one process worker.

The watcher deployment is run on demand here (its interval schedule is switched
off in this stack's copy of prefect.yaml, so nothing fires by itself). A model
is logged and registered the way teams do it; the first poll only records; a new
version with an alias on it becomes one audit; moving the alias back becomes
another; an untagged model is never audited. The MLflow server and the worker
are stopped with this module; the last test audits from imaudit's cache with the
server gone.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from mlflow_store import log_version, tracking_server
from orch_helpers import ARCH, CLASSES, DATASET, FAST
from prefect_procs import BIN, REPO, Proc, prefect_env, run, sync_client

pytestmark = pytest.mark.slow

POOL = "imaudit-mlflow"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WAIT_S = 480  # per flow run; the loaded test machine is slow, the bound is still finite
MODEL = "shapes-net"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """The tracking server (its ``stop`` ends it early, for the offline test)."""
    with tracking_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(prefect_api, mlflow_server, tmp_path_factory):
    """audit-on-release and watch-registries deployed from prefect.yaml, one worker that sees the MLflow server."""
    api, server, prefect_home = prefect_api
    root = tmp_path_factory.mktemp("mlflow-stack")
    home = root / "imaudit-home"
    home.mkdir()
    env = prefect_env(prefect_home, api, IMAUDIT_HOME=str(home), IMAUDIT_CACHE=str(home / "cache"),
                      PREFECT_WORKER_QUERY_SECONDS="1", MLFLOW_TRACKING_URI=mlflow_server.uri,
                      IMAUDIT_STORAGE="")  # fills prefect.yaml's job variable: no shared store
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    config["deployments"] = [d for d in config["deployments"] if d["name"] in ("audit-on-release", "watch-registries")]
    config["definitions"]["work_pools"]["imaudit"]["name"] = POOL
    for dep in config["deployments"]:
        dep["work_pool"]["name"] = POOL
        if dep["name"] == "audit-on-release":
            dep["parameters"]["overrides"] = FAST
        else:
            for schedule in dep["schedules"]:
                schedule["active"] = False  # polls happen when a test asks
    prefect_file = root / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump(config, sort_keys=False))
    out = run([str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"], env, timeout=120)
    assert out.returncode == 0, out.stdout
    out = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
              env, timeout=240)
    assert out.returncode == 0, out.stdout
    worker = Proc([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
                  env, root / "worker.log")
    try:
        yield {"api": api, "home": home, "procs": [server, worker], "uri": mlflow_server.uri}
    finally:
        worker.stop()
        # Other modules deploy audit-on-release on this session's server too: they start from a fresh one
        # (its trigger, an automation owned by the deployment, goes first: deleting a deployment keeps it).
        with sync_client(api) as client:
            for name in ("imaudit-on-release/audit-on-release", "imaudit-watch-registries/watch-registries"):
                dep_id = client.read_deployment_by_name(name).id
                client.delete_resource_owned_automations(f"prefect.deployment.{dep_id}")
                client.delete_deployment(dep_id)


def _logs(stack) -> str:
    return "\n".join(p.tail(80) for p in stack["procs"])


def _finished(client, run_id, stack):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        fr = client.read_flow_run(run_id)
        if fr.state_type is not None and fr.state_type.value in TERMINAL:
            assert fr.state_type.value == "COMPLETED", f"{fr.name}: {fr.state}\n{_logs(stack)}"
            return fr
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} not finished within {WAIT_S}s\n{_logs(stack)}")


def _poll(stack) -> None:
    """One run of the watch-registries deployment, to completion."""
    with sync_client(stack["api"]) as client:
        dep = client.read_deployment_by_name("imaudit-watch-registries/watch-registries")
        _finished(client, client.create_flow_run_from_deployment(dep.id).id, stack)


def _audits(stack, n: int) -> list:
    """The audit-on-release runs of MLflow refs, once ``n`` exist and all have finished (oldest first).

    The deployment may have run releases of other test modules on this session's server before.
    """
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + WAIT_S * n
    with sync_client(stack["api"]) as client:
        dep = client.read_deployment_by_name("imaudit-on-release/audit-on-release")
        while time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
                if str(r.parameters.get("ref", "")).startswith("mlflow:")]
            if len(runs) >= n and all(r.state_type is not None and r.state_type.value in TERMINAL for r in runs):
                for r in runs:
                    assert r.state_type.value == "COMPLETED", f"{r.name}: {r.state}\n{_logs(stack)}"
                return sorted(runs, key=lambda r: r.created)
            time.sleep(2)
    raise AssertionError(f"fewer than {n} finished audit-on-release runs within the time limit\n{_logs(stack)}")


def _tiny(seed: int):
    """An untrained test model; ``seed`` picks its weights."""
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model(ARCH, num_classes=len(CLASSES)).eval()


def _released_events(stack) -> list[dict]:
    """The imaudit.model.released events about MLflow models that reached the Prefect server, oldest first."""
    import httpx

    body = {"filter": {"event": {"name": ["imaudit.model.released"]},
                       "resource": {"id_prefix": ["imaudit.model.mlflow/"]}, "order": "ASC"}, "limit": 50}
    page = httpx.post(f"{stack['api']}/events/filter", json=body, timeout=30).raise_for_status().json()
    return page["events"]


def test_releases_in_mlflow_are_audited_by_the_watcher(stack):
    import mlflow

    uri = stack["uri"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    meta = {"arch": ARCH, "classes": CLASSES}
    first = log_version(uri, MODEL, _tiny(0), metadata=meta)
    client.set_registered_model_tag(MODEL, "imaudit.dataset", DATASET)  # the model opts in to audits
    _poll(stack)  # first look: v1 is recorded, not audited
    state = json.loads((stack["home"] / "watch" / "state.json").read_text())
    assert state["registries"][uri]["versions"] == {MODEL: {first: DATASET}}

    second = log_version(uri, MODEL, _tiny(1), metadata=meta)
    client.set_registered_model_alias(MODEL, "champion", second)
    log_version(uri, "not-for-imaudit", _tiny(2))  # no imaudit.dataset tag: never audited
    _poll(stack)  # v2 is new and champion moved onto it: one audit
    client.set_registered_model_alias(MODEL, "champion", first)
    _poll(stack)  # champion moved back to v1: an audit of v1

    runs = _audits(stack, 2)
    # The watcher's events, one per concrete version (none for the first look or the untagged model).
    events = [e["payload"] for e in _released_events(stack)]
    assert [(e["ref"], e["reason"]) for e in events] == [
        (f"mlflow:models:/{MODEL}/{second}", "new version"),
        (f"mlflow:models:/{MODEL}/{first}", f"alias champion: {second} -> {first}")]
    assert [r.parameters["ref"] for r in runs] == [f"mlflow:models:/{MODEL}/{second}", f"mlflow:models:/{MODEL}/{first}"]
    assert all(r.parameters["dataset"] == DATASET for r in runs)
    audits = [json.loads(p.read_text()) for p in (stack["home"] / "reports").glob("*/audit.json")]
    assert sorted(a["model"]["origin"]["version"] for a in audits) == sorted([first, second])
    for a in audits:
        assert a["model"]["origin"]["registry"] == "mlflow" and a["model"]["origin"]["tracking_uri"] == uri
        assert a["model"]["classes"] == CLASSES and a["dataset"]["ref"] == DATASET
    state = json.loads((stack["home"] / "watch" / "state.json").read_text())
    assert state["registries"][uri]["aliases"][MODEL] == {"champion": first}
    assert state["registries"][uri]["versions"]["not-for-imaudit"] == {"1": None}


def test_with_the_server_gone_a_cached_version_still_loads_and_an_alias_is_one_line(stack, mlflow_server,
                                                                                   monkeypatch):
    """Offline: versions the worker fetched load from imaudit's cache; aliases need the server."""
    from typer.testing import CliRunner

    from imaudit.cli import app
    from imaudit.models import load_model

    _audits(stack, 2)  # the worker has fetched both versions
    mlflow_server.stop()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack["uri"])
    monkeypatch.setenv("IMAUDIT_CACHE", str(stack["home"] / "cache"))
    lm = load_model(f"mlflow:models:/{MODEL}/1")
    assert lm.origin["offline"] is True and lm.classes == CLASSES and lm.origin["version"] == "1"
    result = CliRunner().invoke(app, ["audit", "--model", f"mlflow:models:/{MODEL}@champion"])
    assert result.exit_code == 2, result.output
    assert "unreachable" in result.output and "alias" in result.output and "Traceback" not in result.output
