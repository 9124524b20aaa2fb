"""audit.json coverage from the stages' outputs: a check whose stage raised is marked ``failed``;
one skipped on purpose is not (the report colours by that field, not by the reason's words)."""

from __future__ import annotations

from imaudit.audits.coverage import audit_coverage
from imaudit.audits.result import DatasetIdentity, ModelIdentity
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages.records import Identity, StageError, StageOutputs


def test_a_failed_stage_marks_its_checks_failed_and_a_skipped_check_does_not():
    identity = Identity(model=ModelIdentity(ref="timm:test_resnet", digest="d", arch="test_resnet", num_classes=2),
                        dataset=DatasetIdentity(ref="builtin:digits", digest="e", classes=["a", "b"],
                                                counts={"val": {"a": 2, "b": 2}}))
    spec = AuditSpec(model="timm:test_resnet", dataset="builtin:digits", methods=["saliency"])
    out = StageOutputs(identity=identity, errors=[StageError(stage="predict", error="RuntimeError: boom")])
    cov = audit_coverage(spec, out)
    assert cov["predict:val"] == {"ran": False, "images": 0, "classes": [], "reason": "stage predict failed: RuntimeError: boom",
                                  "failed": True}
    # no predictions: nothing to check, nothing to explain (consequences, not failures of their own)
    assert cov["output_checks"]["failed"] is False and cov["output_checks"]["reason"] == "no predictions to check"
    assert cov["counterfactuals"] == {"ran": False, "images": 0, "classes": [], "reason": "off (--counterfactuals 0)",
                                      "failed": False}
    assert all(c["failed"] is False for k, c in cov.items() if k != "predict:val")
