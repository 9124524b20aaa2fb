"""Every check over an audit's explanations, with what each check saw (coverage).

Input: the explained sample (images, rows, masks) and each method's maps.
Output: the audit.json sections global_importance, strategies, quality,
shortcuts, the explanation findings, per-method quality summaries, the
settings every check used (fills, baselines, native resolutions) and a
coverage entry per check: images and classes seen, or why it could not run.

Everything is grouped by the *explained* class (the class each map explains:
the predicted class by default), not by the true label: a map of an image
predicted "3" shows why the model said 3.

This module composes the engine's pieces (aggregate, strategies, shortcuts,
quality, explain_findings), each tested on its own; the insights stage reads
the files and calls ``run_checks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from imaudit.audits.aggregate import ImportanceAggregator
from imaudit.audits.device import prepare_model
from imaudit.audits.explain_findings import explanation_findings
from imaudit.audits.quality import agreement, deletion_insertion, localisation
from imaudit.audits.quality.faithfulness import reference_curves
from imaudit.audits.quality.priors import PRIORS
from imaudit.audits.quality.sanity import ScratchCopy, cascading_sanity, method_explain_fn, model_blocks
from imaudit.audits.shortcuts import ConfirmSettings, SearchSettings, check_shortcuts, spray_subsets
from imaudit.audits.spec import AuditSpec
from imaudit.audits.strategies import spray_clusters


@dataclass
class MethodMaps:
    """One method's maps over (a prefix of) the sample."""

    maps: np.ndarray  # (N, H, W)
    ids: list[str]
    targets: np.ndarray  # the class each map explains
    labels: np.ndarray  # true class
    settings: dict[str, Any] = field(default_factory=dict)  # the method's settings record (native resolution, baseline)
    channels: np.ndarray | None = None  # (N, C) channel importance, where the method has channel maps


@dataclass
class ExplainedSample:
    """The audit's explained images: model-ready tensors, their rows (id, y, pred, ...) and object masks."""

    images: Tensor
    rows: pd.DataFrame
    masks: np.ndarray | None
    target_column: str = "pred"

    def positions(self, ids: Sequence[str]) -> list[int]:
        pos = {str(i): k for k, i in enumerate(self.rows["id"].astype(str))}
        return [pos[str(i)] for i in ids]


def coverage_entry(ran: bool, images: int = 0, classes: Sequence[str] | int = (), reason: str | None = None,
                   *, failed: bool = False, **extra: Any) -> dict[str, Any]:
    """One check's coverage: did it run, on how many images and which classes, and if not, why.

    ``failed`` says the check broke (its stage raised, every image failed), as opposed to being
    skipped on purpose (turned off, not applicable, no masks): readers decide red or grey by it,
    never by the reason's wording.
    """
    return {"ran": bool(ran), "images": int(images), "classes": list(classes) if not isinstance(classes, int) else classes,
            "reason": reason, "failed": bool(failed), **extra}


def _names(classes: Sequence[str], idx: np.ndarray) -> list[str]:
    return [classes[int(c)] for c in sorted(set(np.asarray(idx).tolist()))]


def _native(m: MethodMaps) -> list[int] | None:
    cells = (m.settings.get("native_resolution") or {}).get("cells")
    return list(cells) if cells else None


