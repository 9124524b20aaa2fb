"""Causal confirmation of shortcut candidates by intervention on the model.

A candidate box is a hypothesis drawn from explanations; the model decides.
For a candidate of class c:

- **cover**: the box is replaced with the fill (the same replacement as the
  faithfulness curves, blur by default) in the images labelled c. A model
  that relies on what sits there loses accuracy and confidence for c. The
  same box mirrored through the image centre is covered too, as a control: a
  model that is merely fragile to any covered patch loses accuracy there as
  well, and only the difference counts.
- **paste**: the box's pixels from images of c that the model gets right are
  pasted at the same place into images of other classes (that the model does
  not already call c). A model that relies on the cue flips them to c. As a
  control the same box is pasted from images of a third class: the flips to c
  that any pasted pixels cause.

- **fallback**: the box is covered in the images of the *other* classes (the
  ones pasting goes into), and the share the model then calls c is counted;
  the mirrored box covered in the same images is the control. This tells
  apart two reasons why covering leaves class c's accuracy where it was: the
  model does not read the box for c, or c is the model's *fallback*, what it
  says when the box holds no cue (a model that decides every class by a patch
  still calls c's images c with the patch covered, because that is its answer
  for a covered patch). In the second case covering the box in the other
  classes' images turns them into c, and the box decides c as much as it
  decides them.

For an off-object candidate (a background cue, with object masks) the region
is the image off the object: covering fills each image's background, pasting
puts the other image's object on a background of class c (no mirrored
control for covering or the fallback: the background has no other place).

A candidate is confirmed when pasting flips at least ``min_flip_rate`` of the
other images to c beyond the control and either covering drops accuracy by
at least ``min_accuracy_drop`` beyond the control (``confirmed_by``: cover)
or, c being the fallback, covering the box in the other images turns at least
``min_flip_rate`` of them to c beyond the control (``confirmed_by``:
fallback); each intervention on at least ``min_images`` images. Every
(image, intervention) input is built lazily in device-sized batches and
passed through the model once, as the faithfulness curves are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from imaudit.audits.device import autocast, backoff_chunks, default_batch_size, to_device
from imaudit.audits.quality.faithfulness import Replacement, make_replacement


@dataclass(frozen=True)
class ConfirmSettings:
    """When an intervention confirms a candidate (AuditSpec.thresholds.explanations fills these in)."""

    min_accuracy_drop: float = 0.3
    min_flip_rate: float = 0.5
    min_images: int = 5
    max_images: int = 64  # per class and intervention: enough for the rates, bounded cost


@dataclass
class _Job:
    """One intervention over a list of images: which candidate, what, with which donors."""

    cand: int
    kind: str  # cover | cover_control | paste | paste_control | fallback | fallback_control
    images: np.ndarray  # row indices of the images changed
    donors: np.ndarray | None  # row indices of the donors (paste), aligned with images
    box: tuple[int, int, int, int]
    off_object: bool


def mirror_box(box: Sequence[int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box reflected through the image centre (a control at another place of the same size)."""
    h, w = size
    x0, y0, x1, y1 = box
    return (w - x1, h - y1, w - x0, h - y0)


def _rows(rng: np.random.Generator, rows: np.ndarray, cap: int) -> np.ndarray:
    return rows if len(rows) <= cap else np.sort(rng.choice(rows, cap, replace=False))


def _donor_cycle(rng: np.random.Generator, donors: np.ndarray, n: int) -> np.ndarray:
    """``n`` donors, each used about equally often, in a seeded order."""
    if not len(donors):
        return donors
    return rng.permutation(np.resize(rng.permutation(donors), n))


