"""scripts/same_numbers.py: two audit.json files agree in every number, run details aside.

The script is how a refactor shows the demo audit's numbers unchanged; the
orchestration tests use it to compare whole audits (resumed, warm, on Dask).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "same_numbers.py"
sys.path.insert(0, str(SCRIPT.parent))
import same_numbers  # noqa: E402

AUDIT = {
    "id": "m-20260101-000000-abc123", "created": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
    "spec": {"model": "timm:x", "out": "/tmp/a", "samples": 4},
    "model": {"digest": "d" * 64, "release": {"created": "2026-01-01T00:00:00+00:00", "version": "1"}},
    "metrics": {"val": {"n": 20, "accuracy": 0.85, "ece": 0.031}},
    "explanations": {"saliency": {"count": 4, "seconds": 0.12, "per_image_rate": 33.3, "maps_path": "explanations/saliency.npz"}},
    "global_importance": {"saliency": {"grid": [[0.25, 0.25], [0.5, 0.0]]}},
    "findings": [{"code": "miscalibration", "severity": "warning", "evidence": {"ece": 0.12, "id": "val/3.png"}}],
    "timings": {"predict": 1.5}, "cache": {"predict": {"reused": 0}}, "artifacts": {"gallery": []},
}


def _other(**changes) -> dict:
    b = copy.deepcopy(AUDIT)
    for path, value in changes.items():
        node = b
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[leaf] = value
    return b


def test_run_details_are_ignored():
    run = _other(id="other", created="x", finished="y", timings={"predict": 9.0}, cache={}, artifacts={"x": 1},
                 spec__out="/tmp/b", model__release__created="z")
    run["explanations"]["saliency"].update(seconds=9.9, per_image_rate=1.0, maps_path="elsewhere.npz")
    assert same_numbers.differences(AUDIT, run) == []


@pytest.mark.parametrize("path,value,where", [
    ("metrics__val__accuracy", 0.85000001, ".metrics.val.accuracy"),
    ("global_importance__saliency__grid", [[0.25, 0.25], [0.4, 0.1]], ".global_importance.saliency.grid[1][0]"),
    ("findings", [{"code": "miscalibration", "severity": "error", "evidence": {"ece": 0.12, "id": "val/3.png"}}],
     ".findings[0].severity"),
    ("explanations__saliency__count", 3, ".explanations.saliency.count"),
    ("metrics__val", {"n": 20, "accuracy": 0.85}, ".metrics.val.ece"),
])
def test_any_changed_number_string_or_key_is_a_difference(path, value, where):
    diffs = same_numbers.differences(AUDIT, _other(**{path: value}))
    assert diffs and diffs[0].startswith(where), diffs


def test_image_ids_inside_evidence_are_compared():
    """Only the audit's own id is a run detail: an image id in the evidence is data."""
    other = _other(findings=[{"code": "miscalibration", "severity": "warning", "evidence": {"ece": 0.12, "id": "val/4.png"}}])
    assert same_numbers.differences(AUDIT, other) == [".findings[0].evidence.id: 'val/3.png' != 'val/4.png'"]


def test_a_tolerance_admits_float_rounding_only():
    near = _other(metrics__val__accuracy=0.85 * (1 + 1e-7))
    assert same_numbers.differences(AUDIT, near) != []
    assert same_numbers.differences(AUDIT, near, rel=1e-6) == []
    assert same_numbers.differences(AUDIT, _other(metrics__val__accuracy=0.86), rel=1e-6) != []


def test_the_command_exits_0_when_the_numbers_agree_and_1_listing_what_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c.json"
    for folder, doc in ((a, AUDIT), (b, _other(id="other", timings={}))):
        folder.mkdir()
        (folder / "audit.json").write_text(json.dumps(doc))
    c.write_text(json.dumps(_other(metrics__val__n=21)))
    same = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)
    assert same.returncode == 0 and "same numbers" in same.stderr
    diff = subprocess.run([sys.executable, str(SCRIPT), str(a / "audit.json"), str(c)], capture_output=True, text=True)
    assert diff.returncode == 1 and diff.stdout.strip() == ".metrics.val.n: 20 != 21"