class ExplanationChecks:
    """Runs the checks of ``run_checks`` one by one; each method fills its section and its coverage."""

    def __init__(self, spec: AuditSpec, model: nn.Module, classes: Sequence[str], sample: ExplainedSample,
                 maps: dict[str, MethodMaps], *, mean: Any, std: Any, device: torch.device) -> None:
        self.spec, self.model, self.classes, self.sample, self.maps = spec, model, list(classes), sample, maps
        self.mean, self.std, self.device = mean, std, device
        self.th, self.q = spec.thresholds.explanations, spec.quality
        self.coverage: dict[str, dict[str, Any]] = {}
        self.quality: dict[str, Any] = {"faithfulness": {}, "sanity": {}, "localisation": {}}
        self.method_quality: dict[str, dict[str, Any]] = {m: {} for m in maps}

    def _masks(self, m: MethodMaps) -> np.ndarray | None:
        if self.sample.masks is None:
            return None
        return self.sample.masks[self.sample.positions(m.ids)]

    # -- global importance and strategies ------------------------------------------------------------

    def global_importance(self) -> dict[str, Any]:
        out = {}
        for name, m in self.maps.items():
            agg = ImportanceAggregator(self.classes, grid=self.th.grid, hot_lift=self.th.region_hot_lift)
            agg.update(m.maps, m.targets, masks=self._masks(m), ids=m.ids)
            out[name] = agg.compute()
            out[name]["grouped_by"] = "explained class"
            if m.channels is not None and m.channels.ndim == 2 and m.channels.sum() > 0:
                out[name]["channels"] = (m.channels.sum(0) / m.channels.sum()).tolist()
            self.coverage[f"global_importance:{name}"] = coverage_entry(
                True, len(m.ids) - len(agg.skipped), _names(self.classes, m.targets),
                skipped=len(agg.skipped))
        return out

    def strategies(self) -> dict[str, Any]:
        out = {}
        for name, m in self.maps.items():
            if not self.q.strategies:
                self.coverage[f"strategies:{name}"] = coverage_entry(False, reason="turned off (quality.strategies)")
                continue
            out[name] = spray_clusters(m.maps, m.targets, m.ids, self.classes, masks=self._masks(m),
                                       seed=self.spec.seed, hot_lift=self.th.region_hot_lift)
            clustered = [c for c, info in out[name]["classes"].items() if info.get("k", 1) > 1 or info.get("eigenvalues")]
            self.coverage[f"strategies:{name}"] = coverage_entry(
                True, len(m.ids), clustered,
                reason=None if clustered else "no class has enough explained images to cluster (6 needed)")
        return out

    # -- faithfulness ---------------------------------------------------------------------------------

    def faithfulness(self) -> None:
        if not self.q.faithfulness:
            for name in self.maps:
                self.coverage[f"faithfulness:{name}"] = coverage_entry(False, reason="turned off (quality.faithfulness)")
            return
        k = self.q.faithfulness_images
        rows = self.sample.rows.head(k)
        x = self.sample.images[: len(rows)]
        # astype: sample.csv may come back with an object column (pandas 3), as the explain stage also expects
        targets = torch.as_tensor(rows[self.sample.target_column].astype("int64").to_numpy().copy())
        ids = rows["id"].astype(str).tolist()
        common = dict(steps=self.q.deletion_steps, baseline=self.q.fill, device=self.device,
                      batch_size=self.spec.batch_size, seed=self.spec.seed)
        reference = None
        if len(rows):
            priors = {p: PRIORS[p](x) for p in self.q.priors}
            reference = reference_curves(self.model, x, targets, ids=ids, priors=priors,
                                         random_trials=self.q.random_orders, **common)
        first = set(ids)
        for name, m in self.maps.items():
            use = [i for i, mid in enumerate(m.ids) if mid in first][:k]
            if not use:
                self.coverage[f"faithfulness:{name}"] = coverage_entry(False, reason="no explained images")
                continue
            pos = self.sample.positions([m.ids[i] for i in use])
            f = deletion_insertion(self.model, self.sample.images[pos], torch.as_tensor(m.targets[use]),
                                   m.maps[use], ids=[m.ids[i] for i in use], reference=reference, **common)
            self.quality["faithfulness"][name] = f
            self.method_quality[name].update({key: f.get(key) for key in (
                "deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc", "deletion_gain",
                "deletion_gain_ci", "insertion_gain", "insertion_gain_ci", "deletion_vs_random") if key in f})
            self.coverage[f"faithfulness:{name}"] = coverage_entry(
                True, f.get("count", 0), _names(self.classes, m.targets[use]), random_orders=f.get("random_orders"),
                priors=f.get("priors_used"), fill=f.get("baseline"), failures=len(f.get("failures", [])))

    # -- sanity ---------------------------------------------------------------------------------------

    def sanity(self) -> None:
        blocks: list[list[str]] | None = None  # the model's blocks: traced once, shared by every method's cascade
        scratch: ScratchCopy | None = None  # one copy of the model to randomise, restored before each cascade
        for name, m in self.maps.items():
            if name not in self.q.sanity_methods or self.q.sanity_images <= 0:
                self.coverage[f"sanity:{name}"] = coverage_entry(
                    False, reason="not among quality.sanity_methods (it re-explains once per model block)")
                continue
            n = min(self.q.sanity_images, len(m.ids))
            pos = self.sample.positions(m.ids[:n])
            if blocks is None:
                blocks = model_blocks(self.model, self.sample.images[pos[:1]].to(next(self.model.parameters()).device))
                scratch = ScratchCopy(self.model)
            fn = method_explain_fn(name, device=self.device, mean=self.mean, std=self.std, seed=self.spec.seed,
                                   **(self.spec.method_settings.get(name) or {}))
            s = cascading_sanity(self.model, self.sample.images[pos], torch.as_tensor(m.targets[:n]), fn,
                                 seed=self.spec.seed, original_maps=m.maps[:n], max_rank_corr=self.th.sanity_max_rank_corr,
                                 max_ssim=self.th.sanity_max_ssim, judge_at=tuple(self.th.sanity_judge_at), ids=m.ids[:n],
                                 blocks=blocks, scratch=scratch)
            self.quality["sanity"][name] = s
            self.method_quality[name]["sanity"] = {k: s.get(k) for k in ("passed", "rank_corr", "ssim", "n_layers", "blocks")}
            inconclusive = [j["inconclusive"] for j in s["judged"] if j.get("inconclusive")]
            self.coverage[f"sanity:{name}"] = coverage_entry(
                True, n, _names(self.classes, m.targets[:n]), blocks=s["blocks"], judged_depths=[j["depth"] for j in s["judged"]],
                reason="; ".join(inconclusive) or None)

    # -- localisation and agreement ----------------------------------------------------------------------

    def localisation(self) -> None:
        for name, m in self.maps.items():
            masks = self._masks(m)
            if masks is None:
                self.coverage[f"localisation:{name}"] = coverage_entry(False, reason="the dataset has no object masks")
                continue
            loc = localisation(m.maps, masks, ids=m.ids)
            self.quality["localisation"][name] = loc
            self.method_quality[name]["localisation"] = {k: loc.get(k) for k in ("pointing_game", "mass_inside", "mask_area", "mass_lift")}
            self.coverage[f"localisation:{name}"] = coverage_entry(True, loc["count"], _names(self.classes, m.targets),
                                                                   skipped=len(loc["skipped"]))

    def agreement(self) -> None:
        if len(self.maps) < 2:
            self.coverage["agreement"] = coverage_entry(False, reason="needs at least two methods with maps")
            return
        target_of: dict[str, int] = {}
        for m in self.maps.values():
            target_of.update(zip(m.ids, (int(t) for t in m.targets)))
        a = agreement({k: m.maps for k, m in self.maps.items()}, {k: m.ids for k, m in self.maps.items()},
                      target_of, self.classes)
        self.quality["agreement"] = a
        counts = [p["count"] for p in a["pairs"]]
        self.coverage["agreement"] = coverage_entry(True, max(counts, default=0), sorted(a["per_class"]),
                                                    pairs=len(a["pairs"]), grouped_by="explained class")

    # -- shortcuts ------------------------------------------------------------------------------------------

    def shortcuts(self, strategies: dict[str, Any]) -> dict[str, Any]:
        if not self.q.shortcuts:
            for key in ("shortcut_search", "shortcut_confirmation"):
                self.coverage[key] = coverage_entry(False, reason="turned off (quality.shortcuts)")
            return {"candidates": []}
        if not self.maps:
            for key in ("shortcut_search", "shortcut_confirmation"):
                self.coverage[key] = coverage_entry(False, reason="no method produced maps")
            return {"candidates": []}
        th = self.th
        search = SearchSettings(grid=th.shortcut_grid, top_share=th.shortcut_top_share,
                                min_frequency=th.shortcut_hot_frequency, min_images=th.shortcut_min_images,
                                max_area=th.shortcut_max_area, max_on_object=th.shortcut_max_on_object,
                                off_object_odds_ratio=th.off_object_odds_ratio)
        confirm = ConfirmSettings(min_accuracy_drop=th.confirm_accuracy_drop, min_flip_rate=th.confirm_flip_rate,
                                  min_images=th.confirm_min_images, max_images=self.q.confirm_images)
        out = check_shortcuts(
            {k: m.maps for k, m in self.maps.items()}, {k: m.targets for k, m in self.maps.items()}, self.classes,
            model=self.model, images=self.sample.images, labels=self.sample.rows["y"].to_numpy(),
            masks_by_method={k: self._masks(m) for k, m in self.maps.items()}, masks=self.sample.masks,
            subsets_by_method={k: spray_subsets(strategies.get(k) or {}, m.ids, self.classes, th.spray_min_cluster_size)
                               for k, m in self.maps.items()},
            native_by_method={k: _native(m) for k, m in self.maps.items()},
            search=search, confirm=confirm, max_candidates=th.shortcut_max_candidates,
            min_contrast=th.shortcut_min_contrast, fill=self.q.fill,
            device=self.device, batch_size=self.spec.batch_size, seed=self.spec.seed,
        )
        searched = sorted({c for s in out["search"].values() for c in s["classes"]}, key=self.classes.index)
        too_few = sorted({c for s in out["search"].values() for c in s["too_few"]} - set(searched), key=self.classes.index)
        self.coverage["shortcut_search"] = coverage_entry(
            bool(searched), max(s["images"] for s in out["search"].values()), searched,
            reason=None if searched else f"no class has {th.shortcut_min_images} explained images",
            methods={k: {"images": s["images"], "classes": len(s["classes"])} for k, s in out["search"].items()},
            classes_with_too_few_images=too_few,
            candidates=len(out["candidates"]) + len(out["dropped"]) + len(out["not_tested"]),
            not_tested=len(out["not_tested"]),
            masks=self.sample.masks is not None)
        conf = out["confirmation"]
        tested = conf["tested"]
        self.coverage["shortcut_confirmation"] = coverage_entry(
            tested > 0, conf["images"] if tested else 0, conf["classes"] if tested else [],
            reason=None if tested else "no candidate to test",
            tested=tested, confirmed=sum(bool(c["confirmed"]) for c in out["candidates"]),
            background_tests=conf["background_tests"], fill=conf["fill"])
        return out

    def settings(self) -> dict[str, Any]:
        """Every method's baseline / fill and native resolution, and the fills of the checks."""
        return {
            "methods": {k: {"baseline": m.settings.get("baseline"), "native_resolution": m.settings.get("native_resolution")}
                        for k, m in self.maps.items()},
            "faithfulness": {"fill": self.q.fill, "steps": self.q.deletion_steps, "random_orders": self.q.random_orders,
                             "priors": list(self.q.priors), "images": self.q.faithfulness_images},
            "shortcut_confirmation": {"fill": self.q.fill, "images_per_class": self.q.confirm_images},
            "sanity": {"cascade": "blocks re-initialised from the top, norm layers included",
                       "judge_at": list(self.th.sanity_judge_at), "images": self.q.sanity_images},
            "grouped_by": "explained class" if self.sample.target_column == "pred" else "true class",
        }


