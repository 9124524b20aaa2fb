"""The audit flow: AuditSpec in, a report folder out (audit.json + report.html).

Everything is written into a temporary folder beside the final one and
renamed at the end, so a failed or killed audit never leaves half a report.
A stage that fails after the inputs loaded is recorded in audit.json and
the report (status "partial"); bad inputs fail the flow with BadInputError.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from imaudit import paths
from imaudit.audits.assemble import assemble, audit_id
from imaudit.audits.spec import AuditSpec
from imaudit.io import atomic_dir
from imaudit.tasks import audit_tasks as t
from imaudit.tasks import report_tasks as rt


def _outcome(state: State, stage: str, errors: list[dict[str, Any]]) -> Any:
    """A stage's result, or None with the failure recorded in ``errors``."""
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    msg = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else (state.message or "failed")
    errors.append({"stage": stage, "error": msg})
    return None


@flow(name="imaudit-audit", log_prints=True, timeout_seconds=6 * 3600, validate_parameters=True)
def audit(spec: AuditSpec) -> str:
    """Run one audit and return the path of its report folder."""
    log = get_run_logger()
    store = Path(spec.out or paths.report_store())
    aid = audit_id(spec)
    final = store / aid
    pieces: dict[str, Any] = {"errors": [], "timings": {}}
    errors = pieces["errors"]
    timings = pieces["timings"]

    def timed(name: str, fn, *args, required: bool = False) -> Any:
        t0 = time.perf_counter()
        if required:
            out = fn(*args)
        else:
            out = _outcome(fn(*args, return_state=True), name, errors)
        timings[name] = round(time.perf_counter() - t0, 3)
        return out

    with atomic_dir(final) as work:
        ident = timed("identify", t.identify, spec, work, required=True)
        pieces["identity"] = ident
        log.info("auditing %s (%s) on %s", spec.model, ident["model"]["arch"], ident["dataset"]["ref"])
        pieces["data_gate"] = timed("check_data", t.check_data, spec, work)
        pred = timed("predict", t.predict, spec, work)
        records: dict[str, dict] = {}
        if pred is not None:
            pieces["artifacts"] = dict(pred["files"])
            pieces["prediction_gate"] = timed("check_outputs", t.check_outputs, spec, work)
            pieces["diagnosis"] = timed("diagnose", t.diagnose, spec, work, ident.get("history"))
            sample = timed("choose_sample", t.choose_sample, spec, work)
            if sample is not None and spec.methods:
                records = _explain_all(spec, work, errors, timings)
                pieces["explanations"] = records
                pieces["gallery"] = timed("gallery", t.gallery, spec, work, records)
                if records:
                    pieces["insights"] = timed("insights", t.insights, spec, work, records)
        result = assemble(spec, aid, pieces)
        rt.write_report(result, work)
    rt.refresh_index(store)
    rt.publish_artifact(result, final)
    log.info("verdict %s; report at %s", result.fit.verdict, final / "report.html")
    return str(final)


def _explain_all(spec: AuditSpec, work: Path, errors: list, timings: dict) -> dict[str, dict]:
    """One explain task per method: in parallel on Dask (one model per worker), in turn otherwise.

    In-process threads would share one nn.Module whose hooks (Captum, Grad-CAM)
    would collide, so the default runner explains methods one after another.
    """
    records: dict[str, dict] = {}
    t0 = time.perf_counter()
    if spec.task_runner == "dask":
        futures = {m: t.explain.submit(spec, work, m) for m in spec.methods}
        states = {m: f.wait() or f.state for m, f in futures.items()}
    else:
        states = {m: t.explain(spec, work, m, return_state=True) for m in spec.methods}
    for m, state in states.items():
        rec = _outcome(state, f"explain:{m}", errors)
        if rec is not None:
            records[m] = rec
    timings["explain"] = round(time.perf_counter() - t0, 3)
    return records


def run_audit(spec: AuditSpec) -> Path:
    """Run the audit flow with the spec's task runner; return the report folder."""
    f = audit
    if spec.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        runner = (
            DaskTaskRunner(address=spec.dask_address)
            if spec.dask_address
            else DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
        )
        f = audit.with_options(task_runner=runner)
    return Path(f(spec))
