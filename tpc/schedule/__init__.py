"""Schedules: knob spaces and their application, per target family and algorithm."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from tvm import s_tir

from tpc.lower import Lowered
from tpc.ops import CONTRACTION_KEYS, FUSIONS, JOINT_GRADIENTS
from tpc.schedule import contraction, convolution, cpu, cuda, gaunt, graph
from tpc.schedule.space import AlgorithmSpace, SearchSpace, with_defaults

FAMILIES = ("cpu", "cuda")
# Knob space and schedule of each (family, algorithm, key), the key an op's schedule_key: None
# for the product, else the argument of a gradient or the fusion of a fused kernel; a family's
# algorithms in a fixed order. The x1 and x2 gradients are products with transposed couplings
# and take the product's schedule; the weight gradient has per-sample stages of its own. A
# product fused with its gather only is a product over the edges; with its scatter-sum it has a
# schedule of its own. A gradient with respect to several arguments has one of its own too.
# Gradients and fused kernels are scheduled for CPUs only so far.
_SCHEDULES = {
    ("cpu", "cg", None): (cpu.SPACE, cpu.apply),
    ("cpu", "fourier", None): (gaunt.FOURIER_SPACE, gaunt.apply_fourier),
    ("cpu", "grid", None): (gaunt.GRID_SPACE, gaunt.apply_grid),
    ("cuda", "cg", None): (cuda.SPACE, cuda.apply),
    ("cuda", "fourier", None): (cuda.FOURIER_SPACE, cuda.apply_stagewise),
    ("cuda", "grid", None): (cuda.GRID_SPACE, cuda.apply_stagewise),
    ("cpu", "cg", "x1"): (cpu.GRADIENT_SPACE, cpu.apply),
    ("cpu", "cg", "x2"): (cpu.GRADIENT_SPACE, cpu.apply),
    ("cpu", "cg", "weight"): (cpu.WEIGHT_GRADIENT_SPACE, cpu.apply_per_sample),
    **{("cpu", "cg", wrt): (cpu.JOINT_GRADIENT_SPACE, cpu.apply_joint) for wrt in JOINT_GRADIENTS},
    ("cpu", "cg", "convolution-gradient"): (cpu.JOINT_GRADIENT_SPACE, convolution.apply_gradient),
    **{("cpu", "cg", key): (contraction.SPACE, contraction.apply)
       for key in CONTRACTION_KEYS},
    ("cpu", "cg", "gather"): (cpu.SPACE, convolution.apply_gather),
    ("cpu", "cg", "scatter"): (convolution.SCATTER_SPACE, convolution.apply_scatter),
    ("cpu", "cg", "gather+scatter"): (convolution.GATHER_SCATTER_SPACE, convolution.apply_scatter),
}
# The schedule of each (family, "graph", operation kind) of a graph node other than a tensor
# product, lowered by tpc.graph.lower into a kernel of its own; no knobs. CPUs only so far.
_GRAPH_SCHEDULES = {
    ("cpu", "graph", "gather"): graph.apply_vectorized,
    ("cpu", "graph", "spherical_harmonics"): graph.apply_unrolled,
    ("cpu", "graph", "radial_basis"): graph.apply_unrolled,
    ("cpu", "graph", "linear"): graph.apply_unrolled,
    ("cpu", "graph", "scatter_sum"): graph.apply_segments,
    ("cpu", "graph", "elementwise"): graph.apply_elementwise,
}


MAX_IN_PLACE_PATHS = 4
"""In place, each path that sums no channel is inlined into its output block's stage, and TVM's
inlining slows steeply with the paths a block already holds: a Gaunt product of degree 4 (up to
10 paths into one output block) took 54 s to schedule in place against 2 s assembled, degree 3
(7 paths) 1.8 s against 1.0 s. The default of an op with more paths into one output irrep than
this keeps ``in_place`` off (:func:`search_space` with the op)."""


def crowded_outputs(op: Any) -> bool:
    """Whether some output irrep of ``op``'s spec receives more than :data:`MAX_IN_PLACE_PATHS` paths."""
    tp = getattr(op, "tp", None)
    if tp is None:
        return False
    counts = Counter(instruction.i_out for instruction in tp.instructions)
    return max(counts.values(), default=0) > MAX_IN_PLACE_PATHS


@functools.lru_cache(maxsize=None)
def _assembled_by_default(space: SearchSpace) -> SearchSpace:
    """``space`` with ``in_place`` off by default: the same knobs, rules and version."""
    return replace(space, knobs=with_defaults(space.knobs, in_place=False))


