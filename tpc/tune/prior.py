"""What earlier tunings of other ops say about each one-knob move, before an op's own
measurements say anything.

Knob effects carry over between ops more often than not, so the search's first design, which
moves one knob of the default at a time, moves the knobs that other ops gained most from
first. The evidence is the tuning records of the user cache and the shipped schedules:
within one group of records (an op at a batch, dtype and target), every pair of measured
configurations one knob apart gives that move's log speed-up.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tpc.records import Record
from tpc.schedule.space import AlgorithmSpace, Space

Move = tuple[Any, str, Any, Any]
"""A one-knob move: (algorithm, knob, value before, value after); the algorithm is None in a
search over one knob space."""

MIN_GROUPS = 3
"""A move counts only where at least this many groups measured it; its gain is their median,
since one group's pair of measurements may be a fast or slow minute of the machine as much as
a property of the move."""


def one_knob_move(base: Mapping[str, Any], moved: Mapping[str, Any]) -> Move:
    """The move that turns ``base`` into ``moved``, which differ in exactly one knob."""
    (name,) = [name for name in moved if moved[name] != base[name]]
    return base.get("algorithm"), name, base[name], moved[name]


def kindred(target: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether two TVM target dictionaries are of one kind and CPU architecture (x86 with x86,
    any CUDA GPU with another): where knob effects can be expected to carry over."""
    def arch(options: Mapping[str, Any]) -> tuple[Any, str]:
        return options.get("kind"), str(options.get("mtriple", "")).split("-")[0]
    return arch(target) == arch(other)


def move_gains(records: Iterable[Record], space: AlgorithmSpace, target: Mapping[str, Any],
               op: str) -> dict[Move, float]:
    """Median log speed-up (positive: faster) of each one-knob move over other ops' record groups.

    A group is an op at a batch, dtype and target; its gain for a move is the mean over its
    pairs of measured configurations one knob apart (see :func:`pair_gains`).

    Args:
        records: tuning records, e.g. those of :func:`tpc.cache.cached_records`; records of
            other algorithms, knob spaces or space versions are left out.
        space: the search space whose moves are counted.
        target: the TVM target dict of the tuning; only records on a :func:`kindred` target count.
        op: the fingerprint of the op being tuned, whose own records are left out.

    Returns:
        Each move measured by at least :data:`MIN_GROUPS` groups, with the median of their gains.
    """
    groups: dict[tuple, dict[str, tuple[float, dict[str, Any]]]] = defaultdict(dict)
    for record in records:
        candidate = _candidate(record, space)
        if candidate is None or record.op == op or not kindred(target, record.target):
            continue
        group = groups[(record.op, record.batch, record.dtype, record.target_fingerprint)]
        key = space.key(candidate)
        if key not in group or record.seconds < group[key][0]:
            group[key] = (record.seconds, candidate)
    per_group: dict[Move, list[float]] = defaultdict(list)
    for measured in groups.values():
        for move, gain in pair_gains(measured, space).items():
            per_group[move].append(gain)
    return {move: float(np.median(gains)) for move, gains in per_group.items() if len(gains) >= MIN_GROUPS}


def pair_gains(measured: Mapping[str, tuple[float, dict[str, Any]]], space: Space) -> dict[Move, float]:
    """Mean log speed-up (positive: faster) of each one-knob move over the pairs of
    ``measured`` (candidates of one op, by key: seconds and candidate) one knob apart."""
    pairs: dict[Move, list[float]] = defaultdict(list)
    for seconds, candidate in measured.values():
        for moved in space.moves(candidate):
            other = measured.get(space.key(moved))
            if other is not None:
                pairs[one_knob_move(candidate, moved)].append(math.log(seconds / other[0]))
    return {move: float(np.mean(gains)) for move, gains in pairs.items()}


def _candidate(record: Record, space: AlgorithmSpace) -> dict[str, Any] | None:
    """The record's configuration as a candidate of ``space``, or None where it is not one
    (a failed measurement, another algorithm, knob space or space version)."""
    if not record.ok or record.algorithm not in space.algorithms \
            or record.space_version != space.version_of(record.algorithm):
        return None
    knobs = space.space_of(record.algorithm).knobs
    if set(record.config) != {knob.name for knob in knobs}:
        return None
    try:
        return space.validate({"algorithm": record.algorithm, **record.config})
    except ValueError:
        return None
