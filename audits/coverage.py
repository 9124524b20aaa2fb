"""audit.json ``coverage``: for every check, whether it ran, on how many images and which classes, or why not.

A check that silently does nothing is a defect: a reviewer reading "no
shortcut" must be able to see that the shortcut search looked at every class
with enough images, and which it could not. The explanation checks report
their own entries (explain_checks); this module adds the stages around them
and marks every expected entry that is missing (its stage failed or never
ran) with the reason.
"""

from __future__ import annotations

from typing import Any

from imaudit.audits.explain_checks import coverage_entry
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages.records import StageError, StageOutputs

#: Entries the explanation checks add, per method or once.
PER_METHOD = ("global_importance", "strategies", "faithfulness", "sanity", "localisation")
ONCE = ("agreement", "shortcut_search", "shortcut_confirmation")


def _failed(errors: list[StageError], stage: str) -> str | None:
    err = next((e for e in errors if e.stage == stage), None)
    return None if err is None else f"stage {stage} failed: {err.error}"


def audit_coverage(spec: AuditSpec, out: StageOutputs) -> dict[str, dict[str, Any]]:
    """Coverage of every check of an audit from what its stages produced."""
    errors = out.errors
    dataset = out.identity.dataset
    classes = list(dataset.classes)
    counts = dataset.counts or {}
    cov: dict[str, dict[str, Any]] = {}

    cov["data_checks"] = (coverage_entry(True, dataset.n_images, classes, excluded=len(dataset.excluded))
                          if out.data_gate is not None else
                          coverage_entry(False, reason=_failed(errors, "check_data") or "did not run"))
    metrics = out.diagnosis.metrics if out.diagnosis is not None else {}
    for split in counts:
        seen = [c for c, n in counts[split].items() if n]
        if split in metrics:
            m = metrics[split]
            cov[f"predict:{split}"] = coverage_entry(True, m.n + m.nonfinite, seen, nonfinite=m.nonfinite)
        else:
            reason = _failed(errors, "predict") or ("not among --splits" if spec.splits and split not in spec.splits
                                                    else "no predictions for this split")
            cov[f"predict:{split}"] = coverage_entry(False, reason=reason)
    cov["output_checks"] = (coverage_entry(True, sum(m.n + m.nonfinite for m in metrics.values()), classes)
                            if out.prediction_gate is not None else
                            coverage_entry(False, reason=_failed(errors, "check_outputs") or "no predictions to check"))
    cov["diagnose"] = (coverage_entry(True, sum(m.n for m in metrics.values()), classes, splits=sorted(metrics))
                       if out.diagnosis is not None else
                       coverage_entry(False, reason=_failed(errors, "diagnose") or "no predictions to diagnose"))

    s = out.sample
    if s is not None:
        cov["sample"] = coverage_entry(bool(s.n), s.n, s.classes, reason=None if s.n else "no evaluation images to explain",
                                       split=s.split, class_selection=s.class_selection, per_method=s.per_method)
    else:
        cov["sample"] = coverage_entry(False, reason=_failed(errors, "choose_sample") or (
            "no methods asked (--methods '')" if not spec.methods else "no predictions to sample from"))
    ins_cov = dict(out.insights.coverage) if out.insights is not None else {}
    for m in spec.methods:
        rec = out.explanations.get(m)
        if rec is None:
            cov[f"explain:{m}"] = coverage_entry(False, reason=_failed(errors, f"explain:{m}") or "did not run")
        elif not rec.applicable:
            cov[f"explain:{m}"] = coverage_entry(False, reason=rec.reason or "does not apply to this model")
        else:
            gi = ins_cov.get(f"global_importance:{m}") or {}
            cov[f"explain:{m}"] = coverage_entry(bool(rec.count), rec.count, gi.get("classes", []),
                                                 failures=len(rec.failures),
                                                 reason=None if rec.count else "every image failed")
    # The explanation checks: their own entries, or why there are none.
    why = _failed(errors, "insights") or ("no explanation methods asked (--methods '')" if not spec.methods
                                          else "no method produced maps")
    for check in PER_METHOD:
        for m in spec.methods:
            rec = out.explanations.get(m)
            reason = why if rec is None or rec.maps_path else f"{m} produced no maps"
            cov[f"{check}:{m}"] = ins_cov.pop(f"{check}:{m}", None) or coverage_entry(False, reason=reason)
    for check in ONCE:
        cov[check] = ins_cov.pop(check, None) or coverage_entry(False, reason=why)
    cov.update(ins_cov)
    gen = out.generative
    if not spec.counterfactuals:
        cov["counterfactuals"] = coverage_entry(False, reason="off (--counterfactuals 0)")
    elif gen is None:
        cov["counterfactuals"] = coverage_entry(False, reason=_failed(errors, "counterfactuals") or "did not run")
    elif gen.get("skipped"):
        cov["counterfactuals"] = coverage_entry(False, reason=gen["skipped"])
    else:
        # The section's own entry: images actually searched and their target classes (audits/generative/section.py);
        # images left out before the search (zero-step, reconstruction-flipped, ...) are counted apart.
        own = dict(gen.get("coverage") or {})
        cov["counterfactuals"] = coverage_entry(
            bool(own.get("ran")), own.get("images", 0), own.get("classes", []), reason=own.get("reason"),
            selected=len(gen.get("items") or []), counts=gen.get("counts"), success_rate=gen.get("success_rate"))
    return cov


def _n_classes(c: dict[str, Any]) -> int:
    cls = c.get("classes")
    return cls if isinstance(cls, int) else len(cls or [])


def coverage_lines(coverage: dict[str, dict[str, Any]]) -> list[str]:
    """Short lines for the CLI: per check, images (per method or split) and classes; then what did not run and why."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, c in coverage.items():
        check, _, part = name.partition(":")
        groups.setdefault(check, []).append((part, c))
    lines, skipped = [], []
    for check, parts in groups.items():
        ran = [(p, c) for p, c in parts if c.get("ran")]
        by_reason: dict[str, list[str]] = {}
        for p, c in parts:
            if not c.get("ran"):
                by_reason.setdefault(c.get("reason") or "did not run", []).append(p)
        for reason, which in by_reason.items():
            named = [p for p in which if p]
            skipped.append(f"{check}{' (' + ', '.join(named) + ')' if named else ''}: {reason}")
        if not ran:
            continue
        classes = max(_n_classes(c) for _, c in ran)
        if len(ran) == 1 and not ran[0][0]:
            lines.append(f"{check}: {ran[0][1].get('images', 0)} images, {classes} classes")
        else:
            lines.append(f"{check}: " + ", ".join(f"{p} {c.get('images', 0)}" for p, c in ran) + f" images; {classes} classes")
    return ["coverage:", *(f"  {ln}" for ln in lines), *(f"  not run: {s}" for s in skipped)]
