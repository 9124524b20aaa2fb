"""report.html: a composition of sections; offline files, escaping, no raw dumps, tolerance of bad input."""

from __future__ import annotations

import re
from pathlib import Path

from page_checks import csp_problems, parse, text_problems, visible_text
from readme_examples import dropped_in, readme_example
from reports_factory import HOSTILE, _png, make_result

from imaudit.audits.result import AuditResult
from imaudit.reports.page import image_anchor
from imaudit.reports.render import render_report
from imaudit.reports.sections import SECTIONS, compose, ordered
from imaudit.reports.sections.fit import history_rows
from imaudit.reports.sections.gallery import LIMIT as GALLERY_LIMIT

RICH_SECTIONS = ["Findings", "Performance", "Calibration", "Fit", "Data checks", "Shortcuts", "Global importance",
                 "Gallery", "Explanation quality", "Method agreement", "Strategies", "Layer views", "Counterfactuals",
                 "Coverage", "Review", "Run details"]


def _h2(html: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", html)


def _section(html: str, name: str) -> str:
    start = html.index(f'id="{name}"')
    end = html.find('<section class="card', start)
    return html[start:end if end > 0 else None]


def test_rich_report_has_every_section_in_order_and_only_local_files(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    out = render_report(result, folder)
    html = out.read_text()
    assert out == folder / "report.html"
    assert _h2(html) == RICH_SECTIONS
    # The decision card comes first, without a heading of its own; the navigation lists every section.
    assert html.index('id="summary"') < html.index('id="findings"')
    nav = re.findall(r'<nav class="toc"[^>]*>(.*?)</nav>', html, re.S)[0]
    assert re.findall(r'href="#([a-z]+)"', nav)[:3] == ["summary", "findings", "performance"]
    assert "#review" in nav
    # Offline and CSP-ready: one inline style and one inline script, no handlers or style attributes,
    # nothing fetched from elsewhere; every image and link is a file beside the report.
    assert csp_problems(html) == []
    p = parse(html)
    srcs = [v for tag, k, v in p.attrs if k == "src"]
    hrefs = [v for tag, k, v in p.attrs if k == "href"]
    assert srcs and any(u.startswith("figures/") for u in srcs)
    for url in srcs + hrefs:
        path = url.split("#")[0]
        if path:
            assert (folder / path).is_file(), url
    for row in result.artifacts["gallery"]:
        for png in row["overlays"].values():
            assert png in srcs
    assert text_problems(visible_text(html)) == []


def test_findings_grouped_with_meaning_action_and_contract_evidence(tmp_path):
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    sec = _section(html, "findings")
    # Model findings by severity (the shortcut error, then overfitting), data after them.
    order = [sec.index(t) for t in ("About the model", "Shortcut", "Overfitting", "About the data", "Class imbalance")]
    assert order == sorted(order)
    assert sec.count("What it means") == 3 and sec.count("What to do") == 3
    # The shortcut's contract evidence: a box drawn on a figure, the intervention numbers, confirmed.
    assert "confirmed by intervention" in sec
    assert 'alt="box of the shortcut on class' in sec
    assert "cover the box in the class&#39;s images" in sec and "100.0%" in sec and "25.0%" in sec
    assert "paste the box into other classes&#39; images" in sec and "87.5%" in sec
    assert "cover the box in other classes&#39; images" in sec and "62.5%" in sec  # the fallback test
    assert "75.0%" in sec and "12.5%" in sec  # the controls: the same box elsewhere
    # Each finding links to the figure behind it.
    assert 'href="#shortcuts"' in sec and 'href="#fit"' in sec
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_decision_card_states_verdict_accuracy_interval_and_coverage(tmp_path):
    folder = tmp_path / "a1"
    html = render_report(make_result(folder, accuracy=0.75), folder).read_text()
    card = _section(html, "summary")
    assert 'class="verdict fail"' in card and ">Fail<" in card
    assert "Shortcut (error)" in card
    # 9 of 12 right: Wilson 95 % interval 46.8 %-91.1 %.
    assert 'id="headline-accuracy">75.0%<' in card and "46.8%–91.1%" in card and "n = 12" in card
    assert "Confirmed" in card and "first audit of this model" in card
    assert "Pending review" in card  # a release audit without a decision
    assert "Not run: localisation: the dataset has no object masks" in card


def test_coverage_is_red_by_the_failed_field_not_by_the_reason_wording():
    """A check whose stage broke is 'failed' (red); one skipped on purpose is grey, whatever its reason says."""
    from imaudit.audits.coverage_groups import coverage_lines
    from imaudit.reports.sections.coverage import grouped

    cov = {
        "sanity:saliency": {"ran": True, "images": 8, "classes": 2, "reason": None, "failed": False},
        "sanity:lime": {"ran": False, "images": 0, "classes": [], "reason": "stage insights failed: boom", "failed": True},
        "localisation:saliency": {"ran": False, "images": 0, "classes": [], "reason": "turned off: failed masks are not read",
                                  "failed": False},
        "agreement": {"ran": False, "images": 0, "classes": [], "reason": "needs at least two methods with maps"},
    }
    rows = {r["check"]: r for r in grouped(cov)}
    assert rows["sanity"]["state"] == "failed" and rows["sanity"]["not_run"] == [("stage insights failed: boom", ["lime"])]
    assert rows["localisation"]["state"] == "unknown"  # "failed" in its wording, but skipped on purpose
    assert rows["agreement"]["state"] == "unknown"
    # the CLI groups the same way
    assert "  not run: sanity (lime): stage insights failed: boom" in coverage_lines(cov)


def test_sections_degrade_gracefully_on_a_bare_audit(tmp_path):
    result = AuditResult(
        id="bare", model={"ref": "timm:test_resnet", "digest": "d", "arch": "test_resnet", "num_classes": 2},
        dataset={"ref": "builtin:digits", "digest": "e", "classes": ["a", "b"]},
        metrics={"val": {"n": 4, "accuracy": 0.75, "loss": 0.5, "ece": 0.1}})
    html = render_report(result, tmp_path).read_text()
    assert _h2(html) == ["Findings", "Performance", "Shortcuts", "Coverage", "Review", "Run details"]
    assert "No findings" in html and "Not checked" in html and "no explanation method ran" in html
    assert text_problems(visible_text(html)) == []
    assert not (tmp_path / "figures").exists()


def test_unsafe_or_missing_paths_are_not_linked_and_bad_figures_are_recorded(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    (tmp_path / "secret.png").write_bytes(b"x")
    gallery = result.artifacts["gallery"]
    gallery[0]["image"] = "../secret.png"
    gallery[1]["image"] = str(tmp_path / "secret.png")
    gallery[2]["image"] = "gallery/does-not-exist.png"
    result.confusion["val"] = [[1, 2], [3]]  # ragged: the heatmap cannot be drawn
    html = render_report(result, folder).read_text()
    assert "secret.png" not in html and "does-not-exist" not in html
    assert "figure confusion-val" in _section(html, "run")  # listed under Run details
    assert 'id="gallery"' in html  # the rest of the report still rendered


def test_a_section_that_raises_is_shown_as_a_notice_and_the_rest_renders(tmp_path, monkeypatch):
    from imaudit.reports.sections.agreement import Agreement

    def boom(self, page):
        raise RuntimeError("agreement exploded")

    monkeypatch.setattr(Agreement, "value", boom)
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    assert "This section could not be drawn: RuntimeError: agreement exploded" in _section(html, "agreement")
    assert "section agreement" in _section(html, "run")
    assert _h2(html) == RICH_SECTIONS


def test_a_new_section_module_is_picked_up_by_registration(tmp_path):
    """The README's one-file section, dropped into reports/sections: registered, ordered, in the nav, rendered."""
    source = readme_example("reports/sections/timings.py")
    (tmp_path / "pkg").mkdir()
    with dropped_in(SECTIONS, "imaudit.reports.sections", "timings.py", source, tmp_path / "pkg"):
        assert "timings" in SECTIONS.names() and ordered()[-1].name == "timings"
        folder = tmp_path / "a1"
        html = render_report(make_result(folder), folder).read_text()
        assert _h2(html)[-1] == "Stage timings" and 'href="#timings">Timings<' in html
        sec = _section(html, "timings")
        # slowest first: explain 3.0 s, predict 1.25 s, load 0.5 s (see reports_factory)
        assert [m for m in re.findall(r"<th>(\w+)</th>", sec)] == ["explain", "predict", "load"]
        bare = make_result(tmp_path / "bare", rich=False)
        bare.timings = {}
        assert 'id="timings"' not in render_report(bare, tmp_path / "bare").read_text()
    assert "timings" not in SECTIONS.names()


def test_gallery_tiles_link_to_predictions_rows_and_filter_attributes(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    html = render_report(result, folder).read_text()
    sec = _section(html, "gallery")
    rows = (folder / "predictions.csv").read_text().splitlines()[1:]
    row_of = {line.split(",")[0]: i for i, line in enumerate(rows, start=1)}
    for g in result.artifacts["gallery"]:
        tile = sec[sec.index(f'id="{image_anchor(g["id"])}"'):]
        tile = tile[: tile.index("</figure>")]
        assert f'predictions.csv#row={row_of[g["id"]]}"' in tile
        assert f'data-correct="{1 if g["correct"] else 0}"' in tile
        assert "explains " in tile
    wrong = sum(not g["correct"] for g in result.artifacts["gallery"])
    assert f"misclassified ({wrong})" in sec
    assert sec.index('data-correct="0"') < sec.index('data-correct="1"')  # mistakes first


def test_large_audit_report_stays_small(tmp_path):
    """1,000 explained images: the HTML references files (nothing inlined) and caps the tiles."""
    folder = tmp_path / "big"
    result = make_result(folder)
    _png(folder / "gallery/shared.png", 1)
    result.artifacts["gallery"] = [
        {"id": f"im{i:04d}", "label": "cat", "pred": "dog" if i % 3 else "cat", "correct": not i % 3,
         "confidence": 0.5, "image": "gallery/shared.png", "overlays": {"saliency": "gallery/shared.png"}}
        for i in range(1000)]
    html = render_report(result, folder).read_text()
    assert len(html.encode()) < 2_000_000
    assert "base64" not in html
    assert html.count('alt="image im') == GALLERY_LIMIT
    assert f"{1000 - GALLERY_LIMIT} more explained images" in html


def test_history_rows_accepts_rows_and_columns():
    cols = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.2, 0.9]}
    rows = history_rows(cols)
    assert rows == [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}, {"epoch": 2, "train_loss": 0.5, "val_loss": 0.9}]
    assert history_rows({"rows": rows}) == rows
    assert history_rows(None) == []


def test_quality_agreement_and_strategies_render_the_engine_shapes(tmp_path):
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    q = _section(html, "quality")
    assert 'alt="deletion and insertion curves per method"' in q and "better than random" in q
    assert "per_image" not in q
    a = _section(html, "agreement")
    assert 'alt="agreement matrix between methods"' in a and "0.62" in a
    # The factory's one class has a 3-image and a 1-image cluster: not two strategies, said in one line.
    s = _section(html, "strategies")
    assert "No class shows two or more distinct strategies of at least 3 images" in s and "<img" not in s


def test_meaningful_strategies_show_mean_maps_and_exemplars(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    cls = result.strategies["saliency"]["classes"]["cat"]
    cls["clusters"][1].update(size=3, ids=["img001", "img004", "img007"], exemplar_ids=["img001", "img004"])
    html = render_report(result, folder).read_text()
    s = _section(html, "strategies")
    assert 'alt="strategy mean maps of class cat"' in s
    assert f'href="#{image_anchor("img000")}"' in s and f'href="#{image_anchor("img004")}"' in s


def test_layer_views_resolve_paths_recorded_relative_to_views(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    result.artifacts["views"] = {"activations": [{"layer": "layer1", "png": "act-layer1.png", "shape": [8, 16, 16]}],
                                 "filters": {"layer": "conv1", "png": "views/filters-conv1.png", "shape": [16, 3, 3, 3]}}
    _png(folder / "views/act-layer1.png", 3)
    html = render_report(result, folder).read_text()
    v = _section(html, "views")
    assert 'src="views/act-layer1.png"' in v and 'src="views/filters-conv1.png"' in v
    assert "8 channels, 16×16" in v and "missing" not in v


def test_figures_are_cached_by_their_data(tmp_path, monkeypatch):
    """A second report of the same data copies its figures; different data draws anew."""
    import imaudit.reports.figures as figs

    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = figs.confusion_png
    monkeypatch.setattr(figs, "confusion_png", lambda *a, **k: calls.append("c") or real(*a, **k))
    a, b = tmp_path / "a", tmp_path / "b"
    ra = make_result(a)
    render_report(ra, a)
    drawn = len(calls)
    assert drawn >= 1
    rb = make_result(b)
    render_report(rb, b)
    assert len(calls) == drawn  # same confusion matrices: copied from the cache
    figs_a = sorted(p.name for p in (a / "figures").iterdir())
    assert figs_a == sorted(p.name for p in (b / "figures").iterdir())
    assert all((a / "figures" / n).read_bytes() == (b / "figures" / n).read_bytes() for n in figs_a)
    split = next(iter(rb.confusion))
    rb.confusion[split][0][0] += 1
    render_report(rb, b)
    assert len(calls) == drawn + 1  # only the changed matrix is drawn again


def test_every_section_module_renders_its_own_value(tmp_path):
    """compose() on the rich audit: each registered section is drawn once and none failed."""
    from imaudit.reports.page import Page

    folder = tmp_path / "a1"
    page = Page(make_result(folder), Path(folder))
    rendered = compose(page)
    assert [s.name for s in rendered] == [c.name for c in ordered() if c.name in {s.name for s in rendered}]
    assert not any(s.failed for s in rendered), page.problems


def test_decision_card_compares_with_the_previous_and_the_last_approved_audit(tmp_path):
    from imaudit.reports.db import open_review_db
    from imaudit.reports.accounts import Identity
    from imaudit.reports.decisions import DecisionLog, Seen
    from imaudit.reports.store import read_audit

    store = tmp_path / "reports"
    make_result(store / "v1", created="2024-05-01T10:00:00+00:00", model_ref="release:net@1", accuracy=0.5)
    make_result(store / "v2", created="2024-05-02T10:00:00+00:00", model_ref="release:net@2", accuracy=0.75)
    make_result(store / "other", created="2024-05-02T11:00:00+00:00", model_ref="release:else@1")
    db = open_review_db(store)
    result, digest = read_audit(store / "v1")
    seen = Seen.of("v1", result, digest)
    DecisionLog(db).append(seen, Identity("Ann", "reviewer", "password"), "approve", "", seen.required)
    db.dispose()
    r = make_result(store / "v3", created="2024-05-03T10:00:00+00:00", model_ref="release:net@3", accuracy=0.7)
    card = _section(render_report(r, store / "v3").read_text(), "summary")
    assert 'id="headline-accuracy">70.0%<' in card
    assert '<b class="down">−5.0 pt</b> vs previous audit (v2)' in card
    assert '<b class="up">+20.0 pt</b> vs last approved (v1)' in card

    # An earlier audit on other data is named but not compared.
    r2 = make_result(store / "v4", created="2024-05-04T10:00:00+00:00", model_ref="release:net@4")
    r2.dataset.digest = "sha256:" + "ef" * 32
    card = _section(render_report(r2, store / "v4").read_text(), "summary")
    assert "not compared (different dataset digest) vs previous audit (v3)" in card


def test_readme_says_how_to_read_every_section():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("**How to read a report**"):readme.index("**A report is a composition of sections**")]
    for cls in ordered():
        name = cls.title or "Decision card"
        assert f"| **{name}** |" in table, name
