"""Matching dataset classes to model outputs, and the restricted/full views, on known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imaudit.audits.classmap import (
    ClassMap,
    RestrictedHead,
    full_module,
    full_view_columns,
    match_classes,
    read_mapping,
    reduce_logits,
)
from imaudit.errors import BadInputError
from imaudit.models.labels import from_names, from_wordnet_ids, imagenet_labels

IMAGENET = imagenet_labels(type("M", (), {"num_classes": 1000, "pretrained_cfg": {}})())


def test_imagenet_names_ids_and_synonyms_match():
    cmap = match_classes(["tench", "n01443537", "Great_White-Shark", "Tinca tinca"], IMAGENET, 1000, "m",
                         mapping={"Tinca tinca": "7"})
    assert cmap.columns == [0, 1, 2, 7] and cmap.subset and not cmap.identity
    assert cmap.how == ["name", "wordnet id", "synonym", "mapping file"]
    assert cmap.model_names == ["tench", "goldfish", "great white shark", "cock"]
    assert cmap.model_ids == ["n01440764", "n01443537", "n01484850", "n01514668"]


@pytest.mark.parametrize("classes, needle", [
    (["tench", "goldfsh"], "'goldfsh' matches no output of model m (1000 labels from timm ImageNet info (imagenet-1k)); "
                  "close: goldfish (n01443537)"),
    (["pet", "dog1"], "model m has 1000 outputs but the dataset has 2 classes, and none of them is among the "
                      "model's labels (tench, goldfish, great white shark, tiger shark, hammerhead, ...; from timm "
                      "ImageNet info (imagenet-1k))"),
    (["crane"], "'crane' matches 2 outputs of model m (crane (n02012849), crane (n03126707))"),
    (["tench", "Tinca tinca"], "dataset classes 'tench' and 'Tinca tinca' both match tench (n01440764)"),
])
def test_bad_matches_are_one_line_bad_input(classes, needle):
    with pytest.raises(BadInputError) as err:
        match_classes(classes, IMAGENET, 1000, "m")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_same_classes_in_another_order_or_unnamed():
    named = match_classes(["a", "b", "c"], from_names(["c", "a", "b"], "x"), 3, "m")
    assert named.columns == [1, 2, 0] and not named.subset and not named.identity
    assert match_classes(["a", "b"], None, 2, "m").identity
    wnids = match_classes(["goldfish", "tench"], from_wordnet_ids(["n01440764", "n01443537"], "x"), 2, "m")
    assert wnids.columns == [1, 0]
    with pytest.raises(BadInputError, match="no label names to match them by; pass --class-map"):
        match_classes(["a", "b"], None, 10, "m")
    with pytest.raises(BadInputError, match="has 2 outputs but the dataset has 3 classes"):
        match_classes(["a", "b", "c"], None, 2, "m")
    unnamed = match_classes(["a", "b"], None, 10, "m", mapping={"a": "4", "b": "9"})
    assert unnamed.columns == [4, 9] and unnamed.model_names == ["4", "9"]


@pytest.mark.parametrize("name, text", [
    ("map.yaml", "tench: n01440764\nkoi: 1\n"),
    ("map.json", '{"tench": "n01440764", "koi": 1}'),
    ("map.csv", "class,model\ntench,n01440764\nkoi,1\n"),
])
def test_mapping_files(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert read_mapping(path) == {"tench": "n01440764", "koi": "1"}
    assert match_classes(["koi", "tench"], IMAGENET, 1000, "m", read_mapping(path)).columns == [1, 0]


def test_bad_mapping_files_name_the_file(tmp_path):
    for name, text, needle in [("m.yaml", "tench: [1, 2]\n", "must map each dataset class"),
                               ("m.csv", "a,b\n1,2\n", "a CSV needs the columns class,model"),
                               ("m.json", "{nope", "not valid json")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(BadInputError, match=f"--class-map .*{name}: {needle}"):
            read_mapping(tmp_path / name)
    with pytest.raises(BadInputError, match="output 1000, but model m has 1000 outputs"):
        match_classes(["x"], IMAGENET, 1000, "m", {"x": "1000"})


def test_full_view_columns_agree_with_a_direct_computation():
    rng = np.random.default_rng(0)
    full = rng.normal(0, 3, (200, 50)).astype(np.float32)
    full[7] = np.nan
    cols = [5, 17, 3, 40]
    y = rng.integers(0, 4, 200)
    cmap = ClassMap(columns=cols, n_outputs=50, how=["name"] * 4, model_names=["a", "b", "c", "d"],
                    labels=from_names([f"l{i}" for i in range(50)], "x"))
    reduced = reduce_logits(full, cols)
    out = full_view_columns(y, reduced["logits"], reduced, cmap)
    ok = np.isfinite(full).all(axis=1)
    p = np.exp(full[ok] - full[ok].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    true_out = np.array(cols)[y[ok]]
    assert np.array_equal(out["pred_full"][ok], full[ok].argmax(1))
    assert np.array_equal(out["correct_full"][ok], full[ok].argmax(1) == true_out)
    assert np.allclose(out["loss_full"][ok], -np.log(p[np.arange(ok.sum()), true_out]), atol=1e-5)
    assert np.allclose(out["confidence_full"][ok], p.max(1), atol=1e-6)
    top5 = np.argsort(-full[ok], axis=1)[:, :5]
    assert np.array_equal(out["top5_correct_full"][ok], (top5 == true_out[:, None]).any(1))
    assert np.array_equal(out["in_classes"][ok], np.isin(full[ok].argmax(1), cols))
    assert not out["correct_full"][7] and np.isnan(out["loss_full"][7])
    assert out["pred_full_label"][0] == f"l{full[0].argmax()}"
    assert np.array_equal(reduced["logits"][ok], full[ok][:, cols])


def test_restricted_head_selects_outputs_and_keeps_the_whole_model():
    inner = torch.nn.Linear(4, 10)
    head = RestrictedHead(inner, [9, 2])
    x = torch.randn(3, 4)
    assert torch.equal(head(x), inner(x)[:, [9, 2]]) and head.num_classes == 2
    assert full_module(head) is inner and full_module(inner) is inner
    assert "columns" not in head.state_dict()  # not part of the weights (digest, checkpoints)
