"""The insights stage is cached: a second run with the same maps and settings reuses it, other settings do not."""

from __future__ import annotations

import pytest

from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import explain, identify, insights, predict, sample

pytestmark = pytest.mark.slow


def test_insights_are_reused_for_the_same_maps_and_settings(tmp_path, monkeypatch):
    spec = AuditSpec(model="timm:test_resnet?pretrained=false", dataset="builtin:shapes?n=60&size=32", input_size=32,
                     methods=["saliency"], samples=6)
    identify.run(spec, tmp_path)
    predict.run(spec, tmp_path, progress=False)
    sample.run(spec, tmp_path)
    records = {"saliency": explain.run(spec, tmp_path, "saliency")}
    calls = []
    real = insights.compute
    monkeypatch.setattr(insights, "compute", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = insights.run(spec, tmp_path, records)
    second = insights.run(spec, tmp_path, records)
    assert len(calls) == 1
    assert second.model_dump(mode="json", exclude={"cache"}) == first.model_dump(mode="json", exclude={"cache"})
    assert (first.cache.computed, second.cache.reused) == (1, 1)
    assert first.global_importance["saliency"]["grid"] and first.quality["faithfulness"]["saliency"]
    other = spec.model_copy(update={"quality": spec.quality.model_copy(update={"deletion_steps": 8})})
    insights.run(other, tmp_path, records)
    assert len(calls) == 2
