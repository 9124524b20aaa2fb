"""The README's production set-up, run as written, against a real Prefect server and an S3-compatible store.

- Step 1: the session's shared Prefect server runs the README's command on 127.0.0.1 with a free port
  (its default SQLite database; PostgreSQL is the README's option for teams).
- Steps 2-4 of the README's "Production set-up" are read from README.md and run word for word:
  its exports (with this test's values: the server, a bucket on moto's S3 server on 127.0.0.1, moto's
  credentials and endpoint), the work pool, the "gpu" limit, `prefect deploy` and the worker.
  The prefect.yaml deployed is the repository's, with fast audit settings and the weekly cron
  replaced by one due within the minute (switched on once the models are released); its folder is deleted once deployed (workers must not need it).
- Two "machines": models are released from home A; the worker runs with another, empty home B.
  They share only the bucket.

Then: a release is audited by the worker (the trigger fills the run's parameters from the event, the
deployment's overrides apply) and its report is in the store; the cron schedule fires and
fans out one audit per model; the model with an unreadable dataset fails its run, the scheduled parent
ends Failed naming it, a failure record shows in the store's index with a flow-run link, and an
`imaudit.audit.failed` event is emitted; artifacts are per model; the two good audits never held the
"gpu" slot at once; results are persisted in the store.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from moto_s3 import moto_server
from orch_helpers import DATASET, FAST, tiny_checkpoint
from prefect_procs import BIN, REPO, Proc, prefect_env, run, server_command, sync_client

pytestmark = pytest.mark.slow

WAIT_S = 420  # bound on every wait below (a loaded 2-core machine)


def readme_production_steps(first: str = "# 2. ") -> tuple[dict[str, str], list[str]]:
    """(exported variables, commands) of the README production set-up's block starting ``first``, in order."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Production set-up"):]
    section = section[:section.index("\n### ", 10)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    block = next(b for b in blocks if b.startswith(first))
    exports: dict[str, str] = {}
    commands: list[str] = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            exports.update(w.split("=", 1) for w in words[1:])
        else:
            commands.append(" ".join(words))
    return exports, commands


def test_step_1_is_the_command_the_shared_server_runs():
    exports, commands = readme_production_steps("# 1. ")
    assert exports == {} and len(commands) == 1, "step 1 of the README changed: update the shared server's command"
    words = commands[0].split()
    host, port = words[words.index("--host") + 1], words[words.index("--port") + 1]
    assert words == server_command(host, int(port))


def _wait(what: str, probe, logs, timeout: float = WAIT_S, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{logs()}")


@pytest.fixture(scope="module")
def production(prefect_api, tmp_path_factory):
    """The README's steps 2-4 on the shared server, with a moto bucket; yields what the tests need."""
    api, server, prefect_home = prefect_api
    root = tmp_path_factory.mktemp("production")
    exports, commands = readme_production_steps()
    assert set(exports) == {"PREFECT_API_URL", "IMAUDIT_STORAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                            "AWS_ENDPOINT_URL"}, "the README's exports changed: update this test's values"
    assert [c.split()[:3] for c in commands] == [
        ["prefect", "work-pool", "create"], ["prefect", "global-concurrency-limit", "create"],
        ["imaudit", "store-init"], ["prefect", "deploy", "--all"], ["prefect", "worker", "start"]]

    with moto_server() as s3, sync_client(api) as client:
        bucket = exports["IMAUDIT_STORAGE"].removeprefix("s3://").split("/", 1)[0]
        s3.bucket(bucket)
        ours = {"PREFECT_API_URL": api, "IMAUDIT_STORAGE": exports["IMAUDIT_STORAGE"],
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": s3.endpoint}
        base = prefect_env(prefect_home, api, **ours, AWS_DEFAULT_REGION="us-east-1",
                           PATH=f"{BIN}:{__import__('os').environ['PATH']}")
        homes = {m: root / f"home-{m}" for m in ("a", "b")}
        for home in homes.values():
            home.mkdir()
        env_a = {**base, "IMAUDIT_HOME": str(homes["a"]), "IMAUDIT_CACHE": str(homes["a"] / "cache")}
        env_b = {**base, "IMAUDIT_HOME": str(homes["b"]), "IMAUDIT_CACHE": str(homes["b"] / "cache"),
                 "PREFECT_WORKER_QUERY_SECONDS": "1"}
        # The shared server may hold another module's pool of the same name: start from none.
        if any(p.name == "imaudit" for p in client.read_work_pools()):
            client.delete_work_pool("imaudit")

        deploy_dir = root / "deploy"
        deploy_dir.mkdir()
        config = yaml.safe_load((REPO / "prefect.yaml").read_text())
        for dep in config["deployments"]:
            dep["parameters"]["overrides"] = FAST
            for sched in dep.get("schedules") or []:
                # Cron ones due within the minute, switched on by the schedule test once its models are
                # released; the registry watcher's interval stays off (its own test polls on demand).
                if "cron" in sched:
                    sched["cron"] = "* * * * *"
                sched["active"] = False
        (deploy_dir / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        worker = None
        try:
            for command in commands[:-1]:
                out = run(shlex.split(command), env_a, timeout=300, cwd=deploy_dir)
                assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}"
            shutil.rmtree(deploy_dir)  # nothing of the deploying machine's folder is needed from here on
            worker_dir = root / "worker-cwd"
            worker_dir.mkdir()
            worker = Proc(shlex.split(commands[-1].replace("prefect ", f"{BIN}/prefect ", 1)), env_b,
                          root / "worker.log", cwd=worker_dir)
            yield {"api": api, "env_a": env_a, "homes": homes, "s3": s3, "url": exports["IMAUDIT_STORAGE"],
                   "client": client, "worker": worker, "server": server, "root": root}
        finally:
            if worker is not None:
                worker.stop()
            for dep in ("imaudit-scheduled/scheduled-audit",):
                try:
                    client.pause_deployment(client.read_deployment_by_name(dep).id)  # no more runs every minute
                except Exception:  # noqa: BLE001 - cleanup of a deployment that may not exist
                    pass
            try:
                client.delete_global_concurrency_limit_by_name("gpu")  # other modules share this server
            except Exception:  # noqa: BLE001 - cleanup of a limit that may not exist
                pass


def _logs(p) -> str:
    return "\n".join(x.tail(80) for x in (p["worker"], p["server"]))


def _runs(client, since: datetime, name: str | None = None, tags: list[str] | None = None):
    """Flow runs created from ``since`` on (other test modules share the server and make runs of the same names)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterTags

    f = FlowRunFilter(name=FlowRunFilterName(any_=[name]) if name else None,
                      tags=FlowRunFilterTags(all_=tags) if tags else None)
    return [r for r in client.read_flow_runs(flow_run_filter=f) if r.created is not None and r.created >= since]


def _now() -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=1)  # the server's clock is this machine's


def _final(runs):
    return [r for r in runs if r.state is not None and r.state.is_final()]


def _store(p, key: str) -> str:
    return p["s3"].fs().cat_file(f"{p['url'].removeprefix('s3://')}/{key}").decode()


def _store_keys(p, prefix: str) -> list[str]:
    base = p["url"].removeprefix("s3://")
    fs = p["s3"].fs()
    return [k[len(base) + 1:] for k in fs.find(f"{base}/{prefix}")] if fs.exists(f"{base}/{prefix}") else []


def _events(api: str, name: str, resource: str, since: datetime) -> list[dict]:
    """Events ``name`` about ``resource`` from ``since`` on (other modules' audits emit them too)."""
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource]},
                       "occurred": {"since": since.isoformat()}, "order": "ASC"}, "limit": 50}
    return httpx.post(f"{api}/events/filter", json=body, timeout=30).json()["events"]


def _release(p, tmp_path, name: str, *extra: str, dataset: str = DATASET, seed: int = 0):
    ckpt = tiny_checkpoint(tmp_path, seed=seed)
    # The README's command (Releasing a model triggers its audit), from machine A.
    out = run([str(BIN / "imaudit"), "release", "--name", name, "--version", "1", "--arch", "test_resnet",
               "--checkpoint", str(ckpt), "--dataset", dataset, *extra], p["env_a"], timeout=240)
    assert out.returncode == 0, out.stdout


def test_release_is_audited_by_a_worker_that_shares_only_the_store(production, tmp_path):
    p = production
    client = p["client"]
    since = _now()
    _release(p, tmp_path, "tiny")
    parents = _wait("the release audit", lambda: [r for r in _final(_runs(client, since, "audit-tiny@1", ["trigger:release"]))
                                                  if r.deployment_id is not None], lambda: _logs(p))
    run_ = _runs(client, since, "audit-tiny@1", ["trigger:release"])  # the deployment's run and its audit subflow
    assert len(run_) == 2 and parents[0].state.is_completed(), f"{parents[0].state}\n{_logs(p)}"
    assert {"imaudit", "model:tiny", "trigger:release"} <= set(parents[0].tags)
    # The release trigger filled the run's parameters from the event's payload.
    dep = client.read_deployment(parents[0].deployment_id)
    assert dep.name == "audit-on-release" and dep.work_pool_name == "imaudit"
    assert parents[0].parameters["ref"] == "release:tiny@1" and parents[0].parameters["dataset"] == DATASET

    # The report is in the shared store, listed by its index; machine B never had a registry of its own.
    audits = [k for k in _store_keys(p, "reports") if k.endswith("/audit.json")]
    assert len(audits) == 1, audits
    audit = json.loads(_store(p, audits[0]))
    assert audit["model"]["ref"] == "release:tiny@1" and audit["status"] == "complete"
    assert audit["model"]["release"]["version"] == "1"  # the index shows it "pending review"
    assert audit["dataset"]["ref"] == DATASET and list(audit["explanations"]) == ["saliency"]  # the deployment's overrides
    assert f"reports/{audit['id']}/report.html" in _store_keys(p, "reports")
    assert audit["id"] in _store(p, "reports/index.html")
    assert not (p["homes"]["b"] / "registry").exists() and not (p["homes"]["a"] / "reports").exists()
    assert _store_keys(p, "cache/chunks") and _store_keys(p, "prefect-results")  # shared chunks, persisted results

    # Stage lines and cache counts in Prefect's log of the audit run.
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    ids = [r.id for r in run_]
    text = "\n".join(log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))))
    assert "stage predict done in" in text and re.search(r"predict: \d+ chunks, \d+ reused from the cache", text)

    # Artifacts under the model's keys: summary, link to the report in the store, metrics table.
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    arts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=ids))) if a.key}  # Prefect's own result artifacts have no key
    assert set(arts) == {"imaudit-tiny", "imaudit-tiny-report", "imaudit-tiny-metrics"}
    # Prefect stores a link artifact as markdown: [text](link)
    link = f"{p['url']}/reports/{audit['id']}/report.html"
    assert f"]({link})" in str(arts["imaudit-tiny-report"].data)
    table = arts["imaudit-tiny-metrics"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert {"metric": "status", "value": "complete"} in table

    done = _wait("imaudit.audit.completed",
                 lambda: _events(p["api"], "imaudit.audit.completed", "imaudit.audit.tiny", since), lambda: _logs(p))
    assert done[0]["resource"]["imaudit.trigger"] == "release" and done[0]["resource"]["imaudit.version"] == "1"
    assert done[0]["payload"]["audit_id"] == audit["id"] and done[0]["payload"]["status"] == "complete"


def test_cron_schedule_fans_out_and_failures_show(production, tmp_path, monkeypatch):
    p = production
    client = p["client"]
    # One more good model and one whose dataset the worker cannot read; registered without announcing.
    _release(p, tmp_path, "tiny-b", "--no-emit", seed=1)
    _release(p, tmp_path, "broken", "--no-emit", seed=2, dataset=f"folder:{tmp_path / 'not-there'}")
    limit = client.read_global_concurrency_limit_by_name("gpu")
    assert limit.limit == 1 and limit.active

    dep = client.read_deployment_by_name("imaudit-scheduled/scheduled-audit")
    (schedule,) = dep.schedules
    assert schedule.schedule.cron == "* * * * *" and not schedule.active and schedule.slug == "weekly-reaudit"
    since = _now()
    client.update_deployment_schedule(dep.id, schedule.id, active=True)
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    def scheduled_runs(final: bool):
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        return [r for r in runs if r.state is not None and not r.state.is_scheduled()
                and (r.state.is_final() or not final)]

    # The scheduler made the run and the worker took it: later minutes' runs are not needed.
    first = _wait("a scheduled-audit run created by the scheduler and started by the worker",
                  lambda: scheduled_runs(False), lambda: _logs(p), timeout=WAIT_S)[0]
    client.pause_deployment(dep.id)
    parent = _wait("the scheduled run to finish", lambda: [r for r in scheduled_runs(True) if r.id == first.id],
                   lambda: _logs(p))[0]
    assert parent.state.is_failed(), f"{parent.state}\n{_logs(p)}"
    assert "1 of 3 audits did not complete" in parent.state.message and "broken" in parent.state.message
    # Its result, persisted in the store (read with the store's credentials), is the failure with every model's outcome.
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, p["env_a"][k])
    failure = parent.state.result(raise_on_failure=False)
    assert str(failure) == parent.state.message
    assert {m: o["state"] for m, o in failure.outcome.items()} == {
        "tiny": "Completed", "tiny-b": "Completed", "broken": "Failed"}

    children = {r.name: r for r in _final(_runs(client, since, tags=["trigger:schedule"])) if r.deployment_id}
    assert {n: r.state.type.value for n, r in children.items() if n.startswith("audit-")} == {
        "audit-tiny@1": "COMPLETED", "audit-tiny-b@1": "COMPLETED", "audit-broken@1": "FAILED"}

    # The failure record is in the store and its index, with the error and a link to the run.
    records = [k for k in _store_keys(p, "reports/_failures") if k.endswith(".json")]
    assert len(records) == 1, records
    record = json.loads(_store(p, records[0]))
    broken = children["audit-broken@1"]
    assert record["model"] == "release:broken@1" and record["trigger"] == "schedule"
    assert record["id"] == str(broken.id) and "not-there" in record["error"]
    assert (record["outcome"], record["exit_code"]) == ("bad input", 2)  # as the CLI would exit
    assert record["flow_run_url"].endswith(f"/runs/flow-run/{broken.id}")
    index = _store(p, "reports/index.html")
    assert "release:broken@1" in index and f"/runs/flow-run/{broken.id}" in index
    failed = _wait("imaudit.audit.failed",
                   lambda: _events(p["api"], "imaudit.audit.failed", "imaudit.audit.broken", since), lambda: _logs(p))
    assert failed[0]["resource"]["imaudit.trigger"] == "schedule"
    assert "not-there" in failed[0]["payload"]["error"] and failed[0]["payload"]["flow_run"] == "audit-broken@1"
    assert failed[0]["payload"]["outcome"] == "bad input" and failed[0]["payload"]["exit_code"] == 2
    # The worker's log tells the error where the audit raised it and where Prefect ended the run, no more often,
    # and the scheduled run's end is its failure, not an error of Prefect's reading its result.
    log = p["worker"].log.read_text(errors="replace")
    assert len(re.findall(r"^imaudit\.errors\.RefError: .*not-there", log, re.M)) <= 2
    assert "Unexpected result for failed state" not in log

    # Per-model artifacts: each good model's audit left its own summary, report link and metrics.
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    ours = [r.id for r in _runs(client, since, tags=["trigger:schedule"])]
    arts = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
        any_=ours))) if a.key]
    assert {a.key for a in arts} == {f"imaudit-{m}{suffix}" for m in ("tiny", "tiny-b")
                                       for suffix in ("", "-report", "-metrics")}
    links = {a.key: str(a.data) for a in arts if a.key.endswith("-report")}
    assert links["imaudit-tiny-report"] != links["imaudit-tiny-b-report"]

    # The two good audits, run at once by one worker, never held the "gpu" slot together.
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    good = [children["audit-tiny@1"].id, children["audit-tiny-b@1"].id]
    subflows = [r.id for r in _runs(client, since, tags=["trigger:schedule"]) if r.name in ("audit-tiny@1", "audit-tiny-b@1")]
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=good + subflows)))
    held: dict[str, list] = {}
    for log in sorted(logs, key=lambda x: x.timestamp):
        if "device slot 'gpu'" in log.message and log.task_run_id is not None:
            held.setdefault(str(log.task_run_id), []).append(log.timestamp)
    spans = sorted(v for v in held.values() if len(v) == 2)
    assert len(spans) == len(held) >= 4, held  # every taken slot was released
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two tasks held the one gpu slot at once"


def test_readme_automation_example_is_a_valid_prefect_automation():
    from uuid import uuid4

    from prefect.events.schemas.automations import AutomationCore

    text = (REPO / "README.md").read_text()
    example = re.search(r"```yaml\n(name: imaudit-audit-failed\n.*?)```", text, re.S).group(1)
    spec = yaml.safe_load(example.replace("<id of the slack-webhook block>", str(uuid4())))
    auto = AutomationCore.model_validate(spec)
    assert auto.trigger.expect == {"imaudit.audit.failed"}
