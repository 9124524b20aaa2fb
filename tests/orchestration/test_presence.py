"""What an audit shows in Prefect and the index, without a server: run names, tags, artifact keys,
report links, the metrics table, and failure records on the index (escaped, links only to http(s))."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from imaudit.audits.verdict import gate_line
from imaudit.flows import presence
from imaudit.reports.failures import FailureRecord, list_failures, write_failure
from imaudit.reports.index import build_index

_spec = importlib.util.spec_from_file_location(
    "reports_factory", Path(__file__).resolve().parents[1] / "reports" / "reports_factory.py")
reports_factory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reports_factory)  # type: ignore[union-attr]


@pytest.mark.parametrize("ref,label,key", [
    ("release:digits-net@3", "digits-net@3", "imaudit-digits-net"),
    ("release:Digits_Net", "Digits_Net@latest", "imaudit-digits-net"),
    ("timm:test_resnet?pretrained=false", "test_resnet", "imaudit-test-resnet"),
    ("file:/models/best model.pt", "best-model.pt", "imaudit-best-model-pt"),
])
def test_names_and_keys_follow_the_model(ref, label, key):
    assert presence.model_label(ref) == label
    assert presence.run_name(ref) == f"audit-{label}"
    assert presence.artifact_key(ref) == key and presence.artifact_key(ref, "report") == f"{key}-report"
    assert re.fullmatch(r"[a-z0-9-]+", presence.artifact_key(ref, "metrics"))  # what Prefect accepts as a key


def test_tags_name_model_and_trigger():
    assert presence.run_tags("release:digits-net@3", "schedule") == ["imaudit", "model:digits-net", "trigger:schedule"]


def test_report_link_prefers_the_review_app_then_the_store(tmp_path, monkeypatch):
    monkeypatch.delenv(presence.REVIEW_URL_ENV, raising=False)
    assert presence.report_link("a1", tmp_path / "a1", None) == (tmp_path / "a1" / "report.html").as_uri()
    assert presence.report_link("a1", tmp_path / "a1", "s3://b/reports/a1/report.html") == "s3://b/reports/a1/report.html"
    monkeypatch.setenv(presence.REVIEW_URL_ENV, "https://review.example/")
    assert presence.report_link("a1", tmp_path / "a1", "s3://b/x") == "https://review.example/audits/a1"


def test_metrics_table_holds_the_headline_numbers(tmp_path):
    result = reports_factory.make_result(tmp_path / "a", accuracy=0.8, ece=0.05)
    table = {row["metric"]: row["value"] for row in presence.metrics_table(result)}
    assert table["accuracy (val)"] == pytest.approx(result.metrics["val"].accuracy, abs=1e-4)
    assert table["ece (val)"] == pytest.approx(result.metrics["val"].ece, abs=1e-4)
    assert table["status"] == result.status and table["gate"] == gate_line(result)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in table.values())  # no dicts


def test_failure_records_are_listed_on_the_index_escaped(tmp_path):
    store = tmp_path / "store"
    reports_factory.make_result(store / "audit-ok")
    write_failure(store, FailureRecord(id="run-1", model="release:broken@1", dataset="folder:/x", trigger="schedule",
                                       error="RefError: <script>alert(1)</script>", flow_run="audit-broken@1",
                                       flow_run_url="http://prefect:4200/runs/flow-run/run-1",
                                       created="2024-01-02T00:00:00+00:00"))
    write_failure(store, FailureRecord(id="run-2", model="release:other@1", error="Crash", state="Crashed",
                                       flow_run_url="javascript:alert(1)", created="2024-01-01T00:00:00+00:00"))
    (store / "_failures" / "garbage.json").write_text("{not json")
    assert [r.id for r in list_failures(store)] == ["run-1", "run-2"]  # newest first, the unreadable one left out

    html = build_index(store).read_text()
    assert "Audits that did not finish" in html and "audit-ok" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert 'href="http://prefect:4200/runs/flow-run/run-1"' in html
    assert 'href="javascript' not in html


def test_dask_logs_are_quiet_without_verbose(monkeypatch):
    """The CLI's default keeps Dask's scheduler/nanny INFO lines out (its workers read the same variable)."""
    import logging

    from imaudit.cli import _quiet_prefect

    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)
    logger = logging.getLogger("distributed")
    monkeypatch.setattr(logger, "level", logger.level)
    _quiet_prefect(False)
    assert logger.getEffectiveLevel() == logging.WARNING
    assert __import__("os").environ["DASK_LOGGING__DISTRIBUTED"] == "warning"
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED")
    _quiet_prefect(True)
    assert logger.getEffectiveLevel() == logging.INFO


@pytest.mark.parametrize("error,code,outcome", [
    ("bad", 2, "bad input"), ("stage", 3, "could not complete"), ("crash", 3, "could not complete"),
])
def test_failure_records_say_what_the_cli_exit_code_would(error, code, outcome, monkeypatch):
    """A deployment run's failure record classifies its error as the CLI does (imaudit.exits): a refused
    event ref is bad input (2); a failed required stage or a crash could not complete (3)."""
    import logging
    import uuid
    from types import SimpleNamespace

    from prefect.states import Failed

    from imaudit import paths
    from imaudit.errors import AuditFailed, BadInputError

    exc = {"bad": BadInputError("dataset 'folder:/etc' from the release event is not under the roots"),
           "stage": AuditFailed("audit of release:m@1 incomplete, required stage failed (predict: boom)", "/x"),
           "crash": RuntimeError("worker lost")}[error]
    events = []
    monkeypatch.setattr(presence, "emit_failed", events.append)
    monkeypatch.setattr(presence, "flow_run_logger", lambda run: logging.getLogger("test"))
    run = SimpleNamespace(id=uuid.uuid4(), name="audit-m@1", parameters={"ref": "release:m@1", "trigger": "release"})
    presence.record_failure(None, run, Failed(data=exc))
    [record] = list_failures(paths.report_store())
    assert (record.exit_code, record.outcome) == (code, outcome) and str(exc) in record.error
    assert events == [record]  # the imaudit.audit.failed event carries the same record
    assert outcome in build_index(paths.report_store()).read_text()
