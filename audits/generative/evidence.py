"""Counterfactual changes as evidence: cited by the shortcut finding, or an info finding of their own.

Run when the audit's findings are assembled, because it needs both the
``shortcut`` findings (explanations + intervention, evidence contract in
HELPERS.md: ``box`` [x0, y0, x1, y1] in model-input pixels, ``image_size``
[w, h]) and the ``concentration`` of the counterfactual section (change maps
per target class as grids, concentration.py).

- A shortcut finding whose box holds at least ``cite_mass`` of some group's
  change (per target class or over all targets, at least ``min_images``
  images) at ``cite_lift`` x the box's area share gets a ``counterfactual``
  key in its evidence and one sentence in its message.
- A group whose top box is a small fixed region (``hotspot_*`` thresholds)
  that no shortcut finding covers raises ``counterfactual-hotspot`` (info):
  no other check named it, so a person should look.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imaudit.audits.result import Finding
from imaudit.audits.spec import CounterfactualThresholds

from .concentration import box_mass

ALL_TARGETS = "all targets"


def _groups(conc: dict[str, Any], t: CounterfactualThresholds) -> dict[str, dict[str, Any]]:
    """Target-class groups (and all targets) with enough images to count."""
    groups = {f"towards {cls}": g for cls, g in (conc.get("per_class") or {}).items()}
    if conc.get("overall"):
        groups[ALL_TARGETS] = conc["overall"]
    return {name: g for name, g in groups.items() if g.get("images", 0) >= t.min_images and g.get("grid")}


def finding_box(f: Finding, image_size: list[int]) -> tuple[list[float], list[int]] | None:
    """(box, image_size) a shortcut finding names: its ``box`` (the contract), else its named region's box."""
    ev = f.evidence or {}
    box = ev.get("box")
    if isinstance(box, (list, tuple)) and len(box) == 4:
        size = ev.get("image_size") or image_size
        return [float(v) for v in box], [int(size[0]), int(size[1])]
    region = ev.get("region")
    if isinstance(region, str):
        from imaudit.audits.aggregate import region_masks

        w, h = image_size
        mask = region_masks(h, w).get(region)
        if mask is not None and mask.any() and not mask.all():
            ys, xs = np.nonzero(mask)
            return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)], [w, h]
    return None


def names_a_place(f: Finding) -> bool:
    """A shortcut finding about one place in the image (not the whole background: an ``off-object`` candidate).

    An off-object finding's box is the whole image; counterfactual change there says nothing about it, and it
    must not hide a small hotspot either.
    """
    return f.code == "shortcut" and (f.evidence or {}).get("kind") != "off-object"


def support(groups: dict[str, dict[str, Any]], box: list[float], image_size: list[int]) -> dict[str, dict[str, float]]:
    """Per group: the share of its change inside ``box`` and that share over the box's area share."""
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0) / (image_size[0] * image_size[1])
    out = {}
    for name, g in groups.items():
        mass = box_mass(np.asarray(g["grid"]), box, image_size)
        out[name] = {"mass": round(mass, 4), "lift": round(mass / area, 2) if area > 0 else None, "images": g["images"]}
    return out


def _cites(s: dict[str, float], t: CounterfactualThresholds) -> bool:
    return s["mass"] >= t.cite_mass and (s["lift"] or 0) >= t.cite_lift


def link_counterfactuals(findings: list[Finding], generative: dict[str, Any] | None,
                         t: CounterfactualThresholds) -> list[Finding]:
    """The findings with counterfactual evidence added to shortcut findings, plus hotspot findings."""
    conc = (generative or {}).get("concentration") or {}
    groups = _groups(conc, t)
    if not groups:
        return findings
    size = next(iter(groups.values()))["image_size"]
    out: list[Finding] = []
    named: list[tuple[list[float], list[int]]] = []
    for f in findings:
        located = finding_box(f, size) if names_a_place(f) else None
        if located is None:
            out.append(f)
            continue
        named.append(located)
        per_group = support(groups, *located)
        citing = {k: v for k, v in per_group.items() if _cites(v, t)}
        if not citing:
            out.append(f.model_copy(update={"evidence": {**f.evidence, "counterfactual": {
                "supports": False, "groups": per_group, "thresholds": _cite_thresholds(t)}}}))
            continue
        best = max(citing, key=lambda k: citing[k]["mass"])
        sentence = (f" Counterfactuals agree: {citing[best]['mass']:.0%} of their absolute change "
                    f"({best}, {citing[best]['images']} images) lies in this box, {citing[best]['lift']:.1f}x its area share.")
        out.append(f.model_copy(update={
            "message": f.message.rstrip() + sentence,
            "evidence": {**f.evidence, "counterfactual": {"supports": True, "groups": per_group, "best": best,
                                                          "thresholds": _cite_thresholds(t)}},
        }))
    return out + hotspot_findings(groups, named, t)


def _cite_thresholds(t: CounterfactualThresholds) -> dict[str, float]:
    return {"cite_mass": t.cite_mass, "cite_lift": t.cite_lift, "min_images": t.min_images}


def _is_hotspot(b: dict[str, Any], t: CounterfactualThresholds) -> bool:
    return (b["area"] <= t.hotspot_max_area and b["mass"] >= t.hotspot_mass and b["lift"] >= t.hotspot_lift
            and (b.get("consistency") or 0) >= t.hotspot_consistency)


def hotspot_findings(groups: dict[str, dict[str, Any]], named: list[tuple[list[float], list[int]]],
                     t: CounterfactualThresholds) -> list[Finding]:
    """One info finding per small fixed region where counterfactuals concentrate and no shortcut finding looked."""
    regions: list[dict[str, Any]] = []
    for name, g in groups.items():
        top = (g.get("boxes") or [None])[0]
        if top is None or not _is_hotspot(top, t):
            continue
        grid = np.asarray(g["grid"])
        if any(box_mass(grid, box, size) >= 0.5 * box_mass(grid, top["box"], g["image_size"])
               for box, size in named):
            continue  # a shortcut finding covers it: evidence belongs there
        same = next((r for r in regions if _iou(r["box"], top["box"]) >= 0.3), None)
        if same is None:
            regions.append({"box": top["box"], "image_size": g["image_size"], "groups": {name: top}})
        else:
            same["groups"][name] = top
    out = []
    for r in regions:
        best_name = max(r["groups"], key=lambda k: r["groups"][k]["mass"])
        best = r["groups"][best_name]
        r["box"] = best["box"]  # groups merged into one region name the box of the one holding most change
        classes = [k.removeprefix("towards ") for k in r["groups"] if k != ALL_TARGETS]
        out.append(Finding(
            code="counterfactual-hotspot",
            severity="info",
            message=(f"Counterfactuals concentrate their change in a small fixed region: {best['mass']:.0%} of the "
                     f"change ({best_name}, {groups[best_name]['images']} images) lies in box {r['box']} "
                     f"({best['area']:.1%} of the image, {best['lift']:.1f}x its share), hot in "
                     f"{best['consistency']:.0%} of those images; no other check named this region"),
            evidence={"box": r["box"], "image_size": r["image_size"], "classes": classes, "groups": r["groups"],
                      "thresholds": {k: getattr(t, k) for k in ("hotspot_max_area", "hotspot_mass", "hotspot_lift",
                                                                "hotspot_consistency", "min_images")}},
        ))
    return out


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
