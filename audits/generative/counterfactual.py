"""Counterfactual images: what would this image have to look like to be class k?

Two steps per image (after Wachter et al. 2017 and, for generative
counterfactuals, Samangouei et al. 2018 "ExplainGAN"):

1. Inversion: a style code z whose generated image, with the class code e
   fixed to the model's predicted class (or to the true label, when that fits
   a misclassified image better), is closest to the original
   (``latent.invert``). That generated image is the *reconstruction*.
2. Latent move: from (z, e), steepest-descent steps of fixed length on
   ``CE(model(G(z + dz, e + de)), target) + penalty * |(dz, de)|^2`` until the
   model predicts the target. Each step has the same latent length
   (normalised gradient), so the first flip approximates the smallest move
   along the steepest path; Adam would rescale each latent dimension and so
   not minimise the L2 move. The class code moves too because a conditional
   generator keeps class identity mostly in e.

The *difference map* is counterfactual - reconstruction (not - original), so
the generator's reconstruction error does not show up as a change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from imaudit.errors import BadInputError

from .latent import invert, match_images, to_generator_space
from .store import GeneratorArtifact

PATH_POINTS = 20  # confidences kept along each path (first and last always kept)


@dataclass
class CounterfactualBatch:
    """Tensors and per-image numbers of one counterfactual search (all on the CPU)."""

    originals: Tensor
    reconstructions: Tensor
    counterfactuals: Tensor
    preds: Tensor
    sources: Tensor
    targets: Tensor
    success: Tensor
    latent_distance: Tensor
    steps_taken: Tensor
    recon_preds: Tensor
    cf_preds: Tensor
    cf_confidence: Tensor
    paths: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def differences(self) -> Tensor:
        """Signed change the latent move made, (N,C,H,W)."""
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
    steps: int = 200,
    invert_steps: int = 200,
    step_size: float = 0.1,
    penalty: float = 0.05,
    confidence: float = 0.0,
    seed: int = 0,
) -> CounterfactualBatch:
    """Search one batch of counterfactuals; see the module docstring for the method.

    ``images`` are pixels in [0, 1] at the model's resolution; ``normalize``
    maps them to model input. The search stops for an image once the model
    predicts its target with probability >= ``confidence`` (0: as soon as it
    flips). ``step_size`` is the latent length of one step. Runs on the
    model's device.
    """
    if images.dim() != 4:
        raise BadInputError(f"images: expected (N, C, H, W) pixels, got shape {tuple(images.shape)}")
    normalize = normalize or (lambda x: x)
    device = next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    generator = generator.to(device).eval()
    x = images.to(device).float()
    n, c, h, w = x.shape
    if labels is not None and len(labels) != n:
        raise BadInputError(f"labels: {len(labels)} labels for {n} images")
    size, g_ch = _generator_shape(generator)

    def render(z: Tensor, e: Tensor) -> Tensor:
        return match_images(generator.synthesize(z, e), c, h, w).clamp(0, 1)

    with torch.no_grad():
        logits = model(normalize(x)).float()
    if logits.shape[1] != generator.n_classes:
        raise BadInputError(f"generator: {generator.n_classes} classes, but the model has {logits.shape[1]} outputs")
    preds = logits.argmax(1)
    if target_classes is None:
        targets = default_targets(logits, labels)
    else:
        targets = torch.as_tensor(target_classes, device=device).long().reshape(-1)
        if len(targets) != n or targets.min() < 0 or targets.max() >= logits.shape[1]:
            raise BadInputError(f"target_classes: need {n} class indices in [0, {logits.shape[1]})")

    sources = preds if labels is None else labels.to(device).long()
    z0, e0, sources = _invert_best(generator, to_generator_space(x, g_ch, size), preds, sources, invert_steps, seed)
    with torch.no_grad():
        recon = render(z0, e0)
        recon_preds = model(normalize(recon)).float().argmax(1)

    dz = torch.zeros_like(z0, requires_grad=True)
    de = torch.zeros_like(e0, requires_grad=True)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    cf = recon.clone()
    cf_dist = torch.zeros(n, device=device)
    cf_conf = torch.zeros(n, device=device)
    cf_pred = recon_preds.clone()
    taken = torch.full((n,), steps, dtype=torch.long, device=device)
    paths: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    rows = torch.arange(n, device=device)
    for step in range(steps + 1):
        img = render(z0 + dz, e0 + de)
        out = model(normalize(img)).float()
        prob = out.softmax(1)
        flipped = (out.argmax(1) == targets) & (prob[rows, targets] >= confidence) & ~done
        with torch.no_grad():
            move = torch.cat([dz, de], 1).norm(dim=1)
            for i in (~done).nonzero().flatten().tolist():
                paths[i].append((step, float(prob[i, targets[i]])))
            cf[flipped] = img[flipped]
            cf_dist[flipped] = move[flipped]
            cf_conf[flipped] = prob[rows, targets][flipped]
            cf_pred[flipped] = targets[flipped]
            taken[flipped] = step
        done |= flipped
        if bool(done.all()) or step == steps:
            break
        active = (~done).float()
        loss = F.cross_entropy(out, targets, reduction="none") + penalty * (dz.pow(2).sum(1) + de.pow(2).sum(1))
        gz, ge = torch.autograd.grad((loss * active).sum(), [dz, de], allow_unused=True)
        gz = torch.zeros_like(dz) if gz is None else gz
        ge = torch.zeros_like(de) if ge is None else ge
        with torch.no_grad():
            norm = torch.cat([gz, ge], 1).norm(dim=1, keepdim=True).clamp_min(1e-12)
            dz -= step_size * gz / norm * active[:, None]
            de -= step_size * ge / norm * active[:, None]
    with torch.no_grad():
        # Unflipped images report where the search ended.
        rest = ~done
        if rest.any():
            cf[rest] = img[rest].detach()
            cf_dist[rest] = torch.cat([dz, de], 1).norm(dim=1)[rest]
            cf_conf[rest] = prob[rows, targets][rest].detach()
            cf_pred[rest] = out.argmax(1)[rest]
    return CounterfactualBatch(
        originals=x.cpu(),
        reconstructions=recon.cpu(),
        counterfactuals=cf.detach().cpu(),
        preds=preds.cpu(),
        sources=sources.cpu(),
        targets=targets.cpu(),
        success=done.cpu(),
        latent_distance=cf_dist.detach().cpu(),
        steps_taken=taken.cpu(),
        recon_preds=recon_preds.cpu(),
        cf_preds=cf_pred.cpu(),
        cf_confidence=cf_conf.detach().cpu(),
        paths=[_thin(p) for p in paths],
    )


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
    steps: int = 200,
    confidence: float = 0.0,
    seed: int = 0,
    out_dir: Path | None = None,
    ids: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Counterfactuals for ``images`` (pixels in [0, 1], N,C,H,W) as a JSON-ready dict.

    Returns {"generator", "items", "success_rate", "mean_distance",
    "failures"}. Each item has id, label, pred, target, success, distance
    (RMS pixel change vs the reconstruction), latent_distance, recon_error,
    path_confidence (target-class probability along the path, at path_steps),
    diff_grid (4x4 shares of the absolute change) and, with ``out_dir``, PNG
    file names (original, reconstruction, counterfactual, difference).
    mean_distance averages ``distance`` over successful items. Batches that
    fail are recorded under ``failures`` (id + error) and the rest goes on.
    """
    generator = generator_art.load_generator()
    n = len(images)
    ids = [str(i) for i in (ids if ids is not None else range(n))]
    label_t = None if labels is None else torch.as_tensor(labels).long().reshape(-1)
    target_t = None if target_classes is None else torch.as_tensor(target_classes).long().reshape(-1)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    items: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for a in tqdm(range(0, n, batch_size), desc="counterfactuals", disable=None if progress else True, leave=False):
        b = min(n, a + batch_size)
        try:
            batch = find_counterfactuals(
                model,
                generator,
                images[a:b],
                None if label_t is None else label_t[a:b],
                target_classes=None if target_t is None else target_t[a:b],
                normalize=normalize,
                steps=steps,
                confidence=confidence,
                seed=seed + a,
            )
        except BadInputError:
            raise
        except Exception as e:  # noqa: BLE001 - one failed batch is recorded, the others still run
            failures += [{"id": i, "error": f"{type(e).__name__}: {e}"} for i in ids[a:b]]
            continue
        for j in range(b - a):
            items.append(_item(batch, j, ids[a + j], None if label_t is None else int(label_t[a + j]), generator_art.classes, out_dir))
    ok = [it for it in items if it["success"]]
    return {
        "generator": generator_art.identity(),
        "items": items,
        "n": len(items),
        "success_rate": (len(ok) / len(items)) if items else None,
        "mean_distance": float(np.mean([it["distance"] for it in ok])) if ok else None,
        "mean_latent_distance": float(np.mean([it["latent_distance"] for it in ok])) if ok else None,
        "failures": failures,
        "settings": {"steps": steps, "confidence": confidence, "seed": seed, "distance": "rms pixel change vs reconstruction"},
    }


