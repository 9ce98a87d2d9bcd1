"""Search strategies: which configurations to measure next.

Both strategies never propose a configuration already measured. ``RandomSearch`` samples
uniformly; ``ModelSearch`` starts from the default with one knob moved at a time (the moves
that helped other ops most first, and those moves together second); then each batch holds
picks from the fastest configuration's unmeasured neighbourhood (local search, as SMAC
interleaves it: the moves that made another configuration faster first, then the model's
best), the combination of the one-knob moves that each made a measured configuration faster,
the model's best picks from simulated annealing over the whole space, and a fraction of
random picks (epsilon-greedy).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from tpc.schedule.space import Space
from tpc.tune.cost_model import CostModel
from tpc.tune.features import candidate_features
from tpc.tune.prior import Move, one_knob_move, pair_gains

Config = dict[str, Any]


class Strategy(Protocol):
    """Proposes configurations and learns from their measurements."""

    name: str

    def propose(self, count: int, measured: set[str]) -> list[Config]:
        ...

    def observe(self, configs: Sequence[Config], seconds: Sequence[Optional[float]]) -> None:
        ...


def _unmeasured_samples(space: Space, rng: np.random.Generator, count: int, excluded: set[str]) -> list[Config]:
    picked: dict[str, Config] = {}
    for _ in range(50 * max(count, 1)):
        if len(picked) >= count:
            break
        config = space.sample(rng)
        key = space.key(config)
        if key not in excluded and key not in picked:
            picked[key] = config
    return list(picked.values())


class RandomSearch:
    """Uniform random configurations."""

    name = "random"

    def __init__(self, space: Space, seed: int = 0) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    def propose(self, count: int, measured: set[str]) -> list[Config]:
        return _unmeasured_samples(self.space, self.rng, count, measured)

    def observe(self, configs: Sequence[Config], seconds: Sequence[Optional[float]]) -> None:
        """Random search learns nothing."""


class ModelSearch:
    """Cost-model guided search (XGBoost ranking, local search around the fastest, simulated
    annealing, epsilon-greedy).

    A share ``local`` of each batch goes to the fastest measured configuration's one-knob
    moves that are not measured yet (the next fastest's once those are all measured), those
    that made another measured configuration faster first, then best model score first: where
    the best few configurations differ by a few percent, the model cannot tell them apart, and
    walking the fastest one's neighbourhood finds the better neighbour the annealing's global
    ranking passes over.

    One candidate per batch combines gains: where several one-knob moves of a measured
    configuration each made it faster by more than ``gain`` (a fraction, above timing noise),
    all of them applied together. Knob effects often add up (a faster coupling and in-place
    accumulation), which a tree model fitted to a few measurements rarely predicts for a
    combination it has not seen.

    Two models: ``model`` sees the knob encoding and op descriptors and is cheap enough to
    score every configuration the annealing visits; ``tir_model`` also sees the features of
    the scheduled TIR (from ``featurize``) and re-ranks the annealing's short list of
    ``shortlist`` candidates per proposed one.

    ``prior``: the log speed-up expected of one-knob moves from other ops' records
    (:func:`tpc.tune.prior.move_gains`), which orders the first round, before the model has
    been trained.
    """

    name = "xgb"

    def __init__(self, space: Space, model: CostModel, group: str, descriptors: list[float], seed: int = 0,
                 epsilon: float = 0.2, chains: int = 16, steps: int = 40, tir_model: Optional[CostModel] = None,
                 featurize: Optional[Callable[[Config], list[float]]] = None, shortlist: int = 4,
                 local: float = 0.375, gain: float = 0.03, prior: Optional[Mapping[Move, float]] = None) -> None:
        self.space, self.model, self.group, self.descriptors = space, model, group, descriptors
        self.prior = prior or {}
        self.tir_model, self.featurize, self.shortlist = tir_model, featurize, shortlist
        self.rng = np.random.default_rng(seed)
        self.epsilon, self.local, self.chains, self.steps, self.gain = epsilon, local, chains, steps, gain
        self.measured: list[tuple[Config, float]] = []

    def _features(self, config: Config) -> list[float]:
        return candidate_features(self.space, config, self.descriptors)

    def _score(self, configs: Sequence[Config]) -> np.ndarray:
        return self.model.predict([self._features(c) for c in configs])

    def _rerank(self, candidates: list[Config]) -> list[Config]:
        """The candidates ordered by the TIR-aware model, when there is one and it has been trained."""
        if self.tir_model is None or self.featurize is None or not self.tir_model.trained or not candidates:
            return candidates
        scores = self.tir_model.predict([self._features(c) + self.featurize(c) for c in candidates])
        return [candidates[i] for i in np.argsort(-scores, kind="stable")]

    def propose(self, count: int, measured: set[str]) -> list[Config]:
        if not self.model.trained:
            return self._first_design(count, measured)
        explore = int(round(self.epsilon * count)) if count > 1 else int(self.rng.random() < self.epsilon)
        local = int(round(self.local * count))
        proven, unproven = self._around_fastest(measured)
        chosen = proven[:local]
        chosen += self._rerank(unproven[: self.shortlist * (local - len(chosen))])[: local - len(chosen)]
        taken = measured | {self.space.key(c) for c in chosen}
        combined = self._combined_gains(taken)
        if combined is not None:
            chosen.append(combined)
            taken.add(self.space.key(combined))
        ranked = self._rerank(self._anneal(taken)[: self.shortlist * count])
        chosen += ranked[: count - explore - len(chosen)]
        taken |= {self.space.key(c) for c in chosen}
        chosen += _unmeasured_samples(self.space, self.rng, count - len(chosen), taken)
        return chosen

    def _first_design(self, count: int, measured: set[str]) -> list[Config]:
        """Before the model knows anything: the default with one knob moved at a time (what each
        knob does alone, for the model to build on), then random configurations. The moves are
        random unless ``prior`` knows them (see :meth:`_prior_design`)."""
        design = self._prior_design() if self.prior else self.space.variations(self.space.default(), self.rng)
        chosen = [c for c in design if self.space.key(c) not in measured][:count]
        taken = measured | {self.space.key(c) for c in chosen}
        return chosen + _unmeasured_samples(self.space, self.rng, count - len(chosen), taken)

    def _prior_design(self) -> list[Config]:
        """One move per knob of the default, the one ``prior`` expects fastest (random among
        equals), knobs in order of that gain; second, the moves it expects to gain more than
        ``gain`` applied together (a move the rules reject with the others left out)."""
        default = self.space.default()
        moves = self.space.moves(default)
        per_knob: dict[str, tuple[float, Config]] = {}
        for moved in (moves[i] for i in self.rng.permutation(len(moves))):
            move = one_knob_move(default, moved)
            gain = self.prior.get(move, 0.0)
            if move[1] not in per_knob or gain > per_knob[move[1]][0]:
                per_knob[move[1]] = (gain, moved)
        ranked = sorted(per_knob.items(), key=lambda item: -item[1][0])
        combined = dict(default)
        for name, (gain, moved) in ranked:
            if gain > -math.log(1 - self.gain) and self.space.is_valid({**combined, name: moved[name]}):
                combined[name] = moved[name]
        design = [moved for _, (_, moved) in ranked]
        if sum(combined[name] != default[name] for name in default) >= 2:
            design.insert(1, combined)
        return design

    def _around_fastest(self, measured: set[str]) -> tuple[list[Config], list[Config]]:
        """The unmeasured one-knob moves of the fastest measured configuration that has any, in
        two lists: those that made a measured configuration faster by more than ``gain`` (the
        same knob, from the same value to the same value), largest gain first; and the others,
        best model score first, those that made one slower by more than ``gain`` last.

        A move's measured gain elsewhere is the best guess of its gain here (knob effects mostly
        add up), better than a model fitted to a few measurements, which rarely resolves one
        knob's effect of a few percent under another's of tens of percent."""
        gains = pair_gains(self._fastest_by_key(), self.space)
        threshold = -math.log(1 - self.gain)
        for config, _ in sorted(self.measured, key=lambda item: item[1]):
            moves = [c for c in self.space.moves(config) if self.space.key(c) not in measured]
            if not moves:
                continue
            gain = [gains.get(one_knob_move(config, moved)) for moved in moves]
            proven = sorted((i for i, g in enumerate(gain) if g is not None and g > threshold),
                            key=lambda i: -gain[i])
            scores = self._score(moves)
            unproven = sorted(set(range(len(moves))) - set(proven),
                              key=lambda i: (gain[i] is not None and gain[i] < -threshold, -scores[i], i))
            return [moves[i] for i in proven], [moves[i] for i in unproven]
        return [], []

    def _fastest_by_key(self) -> dict[str, tuple[float, Config]]:
        """Each measured configuration by key: its fastest measurement, and itself."""
        fastest: dict[str, tuple[float, Config]] = {}
        for config, seconds in self.measured:
            key = self.space.key(config)
            if key not in fastest or seconds < fastest[key][0]:
                fastest[key] = (seconds, config)
        return fastest

    def _combined_gains(self, measured: set[str]) -> Optional[Config]:
        """The first unmeasured combination of gains, fastest base first: for a measured
        configuration, its measured one-knob moves (:meth:`Space.moves`) that were faster by more
        than ``gain``, the best value per knob, applied in order of gain (a move the rules reject
        with the others is left out)."""
        seconds_of = {key: seconds for key, (seconds, _) in self._fastest_by_key().items()}
        for base, base_seconds in sorted(self.measured, key=lambda item: item[1]):
            gains: dict[str, tuple[float, Any]] = {}
            for move in self.space.moves(base):
                seconds = seconds_of.get(self.space.key(move), base_seconds)
                name = one_knob_move(base, move)[1]
                if seconds < base_seconds * (1 - self.gain) and seconds < gains.get(name, (base_seconds,))[0]:
                    gains[name] = (seconds, move[name])
            if len(gains) < 2:
                continue
            config = dict(base)
            for name, (_, value) in sorted(gains.items(), key=lambda item: item[1][0]):
                if self.space.is_valid({**config, name: value}):
                    config[name] = value
            if sum(config[name] != base[name] for name in gains) >= 2 and self.space.key(config) not in measured:
                return config
        return None

    def _anneal(self, measured: set[str]) -> list[Config]:
        """Unmeasured configurations visited by annealing chains, best model score first."""
        best_known = [c for c, _ in sorted(self.measured, key=lambda item: item[1])[: self.chains // 2]]
        starts = best_known + [self.space.sample(self.rng) for _ in range(self.chains - len(best_known))]
        current, scores = starts, self._score(starts)
        visited: dict[str, tuple[float, Config]] = {}
        for step in range(self.steps):
            temperature = max(1.0 - step / self.steps, 0.05)
            proposals = [self.space.neighbour(c, self.rng) for c in current]
            new_scores = self._score(proposals)
            for index, (config, score) in enumerate(zip(proposals, new_scores)):
                key = self.space.key(config)
                if key not in measured:
                    visited[key] = (float(score), config)
                if score >= scores[index] or self.rng.random() < math.exp((score - scores[index]) / temperature):
                    current[index], scores[index] = config, score
        return [config for _, config in sorted(visited.values(), key=lambda item: -item[0])]

    def observe(self, configs: Sequence[Config], seconds: Sequence[Optional[float]]) -> None:
        good = [(c, s) for c, s in zip(configs, seconds) if s is not None]
        self.measured += good
        if not good:
            return
        features = [self._features(c) for c, _ in good]
        self.model.add(self.group, features, [s for _, s in good])
        if self.tir_model is not None and self.featurize is not None:
            self.tir_model.add(self.group, [row + self.featurize(c) for row, (c, _) in zip(features, good)],
                               [s for _, s in good])
