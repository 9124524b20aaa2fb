"""Fresh imaudit homes and the audit the cache and overhead benchmarks run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imaudit import paths
from imaudit.audits.data import load_dataset
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs
from imaudit.bench.methods import method_images
from imaudit.bench.workload import DATASET, random_timm_ref

_VARS = ("IMAUDIT_HOME", "IMAUDIT_CACHE", "IMAUDIT_REPORTS", "IMAUDIT_REGISTRY")


@contextmanager
def temp_home(prefix: str = "imaudit-bench-") -> Iterator[Path]:
    """An empty IMAUDIT_HOME (report store, registry and chunk cache inside it) for the block.

    The builtin dataset is copied in from the current cache (or generated)
    before the block starts, so no timing includes building the data set.
    """
    source = paths.cache_dir() / "builtin"
    saved = {k: os.environ.get(k) for k in _VARS}
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.environ["IMAUDIT_HOME"] = str(home)
        os.environ["IMAUDIT_CACHE"] = str(home / "cache")
        for k in ("IMAUDIT_REPORTS", "IMAUDIT_REGISTRY"):
            os.environ.pop(k, None)
        if source.is_dir():
            shutil.copytree(source, home / "cache" / "builtin")
        load_dataset(DATASET, progress=False)
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        # Datasets and models loaded inside the block point into the home about to be deleted: a later
        # audit in this process (the bench run from tests, say) must load its own, not read deleted files.
        forget_loaded()
        # Best effort: a file still held open must not turn a finished bench into an error.
        shutil.rmtree(home, ignore_errors=True)


def forget_loaded() -> None:
    """Drop the per-process model/dataset caches of the audit stages, so each audit loads its own.

    Every timed audit then pays the same loading work a new process would
    (imports excepted).
    """
    inputs.forget()


def bench_audit_spec(model: str, image_size: int, methods: list[str], samples: int, device: str,
                     train_cap: int = 512) -> AuditSpec:
    """The audit the cache and overhead rows time: builtin:digits, ``methods`` on ``samples`` val
    images each (LIME/SHAP on their typical, smaller sample), train split capped at ``train_cap``."""
    return AuditSpec(
        model=random_timm_ref(model),
        dataset=DATASET,
        input_size=image_size,
        methods=methods,
        samples=samples,
        method_samples={m: method_images(m, samples) for m in methods},
        train_cap=train_cap,
        device=device,
    )
