"""hf:ORG/NAME[?split=..&image=..&label=..&config=..&revision=..] — a Hugging Face dataset.

Read through the ``datasets`` library, offline from its local cache when the
hub is unreachable (``HF_HUB_OFFLINE=1``): the Arrow files a previous download
left in ``HF_DATASETS_CACHE``. Rows are streamed in batches (an
``IterableDataset``, shard by shard), so a large set is never held in memory;
each image's stored bytes (PNG/JPEG as the dataset holds them, undecoded) are
written once into imaudit's cache as ``SPLIT/CLASS/ROW.ext`` and from then on
the dataset is read like a folder, hashed and probed like any other source
(and, like any other source, probed once: the manifest cache keeps the results).

Options: ``split`` (comma-separated HF split names, default all; ``validation``
counts as val), ``image`` and ``label`` (columns; default the first Image and
the first ClassLabel feature), ``config`` and ``revision``. The label
feature's names are the classes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from imaudit.audits.data import (
    AUTO_SPLIT_SEED,
    AUTO_VAL_FRACTION,
    DatasetBundle,
    auto_split,
    make_bundle,
    probe_files,
    split_name,
)
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.io import atomic_dir
from imaudit.registry import split_options

OPTIONS = {
    "split": "HF split names to use, comma-separated (default: all)",
    "image": "image column (default: the first Image feature)",
    "label": "label column (default: the first ClassLabel feature)",
    "config": "dataset configuration name",
    "revision": "hub revision (branch, tag or commit)",
}
BATCH = 256
VERSION = "hf-v1"  # bump when the materialised layout changes


@SOURCES.register("hf")
class HfSource(DatasetSource):
    """A Hugging Face dataset, offline from the datasets cache, streamed into imaudit's cache once."""

    usage = "hf:ORG/NAME[?split=..&image=..&label=..&config=..]"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        name, opts = split_options(rest, OPTIONS, ref)
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
            raise RefError(f"{ref}: expected hf:ORG/NAME (a Hugging Face dataset id)")
        splits = _open(ref, name, opts)
        first = next(iter(splits.values()))
        image_col, label_col = _columns(ref, first.features, opts)
        classes = _classes(first.features[label_col])
        key = _cache_key(name, opts, sorted(splits), image_col, label_col, _identity(name, opts))
        folder = ctx.cache / "hf" / key
        if not (folder / "manifest.csv").is_file():
            with atomic_dir(folder, replace=False) as tmp:
                rows = _materialise(ref, splits, image_col, label_col, classes, tmp, ctx.progress)
                rows.to_csv(tmp / "manifest.csv", index=False)
        rows = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
        classes = classes or sorted(set(rows.loc[rows["label"] != "", "label"]))
        unlabelled = rows[rows["label"] == ""]
        candidates = [{"path": str(folder / r.path), "label": r.label, "split": r.split, "mask": None}
                      for r in rows[rows["label"] != ""].itertuples(index=False)]
        known = ctx.manifest_cache(folder)
        manifest, excluded = probe_files(candidates, progress=ctx.progress, desc=ref, cache=known)
        excluded += [{"path": str(folder / r.path), "reason": "no label", "split": r.split, "label": None}
                     for r in unlabelled.itertuples(index=False)]
        method = f"hf splits ({', '.join(splits)})"
        if set(manifest["split"]) == {"train"}:
            manifest["split"] = auto_split(manifest)
            method = (f"auto: only a train split, so a stratified {1 - AUTO_VAL_FRACTION:.0%}/{AUTO_VAL_FRACTION:.0%} "
                      f"train/val split by file hash (seed {AUTO_SPLIT_SEED})")
        bundle = make_bundle(ref, classes, manifest, excluded, folder, method, meta={"manifest_cache": known.stats})
        bundle.meta["hf"] = {"dataset": name, "splits": {s: split_name(s) for s in splits},
                             "image": image_col, "label": label_col, **{k: opts[k] for k in ("config", "revision")
                                                                        if k in opts}}
        return bundle


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise RefError("hf: dataset refs need the datasets library: pip install 'imaudit[hf]'") from None
    # Reading from the cache while offline is the normal case here, not news: datasets' warning about
    # it ("Using the latest cached version...") would only clutter the CLI's output.
    datasets.utils.logging.set_verbosity_error()
    return datasets


