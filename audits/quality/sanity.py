"""Model-parameter randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

An explanation that stays the same when the model's learned weights are
replaced by random ones cannot be explaining the model. The check
re-initialises the model's blocks on a deep copy, cascading down from the
logits as in the paper (the top block, then the top two, ... then all, norm
layers included), explains the same images for the same target classes again
after each step and compares the maps with the trained model's by Spearman
rank correlation and SSIM (scikit-image's definition, all maps of a step in
one batch) of the normalised |maps|. The curve of both similarities over the
depth is recorded; the method passes when both stay below their thresholds at
the stated depths (fractions of the blocks). The blocks depend on the model
only, so an audit finds them once and hands them to every method's cascade;
likewise the model is deep-copied once per audit (a ``ScratchCopy``) and the
copy's weights are restored from the model in place before each method's
cascade, instead of one deep copy per method.

A randomised model often gives all-zero maps (Grad-CAM's ReLU clips them).
Such maps carry no ranking: they are counted and reported, never scored as a
correlation of 0, and a depth where most maps vanished is inconclusive.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from torch import Tensor, nn

from imaudit.audits.quality.agreement import rowwise_spearman
from imaudit.errors import BadInputError

ExplainFn = Callable[[nn.Module, Tensor, Tensor], np.ndarray]
# "top" randomises this share of the weighted layers, counted from the logits:
# deep enough that maps explaining the learned weights must change, sparing the
# stem whose edge filters any input-gradient map partly reflects (Adebayo et
# al., Fig. 2: gradient maps keep some edge structure until the last layers go).
# On small nets half was too shallow: trained saliency kept rank corr ~0.5.
TOP_FRACTION = 0.75


def layer_order(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the weighted layers (a >= 2-D weight: conv, linear, attention) in the order a forward pass runs them.

    Execution order, traced with forward hooks, rather than definition order,
    which need not follow the data flow.
    """
    seen: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, nn.Parameter) and w.dim() >= 2:
            handles.append(mod.register_forward_hook(lambda m, i, o, name=name: seen.append(name) if name not in seen else None))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return seen


