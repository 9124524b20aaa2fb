"""The generator learns exactly the images the model sees: its timm eval transform, without normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import timm.data
import torch
from PIL import Image
from torch.nn import functional as F

from imaudit.audits.generative import InputSpace
from imaudit.audits.generative.training import load_space_images
from imaudit.errors import BadInputError

# An ImageNet-style config: bicubic resize to 37 (32 / 0.875), centre crop 32, ImageNet normalisation.
CONFIG = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center",
          "mean": timm.data.IMAGENET_DEFAULT_MEAN, "std": timm.data.IMAGENET_DEFAULT_STD}


def _patched(size: int = 48, seed: int = 0) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A noisy grey image with a red 6 x 6 patch near the top-left corner."""
    rng = np.random.default_rng(seed)
    a = rng.integers(60, 120, (size, size, 3)).astype(np.uint8)
    box = (6, 6, 12, 12)
    a[box[1]:box[3], box[0]:box[2]] = (255, 0, 0)
    return Image.fromarray(a), box


def _red(x: torch.Tensor) -> torch.Tensor:
    """Where an image (3,H,W) is strongly red."""
    return (x[0] - x[1:].max(0).values) > 0.5


def test_pixels_are_the_model_input_denormalised():
    space = InputSpace.from_data_config(CONFIG)
    img, _ = _patched()
    model_input = timm.data.create_transform(**CONFIG, is_training=False)(img)
    pixels = space.pixel_transform()(img)
    assert torch.allclose(space.normalize(pixels[None])[0], model_input, atol=1e-5)
    assert torch.allclose(space.to_pixels(model_input[None])[0], pixels, atol=1e-5)
    assert space.geometry() == {"input_size": [32, 32], "interpolation": "bicubic", "crop_pct": 0.875,
                                "crop_mode": "center"}


def test_a_planted_patch_lands_on_the_same_pixels_as_in_the_model_input(tmp_path):
    """The generator's training images, and so its reconstructions, line up with what the model sees."""
    from imaudit.audits.data import load_dataset

    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            img, box = _patched(seed=len(split) + len(cls))
            img.save(tmp_path / split / cls / "0.png")
    bundle = load_dataset(f"folder:{tmp_path}", progress=False)
    space = InputSpace.from_data_config(CONFIG)
    images, labels = load_space_images(bundle, space, 32, progress=False)
    model_view = timm.data.create_transform(**CONFIG, is_training=False)
    for i, row in bundle.split("train").reset_index(drop=True).iterrows():
        seen = space.to_pixels(model_view(Image.open(row["path"]).convert("RGB"))[None])[0]
        assert torch.allclose(images[i], seen, atol=1e-5)
        assert torch.equal(_red(images[i]), _red(seen)) and _red(seen).any()
    # The patch moved: a plain resize of the whole image (the old training input) puts it elsewhere.
    plain = F.interpolate(torch.from_numpy(np.array(_patched(seed=6)[0])).permute(2, 0, 1)[None].float() / 255,
                          size=32, mode="bilinear", antialias=True)[0]
    assert not torch.equal(_red(plain), _red(images[0]))
    # A smaller generator sees the same field of view, resized as a whole.
    small, _ = load_space_images(bundle, space, 16, progress=False)
    assert small.shape[-2:] == (16, 16)
    assert torch.allclose(small, F.interpolate(images, size=16, mode="bilinear", antialias=True).clamp(0, 1), atol=1e-5)


def test_generator_size_defaults_and_bad_configs():
    assert InputSpace(height=32, width=32).default_generator_size() == 32
    assert InputSpace(height=224, width=224).default_generator_size() == 64
    assert InputSpace(height=48, width=48).default_generator_size() == 32
    with pytest.raises(BadInputError, match="input_size"):
        InputSpace.from_data_config({"input_size": 32})