def _cache_dir() -> str | None:
    """The datasets cache as the environment says now (the library reads it only at import)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "datasets")
    return None


def _open(ref: str, name: str, opts: dict[str, str]) -> dict[str, Any]:
    """HF split name -> IterableDataset (streamed), for the chosen splits."""
    ds = _datasets()
    try:
        loaded = ds.load_dataset(name, opts.get("config"), revision=opts.get("revision"), streaming=True,
                                 cache_dir=_cache_dir())
    except (FileNotFoundError, ConnectionError, ValueError, ds.exceptions.DatasetNotFoundError) as exc:
        where = _cache_dir() or ds.config.HF_DATASETS_CACHE
        offline = "the hub is offline" if ds.config.HF_HUB_OFFLINE else "the hub could not be reached"
        detail = " ".join(str(exc).split())[:160]
        raise RefError(f"{ref}: dataset {name} is not in the local Hugging Face datasets cache ({where}) "
                       f"and {offline} ({detail})") from None
    available = list(loaded)
    wanted = [s.strip() for s in opts.get("split", "").split(",") if s.strip()] or available
    missing = [s for s in wanted if s not in available]
    if missing:
        raise RefError(f"{ref}: no split {missing[0]!r} (splits: {', '.join(available)})")
    return {s: loaded[s] for s in wanted}


def _columns(ref: str, features: Any, opts: dict[str, str]) -> tuple[str, str]:
    ds = _datasets()
    names = list(features)

    def pick(option: str, kind: type, what: str) -> str:
        if option in opts:
            if opts[option] not in features:
                raise RefError(f"{ref}: no column {opts[option]!r} (columns: {', '.join(names)})")
            return opts[option]
        found = [n for n in names if isinstance(features[n], kind)]
        if not found:
            raise RefError(f"{ref}: no {what} column found (columns: {', '.join(names)}); name it with ?{option}=COLUMN")
        return found[0]

    image = pick("image", ds.Image, "image")
    if not isinstance(features[image], ds.Image):
        raise RefError(f"{ref}: column {image!r} holds {type(features[image]).__name__}, not images")
    label = pick("label", ds.ClassLabel, "class-label")
    return image, label


def _classes(feature: Any) -> list[str] | None:
    """The ClassLabel's names (None: labels are plain values, collected while reading)."""
    names = getattr(feature, "names", None)
    return [str(n) for n in names] if names else None


def _identity(name: str, opts: dict[str, str]) -> str:
    """What identifies the cached copy the datasets library reads (its builder hash and sizes)."""
    ds = _datasets()
    try:
        builder = ds.load_dataset_builder(name, opts.get("config"), revision=opts.get("revision"),
                                          cache_dir=_cache_dir())
    except (FileNotFoundError, ConnectionError, ValueError):
        return ""
    info = builder.info
    splits = {k: v.num_examples for k, v in (info.splits or {}).items()}
    return json.dumps([builder.cache_dir, builder.hash, info.dataset_size, splits], sort_keys=True, default=str)


def _cache_key(name: str, opts: dict[str, str], splits: list[str], image: str, label: str, identity: str) -> str:
    blob = json.dumps([VERSION, name, opts.get("config"), opts.get("revision"), splits, image, label, identity])
    return f"{name.replace('/', '--')}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:60] or "class"


def _extension(data: bytes, path: str | None) -> str:
    """The stored image's type from its magic bytes (or the path it came from)."""
    for magic, ext in ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"),
                       (b"II*\x00", ".tif"), (b"MM\x00*", ".tif")):
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return Path(path).suffix.lower() if path and Path(path).suffix else ".img"


def _batches(dataset: Any, image: str) -> Iterator[dict[str, list]]:
    """Batches of rows with the image column left as stored bytes (no decoding while reading)."""
    ds = _datasets()
    yield from dataset.cast_column(image, ds.Image(decode=False)).iter(batch_size=BATCH)


def _materialise(ref: str, splits: dict[str, Any], image: str, label: str, classes: list[str] | None,
                 out: Path, progress: bool) -> pd.DataFrame:
    """Write every row's image bytes under ``out``; rows of (path relative to out, label, split)."""
    rows: list[dict[str, str]] = []
    for hf_split, dataset in splits.items():
        split = split_name(hf_split)
        bar = tqdm(desc=f"{ref} {hf_split}", unit="image", disable=None if progress else True)  # None: only at a terminal
        for batch in _batches(dataset, image):
            for img, lab in zip(batch[image], batch[label]):
                data = img.get("bytes") if isinstance(img, dict) else None
                src = img.get("path") if isinstance(img, dict) else None
                if data is None and src and Path(src).is_file():
                    data = Path(src).read_bytes()
                name = _label_name(lab, classes)
                index = len(rows)
                rel = Path(split) / (_safe(name) if name else "_unlabelled") / f"{index:07d}{_extension(data or b'', src)}"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(data or b"")  # an empty file is reported as unreadable, not dropped
                rows.append({"path": rel.as_posix(), "label": name or "", "split": split})
            bar.update(len(batch[label]))
        bar.close()
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def _label_name(value: Any, classes: list[str] | None) -> str | None:
    """A row's class name; None for unlabelled rows (ClassLabel -1, as in many test splits)."""
    if value is None:
        return None
    if classes is not None:
        i = int(value)
        return classes[i] if 0 <= i < len(classes) else None
    return str(value)
