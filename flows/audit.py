"""The audit flow: AuditSpec in, a report folder out (audit.json + report.html).

Everything is written into a temporary folder beside the final one and
renamed at the end, so a failed or killed audit never leaves half a report;
two audits never share a folder (ids carry a random suffix). A stage that
fails after the inputs loaded is recorded in audit.json and the report
(status "partial", or "failed" for identify/predict/diagnose: the gate fails
either way, and a failed audit fails its flow run with AuditFailed after its
partial report is written); bad inputs fail the flow with BadInputError. An interrupt
(SIGINT/SIGTERM) stops the audit at the latest at the next stage, even if
the exception it raised was swallowed on the way (imaudit.interrupts).

The stages are imaudit.audits.stages, each called through its task
(imaudit.tasks.audit_tasks); what they return is collected in a typed
StageOutputs and assembled into the AuditResult. Prediction and explanation
run as one task per chunk whose result is a content-addressed file (the
cache): re-auditing an unchanged model on unchanged data reuses them, and a
killed audit resumes from the chunks it finished. ``cache`` in audit.json
counts them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from prefect import flow, get_run_logger, tags
from pydantic import ValidationError

from imaudit import interrupts, paths
from imaudit.audits.assemble import assemble, audit_id, failed_stages
from imaudit.audits.result import MethodRecord
from imaudit.audits.spec import AuditSpec
from imaudit.audits.verdict import gate_line, verdict
from imaudit.audits.stages.records import ChunkResult, ChunkStats, PredictionOutcome, StageError, StageOutputs
from imaudit.errors import AuditFailed, BadInputError
from imaudit.flows import presence
from imaudit.flows.chunked import PendingChunks, finish_chunks, run_chunks, start_chunks
from imaudit.io import atomic_dir, sweep_stale_tmp
from imaudit.tasks import audit_tasks as t
from imaudit.tasks import generative_tasks as gt
from imaudit.tasks import report_tasks as rt

FLOW_TIMEOUT_S = 6 * 3600
# Stage-level progress for people at a terminal (the CLI shows it; Prefect's run logs have the detail).
progress = logging.getLogger("imaudit.progress")
R = TypeVar("R")


class _Stages:
    """Runs the audit's stages for the flow: times each, and records a failure instead of raising it."""

    def __init__(self) -> None:
        self.errors: list[StageError] = []
        self.timings: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], R], *, required: bool = False, timed: bool = True) -> R | None:
        """``fn()`` (a task call or a multi-task stage); a failure is recorded in ``errors`` and gives None.

        A required stage (identify) raises instead: without its inputs there is no audit.
        ``timed=False`` for the steps of a stage (one method's explanation), which the stage times.
        """
        interrupts.raise_if_received()  # an interrupt swallowed inside the last stage still stops the audit here
        if timed:
            progress.info("%s ...", name)
            get_run_logger().info("stage %s ...", name)
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - a failed stage is a result: recorded, the audit goes on
            if required:
                raise
            get_run_logger().warning("stage %s failed: %s: %s", name, type(e).__name__, e, exc_info=True)
            self.errors.append(StageError(stage=name, error=f"{type(e).__name__}: {e}"))
            result = None
        if timed:
            self.timings[name] = round(time.perf_counter() - t0, 3)
            failed = f" (failed: {self.errors[-1].error})" if result is None and self.errors else ""
            line = f"{name} done in {self.timings[name]:.1f}s{failed}"
            progress.info("%s", line)
            get_run_logger().info("stage %s", line)
        return result


def _run_name() -> str:
    """``audit-<model>@<version>``: the flow run's name, from its spec parameter."""
    from prefect.runtime import flow_run

    spec = flow_run.parameters.get("spec")
    ref = spec.model if isinstance(spec, AuditSpec) else (spec or {}).get("model", "model")
    return presence.run_name(str(ref))


@flow(name="imaudit-audit", flow_run_name=_run_name, log_prints=True, timeout_seconds=FLOW_TIMEOUT_S,
      validate_parameters=True)
def audit(spec: AuditSpec, trigger: str = "manual") -> str:
    """Run one audit and return the path of its report folder.

    ``trigger`` (release, schedule, manual) goes into the audit's event and tags.
    """
    log = get_run_logger()
    store = Path(spec.out or paths.report_store())
    aid = audit_id(spec)
    final = store / aid
    # Temp folders of audits killed earlier; anything older than the flow timeout is dead.
    sweep_stale_tmp(store, FLOW_TIMEOUT_S)
    with atomic_dir(final) as work:
        stages = _Stages()
        identity = stages.run("identify", lambda: t.identify(spec, work), required=True)
        out = StageOutputs(identity=identity, errors=stages.errors, timings=stages.timings)
        if identity.cache is not None:
            out.cache["builtin"] = identity.cache
        if identity.manifest is not None:
            out.cache["manifest"] = identity.manifest
        log.info("auditing %s (%s) on %s", spec.model, out.identity.model.arch, out.identity.dataset.ref)
        out.data_gate = stages.run("check_data", lambda: t.check_data(spec, work))
        out.prediction = stages.run("predict", lambda: _predict(spec, work, out.cache))
        if out.prediction is not None:
            out.prediction_gate = stages.run("check_outputs", lambda: t.check_outputs(spec, work))
            out.diagnosis = stages.run("diagnose", lambda: t.diagnose(spec, work, out.identity.history))
            out.sample = stages.run("choose_sample", lambda: t.choose_sample(spec, work))
            if out.sample is not None and spec.methods:
                out.explanations = stages.run("explain", lambda: _explain_all(spec, work, stages, out.cache)) or {}
                out.gallery = stages.run("gallery", lambda: t.gallery(spec, work, out.explanations))
                if out.explanations:
                    out.insights = stages.run("insights", lambda: t.insights(spec, work, out.explanations))
                    if out.insights is not None and out.insights.cache is not None:
                        out.cache["insights"] = out.insights.cache
            if spec.counterfactuals:
                out.generative = stages.run("counterfactuals", lambda: gt.counterfactuals(spec, work))
        interrupts.raise_if_received()  # last chance before the report is written and renamed into place
        result = assemble(spec, aid, out)
        rt.write_report(result, work)
    # Published to the shared store (when there is one; a custom --out stays local), then the index.
    published = rt.publish_audit(final) if spec.out is None else None
    _refresh_index(store if spec.out is not None else None, log)
    link = presence.report_link(aid, final, published)
    presence.publish_artifacts(result, link)
    log.info("status %s, verdict %s, fit %s, %s; report at %s", result.status, verdict(result).label,
             result.fit.verdict, gate_line(result), link)
    if result.status == "failed":
        # The run did not complete: it fails (Prefect state, failure record and event of the deployment
        # flows, CLI exit 3), with the partial report kept for what it could do.
        raise AuditFailed(f"audit of {spec.model} incomplete, required stage failed "
                          f"({failed_stages(result.errors)}); partial report: {link}", str(final))
    presence.emit_completed(result, link, trigger)
    return str(final)


