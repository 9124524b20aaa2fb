"""report.html: section order, offline files, escaping, tolerance of missing and bad sections."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from reports_factory import HOSTILE, _png, make_result

from imaudit.audits.result import AuditResult
from imaudit.reports.render import GALLERY_LIMIT, history_rows, render_report

SECTIONS = ["Gates and findings", "Identity", "Data checks", "Metrics per split", "Per class", "Confusion matrices",
            "Calibration", "Fit", "Global importance", "Strategy clusters", "Explanation quality and agreement",
            "Gallery", "Layer activation and filter views", "Timings and explanation rates", "Errors",
            "Counterfactuals"]


class _Refs(HTMLParser):
    """Collects every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.h2: list[str] = []
        self._in_h2 = False
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2 and data.strip():
            self.h2.append(data.strip())
            self._in_h2 = False


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_rich_report_has_every_section_in_order_and_only_local_files(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    out = render_report(result, folder)
    assert out == folder / "report.html"
    refs = _parse(out)
    assert refs.h2 == SECTIONS
    # Offline: no external URL, no script/stylesheet to fetch; every image is a file beside the report.
    assert "link" not in refs.tags and "script" not in refs.tags
    assert refs.srcs, "report should show figures and gallery images"
    for url in refs.srcs + refs.hrefs:
        assert not re.match(r"^[a-z]+:", url), url
        if not url.startswith("#"):
            assert (folder / url).is_file(), url
    assert any(u.startswith("figures/") for u in refs.srcs)
    # every method's overlay appears for each gallery image
    for row in result.artifacts["gallery"]:
        for png in row["overlays"].values():
            assert png in refs.srcs


def test_findings_sorted_by_severity_and_class_names_escaped(tmp_path):
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    top = html.index("Gates and findings")
    positions = [html.index(code, top) for code in ("shortcut", "overfitting", "class-imbalance")]
    assert positions == sorted(positions)  # error, warning, info
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_gallery_splits_correct_and_misclassified(tmp_path):
    folder = tmp_path / "a1"
    result = make_result(folder)
    html = render_report(result, folder).read_text()
    wrong = sum(not r["correct"] for r in result.artifacts["gallery"])
    right = len(result.artifacts["gallery"]) - wrong
    assert wrong and right
    assert f"Misclassified ({wrong})" in html and f"Correct ({right})" in html


def test_report_with_only_metrics_renders(tmp_path):
    result = AuditResult(
        id="bare", model={"ref": "timm:test_resnet", "digest": "d", "arch": "test_resnet", "num_classes": 2},
        dataset={"ref": "builtin:digits", "digest": "e", "classes": ["a", "b"]},
        metrics={"val": {"n": 4, "accuracy": 0.75, "loss": 0.5, "ece": 0.1}})
    out = render_report(result, tmp_path)
    refs = _parse(out)
    assert refs.h2 == ["Gates and findings", "Identity", "Metrics per split"]
    assert "No findings." in out.read_text()
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
    assert "figure confusion-val" in html  # listed under Errors
    assert "Misclassified" in html  # the rest of the report still rendered


def test_large_audit_report_stays_small(tmp_path):
    """1,000 gallery images: HTML references files (no inlined data) and shows a capped gallery."""
    folder = tmp_path / "big"
    result = make_result(folder)
    _png(folder / "gallery/shared.png", 1)
    result.artifacts["gallery"] = [
        {"id": f"im{i:04d}", "label": "cat", "pred": "dog" if i % 3 else "cat", "correct": not i % 3,
         "confidence": 0.5, "image": "gallery/shared.png", "overlays": {"saliency": "gallery/shared.png"}}
        for i in range(1000)]
    html = render_report(result, folder).read_text()
    assert len(html.encode()) < 1_000_000
    assert "base64" not in html
    assert html.count('alt="image im') == 2 * GALLERY_LIMIT
    assert "Misclassified (666, showing 48)" in html


def test_history_rows_accepts_rows_and_columns():
    cols = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.2, 0.9]}
    rows = history_rows(cols)
    assert rows == [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.2}, {"epoch": 2, "train_loss": 0.5, "val_loss": 0.9}]
    assert history_rows({"rows": rows}) == rows
    assert history_rows(None) == []


def test_quality_and_strategies_render_the_engine_shapes(tmp_path):
    """Agreement is drawn as a method x method matrix and spray_clusters' classes become cluster rows."""
    folder = tmp_path / "a1"
    html = render_report(make_result(folder), folder).read_text()
    q = html[html.index('id="quality"'):html.index('id="gallery"')]
    assert "Method agreement" in q and "0.62" in q
    assert 'alt="deletion and insertion curves per method"' in q
    assert "per_image" not in q and "<td>faithfulness</td>" not in q and "<td>sanity</td>" not in q
    s = html[html.index('id="strategies"'):html.index('id="quality"')]
    assert "cluster" in s and 'title="img000"' in s and "class skipped" not in s


def test_figures_are_cached_by_their_data(tmp_path, monkeypatch):
    """A second report of the same data copies its figures; different data draws anew."""
    import imaudit.reports.render as render_mod

    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []
    real = render_mod.figs.confusion_png
    monkeypatch.setattr(render_mod.figs, "confusion_png", lambda *a, **k: calls.append("c") or real(*a, **k))
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
