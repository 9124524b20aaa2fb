"""Faithfulness by deletion and insertion curves (Petsiuk et al. 2018, RISE).

Deletion: replace the most important pixels first, in ``steps`` equal steps,
and follow the target-class probability; a faithful map makes it fall fast
(low area under the curve). Insertion: start from the replacement image and
put the most important pixels back first; a faithful map makes the probability
rise fast (high AUC). Both are compared with random pixel orders, so a method
is judged against chance on the same model and images.

Every (image, order, deletion|insertion, step) input is built lazily in chunks
of ``batch_size`` and pushed through the model once: the number of forward
calls is ceil(total / batch_size), not one per image or step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from imaudit.audits.aggregate import area_pool
from imaudit.audits.device import autocast, backoff_chunks, default_batch_size, to_device
from imaudit.errors import BadInputError

# (images (B,C,H,W), removed (B,1,H,W) bool) -> replacement images (B,C,H,W); only the
# removed pixels are used. Generative in-fill plugs in here (it needs the mask).
Replacement = Callable[[Tensor, Tensor], Tensor]


def _blur(images: Tensor, removed: Tensor | None = None) -> Tensor:
    """Strong Gaussian blur (sigma = side/8), RISE's insertion start: keeps colour, removes shape."""
    side = min(images.shape[-2:])
    sigma = max(1.0, side / 8)
    k = min(2 * math.ceil(3 * sigma) + 1, 2 * side - 1)
    k = k if k % 2 else k - 1
    return gaussian_blur(images, [k, k], [sigma, sigma])


def _mean(images: Tensor, removed: Tensor | None = None) -> Tensor:
    return images.mean(dim=(-2, -1), keepdim=True).expand_as(images)


def _zero(images: Tensor, removed: Tensor | None = None) -> Tensor:
    """Zeros of the model input, i.e. the dataset mean colour after normalisation."""
    return torch.zeros_like(images)


_BUILTIN: dict[str, Replacement] = {"blur": _blur, "mean": _mean, "zero": _zero}


def make_replacement(baseline: str | Replacement) -> tuple[str, Replacement, bool]:
    """(name, function, depends_on_mask) for a baseline name or a callable.

    Built-ins ignore the mask, so their replacement is computed once per image.
    A callable is assumed to depend on the mask (called per chunk) unless it has
    an attribute ``mask_independent = True``.
    """
    if callable(baseline):
        return getattr(baseline, "__name__", "custom"), baseline, not getattr(baseline, "mask_independent", False)
    if baseline not in _BUILTIN:
        raise BadInputError(f"baseline={baseline!r}: expected one of {sorted(_BUILTIN)} or a callable")
    return baseline, _BUILTIN[baseline], False


# Cell scores closer than this, relative to the image's largest, are ties. Maps computed with another
# thread count or on a Dask worker differ in their last bits; without this, such near-ties would order
# cells differently and move deletion/insertion AUCs (by up to 0.01 on small images).
TIE_RESOLUTION = 2.0 ** -20


