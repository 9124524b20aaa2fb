"""The ``generative`` section of audit.json: counterfactuals, where they change, and the in-fill comparison.

``run_counterfactual_section`` is what the audit's counterfactual stage calls
once the model, the images (pixels in the model's input space) and the
generator artifact are at hand. It picks the images (``Selection``), searches
counterfactuals, saves their figures, aggregates where the changes
concentrate per target class (concentration.py) and compares deletion curves
under grey, blur and generative in-fill on the same maps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imaudit.audits.device import forward_batched
from imaudit.errors import BadInputError

from .concentration import concentrate
from .counterfactual import SearchSettings, counterfactuals
from .figures import save_concentration_png, save_legend, stem
from .infill import generative_infill
from .store import GeneratorArtifact

SELECT_KINDS = ("misclassified", "near-boundary", "correct")
INFILL_NOTE = (
    "Each fill puts different content where pixels are removed, so AUCs are comparable within a fill, not across "
    "fills. Per fill, 'random deletion' is what the fill does to the model by itself (removing evidence, or pushing "
    "images off the data: the lower, the more the fill moves the model); 'gain' is how much better than random the "
    "map orders the pixels under that fill. This cannot say which fill is right, nor prove a map faithful in general. "
    "A reconstruction conditioned on the true label is not offered: it puts the class evidence back into every "
    "removed pixel."
)


@dataclass(frozen=True)
class Selection:
    """Which images to explain, in order of preference.

    ``select`` kinds: misclassified (most confident mistakes first),
    near-boundary (correct, with top-1 minus top-2 probability below
    ``margin``, smallest first), correct (the other correct images, taking
    classes in turn). ``classes`` (label indices) keeps only images of those
    classes; ``target`` (a class index) moves every image towards that class
    and leaves out images already predicted as it.
    """

    select: tuple[str, ...] = SELECT_KINDS
    margin: float = 0.2
    classes: tuple[int, ...] = ()
    target: int | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.select if k not in SELECT_KINDS]
        if unknown or not self.select:
            raise BadInputError(f"select: {unknown or 'nothing'}; choose from {', '.join(SELECT_KINDS)}")
        if not 0 < self.margin <= 1:
            raise BadInputError(f"margin={self.margin}: must lie in (0, 1]")


def select_images(probs: Tensor, labels: Tensor, n: int, selection: Selection | None = None) -> list[dict[str, Any]]:
    """Up to ``n`` images to explain: [{index, selected_as, margin}] in the order of ``selection.select``."""
    sel = selection or Selection()
    probs = probs.float()
    labels = labels.long()
    top = probs.topk(min(2, probs.shape[1]), dim=1).values
    margin = top[:, 0] - top[:, -1]
    pred = probs.argmax(1)
    ok = torch.ones(len(probs), dtype=torch.bool)
    if sel.classes:
        ok &= torch.isin(labels, torch.tensor(sel.classes, dtype=torch.long))
    if sel.target is not None:
        ok &= pred != sel.target
    wrong = (ok & (pred != labels)).nonzero().flatten()
    right = (ok & (pred == labels)).nonzero().flatten()
    near = right[margin[right] < sel.margin]
    near = near[margin[near].argsort(stable=True)]
    rest = right[margin[right] >= sel.margin]
    pools = {
        "misclassified": wrong[(-top[wrong, 0]).argsort(stable=True)].tolist(),
        "near-boundary": near.tolist(),
        "correct": _round_robin(rest[margin[rest].argsort(stable=True)].tolist(), labels),
    }
    chosen: list[dict[str, Any]] = []
    for kind in sel.select:
        for i in pools[kind]:
            if len(chosen) >= n:
                return chosen
            chosen.append({"index": int(i), "selected_as": kind, "margin": round(float(margin[i]), 4)})
    return chosen


def _round_robin(order: list[int], labels: Tensor) -> list[int]:
    """``order`` re-ordered to take one image per class in turn (each class keeps its own order)."""
    queues: dict[int, list[int]] = {}
    for i in order:
        queues.setdefault(int(labels[i]), []).append(i)
    out: list[int] = []
    while any(queues.values()):
        for q in queues.values():
            if q:
                out.append(q.pop(0))
    return out


def saliency_maps(model: nn.Module, inputs: Tensor, targets: Tensor) -> np.ndarray:
    """|gradient| maps (Captum Saliency), max over channels: the cheap default order for the comparison."""
    from captum.attr import Saliency

    device = next(iter(model.parameters()), torch.empty(0)).device
    attr = Saliency(model).attribute(inputs.detach().to(device).clone().requires_grad_(True), target=targets.to(device), abs=True)
    return attr.detach().amax(1).float().cpu().numpy()


def compare_infill(
    model: nn.Module,
    artifact: GeneratorArtifact,
    images: Tensor,
    normalize: Callable[[Tensor], Tensor],
    *,
    maps: np.ndarray | None = None,
    targets: Tensor | None = None,
    steps: int = 16,
    random_trials: int = 3,
    seed: int = 0,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Deletion curves of the same maps under blur, grey and the label-free generative fill.

    ``images`` are pixels; maps default to Saliency of the predicted class.
    Grey is quality's ``zero`` baseline (the dataset mean colour in normalised
    input space). Per fill: the map's deletion AUC, the random orders'
    deletion AUC (what the fill does by itself), the gain of the map over
    random, and the model's probability with every pixel replaced
    (``all_replaced``).
    """
    from imaudit.audits.quality import deletion_insertion

    inputs = normalize(images.float())
    device = next(iter(model.parameters()), torch.empty(0)).device
    if targets is None:
        targets = forward_batched(model, inputs, device).argmax(1)
    method = "given"
    if maps is None:
        maps, method = saliency_maps(model, inputs, targets), "saliency"
    fills: dict[str, Any] = {
        "blur": "blur",
        "grey": "zero",
        "generative-neutral": generative_infill(artifact, images, normalize=normalize, mode="neutral", seed=seed,
                                                device=device),
    }
    scores: dict[str, Any] = {}
    for name, fill in fills.items():
        res = deletion_insertion(model, inputs, targets, maps, steps=steps, baseline=fill, seed=seed, ids=ids,
                                 random_trials=random_trials)
        curves = res.get("curves") or {}
        scores[name] = {
            "deletion_auc": res.get("deletion_auc"),
            "random_deletion_auc": res.get("random_deletion_auc"),
            "deletion_gain": res.get("deletion_gain"),
            "start": curves.get("deletion", [None])[0],
            "all_replaced": curves.get("deletion", [None])[-1],
            "count": res.get("count"),
            "curves": {k: curves.get(k) for k in ("x", "deletion", "random_deletion")},
        }
    recon_error = fills["generative-neutral"].recon_error
    return {
        "maps": method,
        "n": len(images),
        "steps": steps,
        "random_trials": random_trials,
        "fills": scores,
        "neutral_fit_error": float(recon_error.mean()) if len(recon_error) else None,
        "note": INFILL_NOTE,
    }