def _refresh_index(store: Path | None, log: Any) -> None:
    """Rebuild the store's index.html; the audit is already written, so a failure is reported, not fatal."""
    try:
        rt.refresh_index(store)
    except Exception as e:  # noqa: BLE001 - e.g. a corrupt review database: said on the console and in the log
        log.warning("index.html not refreshed: %s: %s", type(e).__name__, e, exc_info=True)
        progress.warning("index.html not refreshed (%s: %s); the audit itself is complete", type(e).__name__, e)


def _counted(stage: str, results: list[ChunkResult]) -> ChunkStats:
    """A stage's chunk counts, also said in the run's log (what the cache saved, what did not verify)."""
    stats = ChunkStats.of(results)
    get_run_logger().info("%s: %d chunks, %d reused from the cache, %d computed (%d of them rejected: "
                          "cached but not verifying)", stage, stats.total, stats.reused, stats.computed,
                          stats.rejected)
    return stats


def _parallel(spec: AuditSpec) -> bool:
    return spec.task_runner == "dask"


def _predict(spec: AuditSpec, work: Path, cache: dict[str, ChunkStats]) -> PredictionOutcome:
    """Plan, run (or reuse) and assemble the prediction chunks."""
    results = run_chunks(t.predict_chunk, t.plan_predict(spec), lambda c: (spec, c), _parallel(spec))
    cache["predict"] = _counted("predict", results)
    return t.assemble_predictions(spec, work, results)


def _explain_all(spec: AuditSpec, work: Path, stages: _Stages, cache: dict[str, ChunkStats]) -> dict[str, MethodRecord]:
    """Every method's chunks (all submitted at once on Dask), then one record per method.

    A method that fails is recorded under ``explain:<method>``; the others go on.
    """
    def step(m: str, fn: Callable[[], R]) -> R | None:
        return stages.run(f"explain:{m}", fn, timed=False)

    # Start every method's chunks before collecting any, so Dask workers take them all.
    pending: dict[str, PendingChunks] = {}
    for m in spec.methods:
        plan = step(m, lambda m=m: t.plan_explain(spec, work, m))
        started = None if plan is None else step(m, lambda m=m, plan=plan: start_chunks(
            t.explain_chunk, plan, lambda c: (spec, work, m, c), _parallel(spec)))
        if started is not None:
            pending[m] = started
    records: dict[str, MethodRecord] = {}
    for m, started in pending.items():
        results = step(m, lambda s=started: finish_chunks(s))
        if results is None:
            continue
        cache[f"explain:{m}"] = _counted(f"explain:{m}", results)
        rec = step(m, lambda m=m, r=results: t.assemble_explanation(spec, work, m, r))
        if rec is not None:
            records[m] = rec
    return records


def task_runner(spec: AuditSpec) -> Any:
    """The Dask task runner for ``spec``: its scheduler address, or a local cluster of 2 worker processes."""
    from prefect_dask import DaskTaskRunner  # lazy: dask starts slowly and only Dask audits need it

    if spec.dask_address:
        return DaskTaskRunner(address=spec.dask_address)
    # One task thread per worker process: each worker holds its own model, and
    # torch's hooks (Captum, Grad-CAM) are not thread-safe on a shared module.
    # Torch in each worker gets this process's thread count (Dask's nanny would
    # set OMP_NUM_THREADS=1): float sums then run as in a sequential audit, so
    # both give the same numbers. Dask's own INFO logs stay quiet (silence_logs).
    threads = str(torch.get_num_threads())
    env = {var: threads for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                         "env": env, "silence_logs": logging.WARNING})


def audit_flow_for(spec: AuditSpec):
    """The audit flow configured with the spec's task runner."""
    return audit.with_options(task_runner=task_runner(spec)) if spec.task_runner == "dask" else audit


def run_audit(spec: AuditSpec, trigger: str = "manual") -> Path:
    """Run the audit flow with the spec's task runner, tagged with model and trigger; return the report folder."""
    with tags(*presence.run_tags(spec.model, trigger)):
        return Path(audit_flow_for(spec)(spec, trigger))


def audit_spec(ref: str, dataset: str | None, overrides: dict[str, Any] | None = None) -> AuditSpec:
    """The AuditSpec of a deployment's run: model and dataset plus the deployment's other fields."""
    fields = {**(overrides or {}), "model": ref, "dataset": dataset}
    try:
        return AuditSpec.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise BadInputError(f"overrides.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