def diff_grid(diff: Tensor, cells: int = 4) -> list[list[float]]:
    """Shares of absolute change per cell of a cells x cells grid (sums to 1; zeros if nothing changed)."""
    mass = diff.abs().sum(0)[None, None]
    grid = F.adaptive_avg_pool2d(mass, cells)[0, 0]
    total = grid.sum()
    grid = grid / total if total > 0 else grid
    return [[round(float(v), 6) for v in row] for row in grid]


def _item(
    batch: CounterfactualBatch, j: int, id_: str, label: int | None, classes: list[str], out_dir: Path | None
) -> dict[str, Any]:
    target = int(batch.targets[j])
    steps, confs = zip(*batch.paths[j]) if batch.paths[j] else ((), ())
    item: dict[str, Any] = {
        "id": id_,
        "label": label,
        "pred": int(batch.preds[j]),
        "source": int(batch.sources[j]),
        "target": target,
        "target_name": classes[target] if target < len(classes) else str(target),
        "success": bool(batch.success[j]),
        "distance": float(batch.pixel_distance[j]),
        "latent_distance": float(batch.latent_distance[j]),
        "recon_error": float(batch.recon_error[j]),
        "reconstruction_pred": int(batch.recon_preds[j]),
        "counterfactual_pred": int(batch.cf_preds[j]),
        "counterfactual_confidence": float(batch.cf_confidence[j]),
        "steps": int(batch.steps_taken[j]),
        "path_steps": list(steps),
        "path_confidence": [round(c, 6) for c in confs],
        "diff_grid": diff_grid(batch.differences[j]),
        "pngs": {},
    }
    if out_dir is not None:
        item["pngs"] = _save_pngs(batch, j, id_, out_dir)
    return item


