"""builtin:digits and builtin:shapes[?options] — sets generated once into the cache, no download."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from imaudit.audits import builtin_digits, builtin_shapes
from imaudit.audits.data import DatasetBundle, make_bundle
from imaudit.audits.sources import SOURCES, DatasetSource, LoadContext
from imaudit.errors import RefError
from imaudit.io import atomic_dir, check_fingerprint, fingerprint


log = logging.getLogger(__name__)


@SOURCES.register("builtin")
class BuiltinSource(DatasetSource):
    """scikit-learn's bundled digits, or generated shapes with masks and an optional planted shortcut."""

    usage = "builtin:digits, builtin:shapes[?options]"

    def load(self, ref: str, rest: str, ctx: LoadContext) -> DatasetBundle:
        name, _, query = rest.partition("?")
        if name == "digits":
            if query:
                raise RefError(f"{ref}: builtin:digits takes no options (got {query!r})")
            folder, cache = _cached_build(
                ctx.cache / "builtin" / builtin_digits.VERSION,
                lambda tmp: (builtin_digits.generate(tmp, progress=ctx.progress),
                             {"generator": builtin_digits.VERSION}),
            )
        elif name == "shapes":
            opts = builtin_shapes.parse_options(query, ref)
            folder, cache = _cached_build(
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
        return make_bundle(ref, classes, rows, [], folder, "generated", meta={**meta, "cache": cache}, ids_given=True)


FILES = "files.json"  # every file of a generated set with its size and sha256


def _cached_build(final: Path, build: Callable[[Path], tuple[pd.DataFrame, dict]]) -> tuple[Path, dict]:
    """Generate a builtin set once: build into a temp folder, then rename into place; (folder, cache record).

    A set that another process finished first wins and is reused (it is
    identical). A cached set is reused only when every file matches the size
    and checksum recorded when it was generated; otherwise it is generated
    again (generation is deterministic) and the record says why.
    """
    rebuilt = None
    if (final / "manifest.csv").is_file():
        rebuilt = _verify(final)
        if rebuilt is None:
            return final, {"total": 1, "reused": 1, "computed": 0, "rejected": 0}
        log.warning("cached builtin set %s did not verify (%s); generating it again", final, rebuilt)
    with atomic_dir(final, replace=rebuilt is not None) as tmp:
        rows, meta = build(tmp)
        rows.to_csv(tmp / "manifest.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): fingerprint(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / FILES).write_text(json.dumps(files), encoding="utf-8")
    record: dict = {"total": 1, "reused": 0, "computed": 1, "rejected": int(rebuilt is not None)}
    if rebuilt is not None:
        record["reason"] = rebuilt
    return final, record


def _verify(folder: Path) -> str | None:
    """Why a cached set cannot be trusted (a file missing, truncated or changed; no record), or None."""
    try:
        files = json.loads((folder / FILES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no readable {FILES}"
    for rel, expected in files.items():
        problem = check_fingerprint(folder / rel, expected)
        if problem:
            return f"{rel}: {problem}"
    return None
