"""Any JSON value as a short, flat table a person can read: never a nested raw structure.

Findings' evidence and a few producer-owned records have shapes the report does
not know in advance. ``flatten`` turns them into (label, value) rows: numbers
stay numbers, nested mappings become dotted labels, short lists are joined, long
lists are summarised with their length, and anything deeper than two levels is
left to audit.json (the row says so).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from imaudit.reports.templating import human, num

MAX_ROWS = 14
MAX_LIST = 8


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _text(v: Any) -> Any:
    """A scalar for a table cell: numbers as numbers (the template formats them), the rest as short text."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "—"
    if isinstance(v, (int, float)):
        return v
    s = str(v)
    return s if len(s) <= 160 else s[:159] + "…"


def _list(v: list | tuple) -> Any:
    if all(_scalar(x) for x in v):
        shown = ", ".join(num(_text(x)) if isinstance(_text(x), (int, float)) else str(_text(x)) for x in v[:MAX_LIST])
        return shown + (f" … ({len(v)} in all)" if len(v) > MAX_LIST else "")
    if all(isinstance(x, (list, tuple)) for x in v):
        inner = len(v[0]) if v and isinstance(v[0], (list, tuple)) else 0
        return f"{len(v)}×{inner} values (in audit.json)"
    return f"{len(v)} records (in audit.json)"


def flatten(value: Any, *, skip: tuple[str, ...] = (), max_rows: int = MAX_ROWS) -> list[tuple[str, Any]]:
    """(label, value) rows for a mapping (or any value), at most ``max_rows``; see the module docstring."""
    rows: list[tuple[str, Any]] = []
    if not isinstance(value, Mapping):
        return [("value", _text(value) if _scalar(value) else _list(value) if isinstance(value, (list, tuple)) else str(value))]

    def walk(prefix: str, v: Any, depth: int) -> None:
        if _scalar(v):
            rows.append((prefix, _text(v)))
        elif isinstance(v, (list, tuple)):
            rows.append((prefix, _list(v)))
        elif isinstance(v, Mapping):
            if depth >= 2:
                rows.append((prefix, f"{len(v)} entries (in audit.json)"))
                return
            for k, x in v.items():
                walk(f"{prefix} · {human(k)}" if prefix else human(k), x, depth + 1)
        else:
            rows.append((prefix, str(v)))

    for k, v in value.items():
        if k in skip:
            continue
        walk(human(k), v, 0)
    if len(rows) > max_rows:
        more = len(rows) - max_rows + 1
        rows = rows[: max_rows - 1] + [("…", f"{more} more values in audit.json")]
    return rows


def records(items: Any, limit: int = 10) -> dict[str, Any] | None:
    """A list of flat records as {cols, rows, more}: scalar columns only, at most ``limit`` rows."""
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(x, Mapping) for x in items):
        return None
    cols: list[str] = []
    for x in items[:limit]:
        cols += [str(k) for k, v in x.items() if _scalar(v) and str(k) not in cols]
    cols = cols[:8]
    rows = [[_text(x.get(c)) for c in cols] for x in items[:limit]]
    return {"cols": [human(c) for c in cols], "rows": rows, "more": max(0, len(items) - limit)}
