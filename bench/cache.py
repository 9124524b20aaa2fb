"""Cold audit against warm audit: the same model and data audited twice in one fresh home.

The second audit finds every prediction and explanation chunk in the cache
(content-addressed files + Prefect's cached task results) and recomputes the
rest: loading, data and output gates, diagnosis, quality checks, report.
Both audits load the model and data afresh (process caches dropped), as two
separate runs would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from imaudit.audits.spec import AuditSpec
from imaudit.bench.homes import forget_loaded, temp_home
from imaudit.bench.profiling import where_time_goes


@dataclass
class CacheRow:
    """Seconds of the cold and the warm audit, warm / cold, and where the warm one spent its time."""

    cold_seconds: float
    warm_seconds: float
    ratio: float
    chunks_reused: int
    chunks_total: int
    warm_stages: dict[str, float] = field(default_factory=dict)
    cold_stages: dict[str, float] = field(default_factory=dict)
    profile: dict | None = None  # a third (warm) audit under cProfile (bench --profile, target missed)


def _audit_json(folder: Path) -> dict:
    return json.loads((folder / "audit.json").read_text(encoding="utf-8"))


def bench_cache(spec: AuditSpec, profile_above: float | None = None) -> CacheRow:
    """Audit ``spec`` cold then warm with the audit flow (``run_audit``) in a fresh home; with warm / cold
    above ``profile_above`` (``bench --profile``), a third, untimed warm audit runs under cProfile."""
    from imaudit.flows.audit import run_audit  # lazy: Prefect loads only for the audit rows (see run._audit_rows)

    with temp_home():
        forget_loaded()
        t0 = time.perf_counter()
        cold_folder = run_audit(spec)
        cold = time.perf_counter() - t0
        cold_stages = dict(_audit_json(cold_folder).get("timings") or {})
        forget_loaded()
        t0 = time.perf_counter()
        warm_folder = run_audit(spec)
        warm = time.perf_counter() - t0
        data = _audit_json(warm_folder)
        profile = None
        if profile_above is not None and warm / cold > profile_above:
            forget_loaded()
            profile = where_time_goes(lambda: run_audit(spec))
    stats = (data.get("cache") or {}).values()
    return CacheRow(
        cold_seconds=cold,
        warm_seconds=warm,
        ratio=warm / cold,
        chunks_reused=sum(s.get("reused", 0) for s in stats),
        chunks_total=sum(s.get("total", 0) for s in stats),
        warm_stages=dict(data.get("timings") or {}),
        cold_stages=cold_stages,
        profile=profile,
    )
