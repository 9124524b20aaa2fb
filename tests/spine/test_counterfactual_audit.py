"""Counterfactuals through the audit flow: skipped with a hint without a generator, a section with one."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from imaudit.audits.generative import train_generator
from imaudit.cli import app

pytestmark = pytest.mark.slow
DATA = "builtin:shapes?n=60&size=32"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Generators are stored in the cache by dataset digest: keep these tests' generators to themselves."""
    monkeypatch.setenv("IMAUDIT_CACHE", str(tmp_path / "cache"))


def audit(tmp_path, *extra: str) -> dict:
    store = tmp_path / "store"
    r = CliRunner().invoke(
        app,
        ["audit", "--model", "timm:test_resnet?pretrained=false", "--dataset", DATA, "--input-size", "32", "--methods", "",
         "--out", str(store), *extra],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    folder = next(store.glob("*/audit.json")).parent
    return {"audit": json.loads((folder / "audit.json").read_text()), "folder": folder}


def test_without_a_generator_the_section_says_how_to_train_one(tmp_path):
    a = audit(tmp_path, "--counterfactuals", "2")["audit"]
    assert "imaudit generative train" in a["generative"]["skipped"]


def test_with_a_generator_the_audit_has_counterfactuals(tmp_path):
    train_generator(DATA, epochs=2, image_size=32, progress=False)
    out = audit(tmp_path, "--counterfactuals", "2")
    gen = out["audit"]["generative"]
    assert len(gen["items"]) == 2 and 0.0 <= gen["success_rate"] <= 1.0
    assert gen["generator"]["dataset_digest"] == out["audit"]["dataset"]["digest"]
    for item in gen["items"]:
        for png in item["pngs"].values():
            assert (out["folder"] / png).is_file()
    html = (out["folder"] / "report.html").read_text()
    assert 'id="generative"' in html and item["pngs"]["counterfactual"] in html
