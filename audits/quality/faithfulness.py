"""Faithfulness by deletion and insertion curves (Petsiuk et al. 2018, RISE).

Deletion: replace the most important pixels first, in ``steps`` equal steps,
and follow the target-class probability; a faithful map makes it fall fast
(low area under the curve). Insertion: start from the replacement image and
put the most important pixels back first; a faithful map makes the probability
rise fast (high AUC). Both are compared with several random pixel orders, so a
method is judged against chance on the same model and images, with a 95 %
confidence interval over the images (each image's random AUC is the mean over
the random orders; the interval is Student's t over the per-image
differences). A model-independent prior order (an edge map, see priors.py)
is a second reference: a map that does no better than "remove the edges
first" has not shown that it knows more than the image does.

The random and prior orders do not depend on the method, so ``reference_curves``
computes them once for a set of images and every method's call reuses them.

Every (image, order, deletion|insertion, step) input is built lazily in chunks
of ``batch_size`` and pushed through the model once: the number of forward
calls is ceil(total / batch_size), not one per image or step.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy import stats
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


def _image_generators(ids: Sequence[str], seed: int, stream: int) -> list[torch.Generator]:
    """One generator per image, seeded by the image's id: an image's random orders do not depend on
    which other images share the call (so a shared reference gives each image the same orders)."""
    return [torch.Generator().manual_seed((seed * 1_000_003 + stream * 7919 + zlib.crc32(str(i).encode())) % 2**63)
            for i in ids]


def _draw(gens: list[torch.Generator], p: int) -> Tensor:
    return torch.stack([torch.rand(p, generator=g, dtype=torch.float64) for g in gens]) if gens else torch.zeros(0, p)


def _ranks(scores: Tensor, gens: list[torch.Generator]) -> Tensor:
    """Rank of every cell (0 = removed first): descending score, ties broken by a seeded random key.

    Scores are first quantised to ``TIE_RESOLUTION`` of the image's largest
    absolute score, so the order does not depend on float rounding noise, and
    the tie keys come from per-image generators (seeded by the caller), so the
    same maps give the same order in every run, on every runner, whatever
    other images share the call.
    """
    n, p = scores.shape
    scale = scores.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    quantised = torch.round(scores.double() / scale / TIE_RESOLUTION)
    tie = _draw(gens, p)
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
def _probabilities(
    model: nn.Module,
    x: Tensor,
    t: Tensor,
    ranks: Tensor,
    *,
    steps: int,
    fill: Replacement,
    mask_dependent: bool,
    device: torch.device,
    batch_size: int,
    progress: bool,
    name: str,
) -> tuple[np.ndarray, int]:
    """Target probabilities (n, orders, 2, steps+1) for every image, order, deletion|insertion and step."""
    n, v, gh, gw = ranks.shape
    h, w = x.shape[-2:]
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * gh * gw).to(torch.int32)
    rows = torch.arange(h) * gh // h  # cell of each pixel row / column
    cols = torch.arange(w) * gw // w
    x_dev, t_dev, ranks_dev, counts_dev, rows, cols = (to_device(a, device) for a in (x, t, ranks, counts, rows, cols))
    base = None if mask_dependent else fill(x_dev, torch.ones_like(x_dev[:, :1], dtype=torch.bool))
    shape = (n, v, 2, steps + 1)  # image, order, mode (0 = deletion, 1 = insertion), step
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

    probs = torch.cat(list(backoff_chunks(total, batch_size, run))).view(shape).double().numpy() if total else np.zeros(shape)
    bar.close()
    return probs, calls


def mean_ci(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Student's t confidence interval of the mean of ``values`` (None with fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    m = float(v.mean())
    return [m - half, m + half]


def _gain(better: np.ndarray, scale: float) -> tuple[float, list[float] | None]:
    """Mean per-image improvement relative to ``scale``, and its 95 % interval."""
    ci = mean_ci(better)
    s = max(scale, 1e-12)
    return float(better.mean() / s), (None if ci is None else [ci[0] / s, ci[1] / s])


def _cells(maps: Tensor, order: str, grid: tuple[int, int]) -> Tensor:
    m = maps.abs() if order == "abs" else maps
    return torch.from_numpy(area_pool(m.double().numpy(), grid)).flatten(1)


def reference_curves(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    ids: Sequence[str],
    priors: dict[str, np.ndarray] | None = None,
    random_trials: int = 4,
    **kwargs: Any,
) -> dict[str, Any]:
    """Random-order and prior-order AUCs of every image, to share between methods.

    Pass the result as ``reference`` to ``deletion_insertion`` for any subset
    of these images (matched by id): only the method's own order is then
    evaluated. Keyword arguments as ``deletion_insertion``.
    """
    return deletion_insertion(model, images, targets, None, ids=ids, priors=priors, random_trials=random_trials,
                              **kwargs)


def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    maps: np.ndarray | None,
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
    priors: dict[str, np.ndarray] | None = None,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Deletion and insertion AUCs of the target probability, for the maps' order, random orders and priors.

    images: model inputs (N,C,H,W) (already normalised); targets: class per image;
    maps: (N,h,w), or None to evaluate only the references. The image is cut
    into ``grid`` x ``grid`` cells (None: single pixels) and cells are removed
    highest summed ``order`` value first, ties at random. Cells, not pixels,
    follow Samek et al. 2017 ("region perturbation"): a random order of single
    pixels makes salt-and-pepper images the model has never seen, which
    collapse its probability and make the random baseline meaningless.

    ``random_trials`` random orders and each of ``priors`` (name -> (N,h,w)
    model-independent maps) are the references; ``reference`` (from
    ``reference_curves`` over a superset of these images, same settings)
    supplies them instead of recomputing. Returns mean and per-image AUCs,
    mean curves, ``deletion_gain`` = (random - map) / random deletion AUC
    (higher is more faithful) with ``deletion_gain_ci`` (95 %, over images),
    ``insertion_gain`` = (map - random) / random insertion AUC with its
    interval, ``priors`` {name: AUCs and the map's gain over the prior}, the
    number of forward passes and failures (images whose map is not finite).
    """
    if images.dim() != 4 or len(images) != len(targets) or (maps is not None and len(images) != len(maps)):
        raise BadInputError(f"images/targets/maps: expected N images (N,C,H,W) with N targets and N maps, got "
                            f"{tuple(images.shape)}, {len(targets)}, {None if maps is None else len(maps)}")
    if steps < 1 or random_trials < 0:
        raise BadInputError(f"steps={steps}, random_trials={random_trials}: need steps >= 1, trials >= 0")
    device = device or next(model.parameters()).device
    bs = batch_size or default_batch_size(device, tuple(images.shape[-2:]))
    ids = list(ids) if ids is not None else [str(i) for i in range(len(images))]
    name, fill, mask_dependent = make_replacement(baseline)
    priors = dict(priors or {})

    m = torch.as_tensor(np.asarray(maps, dtype=np.float32)) if maps is not None else torch.zeros(len(images), 1, 1)
    finite = torch.isfinite(m).flatten(1).all(dim=1)
    failures = [{"id": ids[i], "error": "attribution map is not finite"} for i in torch.nonzero(~finite).flatten().tolist()]
    keep = torch.nonzero(finite).flatten()
    n = len(keep)
    ref_rows = None
    if reference is not None:
        index = {r["id"]: r for r in reference.get("per_image", [])}
        if all(ids[int(g)] in index for g in keep):
            ref_rows = [index[ids[int(g)]] for g in keep]
    own_refs = ref_rows is None
    result: dict[str, Any] = {"steps": steps, "baseline": name, "order": order, "grid": grid, "count": n,
                              "failures": failures,
                              "random_orders": (random_trials if own_refs else reference.get("random_orders", 0)),
                              "priors_used": sorted(priors) if own_refs else list(reference.get("priors_used", []))}
    if not n:
        return result
    x = images[keep].float()
    t = torch.as_tensor(targets)[keep].long()
    h, w = x.shape[-2:]
    gh, gw = (h, w) if grid is None else (min(grid, h), min(grid, w))
    # Every order draws from per-image generators (seeded by id and by the kind of order), so an
    # image's ranks are the same whether the references are computed here or shared.
    kept_ids = [ids[int(g)] for g in keep]
    ranks_list: list[Tensor] = []
    if maps is not None:
        ranks_list.append(_ranks(_cells(m[keep], order, (gh, gw)), _image_generators(kept_ids, seed, 0)))
    prior_names = sorted(priors) if own_refs else []
    for j, p in enumerate(prior_names):
        cells = _cells(torch.as_tensor(np.asarray(priors[p], np.float32))[keep], "value", (gh, gw))
        ranks_list.append(_ranks(cells, _image_generators(kept_ids, seed, 1 + j)))
    n_random = random_trials if own_refs else 0
    gens = _image_generators(kept_ids, seed, 1000)
    ranks_list += [_ranks(_draw(gens, gh * gw), gens) for _ in range(n_random)]
    if not ranks_list:
        return result
    ranks = torch.stack(ranks_list, dim=1).view(n, len(ranks_list), gh, gw)
    probs, calls = _probabilities(model, x, t, ranks, steps=steps, fill=fill, mask_dependent=mask_dependent,
                                  device=device, batch_size=bs, progress=progress, name=name)
    auc = _auc(probs)  # (n, orders, 2)
    curves = probs.mean(axis=0)
    result.update(forward_passes=calls, inputs_evaluated=int(probs.size), batch_size=bs)
    per_image = [{"id": ids[int(g)], "p0": float(probs[r, 0, 0, 0])} for r, g in enumerate(keep)]
    col = 0
    if maps is not None:
        del_auc, ins_auc = auc[:, 0, 0], auc[:, 0, 1]
        result.update(deletion_auc=float(del_auc.mean()), insertion_auc=float(ins_auc.mean()),
                      curves={"x": (np.arange(steps + 1) / steps).tolist(), "deletion": curves[0, 0].tolist(),
                              "insertion": curves[0, 1].tolist()})
        for r, row in enumerate(per_image):
            row.update(deletion_auc=float(del_auc[r]), insertion_auc=float(ins_auc[r]))
        col = 1
    else:
        result["curves"] = {"x": (np.arange(steps + 1) / steps).tolist()}
    # References: this call's own prior and random orders, or the shared reference's rows.
    if own_refs:
        prior_auc = {p: auc[:, col + j] for j, p in enumerate(prior_names)}
        prior_curves = {p: curves[col + j] for j, p in enumerate(prior_names)}
        rand = auc[:, col + len(prior_names):]  # (n, R, 2)
        rand_curves = curves[col + len(prior_names):]
        for r, row in enumerate(per_image):
            if n_random:
                row.update(random_deletion_auc=float(rand[r, :, 0].mean()), random_insertion_auc=float(rand[r, :, 1].mean()),
                           random_deletion_aucs=rand[r, :, 0].round(6).tolist())
            for p in prior_names:
                row[f"{p}_deletion_auc"], row[f"{p}_insertion_auc"] = float(prior_auc[p][r, 0]), float(prior_auc[p][r, 1])
        if n_random:
            result["curves"]["random_deletion"] = rand_curves[:, 0].mean(axis=0).tolist()
            result["curves"]["random_insertion"] = rand_curves[:, 1].mean(axis=0).tolist()
            # The spread of the random orders (each order's curve over the images): the report shades it.
            for j, m in enumerate(("deletion", "insertion")):
                result["curves"][f"random_{m}_band"] = [rand_curves[:, j].min(axis=0).tolist(),
                                                        rand_curves[:, j].max(axis=0).tolist()]
            result["random_deletion_auc_per_order"] = rand[:, :, 0].mean(axis=0).round(6).tolist()
        for p in prior_names:
            result["curves"][f"{p}_deletion"] = prior_curves[p][0].tolist()
            result["curves"][f"{p}_insertion"] = prior_curves[p][1].tolist()
    else:
        for row, ref in zip(per_image, ref_rows):
            row.update({k: v for k, v in ref.items() if k not in ("id", "p0", "deletion_auc", "insertion_auc")})
        for key in ("random_deletion", "random_insertion", "random_deletion_band", "random_insertion_band",
                    *(f"{p}_{m}" for p in result["priors_used"]
                                                               for m in ("deletion", "insertion"))):
            if key in reference.get("curves", {}):
                # The reference's mean curve, over its own images (the same orders as these images got).
                result["curves"][key] = list(reference["curves"][key])
        result["random_deletion_auc_per_order"] = None
    result["per_image"] = per_image
    _summarise(result, per_image, maps is not None)
    return result


