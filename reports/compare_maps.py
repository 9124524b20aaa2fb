"""Maps for the changed images an audit did not explain, computed by ``imaudit compare``.

Each audit explains its own sample, chosen before anyone knew which predictions the next release
would change: an image that regressed in B is wrong in B, so B's sample took it, but A (where it was
right) usually did not. Side by side, the compare page would show B's maps next to "not explained".
So ``imaudit compare`` explains those images with the other audit's model, with the gradient methods
both audits ran (one or a few passes an image, so seconds on a CPU), for the class that audit explains
(its ``target``), and writes the overlays beside the compare page. The model must still load with the
weights the audit recorded (same digest) and each image must still have the sha256 its audit read;
otherwise the map stays "not explained" and the page says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from imaudit.audits.result import AuditResult
from imaudit.io import sha256_file

log = logging.getLogger(__name__)
# Methods compare computes: cheap enough to run in a terminal command (perturbation methods are not).
CHEAP_METHODS = ("saliency", "gradcam", "ig")
FOLDER = "compare-maps"


def _sha256(path: Path) -> str | None:
    """The file's sha256, or None when it cannot be read (gone, unreadable)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def _explain_side(r: AuditResult, folder: Path, ids: list[str], methods: list[str], out_dir: Path,
                  side: str) -> tuple[dict[tuple[str, str], str], str | None]:
    """Overlays of ``ids`` by ``methods`` with audit ``r``'s model: ((method, id) -> path relative to
    ``out_dir``), and why some or all could not be drawn."""
    from imaudit.audits.data import ImageDataset
    from imaudit.audits.device import resolve_device
    from imaudit.audits.explain import create_explainer, denormalize, render_overlays
    from imaudit.audits.spec import AuditSpec
    from imaudit.audits.stages import inputs

    try:
        spec = AuditSpec.model_validate(r.spec)
        model = inputs.model(spec)
    except Exception as e:  # noqa: BLE001 - any failure to load means: not drawn, say why
        return {}, f"{r.id}'s model could not be loaded: {type(e).__name__}: {e}"
    if r.model.digest and model.digest != r.model.digest:
        return {}, f"{r.id}'s model now has other weights than it audited (digest {model.digest[:12]})"
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"id": str}).set_index("id")
    preds = pd.read_csv(folder / "predictions.csv", dtype={"id": str}).set_index("id")
    column = "pred" if spec.target == "pred" else "y"
    usable, problems = [], []
    for i in ids:
        if i not in manifest.index or i not in preds.index:
            problems.append(f"{i}: not in {r.id}'s tables")
        elif _sha256(Path(manifest.at[i, "path"])) != manifest.at[i, "sha256"]:
            problems.append(f"{i}: the image changed or is gone since {r.id}")
        else:
            usable.append(i)
    if not usable:
        return {}, "; ".join(problems) or None
    rows = manifest.loc[usable].reset_index()
    classes = list(r.dataset.classes)
    dset = ImageDataset(rows, classes, model.transform())
    x = torch.stack([dset[k][0] for k in range(len(dset))])
    targets = torch.as_tensor(preds.loc[usable, column].to_numpy(dtype=np.int64))
    mean, std = model.data_config.get("mean"), model.data_config.get("std")
    pixels = denormalize(x, mean, std)
    out: dict[tuple[str, str], str] = {}
    target_dir = out_dir / FOLDER / side
    for m in methods:
        try:
            ex = create_explainer(m, model.module, device=resolve_device(spec.device), mean=mean, std=std,
                                  seed=spec.seed, progress=False, **(spec.method_settings.get(m) or {}))
            e = ex.explain(x, targets, usable)
            keep = [usable.index(i) for i in e.ids]
            written = render_overlays(pixels[keep], e.maps, list(e.ids), target_dir, m)
        except Exception as exc:  # noqa: BLE001 - one method failing leaves the others drawn
            problems.append(f"{m}: {type(exc).__name__}: {exc}")
            continue
        for i, rel in written.items():
            out[(m, i)] = (Path(FOLDER) / side / rel).as_posix()
    return out, "; ".join(problems) or None


def explain_changed(rows: list[dict[str, Any]], a: AuditResult, b: AuditResult, a_folder: Path, b_folder: Path,
                    shown: dict[str, dict[str, set[str]]], out_dir: Path) -> dict[str, Any]:
    """Maps the changed ``rows`` lack in one audit but have in the other.

    ``shown[side][image id]`` is the set of methods that audit drew for that image. Returns
    ``{"maps": {(side, method, id): path relative to out_dir}, "notes": [why something was not drawn]}``.
    """
    methods = [m for m in CHEAP_METHODS if m in a.explanations and m in b.explanations]
    result: dict[str, Any] = {"maps": {}, "notes": [], "methods": methods}
    if not methods:
        return result
    for side, r, folder, other in (("a", a, a_folder, "b"), ("b", b, b_folder, "a")):
        need = [row["id"] for row in rows
                if any(m in shown[other].get(row["id"], set()) and m not in shown[side].get(row["id"], set())
                       for m in methods)]
        if not need:
            continue
        drawn, why = _explain_side(r, Path(folder), need, methods, Path(out_dir), side)
        result["maps"].update({(side, m, i): p for (m, i), p in drawn.items()})
        if why:
            log.warning("compare: %s", why)
            result["notes"].append(why)
    return result
