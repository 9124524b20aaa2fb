"""Chunks of audit work, their content digests and cache keys.

Prediction and explanation are split into chunks of ``spec.chunk_size``
images. A chunk's cache key covers everything its result depends on: the
model's weights digest, the chunk's content (the images' sha256s in order,
plus the preprocessing config and, for explanations, ids and target
classes), the stage/method with its settings, and the imaudit code version.
The result is written to a content-addressed file ``cache_dir()/chunks/<key>.<ext>``
with its size and sha256 in ``<key>.<ext>.sum``, so an unchanged model and data
reuse finished chunks across audits, an audit killed midway resumes from the
chunks it finished, and a file truncated or changed since is computed again
rather than trusted. Never imports prefect.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

import imaudit
from imaudit import paths, storage
from imaudit.io import SUM_SUFFIX, read_verified, write_verified

log = logging.getLogger(__name__)

# Modules whose code decides what a chunk computes: a change to any of them
# invalidates cached chunks (the package version alone would not move while
# developing).
_CODE_MODULES = ("imaudit.audits.predict", "imaudit.audits.device", "imaudit.audits.images", "imaudit.audits.loading",
                 "imaudit.audits.tensor_store", "imaudit.audits.chunks")
_CODE_PACKAGES = ("imaudit.audits.explain",)


class Chunk(BaseModel):
    """One chunk of a stage: rows ``[start, stop)`` of the stage's ordered inputs.

    Small on purpose: it is a Prefect task parameter and the Dask message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str  # "predict" or "explain:<method>"
    index: int
    start: int
    stop: int
    key: str
    path: str  # absolute path of the content-addressed result file

    @property
    def size(self) -> int:
        return self.stop - self.start


def split_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``size`` items covering ``range(n)`` in order."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def canonical(obj: Any) -> str:
    """Deterministic JSON for hashing (sorted keys, tuples as lists, other objects by str)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(*parts: Any) -> str:
    """Hex sha256 over the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical(list(parts)).encode("utf-8")).hexdigest()


def content_digest(image_sha256s: Sequence[str], config: Mapping[str, Any]) -> str:
    """A chunk's content: sha256 over its images' sha256s (in order) and the data/transform config."""
    return digest("images", list(map(str, image_sha256s)), dict(config))


@functools.lru_cache(maxsize=8)
def source_digest(modules: tuple[str, ...], packages: tuple[str, ...] = ()) -> str:
    """imaudit's version plus a digest of the given modules' and packages' source files (subpackages too)."""
    h = hashlib.sha256(imaudit.__version__.encode())
    files: list[tuple[str, Path]] = []
    for name in modules:
        path = Path(importlib.import_module(name).__file__ or "")
        files.append((path.name, path))
    for name in packages:
        root = Path(importlib.import_module(name).__path__[0])
        files += [(p.relative_to(root).as_posix(), p) for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    for label, f in sorted(files):
        if f.is_file():
            h.update(label.encode())
            h.update(f.read_bytes())
    return f"{imaudit.__version__}+{h.hexdigest()[:16]}"


def code_version() -> str:
    """imaudit's version plus a digest of the source files that compute chunks."""
    return source_digest(_CODE_MODULES, _CODE_PACKAGES)


def chunk_key(model_digest: str, content: str, stage: str, settings: Mapping[str, Any] | None = None) -> str:
    """Cache key of one chunk: (model digest, content digest, stage/method + settings, code version)."""
    return digest(model_digest, content, stage, dict(settings or {}), code_version())


def chunk_dir() -> Path:
    """Where chunk results live: ``cache_dir()/chunks``."""
    return paths.cache_dir() / "chunks"


def entry(kind: str, key: str, suffix: str) -> Path:
    """A content-addressed cache entry of a whole stage's result (e.g. insights): ``cache_dir()/kind/<key><suffix>``."""
    return paths.cache_dir() / kind / f"{key}{suffix}"


def plan(
    stage: str,
    image_sha256s: Sequence[str],
    size: int,
    *,
    model_digest: str,
    config: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    per_image: Mapping[str, Sequence[Any]] | None = None,
    suffix: str = ".npy",
) -> list[Chunk]:
    """Split a stage's ordered inputs into keyed chunks.

    ``per_image`` holds further per-image values the result depends on (ids,
    target classes); each chunk's slice of them enters its content digest.
    """
    out: list[Chunk] = []
    root = chunk_dir()
    for i, (a, b) in enumerate(split_ranges(len(image_sha256s), size)):
        extra = {k: [str(v) for v in vals[a:b]] for k, vals in (per_image or {}).items()}
        content = content_digest(image_sha256s[a:b], {**dict(config), **({"per_image": extra} if extra else {})})
        key = chunk_key(model_digest, content, stage, settings)
        out.append(Chunk(stage=stage, index=i, start=a, stop=b, key=key, path=str(root / f"{key}{suffix}")))
    return out


class CorruptChunk(RuntimeError):
    """A chunk file that no longer matches the size and checksum recorded when it was written."""


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write one array as .npy atomically, with its size + sha256 beside it (io.write_verified)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return _share(write_verified(path, buf.getvalue()))


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write named arrays as .npz atomically, with its size + sha256 beside it."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return _share(write_verified(path, buf.getvalue()))


def _verified_bytes(path: str | Path) -> bytes:
    data, problem = read_verified(path)
    if data is None:
        raise CorruptChunk(f"chunk file {path} {problem or 'is missing'}; auditing again computes it anew")
    return data


def _shared_chunks() -> storage.Location | None:
    return storage.shared("cache/chunks")


def _share(path: Path) -> Path:
    """Copy a chunk file and its ``.sum`` to the shared store's ``cache/chunks/`` (when there is one) for
    other workers; the sum goes last, so a reader never finds a sum for a file not yet there."""
    shared = _shared_chunks()
    if shared is not None and path.parent == chunk_dir():
        shared.put_file(path, path.name)
        shared.put_file(f"{path}{SUM_SUFFIX}", f"{path.name}{SUM_SUFFIX}")
    return path


def _fetch_shared(path: Path) -> None:
    """Bring a chunk another worker computed (file and sum) from the shared store into the local cache;
    it is verified like any local chunk before it is used."""
    shared = _shared_chunks()
    name = path.name
    if shared is None or not shared.exists(f"{name}{SUM_SUFFIX}") or not shared.exists(name):
        return
    shared.get_file(name, path)
    shared.get_file(f"{name}{SUM_SUFFIX}", f"{path}{SUM_SUFFIX}")


def load_array(path: str | Path) -> np.ndarray:
    """A chunk's array, verified against its recorded size and checksum (CorruptChunk otherwise)."""
    return np.load(io.BytesIO(_verified_bytes(path)), allow_pickle=False)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """A chunk's named arrays, verified like ``load_array``."""
    with np.load(io.BytesIO(_verified_bytes(path)), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def lookup(chunk: Chunk) -> tuple[bool, str | None]:
    """Whether the chunk's file can be reused: ``(True, None)`` when it verifies (size, then sha256),
    ``(False, None)`` when there is none, ``(False, reason)`` when one was there but did not verify:
    it is removed and must be computed again, never trusted. A chunk another worker computed is fetched
    from the shared store first and verified the same way."""
    if not Path(chunk.path).is_file():
        _fetch_shared(Path(chunk.path))
    data, problem = read_verified(chunk.path)
    if problem:
        log.warning("cached chunk %s did not verify (%s); computing it again", chunk.path, problem)
    return data is not None, problem