def scheduled_algorithms(family: str, key: str | None = None) -> tuple[str, ...]:
    """The algorithms a target family has schedules for, for ``key``: None for the product, else
    a gradient's argument or a fusion (see :data:`tpc.ops.FUSIONS`)."""
    _check_family(family)
    return tuple(algorithm for fam, algorithm, entry_key in _SCHEDULES if fam == family and entry_key == key)


def search_space(family: str, algorithm: str = "cg", key: str | None = None, op: Any = None) -> SearchSpace:
    """The knob space of an algorithm on a target family, for ``key`` (see :func:`scheduled_algorithms`).

    With ``op``, its defaults are that op's: ``in_place`` off where :func:`crowded_outputs` (the
    same knobs and version, so records fit either way)."""
    space = _entry(family, algorithm, key)[0]
    if op is not None and space.default().get("in_place") and crowded_outputs(op):
        return _assembled_by_default(space)
    return space


def tuning_space(family: str, algorithms: Sequence[str], key: str | None = None, op: Any = None) -> AlgorithmSpace:
    """The tuner's space over ``algorithms`` (those without a schedule here left out), the first as
    default; with ``op``, each algorithm's defaults are that op's (see :func:`search_space`)."""
    available = scheduled_algorithms(family, key)
    searched = tuple(name for name in algorithms if name in available)
    if algorithms and not searched:
        raise ValueError(_no_schedule(family, algorithms[0], key))
    return AlgorithmSpace(tuple((name, search_space(family, name, key, op)) for name in available), searched)


def default_config(family: str, algorithm: str = "cg", key: str | None = None, op: Any = None) -> dict[str, Any]:
    """Default knob values of an algorithm on a target family (for ``op``: see :func:`search_space`)."""
    return search_space(family, algorithm, key, op).default()


def validate_config(family: str, config: Mapping[str, Any] | None, algorithm: str = "cg",
                    key: str | None = None, op: Any = None) -> dict[str, Any]:
    """Full, checked knob values (unknown knobs or values raise ValueError); knobs left out take
    the defaults (``op``'s, see :func:`search_space`)."""
    return search_space(family, algorithm, key, op).validate(config)


def lowering_options(family: str, algorithm: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs of a configuration that choose how the algorithm is lowered, as keyword arguments."""
    if algorithm in ("grid", "fourier"):
        return gaunt.lowering_options(config) if family == "cpu" else \
            {name: config[name] for name in gaunt.LOWERING_KNOBS if name in config}
    return {name: config[name] for name in ("coupling", "x1_layout", "in_place") if name in config}


def apply_schedule(lowered: Lowered, family: str, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule ``lowered`` (a product, a gradient or a fused kernel) for a target family with the given knob values."""
    return _entry(family, lowered.algorithm, lowered.schedule_key)[1](lowered, config)


def apply_graph_schedule(func: Any, family: str, operation: Any) -> s_tir.Schedule:
    """Schedule the lowered function of a graph node other than a tensor product.

    Args:
        func: the node's PrimFunc (see :func:`tpc.graph.lower.lower_node`).
        family: the target family.
        operation: the node's :class:`tpc.graph.Operation`.

    Returns:
        The schedule; a family without one for the operation's kind raises ValueError.
    """
    _check_family(family)
    key = (family, "graph", operation.kind)
    if key not in _GRAPH_SCHEDULES:
        raise ValueError(f"no {family} schedule for {operation.kind} graph nodes; "
                         f"graph nodes are scheduled for {sorted({fam for fam, _, _ in _GRAPH_SCHEDULES})} only")
    return _GRAPH_SCHEDULES[key](func, operation)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown target family {family!r}; known: {sorted(FAMILIES)}")


def _entry(family: str, algorithm: str, key: str | None = None):
    _check_family(family)
    if (family, algorithm, key) not in _SCHEDULES:
        raise ValueError(_no_schedule(family, algorithm, key))
    return _SCHEDULES[(family, algorithm, key)]


def _no_schedule(family: str, algorithm: str, key: str | None) -> str:
    """Why there is no schedule for an algorithm (of a product, a gradient or a fused kernel) on a family."""
    if key is not None:
        families = sorted({fam.upper() for fam, _, entry_key in _SCHEDULES if entry_key == key})
        what = f"fused kernels ({key})" if key in FUSIONS else f"gradients with respect to {key!r}"
        return (f"{what} are scheduled for {', '.join(families) or 'no'} targets only "
                f"so far, with the 'cg' algorithm; not for the {family!r} family with {algorithm!r}")
    return (f"no {family} schedule for the {algorithm!r} algorithm; "
            f"{family} has schedules for {list(scheduled_algorithms(family))}")
