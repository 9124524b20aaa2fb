"""The audit flow: AuditSpec in, a report folder out (audit.json + report.html).

Everything is written into a temporary folder beside the final one and
renamed at the end, so a failed or killed audit never leaves half a report;
two audits never share a folder (ids carry a random suffix). A stage that
fails after the inputs loaded is recorded in audit.json and the report
(status "partial"); bad inputs fail the flow with BadInputError.

Prediction and explanation run as cached chunk tasks: re-auditing an
unchanged model on unchanged data reuses them, and a killed audit resumes
from the chunks it finished. ``cache`` in audit.json counts them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from imaudit import interrupts, paths
from imaudit.audits.assemble import assemble, audit_id
from imaudit.audits.spec import AuditSpec
from imaudit.flows.chunked import finish_chunks, run_chunks, start_chunks
from imaudit.io import atomic_dir, sweep_stale_tmp
from imaudit.tasks import audit_tasks as t
from imaudit.tasks import generative_tasks as gt
from imaudit.tasks import report_tasks as rt

FLOW_TIMEOUT_S = 6 * 3600
# Stage-level progress for people at a terminal (the CLI shows it; Prefect's run logs have the detail).
progress = logging.getLogger("imaudit.progress")


def _outcome(state: State, stage: str, errors: list[dict[str, Any]]) -> Any:
    """A stage's result, or None with the failure recorded in ``errors``."""
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    msg = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else (state.message or "failed")
    errors.append({"stage": stage, "error": msg})
    return None


def _guarded(stage: str, errors: list[dict[str, Any]], fn: Callable[[], Any]) -> Any:
    """Run a multi-task stage; a failure is recorded in ``errors`` (and logged), not raised."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a failed stage is a result: recorded, the audit goes on
        get_run_logger().warning("stage %s failed: %s: %s", stage, type(e).__name__, e, exc_info=True)
        errors.append({"stage": stage, "error": f"{type(e).__name__}: {e}"})
        return None


@flow(name="imaudit-audit", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S, validate_parameters=True)
def audit(spec: AuditSpec) -> str:
    """Run one audit and return the path of its report folder."""
    log = get_run_logger()
    store = Path(spec.out or paths.report_store())
    aid = audit_id(spec)
    final = store / aid
    # Temp folders of audits killed earlier; anything older than the flow timeout is dead.
    sweep_stale_tmp(store, FLOW_TIMEOUT_S)
    pieces: dict[str, Any] = {"errors": [], "timings": {}}
    errors, timings = pieces["errors"], pieces["timings"]
    cache: dict[str, dict[str, int]] = {}

    def timed(name: str, fn, *args, required: bool = False) -> Any:
        interrupts.raise_if_received()  # an interrupt swallowed mid-stage still stops the audit here
        progress.info("%s ...", name)
        t0 = time.perf_counter()
        if required:
            out = fn(*args)
        else:
            out = _outcome(fn(*args, return_state=True), name, errors)
        timings[name] = round(time.perf_counter() - t0, 3)
        progress.info("%s done in %.1fs%s", name, timings[name], "" if out is not None or required else " (failed)")
        return out

    with atomic_dir(final) as work:
        ident = timed("identify", t.identify, spec, work, required=True)
        pieces["identity"] = ident
        cache.update(ident.get("cache", {}))
        log.info("auditing %s (%s) on %s", spec.model, ident["model"]["arch"], ident["dataset"]["ref"])
        pieces["data_gate"] = timed("check_data", t.check_data, spec, work)
        t0 = time.perf_counter()
        interrupts.raise_if_received()
        progress.info("predict ...")
        pred = _guarded("predict", errors, lambda: _predict(spec, work, cache))
        timings["predict"] = round(time.perf_counter() - t0, 3)
        if pred is None:
            progress.info("predict failed after %.1fs: %s", timings["predict"], errors[-1]["error"] if errors else "?")
        else:
            progress.info("predict done in %.1fs (chunks %s)", timings["predict"], cache.get("predict"))
        if pred is not None:
            pieces["artifacts"] = dict(pred["files"])
            pieces["prediction_gate"] = timed("check_outputs", t.check_outputs, spec, work)
            pieces["diagnosis"] = timed("diagnose", t.diagnose, spec, work, ident.get("history"))
            sample = timed("choose_sample", t.choose_sample, spec, work)
            if sample is not None and spec.methods:
                t0 = time.perf_counter()
                interrupts.raise_if_received()
                progress.info("explain with %s ...", ", ".join(spec.methods))
                records = _explain_all(spec, work, errors, cache)
                timings["explain"] = round(time.perf_counter() - t0, 3)
                progress.info("explain done in %.1fs", timings["explain"])
                pieces["explanations"] = records
                pieces["gallery"] = timed("gallery", t.gallery, spec, work, records)
                if records:
                    pieces["insights"] = timed("insights", t.insights, spec, work, records)
            if spec.counterfactuals:
                pieces["generative"] = timed("counterfactuals", gt.counterfactuals, spec, work)
        interrupts.raise_if_received()  # last chance before the report is written and renamed into place
        result = assemble(spec, aid, pieces).model_copy(update={"cache": cache})
        rt.write_report(result, work)
    _refresh_index(store, log)
    rt.publish_artifact(result, final)
    log.info("verdict %s; report at %s", result.fit.verdict, final / "report.html")
    return str(final)


def _refresh_index(store: Path, log: Any) -> None:
    """Rebuild the store's index.html; the audit is already written, so a failure is reported, not fatal."""
    try:
        rt.refresh_index(store)
    except Exception as e:  # noqa: BLE001 - e.g. a corrupt review database: said on the console and in the log
        log.warning("index.html not refreshed: %s: %s", type(e).__name__, e, exc_info=True)
        progress.warning("index.html not refreshed (%s: %s); the audit itself is complete", type(e).__name__, e)


