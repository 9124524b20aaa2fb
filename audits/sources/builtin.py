"""builtin:digits and builtin:shapes[?options] — sets generated once into the cache, no download."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from imaudit.audits import builtin_digits, builtin_shapes
from imaudit.audits.data import DatasetBundle, make_bundle
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.io import atomic_dir


@SOURCES.register("builtin")
class BuiltinSource(DatasetSource):
    """scikit-learn's bundled digits, or generated shapes with masks and an optional planted shortcut."""

    usage = "builtin:digits, builtin:shapes[?options]"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        name, _, query = rest.partition("?")
        if name == "digits":
            if query:
                raise RefError(f"{ref}: builtin:digits takes no options (got {query!r})")
            folder = _cached_build(
                ctx.cache / "builtin" / builtin_digits.VERSION,
                lambda tmp: (builtin_digits.generate(tmp, progress=ctx.progress),
                             {"generator": builtin_digits.VERSION}),
            )
        elif name == "shapes":
            opts = builtin_shapes.parse_options(query, ref)
            folder = _cached_build(
                ctx.cache / "builtin" / opts.key(),
                lambda tmp: builtin_shapes.generate(tmp, opts, progress=ctx.progress),
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
        return make_bundle(ref, classes, rows, [], folder, "generated", meta=meta, ids_given=True)


def _cached_build(final: Path, build: Callable[[Path], tuple[pd.DataFrame, dict]]) -> Path:
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