def _save_pngs(batch: CounterfactualBatch, j: int, id_: str, out_dir: Path) -> dict[str, str]:
    """Original, reconstruction, counterfactual and a signed difference map (blue less, red more)."""
    from matplotlib import colormaps
    from PIL import Image

    stem = "cf-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", id_)[:80]
    names = {}
    for kind, t in (("original", batch.originals), ("reconstruction", batch.reconstructions), ("counterfactual", batch.counterfactuals)):
        arr = (t[j].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        names[kind] = f"{stem}-{kind}.png"
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr[..., :3]).save(out_dir / names[kind])
    diff = batch.differences[j].mean(0).numpy()
    scale = max(float(np.abs(diff).max()), 1e-6)
    rgb = (colormaps["RdBu_r"]((diff / scale + 1) / 2)[..., :3] * 255).round().astype(np.uint8)
    names["difference"] = f"{stem}-difference.png"
    Image.fromarray(rgb).save(out_dir / names["difference"])
    return names


def _generator_shape(generator: nn.Module) -> tuple[int, int]:
    """(image size, channels) of a generator, read from one probe sample."""
    with torch.no_grad():
        dev = next(iter(generator.parameters()), torch.empty(0)).device
        probe = generator.synthesize(torch.zeros(1, generator.z_dim, device=dev), generator.embed(torch.zeros(1, dtype=torch.long, device=dev)))
    return int(probe.shape[-1]), int(probe.shape[1])


def _thin(path: list[tuple[int, float]], keep: int = PATH_POINTS) -> list[tuple[int, float]]:
    """At most ``keep`` evenly spaced points of a path, first and last included."""
    if len(path) <= keep:
        return path
    idx = np.unique(np.linspace(0, len(path) - 1, keep).round().astype(int))
    return [path[i] for i in idx]
