"""CPU schedules of a graph's nodes other than tensor products, one kernel per node.

The lowered function of a node (:mod:`tpc.graph.lower`) computes its output rows
independently, so rows are split into tiles of :data:`ROW_TILE` run in parallel and the
node's inner stages (a linear map's paths, the scatter-sum's segment sums) are computed per
row. What differs per operation is the column loop of the output: gathers and entrywise
functions read their columns contiguously (vectorized); harmonics, radial basis, linear maps
and multiplication by scalar channels pick a formula per column (unrolled, so the selection
folds to constants); a scatter-sum's column loop sits around its data-dependent segment loop
and is left alone.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import s_tir

ROW_TILE = 16
"""Rows per parallel task."""


def apply(func: tvm.tirx.PrimFunc, columns: str | None) -> s_tir.Schedule:
    """Schedule a lowered node: tiles of rows in parallel, inner stages per row.

    Args:
        func: the node's function, output last.
        columns: what to do with the column loop of a 2-D output: "vectorize", "unroll" or
            None (left alone).

    Returns:
        The schedule.
    """
    sch = s_tir.Schedule(func)
    *stages, out = sch.get_child_blocks(sch.get_sblock("root"))
    loops = sch.get_loops(out)
    tile, row = sch.split(loops[0], [None, ROW_TILE])
    sch.parallel(tile)
    for stage in reversed(stages):
        sch.compute_at(stage, row)
    if len(loops) > 1 and columns is not None:
        getattr(sch, columns)(loops[-1])
    return sch


def apply_vectorized(func: tvm.tirx.PrimFunc, operation: Any) -> s_tir.Schedule:
    """A node reading its columns contiguously (a gather): the column loop vectorized."""
    return apply(func, "vectorize")


def apply_unrolled(func: tvm.tirx.PrimFunc, operation: Any) -> s_tir.Schedule:
    """A node picking a formula per column (harmonics, radial basis, linear): the column loop unrolled."""
    return apply(func, "unroll")


def apply_segments(func: tvm.tirx.PrimFunc, operation: Any) -> s_tir.Schedule:
    """A scatter-sum: the column loop around the segment loop left alone."""
    return apply(func, None)


def apply_elementwise(func: tvm.tirx.PrimFunc, operation: Any) -> s_tir.Schedule:
    """An elementwise node: ``mul`` by scalar channels picks a channel per column (unrolled),
    the other functions are entrywise (vectorized)."""
    return apply(func, "unroll" if operation.function == "mul" else "vectorize")
