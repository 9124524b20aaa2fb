"""Paths confined to roots: dataset entries to their dataset's folder, event-given refs to configured roots.

A CSV names files by path and a release event names a dataset by ref; both
may come from someone other than the person running the audit, so neither
may make imaudit read (and copy into a report) files from elsewhere on the
host. Paths are resolved first, symlinks included, and checked before the
file is even looked at, so nothing outside leaks through an error message
or a timing either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from imaudit.errors import BadInputError

ROOTS_ENV = "IMAUDIT_DATASET_ROOTS"


def outside(path: Path, roots: Sequence[Path]) -> str | None:
    """None when ``path``, symlinks resolved, lies inside one of ``roots``; else the reason, naming the root."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return None
    via = f" (a link to {real})" if real != Path(os.path.abspath(path)) else ""
    allowed = f"{roots[0]}" + (f" or {len(roots) - 1} allowed root(s)" if len(roots) > 1 else "")
    return f"outside the dataset's folder {allowed}{via}; pass --allowed-root to allow another folder"


def roots_from(values: Iterable[str | Path] | None) -> list[Path]:
    """Configured dataset roots: the given values, else IMAUDIT_DATASET_ROOTS (os.pathsep-separated)."""
    items = list(values or []) or [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser() for p in items]


def check_event_dataset(ref: str, roots: Sequence[Path], trusted: str | None = None) -> str:
    """``ref`` when an event may name it: a builtin set, ``trusted`` (the release's own dataset, from
    the registry), or a local folder:/csv: path inside one of ``roots``. BadInputError otherwise."""
    scheme, _, rest = ref.partition(":")
    if scheme == "builtin" or (trusted is not None and ref == trusted):
        return ref
    if scheme not in ("folder", "csv") or "://" in rest or not rest.strip():
        raise BadInputError(f"dataset {ref!r} from the release event: only builtin:, folder:PATH and csv:PATH "
                            "under the deployment's dataset_roots are accepted from events")
    if not roots:
        raise BadInputError(f"dataset {ref!r} from the release event: the deployment configures no dataset_roots "
                            f"(parameter dataset_roots or {ROOTS_ENV}), so events may name only builtin: sets "
                            "or the release's own dataset")
    path = Path(rest.strip()).expanduser()
    if not path.is_absolute() or outside(path, roots) is not None:
        raise BadInputError(f"dataset {ref!r} from the release event is not under the deployment's dataset_roots "
                            f"({', '.join(map(str, roots))})")
    return ref


def event_refs(ref: str, dataset: str | None, roots: Sequence[Path]) -> tuple[str, str | None]:
    """The (model ref, dataset ref) a release event may make a worker audit, or BadInputError.

    The model must be a ``release:`` ref (read from the registry, digest-checked);
    the dataset is None (the release's own), or passes ``check_event_dataset``.
    """
    if not ref.startswith("release:"):
        raise BadInputError(f"model {ref!r} from the release event: only release:NAME@VERSION refs are audited on events")
    if dataset in (None, "", "None"):  # an event without a dataset renders the template as "" or "None"
        return ref, None
    try:
        return ref, check_event_dataset(dataset, roots)
    except BadInputError as refused:
        from imaudit.models import model_source

        try:
            source, value = model_source(ref)
            own = source.dataset(value)
        except BadInputError:
            raise refused from None  # no such release: the refusal says more than the lookup
        if dataset == own:  # the registry's record, merely repeated by the event
            return ref, dataset
        raise
