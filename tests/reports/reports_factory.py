"""Builds rich AuditResults by hand (with PNGs and predictions.csv beside them) so report
tests do not depend on the audit flow."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imaudit.audits.result import AuditResult, Finding, MethodRecord

HOSTILE = "<script>alert(1)</script>"
METHODS = ("saliency", "gradcam")


def _png(path: Path, seed: int, size: int = 32) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _grid(seed: int, shape: tuple[int, int] = (7, 7)) -> list[list[float]]:
    g = np.random.default_rng(seed).random(shape) + 1e-3
    return (g / g.sum()).tolist()


def write_predictions(folder: Path, rows: list[dict[str, Any]]) -> None:
    cols = ["id", "split", "label", "y", "pred", "pred_label", "confidence"]
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def make_result(
    folder: Path,
    *,
    audit_id: str | None = None,
    classes: tuple[str, ...] = ("cat", "dog", HOSTILE),
    created: str = "2024-05-01T10:00:00+00:00",
    model_ref: str = "release:shapes-net@1.0",
    release: dict[str, Any] | None = None,
    accuracy: float = 0.8,
    ece: float = 0.05,
    seed: int = 0,
    n_val: int = 12,
    importance_seeds: dict[str, int] | None = None,
    flip_ids: tuple[int, ...] = (),
    rich: bool = True,
) -> AuditResult:
    """An AuditResult for a 3-class model, written to ``folder/audit.json`` with its files.

    Predictions: image i of the val split has label i % K and is predicted correctly unless
    i % 4 == 3 (so 75% accurate), or i is in ``flip_ids`` (then its prediction is flipped).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    audit_id = audit_id or folder.name
    k = len(classes)
    rng = np.random.default_rng(seed)
    preds = []
    for i in range(n_val):
        y = i % k
        p = y if i % 4 != 3 else (y + 1) % k
        if i in flip_ids:
            p = (p + 1) % k
        preds.append({"id": f"img{i:03d}", "split": "val", "label": classes[y], "y": y, "pred": p,
                      "pred_label": classes[p], "confidence": round(float(rng.uniform(0.4, 1.0)), 3)})
    write_predictions(folder, preds)
    confusion = np.zeros((k, k), dtype=int)
    for p in preds:
        confusion[p["y"], p["pred"]] += 1
    per_class = []
    for c in range(k):
        tp = int(confusion[c, c])
        support = int(confusion[c].sum())
        prec = tp / max(int(confusion[:, c].sum()), 1)
        rec = tp / max(support, 1)
        f1 = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
        per_class.append({"class": classes[c], "precision": prec, "recall": rec, "f1": f1, "support": support})
    result = AuditResult(
        id=audit_id,
        created=created,
        model={"ref": model_ref, "digest": "sha256:" + "ab" * 32, "arch": "test_resnet", "num_classes": k,
               "classes": list(classes), "params": 12345, "release": release},
        dataset={"ref": "builtin:shapes", "digest": "sha256:" + "cd" * 32, "classes": list(classes),
                 "counts": {"train": {c: 20 for c in classes}, "val": {c: n_val // k for c in classes}},
                 "n_images": 20 * k + n_val},
        metrics={"train": {"n": 20 * k, "accuracy": min(1.0, accuracy + 0.15), "loss": 0.3, "ece": ece / 2},
                 "val": {"n": n_val, "accuracy": accuracy, "loss": 0.6, "ece": ece}},
        per_class={"val": per_class},
        confusion={"val": confusion.tolist()},
        findings=[
            Finding(code="overfitting", severity="warning", message="train/val accuracy gap 0.15",
                    evidence={"gap": 0.15, "threshold": 0.1}),
            Finding(code="shortcut", severity="error", message=f"class {classes[-1]} relies on the top-left corner",
                    evidence={"class": classes[-1], "class_index": k - 1, "box": [0, 0, 8, 8], "image_size": [32, 32],
                              "methods": ["saliency", "gradcam"], "lift": 3.2, "confirmed": True,
                              "intervention": {"cover": {"n": 4, "accuracy_before": 1.0, "accuracy_after": 0.25,
                                                         "confidence_before": 0.95, "confidence_after": 0.4,
                                                         "control_accuracy_after": 0.75},
                                               "paste": {"n": 8, "flip_rate": 0.875, "control_flip_rate": 0.125}}}),
            Finding(code="class-imbalance", severity="info", message="classes are balanced"),
        ],
        gates={"passed": False, "fail_on": "error", "counts": {"error": 1, "warning": 1}},
        timings={"load": 0.5, "predict": 1.25, "explain": 3.0},
    )
    if not rich:
        result.write(folder)
        return result
    extra: dict[str, Any] = {}
    extra["calibration"] = {"val": {"ece": ece, "bins": [
        {"lo": i / 5, "hi": (i + 1) / 5, "count": 2 + i, "confidence": i / 5 + 0.1, "accuracy": min(1.0, i / 5 + 0.05)}
        for i in range(5)]}}
    extra["fit"] = {"verdict": "overfitting", "reasons": ["train accuracy exceeds val by 0.15"],
                  "gap": {"accuracy": 0.15, "loss": 0.3},
                  "history": {"rows": [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e + 0.1,
                                        "train_acc": 1 - 0.5 / e, "val_acc": 0.9 - 0.5 / e} for e in range(1, 6)]}}
    extra["data_checks"] = {"manifest": {
        "expectations": [{"expectation": "expect_column_values_to_not_be_null", "column": "label", "success": True,
                          "observed": 0},
                         {"expectation": "expect_column_pair_values_to_be_unique", "column": "sha256",
                          "success": False, "observed": {"duplicates": 2}}],
        "summary": {"evaluated": 2, "successful": 1}}}
    # Images, overlays and views beside audit.json.
    gallery = []
    for i, p in enumerate(preds[:8]):
        img = f"gallery/{p['id']}.png"
        _png(folder / img, seed * 100 + i)
        overlays = {}
        for j, m in enumerate(METHODS):
            ov = f"overlays/{m}/{p['id']}.png"
            _png(folder / ov, seed * 100 + 50 + 10 * j + i)
            overlays[m] = ov
        gallery.append({"id": p["id"], "label": p["label"], "pred": p["pred_label"],
                        "correct": p["y"] == p["pred"], "confidence": p["confidence"], "image": img,
                        "overlays": overlays})
    _png(folder / "views/act-layer1.png", seed + 7, 48)
    _png(folder / "views/filters-conv1.png", seed + 8, 48)
    extra["artifacts"] = {"gallery": gallery, "predictions": "predictions.csv",
                        "views": {"activations": [{"layer": "layer1", "png": "views/act-layer1.png", "shape": [8, 16, 16]}],
                                  "filters": {"conv1": "views/filters-conv1.png"}}}
    seeds = importance_seeds or {m: seed + j for j, m in enumerate(METHODS)}
    extra["explanations"] = {
        m: MethodRecord(settings={"baseline": "zeros"}, count=8, seconds=1.5 + j, per_image_rate=8 / (1.5 + j),
                        failures=[{"id": "img007", "error": "RuntimeError: boom"}] if j else [],
                        maps_path=f"maps/{m}.npz", quality={"deletion_auc": 0.2 + j / 10, "insertion_auc": 0.7 - j / 10,
                                                                   "random_deletion_auc": 0.45, "random_insertion_auc": 0.4})
        for j, m in enumerate(METHODS)}
    extra["global_importance"] = {
        m: {"grid": _grid(s), "per_class": {c: _grid(s * 10 + ci) for ci, c in enumerate(classes)},
            "regions": {"border": 0.3, "centre": 0.7}}
        for m, s in seeds.items()}
    # The shape spray_clusters returns.
    extra["strategies"] = {METHODS[0]: {"size": 16, "classes": {classes[0]: {"count": 4, "k": 2, "clusters": [
        {"size": 3, "ids": ["img000", "img003", "img006"], "mean_map": _grid(seed + 40), "exemplar_ids": ["img000", "img003"]},
        {"size": 1, "ids": ["img009"], "mean_map": _grid(seed + 41), "exemplar_ids": ["img009"]}]}}, "skipped": []}}
    # The shapes the insights stage (audits/stages/insights.py) writes: per-check detail plus agreement().
    extra["quality"] = {
        "faithfulness": {METHODS[0]: {"deletion_auc": 0.2, "random_deletion_auc": 0.45, "per_image": [],
                                      "curves": {"x": [0, 0.5, 1], "deletion": [0.9, 0.3, 0.1], "insertion": [0.1, 0.6, 0.9],
                                                 "random_deletion": [0.9, 0.6, 0.1], "random_insertion": [0.1, 0.3, 0.9]}}},
        "sanity": {METHODS[0]: {"passed": True, "rank_corr": 0.1, "per_image": []}},
        "agreement": {"methods": list(METHODS), "matrix": {METHODS[0]: {METHODS[1]: 0.62}, METHODS[1]: {METHODS[0]: 0.62}},
                      "pairs": [{"a": METHODS[0], "b": METHODS[1], "mean": 0.62, "count": 4}]},
    }
    extra["errors"] = [{"stage": "views", "error": "ValueError: no conv layer"}]
    # The coverage contract (HELPERS.md): per check what it saw, or why it could not run.
    extra["coverage"] = {
        "predict val": {"ran": True, "images": n_val, "classes": list(classes), "reason": None},
        "explain saliency": {"ran": True, "images": 8, "classes": k, "reason": None},
        "shortcut search": {"ran": True, "images": 8, "classes": k, "reason": None},
        "shortcut confirmation": {"ran": True, "images": 12, "classes": 1, "reason": None},
        "localisation": {"ran": False, "images": 0, "classes": 0, "reason": "the dataset has no object masks"},
    }
    extra["generative"] = {"method": "latent-shift", "examples": [{"id": "img001", "image": "gallery/img001.png", "flipped_to": classes[1]}]}
    result = AuditResult.model_validate({**result.model_dump(by_alias=True), **extra})
    result.write(folder)
    return result
