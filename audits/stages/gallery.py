"""Stage gallery: each sampled image with every method's overlay, and layer views, for the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from imaudit.audits.explain import denormalize, layer_views, safe_name
from imaudit.audits.result import MethodRecord
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import inputs, sample
from imaudit.audits.stages.records import Gallery, GalleryItem

log = logging.getLogger(__name__)
THUMB = 96  # px, the gallery's thumbnail side


def _overlays(record: MethodRecord) -> dict[str, str]:
    """A method record's overlays (image id -> relative PNG path); none for a method that did not apply."""
    return (record.model_extra or {}).get("overlays") or {}


def run(spec: AuditSpec, work: Path, records: dict[str, MethodRecord]) -> Gallery:
    """Thumbnails under explanations/images/, one gallery row per image of the first ``spec.gallery`` of the
    sample (stratified, so every explained class is shown), layer views under views/."""
    model = inputs.model(spec)
    x, rows, _ = sample.tensors(spec, work, 0, spec.gallery, masks=False)
    out = Gallery()
    if len(rows) == 0:
        return out
    pix = denormalize(x, model.data_config.get("mean"), model.data_config.get("std"))
    gdir = work / "explanations" / "images"
    gdir.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows.itertuples(index=False)):
        name = f"{safe_name(row.id)}.png"
        Image.fromarray(pix[i]).resize((THUMB, THUMB), Image.NEAREST).save(gdir / name, optimize=True)
        out.items.append(GalleryItem(
            id=row.id,
            label=row.label,
            pred=row.pred_label,
            correct=bool(row.correct),
            confidence=float(row.confidence),
            image=f"explanations/images/{name}",
            overlays={m: ov for m, r in records.items() if (ov := _overlays(r).get(row.id))},
        ))
    try:
        out.views = _relative(layer_views(model.module, x[:1], work / "views"), work)
    except Exception as e:  # noqa: BLE001 - a view that cannot be drawn is recorded, not fatal
        log.warning("layer views failed: %s: %s", type(e).__name__, e)
        out.views = {"error": f"{type(e).__name__}: {e}"}
    return out


def _relative(views: dict[str, Any], work: Path, folder: str = "views") -> dict[str, Any]:
    """Layer-view PNG paths relative to the audit folder (layer_views names files relative to ``folder``)."""
    def rel(p: Any) -> Any:
        if isinstance(p, str) and Path(p).is_absolute():
            return Path(p).relative_to(work).as_posix()
        if isinstance(p, str):
            return f"{folder}/{p}"
        return p

    acts = [{**a, "png": rel(a.get("png"))} for a in views.get("activations", [])]
    filt = views.get("filters")
    return {"activations": acts, "filters": ({**filt, "png": rel(filt.get("png"))} if filt else None)}
