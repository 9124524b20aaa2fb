"""Training history (loss curves) from a JSON or CSV file, for the fit diagnosis."""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

import pandas as pd

from imaudit.errors import BadInputError

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")


def _clean_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    if "epoch" not in row:
        raise BadInputError(f"{where}: row has no 'epoch' (columns: {', '.join(map(str, row))})")
    out: dict[str, Any] = {}
    for key, value in row.items():
        # Gaps and diverged values (NaN, inf) become None: manifests are strict JSON.
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            value = None
        if key in COLUMNS and value is not None:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise BadInputError(f"{where}: '{key}' must be a number, got {value!r}")
            value = int(value) if key == "epoch" else float(value)
        out[key] = value
    if out["epoch"] is None:
        raise BadInputError(f"{where}: 'epoch' is empty")
    return out


def check_history(rows: Any, source: str = "history") -> list[dict]:
    """Validate history rows (a list of dicts with at least 'epoch'), sorted by epoch."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadInputError(f"{source}: expected a list of rows (objects with epoch, train_loss, val_loss, ...)")
    clean = [_clean_row(r, f"{source} row {i}") for i, r in enumerate(rows)]
    return sorted(clean, key=lambda r: r["epoch"])


def load_history(path: str | Path) -> list[dict]:
    """Read training history rows from a JSON list (or {"history": [...]}) or a CSV with a header.

    Known columns: epoch (required), train_loss, train_acc, val_loss, val_acc;
    other columns are kept as they are.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"history file {path} does not exist")
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise BadInputError(f"history file {path} is not a readable CSV: {exc}") from exc
        rows: Any = frame.astype(object).where(frame.notna(), None).to_dict("records")
    else:
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"history file {path} is not valid JSON: {exc}") from exc
        if isinstance(rows, dict) and "history" in rows:
            rows = rows["history"]
    return check_history(rows, f"history file {path}")
