"""Every registered method against models with known answers (a new method is tested by registering it)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from conftest import (
    FAST,
    MLP,
    SIZE,
    ConstantNet,
    FailingNet,
    LinearNet,
    QuadrantNet,
    SmallMemoryNet,
    make_images,
    quadrant_share,
)

from readme_examples import dropped_in, readme_example

from imaudit.audits.explain import (
    EXPLAINERS,
    Explanation,
    create_explainer,
    explain_method,
    list_methods,
    method_defaults,
    typical_samples,
)
from imaudit.errors import BadInputError

METHODS = list_methods()
IDS = ["img-a", "img-b", "img-c", "img-d"]


def explain(model, images, method, ids=IDS, **kw):
    targets = model(images).argmax(1)
    return create_explainer(method, model, seed=0, progress=False, **{**FAST.get(method, {}), **kw}).explain(
        images, targets, ids[: len(images)]
    )


@pytest.fixture(scope="module")
def quadrant_results() -> dict[str, Explanation]:
    model, images = QuadrantNet(), make_images(4)
    return {m: explain(model, images, m) for m in METHODS}


def test_registry_has_the_documented_methods():
    assert {"saliency", "ig", "gradcam", "occlusion", "lime", "shap", "shap-gradient"} <= set(METHODS)
    for m in METHODS:
        assert isinstance(method_defaults(m), dict) and typical_samples(m) >= 1
    assert typical_samples("saliency") > typical_samples("lime")  # cheap methods explain more images


def test_a_new_method_module_is_picked_up_by_registration(tmp_path):
    """The README's one-file method, dropped into audits/explain/methods: listed, built, right on known answers."""
    source = readme_example("audits/explain/methods/input_x_gradient.py")
    with dropped_in(EXPLAINERS, "imaudit.audits.explain.methods", "input_x_gradient.py", source, tmp_path):
        assert "input-x-gradient" in list_methods() and set(METHODS) < set(list_methods())
        assert method_defaults("input-x-gradient") == {"absolute": True}
        e = explain(QuadrantNet(), make_images(4), "input-x-gradient")
        assert e.failures == [] and e.maps.shape == (4, SIZE, SIZE) and e.channel_maps.shape == (4, 3, SIZE, SIZE)
        assert bool((quadrant_share(e.maps) > 0.99).all())  # the gradient is zero outside the quadrant
        assert np.abs(explain(ConstantNet(), make_images(2), "input-x-gradient").maps).max() < 1e-5
        # What the audit's explain stage calls: a timed record for audit.json.
        _, record = explain_method(QuadrantNet(), make_images(2), torch.tensor([0, 1]), ["a", "b"], "input-x-gradient",
                                   settings={"absolute": False})
        assert record.applicable and record.count == 2 and record.settings["absolute"] is False
    assert "input-x-gradient" not in list_methods()


def test_unknown_method_and_setting_are_bad_input():
    with pytest.raises(BadInputError, match="saliency"):
        create_explainer("nope", QuadrantNet())
    with pytest.raises(BadInputError, match="n_stepz"):
        create_explainer("ig", QuadrantNet(), n_stepz=3)
    with pytest.raises(BadInputError, match="gradcam.layer"):
        create_explainer("gradcam", QuadrantNet(), layer="nope").applicable()


@pytest.mark.parametrize("method", METHODS)
def test_shapes_dtype_finite_and_ids(method, quadrant_results):
    e = quadrant_results[method]
    assert e.maps.shape == (4, SIZE, SIZE) and e.maps.dtype == np.float32
    assert np.isfinite(e.maps).all()
    assert e.ids == IDS and e.failures == []
    assert np.abs(e.maps).sum() > 0
    if e.channel_maps is not None:
        assert e.channel_maps.shape == (4, 3, SIZE, SIZE) and e.channel_maps.dtype == np.float32


@pytest.mark.parametrize("method", METHODS)
def test_attribution_lands_in_the_quadrant_the_model_reads(method, quadrant_results):
    share = quadrant_share(quadrant_results[method].maps)
    assert float(share.mean()) > 0.5, share  # the quadrant is 0.25 of the area
    assert bool((share > 0.25).all()), share


