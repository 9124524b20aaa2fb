"""`imaudit bench`: every measurement in one run, printed as tables and written as JSON.

Order matters on a shared machine only for warm-ups, so every timed part has
its own: peaks first (they also warm the model's kernels), then prediction,
methods and their library-default baselines, then the audits (a throwaway
direct audit warms imports and the data gates before any audit is timed).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from imaudit.audits.explain import list_methods
from imaudit.audits.spec import DEFAULT_METHODS
from imaudit.bench.baselines import BaselineRow, bench_baseline
from imaudit.bench.methods import Peaks, bench_methods
from imaudit.bench.peak import measure_peak
from imaudit.bench.pipeline import bench_prediction
from imaudit.bench.workload import build_workload
from imaudit.errors import BadInputError
from imaudit.io import atomic_write_text

# The issue's targets (issue 18), each printed with its measured value as met or missed.
TARGETS = {
    "prediction": 0.8,  # prediction from files / forward peak, small row
    "prediction_realistic": 0.9,  # the same on the realistic row (resnet50, 224 px JPEGs)
    "efficiency": 0.8,  # every method and quality check, both rows
    "speedup": 1.0,  # our rate / the library's default use
    "speedup_perturb": 1.5,  # LIME and SHAP against lime_image / shap Partition defaults
    "cache": 0.05,  # warm re-audit / cold audit
    "overhead": 1.10,  # audit flow / direct stage calls
    "scale_time": 1.2,  # seconds per image at the largest size / at the smallest
}
PERTURB_METHODS = ("lime", "shap")
QUICK_METHODS = ["saliency", "gradcam", "occlusion"]


@dataclass
class BenchConfig:
    """What to measure. ``quick``: a tiny run (seconds) for tests and smoke checks."""

    model: str = "test_resnet"
    image_size: int = 64
    images: int = 32
    device: str = "auto"
    methods: list[str] | None = None  # None: every registered method (quick: 3)
    pipeline_images: int = 1024
    baselines: bool = True
    audits: bool = True
    realistic: bool = False  # the resnet50 / 224 px / JPEG row (minutes on a CPU)
    scale: list[int] | None = None  # dataset sizes for the scale row, e.g. [1000, 4000, 16000]
    bad_input: bool = True  # the bad --model row
    quick: bool = False
    profile: bool = False  # rows under their efficiency target get one extra run under cProfile
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, quick: bool = False, **given: Any) -> "BenchConfig":
        """Defaults, or the quick ones, overridden by the ``given`` values that are not None."""
        base = cls(image_size=32, images=4, pipeline_images=64, methods=list(QUICK_METHODS), quick=True) if quick else cls()
        for k, v in given.items():
            if v is not None:
                setattr(base, k, v)
        return base


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        info["load_average"] = None
    return info


def _methods(cfg: BenchConfig) -> list[str]:
    # The audit's default order first (the registry lists methods by module name).
    known = sorted(list_methods(), key=lambda m: (DEFAULT_METHODS + [m]).index(m))
    methods = cfg.methods if cfg.methods is not None else known
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise BadInputError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return list(methods)


def _prefect_home() -> None:
    """Without a configured server, give Prefect's temporary server its own database (a
    shared ~/.prefect database locks up when other processes use it at the same time)."""
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        import tempfile

        os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="imaudit-bench-prefect-")


def run_bench(cfg: BenchConfig, console: Console | None = None) -> dict[str, Any]:
    """Measure everything ``cfg`` asks for; print the tables on ``console``; return the JSON-able report."""
    console = console or Console()
    methods = _methods(cfg)
    report: dict[str, Any] = {"config": asdict(cfg), "machine": machine()}
    say = console.log if cfg.progress else (lambda *a, **k: None)

    say(f"workload: timm:{cfg.model} at {cfg.image_size} px, {cfg.images} images")
    work = build_workload(cfg.model, cfg.image_size, cfg.images, cfg.device)
    report["device"] = str(work.device)
    sizes = (1, 4, 16) if cfg.quick else None
    repeats = 3 if cfg.quick else 7
    say("peak throughput (forward, forward+backward)")
    peaks = Peaks(
        measure_peak(work.model.module, work.input_shape, work.device, "forward", batch_sizes=sizes, repeats=repeats),
        measure_peak(work.model.module, work.input_shape, work.device, "forward+backward", batch_sizes=sizes,
                     repeats=repeats),
    )
    report["peaks"] = {"forward": asdict(peaks.forward), "forward+backward": asdict(peaks.backward)}

    say("prediction through the pipeline")
    pred = bench_prediction(work, peaks.forward, min(cfg.pipeline_images, len(work.dataset.manifest)))
    report["prediction"] = asdict(pred)

    say(f"methods: {', '.join(methods)}")
    profile_below = TARGETS["efficiency"] if cfg.profile else None
    rows, _ = bench_methods(work, methods, peaks, progress=cfg.progress, profile_below=profile_below)
    report["methods"] = [asdict(r) for r in rows]
    base: list[BaselineRow] = []
    if cfg.baselines:
        by_name = {r.name: r for r in rows}
        for m in methods:
            say(f"library default: {m}")
            b = bench_baseline(work, m, peaks, by_name.get(m))
            if b is not None:
                base.append(b)
    report["baselines"] = [asdict(b) for b in base]

    if cfg.audits:
        try:
            report.update(_audit_rows(cfg, methods, say, profile=cfg.profile))
        except RuntimeError as e:  # e.g. Prefect's temporary server did not start in time on a loaded machine
            # One row that cannot be measured must not cost every other row of the run: it is reported as such.
            report["audits_error"] = f"{type(e).__name__}: {e}"
            say(f"audits: not measured ({report['audits_error']})")
    if cfg.realistic:
        from imaudit.bench.realistic import bench_realistic

        report["realistic"] = bench_realistic(methods, cfg.device, say, quick=cfg.quick, profile_below=profile_below)
    if cfg.scale:
        from imaudit.bench.scale import bench_scale

        report["scale"] = bench_scale(sorted(cfg.scale), device=cfg.device, say=say)
    if cfg.bad_input:
        from imaudit.bench.bad_input import bench_bad_model

        say("bad --model: how soon the CLI answers")
        report["bad_model"] = [asdict(r) for r in bench_bad_model()]
    report["targets"] = targets(report)
    report["machine"]["load_average_end"] = machine()["load_average"]
    print_report(report, console)
    return report


def _audit_rows(cfg: BenchConfig, methods: list[str], say, profile: bool = False) -> dict[str, Any]:
    _prefect_home()
    # Imported after _prefect_home(): these load Prefect, which must see that home.
    from imaudit.bench.cache import bench_cache
    from imaudit.bench.homes import bench_audit_spec
    from imaudit.bench.overhead import bench_overhead, start_prefect, time_direct

    audit_methods = methods[:1] if cfg.quick else methods
    spec = bench_audit_spec(cfg.model, cfg.image_size, audit_methods, samples=cfg.images, device=cfg.device,
                            train_cap=64 if cfg.quick else 512)
    say("audits: starting Prefect, warm-up audit")
    startup = start_prefect()
    if not cfg.quick:
        time_direct(spec)  # warm-up: imports, Great Expectations, kernels; not reported
    say("audits: cold and warm (flow)")
    cache = bench_cache(spec, profile_above=TARGETS["cache"] if profile else None)
    say("audits: direct stage calls")
    overhead = bench_overhead(spec, flow_seconds=cache.cold_seconds, startup=startup,
                              profile_above=TARGETS["overhead"] if profile else None)
    return {"audit": {"methods": audit_methods, "samples": cfg.images}, "cache": asdict(cache),
            "overhead": asdict(overhead)}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each issue target with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, higher_is_better: bool = True) -> None:
        met = None if value is None or value != value else (value >= limit if higher_is_better else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met,
                    "rule": ">=" if higher_is_better else "<="})

    add("prediction / peak", report["prediction"]["ratio_to_peak"], TARGETS["prediction"])
    for r in report["methods"]:
        if r["images"]:
            add(f"efficiency {r['name']}", r["efficiency"], TARGETS["efficiency"])
    for b in report["baselines"]:
        limit = TARGETS["speedup_perturb"] if b["name"] in PERTURB_METHODS else TARGETS["speedup"]
        add(f"speed-up {b['name']} vs library default", b["speedup"], limit)
    if "cache" in report:
        add("warm / cold audit", report["cache"]["ratio"], TARGETS["cache"], higher_is_better=False)
        add("flow / direct (Prefect overhead)", report["overhead"]["ratio"], TARGETS["overhead"], higher_is_better=False)
    elif report.get("audits_error"):  # asked for but not measured: listed without a verdict
        add("warm / cold audit", None, TARGETS["cache"], higher_is_better=False)
        add("flow / direct (Prefect overhead)", None, TARGETS["overhead"], higher_is_better=False)
    real = report.get("realistic")
    if real:
        add("realistic: prediction / peak", real["prediction"]["ratio_to_peak"], TARGETS["prediction_realistic"])
        for r in real["methods"]:
            if r["images"]:
                add(f"realistic: efficiency {r['name']}", r["efficiency"], TARGETS["efficiency"])
    rows = (report.get("scale") or {}).get("rows") or []
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        add(f"scale: s/image at {big['images']:,} / at {small['images']:,}",
            big["seconds_per_image"] / small["seconds_per_image"], TARGETS["scale_time"], higher_is_better=False)
        # Peak memory may grow by what the audit must hold (logits and maps), nothing more.
        grew = big["peak_rss_mb"] - small["peak_rss_mb"]
        add(f"scale: peak RSS growth {small['images']:,} -> {big['images']:,} minus held growth (MB)",
            grew - (big["held_mb"] - small["held_mb"]), 0.0, higher_is_better=False)
    for bad in report.get("bad_model") or []:
        kind = bad["ref"].split(":", 1)[0]
        add(f"bad --model {kind}:...: dataset files opened before exit 2", bad["images_opened"], 0,
            higher_is_better=False)
        if bad["exit_code"] != 2 or bad["images_opened"] < 0:
            out[-1]["met"] = False
    return out


def _f(v: float | None, digits: int = 2) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _peak_table(title: str, peaks: dict[str, Any], pred: dict[str, Any]) -> Table:
    t = Table(title=title)
    for col in ("row", "batch", "images/s", "vs peak"):
        t.add_column(col, no_wrap=True)
    t.add_row("peak forward", str(peaks["forward"]["batch_size"]), _f(peaks["forward"]["images_per_s"]), "1.00")
    t.add_row("peak forward+backward", str(peaks["forward+backward"]["batch_size"]),
              _f(peaks["forward+backward"]["images_per_s"]), "-")
    share = "" if pred["model_share"] is None else f", {pred['model_share']:.0%} in model"
    t.add_row(f"prediction (files, {pred['images']} images, {pred.get('decoder', 'threads')}{share})",
              str(pred["batch_size"]), _f(pred["images_per_s"]), _f(pred["ratio_to_peak"]))
    return t


def _methods_table(title: str, methods: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> Table:
    t = Table(title=title)
    for col in ("method", "images", "fwd/img", "bwd/img", "pass-eq/img", "images/s", "ideal/s", "efficiency",
                "in model", "library default/s", "speed-up"):
        t.add_column(col, no_wrap=True)
    base = {b["name"]: b for b in baselines}
    for r in methods:
        b = base.get(r["name"])
        t.add_row(
            r["name"], str(r["images"]), _f(r["forward_per_image"], 1), _f(r["backward_per_image"], 1),
            _f(r["pass_equivalents"], 1), _f(r["images_per_s"]), _f(r["ideal_images_per_s"]), _f(r["efficiency"]),
            "-" if r["model_share"] is None else f"{r['model_share']:.0%}",
            _f(b["row"]["images_per_s"]) if b else "-", _f(b["speedup"]) if b else "-",
        )
    return t


def print_report(report: dict[str, Any], console: Console) -> None:
    """Every table (model and prediction, methods, audits, realistic, scale, bad input, GPU) and the targets."""
    m = report["machine"]
    where = m["cuda"] or f"{m['cpu_count']} CPU cores"
    console.print(f"device {report['device']} ({where}), torch {m['torch']}, "
                  f"{m['torch_threads']} threads, load average {m['load_average']}", highlight=False)
    console.print(_peak_table("Model-bound peak and prediction", report["peaks"], report["prediction"]))
    console.print(_methods_table("Explanation methods and quality checks", report["methods"], report["baselines"]))
    _print_profiles("", report["methods"], console)

    if "cache" in report:
        c, o = report["cache"], report["overhead"]
        t = Table(title=f"Audits ({', '.join(report['audit']['methods'])}; {report['audit']['samples']} samples)")
        for col in ("row", "seconds", "vs", "ratio"):
            t.add_column(col, no_wrap=True)
        t.add_row(f"warm audit ({c['chunks_reused']}/{c['chunks_total']} chunks reused)", _f(c["warm_seconds"]),
                  f"cold {_f(c['cold_seconds'])}", _f(c["ratio"]))
        t.add_row("audit flow (Prefect)", _f(o["flow_seconds"]), f"direct {_f(o['direct_seconds'])}", _f(o["ratio"]))
        console.print(t)
        for which in ("cold", "warm"):
            stages = ", ".join(f"{k} {v:.2f}" for k, v in c[f"{which}_stages"].items())
            console.print(f"{which} audit stages (s): {stages}", highlight=False)
        _print_profiles("Audits: ", [{"name": "warm audit (a third run)", "profile": c.get("profile")},
                                     {"name": "audit flow (one more, cold)", "profile": o.get("profile")}],
                        console, what="rows over their target")

    if report.get("audits_error"):
        console.print(f"Audits (cold/warm, Prefect overhead): not measured: {report['audits_error']}", highlight=False)

    real = report.get("realistic")
    if real:
        title = f"Realistic: {real['model']} at {real['image_size']} px, random weights, {real['images']} JPEGs"
        console.print(_peak_table(title, real["peaks"], real["prediction"]))
        console.print(_methods_table("Realistic: methods and quality checks", real["methods"], []))
        _print_profiles("Realistic: ", real["methods"], console)
        _print_gpu(real.get("gpu"), console)
    elif report["device"].startswith("cuda"):
        console.print("GPU table: run with --realistic to measure nvJPEG and the LIME/SHAP device paths", highlight=False)
    else:
        console.print("GPU table: not measured (no CUDA device here)", highlight=False)

    sc = report.get("scale")
    if sc:
        t = Table(title=f"Scale: audits of generated PNG folders ({sc['model']} at {sc['image_size']} px; "
                        f"{', '.join(sc['methods'])} on {sc['samples']} images; every image predicted)")
        for col in ("images", "cold s", "s/image", "peak RSS MB", "grew in audit MB", "logits+maps MB",
                    "warm s", "warm: to predict s"):
            t.add_column(col, no_wrap=True)
        for r in sc["rows"]:
            t.add_row(f"{r['images']:,}", _f(r["seconds"]), f"{r['seconds_per_image'] * 1000:.2f} ms",
                      _f(r["peak_rss_mb"], 0), _f(r["peak_rss_mb"] - r["rss_before_mb"], 0), _f(r["held_mb"], 1),
                      _f(r["warm_seconds"]), _f(r["warm_to_predict_seconds"]))
        console.print(t)

    for bad in report.get("bad_model") or []:
        console.print(f"bad --model {bad['ref']}: exit {bad['exit_code']} after {bad['seconds']:.2f} s (a fresh "
                      f"process), {bad['images_opened']} of {bad['dataset_files']} dataset files opened first: "
                      f"{bad['message']}", highlight=False)

    t = Table(title="Targets")
    for col in ("target", "value", "limit", "met"):
        t.add_column(col, no_wrap=True)
    for g in report["targets"]:
        met = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "-"}[g["met"]]
        t.add_row(g["target"], _f(g["value"]), f"{g['rule']} {g['limit']}", met)
    console.print(t)


def _print_profiles(prefix: str, methods: list[dict[str, Any]], console: Console, what: str = "") -> None:
    """Where the time of each row that missed its target went (``--profile``)."""
    rows = [r for r in methods if r.get("profile")]
    if not rows:
        return
    what = what or f"rows under {TARGETS['efficiency']} efficiency"
    t = Table(title=f"{prefix}where the time went in {what} (one extra run each under cProfile; shares of its "
                    "wall time)")
    for col in ("row", "in model", "self time by package", "functions with the most self time"):
        t.add_column(col)
    for r in rows:
        p = r["profile"]
        t.add_row(r["name"], "-" if r.get("model_share") is None else f"{r['model_share']:.0%}",
                  ", ".join(f"{k} {v:.0%}" for k, v in list(p["packages"].items())[:5]),
                  "\n".join(f"{f['share']:.0%} {f['function']}" for f in p["top"][:5]))
    console.print(t)


def _print_gpu(gpu: dict[str, Any] | None, console: Console) -> None:
    if not gpu:
        console.print("GPU table: not measured (no CUDA device here)", highlight=False)
        return
    t = Table(title="GPU: decoders and perturbation paths")
    for col in ("row", "images/s", "vs"):
        t.add_column(col, no_wrap=True)
    cpu, dev = gpu["prediction"]["cpu"], gpu["prediction"]["gpu"]
    t.add_row(f"prediction, PIL in workers ({cpu['decoder']})", _f(cpu["images_per_s"]), "1.00")
    t.add_row(f"prediction, nvJPEG ({dev['decoder']})", _f(dev["images_per_s"]),
              _f(dev["images_per_s"] / max(cpu["images_per_s"], 1e-9)))
    for m in PERTURB_METHODS:
        if m in gpu:
            lib, fast = gpu[m]["library"], gpu[m]["device"]
            t.add_row(f"{m}, perturbed by the library", _f(lib["images_per_s"]), "1.00")
            t.add_row(f"{m}, perturbed on the device", _f(fast["images_per_s"]),
                      _f(fast["images_per_s"] / max(lib["images_per_s"], 1e-9)))
    console.print(t)


def write_json(report: dict[str, Any], path: Path) -> Path:
    """The report as JSON (atomically)."""
    atomic_write_text(Path(path), json.dumps(report, indent=2, default=str))
    return Path(path)
