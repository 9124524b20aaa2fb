"""Training history files: JSON and CSV give the same rows; bad files are named."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imaudit.errors import BadInputError
from imaudit.models import load_history

ROWS = [
    {"epoch": 1, "train_loss": 0.9, "train_acc": 0.7, "val_loss": 1.0, "val_acc": 0.6},
    {"epoch": 0, "train_loss": 1.9, "train_acc": 0.3, "val_loss": 2.0, "val_acc": 0.25},
]


def test_json_and_csv_agree_and_are_sorted_by_epoch(tmp_path):
    as_json = tmp_path / "h.json"
    as_json.write_text(json.dumps(ROWS))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"history": ROWS}))
    as_csv = tmp_path / "h.csv"
    pd.DataFrame(ROWS).to_csv(as_csv, index=False)
    rows = load_history(as_json)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows == load_history(wrapped) == load_history(as_csv)
    assert all(type(r["epoch"]) is int and type(r["val_loss"]) is float for r in load_history(as_csv))


def test_gaps_and_non_finite_values_become_none(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("epoch,train_loss,val_loss,lr\n0,1.0,,nan\n1,inf,0.7,0.1\n")
    rows = load_history(path)
    assert rows[0] == {"epoch": 0, "train_loss": 1.0, "val_loss": None, "lr": None}
    assert rows[1]["train_loss"] is None
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows  # strict JSON, as manifests need


@pytest.mark.parametrize("name, text, match", [
    ("noepoch.json", json.dumps([{"train_loss": 1.0}]), "noepoch.json row 0: row has no 'epoch'"),
    ("word.json", json.dumps([{"epoch": 0, "val_loss": "high"}]), "word.json row 0: 'val_loss' must be a number"),
    ("obj.json", json.dumps({"epochs": 3}), "obj.json: expected a list of rows"),
    ("broken.json", "[{", "broken.json is not valid JSON"),
    ("noepoch.csv", "loss\n1.0\n", "noepoch.csv row 0: row has no 'epoch'"),
    ("empty.csv", "", "empty.csv is not a readable CSV"),
])
def test_bad_history_files_are_named(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadInputError, match=match):
        load_history(path)


def test_missing_history_file(tmp_path):
    with pytest.raises(BadInputError, match="nope.json does not exist"):
        load_history(tmp_path / "nope.json")
