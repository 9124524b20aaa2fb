"""Datasets: a dataset ref becomes one manifest (pandas) plus a torch Dataset.

The ref's scheme picks a source from ``imaudit.audits.sources`` (one module
per scheme: folder, csv, builtin, ...); this module holds what every source
shares: probing and hashing files, split names, ids, the digest. Every readable
image becomes a manifest row; files with an image extension that cannot be
decoded are left out and listed in ``excluded`` with the reason, so the audit
goes on and the data gate reports them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imaudit import paths
from imaudit.audits.images import IMAGE_EXTENSIONS, ImageDataset, UnreadableImage, load_image, probe_image
from imaudit.audits.manifest_cache import ManifestCache
from imaudit.audits.sources import SOURCES, LoadContext, usage
from imaudit.audits.spec import ImageLimits
from imaudit.errors import RefError
from imaudit.io import text_safe, text_safe_tree

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "DatasetBundle",
    "ImageDataset",
    "load_dataset",
    "load_image",
    "dataset_digest",
    "make_bundle",
    "probe_files",
]

MANIFEST_COLUMNS = ["id", "path", "label", "split", "sha256", "width", "height", "mode", "mask"]
SPLIT_ORDER = ("train", "val", "test")
# Common spellings of the standard splits, folded so every part of imaudit can ask for "val".
SPLIT_ALIASES = {"training": "train", "valid": "val", "validation": "val", "dev": "val", "testing": "test"}
AUTO_VAL_FRACTION = 0.2
AUTO_SPLIT_SEED = 0
PROGRESS_MIN_FILES = 300  # below this, hashing is instant and a bar is noise


@dataclass
class DatasetBundle:
    """A loaded dataset: its manifest, classes, left-out files and identity digest.

    ``split_method`` says where the splits came from: "folders", "csv",
    "generated", or "auto: ..." when imaudit split a folder without split
    folders itself. ``meta`` holds source-specific facts (e.g. the planted
    shortcut of builtin:shapes and the ids of the images carrying it).
    """

    ref: str
    classes: list[str]
    manifest: pd.DataFrame
    excluded: list[dict]
    digest: str
    root: Path | None = None
    split_method: str = "given"
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, indexed 0..n-1."""
        return self.manifest[self.manifest["split"] == name].reset_index(drop=True)

    @property
    def splits(self) -> list[str]:
        """Split names present: train, val, test first, then others alphabetically."""
        return sort_splits(self.manifest["split"].unique())

    @property
    def has_masks(self) -> bool:
        return bool(self.manifest["mask"].notna().any()) if len(self.manifest) else False

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> number of images, zeros included."""
        table = self.manifest.groupby(["split", "label"]).size()
        return {s: {c: int(table.get((s, c), 0)) for c in self.classes} for s in self.splits}


def sort_splits(names: Iterable[str]) -> list[str]:
    names = set(map(str, names))
    return [s for s in SPLIT_ORDER if s in names] + sorted(names - set(SPLIT_ORDER))


def load_dataset(
    ref: str, *, cache: Path | None = None, progress: bool = True, limits: ImageLimits | None = None,
    roots: tuple[Path, ...] = (), rehash: bool = False,
) -> DatasetBundle:
    """Resolve a dataset ref into a DatasetBundle (RefError, one line, when it points at nothing).

    The scheme before the first ':' picks a source from ``imaudit.audits.sources``.
    ``progress`` shows a bar where stderr is a terminal; ``limits`` bound the
    size and dimensions of the files read (default ImageLimits()); ``roots`` are
    folders besides the dataset's own that its files may lie in (a CSV's entries).
    Files already probed are taken from the manifest cache while their size
    and mtime are unchanged; ``rehash`` probes every file again.
    """
    scheme, sep, rest = str(ref).partition(":")
    if not sep or scheme not in SOURCES:
        raise RefError(f"unknown dataset ref {ref!r}: use {usage()}")
    if not rest.strip():
        raise RefError(f"dataset ref {ref!r} names nothing after '{scheme}:'")
    ctx = LoadContext(cache=Path(cache) if cache is not None else paths.cache_dir(), progress=progress,
                      rehash=rehash, limits=limits or ImageLimits(), roots=tuple(Path(r) for r in roots))
    return SOURCES.get(scheme)().load(ref, rest.strip(), ctx)


def auto_split(manifest: pd.DataFrame, val_fraction: float = AUTO_VAL_FRACTION, seed: int = AUTO_SPLIT_SEED) -> pd.Series:
    """Deterministic stratified train/val assignment from file hashes.

    Per class, distinct file hashes are ordered by sha256(seed:hash) and the
    first ``val_fraction`` go to val. Depending only on content makes the split
    independent of file names and listing order, stable when files are added,
    and keeps identical files in the same split (no leakage made by us).
    """
    split = pd.Series("train", index=manifest.index, dtype=object)
    for _, rows in manifest.groupby("label"):
        hashes = sorted(set(rows["sha256"]), key=lambda h: hashlib.sha256(f"{seed}:{h}".encode()).hexdigest())
        n_val = int(round(val_fraction * len(hashes)))
        if len(hashes) >= 2:
            n_val = min(max(n_val, 1), len(hashes) - 1)
        val = set(hashes[:n_val])
        split[rows.index[rows["sha256"].isin(val)]] = "val"
    return split


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """Files with an image extension (others, e.g. README.txt, are not data and are ignored)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        f for f in found
        if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
    )


