"""Pretrained timm: and hf-hub: refs from an offline HF cache, and a 1000-output ImageNet model
audited on a 5-class folder named with ImageNet classes, through the CLI.

The 1000-output model is made so the answers are known: five class rows fitted to
five colour classes, placed at the ImageNet outputs the folder names (tench,
goldfish, great white shark, cock, hen), every other row silent except one
distractor output (toilet tissue) whose bias beats the true class on part of the
images. So the full view loses exactly the images the distractor wins.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from model_helpers import fake_hub_repo, tiny_model
from source_helpers import audit_json, audit_predictions, oracle_logits
from typer.testing import CliRunner

from imaudit.audits.data import ImageDataset, load_dataset
from imaudit.cli import app
from imaudit.io import sha256_file
from imaudit.models import load_model
from imaudit.models.archs import data_config

pytestmark = pytest.mark.slow

DISTRACTOR = 999  # toilet tissue
WEIGHTS_REPO = "timm/test_resnet.r160_in1k"  # where timm's pretrained config for test_resnet looks


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return r.exit_code, r.output


CLASSES = {"tench": 0, "n01443537": 1, "great_white_shark": 2, "cock": 7, "hen": 8}  # folder -> ImageNet output
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200)]


def write_colour_folder(root: Path, names: list[str], per_split: dict[str, int], seed: int = 0) -> Path:
    """split/class/i.png: class k is noisy colour k (a task a linear probe on random features solves)."""
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for k, name in enumerate(names):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.array(COLOURS[k]) * rng.uniform(0.6, 1.0)
                pixels = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def imagenet_case(tmp_path_factory) -> dict:
    """A 5-class folder named with ImageNet classes and a 1000-output test_resnet whose answers are known.

    The five class rows of the head are a logistic-regression probe on the
    network's (random) features, placed at the ImageNet outputs the folder
    names; other rows are silent except the distractor, whose bias is the
    median top restricted logit on val.
    """
    import timm.data
    from sklearn.linear_model import LogisticRegression

    root = write_colour_folder(tmp_path_factory.mktemp("imagenet-subset") / "data", sorted(CLASSES),
                               {"train": 12, "val": 6})
    data = load_dataset(f"folder:{root}", progress=False)
    columns = [CLASSES[c] for c in data.classes]
    big = tiny_model("test_resnet", num_classes=1000, seed=1)
    tf = timm.data.create_transform(**data_config(big, 32))  # what the audit will use for this model

    def features(split: str) -> tuple[torch.Tensor, list[int]]:
        ds = ImageDataset(data.split(split), data.classes, tf)
        with torch.no_grad():
            x = torch.stack([ds[i][0] for i in range(len(ds))])
            return big.forward_head(big.forward_features(x), pre_logits=True), ds.labels

    xt, yt = features("train")
    probe = LogisticRegression(max_iter=2000).fit(xt.numpy(), yt)
    with torch.no_grad():
        big.fc.weight.zero_()
        big.fc.bias.fill_(-50.0)
        big.fc.weight[columns] = torch.tensor(probe.coef_, dtype=torch.float32)
        big.fc.bias[columns] = torch.tensor(probe.intercept_, dtype=torch.float32)
        top = big.fc(features("val")[0])[:, columns].max(1).values
        big.fc.bias[DISTRACTOR] = float(top.median())  # wins on about half the val images
    return {"data": root, "module": big.eval(), "columns": columns, "classes": data.classes}


def test_imagenet_model_on_a_labelled_subset_reports_both_views(imagenet_case, hf_cache, tmp_path):
    weights = fake_hub_repo(hf_cache, WEIGHTS_REPO, imagenet_case["module"], None)
    code, out = cli("audit", "--model", "timm:test_resnet", "--dataset", f"folder:{imagenet_case['data']}",
                    "--input-size", "32", "--methods", "saliency", "--samples", "4", "--out", str(tmp_path / "s"))
    assert code == 0, out
    audit = audit_json(tmp_path / "s")
    cmap = audit["class_map"]
    assert cmap["subset"] and cmap["model_outputs"] == 1000 and cmap["primary_view"] == "restricted"
    assert [c["output"] for c in cmap["classes"]] == imagenet_case["columns"]
    how = {c["class"]: c["matched_by"] for c in cmap["classes"]}
    assert how == {"cock": "name", "great_white_shark": "synonym", "hen": "name", "n01443537": "wordnet id",
                   "tench": "name"}
    assert audit["model"]["digest"] == sha256_file(weights) and audit["model"]["num_classes"] == 1000
    assert audit["model"]["classes"] == ["cock", "great white shark", "hen", "goldfish", "tench"]

    # The oracle: the same weights loaded again and run here, outside the audit.
    model = load_model("timm:test_resnet", input_size=32)
    data = load_dataset(f"folder:{imagenet_case['data']}", progress=False)
    logits, y = oracle_logits(model, data)
    cols = np.array(imagenet_case["columns"])
    restricted, full = logits[:, cols].argmax(1), logits.argmax(1)
    val, val_full = audit["metrics"]["val"], audit["metrics_full"]["val"]
    assert val["view"] == "restricted" and val_full["view"] == "full"
    assert val["accuracy"] == pytest.approx((restricted == y).mean())
    assert val_full["accuracy"] == pytest.approx((full == cols[y]).mean())
    assert val_full["outside"] == pytest.approx((full == DISTRACTOR).mean()) and 0 < val_full["outside"] < 1
    assert val["accuracy"] > 0.6 and val_full["accuracy"] < val["accuracy"]
    preds = audit_predictions(tmp_path / "s")
    assert preds["pred"].tolist() == restricted.tolist() and preds["pred_full"].tolist() == full.tolist()
    assert set(preds.loc[preds["pred_full"] == DISTRACTOR, "pred_full_label"]) <= {"toilet tissue"}
    # Explanations target the dataset's classes through the matched outputs.
    assert audit["explanations"]["saliency"]["count"] == 4


def test_hub_model_with_its_own_label_names(hf_cache, tmp_path):
    module = tiny_model("test_resnet", num_classes=3, seed=4)
    weights = fake_hub_repo(hf_cache, "acme/tiny-shapes", module, ["triangle", "circle", "square"])
    code, out = cli("audit", "--model", "hf-hub:acme/tiny-shapes", "--dataset", "builtin:shapes?n=48&size=32",
                    "--input-size", "32", "--methods", "", "--out", str(tmp_path / "s"))
    assert code == 0, out
    audit = audit_json(tmp_path / "s")
    assert audit["model"]["digest"] == sha256_file(weights) and audit["metrics_full"] == {}
    assert audit["class_map"]["subset"] is False and audit["metrics"]["val"]["view"] == "all"
    assert [c["output"] for c in audit["class_map"]["classes"]] == [1, 2, 0]  # circle, square, triangle
    logits, y = oracle_logits(load_model("hf-hub:acme/tiny-shapes", input_size=32),
                              load_dataset("builtin:shapes?n=48&size=32", progress=False))
    assert audit["metrics"]["val"]["accuracy"] == pytest.approx((logits[:, [1, 2, 0]].argmax(1) == y).mean())


def _renamed(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of the folder dataset with class ``old`` renamed ``new`` (a new path: audits cache by ref)."""
    shutil.copytree(src, dst)
    for split in ("train", "val"):
        (dst / split / old).rename(dst / split / new)
    return dst


