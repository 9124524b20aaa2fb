"""The runner the audit flow calls: sample choice, timing records, npz round trip, PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import MLP, SIZE, FailingNet, QuadrantNet, make_images
from PIL import Image

from imaudit.audits.explain import (
    denormalize,
    explain_method,
    layer_views,
    load_maps,
    render_overlays,
    save_maps,
    select_sample,
)
from imaudit.audits.result import MethodRecord
from imaudit.errors import BadInputError


def predictions(n_per_class: int = 6, classes: int = 3, wrong_every: int = 3) -> pd.DataFrame:
    rows = []
    for c in range(classes):
        for k in range(n_per_class):
            for split in ("train", "val"):
                correct = k % wrong_every != 0
                rows.append({"id": f"{split}/{c}/{k}", "split": split, "label": f"c{c}", "y": c,
                             "pred": c if correct else (c + 1) % classes, "correct": correct})
    return pd.DataFrame(rows)


def test_select_sample_balances_outcomes_and_classes_deterministically():
    pred = predictions()
    picked = select_sample(pred, 6, seed=1)
    assert len(picked) == 6 and (picked["split"] == "val").all()
    assert picked["id"].is_unique
    assert (~picked["correct"]).sum() == 3  # 6 misclassified val rows exist: half of the sample
    assert set(picked[~picked["correct"]]["y"]) == {0, 1, 2}
    assert set(picked[picked["correct"]]["y"]) == {0, 1, 2}
    pd.testing.assert_frame_equal(picked, select_sample(pred, 6, seed=1))


def test_select_sample_fills_from_the_other_outcome_and_caps_at_the_split():
    pred = predictions(wrong_every=100)  # only k == 0 is wrong: 3 misclassified val rows
    picked = select_sample(pred, 10)
    assert (~picked["correct"]).sum() == 3 and len(picked) == 10
    assert len(select_sample(pred, 1000)) == (pred["split"] == "val").sum()
    assert select_sample(pred, 5, split="test").empty
    with pytest.raises(BadInputError, match="correct"):
        select_sample(pred.drop(columns="correct"), 3)


def test_explain_method_records_count_time_rate_and_failures():
    images = make_images(4)
    images[1, 0, 0, 0] = 5000.0
    expl, record = explain_method(FailingNet(), images, torch.tensor([0, 1, 2, 0]), ["a", "b", "c", "d"], "ig",
                                  settings={"n_steps": 8})
    assert isinstance(record, MethodRecord) and record.applicable
    assert record.count == 3 == len(expl.ids) and record.seconds > 0
    assert record.per_image_rate == pytest.approx(3 / record.seconds, rel=1e-2)
    assert [f["id"] for f in record.failures] == ["b"]
    assert record.settings["n_steps"] == 8 and record.settings["method"] == "gausslegendre"
    assert "completeness" in record.details
    record.model_dump_json()  # JSON-safe


def test_explain_method_reports_a_method_that_does_not_apply():
    expl, record = explain_method(MLP(), make_images(2), torch.tensor([0, 1]), ["a", "b"], "gradcam")
    assert not record.applicable and "spatial" in record.reason
    assert expl.maps.shape == (0, SIZE, SIZE) and record.count == 0


def test_explain_method_rejects_unknown_methods():
    with pytest.raises(BadInputError, match=r"unknown explanation method 'magic'.*known: .*saliency"):
        explain_method(QuadrantNet(), make_images(1), torch.tensor([0]), ["a"], "magic")


def test_save_and_load_maps_round_trip(tmp_path):
    images = make_images(3)
    images[0, 0, 0, 0] = 5000.0  # first image fails: values given for the request are re-aligned
    expl, _ = explain_method(FailingNet(), images, torch.tensor([2, 1, 0]), ["a", "b", "c"], "saliency")
    path = tmp_path / "saliency.npz"
    save_maps(expl, path, targets=[2, 1, 0], labels=["x", "y", "z"], preds={"b": 1, "c": 2})
    got = load_maps(path)
    assert got["ids"] == ["b", "c"]
    np.testing.assert_array_equal(got["maps"], expl.maps)
    np.testing.assert_array_equal(got["targets"], [1, 0])
    assert list(got["labels"]) == ["y", "z"] and list(got["preds"]) == [1, 2]
    np.testing.assert_allclose(got["channel_importance"], np.abs(expl.channel_maps).sum(axis=(2, 3)), rtol=1e-6)
    assert got["channel_importance"].shape == (2, 3)


def test_denormalize_inverts_normalisation_and_handles_one_channel():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pixels = torch.randint(0, 256, (2, 3, 8, 8)).float() / 255
    normed = (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    out = denormalize(normed, mean, std)
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(out, (pixels * 255).round().byte().permute(0, 2, 3, 1).numpy())
    gray = denormalize(torch.zeros(1, 1, 4, 4), [0.5], [0.5])
    assert gray.shape == (1, 4, 4, 3) and (gray == 128).all()


def test_render_overlays_writes_small_pngs(tmp_path):
    pixels = denormalize(make_images(2), None, None)
    maps = np.zeros((2, SIZE, SIZE), np.float32)
    maps[0, :8, :8] = 1.0
    files = render_overlays(pixels, maps, ["cls/a.png", "cls/b.png"], tmp_path, "ig", size=64)
    assert set(files) == {"cls/a.png", "cls/b.png"} and len(set(files.values())) == 2
    for rel in files.values():
        assert "/" not in rel and (tmp_path / rel).stat().st_size < 20_000
        assert Image.open(tmp_path / rel).size == (64, 64)
    hot = np.asarray(Image.open(tmp_path / files["cls/a.png"]).convert("RGB"), dtype=float)
    # the attributed corner is coloured differently from the rest of the overlay
    assert abs(hot[:12, :12].mean() - hot[40:, 40:].mean()) > 10


def test_layer_views_draw_conv_stages_and_first_layer_filters(tmp_path):
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    views = layer_views(model, torch.randn(3, 64, 64), tmp_path, max_channels=8)
    assert 1 <= len(views["activations"]) <= 3
    for v in views["activations"]:
        assert (tmp_path / v["png"]).is_file() and len(v["shape"]) == 3
        assert v["shape"][1] <= 64 and v["shape"][2] <= 64
        model.get_submodule(v["layer"])  # names real modules
    first = views["filters"]
    assert first["shape"][1] == 3 and (tmp_path / first["png"]).stat().st_size < 50_000
    with pytest.raises(BadInputError, match="nope"):
        layer_views(model, torch.randn(3, 64, 64), tmp_path, layers=["nope"])


def test_layer_views_on_a_one_channel_model(tmp_path):
    views = layer_views(QuadrantNet(channels=1), make_images(1, channels=1)[0], tmp_path, layers=["conv"])
    assert views["activations"][0]["shape"] == [8, SIZE, SIZE]
    assert views["filters"]["shape"] == [8, 1, 3, 3]


def test_occlusion_with_a_callable_baseline_equal_to_the_input_gives_zero_maps():
    """Replacement content identical to the image changes nothing: occlusion must attribute nothing."""
    import torch

    from imaudit.audits.explain import create_explainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    x = torch.randn(3, 3, 16, 16)
    ex = create_explainer("occlusion", model, baseline=lambda inp: inp.clone())
    e = ex.explain(x, torch.tensor([0, 1, 0]), ["a", "b", "c"])
    assert e.maps.shape == (3, 16, 16) and abs(e.maps).max() < 1e-6
    zero = create_explainer("occlusion", model).explain(x, torch.tensor([0, 1, 0]), ["a", "b", "c"])
    assert abs(zero.maps).max() > 1e-4
