"""Report sections for many shortcut candidates (issue 11's shapes) and for subset audits (issue 16's two views)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from page_checks import text_problems, visible_text
from reports_factory import make_result

from imaudit.audits.result import AuditResult, Finding
from imaudit.reports.render import render_report


def _section(html: str, name: str) -> str:
    start = html.index(f'id="{name}"')
    end = html.find('<section class="card', start)
    return html[start:end if end > 0 else None]


def _candidate(cls: str, x: int, after: float, flip: float) -> Finding:
    """An unconfirmed shortcut candidate in the shape the shortcut check writes (HELPERS.md contract)."""
    return Finding(code="shortcut", severity="info", message=f"Shortcut candidate for class {cls}, not confirmed",
                   evidence={"class": cls, "class_index": 0, "box": [x, 0, x + 4, 4], "image_size": [32, 32],
                             "methods": ["gradcam", "ig"], "hot_frequency": 0.9, "confirmed": False,
                             "intervention": {"cover": {"n": 16, "accuracy_before": 1.0, "accuracy_after": after,
                                                        "control_accuracy_after": 1.0},
                                              "paste": {"n": 64, "flip_rate": flip, "control_flip_rate": 0.0}}})


def test_many_unconfirmed_candidates_are_one_finding_and_one_table(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    xs = (0, 4, 8, 12, 16)
    result.findings += [_candidate("cat", x, 1.0 - x / 100, x / 200) for x in xs]
    html = render_report(result, folder).read_text()

    findings = _section(html, "findings")
    # Five candidates: one entry with a row each; the confirmed shortcut keeps its own card.
    assert findings.count("5 × Shortcut") == 1 and "none confirmed" in findings
    table = findings[findings.index('class="instances"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + len(xs)  # header + one row per candidate
    assert "84%" in table and "100% → 84%" in table and "8%" in table  # x=16: accuracy 1.0 -> 0.84, 8 % flipped
    assert "confirmed by intervention" in findings  # the factory's confirmed shortcut, drawn in full
    # One "What it means" for the folded five, one for the confirmed shortcut, overfitting, the info finding.
    assert findings.count("What it means") == 4

    shortcuts = _section(html, "shortcuts")
    rows = re.findall(r"<tr><td>cat</td><td>(\d+)–", shortcuts)
    assert [int(x) for x in rows] == list(xs)
    assert "5 candidates the model does not depend on" in shortcuts
    # Their montages fold away; the confirmed one is open.
    folded = shortcuts[shortcuts.index("each candidate's box on its images"):]
    assert folded.count('class="shortcut"') == 5
    assert shortcuts[:shortcuts.index('id="candidate-table"')].count('class="shortcut"') == 1
    assert text_problems(visible_text(html)) == []


def test_tested_and_cleared_candidates_do_not_read_as_a_problem_on_the_card(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    result.findings = [f for f in result.findings if f.code != "shortcut"] + [_candidate("cat", 0, 1.0, 0.0)]
    card = _section(render_report(result, folder).read_text(), "summary")
    assert ">Cleared<" in card and "1 candidate tested" in card and "Candidates only" not in card
    assert text_problems(visible_text(card)) == []

    untested = _candidate("cat", 0, 1.0, 0.0)
    untested.evidence.pop("confirmed")
    untested.evidence.pop("intervention")
    result.findings = [f for f in result.findings if f.code != "shortcut"] + [untested]
    card = _section(render_report(result, folder).read_text(), "summary")
    assert "Candidates only" in card and "1 candidate not tested on the model" in card


def _subset_audit(folder: Path) -> AuditResult:
    """A 2-class subset audit of a 1000-output model: val has 4 images, 2 answered outside the classes."""
    result = make_result(folder, classes=("tench", "goldfish"), n_val=4, rich=False)
    rows = [  # (label, restricted correct, full prediction label, in classes, full correct)
        ("tench", True, "tench", True, True),
        ("tench", True, "toilet tissue", False, False),
        ("goldfish", True, "toilet tissue", False, False),
        ("goldfish", False, "tench", True, False),
    ]
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "label", "pred_label", "correct", "pred_full_label", "in_classes", "correct_full"])
        for i, (label, ok, full, inside, ok_full) in enumerate(rows):
            w.writerow([f"img{i}", "val", label, label if ok else "x", ok, full, inside, ok_full])
    data = result.model_dump(by_alias=True)
    data["metrics"]["val"].update(view="restricted", n=4, accuracy=0.75)
    data["metrics_full"] = {"val": {"view": "full", "n": 4, "accuracy": 0.25, "loss": 2.0, "ece": 0.3, "outside": 0.5}}
    data["class_map"] = {"subset": True, "model_outputs": 1000, "label_source": "timm ImageNet info",
                         "primary_view": "restricted",
                         "classes": [{"class": "tench", "output": 0, "model_label": "tench", "wordnet_id": "n01440764",
                                      "matched_by": "name"},
                                     {"class": "goldfish", "output": 1, "model_label": "goldfish",
                                      "wordnet_id": "n01443537", "matched_by": "synonym"}]}
    data["artifacts"] = {"predictions": "predictions.csv"}
    result = AuditResult.model_validate(data)
    result.write(folder)
    return result


def test_subset_audit_shows_both_views_and_the_class_map(tmp_path):
    folder = tmp_path / "s"
    html = render_report(_subset_audit(folder), folder).read_text()
    sec = _section(html, "subset")
    assert "2 dataset classes matched to 1,000 model outputs" in sec
    row = re.search(r"<tr><td>val</td>(.*?)</tr>", sec, re.S).group(1)
    cells = re.findall(r'<td class="n">([^<]*)</td>', row)
    assert cells[:3] == ["4", "75.0%", "30.1%–95.4%"]  # restricted: 3 of 4, Wilson interval
    assert cells[3:6] == ["25.0%", "4.6%–69.9%", "50.0%"]  # full: 1 of 4; half answered outside the classes
    assert "<b>toilet tissue</b> ×2 (50%)" in sec
    # Class map with each class's recall in both views, from predictions.csv.
    tench = re.search(r"<tr><td>tench</td>(.*?)</tr>", sec, re.S).group(1)
    assert "n01440764" in tench and ">name<" in tench and ">100.0%<" in tench and ">50.0%<" in tench
    goldfish = re.search(r"<tr><td>goldfish</td>(.*?)</tr>", sec, re.S).group(1)
    assert ">synonym<" in goldfish and ">50.0%<" in goldfish and ">0.0%<" in goldfish
    # The decision card says which view its accuracy is, and gives the other.
    card = _section(html, "summary")
    assert 'id="headline-accuracy">75.0%<' in card and "over all 1,000 outputs 25.0%" in card
    assert 'href="#subset"' in html  # in the navigation


def test_an_audit_whose_outputs_are_its_classes_has_no_views_section(tmp_path):
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    assert 'id="subset"' not in html and "over all" not in _section(html, "summary")


def test_coverage_is_one_row_per_check_with_what_did_not_run_and_why():
    from imaudit.reports.sections.coverage import grouped

    def entry(ran, images=0, reason=None, **extra):
        return {"ran": ran, "images": images, "classes": ["a", "b"] if ran else [], "reason": reason, **extra}

    rows = {r["check"]: r for r in grouped({
        "explain:saliency": entry(True, 8, failures=0), "explain:ig": entry(True, 4, failures=0),
        "sanity:saliency": entry(True, 8), "sanity:ig": entry(False, reason="not among quality.sanity_methods"),
        "localisation:saliency": entry(False, reason="no masks"), "localisation:ig": entry(False, reason="no masks"),
        "strategies:ig": entry(True, 4, reason="no class has enough images"),
        "shortcut_search": entry(True, 8, candidates=3, skipped=0),
        "counterfactuals": entry(False, reason="stage generative failed: boom", failed=True),
    })}
    assert list(rows) == ["explain", "sanity", "localisation", "strategies", "shortcut search", "counterfactuals"]
    assert rows["explain"]["parts"] == [("saliency", 8), ("ig", 4)] and rows["explain"]["word"] == "yes"
    assert rows["sanity"]["word"] == "partly" and rows["sanity"]["not_run"] == [("not among quality.sanity_methods", ["ig"])]
    assert rows["localisation"]["word"] == "not run" and rows["localisation"]["not_run"] == [("no masks", [])]
    assert rows["strategies"]["remarks"] == [("no class has enough images", ["ig"])]
    assert rows["shortcut search"]["note"] == "candidates 3" and rows["shortcut search"]["classes"] == 2
    assert rows["counterfactuals"]["state"] == "failed"  # a stage failure is red, a check switched off is not
