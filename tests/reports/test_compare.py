"""compare_audits / render_compare: known deltas, changed predictions, importance movement."""

from __future__ import annotations

import re

import numpy as np
import pytest
from page_checks import csp_problems, text_problems, visible_text
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
    # img000: right -> wrong; img001: wrong -> right; img003: wrong -> differently wrong; img007 and img011
    # are wrong in both with the same prediction (i % 4 == 3 is always wrong in the factory).
    assert (p["changed"], p["regressed"], p["fixed"]) == (3, 1, 1)
    assert (p["wrong_both"], p["wrong_both_changed"], p["right_both"]) == (3, 1, 7)
    assert p["fixed"] + p["regressed"] + p["wrong_both"] + p["right_both"] == p["n_common"] == 12
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
    assert "Predictions that changed" in html and 'id="n-regressed">1<' in html
    assert a.id in html
    named = render_compare(tmp_path / "store" / "a", tmp_path / "store" / "b", tmp_path / "cmp.html")
    assert named == tmp_path / "cmp.html" and 'href="store/a/report.html"' in named.read_text()


def _counts_from_csv(a_folder, b_folder) -> dict[str, int]:
    """Fixed / regressed / wrong in both, computed straight from the two predictions.csv files."""
    import pandas as pd

    pa, pb = (pd.read_csv(f / "predictions.csv", dtype={"id": str}) for f in (a_folder, b_folder))
    j = pa.merge(pb, on=["id", "split"], suffixes=("_a", "_b"))
    ra, rb = j["y_a"] == j["pred_a"], j["y_b"] == j["pred_b"]
    return {"fixed": int((~ra & rb).sum()), "regressed": int((ra & ~rb).sum()), "wrong_both": int((~ra & ~rb).sum())}


def test_compare_page_counts_match_predictions_and_settings_come_first(tmp_path):
    a_dir, b_dir = tmp_path / "store" / "a", tmp_path / "store" / "b"
    a = make_result(a_dir, flip_ids=(1,))
    b = make_result(b_dir, flip_ids=(0, 3))
    b.spec = {"methods": ["saliency", "gradcam"], "samples": 64}
    b.write(b_dir)
    a.spec = {"methods": ["saliency", "gradcam"], "samples": 16}
    a.write(a_dir)
    html = render_compare(a_dir, b_dir, tmp_path / "out").read_text()
    want = _counts_from_csv(a_dir, b_dir)
    got = {k: int(re.search(rf'id="n-{k.replace("_", "-")}">(\d+)<', html).group(1)) for k in want}
    assert got == want == {"fixed": 1, "regressed": 1, "wrong_both": 3}
    # the settings that differ are shown before any delta, with what they mean
    assert html.index('id="settings"') < html.index('id="predictions"') < html.index('id="metrics"')
    settings = html[html.index('id="settings"'):html.index('id="predictions"')]
    assert "samples" in settings and ">16<" in settings and ">64<" in settings
    assert "explained images with different settings" in settings
    # changed images show both audits' maps, as files relative to the page
    assert 'alt="A saliency map of img000"' in html and 'src="../store/b/overlays/saliency/img000.png"' in html
    assert csp_problems(html) == [] and text_problems(visible_text(html)) == []


