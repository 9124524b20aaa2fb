"""The ``generative`` section of audit.json: counterfactuals plus the in-fill comparison.

``run_counterfactual_section`` is what the flow calls once the model, the
val images and the generator artifact are at hand. It picks the images
(misclassified first, then the correct ones closest to the decision boundary),
searches counterfactuals, saves their PNGs, and compares deletion/insertion
faithfulness of one attribution method with grey/blur replacement versus
generative in-fill (quality.deletion_insertion).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imaudit.audits.device import forward_batched

from .counterfactual import counterfactuals
from .infill import generative_infill
from .store import GeneratorArtifact

# Numbers copied from each deletion_insertion result into the comparison.
_FAITHFULNESS_KEYS = (
    "deletion_auc",
    "insertion_auc",
    "random_deletion_auc",
    "random_insertion_auc",
    "deletion_gain",
    "insertion_gain",
    "count",
)


def select_images(logits: Tensor, labels: Tensor, n: int) -> tuple[list[int], list[str]]:
    """Indices of up to ``n`` images to explain and why each was chosen.

    Misclassified images first (most confident mistakes first), then correct
    ones with the smallest top-1 / top-2 margin: where a counterfactual is
    most informative.
    """
    prob = logits.float().softmax(1)
    top = prob.topk(min(2, prob.shape[1]), dim=1).values
    margin = top[:, 0] - top[:, -1]
    wrong = (prob.argmax(1) != labels).nonzero().flatten()
    right = (prob.argmax(1) == labels).nonzero().flatten()
    wrong = wrong[(-top[wrong, 0]).argsort(stable=True)]
    right = right[margin[right].argsort(stable=True)]
    chosen = torch.cat([wrong, right])[:n].tolist()
    return chosen, ["misclassified" if i in set(wrong.tolist()) else "near-boundary" for i in chosen]


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
    labels: Tensor,
    normalize: Callable[[Tensor], Tensor],
    *,
    maps: np.ndarray | None = None,
    targets: Tensor | None = None,
    steps: int = 16,
    seed: int = 0,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Deletion/insertion scores of one set of maps under blur, grey and generative replacement.

    ``images`` are pixels; ``labels`` condition the in-fill; maps default to
    Saliency of the predicted class. Grey is quality's ``zero`` baseline (the
    dataset mean colour in normalised input space).
    """
    from imaudit.audits.quality import deletion_insertion

    inputs = normalize(images.float())
    device = next(iter(model.parameters()), torch.empty(0)).device
    if targets is None:
        targets = forward_batched(model, inputs, device).argmax(1)
    method = "given"
    if maps is None:
        maps, method = saliency_maps(model, inputs, targets), "saliency"
    sources: dict[str, Any] = {"blur": "blur", "grey": "zero"}
    for mode in ("reconstruction", "neutral"):
        sources[f"generative-{mode}"] = generative_infill(
            artifact, images, labels, normalize=normalize, mode=mode, seed=seed, device=device
        )
    scores: dict[str, Any] = {}
    for name, baseline in sources.items():
        res = deletion_insertion(model, inputs, targets, maps, steps=steps, baseline=baseline, seed=seed, ids=ids)
        scores[name] = {k: res.get(k) for k in _FAITHFULNESS_KEYS}
        scores[name]["curves"] = res.get("curves")
    recon_error = sources["generative-reconstruction"].recon_error
    return {
        "maps": method,
        "n": len(images),
        "steps": steps,
        "baselines": scores,
        "recon_error_mean": float(recon_error.mean()) if len(recon_error) else None,
        "note": "lower deletion_auc / higher insertion_auc = more faithful; generative in-fill keeps images on the data manifold",
    }


def run_counterfactual_section(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | Sequence[int],
    ids: Sequence[str],
    artifact: GeneratorArtifact,
    normalize: Callable[[Tensor], Tensor],
    out_dir: Path,
    *,
    n: int = 8,
    seed: int = 0,
    steps: int = 200,
    confidence: float = 0.0,
    maps: np.ndarray | None = None,
    deletion_steps: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """The ``generative`` section of audit.json for val ``images`` (pixels in [0, 1], N,C,H,W).

    Keys: generator (identity, losses_final), success_rate, mean_distance,
    mean_latent_distance, items (see counterfactuals; ``pngs`` paths are
    relative to ``out_dir.parent``, i.e. the audit folder when ``out_dir`` is
    a sub-folder of it), failures, selection, samples_png and infill (the
    faithfulness comparison, or {"error": ...} when it failed). ``maps``, when
    given, are attribution maps aligned with ``images`` for the comparison.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_t = torch.as_tensor(labels).long().reshape(-1)
    device = next(iter(model.parameters()), torch.empty(0)).device
    logits = forward_batched(model, normalize(images.float()), device)
    chosen, why = select_images(logits, labels_t, n)
    sel = torch.as_tensor(chosen, dtype=torch.long)
    sel_ids = [str(ids[i]) for i in chosen]
    result = counterfactuals(
        model, artifact, images[sel], labels_t[sel], normalize=normalize, steps=steps, confidence=confidence,
        seed=seed, out_dir=out_dir, ids=sel_ids, progress=progress,
    )
    reason = dict(zip(sel_ids, why))
    for item in result["items"]:
        item["selected_as"] = reason.get(item["id"])
        item["pngs"] = {k: f"{out_dir.name}/{v}" for k, v in item["pngs"].items()}
    samples = artifact.path / "samples.png"
    if samples.is_file():
        shutil.copyfile(samples, out_dir / "generator-samples.png")
        result["samples_png"] = f"{out_dir.name}/generator-samples.png"
    result["selection"] = {"n": len(chosen), "misclassified": why.count("misclassified"), "near_boundary": why.count("near-boundary")}
    if not chosen:
        result["infill"] = {"error": "no images to compare on"}
        return result
    try:
        result["infill"] = compare_infill(
            model, artifact, images[sel], labels_t[sel], normalize,
            maps=None if maps is None else np.asarray(maps)[chosen],
            steps=deletion_steps, seed=seed, ids=sel_ids,
        )
    except Exception as e:  # noqa: BLE001 - the comparison is extra; its failure is recorded, counterfactuals stand
        result["infill"] = {"error": f"{type(e).__name__}: {e}"}
    return result
