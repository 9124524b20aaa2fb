"""Prediction batches: threads that decode ahead give the serial answer; the GPU JPEG path follows PIL's (run on CPU)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from imaudit.audits.images import ImageDataset
from imaudit.audits.loading import batches, gpu_decodable, jpeg_batches, tensor_steps, threaded_batches
from imaudit.audits.predict import infer_logits
from imaudit.models.loaded import LoadedModel

CLASSES = ["a", "b"]


def _files(folder, n: int, suffix: str, size=(40, 30), mode: str = "RGB") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        # smooth content (noise blown up) so JPEG and resizing behave as on photos
        small = rng.integers(0, 256, (size[1] // 5, size[0] // 5, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR).convert(mode)
        path = folder / f"img{i}{suffix}"
        im.save(path, quality=95) if suffix == ".jpg" else im.save(path)
        rows.append({"id": path.name, "path": str(path), "label": CLASSES[i % 2], "split": "val", "sha256": str(i),
                     "width": size[0], "height": size[1], "mode": mode, "mask": None})
    return pd.DataFrame(rows)


def _transform(size: int = 24):
    module = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    cfg = timm.data.resolve_model_data_config(module)
    cfg["input_size"] = (3, size, size)
    return module.eval(), LoadedModel(module, "timm:test_resnet", "test_resnet", "x", 2, None, cfg).transform()


def test_threads_decode_ahead_and_give_the_serial_batches_in_order(tmp_path):
    _, transform = _transform()
    ds = ImageDataset(_files(tmp_path, 11, ".png"), CLASSES, transform)
    got = list(threaded_batches(ds, batch_size=4, threads=3, prefetch=2))
    assert [len(b) for b in got] == [4, 4, 3]
    serial = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(torch.cat(got), serial)


def test_predicted_logits_equal_the_model_on_the_serially_decoded_images(tmp_path):
    module, transform = _transform()
    ds = ImageDataset(_files(tmp_path, 9, ".png"), CLASSES, transform)
    logits = infer_logits(module, ds, torch.device("cpu"), batch_size=4, progress=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        expected = torch.cat([module(x[a : a + 4]) for a in range(0, 9, 4)])
    np.testing.assert_array_equal(logits, expected.numpy())


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_decoded_by_torchvision_follows_the_pil_transform(tmp_path, mode):
    _, transform = _transform(size=24)
    ds = ImageDataset(_files(tmp_path, 5, ".jpg", size=(60, 44), mode=mode), CLASSES, transform)
    fast = torch.cat(list(jpeg_batches(ds, batch_size=2, device=torch.device("cpu"))))
    pil = torch.stack([ds[i][0] for i in range(len(ds))])
    assert fast.shape == pil.shape == (5, 3, 24, 24)
    # Same JPEG decoder (libjpeg-turbo) on CPU; the resize is torch's, not PIL's: within one 8-bit step.
    step = 1 / (255 * 0.5)  # one 8-bit step in normalised units (test_resnet's std is 0.5)
    diff = (fast - pil).abs()
    assert float(diff.mean()) < 0.5 * step and float(diff.max()) < 1.5 * step


def test_jpeg_path_honours_exif_orientation_like_pil(tmp_path):
    _, transform = _transform(size=24)
    im = Image.new("RGB", (60, 30), (200, 20, 20))
    im.paste((20, 20, 200), (0, 0, 30, 30))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    im.save(path, quality=95, exif=exif)
    rows = pd.DataFrame([{"id": "rot.jpg", "path": str(path), "label": "a", "split": "val", "sha256": "x",
                          "width": 60, "height": 30, "mode": "RGB", "mask": None}])
    ds = ImageDataset(rows, CLASSES, transform)
    fast = next(jpeg_batches(ds, 1, torch.device("cpu")))[0]
    pil = ds[0][0]
    # Upright, the blue half is on top: both decoders must agree on where it went.
    for x in (fast, pil):
        top, bottom = x[:, :12].mean(dim=(1, 2)), x[:, 12:].mean(dim=(1, 2))
        assert top[2] > top[0] and bottom[0] > bottom[2]
    assert float((fast - pil).abs().mean()) < 0.05


def test_decode_choice_by_device_files_and_size(tmp_path):
    _, transform = _transform()
    cpu = torch.device("cpu")
    jpgs = ImageDataset(_files(tmp_path, 3, ".jpg", size=(200, 160)), CLASSES, transform)
    (tmp_path / "png").mkdir()
    pngs = ImageDataset(_files(tmp_path / "png", 3, ".png"), CLASSES, transform)
    assert batches(jpgs, cpu, 2, 0, "auto")[1] == "threads"  # CPU: PIL in threads
    assert batches(jpgs, cpu, 2, 0, "gpu")[1] == "gpu-jpeg"  # asked for: decode_jpeg on the device
    assert batches(pngs, cpu, 2, 0, "gpu")[1] == "threads"  # not JPEG: PIL
    assert batches(jpgs, cpu, 2, 0, "cpu")[1] == "threads"
    assert gpu_decodable(jpgs)  # what "auto" takes on CUDA
    small = ImageDataset(_files(tmp_path / "png", 3, ".jpg", size=(40, 30)), CLASSES, transform)
    assert not gpu_decodable(small)  # too small for the GPU to win
    with pytest.raises(ValueError):
        batches(jpgs, cpu, 2, 0, "fast")


def test_transforms_without_a_tensor_twin_keep_pil():
    assert tensor_steps(lambda im: im) is None
    _, transform = _transform()
    assert tensor_steps(transform) is not None
