"""Per explanation method (and the quality checks): passes per image, images/s and efficiency.

Efficiency compares the achieved rate with what the model alone allows for the
passes the method makes. A method that pushes F images forward and B of them
back per explained image would, at peak speed, need

    t_ideal = (F - B) / peak_forward + B / peak_forward+backward   seconds per image,

because each backward comes with its own forward (measured together as the
forward+backward peak) and the remaining forwards are plain inference. The
"pass-equivalents" column expresses the same thing in forward passes:
F - B + B * peak_forward / peak_forward+backward. Efficiency = rate * t_ideal.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from imaudit.audits.explain import create_explainer, typical_samples
from imaudit.audits.quality import deletion_insertion
from imaudit.audits.quality.sanity import ScratchCopy, cascading_sanity, model_blocks
from imaudit.audits.spec import ExplanationThresholds, QualitySettings
from imaudit.bench.counting import PassCount, count_passes
from imaudit.bench.peak import Peak
from imaudit.bench.profiling import where_time_goes
from imaudit.bench.workload import Workload


@dataclass
class Peaks:
    """The two model-bound limits every efficiency is measured against."""

    forward: Peak
    backward: Peak  # forward+backward

    def ideal_seconds(self, forward: float, backward: float) -> float:
        """Seconds per image at peak speed for ``forward``/``backward`` images per image."""
        plain = max(0.0, forward - backward)
        return plain / self.forward.images_per_s + backward / self.backward.images_per_s

    def pass_equivalents(self, forward: float, backward: float) -> float:
        """The same cost in plain forward passes."""
        return self.ideal_seconds(forward, backward) * self.forward.images_per_s


@dataclass
class MethodRow:
    """One row of the methods table."""

    name: str
    images: int
    seconds: float
    forward_per_image: float
    backward_per_image: float
    pass_equivalents: float
    images_per_s: float
    ideal_images_per_s: float
    efficiency: float
    model_share: float | None  # share of wall time inside forward calls (CPU only)
    failures: int = 0
    note: str = ""
    profile: dict | None = None  # where the time went (bench --profile, rows under the target)


def profiled(row: MethodRow, fn: Callable[[], object], below: float | None) -> MethodRow:
    """With ``below`` set (``bench --profile``): a row whose efficiency is under it gets one extra,
    untimed run of ``fn`` under cProfile, so the miss is explained by measurement."""
    if below is not None and row.images and row.efficiency < below:
        row.profile = where_time_goes(fn)
    return row


def timed_count(model: nn.Module, fn: Callable[[], object], min_seconds: float = 1.0,
                max_runs: int = 9) -> tuple[object, float, PassCount]:
    """(result, median seconds, passes of one run) of ``fn``.

    The first run is counted; more runs follow (up to ``max_runs``) until
    ``min_seconds`` have passed, so a step of a few milliseconds is not judged
    by one reading on a busy machine. Slow steps run once.
    """
    sync = torch.cuda.synchronize if next(model.parameters()).device.type == "cuda" else (lambda: None)
    times: list[float] = []
    with count_passes(model) as count:
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    count.wall_seconds = times[0]
    while sum(times) < min_seconds and len(times) < max_runs:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times), count


def make_row(name: str, n: int, seconds: float, count: PassCount, peaks: Peaks, failures: int = 0,
             note: str = "") -> MethodRow:
    """A table row from a timed, counted run over ``n`` images."""
    n = max(1, n)
    f, b = count.forward / n, count.backward / n
    rate = n / max(seconds, 1e-9)
    ideal = peaks.ideal_seconds(f, b)
    wall = count.wall_seconds or seconds
    share = None if count.forward_seconds is None else count.forward_seconds / max(wall, 1e-9)
    return MethodRow(
        name=name,
        images=n,
        seconds=seconds,
        forward_per_image=f,
        backward_per_image=b,
        pass_equivalents=peaks.pass_equivalents(f, b),
        images_per_s=rate,
        ideal_images_per_s=1.0 / ideal if ideal > 0 else float("inf"),
        efficiency=rate * ideal,
        model_share=share,
        failures=failures,
        note=note,
    )


def method_images(method: str, images: int) -> int:
    """Images a method explains in the bench: at most its typical audit sample (LIME/SHAP fewer)."""
    return max(1, min(images, typical_samples(method)))


def warm_up(run: Callable[[int], object], n: int, budget_s: float = 3.0) -> None:
    """Untimed runs before timing: ``run(k)`` does the work for the first k images.

    The first calls pay one-time costs (lazy imports, allocator growth, oneDNN /
    cuDNN kernel selection per batch shape). One image twice, then, when the
    second took little enough that the whole set costs under ``budget_s``, the
    whole set once, so every batch shape of the timed run has been seen.
    """
    run(1)
    t0 = time.perf_counter()
    run(1)
    if n > 1 and (time.perf_counter() - t0) * n < budget_s:
        run(n)


def explain_fn(work: Workload, method: str, settings: dict | None = None, seed: int = 0):
    """(model, images, targets) -> (N,H,W) maps with NaN rows for failures, as the audit's sanity check uses."""

    def fn(model: nn.Module, images: Tensor, targets: Tensor) -> np.ndarray:
        ex = create_explainer(method, model, device=work.device, mean=work.mean, std=work.std, seed=seed,
                              progress=False, **(settings or {}))
        e = ex.explain(images, targets, [str(i) for i in range(len(images))])
        out = np.full((len(images), *images.shape[-2:]), np.nan, np.float32)
        for row, i in zip(e.maps, e.ids):
            out[int(i)] = row
        return out

    return fn


