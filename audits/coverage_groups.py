"""Reading audit.json's ``coverage`` back: entries grouped by check, and what did not run grouped by reason.

Shared by the CLI's coverage lines and the report's Coverage section and decision card, so all three
say the same thing. Light on purpose (no torch): the review app draws reports with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class NotRun:
    """Parts of one check that did not run for one reason; ``failed`` when any of them broke."""

    reason: str
    parts: list[str]
    failed: bool


def by_check(coverage: Mapping[str, Mapping[str, Any]]) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    """Entries grouped by check: ``faithfulness:saliency`` and ``faithfulness:ig`` are parts of ``faithfulness``."""
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for name, c in coverage.items():
        check, _, part = str(name).partition(":")
        groups.setdefault(check, []).append((part, c))
    return groups


def not_run(parts: list[tuple[str, Mapping[str, Any]]]) -> list[NotRun]:
    """The parts that did not run, one row per reason, in the order they appear."""
    rows: dict[str, NotRun] = {}
    for p, c in parts:
        if not c.get("ran"):
            reason = str(c.get("reason") or "did not run")
            row = rows.setdefault(reason, NotRun(reason, [], False))
            row.parts.append(p)
            row.failed = row.failed or c.get("failed") is True
    return list(rows.values())


def _n_classes(c: Mapping[str, Any]) -> int:
    cls = c.get("classes")
    return cls if isinstance(cls, int) else len(cls or [])


def coverage_lines(coverage: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Short lines for the CLI: per check, images (per method or split) and classes; then what did not run and why."""
    lines, skipped = [], []
    for check, parts in by_check(coverage).items():
        ran = [(p, c) for p, c in parts if c.get("ran")]
        for row in not_run(parts):
            named = [p for p in row.parts if p]
            skipped.append(f"{check}{' (' + ', '.join(named) + ')' if named else ''}: {row.reason}")
        if not ran:
            continue
        classes = max(_n_classes(c) for _, c in ran)
        if len(ran) == 1 and not ran[0][0]:
            lines.append(f"{check}: {ran[0][1].get('images', 0)} images, {classes} classes")
        else:
            lines.append(f"{check}: " + ", ".join(f"{p} {c.get('images', 0)}" for p, c in ran) + f" images; {classes} classes")
    return ["coverage:", *(f"  {ln}" for ln in lines), *(f"  not run: {s}" for s in skipped)]
