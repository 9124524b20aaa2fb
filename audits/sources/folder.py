"""folder:PATH-OR-URL — ImageFolder-style class folders, under split folders or not.

A URL (``s3://bucket/data``, ``gs://...``, ``https://...``, ``file://...``) is
copied into the local content-addressed cache first (imaudit.storage): only its
image files, each downloaded once.
"""

from __future__ import annotations

from pathlib import Path

from imaudit.audits.confine import outside
from imaudit.audits.data import (
    AUTO_SPLIT_SEED,
    IMAGE_EXTENSIONS,
    AUTO_VAL_FRACTION,
    SPLIT_ORDER,
    DatasetBundle,
    auto_split,
    image_files,
    make_bundle,
    probe_files,
    split_name,
)
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.storage import fetch_tree, is_url


@SOURCES.register("folder")
class FolderSource(DatasetSource):
    """``PATH/train/CLASS/*.png`` (and val/, test/), or ``PATH/CLASS/*.png`` split 80/20 by content."""

    usage = "folder:PATH-OR-URL"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        if is_url(rest):
            local = fetch_tree(rest, cache=ctx.cache, progress=ctx.progress, suffixes=IMAGE_EXTENSIONS)
            bundle = load_folder(ref, local, ctx)
            bundle.meta["fetched"] = {"url": rest, "local": str(local)}
            return bundle
        return load_folder(ref, Path(rest).expanduser().resolve(), ctx)


def load_folder(ref: str, root: Path, ctx: LoadContext) -> DatasetBundle:
    """Read a local class-folder tree into a bundle (URL refs arrive here after fetching)."""
    if not root.exists():
        raise RefError(f"{ref}: no such folder {root}")
    if not root.is_dir():
        raise RefError(f"{ref}: {root} is not a folder")
    subdirs = _subdirs(root)
    if not subdirs:
        raise RefError(f"{ref}: {root} has no class folders (expected {root}/CLASS/*.png or {root}/train/CLASS/*.png)")
    split_layout = any(split_name(d.name) in SPLIT_ORDER for d in subdirs)

    roots = [root, *ctx.roots]
    candidates: list[dict] = []
    stray: list[dict] = []
    classes: set[str] = set()
    for f in image_files(root, recursive=False):
        stray.append({"path": str(f), "reason": "image outside a class folder", "split": None, "label": None})
    groups = [(split_name(d.name), d) for d in subdirs] if split_layout else [(None, root)]
    for split, base in groups:
        if split_layout:
            for f in image_files(base, recursive=False):
                stray.append({"path": str(f), "reason": "image outside a class folder", "split": split, "label": None})
        for cdir in _subdirs(base):
            classes.add(cdir.name)
            for f in image_files(cdir, recursive=True):
                where = outside(f, roots)  # a symlink out of the folder is not followed
                if where:
                    stray.append({"path": str(f), "reason": where, "split": split, "label": cdir.name})
                else:
                    candidates.append({"path": str(f), "label": cdir.name, "split": split, "mask": None})

    known = ctx.manifest_cache(root)
    manifest, excluded = probe_files(candidates, progress=ctx.progress, desc=ref, limits=ctx.limits, cache=known)
    split_method = "folders"
    if not split_layout:
        manifest["split"] = auto_split(manifest)
        split_method = (
            f"auto: no split folders, so a stratified {1 - AUTO_VAL_FRACTION:.0%}/{AUTO_VAL_FRACTION:.0%} "
            f"train/val split by file hash (seed {AUTO_SPLIT_SEED})"
        )
    return make_bundle(ref, sorted(classes), manifest, excluded + stray, root, split_method, meta={"manifest_cache": known.stats})


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