class Intervention:
    """Runs cover / paste interventions for many candidates in shared batches."""

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Sequence[int],
        *,
        masks: np.ndarray | None = None,
        fill: str | Replacement = "blur",
        device: torch.device | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        settings: ConfirmSettings | None = None,
    ) -> None:
        self.model = model
        self.x = images.float()
        self.y = np.asarray(labels, dtype=np.int64)
        self.device = device or next(model.parameters()).device
        self.bs = batch_size or default_batch_size(self.device, tuple(self.x.shape[-2:]))
        self.fill_name, self.fill, self.fill_needs_mask = make_replacement(fill)
        self.masks = None if masks is None else torch.as_tensor(np.asarray(masks) > 0.5)
        self.seed = seed
        self.s = settings or ConfirmSettings()
        self.size = (int(images.shape[-2]), int(images.shape[-1]))

    @torch.inference_mode()
    def _probs(self, x: Tensor) -> Tensor:
        """Softmax outputs of a CPU batch, computed on the device in backed-off chunks."""
        def run(a: int, b: int) -> Tensor:
            with autocast(self.device):
                out = self.model(to_device(x[a:b], self.device))
            return out.float().softmax(-1).cpu()

        parts = list(backoff_chunks(len(x), self.bs, run))
        return torch.cat(parts) if parts else torch.empty(0, 0)

    def confirm(self, candidates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each candidate with ``intervention`` {cover, paste, fill} and ``confirmed`` added (new dicts)."""
        self.model.eval()
        base = self._probs(self.x)
        pred = base.argmax(1).numpy() if len(base) else np.zeros(0, np.int64)
        rng = np.random.default_rng(self.seed)
        jobs: list[_Job] = []
        for k, cand in enumerate(candidates):
            jobs.extend(self._plan(k, cand, pred, rng))
        results = self._run(jobs)
        out = []
        for k, cand in enumerate(candidates):
            mine = {j.kind: (j, results[i]) for i, j in enumerate(jobs) if j.cand == k}
            out.append(self._judge(cand, mine, base, pred))
        return out

    def _plan(self, k: int, cand: dict[str, Any], pred: np.ndarray, rng: np.random.Generator) -> list[_Job]:
        c, box, off = int(cand["class_index"]), tuple(int(v) for v in cand["box"]), cand.get("kind") == "off-object"
        if off and self.masks is None:
            return []
        own = _rows(rng, np.flatnonzero(self.y == c), self.s.max_images)
        donors = np.flatnonzero((self.y == c) & (pred == c))
        targets = _rows(rng, np.flatnonzero((self.y != c) & (pred != c)), self.s.max_images)
        jobs = [_Job(k, "cover", own, None, box, off)]
        if not off:
            jobs.append(_Job(k, "cover_control", own, None, mirror_box(box, self.size), off))
        if len(targets):
            jobs.append(_Job(k, "fallback", targets, None, box, off))
            if not off:
                jobs.append(_Job(k, "fallback_control", targets, None, mirror_box(box, self.size), off))
        if len(donors) and len(targets):
            jobs.append(_Job(k, "paste", targets, _donor_cycle(rng, donors, len(targets)), box, off))
            # Control donors: images of a third class (neither c nor the target's), correctly predicted.
            ctrl_t, ctrl_d = [], []
            for t in targets:
                pool = np.flatnonzero((self.y != c) & (self.y != self.y[t]) & (pred == self.y))
                if len(pool):
                    ctrl_t.append(t)
                    ctrl_d.append(pool[rng.integers(len(pool))])
            if ctrl_t:
                jobs.append(_Job(k, "paste_control", np.asarray(ctrl_t), np.asarray(ctrl_d), box, off))
        return jobs

    def _region(self, rows: Tensor, box: tuple[int, int, int, int], off: bool, donors: Tensor | None) -> Tensor:
        """(B, 1, H, W) bool: the pixels an intervention replaces in each image."""
        h, w = self.size
        x0, y0, x1, y1 = box
        r = torch.zeros((len(rows), 1, h, w), dtype=torch.bool)
        r[:, :, max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
        if off:
            r &= ~self.masks[rows][:, None]
            if donors is not None:  # keep the donor's object out: only its background moves
                r &= ~self.masks[donors][:, None]
        return r

    def _run(self, jobs: list[_Job]) -> list[np.ndarray]:
        """Probabilities (n_images, classes) after each job's intervention, all jobs batched together."""
        spans, total = [], 0
        for j in jobs:
            spans.append((total, total + len(j.images)))
            total += len(j.images)
        flat_job = np.concatenate([np.full(len(j.images), i) for i, j in enumerate(jobs)]) if jobs else np.zeros(0, int)
        flat_pos = np.concatenate([np.arange(len(j.images)) for j in jobs]) if jobs else np.zeros(0, int)

        def build(a: int, b: int) -> Tensor:
            parts = []
            for ji in np.unique(flat_job[a:b]):
                j = jobs[ji]
                pos = flat_pos[a:b][flat_job[a:b] == ji]
                rows = torch.as_tensor(j.images[pos])
                donors = None if j.donors is None else torch.as_tensor(j.donors[pos])
                region = self._region(rows, j.box, j.off_object, donors)
                x = self.x[rows]
                if donors is None:
                    repl = self.fill(x, region)
                else:
                    repl = self.x[donors]
                parts.append(torch.where(region, repl, x))
            return torch.cat(parts)

        @torch.inference_mode()
        def run(a: int, b: int) -> Tensor:
            with autocast(self.device):
                out = self.model(to_device(build(a, b), self.device))
            return out.float().softmax(-1).cpu()

        probs = torch.cat(list(backoff_chunks(total, self.bs, run))).numpy() if total else np.zeros((0, 0))
        return [probs[a:b] for a, b in spans]

    def _judge(self, cand: dict[str, Any], mine: dict[str, tuple[_Job, np.ndarray]], base: Tensor, pred: np.ndarray) -> dict[str, Any]:
        c = int(cand["class_index"])
        probs = base.numpy()
        iv: dict[str, Any] = {"fill": self.fill_name}
        reasons = []
        if "cover" in mine:
            job, after = mine["cover"]
            rows = job.images
            cover = {
                "n": int(len(rows)),
                "accuracy_before": _r(np.mean(pred[rows] == c)),
                "accuracy_after": _r(np.mean(after.argmax(1) == c)),
                "confidence_before": _r(probs[rows, c].mean()),
                "confidence_after": _r(after[:, c].mean()),
            }
            if "cover_control" in mine:
                cjob, cafter = mine["cover_control"]
                cover["control_box"] = list(cjob.box)
                cover["control_accuracy_after"] = _r(np.mean(cafter.argmax(1) == c))
                cover["control_confidence_after"] = _r(cafter[:, c].mean())
            drop = cover["accuracy_before"] - cover["accuracy_after"]
            ctrl = cover["accuracy_before"] - cover.get("control_accuracy_after", cover["accuracy_before"])
            cover["accuracy_drop"] = _r(drop)
            cover["excess_drop"] = _r(drop - max(ctrl, 0.0))
            cover["wilson_after"] = wilson(int(round(cover["accuracy_after"] * len(rows))), len(rows))
            iv["cover"] = cover
        else:
            reasons.append("no images of the class to cover" if cand.get("kind") != "off-object" or self.masks is not None
                           else "no object masks to cover the background")
        if "paste" in mine:
            job, after = mine["paste"]
            flips = after.argmax(1) == c
            paste = {
                "n": int(len(job.images)),
                "flip_rate": _r(flips.mean()),
                "flips": int(flips.sum()),
                "confidence_before": _r(probs[job.images, c].mean()),
                "confidence_after": _r(after[:, c].mean()),
                "donors": int(len(np.unique(job.donors))),
                "wilson": wilson(int(flips.sum()), len(flips)),
            }
            if "paste_control" in mine:
                _, cafter = mine["paste_control"]
                paste["control_flip_rate"] = _r(np.mean(cafter.argmax(1) == c))
                paste["control_n"] = int(len(cafter))
            paste["excess_flip_rate"] = _r(paste["flip_rate"] - paste.get("control_flip_rate", 0.0))
            iv["paste"] = paste
        else:
            reasons.append("no correctly predicted images of the class to paste from, or no other images to paste into")
        if "fallback" in mine:
            iv["fallback"] = _fallback(c, mine)
        confirmed_by = _confirmed_by(iv, self.s)
        confirmed = confirmed_by is not None
        if not confirmed and not reasons:
            reasons.append(_why_not(iv, self.s))
        iv["thresholds"] = {"min_accuracy_drop": self.s.min_accuracy_drop, "min_flip_rate": self.s.min_flip_rate,
                            "min_images": self.s.min_images}
        extra: dict[str, Any] = {}
        if cand.get("kind") == "off-object" and cand.get("area") is None and self.masks is not None and "cover" in mine:
            extra["area"] = _r(1.0 - self.masks[torch.as_tensor(mine["cover"][0].images)].float().mean())
        return {**cand, **extra, "image_size": [self.size[1], self.size[0]], "confirmed": confirmed, "intervention": iv,
                **({"confirmed_by": confirmed_by} if confirmed else {}),
                **({"not_confirmed_because": "; ".join(reasons)} if reasons else {})}


def _fallback(c: int, mine: dict[str, tuple[_Job, np.ndarray]]) -> dict[str, Any]:
    """Covering the box in the other classes' images: the share the model then calls ``c``, and the control."""
    job, after = mine["fallback"]
    to_c = after.argmax(1) == c
    out: dict[str, Any] = {"n": int(len(job.images)), "rate": _r(to_c.mean()), "to_class": int(to_c.sum()),
                           "wilson": wilson(int(to_c.sum()), len(to_c))}
    if "fallback_control" in mine:
        _, cafter = mine["fallback_control"]
        out["control_rate"] = _r(np.mean(cafter.argmax(1) == c))
    out["excess_rate"] = _r(out["rate"] - out.get("control_rate", 0.0))
    return out


def _confirmed_by(iv: dict[str, Any], s: ConfirmSettings) -> str | None:
    """``cover`` or ``fallback`` when the interventions confirm the candidate (module docstring), else None."""
    cover, paste, fallback = iv.get("cover"), iv.get("paste"), iv.get("fallback")
    if not (cover and paste) or min(cover["n"], paste["n"]) < s.min_images or paste["excess_flip_rate"] < s.min_flip_rate:
        return None
    if cover["excess_drop"] >= s.min_accuracy_drop:
        return "cover"
    if fallback and fallback["n"] >= s.min_images and fallback["excess_rate"] >= s.min_flip_rate:
        return "fallback"
    return None


def _why_not(iv: dict[str, Any], s: ConfirmSettings) -> str:
    parts = []
    cov, pas, fb = iv.get("cover", {}), iv.get("paste", {}), iv.get("fallback", {})
    if min(cov.get("n", 0), pas.get("n", 0)) < s.min_images:
        parts.append(f"fewer than {s.min_images} images for an intervention")
    if cov.get("excess_drop", 0.0) < s.min_accuracy_drop and fb.get("excess_rate", 0.0) < s.min_flip_rate:
        parts.append(f"covering drops accuracy by {cov.get('excess_drop', 0.0):.2f} beyond the control "
                     f"(needs {s.min_accuracy_drop:.2f}) and turns {fb.get('excess_rate', 0.0):.0%} of other images "
                     f"to the class beyond the control (needs {s.min_flip_rate:.0%} when the class is the fallback)")
    if pas.get("excess_flip_rate", 0.0) < s.min_flip_rate:
        parts.append(f"pasting flips {pas.get('excess_flip_rate', 0.0):.0%} beyond the control "
                     f"(needs {s.min_flip_rate:.0%})")
    return "; ".join(parts)


def _r(v: float) -> float:
    return round(float(v), 4)


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion k/n (None for n = 0)."""
    if n <= 0:
        return None
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def confirm_candidates(
    model: nn.Module,
    images: Tensor,
    labels: Sequence[int],
    candidates: Sequence[dict[str, Any]],
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Confirm or reject each candidate by intervention (see the module docstring and ``Intervention``)."""
    if not candidates:
        return []
    return Intervention(model, images, labels, **kwargs).confirm(candidates)