def test_summary_lines_and_the_cli_print_the_comparison(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imaudit.cli import app
    from imaudit.reports.compare import compare_folders, summary_lines

    store = tmp_path / "store"
    make_result(store / "a", flip_ids=(1,))
    make_result(store / "b", flip_ids=(0, 3))
    lines = summary_lines(compare_folders(store / "a", store / "b"))
    assert any("12 images in both: 1 fixed, 1 regressed, 3 wrong in both" in line for line in lines)
    r = CliRunner().invoke(app, ["compare", "a", "b", "--store", str(store)])
    assert r.exit_code == 0, r.output
    assert "1 fixed, 1 regressed, 3 wrong in both" in r.output and "comparison:" in r.output
    assert (store / "b" / "compare.html").is_file()


def test_importance_movement_lists_every_class(tmp_path):
    a = make_result(tmp_path / "a")
    b = make_result(tmp_path / "b")
    del b.global_importance["saliency"]["per_class"]["dog"]
    imp = compare_audits(a, b, a_folder=tmp_path / "a", b_folder=tmp_path / "b")["importance"]
    rows = {r["class"]: r for r in imp["methods"]["saliency"]["classes"]}
    assert set(rows) == {"cat", "dog", HOSTILE}
    assert rows["dog"]["missing"] == "not explained in B" and rows["dog"]["rho"] is None


def test_moved_attribution_is_an_alarm_only_when_the_audits_explained_alike(tmp_path):
    """With different explanation settings (samples), moved maps may come from the settings: a warning, not an alarm."""
    from imaudit.reports.compare import compare_folders, summary_lines

    ramp = np.arange(25, dtype=float).reshape(5, 5) + 1
    classes = ("cat", "dog", HOSTILE)
    for samples_b, box, why in ((8, "error-box", False), (4, "warn-box", True)):
        folders = {name: tmp_path / f"{name}{samples_b}" for name in ("a", "b")}
        a = _with_grids(make_result(folders["a"], classes=classes), {c: ramp for c in classes}, {c: 0.8 for c in classes})
        b = _with_grids(make_result(folders["b"], classes=classes), {c: ramp[::-1, ::-1] for c in classes},
                        {c: 0.8 for c in classes})
        a.spec = {**a.spec, "samples": 8}
        b.spec = {**b.spec, "samples": samples_b}
        a.write(folders["a"])
        b.write(folders["b"])
        html = render_compare(folders["a"], folders["b"], tmp_path / f"cmp{samples_b}.html").read_text()
        moved = re.search(r'<div class="([a-z-]+)" id="moved-not-accuracy">([^<]*)', html)
        assert moved and moved.group(1) == box and ("different explanation settings" in moved.group(2)) == why
        line = next(x for x in summary_lines(compare_folders(folders["a"], folders["b"])) if x.startswith("attribution moved"))
        assert ("(explanation settings differ)" in line) == why


def test_a_finding_whose_check_did_not_run_in_b_is_not_called_removed(tmp_path):
    """A shortcut found in A and absent in B is 'removed' only when B searched for shortcuts; the settings
    table names the images each method explained when the defaults chose them (never a bare dash)."""
    from imaudit.reports.compare import summary_lines

    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = make_result(a_dir)
    a.spec = {"methods": ["saliency", "gradcam"], "samples": None}
    a.sample = {"per_method": {"saliency": 48, "gradcam": 48}}
    b = make_result(b_dir)
    b.findings = [f for f in b.findings if f.code != "shortcut"]
    b.spec = {"methods": ["saliency"], "samples": 4}
    b.sample = {"per_method": {"saliency": 4}}
    skipped = {"ran": False, "images": 0, "classes": [], "reason": "no class has 5 explained images", "failed": False}
    b.coverage = {"shortcut_search": skipped}
    c = compare_audits(a, b, a_folder=a_dir, b_folder=b_dir)
    assert c["findings"]["removed"] == [] and c["findings"]["unchecked"] == ["shortcut"]
    assert "not checked in B (its check did not run): shortcut" in summary_lines(c)
    samples = next(d for d in c["settings"] if d["name"] == "samples")
    assert (samples["a_text"], samples["b_text"]) == ("default (saliency 48, gradcam 48)", "4 (saliency 4)")
    # a per-method count one audit left to the defaults, or a method it did not run, is said in words
    a.spec["method_samples"] = {"gradcam": 8}
    a.sample = {"per_method": {"saliency": 48, "gradcam": 8}}
    b.spec["methods"] = ["saliency", "gradcam"]
    b.sample = {"per_method": {"saliency": 4, "gradcam": 4}}
    row = next(d for d in compare_audits(a, b, a_folder=a_dir, b_folder=b_dir)["settings"] if d["name"] == "method_samples.gradcam")
    assert (row["a_text"], row["b_text"]) == ("8", "default (4)")
    b.spec["methods"] = ["saliency"]
    row = next(d for d in compare_audits(a, b, a_folder=a_dir, b_folder=b_dir)["settings"] if d["name"] == "method_samples.gradcam")
    assert row["b_text"] == "not run"
    # B searched and found nothing: then the shortcut is removed
    b.coverage = {"shortcut_search": {**skipped, "ran": True, "images": 4, "reason": None}}
    assert compare_audits(a, b, a_folder=a_dir, b_folder=b_dir)["findings"]["removed"] == ["shortcut"]
