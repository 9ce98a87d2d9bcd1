"""Knobs: named schedule parameters with finite domains, and configurations built from them.

A configuration is a plain dict of knob values (JSON-serializable). ``validate`` fills in
defaults and rejects unknown knobs, values outside a knob's domain and combinations a rule
of the space forbids before anything is built, naming the knob and its allowed values.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np


@dataclass(frozen=True)
class Knob:
    """One schedule parameter: a name, its allowed values and its default."""

    name: str
    values: tuple[Any, ...]
    default: Any
    help: str


def with_defaults(knobs: tuple[Knob, ...], **defaults: Any) -> tuple[Knob, ...]:
    """``knobs`` with the defaults of some changed (the same knobs, so records stay valid)."""
    unknown = sorted(set(defaults) - {knob.name for knob in knobs})
    if unknown:
        raise ValueError(f"no knob(s) {unknown} to give a default")
    return tuple(replace(knob, default=defaults[knob.name]) if knob.name in defaults else knob for knob in knobs)


Rule = Callable[[Mapping[str, Any]], Optional[str]]
"""A constraint between knobs: why a full configuration is invalid, or None."""


def validate(knobs: tuple[Knob, ...], config: Mapping[str, Any] | None, family: str,
             rules: tuple[Rule, ...] = ()) -> dict[str, Any]:
    """Return the full configuration (defaults filled in) or raise ValueError."""
    config = dict(config or {})
    by_name = {knob.name: knob for knob in knobs}
    unknown = sorted(set(config) - set(by_name))
    if unknown:
        raise ValueError(f"unknown {family} schedule knob(s) {unknown}; known knobs: {sorted(by_name)}")
    full = {}
    for knob in knobs:
        value = config.get(knob.name, knob.default)
        if value not in knob.values or isinstance(value, bool) != isinstance(knob.default, bool):
            raise ValueError(f"{family} knob {knob.name!r} = {value!r} is not one of {list(knob.values)}")
        full[knob.name] = value
    for rule in rules:
        problem = rule(full)
        if problem is not None:
            raise ValueError(f"{family} configuration rejected: {problem}")
    return full


@dataclass(frozen=True)
class SearchSpace:
    """The knobs of one target family: sampling, neighbours and a numeric encoding.

    ``version`` changes whenever the knobs or their meaning change, so that cached records
    of an older space are not applied to a newer one.
    """

    family: str
    knobs: tuple[Knob, ...]
    version: int
    rules: tuple[Rule, ...] = ()

    def is_valid(self, config: Mapping[str, Any]) -> bool:
        """Whether a full configuration satisfies every rule."""
        return all(rule(config) is None for rule in self.rules)

    def default(self) -> dict[str, Any]:
        """The default configuration."""
        return {knob.name: knob.default for knob in self.knobs}

    def validate(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Full, checked configuration (see :func:`validate`)."""
        return validate(self.knobs, config, self.family, self.rules)

    @property
    def size(self) -> int:
        """Number of valid configurations."""
        names = [knob.name for knob in self.knobs]
        return sum(self.is_valid(dict(zip(names, values)))
                   for values in itertools.product(*(knob.values for knob in self.knobs)))

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly random valid configuration."""
        while True:
            config = {knob.name: knob.values[int(rng.integers(len(knob.values)))] for knob in self.knobs}
            if self.is_valid(config):
                return config

    def neighbour(self, config: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A valid ``config`` with one knob moved to another value (an adjacent one when
        ordered); a random configuration when no such move was found."""
        for _ in range(20):
            moved = self._move_one_knob(config, rng)
            if self.is_valid(moved):
                return moved
        return self.sample(rng)

    def moves(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every valid configuration that differs from ``config`` in one knob: its neighbourhood."""
        return [moved for knob in self.knobs for moved in self._knob_moves(config, knob)]

    def variations(self, config: Mapping[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
        """One valid configuration per knob, that knob moved from its value in ``config`` to a
        random other one, in random order: where search starts before it knows anything, since
        they show what each knob alone does."""
        varied = []
        for knob in self.knobs:
            moves = self._knob_moves(config, knob)
            if moves:
                varied.append(moves[int(rng.integers(len(moves)))])
        return [varied[i] for i in rng.permutation(len(varied))]

    def _knob_moves(self, config: Mapping[str, Any], knob: Knob) -> list[dict[str, Any]]:
        moved = ({**config, knob.name: value} for value in knob.values if value != config[knob.name])
        return [candidate for candidate in moved if self.is_valid(candidate)]

    def _move_one_knob(self, config: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        movable = [knob for knob in self.knobs if len(knob.values) > 1]
        knob = movable[int(rng.integers(len(movable)))]
        index = knob.values.index(config[knob.name])
        ordered = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in knob.values)
        if ordered:
            candidates = [i for i in (index - 1, index + 1) if 0 <= i < len(knob.values)]
        else:
            candidates = [i for i in range(len(knob.values)) if i != index]
        index = candidates[int(rng.integers(len(candidates)))]
        return {**config, knob.name: knob.values[index]}

    def encode(self, config: Mapping[str, Any]) -> list[float]:
        """Numbers for a cost model: the position of each knob's value in its domain, in [0, 1]."""
        return [knob.values.index(config[knob.name]) / max(len(knob.values) - 1, 1) for knob in self.knobs]

    @staticmethod
    def key(config: Mapping[str, Any]) -> str:
        """Canonical text of a configuration, to recognise it again."""
        return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class AlgorithmSpace:
    """The tuner's candidates for one spec: an algorithm and that algorithm's knobs.

    A candidate is ``{"algorithm": name, **knobs}``; the algorithm is one more knob, and each
    algorithm has its own knob space (and version). ``spaces`` holds every algorithm of the
    target family in a fixed order, so that encodings of all ops of a family line up (one
    cost model learns from all of them); ``algorithms`` are those searched for this spec,
    the default first.
    """

    spaces: tuple[tuple[str, SearchSpace], ...]
    algorithms: tuple[str, ...]

    def __post_init__(self) -> None:
        known = [name for name, _ in self.spaces]
        unknown = [name for name in self.algorithms if name not in known]
        if unknown or not self.algorithms:
            raise ValueError(f"algorithms {list(self.algorithms)} must be a non-empty subset of {known}")

    @property
    def signature(self) -> str:
        """The knob spaces (names and versions) of the family's algorithms: what the encoding depends on."""
        return "-".join(f"{space.family}{space.version}" for _, space in self.spaces)

    def space_of(self, algorithm: str) -> SearchSpace:
        """The knob space of one algorithm."""
        if algorithm not in self.algorithms:
            raise ValueError(f"algorithm {algorithm!r} is not searched here; searched: {list(self.algorithms)}")
        return dict(self.spaces)[algorithm]

    def version_of(self, algorithm: str) -> int:
        """The version of one algorithm's knob space (records carry it)."""
        return self.space_of(algorithm).version

    @staticmethod
    def split(candidate: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(algorithm, knobs)`` of a candidate."""
        knobs = dict(candidate)
        return knobs.pop("algorithm"), knobs

    def join(self, algorithm: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """The candidate of an algorithm and its knob values (defaults filled in)."""
        return {"algorithm": algorithm, **self.space_of(algorithm).validate(knobs)}

    def default(self) -> dict[str, Any]:
        """The default algorithm with its default knobs."""
        return self.join(self.algorithms[0], {})

    def validate(self, candidate: Mapping[str, Any]) -> dict[str, Any]:
        """Full, checked candidate."""
        return self.join(*self.split(candidate))

    def is_valid(self, candidate: Mapping[str, Any]) -> bool:
        """Whether a full candidate names a searched algorithm and satisfies its knob rules."""
        algorithm, knobs = self.split(candidate)
        return algorithm in self.algorithms and self.space_of(algorithm).is_valid(knobs)

    @property
    def size(self) -> int:
        """Number of candidates."""
        return sum(self.space_of(name).size for name in self.algorithms)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random algorithm, then a uniformly random configuration of it."""
        algorithm = self.algorithms[int(rng.integers(len(self.algorithms)))]
        return {"algorithm": algorithm, **self.space_of(algorithm).sample(rng)}

    def neighbour(self, candidate: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Another algorithm (random knobs) as often as any one knob moves, else one knob moved."""
        algorithm, knobs = self.split(candidate)
        space = self.space_of(algorithm)
        if len(self.algorithms) > 1 and rng.random() < 1 / (1 + len(space.knobs)):
            others = [name for name in self.algorithms if name != algorithm]
            other = others[int(rng.integers(len(others)))]
            return {"algorithm": other, **self.space_of(other).sample(rng)}
        return {"algorithm": algorithm, **space.neighbour(knobs, rng)}

    def moves(self, candidate: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The candidate's algorithm with one of its knobs moved (see :meth:`SearchSpace.moves`)."""
        algorithm, knobs = self.split(candidate)
        return [{"algorithm": algorithm, **moved} for moved in self.space_of(algorithm).moves(knobs)]

    def variations(self, candidate: Mapping[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
        """The candidate's algorithm with each of its knobs moved alone (see :meth:`SearchSpace.variations`)."""
        algorithm, knobs = self.split(candidate)
        return [{"algorithm": algorithm, **varied} for varied in self.space_of(algorithm).variations(knobs, rng)]

    def encode(self, candidate: Mapping[str, Any]) -> list[float]:
        """One-hot algorithm, then every algorithm's knob encoding (-1 where not that algorithm)."""
        algorithm, knobs = self.split(candidate)
        encoded = [float(name == algorithm) for name, _ in self.spaces]
        for name, space in self.spaces:
            encoded += space.encode(knobs) if name == algorithm else [-1.0] * len(space.knobs)
        return encoded

    @staticmethod
    def key(candidate: Mapping[str, Any]) -> str:
        """Canonical text of a candidate, to recognise it again."""
        return SearchSpace.key(candidate)


Space = Union[SearchSpace, AlgorithmSpace]
"""What the search strategies walk: one knob space, or algorithms with their knob spaces."""
