"""The scheduled flow (in-process mode, deployment=None) audits the latest release of every
registered model; one model's failure is recorded, the others are still audited, and the run
ends Failed naming the model. The fan-out over the audit-model deployment is tested against a
worker in test_production.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from orch_helpers import DATASET, FAST, tiny_checkpoint

from imaudit.models import Registry

pytestmark = pytest.mark.slow


def test_scheduled_audit_covers_latest_release_of_each_model(tmp_path, use_prefect_api):
    from imaudit.flows.scheduled import AuditsFailed, scheduled_audit

    reg = Registry()
    reg.release("tiny", "1", arch="test_resnet", checkpoint=tiny_checkpoint(tmp_path, seed=0), dataset=DATASET)
    reg.release("tiny", "2", arch="test_resnet", checkpoint=tiny_checkpoint(tmp_path, seed=1), dataset=DATASET)
    reg.release("broken", "1", arch="test_resnet", checkpoint=tiny_checkpoint(tmp_path, seed=2),
                dataset=f"folder:{tmp_path / 'no-such-folder'}")

    state = scheduled_audit(overrides={**FAST, "out": str(tmp_path / "reports")}, deployment=None,
                            return_state=True)

    assert state.is_failed() and state.message == "1 of 2 audits did not complete: broken (Failed)"
    failure = state.result(raise_on_failure=False)  # what Prefect raises where the run's result is read
    assert isinstance(failure, AuditsFailed) and str(failure) == state.message
    outcome = failure.outcome
    assert sorted(outcome) == ["broken", "tiny"]
    assert "no-such-folder" in outcome["broken"]["error"]
    assert outcome["tiny"]["ref"] == "release:tiny@2"
    audit = json.loads((Path(outcome["tiny"]["report"]) / "audit.json").read_text())
    assert audit["model"]["ref"] == "release:tiny@2" and audit["dataset"]["ref"] == DATASET
    assert (Path(outcome["tiny"]["report"]) / "report.html").is_file()
