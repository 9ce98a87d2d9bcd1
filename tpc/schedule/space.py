"""Knobs: named schedule parameters with finite domains, and configurations built from them.

A configuration is a plain dict of knob values (JSON-serializable). ``validate`` fills in
defaults and rejects unknown knobs or values outside a knob's domain before anything is
built, naming the knob and its allowed values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Knob:
    """One schedule parameter: a name, its allowed values and its default."""

    name: str
    values: tuple[Any, ...]
    default: Any
    help: str


def validate(knobs: tuple[Knob, ...], config: Mapping[str, Any] | None, family: str) -> dict[str, Any]:
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

    def default(self) -> dict[str, Any]:
        """The default configuration."""
        return {knob.name: knob.default for knob in self.knobs}

    def validate(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Full, checked configuration (see :func:`validate`)."""
        return validate(self.knobs, config, self.family)

    @property
    def size(self) -> int:
        """Number of configurations."""
        total = 1
        for knob in self.knobs:
            total *= len(knob.values)
        return total

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniformly random configuration."""
        return {knob.name: knob.values[int(rng.integers(len(knob.values)))] for knob in self.knobs}

    def neighbour(self, config: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """``config`` with one knob moved to another value (an adjacent one when ordered)."""
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
