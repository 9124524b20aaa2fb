"""The bad-model row: how soon ``imaudit audit`` answers a --model that points at nothing, and what it read first.

Runs the CLI as a user would, in its own process (``imaudit audit --model REF
--dataset folder:<300 PNGs> --rehash``) for two bad refs, a checkpoint file
that does not exist and a timm architecture that does not exist, with a
Python audit hook in that process counting every file opened under the
dataset folder (each probe, header check and decode opens its file). The
target: exit 2 with its one line before a single dataset file is opened.
``--rehash`` makes a dataset read before the model check visible even when
the manifest cache already knows the folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from imaudit.bench.datasets import png_set

FILES = 300
MARK = "imaudit-bench-opened:"
# The child: count opens under the dataset folder, report them when the CLI exits, run the CLI.
_CHILD = """
import atexit, os, sys
folder, opened = sys.argv.pop(1), [0]
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and os.fsdecode(args[0]).startswith(folder):
        opened[0] += 1
sys.addaudithook(hook)
atexit.register(lambda: print("%s%d" % (MARK, opened[0]), file=sys.stderr, flush=True))
from imaudit.cli import main
main()
"""


@dataclass
class BadModelRow:
    """One bad ref: exit code, seconds to the answer (a fresh process, imports included), dataset files
    opened first (-1: the count never came back), the line printed."""

    ref: str
    exit_code: int
    seconds: float
    images_opened: int
    dataset_files: int
    message: str


def bad_refs(tmp: Path) -> list[str]:
    """A missing checkpoint file and an unknown timm architecture."""
    return [f"file:{tmp / 'no-such-model.pt'}", "timm:no_such_architecture?pretrained=false"]


def bench_bad_model() -> list[BadModelRow]:
    """Time the CLI's answer to each bad --model next to a real dataset folder."""
    folder = png_set(FILES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="imaudit-bench-bad-") as tmp:
        for ref in bad_refs(Path(tmp)):
            args = ["audit", "--model", ref, "--dataset", f"folder:{folder}", "--out", str(Path(tmp) / "out"),
                    "--methods", "saliency", "--rehash"]
            code = _CHILD.replace("MARK", json.dumps(MARK))
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code, str(folder), *args], capture_output=True, text=True,
                                  timeout=600, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            seconds = time.perf_counter() - t0
            opened = [ln for ln in done.stderr.splitlines() if ln.startswith(MARK)]
            lines = [ln for ln in (done.stdout + done.stderr).splitlines()
                     if ln.strip() and not ln.startswith(MARK) and "file/s]" not in ln]
            count = int(opened[-1][len(MARK):]) if opened else -1
            rows.append(BadModelRow(ref, done.returncode, seconds, count, FILES, lines[-1] if lines else ""))
    return rows