def _summarise(result: dict[str, Any], per_image: list[dict], has_map: bool) -> None:
    """Means, gains and their intervals from the per-image AUCs."""
    def col(key: str) -> np.ndarray | None:
        vals = [r.get(key) for r in per_image]
        return None if any(v is None for v in vals) else np.asarray(vals, dtype=np.float64)

    rd, ri = col("random_deletion_auc"), col("random_insertion_auc")
    if rd is not None:
        result.update(random_deletion_auc=float(rd.mean()), random_insertion_auc=float(ri.mean()))
    if has_map and rd is not None:
        d, i = col("deletion_auc"), col("insertion_auc")
        result["deletion_gain"], result["deletion_gain_ci"] = _gain(rd - d, rd.mean())
        result["insertion_gain"], result["insertion_gain_ci"] = _gain(i - ri, ri.mean())
        result["deletion_vs_random"] = _verdict(result["deletion_gain"], result["deletion_gain_ci"])
        result["insertion_vs_random"] = _verdict(result["insertion_gain"], result["insertion_gain_ci"])
    priors: dict[str, Any] = {}
    for p in result.get("priors_used", []):
        pd_, pi = col(f"{p}_deletion_auc"), col(f"{p}_insertion_auc")
        if pd_ is None:
            continue
        entry: dict[str, Any] = {"deletion_auc": float(pd_.mean()), "insertion_auc": float(pi.mean())}
        if rd is not None:
            entry["deletion_gain_over_random"], entry["deletion_gain_over_random_ci"] = _gain(rd - pd_, rd.mean())
        if has_map:
            d, i = col("deletion_auc"), col("insertion_auc")
            entry["map_deletion_gain"], entry["map_deletion_gain_ci"] = _gain(pd_ - d, pd_.mean())
            entry["map_insertion_gain"], entry["map_insertion_gain_ci"] = _gain(i - pi, pi.mean())
            entry["map_vs_prior"] = _verdict(entry["map_deletion_gain"], entry["map_deletion_gain_ci"])
        priors[p] = entry
    if priors:
        result["priors"] = priors


def _verdict(gain: float, ci: list[float] | None) -> str:
    """"better" / "worse" when the whole 95 % interval lies above / below 0, else "not different"."""
    if ci is None:
        return "better" if gain > 0 else "worse" if gain < 0 else "not different"
    if ci[0] > 0:
        return "better"
    if ci[1] < 0:
        return "worse"
    return "not different"
