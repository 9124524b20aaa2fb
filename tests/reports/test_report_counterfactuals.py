"""The report's counterfactual section: every item's four images, its classes and the in-fill table."""

from __future__ import annotations

from reports_factory import HOSTILE, _png, make_result

from imaudit.reports.render import render_report


def test_counterfactual_section_shows_items_and_infill(tmp_path):
    result = make_result(tmp_path)
    kinds = ("original", "reconstruction", "counterfactual", "difference")
    for k in kinds:
        _png(tmp_path / "counterfactuals" / f"cf-a-{k}.png", seed=len(k))
    result.generative = {
        "generator": {"path": "/x", "dataset_digest": "d" * 64, "version": "v1", "losses_final": {"g_loss": 1.0}},
        "success_rate": 0.75,
        "mean_distance": 0.125,
        "items": [{
            "id": "img-a", "source": 0, "target": 2, "success": True, "distance": 0.125, "selected_as": "misclassified",
            "path_confidence": [0.1, 0.4, 0.9],
            "pngs": {k: f"counterfactuals/cf-a-{k}.png" for k in kinds},
        }],
        "infill": {"baselines": {"blur": {"deletion_auc": 0.31, "insertion_auc": 0.62, "deletion_gain": 0.4, "insertion_gain": 0.2}},
                   "note": "lower deletion is better"},
    }
    html = render_report(result, tmp_path).read_text()
    section = html[html.index('id="generative"'):]
    for k in kinds:
        assert f'src="counterfactuals/cf-a-{k}.png"' in section
    assert "0.75" in section and "0.125" in section and "0.310" in section and "img-a" in section
    # The target class is the hostile name: shown as text, never as markup.
    assert HOSTILE not in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section


def test_skipped_counterfactuals_say_how_to_enable(tmp_path):
    result = make_result(tmp_path)
    result.generative = {"skipped": "no generator for this dataset; run: imaudit generative train --dataset builtin:digits"}
    html = render_report(result, tmp_path).read_text()
    assert "imaudit generative train --dataset builtin:digits" in html
