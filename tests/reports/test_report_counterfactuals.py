"""The report's counterfactual section: honest counts, aligned images with their scales, change maps, in-fill."""

from __future__ import annotations

import re

from reports_factory import HOSTILE, _png, make_result

from imaudit.reports.render import render_report

KINDS = ("original", "reconstruction", "counterfactual", "change", "colour")


def _item(name: str, outcome: str, kinds=KINDS, **extra) -> dict:
    return {"id": f"img-{name}", "outcome": outcome, "pred_name": "cat", "target": 2, "target_name": HOSTILE,
            "selected_as": "near-boundary", "margin": 0.12, "recon_error": 0.05, "prediction_survives": True,
            "pngs": {k: f"counterfactuals/cf-{name}-{k}.png" for k in kinds}, **extra}


def test_counterfactual_section_shows_counts_aligned_images_scales_and_maps(tmp_path):
    result = make_result(tmp_path)
    for name, kinds in (("a", KINDS), ("b", KINDS[:2])):
        for k in kinds:
            _png(tmp_path / "counterfactuals" / f"cf-{name}-{k}.png", seed=len(k))
    for extra in ("legend", "map-all", "samples"):
        _png(tmp_path / "counterfactuals" / f"{extra}.png", seed=3)
    result.generative = {
        "generator": {"path": "/x", "dataset_digest": "d" * 64, "version": "v1", "losses_final": {"g_loss": 1.0},
                      "classes": ["cat", "dog", HOSTILE]},
        "samples_png": "counterfactuals/samples.png",
        "settings": {"confidence": 0.9, "steps": 300},
        "counts": {"success": 1, "not-reached": 0, "zero-step": 1, "reconstruction-flipped": 0, "unchanged-target": 0},
        "searched": 1, "success_rate": 1.0, "mean_distance": 0.125, "mean_recon_error": 0.05,
        "legend_png": "counterfactuals/legend.png",
        "items": [
            _item("a", "success", counterfactual_confidence=0.93, distance=0.125, steps=40,
                  path_steps=[0, 5, 10, 15, 20, 25, 30, 35, 40],
                  path_confidence=[0.1, 0.3, 0.5, 0.7, 0.95, 0.96, 0.95, 0.94, 0.93]),
            _item("b", "zero-step", KINDS[:2], reason="the reconstruction is already dog at 0.97"),
        ],
        "concentration": {"overall": {"images": 1, "png": "counterfactuals/map-all.png", "object_share": 0.1,
                                      "object_area": 0.2,
                                      "boxes": [{"box": [1, 1, 5, 5], "mass": 0.7, "area": 0.0156, "lift": 44.8,
                                                 "consistency": 1.0}]},
                          "per_class": {}, "rule": {"threshold": 0.2, "hot_lift": 3.0, "object_grow": 1}},
        "infill": {"maps": "saliency", "note": "AUCs compare within a fill, not across fills.",
                   "fills": {"blur": {"deletion_auc": 0.31, "random_deletion_auc": 0.52, "deletion_gain": 0.4,
                                      "start": 0.9, "all_replaced": 0.2}}},
    }
    html = render_report(result, tmp_path).read_text()
    section = html[html.index('id="generative"'):]
    searched = section[:section.index("Left out before the search")]
    for k in KINDS:  # all five images of the searched item, at one size
        assert re.search(rf'<img class="cf-img" src="counterfactuals/cf-a-{k}.png"[^>]*width="96" height="96"', searched)
    left = section[section.index("Left out before the search"):]
    assert 'src="counterfactuals/cf-b-original.png"' in left and "cf-b-counterfactual" not in section
    assert "already dog at 0.97" in left  # why it was left out
    assert "counterfactuals/legend.png" in section and "fixed scale" in section
    assert "counterfactuals/map-all.png" in section and "box [1, 1, 5, 5]: 70% of the change" in section
    assert "all targets (1 image)" in section and "white box holds the most change" in section
    # The search path by step: its first point and the kept counterfactual's (the last), five points in all.
    path = re.search(r"<td class=\"small\">(<span class=\"nowrap\">.*?)</td>", searched).group(1)
    assert re.findall(r">(\d+): ([\d.]+)<", path) == [("0", "0.10"), ("10", "0.50"), ("20", "0.95"), ("30", "0.95"),
                                                     ("40", "0.93")]
    # Which generator sample row is which class.
    assert 'src="counterfactuals/samples.png"' in section
    assert "top to bottom: cat, dog, &lt;script&gt;" in section
    # Counts: the zero-step item is reported apart, the success rate is over searched images only.
    assert "Searched <strong>1</strong>" in section and "1 whose reconstruction already is the target" in section
    assert "0.31" in section and "0.52" in section and "within a fill" in section
    # The target class is the hostile name: shown as text, never as markup.
    assert HOSTILE not in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section


def test_skipped_counterfactuals_say_why_and_how_to_enable(tmp_path):
    result = make_result(tmp_path)
    result.generative = {"skipped": "no generator for this dataset; run: imaudit generative train --dataset builtin:digits"}
    html = render_report(result, tmp_path).read_text()
    assert "Not run: no generator for this dataset; run: imaudit generative train --dataset builtin:digits" in html
