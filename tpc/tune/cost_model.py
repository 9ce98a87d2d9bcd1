"""XGBoost ranking model over candidate features, retrained as measurements arrive.

Trained with a pairwise ranking objective, one group per (op, batch, dtype): what matters is
the order of candidates of one op, not absolute seconds. Relevance labels count 3% steps
below the group's fastest, so the model resolves the candidates near the top. The training
set of a target is saved under the cache directory and reused to warm-start later tunings
(transfer).
"""

from __future__ import annotations

import fcntl
import math
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import xgboost as xgb

from tpc.files import write_atomically

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
        """Keep the training set (features, scores, groups) for later tunings.

        Savers of one path take turns under a lock on its folder; each merges in the rows
        another saver added since this model was loaded, and writes through a temporary file
        of its own (see :mod:`tpc.files`), so tuners running at once keep both runs' rows and
        a reader never sees a half-written file.

        Args:
            path: the ``.npz`` file; its folder is created when missing.

        Raises:
            OSError: the folder or file cannot be written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            saved = CostModel.load(path, train=False)
            known = set(zip(map(tuple, self.features), self.scores, self.groups))
            rows = [(list(row), score, group) for row, score, group in zip(saved.features, saved.scores, saved.groups)
                    if (tuple(row), score, group) not in known]
            features = self.features + [row for row, _, _ in rows]
            scores = self.scores + [score for _, score, _ in rows]
            groups = self.groups + [group for _, _, group in rows]
            write_atomically(path, lambda stream: np.savez(
                stream, features=np.asarray(features, dtype=np.float64), scores=np.asarray(scores),
                groups=np.asarray(groups)))
        finally:
            os.close(folder)  # closing releases the lock

    @classmethod
    def load(cls, path: Path, train: bool = True) -> "CostModel":
        """A model warm-started from a saved training set (empty if none or unreadable); ``train``
        False keeps the rows without training on them."""
        model = cls()
        try:
            with np.load(path, allow_pickle=False) as data:
                model.features = data["features"].tolist()
                model.scores = data["scores"].tolist()
                model.groups = [str(g) for g in data["groups"]]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return model
        if train:
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
