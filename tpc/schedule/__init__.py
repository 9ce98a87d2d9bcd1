"""Schedules: knob spaces and their application, one module per target family."""

from __future__ import annotations

from typing import Any, Mapping

from tvm import s_tir

from tpc.lower import Lowered
from tpc.schedule import cpu, cuda
from tpc.schedule.space import SearchSpace, validate

FAMILIES = {"cpu": cpu, "cuda": cuda}


def default_config(family: str) -> dict[str, Any]:
    """Default knob values of a target family."""
    return _family(family).default_config()


def validate_config(family: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Full, checked knob values of a family (unknown knobs or values raise ValueError)."""
    return validate(_family(family).KNOBS, config, family)


def apply_schedule(lowered: Lowered, family: str, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule ``lowered`` for a target family with the given knob values."""
    return _family(family).apply(lowered, config)


def search_space(family: str) -> SearchSpace:
    """The knob space of a target family."""
    return _family(family).SPACE


def _family(family: str):
    if family not in FAMILIES:
        raise ValueError(f"unknown target family {family!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[family]
