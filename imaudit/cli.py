"""The `imaudit` command line.

Exit codes, for every command (imaudit.exits maps them in one place):
0 done and passed; 1 done and a gate failed; 2 bad input (one line naming the
ref, file or field); 3 could not complete (one line saying what, and where
the log is). Never a traceback on the console.

Each command imports what it runs inside its function (torch, Prefect, the
engine): `imaudit --help` and one-line errors stay fast. These imports are for
start-up time only; nothing here has an import cycle to dodge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

# Prefect reads these at import time; it must never try to phone home from here.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Prefect's temporary API server gives up after 20 s by default; a busy machine needs more.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402

from imaudit.errors import BadInputError, IncompleteError  # noqa: E402
from imaudit.exits import ExitCode, ExitCodeGroup  # noqa: E402

app = typer.Typer(
    cls=ExitCodeGroup,
    help="Audits for image classifiers: metrics, fit, calibration, explanations, shortcuts and reviewable reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
generative_app = typer.Typer(help="Class-conditional generators for counterfactuals and in-fill.", no_args_is_help=True)
app.add_typer(generative_app, name="generative")
CF = "Counterfactuals"  # --help panel of the generative options
# soft_wrap: paths and messages are never hard-wrapped, so they can be copied from the terminal.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's own logs on the console only with --verbose (always in the run log); stage lines always.

    Stage lines go to stderr; progress bars only where stderr is a terminal.
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    # Prefect's console handler would print task tracebacks; without -v they belong in the run log only.
    console_level = "INFO" if verbose else "CRITICAL"
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", console_level)
    for handler in logging.getLogger().handlers:  # Prefect already imported (tests, bench): same effect
        if type(handler).__name__ == "PrefectConsoleHandler":
            handler.setLevel(console_level)
    # Dask's scheduler, nanny and worker INFO lines too (read from the environment when dask is
    # first imported, also by Dask's worker processes; the level for when it already was).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose else "warning")
    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # huggingface_hub prints its own warnings on stderr (e.g. one line per network retry of an
        # uncached hf: dataset); without -v they go only to the run log, and the error stays one line.
        from huggingface_hub.utils import logging as hf_logging

        hub = hf_logging.get_logger()  # the library's root logger, with the stderr handler it adds
        for h in list(hub.handlers):
            if type(h) is logging.StreamHandler:
                hub.removeHandler(h)
    progress = logging.getLogger("imaudit.progress")
    if not any(isinstance(h, _StageLines) for h in progress.handlers):
        handler = _StageLines()
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False


class _StageLines(logging.Handler):
    """Stage lines on stderr, one per record, unpadded (they end up in CI logs as often as on terminals)."""

    def emit(self, record: "logging.LogRecord") -> None:
        err.print(escape(self.format(record)), highlight=False)


def _start_prefect() -> None:
    """Start Prefect's API before the flow, visibly, bound to this process (imaudit.flows.prefect_api)."""
    from imaudit.flows.prefect_api import start_api

    start_api(lambda line: err.print(escape(line), highlight=False))


def _summary(folder: Path) -> int:
    """Print an audit's verdict (the report's vocabulary), headline numbers and findings; return the gate exit code."""
    from imaudit.audits.result import AuditResult
    from imaudit.audits.verdict import cleared_line, cleared_shortcuts, gate_line, group_of, headline, verdict

    r = AuditResult.load(folder)
    v = verdict(r)
    colour = {"pass": "green", "attention": "yellow", "fail": "red"}.get(v.state, "magenta")
    out.print(f"[bold]{escape(r.model.ref)}[/bold] on {escape(r.dataset.ref)}: fit [bold]{r.fit.verdict}[/bold]", highlight=False)
    out.print(f"verdict: [bold {colour}]{escape(v.label)}[/bold {colour}]"
              + (f" ({escape('; '.join(v.reasons))})" if v.reasons else ""), highlight=False)
    head = headline(r)
    if head["accuracy"] is not None and head["ci"]:
        lo, hi = head["ci"]
        out.print(f"  {head['split']} accuracy {100 * head['accuracy']:.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%, n={head['n']})",
                  highlight=False)
    for split, m in r.metrics.items():
        acc = "n/a" if m.accuracy is None else f"{m.accuracy:.3f}"
        ece = "n/a" if m.ece is None else f"{m.ece:.3f}"
        out.print(f"  {split:6s} n={m.n:<6d} accuracy={acc} ECE={ece}", highlight=False)
    from imaudit.audits.coverage_groups import coverage_lines

    # Findings about the model and the data first; caveats about the explainers apart, after them.
    caveats = [f for f in r.findings if group_of(f) == "explainer"]
    shown, cleared = cleared_shortcuts([f for f in r.findings if group_of(f) != "explainer"])
    for f in shown:
        _print_finding(f)
    if cleared:
        out.print(f"  [cyan]{'info':7s}[/cyan] shortcut: {escape(cleared_line(cleared))} (each in the report)", highlight=False)
    if caveats:
        out.print("  explainer caveats (about the explanation methods, not the model):", highlight=False)
        for f in caveats:
            _print_finding(f)
    for line in coverage_lines(r.coverage):
        out.print(f"  {escape(line)}", highlight=False)
    out.print(f"{escape(gate_line(r))}; report: {escape(str(folder / 'report.html'))}", highlight=False)
    return _audit_exit(r, folder)


