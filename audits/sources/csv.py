"""csv:PATH-OR-URL — a table with columns path,label,split and an optional mask column.

For a URL the CSV is fetched first, then only the files its rows name,
relative to the CSV's folder (imaudit.storage); rows whose paths would leave
that folder are not fetched, so they show up as missing files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imaudit.audits.confine import outside
from imaudit.audits.data import DatasetBundle, make_bundle, probe_files, split_name
from imaudit.audits.images import mask_unusable
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.io import text_safe_tree
from imaudit.storage import fetch_file, fetch_tree, inside, is_url


@SOURCES.register("csv")
class CsvSource(DatasetSource):
    """Rows of path,label,split[,mask]; relative paths resolve against the CSV's folder, and every
    image and mask must lie inside it (or an allowed root), symlinks resolved."""

    usage = "csv:PATH-OR-URL"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        if is_url(rest):
            return _load_remote_csv(ref, rest, ctx)
        return load_csv(ref, Path(rest).expanduser().resolve(), ctx)


def _load_remote_csv(ref: str, url: str, ctx: LoadContext) -> DatasetBundle:
    """Fetch the CSV and the files it lists into one local folder, then read it as a local CSV."""
    table = _read_table(ref, fetch_file(url, cache=ctx.cache))
    folder, name = url.rstrip("/").rsplit("/", 1)
    listed = [str(v).strip() for col in ("path", "mask") if col in table.columns for v in table[col]]
    wanted = [p for p in listed if p and inside(p)]
    local = fetch_tree(folder, cache=ctx.cache, progress=ctx.progress, only=[name, *wanted])
    bundle = load_csv(ref, local / name, ctx, shown_base=folder)
    bundle.meta["fetched"] = {"url": url, "local": str(local)}
    return bundle


def _read_table(ref: str, csv_path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise RefError(f"{ref}: cannot read {csv_path} as CSV ({str(e).splitlines()[0]})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    return table


def load_csv(ref: str, csv_path: Path, ctx: LoadContext, shown_base: str | None = None) -> DatasetBundle:
    """Read a local CSV and the images it lists into a bundle (URL refs arrive here after fetching;
    ``shown_base``, the URL of the CSV's folder, is what reasons name instead of the local copy)."""
    if not csv_path.is_file():
        raise RefError(f"{ref}: no such file {csv_path}")
    table = _read_table(ref, csv_path)
    for col in ("path", "label", "split"):
        if col not in table.columns:
            raise RefError(f"{ref}: {csv_path} has no column {col!r} (columns: {', '.join(table.columns)})")

    base = csv_path.parent
    roots = [base, *ctx.roots]
    candidates, excluded, bad_masks = [], [], []
    for row in table.itertuples(index=False):
        path, label, split = str(row.path).strip(), str(row.label).strip(), split_name(str(row.split).strip())
        mask = str(getattr(row, "mask", "") or "").strip()
        record = {"path": str(base / path) if path else "", "split": split or None, "label": label or None}
        # Confinement first: a path outside the roots is not even looked at.
        problem = (
            "no path" if not path else "no label" if not label else "no split" if not split
            else outside(base / path, roots, shown_base) or ("file not found" if not (base / path).is_file() else None)
        )
        if problem:
            excluded.append({**record, "reason": problem})
            continue
        mask_path = None
        if mask:
            mask_problem = outside(base / mask, roots, shown_base) or mask_unusable(base / mask, ctx.limits)
            if mask_problem:  # the image stays, without a mask; the mask is listed with the reason
                bad_masks.append({"path": str(base / mask), "image": record["path"], "reason": mask_problem})
            else:
                mask_path = str((base / mask).resolve())
        candidates.append({**record, "path": str((base / path).resolve()), "mask": mask_path})

    classes = sorted({str(lbl).strip() for lbl in table["label"] if str(lbl).strip()})
    known = ctx.manifest_cache(base)
    manifest, bad = probe_files(candidates, progress=ctx.progress, desc=ref, limits=ctx.limits, cache=known)
    bundle = make_bundle(ref, classes, manifest, excluded + bad, base, "csv", meta={"manifest_cache": known.stats})
    if bad_masks:
        bundle.meta["dropped_masks"] = text_safe_tree(bad_masks)
    return bundle
