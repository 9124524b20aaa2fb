"""Counterfactual images: what would this image have to look like for the model to call it class k?

Per image (generator and model share the model's input space, see space.py):

1. Inversion: a style code z whose generated image, with the class code e
   fixed to the model's predicted class (or to the true label, when that fits
   a misclassified image better), is closest to the original
   (``latent.invert``). That generated image is the *reconstruction*; its
   error and whether the model still predicts the same class on it are
   checked per image, and an image whose reconstruction changes the
   prediction is left out (the generator cannot stand in for it).
2. Search: the counterfactual is x' = x_rec + m * (G(z, e) - x_rec): the
   generator's drawing G(z, e) shows through a soft mask m (a 16 x 16 grid of
   logits, bilinear up to the input; Chang et al. 2019 in-fill a region from
   a generator the same way, Goyal et al. 2019 swap regions). The drawing
   starts as the image's own style in the target class, (z_rec, e_t), and the
   mask nearly closed, so the search only has to decide *where* the target
   class must show and how the drawing must differ. Adam on z, e and the mask
   minimises, per image,

       L = w * max(0, kappa - logodds_t(f(x')))       reach the target class t at the target confidence c
                                                      (hinge on the log-odds, Carlini & Wagner 2017;
                                                      kappa = log(c / (1 - c)) + a small slack; w doubles
                                                      every ESCALATE steps while t is not reached)
         + proximity * mean |x' - x_rec|              change as few pixels as possible (L1, Wachter et al. 2017)
         + prior * |z|^2 / (2 dim z)                  stay where the generator was trained (-log N(z; 0, I))
         + smoothness * TV(m)                         compact regions, not speckle
         + realism * softplus(-D(x', t))              look like a real image of t to the GAN's discriminator
                                                      (-log sigmoid D, the non-saturating GAN loss; ExplainGAN,
                                                      Samangouei et al. 2018; Van Looveren & Klaise 2021)

   With ``masked=False`` m is 1 everywhere and the search starts from
   (z_rec, e_rec): a plain latent-space counterfactual, which on a
   class-conditional GAN changes everything the class code controls at once.
   The counterfactual is the closest step (in pixels) at which the model
   ranks t first with probability >= c: searching on after the first such
   step lets the proximity term undo changes the model does not need.
   Distances are reported in pixels, where the proximity term counts them.

Outcomes are kept apart and only real searches count: ``success`` (the target
reached after at least one step), ``not-reached`` (steps ran out), and, never
counted as successes, ``unchanged-target`` (the target is the class already
predicted), ``zero-step`` (the reconstruction already is the target at the
target confidence) and ``reconstruction-flipped`` (the reconstruction changes
the model's prediction, so the search would start from another image).

The *difference* is counterfactual - reconstruction (not - original), so the
generator's reconstruction error never shows up as a change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from imaudit.audits.spec import GenerativeSettings
from imaudit.errors import BadInputError

from .latent import invert, match_images, to_generator_space
from .store import GeneratorArtifact

PATH_POINTS = 20  # points kept along each search path (first and last always kept)
PATIENCE = 50  # steps without getting closer after every image reached its target
MASK_CELLS = 16  # the mask is a 16 x 16 grid (bilinear up to the input): regions, never single-pixel speckle
MASK_START = -2.0  # initial mask logit (sigmoid 0.12): the mask opens where a change helps
MASK_LR_SCALE = 4  # the mask's logits move this much faster than the latent code (they must travel ~+-5)
ESCALATE = 20  # steps between doublings of the class term's weight while an image has not reached its target
LOG_ODDS_SLACK = 0.2  # the hinge aims this far (in log-odds) above the target confidence
SEARCHED = ("success", "not-reached")  # outcomes of images the search had to move
LEFT_OUT = ("unchanged-target", "zero-step", "reconstruction-flipped")
OUTCOMES = (*SEARCHED, *LEFT_OUT)


_DEFAULTS = GenerativeSettings()  # one source of default values: the AuditSpec's


@dataclass(frozen=True)
class SearchSettings:
    """How far and how the search goes (AuditSpec.generative holds the user's values and the defaults)."""

    confidence: float = _DEFAULTS.confidence  # the model must rank the target first with at least this probability
    steps: int = _DEFAULTS.steps  # Adam steps at most
    lr: float = _DEFAULTS.lr  # Adam step size on (z, e); the mask's logits move MASK_LR_SCALE times faster
    proximity: float = _DEFAULTS.proximity  # weight of the mean absolute pixel change vs the reconstruction
    prior: float = _DEFAULTS.prior  # weight of the Gaussian latent prior
    realism: float = _DEFAULTS.realism  # weight of the discriminator's realism term (0, or no discriminator: off)
    invert_steps: int = _DEFAULTS.invert_steps  # GAN-inversion steps per image
    masked: bool = _DEFAULTS.masked  # keep the reconstruction outside a learned soft mask (module docstring)
    smoothness: float = _DEFAULTS.smoothness  # weight of the mask's total variation

    def __post_init__(self) -> None:
        if not 0 <= self.confidence < 1:
            raise BadInputError(f"confidence={self.confidence}: must lie in [0, 1)")
        if self.steps < 1 or self.invert_steps < 1:
            raise BadInputError("steps and invert_steps must be at least 1")
        if min(self.lr, self.proximity, self.prior, self.realism, self.smoothness) < 0:
            raise BadInputError("lr, proximity, prior, realism and smoothness must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CounterfactualBatch:
    """Tensors and per-image numbers of one counterfactual search (all on the CPU)."""

    originals: Tensor
    reconstructions: Tensor
    counterfactuals: Tensor
    preds: Tensor
    pred_confidence: Tensor
    sources: Tensor
    targets: Tensor
    recon_preds: Tensor
    recon_confidence: Tensor  # the model's probability of the original prediction on the reconstruction
    recon_target_confidence: Tensor
    cf_preds: Tensor
    cf_confidence: Tensor  # probability of the target on the counterfactual (where the search ended)
    steps_taken: Tensor  # the step whose image is the counterfactual (the closest that reached the target)
    first_reached: Tensor  # the first step at which the target confidence was reached
    latent_distance: Tensor
    realism: Tensor  # the discriminator's probability that the counterfactual is a real image of the target (NaN: none)
    recon_realism: Tensor  # the same for the reconstruction and its source class
    outcomes: list[str] = field(default_factory=list)
    paths: list[list[tuple[int, float, float]]] = field(default_factory=list)  # (step, target prob, RMS change) to the kept step

    @property
    def success(self) -> Tensor:
        return torch.tensor([o == "success" for o in self.outcomes], dtype=torch.bool)

    @property
    def differences(self) -> Tensor:
        """Signed change the search made, (N,C,H,W)."""
        return self.counterfactuals - self.reconstructions

    @property
    def pixel_distance(self) -> Tensor:
        """Root-mean-square pixel change, counterfactual vs reconstruction (pixel units in [0, 1])."""
        return self.differences.pow(2).flatten(1).mean(1).sqrt()

    @property
    def recon_error(self) -> Tensor:
        """Root-mean-square pixel error of the reconstruction vs the original."""
        return (self.reconstructions - self.originals).pow(2).flatten(1).mean(1).sqrt()


def default_targets(logits: Tensor, labels: Tensor | None) -> Tensor:
    """The true label for misclassified images, else the runner-up class."""
    top2 = logits.topk(min(2, logits.shape[1]), dim=1).indices
    runner_up = top2[:, -1]
    if labels is None:
        return runner_up
    labels = labels.to(logits.device).long()
    return torch.where(top2[:, 0] != labels, labels, runner_up)


def find_counterfactuals(
    model: nn.Module,
    generator: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    target_classes: Tensor | Sequence[int] | None = None,
    normalize: Callable[[Tensor], Tensor] | None = None,
    settings: SearchSettings | None = None,
    discriminator: nn.Module | None = None,
    seed: int = 0,
) -> CounterfactualBatch:
    """Search one batch of counterfactuals; see the module docstring for the method.

    ``images`` are pixels in [0, 1] in the model's input space; ``normalize``
    maps them to model input. ``discriminator`` (the GAN's, optional) supplies
    the realism term. Runs on the model's device.
    """
    s = settings or SearchSettings()
    if images.dim() != 4:
        raise BadInputError(f"images: expected (N, C, H, W) pixels, got shape {tuple(images.shape)}")
    normalize = normalize or (lambda x: x)
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    generator = generator.to(device).eval()
    critic = discriminator.to(device).eval() if discriminator is not None else None  # realism is measured even at weight 0
    x = images.to(device).float()
    n, c, h, w = x.shape
    if labels is not None and len(labels) != n:
        raise BadInputError(f"labels: {len(labels)} labels for {n} images")
    size, g_ch = _generator_shape(generator)

    def render(z: Tensor, e: Tensor) -> Tensor:
        return match_images(generator.synthesize(z, e), c, h, w).clamp(0, 1)

    def realism_of(img: Tensor, classes: Tensor) -> Tensor:
        return critic(to_generator_space(img, g_ch, size), classes)

    with torch.no_grad():
        probs = model(normalize(x)).float().softmax(1)
    if probs.shape[1] != generator.n_classes:
        raise BadInputError(f"generator: {generator.n_classes} classes, but the model has {probs.shape[1]} outputs")
    rows = torch.arange(n, device=device)
    preds = probs.argmax(1)
    if target_classes is None:
        targets = default_targets(probs, labels)
    else:
        targets = torch.as_tensor(target_classes, device=device).long().reshape(-1)
        if len(targets) != n or targets.min() < 0 or targets.max() >= probs.shape[1]:
            raise BadInputError(f"target_classes: need {n} class indices in [0, {probs.shape[1]})")

    sources = preds if labels is None else labels.to(device).long()
    z0, e0, sources = _invert_best(generator, to_generator_space(x, g_ch, size), preds, sources, s.invert_steps, seed)
    with torch.no_grad():
        recon = render(z0, e0)
        recon_probs = model(normalize(recon)).float().softmax(1)
        recon_realism = _realism(None if critic is None else realism_of, recon, sources)
    recon_preds = recon_probs.argmax(1)
    outcomes = _left_out(preds, targets, recon_preds, recon_probs[rows, targets], s.confidence)

    active = torch.tensor([o is None for o in outcomes], device=device)
    cf, cf_probs, realism = recon.clone(), recon_probs.clone(), recon_realism.clone()
    taken, first = torch.zeros(n, dtype=torch.long, device=device), torch.zeros(n, dtype=torch.long, device=device)
    latent_move = torch.zeros(n, device=device)
    paths: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
    if bool(active.any()):
        idx = active.nonzero().flatten()
        with torch.no_grad():
            # Masked search: the drawing starts as the same style in the target class (the mask decides where it shows).
            e_start = generator.embed(targets[idx]) if s.masked else e0[idx]
        found = _search(model, render, None if critic is None else realism_of, normalize, (z0[idx], e_start),
                        recon[idx], targets[idx], s)
        cf[idx], cf_probs[idx], taken[idx], realism[idx], latent_move[idx] = (
            found["image"], found["probs"], found["steps"], found["realism"], found["latent"])
        first[idx] = found["first"]
        for j, i in enumerate(idx.tolist()):
            # The path to the counterfactual kept: up to its step (the search may have gone on without getting closer).
            paths[i] = _thin([p for p in found["paths"][j] if p[0] <= int(found["steps"][j])])
            outcomes[i] = "success" if bool(found["reached"][j]) else "not-reached"
    return CounterfactualBatch(
        originals=x.cpu(),
        reconstructions=recon.cpu(),
        counterfactuals=cf.cpu(),
        preds=preds.cpu(),
        pred_confidence=probs[rows, preds].cpu(),
        sources=sources.cpu(),
        targets=targets.cpu(),
        recon_preds=recon_preds.cpu(),
        recon_confidence=recon_probs[rows, preds].cpu(),
        recon_target_confidence=recon_probs[rows, targets].cpu(),
        cf_preds=cf_probs.argmax(1).cpu(),
        cf_confidence=cf_probs[rows, targets].cpu(),
        steps_taken=taken.cpu(),
        first_reached=first.cpu(),
        latent_distance=latent_move.cpu(),
        realism=realism.cpu(),
        recon_realism=recon_realism.cpu(),
        outcomes=[str(o) for o in outcomes],
        paths=paths,
    )


def _left_out(preds: Tensor, targets: Tensor, recon_preds: Tensor, recon_target_p: Tensor, confidence: float) -> list[str | None]:
    """Outcomes decided before any search (None: search this image)."""
    out: list[str | None] = []
    for p, t, r, rt in zip(preds.tolist(), targets.tolist(), recon_preds.tolist(), recon_target_p.tolist()):
        if t == p:
            out.append("unchanged-target")
        elif r != p and r == t and rt >= confidence:
            out.append("zero-step")
        elif r != p:
            out.append("reconstruction-flipped")
        else:
            out.append(None)
    return out


def _target_log_odds(logits: Tensor, targets: Tensor) -> Tensor:
    """log p_t - log(1 - p_t) of the softmax, computed stably as z_t - logsumexp(z_j, j != t)."""
    rows = torch.arange(len(logits), device=logits.device)
    others = logits.clone()
    others[rows, targets] = float("-inf")
    return logits[rows, targets] - others.logsumexp(1)


def _search(
    model: nn.Module,
    render: Callable[[Tensor, Tensor], Tensor],
    realism_of: Callable[[Tensor, Tensor], Tensor] | None,
    normalize: Callable[[Tensor], Tensor],
    start: tuple[Tensor, Tensor],
    recon: Tensor,
    targets: Tensor,
    s: SearchSettings,
) -> dict[str, Any]:
    """Adam on (z, e) and the mask for the images of one batch whose search runs; see the module docstring for L.

    The class term is a hinge on the target's log-odds (Carlini & Wagner
    2017): it pushes until the target confidence is reached with a small
    slack and then lets the other terms pull the image back towards the
    reconstruction. Each image keeps the closest (smallest mean absolute
    change) step at which the model ranked the target first with probability
    >= confidence; an image that never got there keeps its last step. The
    batch stops when every image has reached the target and none got closer
    for PATIENCE steps, or after ``steps``. Images are independent: the loss
    is a sum of per-image terms.
    """
    z0, e0 = start
    n, dev = len(z0), z0.device
    rows = torch.arange(n, device=dev)
    kappa = math.log(max(s.confidence, 0.5) / (1 - max(s.confidence, 0.5))) + LOG_ODDS_SLACK
    z, e = z0.clone().requires_grad_(True), e0.clone().requires_grad_(True)
    h, w = recon.shape[-2:]
    mask_logit = torch.full((n, 1, min(h, MASK_CELLS), min(w, MASK_CELLS)), MASK_START, device=dev, requires_grad=s.masked)
    groups = [{"params": [z, e]}] + ([{"params": [mask_logit], "lr": s.lr * MASK_LR_SCALE}] if s.masked else [])
    opt = torch.optim.Adam(groups, lr=s.lr)
    ever = torch.zeros(n, dtype=torch.bool, device=dev)
    best_l1 = torch.full((n,), float("inf"), device=dev)
    found: dict[str, Tensor] = {"first": torch.full((n,), s.steps, dtype=torch.long, device=dev),
                                "steps": torch.full((n,), s.steps, dtype=torch.long, device=dev),
                                "realism": torch.full((n,), float("nan"), device=dev),
                                "latent": torch.zeros(n, device=dev)}
    paths: list[list[tuple[int, float, float]]] = [[] for _ in range(n)]
    last_gain = 0
    weight = torch.ones(n, device=dev)  # of the class term, per image
    for step in range(s.steps + 1):
        cells = torch.sigmoid(mask_logit)
        mask = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False) if s.masked else 1.0
        img = recon + mask * (render(z, e) - recon)
        logits = model(normalize(img)).float()
        probs = logits.softmax(1)
        p_t = probs[rows, targets]
        reached = (probs.argmax(1) == targets) & (p_t >= s.confidence)
        realism_logit = realism_of(img, targets) if realism_of is not None else None
        l1 = (img - recon).abs().flatten(1).mean(1)
        with torch.no_grad():
            if step == 0:
                found["image"], found["probs"] = img.detach().clone(), probs.detach().clone()
            change = (img - recon).pow(2).flatten(1).mean(1).sqrt()
            for i in range(n):
                paths[i].append((step, float(p_t[i]), float(change[i])))
            closer = reached & (l1 < best_l1 * (1 - 1e-3))
            # Images that never reached the target keep where the search ended.
            update = closer | (~ever & ~reached & torch.tensor(step == s.steps, device=dev))
            found["first"][reached & ~ever] = step
            ever |= reached
            best_l1[closer] = l1[closer]
            found["image"][update] = img[update].detach()
            found["probs"][update] = probs[update].detach()
            found["steps"][update] = step
            found["latent"][update] = torch.cat([z - z0, e - e0], 1).norm(dim=1)[update]
            if realism_logit is not None:
                found["realism"][update] = torch.sigmoid(realism_logit[update]).detach()
            if bool(closer.any()):
                last_gain = step
        if step == s.steps or (bool(ever.all()) and step - last_gain >= PATIENCE):
            break
        if step and step % ESCALATE == 0:
            # Carlini & Wagner search the weight of the class term; here it doubles while the target is not reached,
            # so strong proximity/realism weights slow the search down but never stop it short of the target.
            weight = torch.where(ever, weight, weight * 2)
        loss = weight * F.relu(kappa - _target_log_odds(logits, targets))
        loss = loss + s.proximity * l1
        loss = loss + s.prior * z.pow(2).mean(1) / 2
        if s.masked:
            loss = loss + s.smoothness * _total_variation(cells)
        if realism_logit is not None:
            loss = loss + s.realism * F.softplus(-realism_logit)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return {**found, "reached": ever.clone(), "paths": paths}


def _total_variation(m: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring mask values, per image: keeps masked regions compact."""
    return (m[..., 1:, :] - m[..., :-1, :]).abs().flatten(1).mean(1) + (m[..., 1:] - m[..., :-1]).abs().flatten(1).mean(1)


@torch.no_grad()
def _realism(realism_of: Callable[[Tensor, Tensor], Tensor] | None, images: Tensor, classes: Tensor) -> Tensor:
    """The discriminator's probability that images are real images of ``classes`` (NaN: no discriminator)."""
    if realism_of is None:
        return torch.full((len(images),), float("nan"), device=images.device)
    return torch.sigmoid(realism_of(images, classes)).float()


def _invert_best(
    generator: nn.Module, targets: Tensor, preds: Tensor, labels: Tensor, steps: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Invert with the class code of the prediction, and of the label where they differ; keep the closer fit.

    A misclassified image inverted under the wrong class comes back as that
    class, so the reconstruction would no longer show the original.
    """
    z, e = invert(generator, targets, preds, steps=steps, seed=seed)
    sources = preds.clone()
    differ = (labels != preds).nonzero().flatten()
    if len(differ):
        z2, e2 = invert(generator, targets[differ], labels[differ], steps=steps, seed=seed)
        with torch.no_grad():
            err1 = (generator.synthesize(z[differ], e[differ]) - targets[differ]).pow(2).flatten(1).mean(1)
            err2 = (generator.synthesize(z2, e2) - targets[differ]).pow(2).flatten(1).mean(1)
        better = err2 < err1
        idx = differ[better]
        z, e = z.clone(), e.clone()
        z[idx], e[idx], sources[idx] = z2[better], e2[better], labels[idx]
    return z, e, sources


def counterfactuals(
    model: nn.Module,
    generator_art: GeneratorArtifact,
    images: Tensor,
    labels: Tensor | Sequence[int] | None,
    *,
    target_classes: Tensor | Sequence[int] | None = None,
    normalize: Callable[[Tensor], Tensor] | None = None,
    settings: SearchSettings | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Counterfactuals for ``images`` (pixels in [0, 1] in the model's input space) as a JSON-ready dict.

    Returns {"generator", "settings", "items", "counts", "n", "success_rate",
    "mean_distance", "mean_latent_distance", "failures"} plus, for the
    concentration step, ``changes``: per successful item its (H, W) absolute
    change map (not JSON; ``section`` drops it). Each item: id, label, pred,
    source, target, outcome and reason, reconstruction checks (recon_error,
    reconstruction_pred, prediction_survives), the search (steps, distance =
    RMS pixel change vs the reconstruction, l1 = mean absolute change,
    counterfactual_confidence, realism, path_*) and, with ``out_dir``, PNG names.

    success_rate = successes / (successes + not reached); images left out
    before the search count in ``counts`` only. mean_distance averages
    ``distance`` over successes. Batches that fail are recorded under
    ``failures`` (id + error) and the rest goes on.
    """
    from .figures import save_item_pngs

    s = settings or SearchSettings()
    generator = generator_art.load_generator()
    critic = generator_art.load_discriminator()
    n = len(images)
    ids = [str(i) for i in (ids if ids is not None else range(n))]
    label_t = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
    target_t = None if target_classes is None else torch.as_tensor(target_classes).long().reshape(-1)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    items: list[dict[str, Any]] = []
    changes: dict[str, np.ndarray] = {}
    failures: list[dict[str, Any]] = []
    for a in tqdm(range(0, n, batch_size), desc="counterfactuals", disable=None if progress else True, leave=False):
        b = min(n, a + batch_size)
        try:
            batch = find_counterfactuals(
                model, generator, images[a:b], None if label_t is None else label_t[a:b],
                target_classes=None if target_t is None else target_t[a:b], normalize=normalize, settings=s,
                discriminator=critic, seed=seed + a,
            )
        except BadInputError:
            raise
        except Exception as e:  # noqa: BLE001 - one failed batch is recorded, the others still run
            failures += [{"id": i, "error": f"{type(e).__name__}: {e}"} for i in ids[a:b]]
            continue
        for j in range(b - a):
            item = _item(batch, j, ids[a + j], None if label_t is None else int(label_t[a + j]), generator_art.classes, s)
            if out_dir is not None:
                item["pngs"] = save_item_pngs(batch, j, ids[a + j], out_dir)
            if item["outcome"] == "success":
                changes[item["id"]] = batch.differences[j].abs().sum(0).numpy()
            items.append(item)
    return {
        "generator": generator_art.identity(),
        "settings": {**s.to_dict(), "seed": seed, "realism_term": critic is not None and s.realism > 0,
                     "distance": "RMS pixel change, counterfactual vs reconstruction (pixels in [0, 1])"},
        **summarise(items),
        "items": items,
        "failures": failures,
        "changes": changes,
    }


def summarise(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per outcome and the honest rates (see ``counterfactuals``)."""
    counts = {o: sum(it["outcome"] == o for it in items) for o in OUTCOMES}
    ok = [it for it in items if it["outcome"] == "success"]
    searched = counts["success"] + counts["not-reached"]
    return {
        "n": len(items),
        "counts": counts,
        "searched": searched,
        "success_rate": counts["success"] / searched if searched else None,
        "mean_distance": float(np.mean([it["distance"] for it in ok])) if ok else None,
        "mean_latent_distance": float(np.mean([it["latent_distance"] for it in ok])) if ok else None,
        "mean_recon_error": float(np.mean([it["recon_error"] for it in items])) if items else None,
    }


def diff_grid(diff: Tensor, cells: int = 4) -> list[list[float]]:
    """Shares of absolute change per cell of a cells x cells grid (sums to 1; zeros if nothing changed)."""
    mass = diff.abs().sum(0)[None, None]
    grid = F.adaptive_avg_pool2d(mass, cells)[0, 0]
    total = grid.sum()
    grid = grid / total if total > 0 else grid
    return [[round(float(v), 6) for v in row] for row in grid]


def _name(classes: list[str], k: int | None) -> str | None:
    if k is None:
        return None
    return classes[k] if 0 <= k < len(classes) else str(k)


def _item(batch: CounterfactualBatch, j: int, id_: str, label: int | None, classes: list[str], s: SearchSettings) -> dict[str, Any]:
    pred, target, recon_pred = int(batch.preds[j]), int(batch.targets[j]), int(batch.recon_preds[j])
    outcome = batch.outcomes[j]
    searched = outcome in SEARCHED
    path = batch.paths[j]
    item: dict[str, Any] = {
        "id": id_,
        "label": label,
        "label_name": _name(classes, label),
        "pred": pred,
        "pred_name": _name(classes, pred),
        "pred_confidence": float(batch.pred_confidence[j]),
        "source": int(batch.sources[j]),
        "target": target,
        "target_name": _name(classes, target),
        "outcome": outcome,
        "success": outcome == "success",
        "reason": _reason(batch, j, classes, s),
        "recon_error": float(batch.recon_error[j]),
        "reconstruction_pred": recon_pred,
        "reconstruction_confidence": float(batch.recon_confidence[j]),
        "prediction_survives": recon_pred == pred,
        "reconstruction_realism": _finite(batch.recon_realism[j]),
        "steps": int(batch.steps_taken[j]) if searched else 0,
        "first_reached": int(batch.first_reached[j]) if outcome == "success" else None,
        "counterfactual_pred": int(batch.cf_preds[j]) if searched else None,
        "counterfactual_confidence": float(batch.cf_confidence[j]) if searched else None,
        "distance": float(batch.pixel_distance[j]) if searched else None,
        "l1": float(batch.differences[j].abs().mean()) if searched else None,
        "latent_distance": float(batch.latent_distance[j]) if searched else None,
        "realism": _finite(batch.realism[j]) if searched else None,
        "path_steps": [p[0] for p in path],
        "path_confidence": [round(p[1], 6) for p in path],
        "path_distance": [round(p[2], 6) for p in path],
        "diff_grid": diff_grid(batch.differences[j]) if searched else None,
        "pngs": {},
    }
    return item


def _reason(batch: CounterfactualBatch, j: int, classes: list[str], s: SearchSettings) -> str:
    """One sentence saying why an item ended as it did."""
    o = batch.outcomes[j]
    pred, target, recon = (_name(classes, int(t[j])) for t in (batch.preds, batch.targets, batch.recon_preds))
    if o == "unchanged-target":
        return f"the target {target} is already the model's prediction: nothing to change"
    if o == "zero-step":
        return (f"the reconstruction is already {target} at {float(batch.recon_target_confidence[j]):.2f} "
                f"(the original is {pred}): the generator, not a search, changed the class")
    if o == "reconstruction-flipped":
        return (f"the model calls the reconstruction {recon} but the original {pred}: "
                "the generator cannot draw this image closely enough to stand in for it")
    if o == "not-reached":
        return (f"the target {target} reached {float(batch.cf_confidence[j]):.2f} after {int(batch.steps_taken[j])} steps "
                f"(needed {s.confidence:.2f})")
    return f"{target} at {float(batch.cf_confidence[j]):.2f} after {int(batch.steps_taken[j])} steps"


def _finite(v: Tensor) -> float | None:
    f = float(v)
    return f if np.isfinite(f) else None


def _generator_shape(generator: nn.Module) -> tuple[int, int]:
    """(image size, channels) of a generator, read from one probe sample."""
    with torch.no_grad():
        dev = next(iter(generator.parameters()), torch.empty(0)).device
        probe = generator.synthesize(torch.zeros(1, generator.z_dim, device=dev), generator.embed(torch.zeros(1, dtype=torch.long, device=dev)))
    return int(probe.shape[-1]), int(probe.shape[1])


def _thin(path: list[tuple[int, float, float]], keep: int = PATH_POINTS) -> list[tuple[int, float, float]]:
    """At most ``keep`` evenly spaced points of a path, first and last included."""
    if len(path) <= keep:
        return path
    idx = np.unique(np.linspace(0, len(path) - 1, keep).round().astype(int))
    return [path[i] for i in idx]
