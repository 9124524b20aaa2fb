"""Explanation results -> findings a reviewer acts on, each with the numbers behind it.

Codes and severities (thresholds: AuditSpec.thresholds.explanations):

- ``shortcut``: a corner or edge region, or the area off the object, holds a
  consistent, outsized share of a class's attribution (see
  ExplanationThresholds). One finding per region, naming the classes and the
  methods. ``error`` when two or more methods agree on the region from global
  importance, ``warning`` when one method does or only a SpRAy strategy
  cluster (a subset of the class's images) shows it.
- ``unfaithful-explanation``: deleting pixels in the method's order lowers the
  target probability no faster than a random order: deletion gain below
  ``faithfulness_margin`` (and, with ``faithfulness_use_insertion``, insertion
  gain below it too). ``warning``; ``error`` when the map order is worse than
  random by the same margin (on both curves with insertion).
- ``failed-sanity-check``: maps barely change when the model's top layers are
  randomised. ``error`` when both rank correlation and SSIM are over their
  limits, ``warning`` when one is.
- ``low-method-agreement``: pairs of methods whose maps' mean rank correlation
  is below ``agreement_min``. ``warning`` when the mean over all pairs is
  below it too (the methods broadly disagree), otherwise ``info``.

``miscalibration`` comes from the diagnose module (ECE), not from here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from imaudit.audits.aggregate import CORNERS, EDGES
from imaudit.audits.result import Finding
from imaudit.audits.spec import ExplanationThresholds

SHORTCUT_REGIONS = (*CORNERS, *EDGES)
OFF_OBJECT = "off-object"


def _region_name(region: str) -> str:
    if region == OFF_OBJECT:
        return "area off the object"
    return f"{region} corner" if region in CORNERS else f"{region} edge"


def _pick(nested: dict[str, Any], region: str) -> float | None:
    group = "corners" if region in CORNERS else "edges"
    return (nested or {}).get(group, {}).get(region)


def _odds_ratio(mass: float, area: float) -> float:
    """Odds of the attribution mass over odds of the area share: a lift that still works for large areas."""
    eps = 1e-9
    return (mass / max(1 - mass, eps)) / max(area / max(1 - area, eps), eps)


def _region_hits(stats: dict[str, Any], t: ExplanationThresholds) -> list[dict[str, Any]]:
    """Regions of one class (or one cluster) whose attribution passes the shortcut tests.

    Only the most specific region is kept: an edge that holds a hot corner, or
    the off-object area that holds a hot corner or edge, is the same evidence.
    """
    hits = []
    masses = stats.get("regions_off_object") or stats.get("regions") or {}
    for region in SHORTCUT_REGIONS:
        mass, area = _pick(masses, region), _pick(stats.get("region_area"), region)
        if mass is None or not area:
            continue
        lift = mass / area
        cons = _pick(stats.get("consistency"), region)
        if mass >= t.shortcut_mass and lift >= t.shortcut_lift and (cons is None or cons >= t.shortcut_consistency):
            hits.append({"region": region, "mass": round(mass, 4), "area": round(area, 4), "lift": round(lift, 2),
                         **({"consistency": round(cons, 3)} if cons is not None else {})})
    corners = {h["region"] for h in hits if h["region"] in CORNERS}
    hits = [h for h in hits if h["region"] in CORNERS or not any(c.startswith(h["region"]) or c.endswith(h["region"])
                                                                for c in corners)]
    off, obj = stats.get("off_object"), stats.get("object_area")
    if not hits and off is not None and obj is not None and 0 < obj < 1:
        ratio = _odds_ratio(off, 1 - obj)
        if off >= t.shortcut_mass and ratio >= t.off_object_odds_ratio:
            hits.append({"region": OFF_OBJECT, "mass": round(off, 4), "area": round(1 - obj, 4),
                         "odds_ratio": round(ratio, 2)})
    return hits


def _shortcut_findings(
    global_importance: dict[str, Any], strategies: dict[str, Any], t: ExplanationThresholds, class_order: list[str]
) -> list[Finding]:
    by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for method, gi in (global_importance or {}).items():
        for cls, stats in (gi or {}).get("per_class_stats", {}).items():
            if stats.get("count", 0) < t.shortcut_min_images:
                continue
            for hit in _region_hits(stats, t):
                by_region[hit.pop("region")].append({"source": "global", "method": method, "class": cls,
                                                     "images": stats["count"], **hit})
    for method, sp in (strategies or {}).items():
        area = (sp or {}).get("region_area")
        for cls, info in (sp or {}).get("classes", {}).items():
            for cl in info.get("clusters", []):
                if cl["size"] < t.spray_min_cluster_size:
                    continue
                for hit in _region_hits({**cl, "region_area": area}, t):
                    by_region[hit.pop("region")].append({
                        "source": "spray", "method": method, "class": cls, "images": cl["size"],
                        "cluster_fraction": round(cl["fraction"], 3), "exemplar_ids": cl["exemplar_ids"], **hit})
    findings = []
    for region, hits in by_region.items():
        classes = sorted({h["class"] for h in hits}, key=lambda c: (class_order.index(c) if c in class_order else 10**9, c))
        methods = sorted({h["method"] for h in hits})
        global_methods = {h["method"] for h in hits if h["source"] == "global"}
        top = max(hits, key=lambda h: h["mass"])
        only_spray = not global_methods
        severity = "error" if len(global_methods) >= 2 else "warning"
        share = f"{top['mass']:.0%} of the attribution on {top['area']:.0%} of the image"
        scope = " in a strategy cluster (SpRAy)" if only_spray else ""
        findings.append(Finding(
            code="shortcut",
            severity=severity,
            message=(f"Possible shortcut: attribution concentrates in the {_region_name(region)} for class(es) "
                     f"{', '.join(classes)}{scope} ({', '.join(methods)}; up to {share})"),
            evidence={"region": region, "classes": classes, "methods": methods, "hits": hits,
                      "thresholds": {"shortcut_mass": t.shortcut_mass, "shortcut_lift": t.shortcut_lift,
                                     "shortcut_consistency": t.shortcut_consistency,
                                     "off_object_odds_ratio": t.off_object_odds_ratio}},
        ))
    return findings


def _faithfulness_findings(faith: dict[str, Any], t: ExplanationThresholds) -> list[Finding]:
    out = []
    for method, r in (faith or {}).items():
        gain, ins = (r or {}).get("deletion_gain"), (r or {}).get("insertion_gain")
        if gain is None or gain >= t.faithfulness_margin:
            continue
        if t.faithfulness_use_insertion and ins is not None and ins >= t.faithfulness_margin:
            continue
        worse = gain < -t.faithfulness_margin and (not t.faithfulness_use_insertion or ins is None or ins < -t.faithfulness_margin)
        out.append(Finding(
            code="unfaithful-explanation",
            severity="error" if worse else "warning",
            message=(f"{method} maps are {'worse than' if worse else 'no better than'} a random pixel order on "
                     f"deletion: AUC {r['deletion_auc']:.3f} vs {r['random_deletion_auc']:.3f} "
                     f"(gain {gain:.1%} < {t.faithfulness_margin:.0%})"
                     + (f" and on insertion (gain {ins:.1%})" if t.faithfulness_use_insertion and ins is not None else "")),
            evidence={"method": method, "deletion_gain": gain,
                      **{k: r.get(k) for k in ("deletion_auc", "random_deletion_auc", "insertion_auc",
                                               "random_insertion_auc", "insertion_gain", "count", "steps", "baseline")},
                      "threshold": t.faithfulness_margin, "use_insertion": t.faithfulness_use_insertion},
        ))
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _sanity_findings(sanity: dict[str, Any], t: ExplanationThresholds) -> list[Finding]:
    out = []
    for method, r in (sanity or {}).items():
        rho, ssim = (r or {}).get("rank_corr"), (r or {}).get("ssim")
        over = [name for name, v, lim in (("rank correlation", rho, t.sanity_max_rank_corr),
                                           ("SSIM", ssim, t.sanity_max_ssim)) if v is not None and v >= lim]
        if not over:
            continue
        out.append(Finding(
            code="failed-sanity-check",
            severity="error" if len(over) == 2 else "warning",
            message=(f"{method} maps barely change when the top {r.get('n_layers', '?')} layers are randomised "
                     f"({' and '.join(over)} over the limit: rank corr {_fmt(rho)}, SSIM {_fmt(ssim)}); "
                     "they may not explain the model"),
            evidence={"method": method, "rank_corr": rho, "ssim": ssim, "count": r.get("count"),
                      "layers": r.get("layers"), "thresholds": {"sanity_max_rank_corr": t.sanity_max_rank_corr,
                                                               "sanity_max_ssim": t.sanity_max_ssim}},
        ))
    return out


def _agreement_findings(agree: dict[str, Any], t: ExplanationThresholds) -> list[Finding]:
    pairs = [p for p in (agree or {}).get("pairs", []) if p.get("mean") is not None]
    low = [p for p in pairs if p["mean"] < t.agreement_min]
    if not low:
        return []
    overall = sum(p["mean"] for p in pairs) / len(pairs)
    names = ", ".join(f"{p['a']}~{p['b']} {p['mean']:.2f}" for p in low)
    return [Finding(
        code="low-method-agreement",
        severity="warning" if overall < t.agreement_min else "info",
        message=f"Explanation methods disagree (rank correlation below {t.agreement_min}): {names}",
        evidence={"pairs": [{k: p[k] for k in ("a", "b", "mean", "count", "per_class")} for p in low],
                  "overall_mean": overall, "threshold": t.agreement_min},
    )]


def explanation_findings(
    global_importance: dict[str, Any],
    quality: dict[str, Any],
    strategies: dict[str, Any],
    thresholds: ExplanationThresholds,
    classes: list[str],
) -> list[Finding]:
    """All explanation findings.

    global_importance: {method: ImportanceAggregator.compute()};
    quality: {"faithfulness": {method: deletion_insertion()}, "sanity": {method:
    randomisation_sanity()}, "agreement": agreement()} (any part may be missing);
    strategies: {method: spray_clusters()}. ``classes`` orders the class names
    that findings list.
    """
    quality = quality or {}
    return [
        *_shortcut_findings(global_importance, strategies, thresholds, list(classes)),
        *_faithfulness_findings(quality.get("faithfulness"), thresholds),
        *_sanity_findings(quality.get("sanity"), thresholds),
        *_agreement_findings(quality.get("agreement"), thresholds),
    ]
