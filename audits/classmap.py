"""Which model output is which dataset class: matching names, and the two metric views.

A model's outputs and a dataset's classes match in one of two ways:

- **same classes**: as many outputs as classes, named alike (any order) or not
  named at all; outputs are reordered to the dataset's class order.
- **subset**: the model has more outputs (a 1000-class ImageNet model on a
  team's five labelled ImageNet classes). Each dataset class is matched to one
  output by, in order: an explicit mapping file (``--class-map``), the output's
  name, its WordNet id, or one of its synonyms (case, ``_`` and ``-`` ignored).
  An unmatched or ambiguous name is bad input, with close candidates listed.

A subset audit reports two views of every prediction, and says which is which:

- ``restricted``: the argmax among the dataset's classes only (the model's
  logits at the matched outputs). Per-class tables, confusion, calibration,
  the fit verdict and the explanations all use this view, so they speak in
  the dataset's classes.
- ``full``: the argmax over all outputs, as the model would answer in use; a
  prediction outside the dataset's classes counts as wrong (``outside``).
"""

from __future__ import annotations

import csv
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from imaudit.errors import BadInputError
from imaudit.models.labels import LabelSet

VIEW_ALL = "all"  # the model's outputs are exactly the dataset's classes: one view
VIEW_RESTRICTED = "restricted"
VIEW_FULL = "full"
VIEW_MEANING = {
    VIEW_ALL: "top-1 over the model's outputs, which are exactly the dataset's classes",
    VIEW_RESTRICTED: "top-1 among the dataset's classes only (the model's logits at the matched outputs)",
    VIEW_FULL: "top-1 over all the model's outputs; a prediction outside the dataset's classes counts as wrong",
}


@dataclass
class ClassMap:
    """Model output index per dataset class (dataset order), and how each was matched."""

    columns: list[int]
    n_outputs: int
    how: list[str] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    model_ids: list[str] | None = None
    label_source: str | None = None
    labels: LabelSet | None = field(default=None, repr=False)  # every output's names (the full view's labels)

    @property
    def subset(self) -> bool:
        """The model has outputs beyond the dataset's classes (two metric views)."""
        return self.n_outputs > len(self.columns)

    @property
    def identity(self) -> bool:
        return not self.subset and self.columns == list(range(self.n_outputs))

    def record(self, classes: list[str]) -> dict[str, Any]:
        """The class_map section of audit.json."""
        return {
            "subset": self.subset,
            "model_outputs": self.n_outputs,
            "label_source": self.label_source,
            "views": {VIEW_RESTRICTED: VIEW_MEANING[VIEW_RESTRICTED], VIEW_FULL: VIEW_MEANING[VIEW_FULL]}
            if self.subset else {VIEW_ALL: VIEW_MEANING[VIEW_ALL]},
            "primary_view": VIEW_RESTRICTED if self.subset else VIEW_ALL,
            "classes": [
                {"class": c, "output": int(o), "model_label": self.model_names[i] if self.model_names else None,
                 "wordnet_id": self.model_ids[i] if self.model_ids else None, "matched_by": self.how[i]}
                for i, (c, o) in enumerate(zip(classes, self.columns))
            ],
        }


# --- matching --------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(text)).strip().casefold()


def match_classes(data_classes: list[str], labels: LabelSet | None, n_outputs: int, model_ref: str,
                  mapping: dict[str, str] | None = None) -> ClassMap:
    """Match dataset classes to model outputs (see the module docstring); BadInputError when they do not fit."""
    k = len(data_classes)
    if labels is not None and len(labels) != n_outputs:
        labels = None  # names that do not cover the outputs cannot place them
    if n_outputs < k:
        raise BadInputError(f"model {model_ref} has {n_outputs} outputs but the dataset has {k} classes")
    if n_outputs == k and not mapping:
        return _same_classes(data_classes, labels, model_ref)
    if labels is None and not mapping:
        raise BadInputError(
            f"model {model_ref} has {n_outputs} outputs but the dataset has {k} classes, and the model carries "
            f"no label names to match them by; pass --class-map FILE (dataset class -> output index)"
        )
    if labels is not None and not mapping and not any(_matches(c, labels) for c in data_classes):
        shown = ", ".join(labels.names[:5]) + (", ..." if len(labels) > 5 else "")
        raise BadInputError(
            f"model {model_ref} has {n_outputs} outputs but the dataset has {k} classes, and none of them is "
            f"among the model's labels ({shown}; from {labels.source}); map them in --class-map FILE"
        )
    columns, how = [], []
    for c in data_classes:
        if mapping and c in mapping:
            out, why = _resolve_target(mapping[c], labels, n_outputs, model_ref, c), "mapping file"
        else:
            out, why = _match_one(c, labels, model_ref, mapping is not None)
        columns.append(out)
        how.append(why)
    seen: dict[int, str] = {}
    for c, o in zip(data_classes, columns):
        if o in seen:
            name = labels.describe(o) if labels else f"output {o}"
            raise BadInputError(f"dataset classes {seen[o]!r} and {c!r} both match {name} of model {model_ref}; "
                                f"map one of them in --class-map FILE")
        seen[o] = c
    return ClassMap(columns=columns, n_outputs=n_outputs, how=how,
                    model_names=[labels.names[o] for o in columns] if labels else [str(o) for o in columns],
                    model_ids=[labels.ids[o] for o in columns] if labels and labels.ids else None,
                    label_source=labels.source if labels else "mapping file", labels=labels)