def split_name(name: str) -> str:
    """A split's canonical name: "validation", "valid" and "dev" are "val", and so on."""
    return SPLIT_ALIASES.get(name.lower(), name.lower())


# --- shared ----------------------------------------------------------------------------------

def probe_files(
    candidates: list[dict], progress: bool = True, desc: str = "hashing", limits: ImageLimits | None = None,
    cache: ManifestCache | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Check, hash and decode candidate files in a thread pool: (readable rows, excluded files).

    Threads suit this: reading is I/O and PIL decoders release the GIL. With a
    ``cache`` (audits/manifest_cache), a file whose size and mtime are what
    the cache recorded is not read at all: its recorded result (row or
    exclusion with its reason) is used, and the cache is rewritten after.
    """
    def fresh(c: dict) -> dict:
        try:
            return probe_image(c["path"], limits)
        except UnreadableImage as e:
            return {"error": e.reason}
        except OSError as e:
            return {"error": f"cannot read file ({type(e).__name__}: {e.strerror or e})"}

    def probe(c: dict) -> tuple[dict, os.stat_result | None, bool]:
        if cache is None:
            return fresh(c), None, False
        try:
            hit, st = cache.lookup(c["path"])
        except OSError as e:
            return {"error": f"cannot read file ({type(e).__name__}: {e.strerror or e})"}, None, False
        return (hit, st, True) if hit is not None else (fresh(c), st, False)

    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(
                pool.map(probe, candidates),
                total=len(candidates),
                desc=desc,
                unit="file",
                disable=True if not progress or len(candidates) < PROGRESS_MIN_FILES else None,
            )
        )
    if cache is not None:
        for c, (found, st, reused) in zip(candidates, results):
            if st is not None:
                cache.remember(c["path"], st, found, reused)
        cache.save()
    merged = [{**c, **found} for c, (found, _, _) in zip(candidates, results)]
    good = [r for r in merged if "error" not in r]
    excluded = [
        {"path": r["path"], "reason": r["error"], "split": r["split"], "label": r["label"]} for r in merged if "error" in r
    ]
    # object dtype: a file name that is not UTF-8 (kept as-is to open the file) fits no arrow string column.
    frame = pd.DataFrame(good, columns=[c for c in MANIFEST_COLUMNS if c != "id"], dtype=object)
    return frame.astype({"width": "int64", "height": "int64"}) if len(frame) else frame, excluded


def dataset_digest(manifest: pd.DataFrame, classes: list[str]) -> str:
    """sha256 over the class list and the sorted (sha256, label, split) rows: the data's identity.

    File names and locations do not enter, so a copied or renamed dataset keeps
    its digest, while any changed pixel, label or split changes it.
    """
    h = hashlib.sha256(json.dumps(list(classes)).encode())
    for row in sorted(zip(manifest["sha256"], manifest["label"], manifest["split"])):
        h.update("\t".join(map(str, row)).encode() + b"\n")
    return h.hexdigest()


def make_bundle(
    ref: str,
    classes: list[str],
    rows: pd.DataFrame,
    excluded: list[dict],
    root: Path | None,
    split_method: str,
    meta: dict | None = None,
    ids_given: bool = False,
) -> DatasetBundle:
    """Give rows stable ids, order and types, and wrap them in a DatasetBundle.

    Every source ends here, so ids, split order, dtypes and the digest are the
    same whatever the data came from.
    """
    if rows.empty:
        first = f" (e.g. {excluded[0]['path']}: {excluded[0]['reason']})" if excluded else ""
        raise RefError(f"{ref}: no readable images found{first}")
    rows = rows.copy()
    # Names are text (ids, labels, splits, classes, the excluded list): file names that were not
    # UTF-8 are escaped here, once; the path and mask columns keep the originals that open the files
    # (as object columns: arrow string columns hold only valid UTF-8).
    if not ids_given:
        rows["id"] = [text_safe(i) for i in _unique_ids(rows, root)]
    for col in ("id", "label", "split"):
        rows[col] = [text_safe(str(v)) for v in rows[col]]
    classes = [text_safe(str(c)) for c in classes]
    excluded = [text_safe_tree(e) for e in excluded]
    order = {s: i for i, s in enumerate(sort_splits(rows["split"].unique()))}
    rows = rows.assign(_o=rows["split"].map(order)).sort_values(["_o", "id"], kind="stable").drop(columns="_o")
    manifest = rows[MANIFEST_COLUMNS].reset_index(drop=True)
    manifest = manifest.astype({"id": str, "path": object, "sha256": str, "mode": str, "width": int, "height": int})
    # object dtype keeps None (not NaN) where an image has no mask.
    manifest["mask"] = pd.Series([m if isinstance(m, str) and m else None for m in manifest["mask"]], dtype=object)
    manifest.attrs["split_method"] = split_method
    return DatasetBundle(
        ref=ref,
        classes=list(classes),
        manifest=manifest,
        excluded=excluded,
        digest=dataset_digest(manifest, classes),
        root=root,
        split_method=split_method,
        meta=meta or {},
    )


def _unique_ids(rows: pd.DataFrame, root: Path | None) -> list[str]:
    """Path relative to the dataset root; a file listed twice (CSV) gets its split prefixed, then #n."""
    def rel(p: str) -> str:
        try:
            return Path(p).relative_to(root).as_posix() if root else Path(p).as_posix()
        except ValueError:
            return Path(p).as_posix()

    base = [rel(p) for p in rows["path"]]
    counts = Counter(base)
    ids = [f"{s}/{b}" if counts[b] > 1 else b for b, s in zip(base, rows["split"])]
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out