@pytest.mark.parametrize("method", METHODS)
def test_model_that_ignores_its_input_gives_flat_maps(method):
    e = explain(ConstantNet(), make_images(2), method)
    assert e.failures == [] and len(e.ids) == 2
    assert np.isfinite(e.maps).all()
    assert np.ptp(e.maps, axis=(1, 2)).max() < 1e-5 and np.abs(e.maps).max() < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_one_failing_image_is_recorded_and_the_others_explained(method):
    images = make_images(4)
    images[2, 0, 0, 0] = 5000.0  # FailingNet raises on this marker
    model = FailingNet()
    targets = torch.tensor([0, 1, 2, 0])
    e = create_explainer(method, model, progress=False, **FAST.get(method, {})).explain(images, targets, IDS)
    assert e.ids == ["img-a", "img-b", "img-d"]
    assert [f["id"] for f in e.failures] == ["img-c"]
    assert "marked image" in e.failures[0]["error"]
    assert e.maps.shape == (3, SIZE, SIZE) and np.isfinite(e.maps).all()
    assert e.extras["targets"] == [0, 1, 0]


@pytest.mark.parametrize("method", METHODS)
def test_one_channel_models_work(method):
    model, images = QuadrantNet(channels=1), make_images(2, channels=1)
    e = explain(model, images, method, mean=[0.5], std=[0.25])
    assert e.maps.shape == (2, SIZE, SIZE) and e.failures == []
    assert float(quadrant_share(e.maps).mean()) > 0.5


@pytest.mark.parametrize("method", ["lime", "shap", "shap-gradient", "occlusion"])
def test_same_seed_same_maps(method):
    model, images = QuadrantNet(), make_images(2, seed=3)
    first, second = explain(model, images, method), explain(model, images, method)
    np.testing.assert_array_equal(first.maps, second.maps)


@pytest.mark.parametrize("method", METHODS)
def test_out_of_memory_backs_off_to_smaller_batches(method):
    images = make_images(4)
    targets = QuadrantNet()(images).argmax(1)
    # a 4-image background fits the memory limit; 16 occlusion windows keep the many small passes quick
    extra = {"shap-gradient": {"background_size": 4}, "occlusion": {"window": 8, "stride": 8}}
    settings = {**FAST.get(method, {}), **extra.get(method, {})}
    small = create_explainer(method, SmallMemoryNet(), batch_size=8, **settings).explain(images, targets, IDS)
    plain = create_explainer(method, QuadrantNet(), batch_size=8, **settings).explain(images, targets, IDS)
    assert small.failures == [] and small.ids == IDS
    np.testing.assert_allclose(small.maps, plain.maps, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_matches_closed_form_on_a_linear_model():
    torch.manual_seed(1)
    model, images = LinearNet(), make_images(3)
    targets = torch.tensor([0, 2, 1])
    e = create_explainer("ig", model, n_steps=8).explain(images, targets, ["a", "b", "c"])
    w = model.fc.weight.detach()[targets].reshape(3, 3, SIZE, SIZE)
    expected = (images - 0.0) * w  # baseline 0, gradient w constant along the path
    np.testing.assert_allclose(e.channel_maps, expected.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(e.maps, expected.sum(1).numpy(), atol=1e-4, rtol=1e-4)
    assert np.abs(e.extras["delta"]).max() < 1e-3
    assert e.extras["completeness"]["mean_relative_delta"] < 1e-3


def test_saliency_reductions_follow_their_definition():
    model, images = QuadrantNet(), make_images(2)
    e_max = explain(model, images, "saliency", reduce="max")
    e_sum = explain(model, images, "saliency", reduce="sum")
    np.testing.assert_allclose(e_max.maps, e_max.channel_maps.max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(e_sum.maps, np.abs(e_sum.channel_maps).sum(axis=1), rtol=1e-5)


def test_gradcam_does_not_apply_to_a_model_without_spatial_layers():
    explainer = create_explainer("gradcam", MLP(), input_shape=(3, SIZE, SIZE))
    assert "no spatial layer" in explainer.applicable()


def test_gradcam_on_a_vit_uses_the_token_grid():
    model = timm.create_model("test_vit", pretrained=False, num_classes=3, img_size=64)
    images = torch.randn(2, 3, 64, 64)
    explainer = create_explainer("gradcam", model, progress=False)
    e = explainer.explain(images, torch.tensor([0, 1]), ["a", "b"])
    assert e.failures == [] and e.maps.shape == (2, 64, 64)
    assert np.isfinite(e.maps).all() and (e.maps >= 0).all() and e.maps.max() > 0
    assert "grid" in e.extras["settings"]["layer_used"]
    # 4x4 patch grid upsampled: the map varies over the image, not one constant.
    assert np.ptp(e.maps[0]) > 0


def test_parameters_are_frozen_during_and_restored_after():
    model = QuadrantNet()
    model.train()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(any(p.requires_grad for p in m.parameters())))
    create_explainer("saliency", model).explain(make_images(1), torch.tensor([1]), ["a"])
    assert seen and not any(seen)
    assert all(p.requires_grad for p in model.parameters()) and model.training
