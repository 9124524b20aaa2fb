"""Confirmation by intervention on models whose answer is known: one reads a patch, one the centre, one the background."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from imaudit.audits.shortcuts import confirm_candidates, mirror_box, wilson
from imaudit.audits.shortcuts.confirm import ConfirmSettings

SIZE, PATCH = 16, (1, 1, 5, 5)


class RegionModel(nn.Module):
    """Logit k = 10 x (mean of channel k over a region - 0.5); counts its forward calls and batch sizes."""

    def __init__(self, region: str) -> None:
        super().__init__()
        self.region = region
        self.anchor = nn.Parameter(torch.zeros(1))
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        if self.region == "patch":
            x0, y0, x1, y1 = PATCH
            part = x[:, :, y0:y1, x0:x1].mean(dim=(2, 3))
        elif self.region == "centre":
            part = x[:, :, 6:10, 6:10].mean(dim=(2, 3))
        else:  # the border ring: where the background is
            ring = torch.ones(SIZE, SIZE, dtype=torch.bool)
            ring[3:-3, 3:-3] = False
            part = x[:, :, ring].mean(dim=2)
        return 10 * (part - 0.5) + self.anchor


def _images(n_per_class: int = 10, background: bool = False) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Class k: the patch (or the background ring) and the centre coloured in channel k; grey noise elsewhere."""
    g = torch.Generator().manual_seed(0)
    y = np.repeat(np.arange(3), n_per_class)
    x = torch.rand(len(y), 3, SIZE, SIZE, generator=g) * 0.2 + 0.3
    masks = np.zeros((len(y), SIZE, SIZE), dtype=bool)
    masks[:, 5:11, 5:11] = True
    for i, c in enumerate(y):
        x[i, c, 6:10, 6:10] = 1.0
        if background:
            x[i, c][torch.as_tensor(~masks[i])] = 1.0
        else:
            x0, y0, x1, y1 = PATCH
            x[i, c, y0:y1, x0:x1] = 1.0
    return x, y, masks


def _cand(c: int, box=PATCH, kind: str = "box") -> dict:
    return {"class": "abc"[c], "class_index": c, "kind": kind, "box": list(box), "methods": ["m"]}


def test_a_patch_the_model_reads_is_confirmed_with_its_numbers():
    x, y, _ = _images()
    model = RegionModel("patch")
    out = confirm_candidates(model, x, y, [_cand(1), _cand(2)], fill="zero", batch_size=16)
    for c in out:
        assert c["confirmed"] is True, c
        cover, paste = c["intervention"]["cover"], c["intervention"]["paste"]
        assert cover["n"] == 10 and cover["accuracy_before"] == 1.0 and cover["accuracy_after"] == 0.0
        assert cover["control_accuracy_after"] == 1.0 and cover["control_box"] == list(mirror_box(PATCH, (SIZE, SIZE)))
        assert cover["confidence_after"] < cover["confidence_before"]
        assert paste["n"] == 20 and paste["flip_rate"] == 1.0 and paste["control_flip_rate"] == 0.0
        assert c["intervention"]["fill"] == "zero" and c["image_size"] == [SIZE, SIZE]


def test_the_same_box_on_a_model_that_reads_the_centre_is_not_confirmed():
    x, y, _ = _images()
    out = confirm_candidates(RegionModel("centre"), x, y, [_cand(1)], fill="zero")
    c = out[0]
    assert c["confirmed"] is False
    assert c["intervention"]["cover"]["accuracy_after"] == 1.0 and c["intervention"]["paste"]["flip_rate"] == 0.0
    assert "covering drops accuracy by 0.00" in c["not_confirmed_because"]


def test_a_background_the_model_reads_is_confirmed_with_masks_and_untestable_without():
    x, y, masks = _images(background=True)
    cand = _cand(1, (0, 0, SIZE, SIZE), kind="off-object")
    out = confirm_candidates(RegionModel("background"), x, y, [cand], masks=masks, fill="zero")
    c = out[0]
    assert c["confirmed"] is True and c["intervention"]["paste"]["flip_rate"] == 1.0
    assert "control_accuracy_after" not in c["intervention"]["cover"]  # no mirrored box for the background
    assert c["area"] == pytest.approx(1 - 36 / 256, abs=1e-3)
    centre = confirm_candidates(RegionModel("centre"), x, y, [cand], masks=masks, fill="zero")[0]
    assert centre["confirmed"] is False  # covering the background leaves the object the model reads
    untestable = confirm_candidates(RegionModel("background"), x, y, [cand], fill="zero")[0]
    assert untestable["confirmed"] is False and "masks" in untestable["not_confirmed_because"]


