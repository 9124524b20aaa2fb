"""A bounded loopback load test: 100 decisions and 100 page loads sent at once to `imaudit serve` over a
store of 1,000 audits. No errors, every decision recorded exactly once, the log verifies, the static index
catches up. Times are printed, never asserted (the README's numbers come from bench/review_load.py)."""

from __future__ import annotations

import json
import re

import pytest

from imaudit.bench.review_load import REVIEWERS, add_reviewers, run_load, stub_audits
from imaudit.reports.catalog import StoreCatalog
from imaudit.reports.db import open_review_db
from imaudit.reports.decisions import DecisionLog

pytestmark = pytest.mark.slow

N_AUDITS, N_DECISIONS, N_PAGES = 1000, 100, 100


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("load") / "reports"
    targets = stub_audits(store, N_AUDITS)
    return store, targets


def test_catalog_reads_each_audit_once_until_it_changes(big_store):
    store, _ = big_store
    catalog = StoreCatalog(store)
    assert len(catalog.entries()) == N_AUDITS and catalog.reads == N_AUDITS
    generation = catalog.generation
    assert len(catalog.entries()) == N_AUDITS and catalog.reads == N_AUDITS  # nothing read again
    assert catalog.generation == generation
    path = store / "load-00007" / "audit.json"
    data = json.loads(path.read_text())
    data["metrics"]["val"]["accuracy"] = 0.123
    path.write_text(json.dumps(data))
    entry = next(e for e in catalog.entries() if e.id == "load-00007")
    assert catalog.reads == N_AUDITS + 1 and entry.result.metrics["val"].accuracy == 0.123
    assert catalog.generation > generation


def test_concurrent_decisions_and_page_loads_on_a_thousand_audits(big_store):
    store, targets = big_store
    add_reviewers(store)
    result = run_load(store, targets[N_AUDITS - N_DECISIONS:][::-1] + targets[:N_AUDITS - N_DECISIONS],
                      decisions=N_DECISIONS, pages=N_PAGES, timeout_s=300, quiet=1)
    print("\nreview load medians (s):", result.medians(), "wall", result.wall_s)
    assert result.errors == []
    assert result.decisions_ok == N_DECISIONS
    assert len(result.index_times) + len(result.report_times) == N_PAGES

    decided = {aid for aid, _ in targets[N_AUDITS - N_DECISIONS:]}
    db = open_review_db(store)
    try:
        log = DecisionLog(db)
        assert log.verify() == N_DECISIONS  # every decision once, the chain intact
        latest = log.latest()
    finally:
        db.dispose()
    assert set(latest) == decided
    assert {d.reviewer for d in latest.values()} == {name for name, _ in REVIEWERS}
    assert {d.comment for d in latest.values()} == {f"load decision {k}" for k in range(N_DECISIONS)}
    # the static index was rebuilt off the request path, and is complete once the server has stopped
    static = (store / "index.html").read_text()
    rows = re.findall(r'data-id="(load-\d+)"', static)
    assert len(rows) == N_AUDITS
    assert static.count('<span class="badge approve">Approved</span>') == N_DECISIONS