@dataclass
class Candidates:
    """Images the section may explain: pixels in the model's input space and what is known about them.

    ``masks`` (N, H, W) are object masks aligned with the images, when the
    dataset has them; ``chosen`` (``select_images`` records indexing the
    images) skips the selection when the caller already made it on the
    audit's predictions.
    """

    images: Tensor
    labels: Tensor
    ids: list[str]
    masks: np.ndarray | None = None
    chosen: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class SectionSettings:
    """How many images, which ones, how the search goes, and whether to compare in-fill."""

    n: int = 8
    selection: Selection = field(default_factory=Selection)
    search: SearchSettings = field(default_factory=SearchSettings)
    seed: int = 0
    infill: bool = True
    deletion_steps: int = 16


def run_counterfactual_section(
    model: nn.Module,
    artifact: GeneratorArtifact,
    normalize: Callable[[Tensor], Tensor],
    candidates: Candidates,
    out_dir: Path,
    settings: SectionSettings | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The ``generative`` section of audit.json for ``candidates``.

    Keys: generator, settings, selection, items (see ``counterfactuals``; PNG
    paths relative to ``out_dir.parent``, the audit folder when ``out_dir`` is
    a sub-folder of it), counts, searched, success_rate, mean_distance,
    failures, concentration (per target class: images, grid, boxes, object
    share, png), legend_png, samples_png, infill and coverage.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = settings or SectionSettings()
    selection, images = cfg.selection, candidates.images
    labels_t = torch.as_tensor(candidates.labels).long().reshape(-1)
    chosen = candidates.chosen
    if chosen is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
        probs = forward_batched(model, normalize(images.float()), device, softmax=True)
        chosen = select_images(probs, labels_t, cfg.n, selection)
    sel = torch.as_tensor([c["index"] for c in chosen], dtype=torch.long)
    sel_ids = [str(candidates.ids[c["index"]]) for c in chosen]
    targets = None if selection.target is None else [selection.target] * len(chosen)
    result = counterfactuals(
        model, artifact, images[sel], labels_t[sel], target_classes=targets, normalize=normalize,
        settings=cfg.search, seed=cfg.seed, out_dir=out_dir, ids=sel_ids, progress=progress,
    )
    changes = result.pop("changes")
    why = dict(zip(sel_ids, chosen))
    for item in result["items"]:
        item["selected_as"] = why[item["id"]]["selected_as"]
        item["margin"] = why[item["id"]]["margin"]
        item["pngs"] = {k: f"{out_dir.name}/{v}" for k, v in item["pngs"].items()}
    result["settings"]["selection"] = {**asdict(selection), "select": list(selection.select),
                                       "classes": [artifact.classes[c] for c in selection.classes],
                                       "target": None if selection.target is None else artifact.classes[selection.target]}
    result["selection"] = {"n": len(chosen), **{k: sum(c["selected_as"] == k for c in chosen) for k in SELECT_KINDS}}
    masks = candidates.masks
    mask_by_id = {} if masks is None else {sel_ids[j]: np.asarray(masks)[c["index"]] for j, c in enumerate(chosen)}
    result["concentration"] = _concentration(changes, result["items"], mask_by_id, out_dir)
    result["legend_png"] = f"{out_dir.name}/{save_legend(out_dir / 'legend.png').name}"
    samples = artifact.path / "samples.png"
    if samples.is_file():
        shutil.copyfile(samples, out_dir / "generator-samples.png")
        result["samples_png"] = f"{out_dir.name}/generator-samples.png"
    result["coverage"] = {
        "ran": True,
        "images": result["searched"],
        "classes": sorted({it["target_name"] for it in result["items"] if it["outcome"] in ("success", "not-reached")}),
        "reason": None if result["searched"] else "no selected image could be searched (see counts)",
    }
    result["infill"] = _infill(model, artifact, images[sel], normalize, sel_ids, cfg)
    return result


def _concentration(changes: dict[str, np.ndarray], items: list[dict[str, Any]], masks: dict[str, np.ndarray],
                   out_dir: Path) -> dict[str, Any]:
    """concentrate() per target class, with a PNG per group and the arrays dropped (JSON only)."""
    targets = {it["id"]: it["target_name"] for it in items if it["outcome"] == "success"}
    conc = concentrate(changes, targets, masks)
    groups = [(f"towards {cls}", g) for cls, g in conc["per_class"].items()]
    if conc["overall"] is not None:
        groups.append(("all targets", conc["overall"]))
    for title, g in groups:
        name = f"{stem('map-' + title.replace(' ', '-'))}.png"
        save_concentration_png(g, out_dir / name, f"{title} ({g['images']} image{'' if g['images'] == 1 else 's'})")
        g["png"] = f"{out_dir.name}/{name}"
        g.pop("map", None)
    return conc


def _infill(model: nn.Module, artifact: GeneratorArtifact, images: Tensor, normalize: Callable[[Tensor], Tensor],
            ids: list[str], cfg: SectionSettings) -> dict[str, Any]:
    if not cfg.infill:
        return {"skipped": "turned off (generative.infill: false)"}
    if not len(images):
        return {"skipped": "no images to compare on"}
    try:
        return compare_infill(model, artifact, images, normalize, steps=cfg.deletion_steps, seed=cfg.seed, ids=ids)
    except Exception as e:  # noqa: BLE001 - the comparison is extra; its failure is recorded, counterfactuals stand
        return {"error": f"{type(e).__name__}: {e}"}
