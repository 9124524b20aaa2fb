"""Fixtures for the generative tests: one thread per test, one tiny trained GAN artifact."""

from __future__ import annotations

import pytest
import torch

from imaudit.audits.generative.gan import train_gan
from imaudit.audits.generative.store import save_artifact

from gen_helpers import TINY, TINY_TRAIN, halves


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread; on a busy 2-core machine more threads thrash (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_gan(tmp_path_factory):
    """(artifact, images, labels): a 16 px two-class GAN trained for a few seconds, stored on disk."""
    x, y = halves(64)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures run before _one_thread
    try:
        g, d, losses = train_gan(x, y, TINY, **TINY_TRAIN, seed=0, progress=False)
    finally:
        torch.set_num_threads(before)
    store = tmp_path_factory.mktemp("gen-store")
    art = save_artifact(g, ["left", "right"], "tinydigest", "v-test", losses=losses, discriminator=d, store=store)
    return art, x, y
