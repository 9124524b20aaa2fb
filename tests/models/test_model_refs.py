"""timm: refs, ref parsing, digests, input-size precedence and the data config / transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imaudit.errors import BadInputError, RefError
from imaudit.models import Registry, load_model, model_digest, parse_ref


def test_timm_ref_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_model("timm:test_resnet?pretrained=false", num_classes=4)
    after = torch.rand(3)
    b = load_model("timm:test_resnet?pretrained=false", num_classes=4)
    assert torch.equal(expected, after)  # loading consumed no global random numbers
    assert a.digest == b.digest == model_digest(b.module)
    assert a.num_classes == 4 and a.arch == "test_resnet" and a.classes is None
    assert not a.module.training and a.params == sum(p.numel() for p in b.module.parameters())
    assert load_model("timm:test_resnet?pretrained=false", num_classes=5).digest != a.digest


def test_digest_changes_when_one_weight_changes():
    loaded = load_model("timm:test_resnet?pretrained=false", num_classes=3)
    before = model_digest(loaded.module)
    with torch.no_grad():
        loaded.module.fc.bias[0] += 1e-3
    assert model_digest(loaded.module) != before


def test_classes_set_num_classes():
    loaded = load_model("timm:test_resnet?pretrained=false", classes=["cat", "dog"])
    assert loaded.num_classes == 2 and loaded.classes == ["cat", "dog"]
    with pytest.raises(BadInputError, match="classes"):
        load_model("timm:test_resnet?pretrained=false", num_classes=3, classes=["cat", "dog"])


def test_unknown_timm_name_suggests_close_names():
    with pytest.raises(RefError, match="test_resnt.*test_resnet"):
        load_model("timm:test_resnt?pretrained=false")


@pytest.mark.parametrize("ref, hint", [("nothing:here", "must look like"), ("test_resnet", "timm:test_resnet"),
                                       ("", "must look like"), ("timm:", "must look like")])
def test_bad_refs(ref, hint):
    with pytest.raises(RefError, match=hint):
        parse_ref(ref)


def test_arch_conflicting_with_timm_ref():
    with pytest.raises(BadInputError, match="conflicts"):
        load_model("timm:test_resnet?pretrained=false", arch="test_vit")


def test_input_size_default_and_override_keep_normalisation():
    default = load_model("timm:test_resnet?pretrained=false", num_classes=3)
    resized = load_model("timm:test_resnet?pretrained=false", num_classes=3, input_size=48)
    assert default.data_config["input_size"] == (3, 160, 160)  # timm's pretrained_cfg for test_resnet
    assert resized.data_config["input_size"] == (3, 48, 48)
    for key in ("mean", "std", "interpolation", "crop_pct"):
        assert resized.data_config[key] == default.data_config[key]


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit", "test_efficientnet"])
def test_transform_produces_overridden_size_that_the_model_accepts(arch):
    loaded = load_model(f"timm:{arch}?pretrained=false", num_classes=3, input_size=32)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8))
    x = loaded.transform()(image)
    assert tuple(x.shape) == (3, 32, 32)
    assert tuple(loaded.transform(is_training=True)(image).shape) == (3, 32, 32)
    with torch.no_grad():
        assert loaded.module(x[None]).shape == (1, 3)


def test_input_size_precedence_file_and_release(make_checkpoint, tmp_path):
    path, _, _ = make_checkpoint(input_size=32)
    assert load_model(f"file:{path}").data_config["input_size"] == (3, 32, 32)  # checkpoint metadata
    assert load_model(f"file:{path}", input_size=40).data_config["input_size"] == (3, 40, 40)  # explicit wins
    unsized, _, _ = make_checkpoint(name="unsized.pt")
    assert load_model(f"file:{unsized}").data_config["input_size"] == (3, 160, 160)  # timm default

    Registry().release("sized", "1", arch="test_resnet", checkpoint=path, dataset=None, input_size=48)
    assert load_model("release:sized@1").data_config["input_size"] == (3, 48, 48)  # manifest beats checkpoint
    assert load_model("release:sized@1", input_size=56).data_config["input_size"] == (3, 56, 56)
