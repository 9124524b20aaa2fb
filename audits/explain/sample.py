"""Which validation images to explain: stratified by the explained class, misclassified ones kept in.

Per-class statistics (global importance per class, SpRAy strategies, shortcut
candidates) need enough images of every class they speak about, so the sample
is stratified by the class each map explains (the predicted class by default,
``by="y"`` for the true one). Rows are ordered so that *every prefix* is
stratified too: round r holds the r-th image of each class (classes in a
seeded random order within the round). Cheap methods explain a long prefix,
LIME and SHAP a short one, and both see every class. Within a class,
misclassified and correct images alternate, misclassified first, so errors
are always explained when the model makes them.

For many-class datasets ``explained_classes`` picks a stated subset: the
classes most involved in validation errors first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from imaudit.errors import BadInputError

_NEEDED = ("id", "split", "y", "correct")


def _interleave(wrong: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """wrong[0], right[0], wrong[1], right[1], ... then the rest of the longer one."""
    order = np.argsort(np.concatenate([np.arange(len(wrong)) * 2, np.arange(len(right)) * 2 + 1]), kind="stable")
    return pd.concat([wrong, right]).iloc[order]


def select_sample(
    pred: pd.DataFrame,
    n: int,
    seed: int = 0,
    split: str = "val",
    *,
    by: str = "pred",
    classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Up to ``n`` rows of ``split`` in a stratified order (see the module docstring).

    ``by``: the column holding the explained class ("pred" or "y"); ``classes``:
    only rows explaining these class indices (all when None). Classes with
    fewer rows simply run out; the others fill the remaining places.
    """
    missing = [c for c in (*_NEEDED, by) if c not in pred.columns]
    if missing:
        raise BadInputError(f"predictions: missing column(s) {', '.join(missing)}")
    rows = pred[pred["split"] == split]
    if classes is not None:
        rows = rows[rows[by].isin(list(classes))]
    if n <= 0 or rows.empty:
        return rows.iloc[:0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    per_class = []
    for c in sorted(rows[by].unique()):
        mine = rows[rows[by] == c]
        mine = mine.iloc[rng.permutation(len(mine))]
        ok = mine["correct"].astype(bool)
        ordered = _interleave(mine[~ok], mine[ok])
        per_class.append(ordered.assign(_rank=np.arange(len(ordered)), _key=rng.random()))
    allrows = pd.concat(per_class)
    # Round by round; within a round the classes come in a seeded random order.
    picked = allrows.sort_values(["_rank", "_key"], kind="stable").head(n)
    return picked.drop(columns=["_rank", "_key"]).reset_index(drop=True)


def explained_classes(
    pred: pd.DataFrame, n_classes: int, max_classes: int, split: str = "val", by: str = "pred"
) -> tuple[list[int], str]:
    """The class indices an audit explains and how they were chosen.

    All classes when there are at most ``max_classes``; otherwise the
    ``max_classes`` classes most involved in ``split``'s errors (as the true or
    the predicted class), ties to the lower recall, then the lower index.
    """
    if n_classes <= max_classes:
        return list(range(n_classes)), "all classes"
    rows = pred[pred["split"] == split]
    wrong = rows[~rows["correct"].astype(bool)]
    involved = np.bincount(wrong["y"], minlength=n_classes) + np.bincount(wrong["pred"], minlength=n_classes)
    total = np.bincount(rows["y"], minlength=n_classes)
    right = np.bincount(rows.loc[rows["correct"].astype(bool), "y"], minlength=n_classes)
    recall = np.divide(right, total, out=np.ones(n_classes), where=total > 0)
    order = sorted(range(n_classes), key=lambda c: (-involved[c], recall[c], c))
    chosen = sorted(order[:max_classes])
    return chosen, f"the {max_classes} of {n_classes} classes most involved in {split} errors"


def background_rows(manifest: pd.DataFrame, n: int, seed: int, split: str = "train") -> pd.DataFrame:
    """``n`` rows of ``split`` (seeded, spread over labels) to serve as a fixed background (SHAP).

    Falls back to any split when ``split`` is missing. The same rows for every
    chunk and every image, so a background-based map never depends on its batch.
    """
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        rows = manifest
    if rows.empty or n <= 0:
        return rows.iloc[:0]
    rng = np.random.default_rng(seed)
    rows = rows.iloc[rng.permutation(len(rows))]
    rank = rows.groupby("label", sort=False).cumcount().to_numpy()
    return rows.iloc[np.argsort(rank, kind="stable")[:n]].reset_index(drop=True)
