#!/usr/bin/env python
"""Do two audit.json files hold the same numbers?

    .venv/bin/python scripts/same_numbers.py BASE/audit.json NEW/audit.json [--rel 0]

Walks both documents and compares every numeric leaf (and every string or
boolean leaf on the way, so a changed verdict or finding code shows up too),
ignoring what describes the run rather than the model and data: ids,
timestamps, timings, seconds and rates, file paths, cache counts, versions.
Exits 0 when they agree, 1 listing the differences (at most 50 lines).
Used to check that a refactor leaves the demo audit's numbers unchanged, and
by tests that two audits of the same inputs agree.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# What describes the run rather than the model and data: top-level keys, dotted paths,
# and keys ignored wherever they appear (timings of single steps).
IGNORED_TOP = frozenset({"id", "created", "finished", "imaudit_version", "timings", "cache", "artifacts"})
IGNORED_PATHS = frozenset({".spec.out", ".model.release.created"})
IGNORED_ANYWHERE = frozenset({"seconds", "per_image_rate", "images_per_second", "maps_path", "overlays"})


def _ignored(path: str, key: str, also: frozenset[str]) -> bool:
    dotted = f"{path}.{key}"
    return (not path and key in IGNORED_TOP) or dotted in IGNORED_PATHS or dotted in also or key in IGNORED_ANYWHERE


def differences(
    a: Any, b: Any, path: str = "", rel: float = 0.0, abs_: float = 0.0, ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Where ``a`` and ``b`` differ in a number, string, boolean or structure (run details skipped).

    ``rel``/``abs_`` 0 means identical numbers; pass a tolerance for runs whose
    float sums may differ in their last bits (another thread count, Dask).
    ``ignore`` adds dotted paths to skip (e.g. ".spec.task_runner").
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if _ignored(path, k, ignore):
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'new' if k in b else 'base'}")
                continue
            out += differences(a[k], b[k], f"{path}.{k}", rel, abs_, ignore)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rel, abs_, ignore)]
    if _number(a) and _number(b):
        if _same_number(float(a), float(b), rel, abs_):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, str) and isinstance(b, str) and a.startswith("/") and b.startswith("/"):
        return []  # absolute paths (temp folders, the store) differ between runs by design
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same_number(x: float, y: float, rel: float, abs_: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y or abs(x - y) <= abs_ + rel * max(abs(x), abs(y))


def load(path: str | Path) -> Any:
    """audit.json of a file or of the folder holding it."""
    p = Path(path)
    return json.loads((p / "audit.json" if p.is_dir() else p).read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Do two audit.json files hold the same numbers?")
    parser.add_argument("base", help="audit.json, or the audit folder holding it")
    parser.add_argument("new", help="audit.json, or the audit folder holding it")
    parser.add_argument("--rel", type=float, default=0.0, help="relative tolerance for floats (default 0: identical)")
    args = parser.parse_args(argv)
    diffs = differences(load(args.base), load(args.new), rel=args.rel)
    for line in diffs[:50]:
        print(line)
    if len(diffs) > 50:
        print(f"... and {len(diffs) - 50} more")
    print("same numbers" if not diffs else f"{len(diffs)} differences", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
