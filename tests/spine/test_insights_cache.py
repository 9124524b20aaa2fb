"""The insights stage is cached: a second run with the same maps and settings reuses it, other settings do not."""

from __future__ import annotations

import pytest

from imaudit.audits import insights as ins
from imaudit.audits import pipeline
from imaudit.audits.result import finite_json
from imaudit.audits.spec import AuditSpec

pytestmark = pytest.mark.slow


def test_insights_are_reused_for_the_same_maps_and_settings(tmp_path, monkeypatch):
    spec = AuditSpec(model="timm:test_resnet?pretrained=false", dataset="builtin:shapes?n=60&size=32", input_size=32,
                     methods=["saliency"], samples=6)
    pipeline.identify(spec, tmp_path)
    pipeline.predict(spec, tmp_path, progress=False)
    pipeline.choose_sample(spec, tmp_path)
    records = {"saliency": pipeline.explain(spec, tmp_path, "saliency")}
    calls = []
    real = ins.run_insights
    monkeypatch.setattr(ins, "run_insights", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = pipeline.insights(spec, tmp_path, records)
    second = pipeline.insights(spec, tmp_path, records)
    assert len(calls) == 1
    assert second == finite_json(pipeline._jsonable(first))
    other = spec.model_copy(update={"quality": spec.quality.model_copy(update={"deletion_steps": 8})})
    pipeline.insights(other, tmp_path, records)
    assert len(calls) == 2
