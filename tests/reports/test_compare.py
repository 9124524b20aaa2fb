"""compare_audits / render_compare: known deltas, changed predictions, importance movement."""

from __future__ import annotations

import numpy as np
import pytest
from reports_factory import HOSTILE, make_result

from imaudit.audits.result import AuditResult
from imaudit.reports.compare import compare_audits, rank_correlation, render_compare


def test_rank_correlation_known_answers():
    g = np.arange(16, dtype=float).reshape(4, 4)
    assert rank_correlation(g, g)[0] == pytest.approx(1.0)
    assert rank_correlation(g, g[::-1, ::-1])[0] == pytest.approx(-1.0)
    assert rank_correlation(g, np.ones((4, 4))) == (None, False)
    # a smooth ramp on a finer grid keeps its ranking after resampling
    fine = np.add.outer(np.arange(8.0), np.arange(8.0))
    coarse = np.add.outer(np.arange(4.0), np.arange(4.0))
    rho, resampled = rank_correlation(coarse, fine)
    assert resampled and rho > 0.95


def test_metric_and_prediction_deltas(tmp_path):
    a = make_result(tmp_path / "a", accuracy=0.7, ece=0.1, flip_ids=(1,))
    b = make_result(tmp_path / "b", accuracy=0.85, ece=0.04, flip_ids=(0, 3))
    c = compare_audits(a, b, a_folder=tmp_path / "a", b_folder=tmp_path / "b")
    by = {(r["split"], r["metric"]): r for r in c["metrics"]}
    assert by[("val", "accuracy")]["delta"] == pytest.approx(0.15)
    assert by[("val", "ece")]["delta"] == pytest.approx(-0.06)
    p = c["predictions"]
    # img000: right -> wrong; img001: wrong -> right; img003: wrong -> differently wrong
    assert (p["changed"], p["regressed"], p["fixed"]) == (3, 1, 1)
    assert [r["id"] for r in p["rows"]] == ["img000", "img001", "img003"]
    assert [r["kind"] for r in p["rows"]] == ["regressed", "fixed", "changed"]
    # per-class deltas agree with the per-class tables
    cls = {r["class"]: r for r in c["per_class"]["val"]}
    for row_a, row_b in zip(a.per_class["val"], b.per_class["val"]):
        assert cls[row_a["class"]]["recall"]["delta"] == pytest.approx(row_b["recall"] - row_a["recall"])


def test_missing_predictions_are_reported_not_fatal(tmp_path):
    a = make_result(tmp_path / "a")
    b = make_result(tmp_path / "b")
    (tmp_path / "b" / "predictions.csv").unlink()
    c = compare_audits(a, b, a_folder=tmp_path / "a", b_folder=tmp_path / "b")
    assert c["predictions"]["available"] is False and "b" in c["predictions"]["reason"]


def _with_grids(r: AuditResult, grids: dict[str, np.ndarray], recall: dict[str, float]) -> AuditResult:
    data = r.model_dump(by_alias=True)
    data["global_importance"]["saliency"]["per_class"] = {k: v.tolist() for k, v in grids.items()}
    for row in data["per_class"]["val"]:
        row["recall"] = recall[row["class"]]
    return AuditResult.model_validate(data)


def test_attribution_moved_while_accuracy_did_not(tmp_path):
    ramp = np.arange(25, dtype=float).reshape(5, 5) + 1
    classes = ("cat", "dog", HOSTILE)
    a = make_result(tmp_path / "a", classes=classes)
    b = make_result(tmp_path / "b", classes=classes)
    a = _with_grids(a, {c: ramp for c in classes}, {"cat": 0.8, "dog": 0.8, HOSTILE: 0.8})
    # dog: map reversed, accuracy steady -> flagged; cat: reversed but accuracy changed; hostile: unchanged
    b = _with_grids(b, {"cat": ramp[::-1, ::-1], "dog": ramp[::-1, ::-1], HOSTILE: ramp},
                    {"cat": 0.5, "dog": 0.81, HOSTILE: 0.8})
    imp = compare_audits(a, b, a_folder=tmp_path / "a", b_folder=tmp_path / "b")["importance"]
    rows = {r["class"]: r for r in imp["methods"]["saliency"]["classes"]}
    assert rows["dog"]["rho"] == pytest.approx(-1.0) and rows["dog"]["moved_not_accuracy"]
    assert rows["cat"]["moved"] and not rows["cat"]["moved_not_accuracy"]
    assert rows[HOSTILE]["rho"] == pytest.approx(1.0) and not rows[HOSTILE]["moved"]
    assert [(f["method"], f["class"]) for f in imp["moved_not_accuracy"]] == [("saliency", "dog")]


def test_render_compare_links_reports_and_escapes(tmp_path):
    a = make_result(tmp_path / "store" / "a")
    make_result(tmp_path / "store" / "b", flip_ids=(0,))
    (tmp_path / "store" / "a" / "report.html").write_text("<html></html>")
    out = render_compare(tmp_path / "store" / "a", tmp_path / "store" / "b", tmp_path / "out")
    assert out == tmp_path / "out" / "compare.html"
    html = out.read_text()
    assert 'href="../store/a/report.html"' in html
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert "Predictions that changed" in html and "1 regressed" in html
    assert a.id in html
    named = render_compare(tmp_path / "store" / "a", tmp_path / "store" / "b", tmp_path / "cmp.html")
    assert named == tmp_path / "cmp.html" and 'href="store/a/report.html"' in named.read_text()