def _same_classes(data_classes: list[str], labels: LabelSet | None, model_ref: str) -> ClassMap:
    k = len(data_classes)
    names = labels.names if labels is not None else None
    if not names or list(names) == list(data_classes):
        return ClassMap(columns=list(range(k)), n_outputs=k, how=["position"] * k,
                        model_names=list(names or data_classes), label_source=labels.source if labels else None)
    if sorted(names) == sorted(data_classes):
        return ClassMap(columns=[list(names).index(c) for c in data_classes], n_outputs=k, how=["name"] * k,
                        model_names=list(data_classes), label_source=labels.source)
    # Same count, different names: match by name, id or synonym like a subset (e.g. WordNet ids vs words).
    columns, how = zip(*(_match_one(c, labels, model_ref, False) for c in data_classes))
    if len(set(columns)) != k:
        missing = sorted(set(data_classes) - set(names))[:5]
        raise BadInputError(f"model {model_ref} classes do not match the dataset's (e.g. missing {missing})")
    return ClassMap(columns=list(columns), n_outputs=k, how=list(how), model_names=[names[o] for o in columns],
                    model_ids=[labels.ids[o] for o in columns] if labels.ids else None, label_source=labels.source)


def _matches(name: str, labels: LabelSet) -> bool:
    """Whether ``name`` is some output's name, WordNet id or synonym."""
    key = _norm(name)
    return (name in labels.names or bool(labels.ids and name in labels.ids)
            or any(key in {_norm(s) for s in syn} for syn in labels.synonyms))


def _match_one(name: str, labels: LabelSet | None, model_ref: str, have_mapping: bool) -> tuple[int, str]:
    """The one output named ``name`` (by name, WordNet id, then synonym)."""
    if labels is None:
        raise BadInputError(f"dataset class {name!r} is not in --class-map and model {model_ref} has no label names")
    exact = [i for i, n in enumerate(labels.names) if n == name]
    if len(exact) == 1:
        return exact[0], "name"
    if labels.ids and name in labels.ids:
        return labels.ids.index(name), "wordnet id"
    key = _norm(name)
    hits = exact or [i for i, syn in enumerate(labels.synonyms) if key in {_norm(s) for s in syn}]
    if len(hits) == 1:
        return hits[0], "synonym"
    where = "--class-map FILE" if not have_mapping else "the --class-map file"
    if len(hits) > 1:
        options = ", ".join(labels.describe(i) for i in hits[:5])
        raise BadInputError(f"dataset class {name!r} matches {len(hits)} outputs of model {model_ref} ({options}); "
                            f"name the one you mean (e.g. its WordNet id) in {where}")
    raise BadInputError(f"dataset class {name!r} matches no output of model {model_ref} "
                        f"({len(labels)} labels from {labels.source}){_close(name, labels)}; map it in {where}")


def _close(name: str, labels: LabelSet) -> str:
    """'; close: a (id), b (id)' from difflib over every name and synonym."""
    index: dict[str, int] = {}
    for i, syn in enumerate(labels.synonyms):
        for s in syn:
            index.setdefault(_norm(s), i)
    close = difflib.get_close_matches(_norm(name), list(index), n=8, cutoff=0.6)
    outs = list(dict.fromkeys(index[c] for c in close))[:5]
    return f"; close: {', '.join(labels.describe(i) for i in outs)}" if outs else ""


