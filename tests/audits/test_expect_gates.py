"""Great Expectations gates over manifests and predictions: each finding from a small bad case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imaudit.audits.data import load_dataset
from imaudit.audits.expect import check_manifest, check_predictions
from imaudit.audits.result import GateResult
from imaudit.audits.spec import DataThresholds
from imaudit.errors import BadInputError


def tree(root: Path, layout: dict[str, dict[str, int]], mode: str = "RGB") -> Path:
    k = 0
    for split, classes in layout.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                k += 1
                colour = (k * 7 % 256, k * 13 % 256, k * 29 % 256)
                Image.new("RGB", (24, 20), colour).convert(mode).save(root / split / cls / f"i{k:03d}.png")
    return root


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings)


BALANCED = {"train": {"a": 3, "b": 3}, "val": {"a": 2, "b": 2}}


def test_clean_dataset_passes_every_expectation(tmp_path):
    b = load_dataset(f"folder:{tree(tmp_path / 'ds', BALANCED)}", progress=False)
    rep = check_manifest(b, DataThresholds())
    assert rep.findings == [] and rep.success
    assert {e["check"] for e in rep.expectations} >= {"labels", "empty", "readable", "leakage", "imbalance"}
    s = rep.summary
    assert s["n_images"] == 10 and s["counts"]["val"] == {"a": 2, "b": 2}
    assert s["sizes"]["width"] == {"min": 24.0, "median": 24.0, "max": 24.0}
    assert s["modes"] == {"RGB": 10}
    # Everything is JSON-ready and fits audit.json's gate record.
    json.dumps(rep.summary), json.dumps(rep.expectations)
    GateResult(expectations=rep.expectations)


def test_empty_class_in_val_is_an_error_naming_class_and_split(tmp_path):
    root = tree(tmp_path / "ds", {"train": {"a": 3, "b": 3}, "val": {"a": 2}})
    rep = check_manifest(load_dataset(f"folder:{root}", progress=False), DataThresholds())
    [f] = [f for f in rep.findings if f.code == "empty-class"]
    assert f.severity == "error" and f.evidence == {"split": "val", "classes": ["b"]}
    assert "'b'" in f.message and "'val'" in f.message
    failed = [e for e in rep.expectations if not e["success"]]
    assert [e["check"] for e in failed] == ["empty"] and failed[0]["unexpected_count"] == 1


def test_same_file_in_train_and_val_is_leakage(tmp_path):
    root = tree(tmp_path / "ds", BALANCED)
    shutil.copy(root / "train" / "a" / "i001.png", root / "val" / "a" / "leak.png")
    rep = check_manifest(load_dataset(f"folder:{root}", progress=False), DataThresholds())
    [f] = [f for f in rep.findings if f.code == "data-leakage"]
    assert f.severity == "error" and f.evidence["count"] == 1 and f.evidence["images"] == 2
    pair = f.evidence["pairs"][0]
    assert sorted(pair["ids"]) == ["train/a/i001.png", "val/a/leak.png"]
    assert sorted(pair["splits"]) == ["train", "val"]
    assert rep.summary["duplicates"]["across_splits_files"] == 1


def test_duplicates_within_a_split_are_info_not_leakage(tmp_path):
    root = tree(tmp_path / "ds", BALANCED)
    shutil.copy(root / "train" / "a" / "i001.png", root / "train" / "b" / "copy.png")
    rep = check_manifest(load_dataset(f"folder:{root}", progress=False), DataThresholds())
    assert codes(rep) == ["duplicate-images"]
    assert rep.findings[0].severity == "info" and rep.findings[0].evidence["count"] == 1


def test_corrupt_files_are_listed_by_path(tmp_path):
    root = tree(tmp_path / "ds", BALANCED)
    (root / "val" / "b" / "zero.png").write_bytes(b"")
    (root / "val" / "b" / "text.jpg").write_text("hello")
    rep = check_manifest(load_dataset(f"folder:{root}", progress=False), DataThresholds())
    assert codes(rep) == ["corrupt-images"]
    f = rep.findings[0]
    assert f.severity == "warning" and f.evidence["count"] == 2
    assert sorted(Path(x["path"]).name for x in f.evidence["files"]) == ["text.jpg", "zero.png"]
    assert all(x["reason"] for x in f.evidence["files"])
    assert rep.summary["n_excluded"] == 2


def test_class_imbalance_against_threshold(tmp_path):
    root = tree(tmp_path / "ds", {"train": {"a": 6, "b": 2}, "val": {"a": 2, "b": 2}})
    b = load_dataset(f"folder:{root}", progress=False)
    assert check_manifest(b, DataThresholds(imbalance_ratio=3.0)).findings == []
    rep = check_manifest(b, DataThresholds(imbalance_ratio=2.5))
    [f] = rep.findings
    assert f.code == "class-imbalance" and f.severity == "warning"
    assert f.evidence["split"] == "train" and f.evidence["ratio"] == pytest.approx(3.0)
    assert (f.evidence["max_class"], f.evidence["min_class"]) == ("a", "b")


def test_odd_modes_are_counted(tmp_path):
    root = tree(tmp_path / "ds", BALANCED)
    tree(tmp_path / "ds", {"test": {"a": 1, "b": 1}}, mode="P")
    Image.new("CMYK", (24, 20), (10, 20, 30, 40)).save(root / "test" / "a" / "c.tif")
    rep = check_manifest(load_dataset(f"folder:{root}", progress=False), DataThresholds())
    [f] = rep.findings
    assert f.code == "odd-image-modes" and f.severity == "info"
    assert f.evidence["modes"] == {"P": 2, "CMYK": 1}
    assert rep.summary["modes"]["RGB"] == 10


def _predictions(logits: np.ndarray, probs: np.ndarray | None = None):
    n = len(logits)
    if probs is None:
        with np.errstate(invalid="ignore"):  # inf - inf in the row with an infinite logit
            e = np.exp(logits - np.nanmax(logits, axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    table = pd.DataFrame({
        "id": [f"img{i}" for i in range(n)], "split": ["val"] * n, "label": ["a"] * n, "y": [0] * n,
        "pred": np.nan_to_num(logits).argmax(1), "confidence": np.nan_to_num(probs).max(1),
    })
    return table, probs, logits


def test_finite_predictions_pass():
    rng = np.random.default_rng(0)
    rep = check_predictions(*_predictions(rng.normal(size=(20, 4))))
    assert rep.findings == [] and rep.success and rep.summary["n"] == 20


def test_nan_logits_are_an_error_with_ids():
    logits = np.random.default_rng(0).normal(size=(8, 3))
    logits[[2, 5], 1] = np.nan
    logits[6, 0] = np.inf
    rep = check_predictions(*_predictions(logits))
    assert codes(rep) == ["nonfinite-outputs"]
    f = rep.findings[0]
    assert f.severity == "error" and f.evidence["ids"] == ["img2", "img5", "img6"] and f.evidence["count"] == 3
    assert rep.summary["nonfinite"] == 3


def test_probabilities_out_of_range_or_not_summing_to_one():
    logits = np.zeros((4, 2))
    probs = np.array([[0.5, 0.5], [0.7, 0.7], [1.2, -0.2], [0.5, 0.4995]])
    rep = check_predictions(*_predictions(logits, probs))
    [f] = rep.findings
    assert f.code == "invalid-probabilities" and f.evidence["ids"] == ["img1", "img2"]


def test_misshapen_outputs_are_bad_input():
    table, probs, logits = _predictions(np.zeros((4, 2)))
    with pytest.raises(BadInputError, match="predictions"):
        check_predictions(table.head(3), probs, logits)
