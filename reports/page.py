"""What every report section can ask of the page it is drawn on.

A ``Page`` wraps one AuditResult and its folder: URLs of files beside audit.json
(confined to the folder), figures drawn once and cached by the data they show,
class names, the explained images (gallery rows), predictions.csv row numbers,
class-average images, earlier audits of the same model, and the review state.
Sections (reports/sections/) compute their value from it and draw their figures
through it; nothing here knows about any one section.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from imaudit import paths
from imaudit.audits import chunks
from imaudit.audits.result import AuditResult
from imaudit.io import atomic_write_bytes, read_verified, write_verified
from imaudit.reports.history import earlier_audits
from imaudit.reports.index import logged_decisions
from imaudit.reports.store import AuditEntry, safe_file

log = logging.getLogger(__name__)

FIGURES = "figures"
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def slug(text: Any) -> str:
    """An id/anchor-safe form of ``text`` (class names and image ids may hold anything)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")[:60] or "x"


def image_anchor(image_id: Any) -> str:
    """The page anchor of an image's gallery tile (ids may hold anything; the digest keeps anchors unique)."""
    return f"img-{slug(image_id)[:40]}-{hashlib.sha1(str(image_id).encode()).hexdigest()[:6]}"


def array_key(arr: Any) -> str | None:
    """A short digest of an array, for figure cache keys (images are too big to key by value)."""
    if arr is None:
        return None
    a = np.ascontiguousarray(arr)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()


def _figure_cache(name: str, key: Any) -> Path:
    """Where the figure ``name`` drawn from ``key`` by the current figures.py is cached."""
    code = chunks.source_digest(("imaudit.reports.figures",))
    return paths.cache_dir() / "figures" / f"{chunks.digest('figure', name, key, code)}.png"


