"""The bench runs on a tiny configuration, prints every row and writes consistent JSON.

No speed is asserted: only pass counts with known answers and invariants of the report.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from imaudit.audits.spec import QualitySettings
from imaudit.cli import app


def test_quick_bench_prints_every_row_and_counts_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # the bench's temporary Prefect server
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--quick", "--realistic", "--profile", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    methods = report["config"]["methods"]
    assert methods == ["saliency", "gradcam", "occlusion"]

    # Every row is printed.
    rows = ["peak forward", "peak forward+backward", "prediction (files", "deletion/insertion",
            "sanity (saliency)", "sanity (gradcam)", "warm audit", "audit flow (Prefect)", "Targets"]
    for label in rows + methods:
        assert label in res.output, label

    by = {r["name"]: r for r in report["methods"]}
    # Known pass counts: saliency is one forward and one backward per image; Captum's occlusion
    # scores the unperturbed image once plus every window position (at 32 px the window is
    # 4 px with stride 2: 15 x 15 positions); deletion/insertion evaluates (steps + 1) points
    # on 2 curves for the map's order and one random order.
    assert by["saliency"]["forward_per_image"] == 1 and by["saliency"]["backward_per_image"] == 1
    assert by["occlusion"]["forward_per_image"] == 1 + 15 * 15 and by["occlusion"]["backward_per_image"] == 0
    steps = QualitySettings().deletion_steps
    assert by["deletion/insertion"]["forward_per_image"] == 2 * 2 * (steps + 1)
    assert by["gradcam"]["backward_per_image"] == 1

    # Ratios are what they claim to be.
    peak_f = report["peaks"]["forward"]["images_per_s"]
    assert report["prediction"]["ratio_to_peak"] == report["prediction"]["images_per_s"] / peak_f
    for r in report["methods"]:
        assert abs(r["efficiency"] - r["images_per_s"] / r["ideal_images_per_s"]) < 1e-9 * max(1, r["efficiency"])
        # --profile: exactly the rows under the efficiency target say where their time went
        assert (r["profile"] is not None) == (r["efficiency"] < 0.8), r
    for b in report["baselines"]:
        assert b["speedup"] == b["ours_images_per_s"] / b["row"]["images_per_s"]
        assert b["row"]["forward_per_image"] > 0
    # The warm audit found every prediction and explanation chunk of the cold one.
    cache = report["cache"]
    assert cache["chunks_total"] > 0 and cache["chunks_reused"] == cache["chunks_total"]
    assert cache["ratio"] == cache["warm_seconds"] / cache["cold_seconds"]
    assert report["overhead"]["ratio"] == report["overhead"]["flow_seconds"] / report["overhead"]["direct_seconds"]
    # --profile: the audit rows that missed their target were profiled once more, and only those
    assert (cache["profile"] is not None) == (cache["ratio"] > 0.05)
    assert (report["overhead"]["profile"] is not None) == (report["overhead"]["ratio"] > 1.10)
    if cache["profile"]:
        assert "imaudit" in cache["profile"]["packages"] or "prefect" in cache["profile"]["packages"]
    names = {t["target"] for t in report["targets"]}
    assert names >= {"prediction / peak", "warm / cold audit", "flow / direct (Prefect overhead)",
                     "realistic: prediction / peak"}
    for t in report["targets"]:  # every target says met or missed, by its own rule
        if t["value"] is not None:
            assert t["met"] == (t["value"] >= t["limit"] if t["rule"] == ">=" else t["value"] <= t["limit"]) or (
                t["target"].startswith("bad --model") and t["met"] is False)
    assert "met" in res.output or "missed" in res.output
    if any(r["profile"] for r in report["methods"]):
        assert "where the time went" in res.output

    # The realistic row (quick: a test network on a few generated JPEGs) runs the same rows on its own model.
    real = report["realistic"]
    assert real["prediction"]["images"] == real["images"] and real["prediction"]["decoder"] == "threads"
    real_by = {r["name"]: r for r in real["methods"]}
    assert real_by["saliency"]["forward_per_image"] == 1 and real_by["saliency"]["backward_per_image"] == 1
    assert real["prediction"]["ratio_to_peak"] == real["prediction"]["images_per_s"] / real["peaks"]["forward"]["images_per_s"]

    # A bad --model is answered in its own process with exit 2; the row counts dataset files opened first.
    bad = {b["ref"].split(":", 1)[0]: b for b in report["bad_model"]}
    assert set(bad) == {"file", "timm"} and all(b["exit_code"] == 2 for b in bad.values())
    assert bad["file"]["images_opened"] == 0 and "no such file" in bad["file"]["message"]
    assert "no_such_architecture" in bad["timm"]["message"] and bad["timm"]["images_opened"] == 0

    # The bench's temporary homes are gone: an audit later in this process loads the dataset afresh, not
    # the bundle the bench loaded from its deleted cache (a stale one failed the next test's predict stage).
    from pathlib import Path

    from imaudit.audits.spec import AuditSpec
    from imaudit.audits.stages import inputs

    bundle = inputs.dataset(AuditSpec(model="timm:test_resnet?pretrained=false", dataset="builtin:digits"))
    assert all(Path(p).is_file() for p in bundle.manifest["path"])


def test_bench_rejects_unknown_method():
    res = CliRunner().invoke(app, ["bench", "--quick", "--methods", "saliency,nope", "--no-audits"])
    assert res.exit_code == 2
    assert "nope" in res.output