def bench_method(work: Workload, method: str, peaks: Peaks, settings: dict | None = None,
                 seed: int = 0, profile_below: float | None = None) -> tuple[MethodRow, np.ndarray]:
    """Explain the workload's images with ``method`` once (after a one-image warm-up); the row and its maps."""
    ex = create_explainer(method, work.model.module, device=work.device, mean=work.mean, std=work.std,
                          seed=seed, progress=False, **(settings or {}))
    reason = ex.applicable()
    if reason is not None:
        row = MethodRow(method, 0, 0.0, 0, 0, 0, 0, 0, float("nan"), None, note=f"does not apply: {reason}")
        return row, np.zeros((0, *work.input_shape[1:]), np.float32)
    x, t = work.images, work.targets
    warm_up(lambda k: ex.explain(x[:k], t[:k], work.ids[:k]), len(x))
    run = lambda: ex.explain(x, t, work.ids)  # noqa: E731
    expl, seconds, count = timed_count(work.model.module, run)
    maps = np.full((len(x), *x.shape[-2:]), np.nan, np.float32)
    pos = {i: k for k, i in enumerate(work.ids)}
    for row, i in zip(expl.maps, expl.ids):
        maps[pos[i]] = row
    row = make_row(method, len(x), seconds, count, peaks, failures=len(expl.failures))
    return profiled(row, run, profile_below), maps


def bench_deletion(work: Workload, maps: np.ndarray, peaks: Peaks, source: str, seed: int = 0,
                   profile_below: float | None = None) -> MethodRow:
    """Deletion/insertion curves (the audit's settings: spec.quality.deletion_steps, one random order)."""
    steps = QualitySettings().deletion_steps
    ok = np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
    x, t, m = work.images[ok], work.targets[ok], maps[ok]
    warm_up(lambda k: deletion_insertion(work.model.module, x[:k], t[:k], m[:k], steps=steps, device=work.device,
                                         seed=seed), len(x))
    run = lambda: deletion_insertion(work.model.module, x, t, m, steps=steps, device=work.device, seed=seed)  # noqa: E731
    res, seconds, count = timed_count(work.model.module, run)
    row = make_row("deletion/insertion", len(x), seconds, count, peaks, failures=len(res["failures"]),
                   note=f"{steps} steps x 2 curves x (map + 1 random order), maps from {source}")
    return profiled(row, run, profile_below)