def randomise_top_layers(
    model: nn.Module, example: Tensor, layers: Literal["top", "all"] | int = "top", seed: int = 0
) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with its top ``layers`` weighted layers re-initialised, and their names."""
    order = layer_order(model, example)
    if not order:
        raise BadInputError("model: no weighted layers (conv/linear) found to randomise")
    if layers == "top":
        k = max(1, math.ceil(len(order) * TOP_FRACTION))
    elif layers == "all":
        k = len(order)
    elif isinstance(layers, int) and layers >= 1:
        k = min(layers, len(order))
    else:
        raise BadInputError(f"layers={layers!r}: expected 'top', 'all' or a positive integer")
    chosen = order[-k:]
    clone = copy.deepcopy(model)
    mods = dict(clone.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in chosen:
            mod = mods[name]
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            else:  # e.g. timm layers that hold a weight but no reset: redraw at the same scale
                for p in mod.parameters(recurse=False):
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 else 0.02)
    return clone, chosen


def model_blocks(model: nn.Module, example: Tensor, _run: Callable[[], Any] | None = None) -> list[list[str]]:
    """The model's blocks from input to output, each a list of names of modules holding parameters.

    timm models say what their blocks are (``group_matcher``, the grouping timm
    uses for layer-wise learning-rate decay): stem, each stage, head. Other
    models: their top-level children holding parameters, in the order a forward
    pass runs them.
    """
    # A wrapper (e.g. the audit's RestrictedHead over a subset of outputs) holds no parameters of its own
    # and one child: the blocks are the child's, named from the wrapper.
    children = list(model.named_children())
    if len(children) == 1 and not any(True for _ in model.parameters(recurse=False)):
        name, child = children[0]
        return [[f"{name}.{m}" for m in block] for block in model_blocks(child, example, _run=lambda: model(example))]
    matcher = getattr(model, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_modules

        try:
            groups = group_modules(model, matcher(coarse=True))
        except Exception:  # noqa: BLE001 - a model whose matcher does not fit its modules: use the fallback
            groups = {}
        blocks = [list(groups[k]) for k in sorted(groups) if groups[k]]
        if len(blocks) >= 2:
            return blocks
    owners: dict[str, list[str]] = {}
    for name, mod in model.named_modules():
        if name and any(True for _ in mod.parameters(recurse=False)):
            owners.setdefault(name.split(".")[0], []).append(name)
    seen: list[str] = []
    handles = [
        mod.register_forward_hook(lambda m, i, o, top=top: seen.append(top) if top not in seen else None)
        for top, mod in model.named_children() if top in owners
    ]
    try:
        with torch.no_grad():
            (_run or (lambda: model(example)))()
    finally:
        for h in handles:
            h.remove()
    return [owners[t] for t in seen] + [owners[t] for t in owners if t not in seen]


def randomise_modules(model: nn.Module, names: list[str], seed: int) -> None:
    """Re-initialise the named modules of ``model`` in place (weights, biases, norm statistics)."""
    mods = dict(model.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name in names:
            mod = mods[name]
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()  # BatchNorm's also resets its running statistics
            else:  # e.g. timm layers that hold a weight but no reset: redraw at the same scale
                for p in mod.parameters(recurse=False):
                    p.normal_(0.0, float(p.std()) if p.numel() > 1 else 0.02)


class ScratchCopy:
    """One deep copy of a model to randomise, put back to the model's weights in place before each use.

    A deep copy per sanity-checked method was a fixed cost per check (Python
    object copying, larger than the passes of a small model's check); copying
    tensors back into the same copy costs only the tensor copies.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.copy = copy.deepcopy(model)
        ours, theirs = self.copy.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        self._pairs = [(ours[k], theirs[k]) for k in theirs]

    def fresh(self) -> nn.Module:
        """The copy, with every parameter and buffer (norm statistics included) equal to the model's again."""
        with torch.no_grad():
            for dst, src in self._pairs:
                dst.copy_(src)
        return self.copy


def method_explain_fn(method: str, **kwargs: Any) -> ExplainFn:
    """An ExplainFn for a registered explanation method: maps aligned with the images, NaN where one failed.

    ``kwargs`` go to ``create_explainer`` (device, mean, std, seed, settings).
    """
    from imaudit.audits.explain import create_explainer  # imported late: explain is heavier than the checks

    def run(model: nn.Module, images: Tensor, targets: Tensor) -> np.ndarray:
        ids = [str(i) for i in range(len(images))]
        exp = create_explainer(method, model, **kwargs).explain(images, targets, ids)
        out = np.full((len(images), *images.shape[-2:]), np.nan, dtype=np.float32)
        if len(exp.ids):
            out[[int(i) for i in exp.ids]] = exp.maps
        return out

    return run


def ssim_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pair SSIM of two (N,H,W) stacks of maps, each map scaled to [0, 1] by its maximum |value|.

    The same numbers as ``skimage.metrics.structural_similarity(x, y, data_range=1, win_size=w)``
    (uniform 7x7 window or the largest odd one that fits, sample covariance, K1=0.01, K2=0.03,
    borders of half a window left out), for all pairs in one filter pass: skimage compares one
    pair per call (its ``channel_axis`` loops over channels in Python), a fixed cost per image.
    """
    a = np.abs(np.asarray(a, np.float64))
    b = np.abs(np.asarray(b, np.float64))
    win = min(7, *a.shape[1:])
    win = win if win % 2 else win - 1
    if win < 3 or not len(a):
        return np.full(len(a), np.nan)
    a = a / np.maximum(a.max(axis=(1, 2)), 1e-12)[:, None, None]
    b = b / np.maximum(b.max(axis=(1, 2)), 1e-12)[:, None, None]

    def mean(v: np.ndarray) -> np.ndarray:  # the window mean within each map (size 1 across the stack)
        return uniform_filter(v, size=(1, win, win))

    cov_norm = win * win / (win * win - 1)  # sample covariance, as skimage's default
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = 0.01**2, 0.03**2  # (K1 * data_range)^2, (K2 * data_range)^2 with data_range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))  # Wang et al. 2004, eq. 13
    pad = (win - 1) // 2
    return s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad].mean(axis=(1, 2))


def randomisation_sanity(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    explain_fn: ExplainFn,
    *,
    layers: Literal["top", "all"] | int = "top",
    seed: int = 0,
    original_maps: np.ndarray | None = None,
    max_rank_corr: float = 0.5,
    max_ssim: float = 0.7,
    ids: list[str] | None = None,
) -> dict[str, Any]:
    """Compare maps of the trained model with maps of its top-layer-randomised copy.

    explain_fn(model, images, targets) -> (N,H,W) maps (a failed image may be a
    NaN map: it is left out and listed). ``original_maps`` saves recomputing
    the trained model's maps. Returns mean and per-image ``rank_corr`` (of
    |maps|), ``rank_corr_signed``, ``ssim``, the randomised layer names and
    ``passed`` (both means below their thresholds).
    """
    ids = ids or [str(i) for i in range(len(images))]
    clone, chosen = randomise_top_layers(model, images[:1].to(next(model.parameters()).device), layers, seed)
    orig = np.asarray(original_maps if original_maps is not None else explain_fn(model, images, targets), dtype=np.float64)
    rand = np.asarray(explain_fn(clone, images, targets), dtype=np.float64)
    if orig.shape != rand.shape or orig.ndim != 3 or len(orig) != len(images):
        raise BadInputError(f"explain_fn: expected (N,H,W) maps for both models, got {orig.shape} and {rand.shape}")
    finite = np.isfinite(orig).all(axis=(1, 2)) & np.isfinite(rand).all(axis=(1, 2))
    flat = np.abs(orig).reshape(len(orig), -1)
    informative = flat.max(axis=1) > flat.min(axis=1)
    ok = finite & informative
    failures = [{"id": ids[i], "error": "attribution map is not finite" if not finite[i] else "attribution map is constant"}
                for i in np.flatnonzero(~ok)]
    a, b = orig[ok].reshape(int(ok.sum()), -1), rand[ok].reshape(int(ok.sum()), -1)
    # A randomised map gone constant (e.g. Grad-CAM clipped to zero) kept no rank order: correlation 0.
    rho = np.nan_to_num(rowwise_spearman(np.abs(a), np.abs(b)), nan=0.0)
    rho_signed = np.nan_to_num(rowwise_spearman(a, b), nan=0.0)
    ssim = ssim_batch(orig[ok], rand[ok])

    def mean(v: np.ndarray) -> float | None:
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else None

    r, s = mean(rho), mean(ssim)
    passed = None if r is None else bool(r < max_rank_corr and (s is None or s < max_ssim))
    return {
        "layers": chosen,
        "n_layers": len(chosen),
        "count": int(ok.sum()),
        "rank_corr": r,
        "rank_corr_signed": mean(rho_signed),
        "ssim": s,
        "passed": passed,
        "thresholds": {"max_rank_corr": max_rank_corr, "max_ssim": max_ssim},
        "per_image": [{"id": ids[i], "rank_corr": float(rho[j]), "ssim": float(ssim[j])}
                      for j, i in enumerate(np.flatnonzero(ok))],
        "failures": failures,
    }


def _similarity(orig: np.ndarray, rand: np.ndarray) -> dict[str, Any]:
    """Mean rank correlation and SSIM over the maps both sides can rank; vanished maps counted apart."""
    finite = np.isfinite(orig).all(axis=(1, 2)) & np.isfinite(rand).all(axis=(1, 2))
    fo = np.abs(orig).reshape(len(orig), -1)
    fr = np.abs(np.nan_to_num(rand)).reshape(len(rand), -1)
    orig_ok = fo.max(axis=1) > fo.min(axis=1)
    rand_ok = fr.max(axis=1) > fr.min(axis=1)
    vanished = finite & orig_ok & ~rand_ok
    use = finite & orig_ok & rand_ok
    k = int(use.sum())
    a, b = orig[use].reshape(k, orig[0].size), rand[use].reshape(k, rand[0].size)
    rho = rowwise_spearman(np.abs(a), np.abs(b)) if k else np.zeros(0)
    ssim = ssim_batch(orig[use], rand[use])

    def mean(v: np.ndarray) -> float | None:
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else None

    return {"rank_corr": mean(rho), "ssim": mean(ssim), "scored": int(use.sum()), "vanished": int(vanished.sum()),
            "unusable": int((~finite | ~orig_ok).sum())}


def cascading_sanity(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    explain_fn: ExplainFn,
    *,
    seed: int = 0,
    original_maps: np.ndarray | None = None,
    max_rank_corr: float = 0.5,
    max_ssim: float = 0.7,
    judge_at: tuple[float, ...] = (0.75, 1.0),
    ids: list[str] | None = None,
    blocks: list[list[str]] | None = None,
    scratch: ScratchCopy | None = None,
) -> dict[str, Any]:
    """Adebayo et al.'s cascading randomisation: blocks re-initialised from the top, one more per step.

    Returns ``curve`` (one row per depth: blocks randomised, their names,
    rank_corr, ssim, maps scored and vanished), ``judged`` (the rows at the
    depths ``judge_at``, as fractions of the blocks rounded up, each with its
    verdict), ``passed`` (True when every judged depth passes, False when one
    fails, None when none could be judged), and the judged depth's numbers as
    ``rank_corr`` / ``ssim`` / ``n_layers`` for summaries. A judged depth where
    fewer than half the maps could be scored (the rest vanished) is
    inconclusive: its verdict is None and ``inconclusive`` says why.
    ``blocks`` and ``scratch`` (a copy of this model) may be shared by every
    method's cascade of one audit; the model itself is never modified.
    """
    ids = ids or [str(i) for i in range(len(images))]
    device = next(model.parameters()).device
    blocks = blocks or model_blocks(model, images[:1].to(device))
    if not blocks:
        raise BadInputError("model: no blocks with parameters to randomise")
    orig = np.asarray(original_maps if original_maps is not None else explain_fn(model, images, targets), dtype=np.float64)
    if scratch is not None and scratch.model is not model:
        raise ValueError("scratch: a copy of another model")
    clone = (scratch or ScratchCopy(model)).fresh()
    depths = sorted({min(len(blocks), max(1, math.ceil(f * len(blocks)))) for f in judge_at})
    curve = []
    for k in range(1, len(blocks) + 1):
        block = blocks[len(blocks) - k]
        randomise_modules(clone, block, seed + k)
        rand = np.asarray(explain_fn(clone, images, targets), dtype=np.float64)
        if rand.shape != orig.shape:
            raise BadInputError(f"explain_fn: expected maps of shape {orig.shape} for the randomised model, got {rand.shape}")
        sim = _similarity(orig, rand)
        curve.append({"depth": k, "fraction": round(k / len(blocks), 4), "block": block[0].rsplit(".", 1)[0] if len(block) > 1 else block[0],
                      "modules": block, **sim})
    judged = []
    for d in depths:
        row = dict(curve[d - 1])
        if row["scored"] < max(1, (row["scored"] + row["vanished"]) / 2):
            row["passed"] = None
            row["inconclusive"] = (f"{row['vanished']} of {row['scored'] + row['vanished']} randomised maps came out "
                                   "all zero: nothing to correlate")
        else:
            r, s_ = row["rank_corr"], row["ssim"]
            row["passed"] = bool(r is not None and r < max_rank_corr and (s_ is None or s_ < max_ssim))
        judged.append(row)
    verdicts = [j["passed"] for j in judged if j["passed"] is not None]
    passed = None if not verdicts else all(verdicts)
    worst = next((j for j in judged if j["passed"] is False), None) or next(
        (j for j in judged if j["passed"] is not None), judged[0])
    return {
        "method": "cascading",
        "blocks": len(blocks),
        "count": int(len(images)),
        "judge_at": list(judge_at),
        "curve": curve,
        "judged": [{k: v for k, v in j.items() if k != "modules"} for j in judged],
        "passed": passed,
        "rank_corr": worst["rank_corr"],
        "ssim": worst["ssim"],
        "n_layers": worst["depth"],
        "layers": [b for blk in blocks[len(blocks) - worst["depth"]:] for b in blk],
        "thresholds": {"max_rank_corr": max_rank_corr, "max_ssim": max_ssim},
        "ids": list(ids),
    }
