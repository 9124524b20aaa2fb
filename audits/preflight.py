"""Preflight: bad input is refused cheap-first, before Prefect starts and before any image is decoded.

Order, cheapest first:
1. what needs no library: the output folder, files named by the options
   (a ``file:`` checkpoint, ``--generator``) and local dataset paths exist,
   ``--device cuda`` on a machine without a GPU driver; a mistyped
   ``--model file:...`` answers before torch is even imported;
2. the options that need torch: methods known, the device present;
3. the model side: ref syntax, checkpoint contents, architecture (a bad
   ``--model`` never waits for a dataset to be hashed);
4. the dataset: listing, then per file its size and image header before any
   pixel is decoded (audits/images);
5. whether model and data fit together (the model's outputs matched to the
   dataset's classes: audits/classmap).
The loaded model and dataset stay cached for the flow's first stage.
"""

from __future__ import annotations

from pathlib import Path

from imaudit import paths
from imaudit.audits.spec import AuditSpec
from imaudit.errors import BadInputError, RefError
from imaudit.io import text_safe


def _local_path(ref: str, kinds: tuple[str, ...]) -> Path | None:
    """The local path of a ``KIND:PATH`` ref of one of ``kinds`` (None for other refs and URLs)."""
    kind, sep, value = ref.partition(":")
    if not sep or kind not in kinds or "://" in value or not value.strip():
        return None
    return Path(value.strip().partition("?")[0]).expanduser()


# Device files a GPU driver creates (NVIDIA; AMD's ROCm, which torch also calls "cuda"). Without any of
# them no CUDA device can exist, which is known without importing torch (seconds on a busy machine).
_GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def no_gpu_driver() -> bool:
    """True when this is Linux and no GPU driver's device file exists (then CUDA surely is unavailable)."""
    import sys

    return sys.platform.startswith("linux") and not any(Path(p).exists() for p in _GPU_DRIVER_FILES)


def check_files(spec: AuditSpec) -> None:
    """Step 1: the output folder is usable and every local file or folder named exists."""
    for option, value in (("--model", spec.model), ("--dataset", spec.dataset), ("--out", spec.out),
                          ("--generator", spec.generator), ("--arch", spec.arch)):
        if value is not None and text_safe(str(value)) != str(value):
            raise BadInputError(
                f"{option} {text_safe(str(value))}: holds bytes that are not UTF-8; rename it or link it under a "
                "UTF-8 name (names inside a dataset may be anything)"
            )
    paths.check_folder(Path(spec.out) if spec.out else paths.report_store(), "--out")
    ckpt = _local_path(spec.model, ("file",))
    if ckpt is not None and not ckpt.is_file():
        raise RefError(f"--model {spec.model}: {'not a file' if ckpt.exists() else 'no such file'} {ckpt}")
    if spec.generator is not None and not Path(spec.generator).is_file():
        raise BadInputError(f"--generator {spec.generator}: no such file")
    data = _local_path(spec.dataset or "", ("folder", "csv"))
    if data is not None and not data.exists():
        raise RefError(f"--dataset {spec.dataset}: no such {'file' if spec.dataset.startswith('csv:') else 'folder'} {data}")
    device = (spec.device or "auto").lower()
    if device.startswith("cuda") and no_gpu_driver():  # the same answer resolve_device gives, before torch
        raise BadInputError(f"--device {device}: CUDA is not available on this machine (no GPU driver)")


def check_options(spec: AuditSpec) -> None:
    """Step 2: methods known and the device present (imports torch, touches no model or data)."""
    from imaudit.audits.device import resolve_device

    if spec.methods:
        from imaudit.audits.explain.registry import list_methods

        unknown = [m for m in spec.methods if m not in list_methods()]
        if unknown:
            raise BadInputError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(list_methods())}")
    resolve_device(spec.device)  # --device cuda without CUDA: bad input now, not a failed predict later


def check_model(spec: AuditSpec) -> None:
    """Step 3: the model side alone; every model whose outputs are its own is loaded (and cached) now.

    A source sized by the dataset (``timm:NAME?pretrained=false``, random
    weights) takes its class count from the data, so here only its
    architecture name (and ``--arch`` against it) is checked.
    """
    from imaudit.audits.stages import inputs
    from imaudit.models import model_source
    from imaudit.models.archs import check_arch
    from imaudit.models.load import same_arch

    source, value = model_source(spec.model)
    if not source.sized_by_dataset(value):
        inputs.model_only(spec)
        return
    if spec.model.startswith("timm:"):
        name = value.split("?", 1)[0]
        check_arch(name)
        same_arch(spec.arch, name.split(".", 1)[0], spec.model)


def preflight(spec: AuditSpec) -> None:
    """Check everything an audit needs, cheapest first; BadInputError (one line) at the first problem."""
    check_files(spec)
    from imaudit.audits.stages import inputs

    check_options(spec)
    check_model(spec)
    from imaudit.audits.degenerate import require_classes

    require_classes(inputs.dataset(spec))  # before a timm: model is built with one output per class
    inputs.model(spec)  # the model's outputs matched to the dataset's classes (the class map)
