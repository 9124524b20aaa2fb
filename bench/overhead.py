"""Prefect's overhead: the audit flow against calling the same stage functions directly.

``run_direct`` does what ``imaudit.flows.audit.audit`` does, stage for stage
(imaudit.audits.stages), with plain calls instead of tasks: no task runs,
no result persistence, no Prefect cache lookups, no artifact. Both run cold
(empty chunk cache, models loaded afresh) on the same spec; the ratio
flow / direct is the price of orchestration. The flow runs in this process
against Prefect's temporary (ephemeral) server, started before timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imaudit import paths
from imaudit.audits.assemble import assemble, audit_id
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import (
    check_data,
    check_outputs,
    diagnose,
    explain,
    gallery,
    identify,
    insights,
    predict,
    sample,
)
from imaudit.audits.stages.records import StageOutputs
from imaudit.bench.homes import forget_loaded, temp_home
from imaudit.bench.profiling import where_time_goes
from imaudit.io import atomic_dir
from imaudit.reports.index import build_index
from imaudit.reports.render import render_report


@dataclass
class OverheadRow:
    """Seconds of the direct calls and of the flow, and flow / direct."""

    direct_seconds: float
    flow_seconds: float
    ratio: float
    prefect_startup_seconds: float | None = None
    profile: dict | None = None  # one more cold flow under cProfile (bench --profile, target missed)


def run_direct(spec: AuditSpec) -> Path:
    """The audit flow's stages as plain function calls; returns the report folder."""
    store = Path(spec.out or paths.report_store())
    aid = audit_id(spec)
    with atomic_dir(store / aid) as work:
        out = StageOutputs(identity=identify.run(spec, work))
        if out.identity.manifest is not None:
            out.cache["manifest"] = out.identity.manifest
        out.data_gate = check_data.run(spec, work)
        out.prediction = predict.run(spec, work, progress=False)
        out.prediction_gate = check_outputs.run(spec, work)
        out.diagnosis = diagnose.run(spec, work, out.identity.history)
        out.sample = sample.run(spec, work)
        out.explanations = {m: explain.run(spec, work, m) for m in spec.methods}
        out.gallery = gallery.run(spec, work, out.explanations)
        if out.explanations:
            out.insights = insights.run(spec, work, out.explanations)
        result = assemble(spec, aid, out)
        result.write(work)
        render_report(result, work)
    build_index(store)
    return store / aid


def start_prefect() -> float:
    """Start Prefect's temporary server (tied to this process) and run an empty flow, so both are
    paid before anything is timed; their seconds."""
    from prefect import flow

    from imaudit.flows.prefect_api import start_api

    @flow(name="imaudit-bench-warmup")
    def warmup() -> int:
        return 1

    t0 = time.perf_counter()
    start_api()
    warmup()
    return time.perf_counter() - t0


def _time_cold(run: Callable[[AuditSpec], object], spec: AuditSpec) -> float:
    """Seconds of one cold audit by ``run`` in a fresh home (nothing loaded, nothing cached)."""
    with temp_home():
        forget_loaded()
        t0 = time.perf_counter()
        run(spec)
        return time.perf_counter() - t0


def time_direct(spec: AuditSpec) -> float:
    """Seconds of one cold direct audit in a fresh home."""
    return _time_cold(run_direct, spec)


def time_flow(spec: AuditSpec) -> float:
    """Seconds of one cold audit flow in a fresh home."""
    from imaudit.flows.audit import run_audit  # lazy: Prefect loads only for the audit rows (see run._audit_rows)

    return _time_cold(run_audit, spec)


def bench_overhead(spec: AuditSpec, flow_seconds: float | None = None, startup: float | None = None,
                   profile_above: float | None = None) -> OverheadRow:
    """flow / direct on ``spec`` (``flow_seconds`` reuses a cold flow already timed, e.g. by the cache row);
    with flow / direct above ``profile_above`` (``bench --profile``), one more cold flow under cProfile."""
    direct = time_direct(spec)
    flow = time_flow(spec) if flow_seconds is None else flow_seconds
    row = OverheadRow(direct, flow, flow / direct, startup)
    if profile_above is not None and row.ratio > profile_above:
        row.profile = where_time_goes(lambda: time_flow(spec))
    return row
