"""csv:PATH — a table with columns path,label,split and an optional mask column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imaudit.audits.confine import outside
from imaudit.audits.data import DatasetBundle, make_bundle, probe_files, split_name
from imaudit.audits.images import mask_unusable
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.io import text_safe_tree


@SOURCES.register("csv")
class CsvSource(DatasetSource):
    """Rows of path,label,split[,mask]; relative paths resolve against the CSV's folder, and every
    image and mask must lie inside it (or an allowed root), symlinks resolved."""

    usage = "csv:PATH"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        return load_csv(ref, Path(rest).expanduser().resolve(), ctx)


def load_csv(ref: str, csv_path: Path, ctx: LoadContext) -> DatasetBundle:
    """Read a local CSV and the images it lists into a bundle (URL refs arrive here after fetching)."""
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
    roots = [base, *ctx.roots]
    candidates, excluded, bad_masks = [], [], []
    for row in table.itertuples(index=False):
        path, label, split = str(row.path).strip(), str(row.label).strip(), split_name(str(row.split).strip())
        mask = str(getattr(row, "mask", "") or "").strip()
        record = {"path": str(base / path) if path else "", "split": split or None, "label": label or None}
        # Confinement first: a path outside the roots is not even looked at.
        problem = (
            "no path" if not path else "no label" if not label else "no split" if not split
            else outside(base / path, roots) or ("file not found" if not (base / path).is_file() else None)
        )
        if problem:
            excluded.append({**record, "reason": problem})
            continue
        mask_path = None
        if mask:
            mask_problem = outside(base / mask, roots) or mask_unusable(base / mask, ctx.limits)
            if mask_problem:  # the image stays, without a mask; the mask is listed with the reason
                bad_masks.append({"path": str(base / mask), "image": record["path"], "reason": mask_problem})
            else:
                mask_path = str((base / mask).resolve())
        candidates.append({**record, "path": str((base / path).resolve()), "mask": mask_path})

    classes = sorted({str(lbl).strip() for lbl in table["label"] if str(lbl).strip()})
    manifest, bad = probe_files(candidates, progress=ctx.progress, desc=ref, limits=ctx.limits)
    bundle = make_bundle(ref, classes, manifest, excluded + bad, base, "csv")
    if bad_masks:
        bundle.meta["dropped_masks"] = text_safe_tree(bad_masks)
    return bundle