class Page:
    """One audit being drawn as a report (static file or inside the review app)."""

    def __init__(self, result: AuditResult, folder: Path, *, base: str = "", redraw: bool = True,
                 store: Path | None = None, review: Mapping[str, Any] | None = None,
                 decisions: Mapping[str, Any] | None = None, entries: list[AuditEntry] | None = None,
                 app: Mapping[str, Any] | None = None) -> None:
        self.r = result
        self.folder = Path(folder)
        self.base = base
        self.redraw = redraw
        self.store = Path(store) if store is not None else self.folder.parent
        # A decision is only ever read from the review log (given by the caller), never from audit.json.
        self.review = dict(review) if review else None
        self.app = dict(app) if app is not None else None
        self._decisions = decisions
        self._entries = entries
        self.classes: list[str] = list(result.model.classes or result.dataset.classes or [])
        self.problems: list[dict[str, str]] = []  # figures or sections that could not be drawn
        self._n_fig = 0

    # --- files ---------------------------------------------------------------------------
    def src(self, rel: Any) -> str | None:
        """URL of a file beside audit.json, or None when the path is unsafe or the file is missing."""
        if not isinstance(rel, str) or safe_file(self.folder, rel) is None:
            return None
        return self.base + quote(rel.replace("\\", "/"), safe="/")

    def figure(self, name: str, draw: Callable[[], bytes], key: Any = None) -> str | None:
        """Draw one figure into figures/; a figure that fails is recorded and the report goes on.

        ``key`` is the data the figure shows: figures are cached by it (and by the
        drawing code), so re-auditing an unchanged model copies them instead of
        redrawing dozens of matplotlib figures. ``redraw=False`` (the app) draws
        only figures missing on disk.
        """
        self._n_fig += 1
        rel = f"{FIGURES}/{self._n_fig:03d}-{slug(name)[:40]}.png"
        path = self.folder / rel
        if self.redraw or not path.is_file():
            cached = _figure_cache(name, key) if key is not None else None
            try:
                png, problem = read_verified(cached) if cached is not None else (None, None)
                if problem:  # a damaged cache entry is never shown: redrawn and rewritten
                    log.warning("cached figure %s did not verify (%s); redrawn", cached, problem)
                if png is None:
                    png = draw()
                    if cached is not None:
                        write_verified(cached, png)
                atomic_write_bytes(path, png)
            except Exception as exc:  # noqa: BLE001 - one bad figure must not sink the report; it is shown
                log.warning("figure %s failed: %s", name, exc)
                self.problems.append({"stage": f"figure {name}", "error": f"{type(exc).__name__}: {exc}"})
                return None
        return self.src(rel)

    def class_name(self, value: Any) -> str:
        """A class index or name as the class's name."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(self.classes):
            return self.classes[value]
        if isinstance(value, str) and value.isdigit() and value not in self.classes and int(value) < len(self.classes):
            return self.classes[int(value)]
        return "—" if value is None else str(value)

    # --- explained images ----------------------------------------------------------------
    @cached_property
    def gallery_rows(self) -> list[dict[str, Any]]:
        """Every explained image: id, label, pred, correct, confidence, image, overlays, explained class."""
        rows: dict[str, dict[str, Any]] = {}
        sources = [self.r.artifacts.get("gallery")]
        sources += [(rec.model_extra or {}).get("gallery") for rec in self.r.explanations.values()]
        for src in sources:
            for row in src if isinstance(src, list) else []:
                if isinstance(row, Mapping) and row.get("id") is not None:
                    merged = rows.setdefault(str(row["id"]), {})
                    ov = {**(merged.get("overlays") or {}), **(row.get("overlays") or {})}
                    merged.update(row)
                    merged["overlays"] = ov
        for method, rec in self.r.explanations.items():
            for ident, rel in ((rec.model_extra or {}).get("overlays") or {}).items():
                if str(ident) in rows:
                    rows[str(ident)]["overlays"].setdefault(method, rel)
        target = (self.r.spec or {}).get("target", "pred")
        out = []
        for row in rows.values():
            label, pred = self.class_name(row.get("label")), self.class_name(row.get("pred"))
            correct = row.get("correct")
            if not isinstance(correct, bool):
                correct = row.get("label") is not None and label == pred
            explained = row.get("target", row.get("explained"))
            explained = self.class_name(explained) if explained is not None else (label if target == "true" else pred)
            out.append({**row, "id": str(row["id"]), "label": label, "pred": pred, "correct": correct,
                        "explained": explained})
        return out

    @cached_property
    def prediction_rows(self) -> dict[str, int]:
        """Image id -> its data row number in predictions.csv (1 = first row after the header)."""
        rel = self.r.artifacts.get("predictions")
        path = safe_file(self.folder, rel) if isinstance(rel, str) else None
        if path is None:
            return {}
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return {row["id"]: i for i, row in enumerate(csv.DictReader(f), start=1) if row.get("id")}
        except (OSError, ValueError, KeyError, csv.Error) as exc:
            self.problems.append({"stage": "predictions.csv", "error": f"{type(exc).__name__}: {exc}"})
            return {}

    def image_array(self, row: Mapping[str, Any], size: int = 96) -> np.ndarray | None:
        """A gallery row's image as float RGB in [0, 1] (None when its file is missing or unreadable)."""
        path = safe_file(self.folder, row.get("image")) if isinstance(row.get("image"), str) else None
        if path is None:
            return None
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
        except OSError:
            return None

    @cached_property
    def class_means(self) -> dict[str, np.ndarray]:
        """Mean of the explained images per explained class (and '' for all of them), as float RGB in [0, 1].

        Global importance is drawn over these, so a reviewer sees which part of a
        typical image each region is.
        """
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for row in self.gallery_rows:
            arr = self.image_array(row)
            if arr is None:
                continue
            for key in ("", row["explained"]):
                sums[key] = sums.get(key, 0) + arr
                counts[key] = counts.get(key, 0) + 1
        return {k: sums[k] / counts[k] for k in sums}

    # --- other audits and the review -----------------------------------------------------
    @cached_property
    def earlier(self) -> list[AuditEntry]:
        """Readable audits of the same model in the store, created before this one, newest first."""
        try:
            return earlier_audits(self.store, self.r, self._entries)
        except OSError as exc:
            self.problems.append({"stage": "earlier audits", "error": f"{type(exc).__name__}: {exc}"})
            return []


    @cached_property
    def decisions(self) -> Mapping[str, Any]:
        """Latest review decision per audit id (given by the app, else read from the store's database)."""
        if self._decisions is not None:
            return self._decisions
        decisions, problem = logged_decisions(self.store)
        if problem:  # a broken review database never breaks a report: it is said under Run details
            self.problems.append({"stage": "review database", "error": problem})
        return decisions
