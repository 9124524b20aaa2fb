"""The scale row: how an audit's time and memory grow with the dataset (1k, 4k, 16k generated images).

Each size is audited in its own process (so its peak resident memory is its
own): a fresh imaudit home, Prefect's temporary server started before timing,
then a cold audit through the audit flow of ``folder:`` PNGs with two cheap
methods and every image predicted (the train cap lifted), then a warm
re-audit of the same folder (manifest cache and chunk cache). The child prints
one JSON line; ``python -m imaudit.bench.scale --images N`` runs one size by hand.

Reported per size: seconds and seconds per image of the cold audit; the peak
resident set of the process during it (``VmHWM``) and how much it grew
during the audit; the bytes of logits and maps the audit must hold; the warm
re-audit's seconds and how long it took to reach prediction (identify and the
data gate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imaudit.bench.datasets import png_set

METHODS = ["saliency", "gradcam"]
SAMPLES = 16
CHILD_TIMEOUT_S = 3 * 3600


@dataclass
class ScaleRow:
    """One dataset size: cold audit time and memory, warm re-audit time."""

    images: int
    seconds: float
    seconds_per_image: float
    peak_rss_mb: float
    rss_before_mb: float
    held_mb: float  # logits (N x classes x 4 bytes) + maps (samples x methods x H x W x 4 bytes)
    warm_seconds: float
    warm_to_predict_seconds: float  # identify + data gate of the warm audit: "starts predicting after"
    stages: dict[str, float] = field(default_factory=dict)
    warm_stages: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, int] = field(default_factory=dict)


def _rss_mb() -> float:
    """Peak resident set of this process so far, in MB.

    Linux's ``VmHWM`` (the high-water mark of this address space) rather than ``ru_maxrss``: across
    fork and exec the kernel carries the parent's peak into the child's ``ru_maxrss``, so a child
    started by a bench that had held resnet50 activations reported the parent's 8.5 GB at every size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _timings(folder: Path) -> dict[str, float]:
    return dict(json.loads((folder / "audit.json").read_text(encoding="utf-8")).get("timings") or {})


def audit_once(dataset: str, model: str, image_size: int, device: str, n: int) -> ScaleRow:
    """Cold then warm audit of ``dataset`` in a fresh home (this process); the row."""
    from imaudit.audits.spec import AuditSpec
    from imaudit.bench.homes import forget_loaded, temp_home
    from imaudit.bench.overhead import start_prefect
    from imaudit.bench.workload import random_timm_ref
    from imaudit.flows.audit import run_audit

    spec = AuditSpec(model=random_timm_ref(model), dataset=dataset, input_size=image_size, methods=METHODS,
                     samples=SAMPLES, train_cap=10**9, device=device)
    start_prefect()
    with temp_home():
        forget_loaded()
        before = _rss_mb()
        t0 = time.perf_counter()
        cold = run_audit(spec)
        seconds = time.perf_counter() - t0
        peak = _rss_mb()
        data = json.loads((cold / "audit.json").read_text(encoding="utf-8"))
        forget_loaded()
        t0 = time.perf_counter()
        warm = run_audit(spec)
        warm_seconds = time.perf_counter() - t0
        warm_stages = _timings(warm)
    classes = len(data["dataset"]["classes"])
    maps = sum(int(e.get("count") or 0) for e in (data.get("explanations") or {}).values())
    held = (n * classes * 4 + maps * image_size * image_size * 4) / 2**20
    return ScaleRow(
        images=n, seconds=seconds, seconds_per_image=seconds / n, peak_rss_mb=peak, rss_before_mb=before,
        held_mb=held, warm_seconds=warm_seconds,
        warm_to_predict_seconds=sum(warm_stages.get(k, 0.0) for k in ("identify", "check_data")),
        stages=dict(data.get("timings") or {}), warm_stages=warm_stages,
        manifest=dict((data.get("cache") or {}).get("manifest") or {}),
    )


def bench_scale(sizes: list[int], model: str = "test_resnet", image_size: int = 64, device: str = "auto",
                say: Any = print) -> dict[str, Any]:
    """One child process per size (data generated once per machine under cache_dir()/bench)."""
    rows: list[ScaleRow] = []
    for n in sizes:
        say(f"scale: generating {n} images (once per machine)")
        folder = png_set(n)
        say(f"scale: auditing {n} images in a child process")
        with tempfile.TemporaryDirectory(prefix="imaudit-scale-prefect-") as prefect_home:
            env = {**os.environ, "PREFECT_HOME": prefect_home}
            env.pop("PREFECT_API_URL", None)  # the child's own temporary server: nothing else shares it
            cmd = [sys.executable, "-m", "imaudit.bench.scale", "--dataset", f"folder:{folder}", "--images", str(n),
                   "--model", model, "--image-size", str(image_size), "--device", device]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
        line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith("{")), None)
        if done.returncode != 0 or line is None:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"scale audit of {n} images failed (exit {done.returncode}): {' | '.join(tail)}")
        rows.append(ScaleRow(**json.loads(line)))
    return {"model": f"timm:{model}", "image_size": image_size, "methods": METHODS, "samples": SAMPLES,
            "rows": [asdict(r) for r in rows]}


def main(argv: list[str] | None = None) -> None:
    """Child entry point: audit one size, print the row as one JSON line."""
    parser = argparse.ArgumentParser(description="one scale-row audit (run by imaudit bench --scale)")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    row = audit_once(args.dataset, args.model, args.image_size, args.device, args.images)
    print(json.dumps(asdict(row)), flush=True)


if __name__ == "__main__":
    main()
