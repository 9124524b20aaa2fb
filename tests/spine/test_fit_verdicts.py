"""Fit verdicts on real models: memorising -> overfitting, untrained -> underfitting, demo recipe -> ok."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaudit.audits.diagnose import Diagnosis
from imaudit.audits.spec import AuditSpec
from imaudit.audits.stages import diagnose, identify, predict
from spine_helpers import SIZE, memorised_digits, trained_digits

pytestmark = pytest.mark.slow


def verdict(tmp_path: Path, model: str, dataset: str = "builtin:digits") -> Diagnosis:
    spec = AuditSpec(model=model, dataset=dataset, methods=[], input_size=SIZE, train_cap=400)
    ident = identify.run(spec, tmp_path)
    predict.run(spec, tmp_path, progress=False)
    return diagnose.run(spec, tmp_path, ident.history)


def test_untrained_model_underfits(tmp_path):
    d = verdict(tmp_path, "timm:test_resnet?pretrained=false")
    assert d.fit.verdict == "underfitting"
    assert "underfitting" in {f.code for f in d.findings}


def test_memorising_model_overfits(tmp_path, tmp_path_factory):
    ckpt, data = memorised_digits(str(tmp_path_factory.getbasetemp()))
    d = verdict(tmp_path, f"file:{ckpt}", data)
    assert d.metrics["train"].accuracy == 1.0
    assert d.fit.verdict == "overfitting", d.fit.reasons
    assert d.fit.gap["accuracy"] > 0.1


def test_demo_recipe_is_ok(tmp_path, tmp_path_factory):
    ckpt, hist = trained_digits(str(tmp_path_factory.getbasetemp()))
    d = verdict(tmp_path, f"file:{ckpt}")
    assert d.metrics["val"].accuracy > 0.8
    assert d.fit.verdict == "ok", d.fit.reasons
