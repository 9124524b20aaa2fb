"""Which validation images to explain: both outcomes and every class represented, deterministically."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imaudit.errors import BadInputError

_NEEDED = ("id", "split", "y", "correct")


def _spread(rows: pd.DataFrame, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """``k`` rows taken round-robin over classes (shuffled within each class) so all classes appear."""
    if k <= 0 or rows.empty:
        return rows.iloc[:0]
    shuffled = rows.iloc[rng.permutation(len(rows))]
    rank = shuffled.groupby("y", sort=False).cumcount()
    # Ties within a round are broken by the shuffled order, so the classes in round r are random.
    order = np.lexsort((np.arange(len(shuffled)), rank.to_numpy()))
    return shuffled.iloc[order[:k]]


def select_sample(pred: pd.DataFrame, n: int, seed: int = 0, split: str = "val") -> pd.DataFrame:
    """Up to ``n`` rows of ``split``: about half misclassified, half correct, classes spread.

    When one outcome has too few rows the other fills the remainder. The
    result keeps ``pred``'s columns, misclassified rows first.
    """
    missing = [c for c in _NEEDED if c not in pred.columns]
    if missing:
        raise BadInputError(f"predictions: missing column(s) {', '.join(missing)}")
    rows = pred[pred["split"] == split]
    if n <= 0 or rows.empty:
        return rows.iloc[:0].reset_index(drop=True)
    wrong = rows[~rows["correct"].astype(bool)]
    right = rows[rows["correct"].astype(bool)]
    n = min(n, len(rows))
    n_wrong = min(len(wrong), max(n // 2, n - len(right)))
    rng = np.random.default_rng(seed)
    picked = pd.concat([_spread(wrong, n_wrong, rng), _spread(right, n - n_wrong, rng)])
    return picked.reset_index(drop=True)
