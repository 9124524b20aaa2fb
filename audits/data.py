"""Dataset sources: a dataset ref becomes one manifest (pandas) plus a torch Dataset.

Refs: ``folder:PATH`` (class folders, under split folders or not), ``csv:PATH``
(columns path,label,split[,mask]), ``builtin:digits`` and
``builtin:shapes[?options]`` (generated once into the cache). Every readable
image becomes a manifest row; files with an image extension that cannot be
decoded are left out and listed in ``excluded`` with the reason, so the audit
goes on and the data gate reports them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imaudit import paths
from imaudit.audits.images import IMAGE_EXTENSIONS, ImageDataset, UnreadableImage, load_image, probe_image
from imaudit.audits.spec import ImageLimits
from imaudit.errors import RefError
from imaudit.io import atomic_dir, text_safe, text_safe_tree

__all__ = [
    "MANIFEST_COLUMNS",
    "DatasetBundle",
    "ImageDataset",
    "load_dataset",
    "load_image",
    "dataset_digest",
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
    ref: str, *, cache: Path | None = None, progress: bool = True, limits: ImageLimits | None = None
) -> DatasetBundle:
    """Resolve a dataset ref into a DatasetBundle (RefError, one line, when it points at nothing).

    ``progress`` shows a bar where stderr is a terminal; ``limits`` bound the
    size and dimensions of the files read (default ImageLimits()).
    """
    scheme, sep, rest = str(ref).partition(":")
    loaders = {"folder": _load_folder, "csv": _load_csv, "builtin": _load_builtin}
    if not sep or scheme not in loaders:
        raise RefError(
            f"unknown dataset ref {ref!r}: use folder:PATH, csv:PATH, builtin:digits or builtin:shapes[?options]"
        )
    if not rest.strip():
        raise RefError(f"dataset ref {ref!r} names nothing after '{scheme}:'")
    return loaders[scheme](ref, rest.strip(), cache=cache, progress=progress, limits=limits)


# --- folder: ---------------------------------------------------------------------------------

def _load_folder(ref: str, rest: str, *, cache: Path | None, progress: bool, limits: ImageLimits | None) -> DatasetBundle:
    root = Path(rest).expanduser().resolve()
    if not root.exists():
        raise RefError(f"{ref}: no such folder {root}")
    if not root.is_dir():
        raise RefError(f"{ref}: {root} is not a folder")
    subdirs = _subdirs(root)
    if not subdirs:
        raise RefError(f"{ref}: {root} has no class folders (expected {root}/CLASS/*.png or {root}/train/CLASS/*.png)")
    split_layout = any(_split_name(d.name) in SPLIT_ORDER for d in subdirs)

    candidates: list[dict] = []
    stray: list[dict] = []
    classes: set[str] = set()
    for f in _image_files(root, recursive=False):
        stray.append({"path": str(f), "reason": "image outside a class folder", "split": None, "label": None})
    groups = [(_split_name(d.name), d) for d in subdirs] if split_layout else [(None, root)]
    for split, base in groups:
        if split_layout:
            for f in _image_files(base, recursive=False):
                stray.append({"path": str(f), "reason": "image outside a class folder", "split": split, "label": None})
        for cdir in _subdirs(base):
            classes.add(cdir.name)
            for f in _image_files(cdir, recursive=True):
                candidates.append({"path": str(f), "label": cdir.name, "split": split, "mask": None})

    manifest, excluded = probe_files(candidates, progress=progress, desc=ref, limits=limits)
    split_method = "folders"
    if not split_layout:
        manifest["split"] = auto_split(manifest)
        split_method = (
            f"auto: no split folders, so a stratified {1 - AUTO_VAL_FRACTION:.0%}/{AUTO_VAL_FRACTION:.0%} "
            f"train/val split by file hash (seed {AUTO_SPLIT_SEED})"
        )
    return _bundle(ref, sorted(classes), manifest, excluded + stray, root, split_method)


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


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """Files with an image extension (others, e.g. README.txt, are not data and are ignored)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        f for f in found
        if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
    )


def _split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name.lower(), name.lower())


# --- csv: ------------------------------------------------------------------------------------

