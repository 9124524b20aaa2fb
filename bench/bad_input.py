"""The bad-model row: how soon ``imaudit audit`` answers a --model that points at nothing, and what it read first.

Runs the CLI in this process (``imaudit audit --model file:<missing> --dataset
folder:<300 PNGs>``) and counts the images opened meanwhile (PIL's
``Image.open``, which every probe, header check and decode goes through). The
target: exit 2 with its one line before a single image is opened.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from PIL import Image

from imaudit.bench.datasets import png_set

FILES = 300


@dataclass
class BadModelRow:
    """Exit code, seconds to the answer, images opened before it, and the line printed."""

    exit_code: int
    seconds: float
    images_opened: int
    dataset_files: int
    message: str


def bench_bad_model() -> BadModelRow:
    """Time the CLI's answer to a missing checkpoint next to a real dataset folder."""
    from typer.testing import CliRunner

    from imaudit.audits.stages import inputs
    from imaudit.cli import app

    folder = png_set(FILES)
    opened: list[str] = []
    original = Image.open

    def counting_open(fp, *a, **k):  # noqa: ANN001, ANN002, ANN003 - PIL's signature
        opened.append(str(fp))
        return original(fp, *a, **k)

    inputs.forget()  # nothing loaded beforehand may answer for the CLI
    with tempfile.TemporaryDirectory(prefix="imaudit-bench-bad-") as tmp:
        missing = Path(tmp) / "no-such-model.pt"
        # --rehash: a dataset read before the model is checked shows up even when the manifest cache knows it.
        args = ["audit", "--model", f"file:{missing}", "--dataset", f"folder:{folder}", "--out", str(Path(tmp) / "out"),
                "--methods", "saliency", "--rehash"]
        with mock.patch.object(Image, "open", counting_open):
            t0 = time.perf_counter()
            res = CliRunner().invoke(app, args)
            seconds = time.perf_counter() - t0
    inputs.forget()
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    return BadModelRow(res.exit_code, seconds, len(opened), FILES, lines[-1] if lines else "")
