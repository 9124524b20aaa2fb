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
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

from imaudit.errors import BadInputError
from imaudit.storage import is_url

ROOTS_ENV = "IMAUDIT_DATASET_ROOTS"
# Model refs an event may name: versions in a model registry, whose dataset the registry records.
REGISTRY_SCHEMES = ("release:", "mlflow:")


def outside(path: Path, roots: Sequence[Path], shown: str | None = None) -> str | None:
    """None when ``path``, symlinks resolved, lies inside one of ``roots``; else the reason, naming the root
    (as ``shown`` when given: the URL of a fetched dataset's folder rather than its local copy)."""
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return None
    via = f" (a link to {real})" if real != Path(os.path.abspath(path)) else ""
    allowed = f"{shown or roots[0]}" + (f" or {len(roots) - 1} allowed root(s)" if len(roots) > 1 else "")
    return f"outside the dataset's folder {allowed}{via}; pass --allowed-root to allow another folder"


def roots_from(values: Iterable[str | Path] | None) -> list[Path | str]:
    """Configured dataset roots: the given values, else IMAUDIT_DATASET_ROOTS (separated by os.pathsep, or by
    spaces or commas when URLs are among them). Local roots become Paths; URL roots (s3://bucket/datasets)
    stay text."""
    items = [str(p) for p in values or []]
    if not items:
        raw = os.environ.get(ROOTS_ENV, "")
        items = raw.replace(",", " ").split() if "://" in raw else raw.split(os.pathsep)
    return [p.strip().rstrip("/") if is_url(p.strip()) else Path(p.strip()).expanduser()
            for p in items if p.strip()]


def _url_inside(url: str, roots: Sequence[Path | str]) -> bool:
    """Whether ``url``, its path normalised ('..' resolved), lies under one of the URL ``roots``.

    Object stores have no symlinks, so the normalised text is the location; the query and fragment are
    refused outright (they could name another object on some filesystems)."""
    if "?" in url or "#" in url:
        return False
    proto, _, path = url.partition("://")
    norm = f"{proto}://{posixpath.normpath(path)}"
    return any(isinstance(r, str) and (norm == r or norm.startswith(r + "/")) for r in roots)


def check_event_dataset(ref: str, roots: Sequence[Path | str], trusted: str | None = None) -> str:
    """``ref`` when an event may name it: a builtin set, ``trusted`` (the release's own dataset, from
    the registry), or a folder:/csv: path or URL inside one of ``roots``. BadInputError otherwise."""
    scheme, _, rest = ref.partition(":")
    rest = rest.strip()
    if scheme == "builtin" or (trusted is not None and ref == trusted):
        return ref
    if scheme not in ("folder", "csv") or not rest:
        raise BadInputError(f"dataset {ref!r} from the release event: only builtin:, and folder: or csv: "
                            "under the deployment's dataset_roots are accepted from events")
    if not roots:
        raise BadInputError(f"dataset {ref!r} from the release event: the deployment configures no dataset_roots "
                            f"(parameter dataset_roots or {ROOTS_ENV}), so events may name only builtin: sets "
                            "or the release's own dataset")
    local_roots = [r for r in roots if isinstance(r, Path)]
    if is_url(rest):
        ok = _url_inside(rest, roots)
    else:
        path = Path(rest).expanduser()
        ok = path.is_absolute() and bool(local_roots) and outside(path, local_roots) is None
    if not ok:
        raise BadInputError(f"dataset {ref!r} from the release event is not under the deployment's dataset_roots "
                            f"({', '.join(map(str, roots))})")
    return ref


def event_refs(ref: str, dataset: str | None, roots: Sequence[Path | str]) -> tuple[str, str | None]:
    """The (model ref, dataset ref) a release event may make a worker audit, or BadInputError.

    The model must be a registry ref: ``release:`` (read from imaudit's registry, digest-checked) or
    ``mlflow:`` (a registered MLflow version, as the registry watcher announces them);
    the dataset is None (the release's own), or passes ``check_event_dataset``.
    """
    if not ref.startswith(REGISTRY_SCHEMES):
        raise BadInputError(f"model {ref!r} from the release event: only registry refs (release:NAME@VERSION, "
                            "mlflow:models:/NAME/VERSION) are audited on events")
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
