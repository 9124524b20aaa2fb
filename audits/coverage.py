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


def _not_run(errors: list[StageError], stage: str, otherwise: str) -> dict[str, Any]:
    """The entry of a check that did not run: its stage's error (``failed``), else ``otherwise``."""
    error = _failed(errors, stage)
    return coverage_entry(False, reason=error or otherwise, failed=error is not None)


def audit_coverage(spec: AuditSpec, out: StageOutputs) -> dict[str, dict[str, Any]]:
    """Coverage of every check of an audit from what its stages produced."""
    errors = out.errors
    dataset = out.identity.dataset
    classes = list(dataset.classes)
    counts = dataset.counts or {}
    cov: dict[str, dict[str, Any]] = {}

    cov["data_checks"] = (coverage_entry(True, dataset.n_images, classes, excluded=len(dataset.excluded))
                          if out.data_gate is not None else
                          _not_run(errors, "check_data", "did not run"))
    metrics = out.diagnosis.metrics if out.diagnosis is not None else {}
    for split in counts:
        seen = [c for c, n in counts[split].items() if n]
        if split in metrics:
            m = metrics[split]
            cov[f"predict:{split}"] = coverage_entry(True, m.n + m.nonfinite, seen, nonfinite=m.nonfinite)
        else:
            cov[f"predict:{split}"] = _not_run(errors, "predict", "not among --splits" if spec.splits and split
                                               not in spec.splits else "no predictions for this split")
    cov["output_checks"] = (coverage_entry(True, sum(m.n + m.nonfinite for m in metrics.values()), classes)
                            if out.prediction_gate is not None else
                            _not_run(errors, "check_outputs", "no predictions to check"))
    cov["diagnose"] = (coverage_entry(True, sum(m.n for m in metrics.values()), classes, splits=sorted(metrics))
                       if out.diagnosis is not None else
                       _not_run(errors, "diagnose", "no predictions to diagnose"))

    s = out.sample
    if s is not None:
        cov["sample"] = coverage_entry(bool(s.n), s.n, s.classes, reason=None if s.n else "no evaluation images to explain",
                                       split=s.split, class_selection=s.class_selection, per_method=s.per_method)
    else:
        cov["sample"] = _not_run(errors, "choose_sample", "no methods asked (--methods '')" if not spec.methods
                                 else "no predictions to sample from")
    ins_cov = dict(out.insights.coverage) if out.insights is not None else {}
    for m in spec.methods:
        rec = out.explanations.get(m)
        if rec is None:
            cov[f"explain:{m}"] = _not_run(errors, f"explain:{m}", "did not run")
        elif not rec.applicable:
            cov[f"explain:{m}"] = coverage_entry(False, reason=rec.reason or "does not apply to this model")
        else:
            gi = ins_cov.get(f"global_importance:{m}") or {}
            cov[f"explain:{m}"] = coverage_entry(bool(rec.count), rec.count, gi.get("classes", []),
                                                 failures=len(rec.failures),
                                                 reason=None if rec.count else "every image failed",
                                                 failed=not rec.count)
    # The explanation checks: their own entries, or why there are none.
    why = _not_run(errors, "insights", "no explanation methods asked (--methods '')" if not spec.methods
                   else "no method produced maps")
    for check in PER_METHOD:
        for m in spec.methods:
            rec = out.explanations.get(m)
            missing = why if rec is None or rec.maps_path else coverage_entry(False, reason=f"{m} produced no maps")
            cov[f"{check}:{m}"] = ins_cov.pop(f"{check}:{m}", None) or dict(missing)
    for check in ONCE:
        cov[check] = ins_cov.pop(check, None) or dict(why)
    cov.update(ins_cov)
    gen = out.generative
    if not spec.counterfactuals:
        cov["counterfactuals"] = coverage_entry(False, reason="off (--counterfactuals 0)")
    elif gen is None:
        cov["counterfactuals"] = _not_run(errors, "counterfactuals", "did not run")
    elif gen.get("skipped"):
        # Asked for and impossible (no generator, no split to explain) is a failure; no image matching is not.
        cov["counterfactuals"] = coverage_entry(False, reason=gen["skipped"], failed=bool(gen.get("could_not_run")))
    else:
        # The section's own entry: images actually searched and their target classes (audits/generative/section.py);
        # images left out before the search (zero-step, reconstruction-flipped, ...) are counted apart.
        own = dict(gen.get("coverage") or {})
        cov["counterfactuals"] = coverage_entry(
            bool(own.get("ran")), own.get("images", 0), own.get("classes", []), reason=own.get("reason"),
            selected=len(gen.get("items") or []), counts=gen.get("counts"), success_rate=gen.get("success_rate"))
    return cov