def _load_csv(ref: str, rest: str, *, cache: Path | None, progress: bool, limits: ImageLimits | None) -> DatasetBundle:
    csv_path = Path(rest).expanduser().resolve()
    if not csv_path.is_file():
        raise RefError(f"{ref}: no such file {csv_path}")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise RefError(f"{ref}: cannot read {csv_path} as CSV ({str(e).splitlines()[0]})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    for col in ("path", "label", "split"):
        if col not in table.columns:
            raise RefError(f"{ref}: {csv_path} has no column {col!r} (columns: {', '.join(table.columns)})")

    base = csv_path.parent
    candidates, excluded, missing_masks = [], [], []
    for row in table.itertuples(index=False):
        path, label, split = str(row.path).strip(), str(row.label).strip(), _split_name(str(row.split).strip())
        mask = str(getattr(row, "mask", "") or "").strip()
        record = {"path": str(base / path) if path else "", "split": split or None, "label": label or None}
        problem = (
            "no path" if not path else "no label" if not label else "no split" if not split
            else "file not found" if not (base / path).is_file() else None
        )
        if problem:
            excluded.append({**record, "reason": problem})
            continue
        mask_path = str((base / mask).resolve()) if mask else None
        if mask_path and not Path(mask_path).is_file():
            missing_masks.append({"path": mask_path, "image": record["path"]})
            mask_path = None
        candidates.append({**record, "path": str((base / path).resolve()), "mask": mask_path})

    classes = sorted({str(lbl).strip() for lbl in table["label"] if str(lbl).strip()})
    manifest, bad = probe_files(candidates, progress=progress, desc=ref, limits=limits)
    bundle = _bundle(ref, classes, manifest, excluded + bad, base, "csv")
    if missing_masks:
        bundle.meta["missing_masks"] = missing_masks
    return bundle


# --- builtin: --------------------------------------------------------------------------------

def _load_builtin(ref: str, rest: str, *, cache: Path | None, progress: bool, limits: ImageLimits | None) -> DatasetBundle:
    from imaudit.audits import builtin_digits, builtin_shapes

    name, _, query = rest.partition("?")
    cache_root = Path(cache) if cache is not None else paths.cache_dir()
    if name == "digits":
        if query:
            raise RefError(f"{ref}: builtin:digits takes no options (got {query!r})")
        folder = _cached_build(
            cache_root / "builtin" / builtin_digits.VERSION,
            lambda tmp: (builtin_digits.generate(tmp, progress=progress), {"generator": builtin_digits.VERSION}),
        )
    elif name == "shapes":
        opts = builtin_shapes.parse_options(query, ref)
        folder = _cached_build(
            cache_root / "builtin" / opts.key(), lambda tmp: builtin_shapes.generate(tmp, opts, progress=progress)
        )
    else:
        raise RefError(f"unknown builtin dataset {ref!r}: use builtin:digits or builtin:shapes[?options]")

    rows = pd.read_csv(folder / "manifest.csv", dtype={"label": str, "split": str, "path": str, "mask": str})
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    rows["id"] = rows["path"]
    for col in ("path", "mask"):
        rows[col] = [str(folder / p) if isinstance(p, str) and p else None for p in rows[col]]
    if meta.get("shortcut"):
        meta["shortcut"]["ids"] = rows.loc[rows["shortcut"].astype(bool), "id"].tolist()
    classes = sorted(rows["label"].unique()) if name == "digits" else sorted(meta["options"]["classes"])
    return _bundle(ref, classes, rows, [], folder, "generated", meta=meta, ids_given=True)


def _cached_build(final: Path, build) -> Path:
    """Generate a builtin set once: build into a temp folder, then rename into place.

    A set that another process finished first wins and is reused (it is identical).
    """
    if (final / "manifest.csv").is_file():
        return final
    with atomic_dir(final, replace=False) as tmp:
        rows, meta = build(tmp)
        rows.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return final


# --- shared ----------------------------------------------------------------------------------

def probe_files(
    candidates: list[dict], progress: bool = True, desc: str = "hashing", limits: ImageLimits | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """Check, hash and decode candidate files in a thread pool: (readable rows, excluded files).

    Threads suit this: reading is I/O and PIL decoders release the GIL.
    """
    def probe(c: dict) -> dict:
        try:
            return {**c, **probe_image(c["path"], limits)}
        except UnreadableImage as e:
            return {**c, "error": e.reason}
        except OSError as e:
            return {**c, "error": f"cannot read file ({type(e).__name__}: {e.strerror or e})"}

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
    good = [r for r in results if "error" not in r]
    excluded = [
        {"path": r["path"], "reason": r["error"], "split": r["split"], "label": r["label"]} for r in results if "error" in r
    ]
    return pd.DataFrame(good, columns=[c for c in MANIFEST_COLUMNS if c != "id"]), excluded


def dataset_digest(manifest: pd.DataFrame, classes: list[str]) -> str:
    """sha256 over the class list and the sorted (sha256, label, split) rows: the data's identity.

    File names and locations do not enter, so a copied or renamed dataset keeps
    its digest, while any changed pixel, label or split changes it.
    """
    h = hashlib.sha256(json.dumps(list(classes)).encode())
    for row in sorted(zip(manifest["sha256"], manifest["label"], manifest["split"])):
        h.update("\t".join(map(str, row)).encode() + b"\n")
    return h.hexdigest()


def _bundle(
    ref: str,
    classes: list[str],
    rows: pd.DataFrame,
    excluded: list[dict],
    root: Path | None,
    split_method: str,
    meta: dict | None = None,
    ids_given: bool = False,
) -> DatasetBundle:
    """Give rows stable ids, order and types, and wrap them in a DatasetBundle."""
    if rows.empty:
        first = f" (e.g. {excluded[0]['path']}: {excluded[0]['reason']})" if excluded else ""
        raise RefError(f"{ref}: no readable images found{first}")
    rows = rows.copy()
    if not ids_given:
        rows["id"] = _unique_ids(rows, root)
    # Names are text (ids, labels, splits, classes, the excluded list): file names that were not
    # UTF-8 are escaped here, once; the path and mask columns keep the originals that open the files.
    for col in ("id", "label", "split"):
        rows[col] = rows[col].astype(str).map(text_safe)
    classes = [text_safe(str(c)) for c in classes]
    excluded = [text_safe_tree(e) for e in excluded]
    order = {s: i for i, s in enumerate(sort_splits(rows["split"].unique()))}
    rows = rows.assign(_o=rows["split"].map(order)).sort_values(["_o", "id"], kind="stable").drop(columns="_o")
    manifest = rows[MANIFEST_COLUMNS].reset_index(drop=True)
    manifest = manifest.astype({"id": str, "path": str, "sha256": str, "mode": str, "width": int, "height": int})
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
    counts = pd.Series(base).value_counts()
    ids = [f"{s}/{b}" if counts[b] > 1 else b for b, s in zip(base, rows["split"])]
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}#{seen[i]}")
    return out