def _ranks(scores: Tensor, gen: torch.Generator) -> Tensor:
    """Rank of every cell (0 = removed first): descending score, ties broken by a seeded random key.

    Scores are first quantised to ``TIE_RESOLUTION`` of the image's largest
    absolute score, so the order does not depend on float rounding noise, and
    the tie keys come from ``gen`` (seeded by the caller), so the same maps
    give the same order in every run, on every runner.
    """
    n, p = scores.shape
    scale = scores.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    quantised = torch.round(scores.double() / scale / TIE_RESOLUTION)
    tie = torch.rand(n, p, generator=gen, dtype=torch.float64)
    # lexsort by (-score, tie): sort by tie first, then a stable sort by score.
    order = torch.argsort(tie, dim=1)
    order = torch.gather(order, 1, torch.argsort(-torch.gather(quantised, 1, order), dim=1, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(p).expand(n, p).contiguous())
    return ranks.to(torch.int32)


def _auc(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under curves sampled at equal steps over [0, 1] (last axis)."""
    return np.trapezoid(curves, dx=1.0 / (curves.shape[-1] - 1), axis=-1)


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    maps: np.ndarray,
    *,
    steps: int = 16,
    baseline: str | Replacement = "blur",
    device: torch.device | None = None,
    batch_size: int | None = None,
    random_trials: int = 1,
    seed: int = 0,
    order: Literal["value", "abs"] = "value",
    grid: int | None = 16,
    ids: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Deletion and insertion AUCs of the target probability, for the maps' order and random orders.

    images: model inputs (N,C,H,W) (already normalised); targets: class per image;
    maps: (N,h,w). The image is cut into ``grid`` x ``grid`` cells (None: single
    pixels) and cells are removed highest summed ``order`` value first, ties at
    random. Cells, not pixels, follow Samek et al. 2017 ("region perturbation"):
    a random order of single pixels makes salt-and-pepper images the model has
    never seen, which collapse its probability and make the random baseline
    meaningless. Returns mean and per-image AUCs, mean curves,
    ``deletion_gain`` = (random - map) / random deletion AUC (higher is more
    faithful), ``insertion_gain`` = (map - random) / random insertion AUC, the
    number of forward passes and failures (images whose map is not finite).
    """
    if images.dim() != 4 or len(images) != len(targets) or len(images) != len(maps):
        raise BadInputError(f"images/targets/maps: expected N images (N,C,H,W) with N targets and N maps, got "
                            f"{tuple(images.shape)}, {len(targets)}, {len(maps)}")
    if steps < 1 or random_trials < 0:
        raise BadInputError(f"steps={steps}, random_trials={random_trials}: need steps >= 1, trials >= 0")
    device = device or next(model.parameters()).device
    bs = batch_size or default_batch_size(device)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(images))]
    name, fill, mask_dependent = make_replacement(baseline)

    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    finite = torch.isfinite(m).flatten(1).all(dim=1)
    failures = [{"id": ids[i], "error": "attribution map is not finite"} for i in torch.nonzero(~finite).flatten().tolist()]
    keep = torch.nonzero(finite).flatten()
    n = len(keep)
    result: dict[str, Any] = {"steps": steps, "baseline": name, "order": order, "grid": grid, "count": n,
                              "failures": failures}
    if not n:
        return result
    x = images[keep].float()
    t = torch.as_tensor(targets)[keep].long()
    h, w = x.shape[-2:]
    m = m[keep]
    if order == "abs":
        m = m.abs()
    gh, gw = (h, w) if grid is None else (min(grid, h), min(grid, w))
    cells = torch.from_numpy(area_pool(m.double().numpy(), (gh, gw))).flatten(1)
    gen = torch.Generator().manual_seed(seed)
    v = 1 + random_trials
    scores = [cells] + [torch.rand(n, gh * gw, generator=gen, dtype=torch.float64) for _ in range(random_trials)]
    ranks = torch.stack([_ranks(s, gen) for s in scores], dim=1).view(n, v, gh, gw)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * gh * gw).to(torch.int32)
    rows = torch.arange(h) * gh // h  # cell of each pixel row / column
    cols = torch.arange(w) * gw // w

    x_dev, t_dev, ranks_dev, counts_dev, rows, cols = (to_device(a, device) for a in (x, t, ranks, counts, rows, cols))
    base = None if mask_dependent else fill(x_dev, torch.ones_like(x_dev[:, :1], dtype=torch.bool))
    shape = (n, v, 2, steps + 1)  # image, order (0 = map, 1.. = random), mode (0 = deletion, 1 = insertion), step
    total = math.prod(shape)
    bar = tqdm(total=total, desc=f"deletion/insertion ({name})", disable=None if progress else True, leave=False)
    calls = 0

    def run(a: int, b: int) -> Tensor:
        nonlocal calls
        j = torch.arange(a, b, device=x_dev.device)
        k = j % (steps + 1)
        mode = (j // (steps + 1)) % 2
        vi = (j // (2 * (steps + 1))) % v
        i = j // (2 * v * (steps + 1))
        removed = (ranks_dev[i, vi] < counts_dev[k][:, None, None]) ^ mode.bool()[:, None, None]
        removed = removed[:, rows][:, :, cols][:, None]
        repl = fill(x_dev[i], removed) if base is None else base[i]
        batch = torch.where(removed, repl, x_dev[i])
        with autocast(device):
            out = model(batch)
        calls += 1
        p = out.float().softmax(-1).gather(1, t_dev[i][:, None])[:, 0]
        bar.update(b - a)
        return p.cpu()

    probs = torch.cat(list(backoff_chunks(total, bs, run))).view(shape).double().numpy()
    bar.close()
    auc = _auc(probs)  # (n, v, 2)
    curves = probs.mean(axis=0)
    del_auc, ins_auc = auc[:, 0, 0], auc[:, 0, 1]
    result.update(
        forward_passes=calls,
        inputs_evaluated=total,
        batch_size=bs,
        deletion_auc=float(del_auc.mean()),
        insertion_auc=float(ins_auc.mean()),
        curves={"x": (np.arange(steps + 1) / steps).tolist(), "deletion": curves[0, 0].tolist(),
                "insertion": curves[0, 1].tolist()},
        per_image=[
            {"id": ids[int(g)], "p0": float(probs[r, 0, 0, 0]), "deletion_auc": float(del_auc[r]),
             "insertion_auc": float(ins_auc[r])}
            for r, g in enumerate(keep)
        ],
    )
    if random_trials:
        rd, ri = auc[:, 1:, 0].mean(axis=1), auc[:, 1:, 1].mean(axis=1)
        result.update(
            random_deletion_auc=float(rd.mean()),
            random_insertion_auc=float(ri.mean()),
            deletion_gain=float((rd.mean() - del_auc.mean()) / max(rd.mean(), 1e-12)),
            insertion_gain=float((ins_auc.mean() - ri.mean()) / max(ri.mean(), 1e-12)),
        )
        result["curves"]["random_deletion"] = curves[1:, 0].mean(axis=0).tolist()
        result["curves"]["random_insertion"] = curves[1:, 1].mean(axis=0).tolist()
        for r, row in enumerate(result["per_image"]):
            row["random_deletion_auc"], row["random_insertion_auc"] = float(rd[r]), float(ri[r])
    return result