def test_interventions_are_batched_across_candidates():
    x, y, _ = _images()
    model = RegionModel("patch")
    confirm_candidates(model, x, y, [_cand(0), _cand(1), _cand(2)], fill="zero", batch_size=32)
    # one pass over the images (30), then cover + control (10 + 10) and paste + control (20 + 20) per candidate
    total = 3 * (10 + 10 + 20 + 20)
    assert model.calls[0] == 30 and sum(model.calls[1:]) == total
    assert len(model.calls) - 1 == math.ceil(total / 32) and max(model.calls[1:]) == 32


def test_thresholds_and_too_few_images():
    x, y, _ = _images(n_per_class=3)
    strict = ConfirmSettings(min_images=5)
    c = confirm_candidates(RegionModel("patch"), x, y, [_cand(1)], fill="zero", settings=strict)[0]
    assert c["confirmed"] is False and "fewer than 5 images" in c["not_confirmed_because"]
    assert wilson(10, 10)[0] > 0.69 and wilson(0, 10)[1] < 0.31 and wilson(0, 0) is None


def test_check_shortcuts_searches_confirms_and_skips_a_blank_box():
    from imaudit.audits.shortcuts import SearchSettings, check_shortcuts

    x, y, masks = _images()
    x[:, :, 12:16, 0:4] = 0.2  # a blank strip, the same in every image
    rng = np.random.default_rng(0)
    maps = rng.random((len(y), SIZE, SIZE)).astype(np.float32) * 0.1
    for i, c in enumerate(y):
        if c == 0:
            maps[i, 12:16, 0:4] += 1.0  # class a's maps look at the blank strip
        else:
            maps[i, 1:5, 1:5] += 1.0  # b and c look at the patch
    out = check_shortcuts({"saliency": maps}, {"saliency": y}, ["a", "b", "c"], model=RegionModel("patch"),
                          images=x, labels=y, masks=masks, fill="zero", search=SearchSettings(grid=8),
                          native_by_method={"saliency": None})
    tested = {(c["class"], c["kind"]): c["confirmed"] for c in out["candidates"]}
    assert tested == {("b", "box"): True, ("c", "box"): True}
    # The hot cells' box, and the box tested on the model: one 2 px cell more on every side.
    for c in out["candidates"]:
        x0, y0, x1, y1 = c["search_box"]
        assert c["box"] == [max(0, x0 - 2), max(0, y0 - 2), min(SIZE, x1 + 2), min(SIZE, y1 + 2)]
    assert [(n["class"], n["box"]) for n in out["not_tested"]] == [("a", [0, 12, 4, 16])]
    # the background of class a (no confirmed place) was tested on the model too, and did not hold up
    assert [(t["class"], t["confirmed"]) for t in out["background_tests"]] == [("a", False)]
    assert out["search"]["saliency"]["classes"] == ["a", "b", "c"]


def test_a_cue_found_by_its_centre_alone_is_tested_over_its_whole_area():
    """Maps hot only at the patch's central 2x2 pixels: covering or pasting those alone leaves the rest of the
    4x4 patch to decide the class (the model reads its mean), so the tested box is grown by one search cell."""
    from imaudit.audits.shortcuts import SearchSettings, check_shortcuts

    x, y, masks = _images()
    maps = np.random.default_rng(0).random((len(y), SIZE, SIZE)).astype(np.float32) * 0.1
    maps[:, 2:4, 2:4] += 1.0
    centre = confirm_candidates(RegionModel("patch"), x, y, [_cand(1, (2, 2, 4, 4))], fill="zero")[0]
    assert centre["confirmed"] is False and centre["intervention"]["cover"]["accuracy_after"] == 1.0
    out = check_shortcuts({"saliency": maps}, {"saliency": y}, ["a", "b", "c"], model=RegionModel("patch"),
                          images=x, labels=y, masks=masks, fill="zero", search=SearchSettings(grid=8),
                          native_by_method={"saliency": None})
    boxes = [c for c in out["candidates"] if c["kind"] == "box"]
    assert [c["class"] for c in boxes] == ["a", "b", "c"]
    # (Class a is left out below: an all-zero patch makes every logit equal, and ties go to class index 0.)
    for c in boxes[1:]:
        assert c["search_box"] == [2, 2, 4, 4] and c["box"] == [0, 0, 6, 6] and c["confirmed"] is True, c
        assert c["intervention"]["cover"]["accuracy_after"] == 0.0 and c["intervention"]["paste"]["flip_rate"] == 1.0