def bench_sanity(work: Workload, method: str, maps: np.ndarray, peaks: Peaks, settings: dict | None = None,
                 seed: int = 0, shared: tuple[list[list[str]], ScratchCopy] | None = None,
                 shared_seconds: float = 0.0, shared_by: int = 1, profile_below: float | None = None) -> MethodRow:
    """The cascading randomisation sanity check as the audit runs it: original maps given, the model's
    blocks re-initialised from the top one by one on a copy, re-explained after each.

    ``shared`` (the blocks and the model's copy) is made once per audit and shared by the checks of
    ``shared_by`` methods; this row is charged its share of ``shared_seconds`` (the time making it took).
    """
    th = ExplanationThresholds()
    n = min(QualitySettings().sanity_images, len(work.images))
    x, t = work.images[:n], work.targets[:n]
    fn = explain_fn(work, method, settings, seed=seed)
    if shared is None:
        (shared, shared_seconds), shared_by = _shared(work), 1
    blocks, scratch = shared
    def run():
        return cascading_sanity(work.model.module, x, t, fn, seed=seed, original_maps=maps[:n],
                                max_rank_corr=th.sanity_max_rank_corr, max_ssim=th.sanity_max_ssim,
                                judge_at=tuple(th.sanity_judge_at), blocks=blocks, scratch=scratch)

    # the cascade explains with the randomised copy only (the original maps are given)
    res, seconds, count = timed_count(scratch.copy, run)
    row = make_row(f"sanity ({method})", n, seconds + shared_seconds / max(shared_by, 1), count, peaks,
                   note=f"{len(blocks)} blocks re-initialised one by one on the audit's one copy of the model "
                        f"(restored in place first), re-explained after each (finding the blocks and copying the "
                        f"model: {shared_seconds * 1000:.0f} ms once, shared by {shared_by} checks)")
    return profiled(row, run, profile_below)


def _shared(work: Workload, runs: int = 3) -> tuple[tuple[list[list[str]], ScratchCopy], float]:
    """The model's blocks and its copy to randomise as the audit makes them (once per audit), and the
    median seconds that takes."""
    model = work.model.module
    example = work.images[:1].to(next(model.parameters()).device)
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        made = model_blocks(model, example), ScratchCopy(model)
        times.append(time.perf_counter() - t0)
    return made, statistics.median(times)


def bench_methods(work: Workload, methods: list[str], peaks: Peaks, settings: dict[str, dict] | None = None,
                  sanity_methods: list[str] | None = None, progress: bool = False,
                  caps: dict[str, int] | None = None,
                  profile_below: float | None = None) -> tuple[list[MethodRow], dict[str, np.ndarray]]:
    """Rows for every method, deletion/insertion (on the first method's maps) and the sanity
    check for each method the audit sanity-checks by default; also the maps by method.

    ``caps`` bounds the images per method (and ``"deletion/insertion"``) where a big
    model makes the typical sample too slow to time. ``profile_below``: profile the rows whose
    efficiency is under it (``bench --profile``).
    """
    settings, caps = settings or {}, caps or {}
    sanity = QualitySettings().sanity_methods if sanity_methods is None else sanity_methods
    rows: list[MethodRow] = []
    maps_by: dict[str, np.ndarray] = {}
    for m in tqdm(methods, desc="methods", disable=None if progress else True, leave=False):
        n = min(method_images(m, len(work.images)), caps.get(m, len(work.images)))
        row, maps = bench_method(work.head(n), m, peaks, settings.get(m), profile_below=profile_below)
        rows.append(row)
        if row.images:
            maps_by[m] = maps
    if maps_by:
        source = next(iter(maps_by))
        n = min(len(maps_by[source]), caps.get("deletion/insertion", len(maps_by[source])))
        rows.append(bench_deletion(work.head(n), maps_by[source][:n], peaks, source, profile_below=profile_below))
    checked = [m for m in methods if m in sanity and m in maps_by]
    if checked:  # the blocks are found once per audit and shared by every method's check (audits/explain_checks)
        shared, shared_seconds = _shared(work)
        for m in checked:
            rows.append(bench_sanity(work.head(len(maps_by[m])), m, maps_by[m], peaks, settings.get(m),
                                     shared=shared, shared_seconds=shared_seconds, shared_by=len(checked),
                                     profile_below=profile_below))
    return rows, maps_by
