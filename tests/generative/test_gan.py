"""The conditional DCGAN learns, repeats with a seed, and its artifacts round-trip by dataset digest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from imaudit.audits.generative import (
    GeneratorArtifact,
    export_checkpoint,
    find_generator,
    GeneratorSettings,
    InputSpace,
    generative_cli_train,
    load_pretrained_generator,
    resolve_generator,
    train_generator,
)
from imaudit.audits.generative.gan import ConditionalDiscriminator, ConditionalGenerator, GanConfig, class_mean_gap, sample_latents, train_gan
from imaudit.audits.generative.store import save_artifact
from imaudit.errors import BadInputError, CheckpointError

from gen_helpers import TINY, TINY_TRAIN, halves


def _outputs(g: torch.nn.Module, n: int = 6) -> torch.Tensor:
    with torch.no_grad():
        return g.eval()(sample_latents(n, g.z_dim, 1), torch.arange(n) % g.n_classes)


@pytest.mark.parametrize("size", [16, 32])
def test_networks_have_the_promised_shapes(size):
    cfg = GanConfig(n_classes=3, image_size=size, channels=3, z_dim=8, width=8)
    g, d = ConditionalGenerator(cfg).eval(), ConditionalDiscriminator(cfg).eval()
    x = g(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    assert x.shape == (4, 3, size, size)
    assert x.min() >= 0 and x.max() <= 1  # pixel space
    assert d(x, torch.tensor([0, 1, 2, 0])).shape == (4,)


def test_bad_image_size_is_bad_input():
    with pytest.raises(BadInputError, match="image_size"):
        GanConfig(n_classes=2, image_size=24)


def test_generator_improves_over_a_few_steps():
    x, y = halves(64)
    torch.manual_seed(0)
    before = class_mean_gap(ConditionalGenerator(TINY), x, y)
    g, _, losses = train_gan(x, y, TINY, **TINY_TRAIN, seed=0, progress=False)
    after = class_mean_gap(g, x, y)
    # An untrained G paints grey noise; after 40 steps each class's mean image must be much closer.
    assert after < 0.5 * before
    assert [r["step"] for r in losses] == [4 * (i + 1) for i in range(10)]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in losses)
    assert losses[-1]["mean_gap"] == pytest.approx(class_mean_gap(g, x, y, seed=0), rel=1e-5)


def test_training_repeats_with_a_seed():
    x, y = halves(32)
    runs = [train_gan(x, y, TINY, epochs=2, batch_size=16, seed=s, progress=False) for s in (3, 3, 4)]
    assert runs[0][2] == runs[1][2]
    assert torch.equal(_outputs(runs[0][0]), _outputs(runs[1][0]))
    assert not torch.equal(_outputs(runs[0][0]), _outputs(runs[2][0]))


def test_artifact_round_trip_keyed_by_digest(tmp_path):
    x, y = halves(16)
    g, d, losses = train_gan(x, y, TINY, epochs=1, batch_size=8, progress=False)
    art = save_artifact(g, ["left", "right"], "digest-a", "v-1", losses=losses, discriminator=d, store=tmp_path)
    assert art.path == tmp_path / "digest-a" / "v-1"
    assert {p.name for p in art.path.iterdir()} >= {"meta.json", "losses.json", "generator.safetensors", "samples.png"}
    assert not list(tmp_path.glob("digest-a/.tmp-*"))  # written atomically, nothing left behind
    assert json.loads((art.path / "losses.json").read_text()) == losses

    found = find_generator("digest-a", store=tmp_path)
    assert found is not None and found.version == "v-1" and found.classes == ["left", "right"]
    assert (found.image_size, found.channels, found.z_dim) == (16, 1, 8)
    assert torch.allclose(_outputs(found.load_generator()), _outputs(g))
    assert find_generator("digest-b", store=tmp_path) is None
    assert found.identity()["losses_final"]["g_loss"] == losses[-1]["g_loss"]


def _write_folder_dataset(root, n_per_class=6, size=16):
    """A folder: dataset of grey PNGs: class 'left' bright left half, 'right' bright right half."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("val", 2)):
        for cls in ("left", "right"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                a = np.full((size, size), 30, np.uint8)
                if cls == "left":
                    a[:, : size // 2] = 220
                else:
                    a[:, size // 2 :] = 220
                a = np.clip(a + rng.integers(0, 20, a.shape), 0, 255).astype(np.uint8)
                Image.fromarray(a, "L").save(root / split / cls / f"{i}.png")
    return f"folder:{root}"


SPACE16 = InputSpace(height=16, width=16, interpolation="bilinear", crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)


def test_train_generator_reuses_the_artifact_of_the_same_digest_space_and_settings(tmp_path):
    from imaudit.audits.data import load_dataset

    bundle = load_dataset(_write_folder_dataset(tmp_path / "data"), progress=False)
    settings = GeneratorSettings(epochs=1, z_dim=8, width=8, batch_size=8)
    kw = dict(progress=False, store=tmp_path / "store")
    first = train_generator(bundle, SPACE16, settings, **kw)
    assert first.dataset_digest == bundle.digest and first.channels == 1  # grey PNGs fold to one channel
    assert len(first.losses) == 1 and first.classes == ["left", "right"] and first.image_size == 16
    assert first.space == SPACE16.geometry() and json.loads((first.path / "meta.json").read_text())["space"] == first.space
    again = train_generator(bundle, SPACE16, settings, **kw)
    assert (again.path, again.created) == (first.path, first.created)  # found, not retrained
    other = train_generator(bundle, SPACE16, GeneratorSettings(epochs=1, z_dim=8, width=8, batch_size=8, seed=1), **kw)
    assert other.version != first.version
    cropped = InputSpace(height=16, width=16, crop_pct=0.875)
    in_other_space = train_generator(bundle, cropped, settings, **kw)
    assert in_other_space.version != first.version and in_other_space.space["crop_pct"] == 0.875
    forced = train_generator(bundle, SPACE16, settings, force=True, **kw)
    assert forced.path == first.path and forced.created != first.created
    assert find_generator(bundle.digest, store=tmp_path / "store", space=SPACE16.geometry()).created == forced.created
    assert find_generator(bundle.digest, store=tmp_path / "store", space=cropped.geometry()).path == in_other_space.path
    assert find_generator(bundle.digest, store=tmp_path / "store", space=SPACE16.geometry(),
                          wanted={"epochs": 2}) is None


def test_pretrained_checkpoint_loads_behind_the_same_interface(tmp_path):
    x, y = halves(16)
    g, d, losses = train_gan(x, y, TINY, epochs=1, batch_size=8, progress=False)
    trained = GeneratorArtifact.in_memory(g, ["left", "right"], discriminator=d)
    ckpt = export_checkpoint(trained, tmp_path / "gen.pt")
    space = SPACE16.geometry()
    art = load_pretrained_generator(ckpt, dataset_digest="digest-p", space=space, store=tmp_path / "store")
    assert art.source == "pretrained" and art.version.startswith("pretrained-") and art.space == space
    assert torch.allclose(_outputs(art.load_generator()), _outputs(g))
    assert art.load_discriminator() is not None  # the realism term travels with the checkpoint
    store = tmp_path / "store"
    assert find_generator("digest-p", store=store).path == art.path
    assert resolve_generator("digest-p", ["left", "right"], space, store=store)[0].path == art.path
    assert resolve_generator("digest-q", ["left", "right"], space, store=store) == (None, "no generator for this dataset")
    found, why = resolve_generator("digest-p", ["left", "right"], InputSpace(height=32, width=32).geometry(), store=store)
    assert found is None and "draw 16x16" in why and "model sees (32x32" in why
    with pytest.raises(CheckpointError, match="classes"):
        resolve_generator("digest-p", ["a", "b"], space, store=store)
    # A checkpoint that records its space is refused for a model that sees another one.
    with pytest.raises(CheckpointError, match="the model sees 32x32"):
        load_pretrained_generator(export_checkpoint(art, tmp_path / "g16.pt"), dataset_digest="d",
                                  space=InputSpace(height=32, width=32).geometry(), store=tmp_path / "s3")

    with pytest.raises(CheckpointError, match="classes"):
        load_pretrained_generator(ckpt, dataset_digest="d", expected_classes=["a", "b", "c"], store=tmp_path / "s2")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_pretrained_generator(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="arch"):
        load_pretrained_generator(tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained_generator(tmp_path / "missing.pt")


def test_cli_train_prints_a_summary_and_registers_a_checkpoint(tmp_path):
    ref = _write_folder_dataset(tmp_path / "data")
    lines: list[str] = []
    settings = GeneratorSettings(epochs=1, z_dim=8, width=8)
    art = generative_cli_train(ref, "timm:test_resnet?pretrained=false", settings, input_size=16, progress=False, echo=lines.append)
    assert any(art.version in line for line in lines) and any("losses" in line for line in lines)
    assert art.space["input_size"] == [16, 16] and any("16x16 model input" in line for line in lines)
    ckpt = export_checkpoint(art, tmp_path / "g.pt")
    lines.clear()
    pre = generative_cli_train(ref, "timm:test_resnet?pretrained=false", input_size=16, checkpoint=ckpt, progress=False,
                               echo=lines.append)
    assert pre.source == "pretrained" and pre.dataset_digest == art.dataset_digest
    assert "pretrained" in lines[0]


def test_damaged_generator_weights_are_one_line_checkpoint_errors(tmp_path):
    from imaudit.audits.generative.store import _load_weights

    weights = tmp_path / "generator.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"generator\.safetensors: cannot load generator weights"):
        _load_weights(torch.nn.Linear(2, 2), weights, "generator")
