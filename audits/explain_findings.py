"""Explanation results -> findings a reviewer acts on, each with the numbers behind it.

Codes and severities (thresholds: AuditSpec.thresholds.explanations):

- ``shortcut`` (model): a candidate location from the maps (shortcuts/search.py)
  tested on the model by intervention (shortcuts/confirm.py). ``error`` when
  the intervention confirms it (covering the box costs the class accuracy,
  pasting it flips other images to the class), ``info`` when it does not or
  could not run: a hot spot that the model does not depend on.
- ``unfaithful-explanation`` (explainer): deleting cells in the method's order
  lowers the target probability no faster than random orders beyond the 95 %
  interval over the images (the relative deletion gain's interval reaches 0),
  or faster by less than ``faithfulness_margin`` (a real but negligible
  gain). ``warning``; ``error`` when the map's order is
  worse than random beyond the interval. Insertion and the edge-map prior are
  reported beside it (with ``faithfulness_use_insertion`` a method whose
  insertion beats random beyond its interval passes).
- ``failed-sanity-check`` (explainer): at a judged depth of the cascading
  randomisation the maps still resemble the trained model's. ``error`` when
  both rank correlation and SSIM are over their limits, ``warning`` when one is.
  A depth where the randomised maps vanished is inconclusive, not a pass.
- ``low-method-agreement`` (explainer): pairs of methods whose maps' mean rank
  correlation is below ``agreement_min``. Always ``info``: it qualifies the
  explainers, never the model, and never raises an audit's headline by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imaudit.audits.result import Finding
from imaudit.audits.spec import ExplanationThresholds


def _box_text(box: Sequence[int], size: Sequence[int] | None) -> str:
    x0, y0, x1, y1 = box
    return f"the {x1 - x0}x{y1 - y0} box at x={x0}..{x1}, y={y0}..{y1}"


def _region_text(c: dict[str, Any]) -> str:
    if c.get("kind") == "off-object":
        return f"the background (off the object, {c.get('area', 0):.0%} of the image)"
    return _box_text(c["box"], c.get("image_size"))


def shortcut_message(c: dict[str, Any]) -> str:
    """One sentence with the intervention numbers (or why there are none)."""
    cls, region = c["class"], _region_text(c)
    iv = c.get("intervention") or {}
    cover, paste = iv.get("cover"), iv.get("paste")
    parts = []
    if cover:
        before, after = cover["accuracy_before"], cover["accuracy_after"]
        verb = "drops" if after < before else "raises" if after > before else "leaves"
        change = f"at {after:.2f}" if verb == "leaves" else f"from {before:.2f} to {after:.2f}"
        parts.append(f"covering {region} {verb} class {cls} accuracy {change} (n={cover['n']}"
                     + (f"; the same box elsewhere: {cover['control_accuracy_after']:.2f}" if "control_accuracy_after" in cover else "")
                     + ")")
    if paste:
        what = "putting other images' objects on its background" if c.get("kind") == "off-object" else "pasting it"
        parts.append(f"{what} flips {paste['flip_rate']:.0%} of {paste['n']} other images to {cls}"
                     + (f" (control {paste['control_flip_rate']:.0%})" if "control_flip_rate" in paste else ""))
    numbers = "; ".join(parts)
    methods = ", ".join(c.get("methods") or [])
    spot = c.get("same_spot_classes") or []
    same = f"; the same spot is hot for classes {', '.join(spot)}" if len(spot) > 1 else ""
    found = f"found by {methods}" if methods else "found by testing the background on the model"
    if c.get("confirmed"):
        return f"Shortcut for class {cls}: {numbers} ({found}{same})"
    head = (f"Shortcut candidate for class {cls}, not confirmed by intervention: {region} is hot in "
            f"{c.get('hot_frequency') or 0:.0%} of its maps ({methods}{same})")
    return f"{head}, but {numbers}" if numbers else f"{head}; {c.get('not_confirmed_because') or 'it could not be tested'}"


def shortcut_findings(candidates: Sequence[dict[str, Any]], t: ExplanationThresholds) -> list[Finding]:
    """One finding per tested candidate: ``error`` when confirmed, ``info`` otherwise.

    The evidence is the candidate itself (a plain dict others may extend, e.g.
    with counterfactual evidence): class, class_index, box, image_size, kind,
    methods, the search statistics (per method under ``by_method``),
    ``confirmed`` and ``intervention`` {cover, paste, fill, thresholds}.
    """
    out = []
    for c in candidates:
        evidence = {**c, "thresholds": {k: getattr(t, k) for k in (
            "shortcut_hot_frequency", "shortcut_top_share", "shortcut_max_area", "off_object_odds_ratio",
            "confirm_accuracy_drop", "confirm_flip_rate", "confirm_min_images")}}
        out.append(Finding(code="shortcut", severity="error" if c.get("confirmed") else "info",
                           message=shortcut_message(c), evidence=evidence))
    out.sort(key=lambda f: (f.severity != "error", f.evidence.get("class_index", 0)))
    return out


def _pct(ci: Sequence[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:+.1%}, {ci[1]:+.1%}]"


def _faithfulness_findings(faith: dict[str, Any], t: ExplanationThresholds) -> list[Finding]:
    out = []
    for method, r in (faith or {}).items():
        gain, ci = (r or {}).get("deletion_gain"), (r or {}).get("deletion_gain_ci")
        if gain is None:
            continue
        lo, hi = (ci if ci else (gain, gain))
        if lo > 0 and gain >= t.faithfulness_margin:
            continue
        ins, ins_ci = r.get("insertion_gain"), r.get("insertion_gain_ci")
        if t.faithfulness_use_insertion and ins_ci and ins_ci[0] > 0 and ins >= t.faithfulness_margin:
            continue
        worse = hi < 0
        prior = (r.get("priors") or {}).get("edges") or {}
        prior_text = ""
        if prior.get("map_deletion_gain") is not None:
            prior_text = f"; against the edge-map order {prior['map_deletion_gain']:+.1%} {_pct(prior.get('map_deletion_gain_ci'))}"
        out.append(Finding(
            code="unfaithful-explanation",
            severity="error" if worse else "warning",
            message=(f"{method} maps "
                     + ("are worse than random orders on deletion" if worse else
                        "are not better than random orders on deletion" if lo <= 0 else
                        f"beat random orders on deletion by less than the {t.faithfulness_margin:.0%} margin")
                     + f" (fill: {r.get('baseline')}): AUC {r['deletion_auc']:.3f} vs {r['random_deletion_auc']:.3f} "
                     f"over {r.get('count')} images and {r.get('random_orders')} random orders, gain {gain:+.1%} "
                     f"95% CI {_pct(ci)}; insertion gain "
                     + ("n/a" if ins is None else f"{ins:+.1%} {_pct(ins_ci)}") + prior_text),
            evidence={"method": method, "deletion_gain": gain, "deletion_gain_ci": ci,
                      **{k: r.get(k) for k in ("deletion_auc", "random_deletion_auc", "insertion_auc",
                                               "random_insertion_auc", "insertion_gain", "insertion_gain_ci",
                                               "count", "steps", "baseline", "random_orders", "priors")},
                      "threshold": t.faithfulness_margin, "use_insertion": t.faithfulness_use_insertion},
        ))
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _sanity_findings(sanity: dict[str, Any], t: ExplanationThresholds) -> list[Finding]:
    out = []
    for method, r in (sanity or {}).items():
        rows = (r or {}).get("judged") or [r or {}]
        failed = []
        for row in rows:
            if row.get("passed") is None and row.get("inconclusive"):
                continue
            over = [name for name, v, lim in (("rank correlation", row.get("rank_corr"), t.sanity_max_rank_corr),
                                               ("SSIM", row.get("ssim"), t.sanity_max_ssim)) if v is not None and v >= lim]
            if over:
                failed.append((row, over))
        if not failed:
            continue
        row, over = max(failed, key=lambda f: (len(f[1]), f[0].get("depth", 0)))
        blocks = r.get("blocks")
        depth = row.get("depth", r.get("n_layers", "?"))
        out.append(Finding(
            code="failed-sanity-check",
            severity="error" if len(over) == 2 else "warning",
            message=(f"{method} maps barely change when the top {depth}"
                     + (f" of {blocks} blocks are" if blocks else " layers are")
                     + f" randomised ({' and '.join(over)} over the limit: rank corr {_fmt(row.get('rank_corr'))}, "
                     f"SSIM {_fmt(row.get('ssim'))}); they may not explain the model"),
            evidence={"method": method, "rank_corr": row.get("rank_corr"), "ssim": row.get("ssim"), "depth": depth,
                      "blocks": blocks, "count": r.get("count"), "judged": r.get("judged"),
                      "thresholds": {"sanity_max_rank_corr": t.sanity_max_rank_corr, "sanity_max_ssim": t.sanity_max_ssim,
                                     "sanity_judge_at": list(t.sanity_judge_at)}},
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
        severity="info",
        message=f"Explanation methods disagree (rank correlation below {t.agreement_min}): {names}",
        evidence={"pairs": [{k: p[k] for k in ("a", "b", "mean", "count", "per_class")} for p in low],
                  "overall_mean": overall, "threshold": t.agreement_min},
    )]


def explanation_findings(
    quality: dict[str, Any],
    thresholds: ExplanationThresholds,
    *,
    shortcuts: Sequence[dict[str, Any]] = (),
) -> list[Finding]:
    """All explanation findings.

    quality: {"faithfulness": {method: deletion_insertion()}, "sanity": {method:
    cascading_sanity()}, "agreement": agreement()} (any part may be missing);
    shortcuts: candidates after ``confirm_candidates``.
    """
    quality = quality or {}
    return [
        *shortcut_findings(shortcuts, thresholds),
        *_faithfulness_findings(quality.get("faithfulness"), thresholds),
        *_sanity_findings(quality.get("sanity"), thresholds),
        *_agreement_findings(quality.get("agreement"), thresholds),
    ]
