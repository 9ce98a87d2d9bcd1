"""Knobs: named schedule parameters with finite domains, and configurations built from them.

A configuration is a plain dict of knob values (JSON-serializable). ``validate`` fills in
defaults and rejects unknown knobs or values outside a knob's domain before anything is
built, naming the knob and its allowed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


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