def _parallel(spec: AuditSpec) -> bool:
    return spec.task_runner == "dask"


def _predict(spec: AuditSpec, work: Path, cache: dict) -> dict[str, Any]:
    """Plan, run (cached) and assemble the prediction chunks."""
    chunks = t.plan_predict(spec)
    run = run_chunks(t.predict_chunk, chunks, lambda c: (spec, c), _parallel(spec))
    cache["predict"] = run.stats()
    return t.assemble_predictions(spec, work, run.paths)


def _explain_all(spec: AuditSpec, work: Path, errors: list, cache: dict) -> dict[str, dict]:
    """Every method's chunks (all submitted at once on Dask), then one record per method."""
    records: dict[str, dict] = {}
    plans: dict[str, list] = {}
    for m in spec.methods:
        plan = _outcome(t.plan_explain(spec, work, m, return_state=True), f"explain:{m}", errors)
        if plan is not None:
            plans[m] = plan
    # Start every method's chunks before collecting any, so Dask workers take them all.
    pending = {
        m: _guarded(f"explain:{m}", errors, lambda m=m, plan=plan: start_chunks(
            t.explain_chunk, plan, lambda c: (spec, work, m, c), _parallel(spec)))
        for m, plan in plans.items()
    }
    for m, started in pending.items():
        run = None if started is None else _guarded(f"explain:{m}", errors, lambda s=started: finish_chunks(s))
        if run is None:
            continue
        cache[f"explain:{m}"] = run.stats()
        rec = _outcome(t.assemble_explanation(spec, work, m, run.paths, return_state=True), f"explain:{m}", errors)
        if rec is not None:
            records[m] = rec
    return records


def task_runner(spec: AuditSpec) -> Any:
    """The Dask task runner for ``spec``: its scheduler address, or a local cluster of 2 worker processes."""
    from prefect_dask import DaskTaskRunner

    if spec.dask_address:
        return DaskTaskRunner(address=spec.dask_address)
    # One thread per worker process: each worker holds its own model, and
    # torch's hooks (Captum, Grad-CAM) are not thread-safe on a shared module.
    return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})


def audit_flow_for(spec: AuditSpec):
    """The audit flow configured with the spec's task runner."""
    return audit.with_options(task_runner=task_runner(spec)) if spec.task_runner == "dask" else audit


def run_audit(spec: AuditSpec) -> Path:
    """Run the audit flow with the spec's task runner; return the report folder."""
    return Path(audit_flow_for(spec)(spec))


def audit_spec(ref: str, dataset: str | None, overrides: dict[str, Any] | None = None) -> AuditSpec:
    """The AuditSpec of a deployment's run: model and dataset plus the deployment's other fields."""
    from pydantic import ValidationError

    from imaudit.errors import BadInputError

    fields = {**(overrides or {}), "model": ref, "dataset": dataset}
    try:
        return AuditSpec.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise BadInputError(f"overrides.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