def _resolve_target(target: str, labels: LabelSet | None, n_outputs: int, model_ref: str, cls: str) -> int:
    """A mapping file's right-hand side: an output index, a WordNet id or a label name."""
    text = str(target).strip()
    if text.isdigit():
        if int(text) >= n_outputs:
            raise BadInputError(f"--class-map: {cls!r} -> output {text}, but model {model_ref} has {n_outputs} outputs")
        return int(text)
    out, _ = _match_one(text, labels, model_ref, True)
    return out


def read_mapping(path: Path, where: str | None = None) -> dict[str, str]:
    """A class-map file: YAML/JSON object, or CSV with columns class,model (dataset class -> model label)."""
    where = where or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(f"--class-map {where}: cannot read it ({exc.strerror or exc})") from None
    if Path(path).suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        cols = {c.strip().lower() for c in (rows[0].keys() if rows else [])}
        if not {"class", "model"} <= cols:
            raise BadInputError(f"--class-map {where}: a CSV needs the columns class,model")
        return {r["class"].strip(): r["model"].strip() for r in rows if r.get("class", "").strip()}
    try:
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise BadInputError(f"--class-map {where}: not valid {Path(path).suffix.lstrip('.') or 'YAML'} "
                            f"({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (str, int)) for v in data.values()):
        raise BadInputError(f"--class-map {where}: must map each dataset class to a model label, WordNet id or index")
    return {str(k): str(v) for k, v in data.items()}


# --- the two views ---------------------------------------------------------------------------

class RestrictedHead(nn.Module):
    """The model seen through the dataset's classes: logits at the matched outputs, in dataset order.

    Explanations, quality checks and counterfactuals all run on this, so their
    class indices are the dataset's and their targets are the right outputs.
    ``inner`` is the whole model (the full view).
    """

    def __init__(self, inner: nn.Module, columns: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        self.num_classes = len(columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).index_select(-1, self.columns)


def full_module(module: nn.Module) -> nn.Module:
    """The whole model behind a RestrictedHead (or the module itself)."""
    return module.inner if isinstance(module, RestrictedHead) else module


def reduce_logits(full: np.ndarray, columns: list[int], k: int = 5) -> dict[str, np.ndarray]:
    """What a subset audit keeps of all-output logits: the restricted logits and the full view's top-k.

    Keeping the top-k outputs with their full-softmax probabilities and the
    log-sum-exp is enough to compute every full-view number (top-1, top-5,
    loss, calibration) without storing all outputs for every image.
    """
    full = full.astype(np.float64)
    finite = np.isfinite(full).all(axis=1)
    safe = np.where(np.isfinite(full), full, 0.0)
    lse = np.log(np.exp(safe - safe.max(axis=1, keepdims=True)).sum(axis=1)) + safe.max(axis=1)
    kk = min(k, full.shape[1])
    top = np.argsort(-safe, axis=1, kind="stable")[:, :kk]
    top_p = np.exp(np.take_along_axis(safe, top, axis=1) - lse[:, None])
    lse = np.where(finite, lse, np.nan)
    return {
        "logits": full[:, columns].astype(np.float32),
        "full_lse": lse,
        "full_top": top.astype(np.int64),
        "full_top_p": np.where(finite[:, None], top_p, np.nan),
    }


def full_view_columns(y: np.ndarray, restricted: np.ndarray, reduced: dict[str, np.ndarray], cmap: ClassMap,
                      ) -> dict[str, Any]:
    """Per-image full-view columns for the predictions table (suffix ``_full``).

    ``pred_full`` is a model output index; ``pred_full_label`` its model label;
    ``in_classes`` says whether it is one of the dataset's classes.
    """
    top, top_p, lse = reduced["full_top"], reduced["full_top_p"], reduced["full_lse"]
    finite = np.isfinite(lse)
    cols = np.asarray(cmap.columns)
    true_out = cols[np.clip(y, 0, len(cols) - 1)]
    true_logit = restricted[np.arange(len(y)), np.clip(y, 0, len(cols) - 1)].astype(np.float64)
    pred = top[:, 0]
    names = cmap.labels.names if cmap.labels is not None else None
    return {
        "pred_full": pred,
        "pred_full_label": [names[int(p)] if names else f"output {int(p)}" for p in pred],
        "in_classes": np.isin(pred, cols),
        "confidence_full": np.where(finite, top_p[:, 0], np.nan),
        "loss_full": np.where(finite, lse - true_logit, np.nan),
        "correct_full": (pred == true_out) & finite,
        "top5_correct_full": (top == true_out[:, None]).any(axis=1) & finite,
    }