def test_unmatched_and_ambiguous_names_are_one_line_errors(imagenet_case, hf_cache, tmp_path):
    fake_hub_repo(hf_cache, WEIGHTS_REPO, imagenet_case["module"], None)
    typo = _renamed(imagenet_case["data"], tmp_path / "typo", "tench", "goldfsh")
    code, out = cli("audit", "--model", "timm:test_resnet", "--dataset", f"folder:{typo}", "--input-size", "32")
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert "'goldfsh' matches no output of model timm:test_resnet" in out and "goldfish (n01443537)" in out

    crane = _renamed(imagenet_case["data"], tmp_path / "crane", "tench", "crane")
    code, out = cli("audit", "--model", "timm:test_resnet", "--dataset", f"folder:{crane}", "--input-size", "32")
    assert code == 2 and "n02012849" in out and "n03126707" in out and "--class-map" in out, out

    mapping = tmp_path / "map.yaml"
    mapping.write_text("crane: n02012849   # the bird\n")
    code, out = cli("audit", "--model", "timm:test_resnet", "--dataset", f"folder:{crane}", "--input-size", "32",
                    "--class-map", str(mapping), "--methods", "", "--out", str(tmp_path / "s"))
    assert code == 0, out
    matched = [c for c in audit_json(tmp_path / "s")["class_map"]["classes"] if c["class"] == "crane"]
    assert matched == [{"class": "crane", "output": 134, "model_label": "crane", "wordnet_id": "n02012849",
                        "matched_by": "mapping file"}]


def test_pretrained_weights_missing_from_the_cache(hf_cache, tmp_path):
    code, out = cli("audit", "--model", "timm:test_vit", "--dataset", "builtin:shapes?n=48&size=32")
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert "timm/test_vit.r160_in1k" in out and str(hf_cache) in out and "timm:test_vit?pretrained=false" in out
