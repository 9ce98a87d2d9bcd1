"""CPU schedules of the Gaunt algorithms (grid and 2D Fourier): parallel batch tiles, every
stage per sample, the innermost output axis of each stage vectorized.

Each stage of :mod:`tpc.lower.grid` and :mod:`tpc.lower.fourier` is a small dense matrix
product per sample and channel. The output's batch loop is split into tiles that run in
parallel; every other stage is computed per sample inside the tile (TVM 0.27's lowering fails
on the ragged last tile of a symbolic batch when stages are computed per tile, and kernels
with a serial batch loop crashed). A stage's sum runs outside its innermost output axis,
which is vectorized: the tables are laid out so that axis is contiguous.

Some knobs are lowering options, not loop transformations (:data:`LOWERING_KNOBS`, handed to
the lowering by :func:`lowering_options`): the grid resolution (``alpha_lanes``), the padding
of m or frequency axes to whole vectors (``m_lanes``, ``lanes``; LLVM builds vectors of odd
length lane by lane), and the Fourier ``convolution`` (see docs/measurements.md for what each won).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tvm import s_tir, tirx
from tvm.tirx.analysis import undefined_vars

from tpc.lower import Lowered, fourier, grid
from tpc.schedule.space import Knob, SearchSpace, validate

_COMMON = (
    Knob("batch_tile", (1, 2, 4, 8, 16, 32, 64), 8, "samples per parallel task"),
    Knob("vectorize", (True, False), True,
         "run each stage's sum outside its innermost output axis and vectorize that axis"),
    Knob("unroll_sum", (1, 2, 4, 8), 1, "unroll this many iterations of each stage's sum"),
)
GRID_KNOBS = _COMMON + (
    Knob("alpha_lanes", grid.ALPHA_LANES, 16,
         "grid resolution: the smallest exact one, its azimuth count padded for vectors of this many lanes"),
    Knob("m_lanes", (1, 8, 16), 16, "pad the output m axes with zeros for vectors of this many lanes"),
)
FOURIER_KNOBS = _COMMON + (
    Knob("convolution", fourier.CONVOLUTIONS, "dft", "2D convolution as a direct sum or through a torus grid"),
    Knob("lanes", (1, 8, 16), 16, "pad the azimuthal frequency axes and the torus azimuths for this many lanes"),
)
GRID_SPACE = SearchSpace("cpu-grid", GRID_KNOBS, version=1)
FOURIER_SPACE = SearchSpace("cpu-fourier", FOURIER_KNOBS, version=1)
LOWERING_KNOBS = ("alpha_lanes", "m_lanes", "convolution", "lanes")

# Stages in consumer-first order: each is computed per sample after everything that reads it.
GRID_STAGES = (grid.SH, grid.AZIMUTHAL, grid.GRID1, grid.GRID2, grid.COLATITUDE1, grid.COLATITUDE2,
               grid.PACK1, grid.PACK2)
FOURIER_STAGES = (fourier.SH, *fourier.CONV, *fourier.PADDED, *fourier.DFT, fourier.VALUES1, fourier.VALUES2,
                  *fourier.TORUS1, *fourier.TORUS2, *fourier.FOURIER1, *fourier.FOURIER2,
                  fourier.PACK1, fourier.PACK2)


def lowering_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The lowering keyword arguments of a full grid or Fourier configuration:
    ``lower_grid(tp, dtype, **options)`` or ``lower_fourier(tp, dtype, **options)``."""
    options = {name: config[name] for name in LOWERING_KNOBS if name in config}
    if not options:
        raise ValueError(f"not a grid or Fourier configuration (no knob of {LOWERING_KNOBS}): {dict(config)}")
    return options


def apply_grid(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a grid-lowered Gaunt product for a CPU."""
    if lowered.algorithm != grid.ALGORITHM:
        raise ValueError(f"apply_grid schedules the grid algorithm, got {lowered.algorithm!r}")
    return _apply(lowered, validate(GRID_KNOBS, config, "cpu-grid"), GRID_STAGES)


def apply_fourier(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a Fourier-lowered Gaunt product for a CPU."""
    if lowered.algorithm != fourier.ALGORITHM:
        raise ValueError(f"apply_fourier schedules the fourier algorithm, got {lowered.algorithm!r}")
    return _apply(lowered, validate(FOURIER_KNOBS, config, "cpu-fourier"), FOURIER_STAGES)


def _apply(lowered: Lowered, config: dict[str, Any], stages: tuple[str, ...]) -> s_tir.Schedule:
    sch = s_tir.Schedule(lowered.func)
    batch_loop, _ = sch.get_loops(sch.get_sblock(lowered.out))
    tile_loop, sample_loop = sch.split(batch_loop, [None, config["batch_tile"]])
    sch.parallel(tile_loop)
    for name in stages:
        block = _find_block(sch, name)
        if block is None:
            continue
        sch.compute_at(block, sample_loop)
        if name in (grid.PACK1, grid.PACK2):
            _unroll_degrees(sch, block, depth=2)
            continue
        _loop_nest(sch, block, depth=2, vectorize=config["vectorize"], unroll=config["unroll_sum"])
    return sch


def _find_block(sch: s_tir.Schedule, name: str):
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - TVM raises its own error kinds for a missing block
        return None


def _loop_nest(sch: s_tir.Schedule, block, depth: int, vectorize: bool, unroll: int) -> None:
    """Order a stage's loops below the first ``depth``: output axes, then the sum, then the
    innermost output axis (vectorized); ``unroll`` iterations of the innermost sum loop unrolled.
    Stages without a sum (copies with conditions) stay scalar."""
    axes = _loop_axes(sch, block, depth)
    spatial = [loop for _, kind, loop in axes if kind == "s"]
    reduction = [loop for _, kind, loop in axes if kind == "r"]
    if vectorize and spatial and reduction:
        sch.reorder(*spatial[:-1], *reduction, spatial[-1])
        sch.vectorize(spatial[-1])
    if unroll > 1 and reduction:
        extent = int(sch.get(reduction[-1]).extent)
        if extent <= unroll:
            sch.unroll(reduction[-1])
        elif extent % unroll == 0:
            sch.unroll(sch.split(reduction[-1], [None, unroll])[1])


def _unroll_degrees(sch: s_tir.Schedule, block, depth: int) -> None:
    """Unroll the degree loop of a pack stage (axes b, c, k, t), so its choice of input block folds away."""
    for axis, _, loop in _loop_axes(sch, block, depth):
        if axis == 2:
            sch.unroll(loop)


def _loop_axes(sch: s_tir.Schedule, block, depth: int) -> list[tuple[int, str, Any]]:
    """(axis index, "s" or "r", loop) for each loop of a block below the first ``depth``.

    compute_at makes one loop per block axis whose region is wider than one element and binds
    that axis to the loop variable (plus the region's start); the others are bound to constants.
    """
    loops = sch.get_loops(block)[depth:]
    if not loops:
        return []
    bindings = sch.get(loops[-1]).body.iter_values
    kinds = ["r" if var.iter_type == tirx.IterVar.CommReduce else "s" for var in sch.get(block).iter_vars]
    out = []
    for loop in loops:
        variable = sch.get(loop).loop_var
        axes = [axis for axis, value in enumerate(bindings)
                if any(used.same_as(variable) for used in undefined_vars(value))]
        if len(axes) != 1:
            raise RuntimeError(f"loop {variable} does not bind exactly one axis of its block: {list(bindings)}")
        out.append((axes[0], kinds[axes[0]], loop))
    return out