def run_checks(spec: AuditSpec, model: nn.Module, classes: Sequence[str], sample: ExplainedSample,
               maps: dict[str, MethodMaps], *, mean: Any = None, std: Any = None,
               device: torch.device | None = None) -> dict[str, Any]:
    """All explanation checks; returns the audit.json sections, findings and coverage (see the module docstring)."""
    device = device or next(model.parameters()).device
    # Eval mode, frozen and on the audit's device: this stage may run in a fresh process (a Dask
    # worker, cached explanations) where nothing moved the model yet.
    prepare_model(model, device)
    checks = ExplanationChecks(spec, model, classes, sample, maps, mean=mean, std=std, device=device)
    gi = checks.global_importance()
    strategies = checks.strategies()
    checks.faithfulness()
    checks.sanity()
    checks.localisation()
    checks.agreement()
    shortcuts = checks.shortcuts(strategies)
    findings = explanation_findings(checks.quality, spec.thresholds.explanations,
                                    shortcuts=shortcuts.get("candidates", []))
    return {
        "global_importance": gi,
        "strategies": strategies,
        "quality": checks.quality,
        "method_quality": checks.method_quality,
        "shortcuts": {k: v for k, v in shortcuts.items() if k != "candidates"}
        | {"tested": [{k: c.get(k) for k in ("class", "kind", "box", "methods", "source", "confirmed")}
                      for c in shortcuts.get("candidates", [])]},
        "findings": [f.model_dump(mode="json") for f in findings],
        "coverage": checks.coverage,
        "settings": checks.settings(),
    }
