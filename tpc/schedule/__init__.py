"""Schedules: knob spaces and their application, per target family and algorithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tvm import s_tir

from tpc.lower import Lowered
from tpc.schedule import cpu, cuda, gaunt
from tpc.schedule.space import AlgorithmSpace, SearchSpace

FAMILIES = ("cpu", "cuda")
# Knob space and schedule of each (family, algorithm); a family's algorithms in a fixed order.
_SCHEDULES = {
    ("cpu", "cg"): (cpu.SPACE, cpu.apply),
    ("cpu", "fourier"): (gaunt.FOURIER_SPACE, gaunt.apply_fourier),
    ("cpu", "grid"): (gaunt.GRID_SPACE, gaunt.apply_grid),
    ("cuda", "cg"): (cuda.SPACE, cuda.apply),
    ("cuda", "fourier"): (cuda.FOURIER_SPACE, cuda.apply_stagewise),
    ("cuda", "grid"): (cuda.GRID_SPACE, cuda.apply_stagewise),
}


def scheduled_algorithms(family: str) -> tuple[str, ...]:
    """The algorithms a target family has schedules for."""
    _check_family(family)
    return tuple(algorithm for fam, algorithm in _SCHEDULES if fam == family)


def search_space(family: str, algorithm: str = "cg") -> SearchSpace:
    """The knob space of an algorithm on a target family."""
    return _entry(family, algorithm)[0]


def tuning_space(family: str, algorithms: Sequence[str]) -> AlgorithmSpace:
    """The tuner's space over ``algorithms`` (those without a schedule here left out), the first as default."""
    available = scheduled_algorithms(family)
    searched = tuple(name for name in algorithms if name in available)
    return AlgorithmSpace(tuple((name, search_space(family, name)) for name in available), searched)


def default_config(family: str, algorithm: str = "cg") -> dict[str, Any]:
    """Default knob values of an algorithm on a target family."""
    return search_space(family, algorithm).default()


def validate_config(family: str, config: Mapping[str, Any] | None, algorithm: str = "cg") -> dict[str, Any]:
    """Full, checked knob values (unknown knobs or values raise ValueError)."""
    return search_space(family, algorithm).validate(config)


def lowering_options(family: str, algorithm: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs of a configuration that choose how the algorithm is lowered, as keyword arguments."""
    if algorithm in ("grid", "fourier"):
        return gaunt.lowering_options(config) if family == "cpu" else \
            {name: config[name] for name in gaunt.LOWERING_KNOBS if name in config}
    return {"coupling": config["coupling"]} if "coupling" in config else {}


def apply_schedule(lowered: Lowered, family: str, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule ``lowered`` for a target family with the given knob values."""
    return _entry(family, lowered.algorithm)[1](lowered, config)


def apply_gradient_schedule(lowered: Lowered, family: str) -> s_tir.Schedule:
    """Schedule a lowered gradient with default knobs: x1 and x2 gradients are products and
    take the Clebsch-Gordan schedule; the weight gradient (no path stages) runs per sample."""
    if family != "cpu":
        raise ValueError(f"gradient schedules exist for CPU targets only so far, not the {family!r} family")
    return apply_schedule(lowered, family) if lowered.paths else cpu.apply_per_sample(lowered)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown target family {family!r}; known: {sorted(FAMILIES)}")


def _entry(family: str, algorithm: str):
    _check_family(family)
    if (family, algorithm) not in _SCHEDULES:
        raise ValueError(f"no {family} schedule for the {algorithm!r} algorithm; "
                         f"{family} has schedules for {list(scheduled_algorithms(family))}")
    return _SCHEDULES[(family, algorithm)]
