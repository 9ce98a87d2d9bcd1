"""XGBoost ranking model over candidate features, retrained as measurements arrive.

Trained with a pairwise ranking objective, one group per (op, batch, dtype): what matters is
the order of candidates of one op, not absolute seconds. Relevance labels count 3% steps
below the group's fastest, so the model resolves the candidates near the top. The training
set of a target is saved under the cache directory and reused to warm-start later tunings
(transfer).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import xgboost as xgb

PARAMS = {"objective": "rank:pairwise", "eta": 0.3, "max_depth": 6, "min_child_weight": 0.0, "nthread": 1,
          "verbosity": 0}
ROUNDS = 60
LABEL_STEP = math.log(1.03)
"""Relevance labels step down by one per 3% slower than the fastest: finer than a measurement's
noise would justify, coarse enough that near ties are not trained as an order."""


class CostModel:
    """Scores candidates (higher is faster) from measured ones."""

    def __init__(self) -> None:
        self.features: list[list[float]] = []
        self.scores: list[float] = []
        self.groups: list[str] = []
        self._booster: xgb.Booster | None = None

    def add(self, group: str, features: Sequence[Sequence[float]], seconds: Sequence[float]) -> None:
        """Add measured candidates of one group and retrain."""
        for row, value in zip(features, seconds):
            self.features.append(list(row))
            self.scores.append(-math.log(value))
            self.groups.append(group)
        self._train()

    @property
    def trained(self) -> bool:
        """Whether the model has seen enough to rank."""
        return self._booster is not None

    def predict(self, features: Sequence[Sequence[float]]) -> np.ndarray:
        """Scores of candidates; without training data, zeros."""
        if self._booster is None:
            return np.zeros(len(features))
        return self._booster.predict(xgb.DMatrix(np.asarray(features, dtype=np.float64)))

    def _train(self) -> None:
        order = sorted(range(len(self.groups)), key=lambda i: self.groups[i])
        groups = [self.groups[i] for i in order]
        sizes = [groups.count(g) for g in dict.fromkeys(groups)]
        if len(order) < 4:
            return
        labels = np.asarray([self.scores[i] for i in order])
        matrix = xgb.DMatrix(np.asarray([self.features[i] for i in order], dtype=np.float64),
                             label=_relevance(labels, groups))
        matrix.set_group(sizes)
        self._booster = xgb.train(PARAMS, matrix, num_boost_round=ROUNDS)

    def save(self, path: Path) -> None:
        """Keep the training set (features, scores, groups) for later tunings."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, features=np.asarray(self.features, dtype=np.float64), scores=np.asarray(self.scores),
                 groups=np.asarray(self.groups))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "CostModel":
        """A model warm-started from a saved training set (empty if none or unreadable)."""
        model = cls()
        try:
            with np.load(path, allow_pickle=False) as data:
                model.features = data["features"].tolist()
                model.scores = data["scores"].tolist()
                model.groups = [str(g) for g in data["groups"]]
        except (OSError, ValueError, KeyError):
            return model
        model._train()
        return model


def _relevance(scores: np.ndarray, groups: list[str]) -> np.ndarray:
    """Per-group integer relevance labels in 0..31: 31 for the group's fastest, one less per
    ``LABEL_STEP`` slower, 0 from about 2.5 times slower on.

    Steps relative to the fastest, not a scale over the group's whole range: one very slow
    candidate would otherwise squeeze the best few into one label, and the model could not
    learn which of them is faster where that matters most.
    """
    labels = np.zeros(len(scores))
    for group in dict.fromkeys(groups):
        members = np.asarray([g == group for g in groups])
        slower = scores[members].max() - scores[members]
        labels[members] = np.maximum(31 - np.floor(slower / LABEL_STEP), 0)
    return labels
