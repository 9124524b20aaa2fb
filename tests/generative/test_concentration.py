"""Where counterfactual changes concentrate, and how that becomes evidence for (or a finding beside) shortcuts."""

from __future__ import annotations

import numpy as np
import pytest

from imaudit.audits.generative.concentration import box_mass, concentrate, find_boxes, normalised
from imaudit.audits.generative.evidence import finding_box, link_counterfactuals
from imaudit.audits.result import Finding
from imaudit.audits.spec import CounterfactualThresholds

SIZE = 32
PATCH = [1, 1, 5, 5]


def _changes(n: int, *, patch_share: float, seed: int = 0) -> dict[str, np.ndarray]:
    """n change maps putting ``patch_share`` of their change evenly in PATCH and the rest on a random blob."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        m = np.zeros((SIZE, SIZE))
        x0, y0, x1, y1 = PATCH
        m[y0:y1, x0:x1] = patch_share / 16
        cx, cy = rng.integers(10, 26, 2)
        m[cy - 3:cy + 3, cx - 3:cx + 3] += (1 - patch_share) / 36
        out[f"i{i}"] = m
    return out


def test_box_mass_counts_fractional_cells():
    share = normalised(np.ones((4, 4)))
    assert box_mass(share, [0, 0, 2, 2]) == pytest.approx(0.25)
    assert box_mass(share, [0, 0, 16, 16], image_size=[32, 32]) == pytest.approx(0.25)  # a coarse grid of a 32 px image
    assert box_mass(share, [0, 0, 12, 4], image_size=[32, 32]) == pytest.approx(12 * 4 / 1024)  # cuts through cells


def test_boxes_find_the_patch_and_how_consistent_it_is():
    ch = _changes(6, patch_share=0.7)
    targets = {k: ("square" if i % 2 else "circle") for i, k in enumerate(ch)}
    conc = concentrate(ch, targets)
    assert set(conc["per_class"]) == {"circle", "square"}
    top = conc["overall"]["boxes"][0]
    assert top["box"] == PATCH and top["mass"] == pytest.approx(0.7) and top["consistency"] == 1.0
    assert top["area"] == pytest.approx(16 / 1024) and top["lift"] == pytest.approx(0.7 * 1024 / 16, rel=0.01)
    grid = np.array(conc["overall"]["grid"])
    assert grid.shape == (32, 32) and grid.sum() == pytest.approx(1.0, abs=1e-4)  # rounded to 6 digits per cell
    assert "map" in conc["overall"]  # full resolution stays for the figure (the section drops it)


def test_object_share_uses_the_masks():
    ch = _changes(2, patch_share=0.0)
    masks = {}
    for k, m in ch.items():
        masks[k] = (m > 0).astype(float)  # the blob is "the object"
    conc = concentrate(ch, {k: "circle" for k in ch}, masks)
    assert conc["overall"]["object_share"] == pytest.approx(1.0)
    assert conc["overall"]["object_grow"] == 2  # 1/16 of 32 px
    # The 6 x 6 blob and every pixel within city-block distance 2 of it: 36 + 4 * 12 + 4 corners.
    assert conc["overall"]["object_area"] == pytest.approx(88 / 1024, abs=1e-4)


def _finding(box=None, region=None) -> Finding:
    ev = {"class": "circle", "class_index": 0, "image_size": [SIZE, SIZE], "confirmed": True}
    if box is not None:
        ev["box"] = box
    if region is not None:
        ev["region"] = region
    return Finding(code="shortcut", severity="error", message="Shortcut in the top-left corner.", evidence=ev)


def _section(patch_share: float, n: int = 6) -> dict:
    ch = _changes(n, patch_share=patch_share)
    conc = concentrate(ch, {k: "square" for k in ch})
    for g in [*conc["per_class"].values(), conc["overall"]]:
        g.pop("map")
    return {"concentration": conc}


def test_a_shortcut_finding_whose_box_holds_the_change_cites_it():
    t = CounterfactualThresholds()
    other = Finding(code="miscalibration", severity="warning", message="m", evidence={})
    out = link_counterfactuals([other, _finding(box=PATCH)], _section(0.7), t)
    assert out[0] == other
    cited = out[1]
    cf = cited.evidence["counterfactual"]
    assert cf["supports"] is True and cf["groups"]["towards square"]["mass"] == pytest.approx(0.7, abs=0.01)
    assert "Counterfactuals agree: 70%" in cited.message and cited.message.startswith("Shortcut in the top-left corner.")
    assert cited.evidence["box"] == PATCH  # the shortcut's own evidence is kept
    assert [f.code for f in out] == ["miscalibration", "shortcut"]  # named by the shortcut: no hotspot finding


def test_a_shortcut_box_elsewhere_records_no_support_and_the_hotspot_gets_its_own_finding():
    out = link_counterfactuals([_finding(box=[24, 24, 32, 32])], _section(0.7), CounterfactualThresholds())
    assert out[0].evidence["counterfactual"]["supports"] is False
    assert "Counterfactuals agree" not in out[0].message
    hot = [f for f in out if f.code == "counterfactual-hotspot"]
    assert len(hot) == 1 and hot[0].severity == "info"
    assert hot[0].evidence["box"] == PATCH and hot[0].evidence["image_size"] == [SIZE, SIZE]
    assert hot[0].evidence["classes"] == ["square"] and "no other check named" in hot[0].message


def test_an_off_object_shortcut_neither_cites_nor_hides_a_hotspot():
    # The shortcut search's off-object candidates name the whole background (box = the whole image).
    f = _finding(box=[0, 0, SIZE, SIZE])
    f.evidence["kind"] = "off-object"
    out = link_counterfactuals([f], _section(0.7), CounterfactualThresholds())
    assert out[0] == f and "counterfactual" not in out[0].evidence
    hot = [g for g in out if g.code == "counterfactual-hotspot"]
    assert len(hot) == 1 and hot[0].evidence["box"] == PATCH


def test_a_region_named_shortcut_is_matched_by_its_region():
    f = _finding(region="top-left")
    assert finding_box(f, [SIZE, SIZE]) == ([0.0, 0.0, 8.0, 8.0], [SIZE, SIZE])
    out = link_counterfactuals([f], _section(0.7), CounterfactualThresholds())
    assert out[0].evidence["counterfactual"]["supports"] is True and len(out) == 1


def test_diffuse_or_too_few_changes_raise_nothing():
    t = CounterfactualThresholds()
    assert link_counterfactuals([], _section(0.1), t) == []  # mostly on the moving blob: no fixed region
    assert link_counterfactuals([], _section(0.9, n=2), t) == []  # fewer images than min_images
    assert link_counterfactuals([], {"skipped": "no generator"}, t) == []