def _audit_exit(r, folder: Path) -> int:
    """3 (raised) when a required stage failed, 1 when the gate failed (a partial audit always does), else 0."""
    if r.status == "failed":
        from imaudit.audits.assemble import failed_stages

        raise IncompleteError(f"audit incomplete, required stage failed ({failed_stages(r.errors)}); "
                              f"partial report: {folder / 'report.html'}")
    return ExitCode.OK if r.gates.passed else ExitCode.GATE_FAILED


def _print_finding(f) -> None:
    colour = {"error": "red", "warning": "yellow"}.get(f.severity, "cyan")
    message = f.message if len(f.message) <= 200 else f.message[:199] + "…"  # the whole message is in the report
    out.print(f"  [{colour}]{f.severity:7s}[/{colour}] {escape(f.code)}: {escape(message)}", highlight=False)


@app.command()
def audit(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="timm:NAME[.TAG][?pretrained=false] | hf-hub:ORG/NAME | file:PATH-OR-URL | release:NAME@VERSION | mlflow:models:/NAME/VERSION | mlflow:models:/NAME@ALIAS")],
    dataset: Annotated[Optional[str], typer.Option(help="folder:PATH-OR-URL | csv:PATH-OR-URL | hf:ORG/NAME[?split=..&image=..&label=..&config=..] | builtin:digits | builtin:shapes[?opts]; default: the release's dataset (an MLflow version's imaudit.dataset tag)")] = None,
    arch: Annotated[Optional[str], typer.Option(help="timm architecture of a bare state_dict checkpoint")] = None,
    class_map: Annotated[Optional[str], typer.Option(help="YAML/JSON/CSV file mapping dataset classes to model labels, WordNet ids or output indices (where names do not match by themselves)")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="override the data config's input size (pixels)")] = None,
    methods: Annotated[Optional[str], typer.Option(help="comma-separated: saliency,ig,gradcam,occlusion,lime,shap,shap-gradient ('' for none)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="val images each explanation method explains (default: per explained class, by the method's cost)")] = None,
    method_samples: Annotated[Optional[str], typer.Option(help="per-method sample sizes, e.g. lime=8,shap=8")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="report store folder (default IMAUDIT_HOME/reports)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    fail_on: Annotated[Optional[str], typer.Option(help="exit 1 when a finding is at least this severe: warning | error")] = None,
    target: Annotated[str, typer.Option(help="explain the predicted (pred) or true class")] = "pred",
    batch_size: Annotated[Optional[int], typer.Option(help="inference batch size (default by device)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="DataLoader decoding processes (default: 0 on CPU, where threads decode while the model runs; up to 8 on CUDA)")] = None,
    decode: Annotated[Optional[str], typer.Option(help="where JPEGs are decoded for prediction: auto (GPU on CUDA for JPEGs of 128x128 or more) | cpu | gpu")] = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="hash and decode every dataset file again instead of trusting the manifest cache (size + mtime)")] = False,
    train_cap: Annotated[int, typer.Option(help="at most this many train images are predicted")] = 2000,
    seed: Annotated[int, typer.Option(help="seed for sampling and perturbation methods")] = 0,
    task_runner: Annotated[str, typer.Option(help="sequential | dask")] = "sequential",
    dask_address: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: a local cluster)")] = None,
    counterfactuals: Annotated[int, typer.Option(help="val images to explain with GAN counterfactuals (needs a generator: 'imaudit generative train' or --train-generator)", rich_help_panel=CF)] = 0,
    generator: Annotated[Optional[Path], typer.Option(help="pretrained generator checkpoint for counterfactuals", rich_help_panel=CF)] = None,
    cf_select: Annotated[Optional[str], typer.Option(help="which images, in order: misclassified,near-boundary,correct", rich_help_panel=CF)] = None,
    cf_margin: Annotated[Optional[float], typer.Option(help="near-boundary: top-1 minus top-2 probability below this (default 0.2)", rich_help_panel=CF)] = None,
    cf_classes: Annotated[Optional[str], typer.Option(help="only images labelled one of these classes (comma-separated)", rich_help_panel=CF)] = None,
    cf_target: Annotated[Optional[str], typer.Option(help="move every image towards this class (default: true label if wrong, else runner-up)", rich_help_panel=CF)] = None,
    cf_confidence: Annotated[Optional[float], typer.Option(help="target confidence the search must reach (default 0.9)", rich_help_panel=CF)] = None,
    cf_steps: Annotated[Optional[int], typer.Option(help="search steps at most (default 300)", rich_help_panel=CF)] = None,
    cf_set: Annotated[Optional[str], typer.Option(help="other generative settings as KEY=VALUE pairs, e.g. proximity=20,realism=0,infill=false", rich_help_panel=CF)] = None,
    generator_size: Annotated[Optional[int], typer.Option(help="use (or train) a generator of this size (default: the input size, at most 64)", rich_help_panel=CF)] = None,
    generator_epochs: Annotated[Optional[int], typer.Option(help="use (or train) a generator trained this many epochs", rich_help_panel=CF)] = None,
    generator_z_dim: Annotated[Optional[int], typer.Option(help="use (or train) a generator with this latent size", rich_help_panel=CF)] = None,
    generator_batch_size: Annotated[Optional[int], typer.Option(help="use (or train) a generator trained at this batch size (training default 64; 16 for a few hundred images)", rich_help_panel=CF)] = None,
    generator_lr: Annotated[Optional[float], typer.Option(help="use (or train) a generator trained at this Adam learning rate (training default 2e-4; 1e-3 for a few hundred images)", rich_help_panel=CF)] = None,
    generator_width: Annotated[Optional[int], typer.Option(help="use (or train) a generator of this width (channels of its first/last layer; training default 32)", rich_help_panel=CF)] = None,
    train_generator: Annotated[Optional[bool], typer.Option("--train-generator/--no-train-generator", help="train a generator when none is stored for these settings", rich_help_panel=CF)] = None,
    allowed_root: Annotated[Optional[list[Path]], typer.Option(help="a folder besides a CSV dataset's own that its image and mask paths may point into (repeatable)")] = None,
    max_image_mb: Annotated[Optional[float], typer.Option(help="image files larger than this (MiB) are left out unread (default 1024)")] = None,
    max_image_pixels: Annotated[Optional[int], typer.Option(help="images with more pixels than this are left out undecoded (default 120000000)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="JSON/YAML file with AuditSpec fields: its values win over the defaults, options given on the command line win over it")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Audit a model on a labelled image set and write audit.json + report.html.

    Exit codes: 0 completed and passed its gate; 1 completed and a gate failed
    (--fail-on, or a partial audit); 2 bad input; 3 could not complete.
    """
    _quiet_prefect(verbose)
    from pydantic import ValidationError

    from imaudit.audits.spec import AuditSpec

    # Precedence: options given on the command line > the --config file > the defaults (AuditSpec's, which
    # the options' defaults repeat for --help; tests/spine/test_audit_cli.py keeps them equal).
    fields: dict = _read_config(config) if config else {}
    given = _explicit(ctx, {
        "model": model, "dataset": dataset, "arch": arch, "class_map": class_map, "input_size": input_size, "samples": samples,
        "out_dir": out_dir, "device": device, "fail_on": fail_on, "target": target, "batch_size": batch_size, "workers": workers,
        "train_cap": train_cap, "seed": seed, "task_runner": task_runner, "dask_address": dask_address,
        "counterfactuals": counterfactuals, "generator": generator, "decode": decode, "rehash": rehash,
    })
    if "out_dir" in given:
        given["out"] = given.pop("out_dir")
    fields.update(given)
    if methods is not None:
        fields["methods"] = methods
    if allowed_root:
        fields["allowed_roots"] = [*fields.get("allowed_roots", []), *allowed_root]
    limits = {"max_file_mb": max_image_mb, "max_pixels": max_image_pixels}
    if any(v is not None for v in limits.values()):
        fields["limits"] = {**fields.get("limits", {}), **{k: v for k, v in limits.items() if v is not None}}
    gen = {field: ctx.params[param] for field, param in _GEN_PARAMS.items() if ctx.params[param] is not None}
    if gen or cf_set:
        fields["generative"] = {**fields.get("generative", {}), **gen}
    try:
        if method_samples:
            fields["method_samples"] = {**fields.get("method_samples", {}), **_parse_pairs(method_samples, "--method-samples")}
        if cf_set:
            fields["generative"].update(_parse_settings(cf_set, "--cf-set"))
        spec = AuditSpec.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"]]
        # A counterfactual setting given as an option is named as the option the user typed; one from --config
        # (or --cf-set) by its field.
        given_as = _GEN_PARAMS[loc[1]] if loc[0] == "generative" and len(loc) > 1 and loc[1] in gen else None
        name = f"--{(given_as or '.'.join(loc)).replace('_', '-')}"
        raise BadInputError(f"{name}: {first['msg']}") from None
    from imaudit.audits.preflight import preflight

    preflight(spec)  # cheap-first: bad input answers before Prefect starts
    _start_prefect()
    from imaudit.errors import AuditFailed
    from imaudit.flows.audit import run_audit

    try:
        folder = run_audit(spec)
    except AuditFailed as e:  # the partial report exists: its summary, then exit 3 (never "passed")
        if e.folder is None:
            raise
        folder = Path(e.folder)
    raise typer.Exit(_summary(folder))


# AuditSpec.generative's fields and the parameters of ``audit`` that set them (each option is its parameter's
# name with dashes: cf_select is --cf-select).
_GEN_PARAMS = {
    "select": "cf_select", "margin": "cf_margin", "classes": "cf_classes", "target": "cf_target",
    "confidence": "cf_confidence", "steps": "cf_steps", "image_size": "generator_size", "epochs": "generator_epochs",
    "z_dim": "generator_z_dim", "batch_size": "generator_batch_size", "train_lr": "generator_lr",
    "width": "generator_width", "train": "train_generator",
}


def _explicit(ctx: typer.Context, values: dict[str, object]) -> dict[str, object]:
    """The ``values`` (keyed by parameter name) that were given on the command line: an option left at its
    default is left out, so a --config file's value is not overridden by the CLI's default (click records
    where each value came from: ParameterSource). Compared by name: typer ships its own copy of click, whose
    enum is not click's."""
    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {k: v for k, v in values.items() if v is not None and given(k)}


def _parse_pairs(text: str, option: str) -> dict[str, int]:
    """'a=1,b=2' -> {'a': 1, 'b': 2}; anything else is bad input naming the option."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise BadInputError(f"{option}: expected METHOD=N pairs, got {part!r}")
        out[name.strip()] = int(value)
    return out


def _parse_settings(text: str, option: str) -> dict[str, str]:
    """'a=1,b=x' -> {'a': '1', 'b': 'x'} (pydantic converts the values); anything else is bad input naming the option."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BadInputError(f"{option}: expected KEY=VALUE pairs, got {part!r}")
        out[name.strip()] = value.strip()
    return out


def _read_config(path: Path) -> dict:
    import json

    if not path.is_file():
        raise BadInputError(f"--config {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BadInputError(f"--config {path}: not a UTF-8 text file (byte {e.start}); expected JSON or YAML") from None
    except OSError as e:
        raise BadInputError(f"--config {path}: cannot read ({e.strerror or e})") from None
    if "\x00" in text:
        raise BadInputError(f"--config {path}: binary file (NUL bytes); expected JSON or YAML")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise BadInputError(f"--config {path}: cannot parse ({e})") from None
    if not isinstance(data, dict):
        raise BadInputError(f"--config {path}: expected a mapping of AuditSpec fields")
    return data


@app.command()
def demo(
    epochs: Annotated[int, typer.Option(help="training epochs for the demo model")] = 6,
    methods: Annotated[Optional[str], typer.Option(help="explanation methods (default: all)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="val images each method explains (default: per explained class, by the method's cost)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="report store folder")] = None,
    retrain: Annotated[bool, typer.Option(help="train again even if demo-digits@1 is registered")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Train a tiny timm model on builtin:digits, release it as demo-digits@1 and audit it."""
    _quiet_prefect(verbose)
    from imaudit.flows.demo import run_demo

    if out_dir is not None:
        from imaudit import paths

        paths.check_folder(out_dir, "--out")
    _start_prefect()
    folder = run_demo(epochs=epochs, methods=methods, samples=samples, out=out_dir, retrain=retrain, console=out)
    raise typer.Exit(_summary(folder))


# --- commands added by other modules: keep each in its own block below -------------------------

# [release command]

@app.command()
def release(
    name: Annotated[Optional[str], typer.Option(help="model name (letters, digits, . _ + -)")] = None,
    version: Annotated[Optional[str], typer.Option(help="release version, e.g. 1 or 2.0.1")] = None,
    arch: Annotated[Optional[str], typer.Option(help="timm architecture the checkpoint loads into")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="checkpoint file (.pt/.pth/.safetensors)")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="dataset ref the release is audited against")] = None,
    history: Annotated[Optional[Path], typer.Option(help="training history (JSON list or CSV with epoch,train_loss,...)")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="input size in pixels (default: the checkpoint's)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="comma-separated class names in output order")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="YAML/JSON file with these fields (options given here win)")] = None,
    emit: Annotated[bool, typer.Option("--emit/--no-emit", help="announce the release to Prefect (triggers audit-on-release); without it, a running registry watcher announces it")] = True,
) -> None:
    """Register a checkpoint as NAME@VERSION (sha256, manifest) and emit imaudit.model.released.

    Exits 2 on bad input, including NAME@VERSION already released with another
    checkpoint; exits 3 when the release was registered but the event could not be sent.
    """
    from imaudit.flows.release import read_request, release_and_announce

    given = {"name": name, "version": version, "arch": arch, "checkpoint": checkpoint, "dataset": dataset,
             "history": history, "input_size": input_size, "classes": classes}
    rel, new, sent = release_and_announce(read_request(manifest, given), emit)  # BadInputError: exit 2
    state = "released" if new else "already released (same checkpoint)"
    out.print(f"{state} {rel.ref}: {rel.arch}, sha256 {rel.sha256[:12]}, dataset {rel.dataset}", highlight=False)
    if sent is None:
        return
    if not sent.sent:
        raise IncompleteError(f"{rel.ref} is registered but not announced: {sent.detail}")
    out.print(sent.detail, highlight=False)


@app.command("store-init")
def store_init() -> None:
    """Prepare the Prefect server (PREFECT_API_URL) for the shared store (IMAUDIT_STORAGE), once.

    Saves the result storage block the deployment flows persist their results with
    (remote-file-system/imaudit-results at IMAUDIT_STORAGE/prefect-results; IMAUDIT_RESULTS_BLOCK names
    another) and checks that the store can be written and read. Exits 2 without IMAUDIT_STORAGE, 3 when
    the store or the server cannot be reached.
    """
    from imaudit import storage
    from imaudit.flows import results

    try:
        url = storage.shared_url()
        if url is None:
            raise BadInputError(f"{storage.STORE_ENV} is not set: export the shared store's URL first")
        probe = storage.Location(url)
        probe.write_bytes(".imaudit-store", b"imaudit shared store\n")
        probe.read_bytes(".imaudit-store")
    except OSError as e:
        raise IncompleteError(f"cannot write and read {url}: {type(e).__name__}: {e}") from e
    try:
        ref, base = results.save_block()
    except (OSError, RuntimeError) as e:
        raise IncompleteError(f"cannot save the result storage block on the Prefect server: "
                              f"{type(e).__name__}: {e}") from e
    out.print(f"shared store {url} is writable; Prefect results go to {base} (block {ref})", highlight=False)

# [serve / compare commands]

@app.command()
def serve(
    store: Annotated[Optional[Path], typer.Option(help="report store folder (default: the shared store of IMAUDIT_STORAGE, else IMAUDIT_HOME/reports)")] = None,
    host: Annotated[str, typer.Option(help="interface to listen on (off loopback, sign-in must be configured)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8765,
    db: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the review database (default sqlite in the store; or IMAUDIT_DB_URL)")] = None,
    allowed_host: Annotated[Optional[list[str]], typer.Option(help="a host name clients use (repeatable); other Host headers get 400")] = None,
    proxy_user_header: Annotated[Optional[str], typer.Option(help="single sign-on: the header in which the proxy names the user, e.g. X-Forwarded-User")] = None,
    trusted_proxy: Annotated[Optional[list[str]], typer.Option(help="address or network of the sign-on proxy (repeatable); its X-Forwarded-For/Proto are trusted too")] = None,
    proxy_role: Annotated[str, typer.Option(help="role of proxy users without an account: viewer | reviewer | admin")] = "viewer",
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="no sign-in: anyone who reaches the port can read and record decisions (never counted by 'imaudit gate')")] = False,
) -> None:
    """Start the review app: sign in, browse audits, read reports, record approve / reject / needs-work.

    Pages need a signed-in account ('imaudit reviewers add'); with no account at all, loopback
    visitors can read but not decide. Serving off loopback without sign-in is refused.
    With IMAUDIT_STORAGE (and no --store) it serves the shared store's reports through a local
    mirror, refreshed in the background as audits are published.
    """
    from imaudit.reports import published
    from imaudit.reports.accounts import check_role
    from imaudit.reports.app import serve as run
    from imaudit.reports.auth import AuthConfig

    folder = Path(store) if store else published.readable_store()
    if store is None and published.shared_reports() is not None:
        published.keep_mirrored()
    with _signoff_errors():
        auth = AuthConfig(insecure_no_auth=insecure_no_auth, proxy_header=proxy_user_header,
                          trusted_proxies=tuple(trusted_proxy or ()), proxy_role=check_role(proxy_role))
        folder.mkdir(parents=True, exist_ok=True)
        run(folder, host=host, port=port, db_url=db, auth=auth, allowed_hosts=allowed_host or (),
            say=lambda line: out.print(escape(line), highlight=False))


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="older audit: folder or id in the store")],
    b: Annotated[str, typer.Argument(help="newer audit: folder or id in the store")],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="where to write compare.html (default: beside B)")] = None,
    store: Annotated[Optional[Path], typer.Option(help="report store folder (default IMAUDIT_HOME/reports)")] = None,
    explain_changed: Annotated[bool, typer.Option("--explain-changed/--no-explain-changed", help="compute the saliency, Grad-CAM and IG maps a changed image lacks in one audit, with that audit's model (written under compare-maps/ beside the page)")] = True,
) -> None:
    """Compare two audits: metric and per-class deltas, changed predictions, moved importance."""
    from imaudit.reports import published
    from imaudit.reports.compare import compare_folders, render_compare, summary_lines
    from imaudit.reports.store import resolve_audit

    if out_file is not None and Path(out_file).is_dir():
        raise BadInputError(f"--out {out_file} is a folder; expected the path of compare.html")
    # Audit ids are looked up in the shared store (IMAUDIT_STORAGE) when there is one, through its local mirror.
    folder = Path(store) if store else published.readable_store()
    fa, fb = resolve_audit(a, folder), resolve_audit(b, folder)
    cmp = compare_folders(fa, fb)
    path = render_compare(fa, fb, out_file or (fb / "compare.html"), cmp=cmp, explain_changed=explain_changed)
    for line in summary_lines(cmp):
        out.print(escape(line), highlight=False)
    out.print(f"comparison: {path}", highlight=False)

# [bench command]

@app.command()
def bench(
    model: Annotated[Optional[str], typer.Option(help="timm model name (random weights)")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="input size in pixels (default 64; quick 32)")] = None,
    images: Annotated[Optional[int], typer.Option(help="images each method explains (default 32; quick 8)")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    methods: Annotated[Optional[str], typer.Option(help="comma-separated methods (default: all; quick: saliency,gradcam,occlusion)")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="write the measurements as JSON here")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="tiny configuration (seconds): a smoke check")] = False,
    audits: Annotated[bool, typer.Option("--audits/--no-audits", help="time cold/warm audits and Prefect overhead")] = True,
    realistic: Annotated[bool, typer.Option("--realistic", help="add the resnet50 / 224 px / JPEG row (minutes on a CPU; with a GPU also the GPU table)")] = False,
    scale: Annotated[Optional[str], typer.Option(help="dataset sizes for the scale row, e.g. 1000,4000,16000 (one audit process each; data generated once)")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="run each method or check under its efficiency target once more under cProfile and print where its time went")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Measure throughput: peak, prediction, every method vs peak and vs the libraries' defaults, cache, Prefect;
    with --realistic a resnet50 row (and the GPU table on CUDA), with --scale how audits grow with the data."""
    _quiet_prefect(verbose)
    from rich.console import Console

    from imaudit.bench.run import BenchConfig, run_bench, write_json

    names = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    try:
        sizes = None if scale is None else [int(v) for v in scale.split(",") if v.strip()]
    except ValueError:
        raise BadInputError(f"--scale {scale}: expected comma-separated image counts, e.g. 1000,4000,16000") from None
    if sizes is not None and (not sizes or min(sizes) < 10):
        raise BadInputError(f"--scale {scale}: each size must be at least 10 images")
    cfg = BenchConfig.make(quick=quick, model=model, image_size=image_size, images=images, device=device,
                           methods=names, audits=audits, realistic=realistic or None, scale=sizes,
                           profile=profile or None)
    console = out if out.is_terminal else Console(width=180)
    report = run_bench(cfg, console)
    if out_file is not None:
        out.print(f"measurements: {write_json(report, out_file)}", highlight=False)


# [review sign-off commands: reviewers, gate]

reviewers_app = typer.Typer(help="Reviewer accounts of the review app (kept in the review database).",
                            no_args_is_help=True)
app.add_typer(reviewers_app, name="reviewers")
StoreOption = Annotated[Optional[Path], typer.Option(help="report store folder (default IMAUDIT_HOME/reports)")]
DbOption = Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the review database (default sqlite in the store; or IMAUDIT_DB_URL)")]
StdinOption = Annotated[bool, typer.Option("--password-stdin", help="read the password from the first line of stdin (for scripts)")]


@contextlib.contextmanager
def _signoff_errors() -> Iterator[None]:
    """An unusable review database or store is "could not complete" (exit 3, one line, via imaudit.exits);
    bad input passes through as it is (exit 2)."""
    from imaudit.reports.db import DatabaseProblem

    try:
        yield
    except DatabaseProblem as e:
        raise IncompleteError(str(e)) from e
    except OSError as e:
        raise IncompleteError(f"{getattr(e, 'filename', None) or 'store'}: {e.strerror or e}") from e


def _accounts(store: Optional[Path], db: Optional[str]):  # noqa: ANN202 - imported lazily
    from imaudit import paths
    from imaudit.reports.accounts import Accounts
    from imaudit.reports.db import open_review_db

    return Accounts(open_review_db(Path(store or paths.report_store()), db))


def _password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or asked twice at a terminal (never an option: it would sit in shell history)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInputError("no terminal to ask for the password: pipe it in with --password-stdin")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@reviewers_app.command("add")
def reviewers_add(
    name: Annotated[str, typer.Argument(help="account name (the single sign-on user name, when a proxy signs people in)")],
    role: Annotated[str, typer.Option(help="viewer (reads) | reviewer (records decisions) | admin (also disables accounts)")] = "reviewer",
    password_stdin: StdinOption = False,
    no_password: Annotated[bool, typer.Option("--no-password", help="single-sign-on account only: no password sign-in")] = False,
    store: StoreOption = None,
    db: DbOption = None,
) -> None:
    """Create a reviewer account; asks for its password (twice) unless --password-stdin or --no-password."""
    from imaudit.reports.accounts import check_name, check_role

    with _signoff_errors():
        name, role = check_name(name), check_role(role)  # before asking for a password
        password = None if no_password else _password(password_stdin)
        account = _accounts(store, db).add(name, role, password)
    out.print(f"added {escape(account.name)} ({account.role}{', single sign-on only' if no_password else ''})",
              highlight=False)


@reviewers_app.command("list")
def reviewers_list(store: StoreOption = None, db: DbOption = None) -> None:
    """List accounts: name, role, how they sign in, whether disabled."""
    with _signoff_errors():
        accounts = _accounts(store, db).all()
    for a in accounts:
        how = "password" if a.has_password else "sign-on only"
        out.print(f"{escape(a.name)}\t{a.role}\t{how}\t{'disabled' if a.disabled else 'active'}", highlight=False)
    if not accounts:
        out.print("no accounts (add one with: imaudit reviewers add NAME)", highlight=False)


@reviewers_app.command("password")
def reviewers_password(name: Annotated[str, typer.Argument()], password_stdin: StdinOption = False,
                       store: StoreOption = None, db: DbOption = None) -> None:
    """Set a new password; the account's open sessions end."""
    with _signoff_errors():
        account = _accounts(store, db).set_password(name, _password(password_stdin))
    out.print(f"new password for {escape(account.name)}; its sessions ended", highlight=False)


@reviewers_app.command("role")
def reviewers_role(name: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument(help="viewer | reviewer | admin")],
                   store: StoreOption = None, db: DbOption = None) -> None:
    """Change an account's role (takes effect on its next request)."""
    with _signoff_errors():
        account = _accounts(store, db).set_role(name, role)
    out.print(f"{escape(account.name)} is now {account.role}", highlight=False)


@reviewers_app.command("disable")
def reviewers_disable(name: Annotated[str, typer.Argument()], store: StoreOption = None, db: DbOption = None) -> None:
    """Disable an account: its sessions end and it cannot sign in (its past decisions stay in the log)."""
    with _signoff_errors():
        _accounts(store, db).set_disabled(name, True)
    out.print(f"disabled {escape(name)}", highlight=False)


@reviewers_app.command("enable")
def reviewers_enable(name: Annotated[str, typer.Argument()], store: StoreOption = None, db: DbOption = None) -> None:
    """Enable a disabled account again."""
    with _signoff_errors():
        _accounts(store, db).set_disabled(name, False)
    out.print(f"enabled {escape(name)}", highlight=False)


@app.command()
def gate(
    release: Annotated[str, typer.Argument(help="release:NAME@VERSION")],
    store: StoreOption = None,
    db: DbOption = None,
) -> None:
    """Release gate for CI/CD: may this release be promoted?

    Exit 0 only when the latest complete audit of the release is approved by a signed-in
    reviewer (for the audit.json on disk now) and no newer audit of it is pending review;
    1 otherwise, with one line saying why; 2 on bad input; 3 when the review database
    cannot be read or its decision log does not verify.
    """
    from imaudit import paths
    from imaudit.reports.gate import release_gate

    folder = Path(store or paths.report_store())
    with _signoff_errors():
        if not folder.is_dir():
            raise BadInputError(f"--store {folder}: no such folder")
        verdict = release_gate(release, folder, db)
    out.print(escape(verdict.line()), highlight=False)
    raise typer.Exit(ExitCode.OK if verdict.passed else ExitCode.GATE_FAILED)


# [generative commands]

@generative_app.command("train")
def generative_train(
    dataset: Annotated[str, typer.Option(help="dataset ref whose train split the GAN learns")],
    model: Annotated[str, typer.Option(help="the model the generator will explain: it learns the images this model sees (its timm eval transform)")],
    arch: Annotated[Optional[str], typer.Option(help="timm architecture of a bare state_dict checkpoint")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="the model's input size, when the audit overrides it")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 30,
    image_size: Annotated[Optional[int], typer.Option(help="generator size, a power of two (default: the input size, at most 64)")] = None,
    z_dim: Annotated[int, typer.Option(help="latent size")] = 64,
    batch_size: Annotated[int, typer.Option(help="training batch size (small data sets learn faster with 16)")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate (DCGAN's 2e-4; 1e-3 suits a few hundred images)")] = 2e-4,
    width: Annotated[int, typer.Option(help="channels of the networks' first/last layer (capacity)")] = 32,
    checkpoint: Annotated[Optional[Path], typer.Option(help="register a pretrained generator checkpoint instead of training")] = None,
    seed: Annotated[int, typer.Option(help="seed")] = 0,
    max_images: Annotated[Optional[int], typer.Option(help="train on at most this many images")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    force: Annotated[bool, typer.Option(help="train again even when a generator for this data exists")] = False,
) -> None:
    """Train a class-conditional GAN for counterfactuals and in-fill, in the model's input space (stored by dataset digest)."""
    from imaudit.audits.generative import GeneratorSettings, generative_cli_train

    settings = GeneratorSettings(image_size=image_size, epochs=epochs, z_dim=z_dim, seed=seed, max_images=max_images,
                                 batch_size=batch_size, lr=lr, width=width)
    generative_cli_train(
        dataset, model, settings, arch=arch, input_size=input_size, checkpoint=checkpoint, device=device,
        force=force, progress=err.is_terminal, echo=lambda s: out.print(s, highlight=False),
    )


def main() -> None:
    """Console-script entry point (exit codes: imaudit.exits)."""
    app()


if __name__ == "__main__":
    main()
