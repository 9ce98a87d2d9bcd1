"""CUDA schedules: batch and channels bound to thread blocks and threads.

Each path stage is its own kernel: (sample, channel) pairs are fused and spread over
``threads_per_block`` threads per block, ``work_per_thread`` pairs per thread, each thread
computing all output components of its pairs; the final assembly maps (sample, output
element) to threads the same way. With ``in_place`` there is no assembly: each output block
is a kernel with a thread per (sample, column of the block), and the paths that sum over no
channel are computed in its threads. The Gaunt algorithms (grid, 2D Fourier) are scheduled
stage by stage alike: every output element of a stage is a thread, which runs the stage's sum.
"""

from __future__ import annotations

from typing import Any, Mapping

from tvm import s_tir, tirx

from tpc.lower import Lowered
from tpc.lower.fourier import CONVOLUTIONS
from tpc.schedule.in_place import IN_PLACE, inlined_paths
from tpc.schedule.space import Knob, SearchSpace, with_defaults

THREADS = Knob("threads_per_block", (32, 64, 128, 256, 512), 128, "threads per thread block")
WORK = Knob("work_per_thread", (1, 2, 4), 1, "consecutive (sample, channel) pairs per thread")
KNOBS = (
    THREADS,
    WORK,
    Knob("materialize", ("reused", "all"), "reused",
         "keep the coupling stage z in global memory only where it is reused, or always"),
    Knob("unroll_components", (True, False), True, "unroll the loop over output components k"),
    IN_PLACE,
)

SPACE = SearchSpace("cuda", with_defaults(KNOBS, in_place=True), version=2)
GRID_SPACE = SearchSpace("cuda-grid", (THREADS,), version=1)
FOURIER_SPACE = SearchSpace("cuda-fourier", (
    THREADS, Knob("convolution", CONVOLUTIONS, "dft", "2D convolution as a direct sum or through a torus grid")),
    version=1)


def default_config() -> dict[str, Any]:
    """The default CUDA knob values."""
    return SPACE.default()


def _bind_spatial(sch: s_tir.Schedule, block, spatial: int, threads: int, unroll_last: bool, work: int = 1) -> None:
    """Fuse the first ``spatial`` loops of ``block`` and spread them over thread blocks of
    ``threads`` threads, ``work`` consecutive iterations per thread; unroll the loop after them.
    (Iterations a block's threads apart would coalesce better, but TVM 0.27 rejects a thread
    loop inside a serial loop over a symbolic batch: conflicting bounds.)"""
    loops = sch.get_loops(block)
    fused = sch.fuse(*loops[:spatial])
    block_x, thread_x, _ = sch.split(fused, [None, threads, work])
    sch.bind(block_x, "blockIdx.x")
    sch.bind(thread_x, "threadIdx.x")
    if unroll_last:
        sch.unroll(sch.get_loops(block)[3])


def apply(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a lowered product for a CUDA GPU with the given knob values."""
    config = SPACE.validate(config)
    threads, work = config["threads_per_block"], config["work_per_thread"]
    inlined = inlined_paths(lowered, config)
    sch = s_tir.Schedule(lowered.func)
    for path in lowered.paths:
        materialized = path.reuses_z or config["materialize"] == "all"
        if not materialized:
            sch.compute_inline(sch.get_sblock(path.z))
            continue
        z = sch.get_sblock(path.z)
        spatial = len(sch.get_loops(z)) - 1
        _bind_spatial(sch, z, spatial, threads, config["unroll_components"] and path.components > 1, work)
    for path in lowered.paths:
        if path in inlined:
            sch.compute_inline(sch.get_sblock(path.y))
        else:
            _bind_spatial(sch, sch.get_sblock(path.y), 2, threads, config["unroll_components"] and path.components > 1,
                          work)
    for stage in [block.stage for block in lowered.blocks] or [lowered.out]:
        _bind_spatial(sch, sch.get_sblock(stage), 2, threads, False, work)
    return sch


def apply_stagewise(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a grid or Fourier product for a CUDA GPU: one kernel per stage, one thread
    per output element of the stage (its sum, if any, runs in the thread)."""
    space = {"grid": GRID_SPACE, "fourier": FOURIER_SPACE}[lowered.algorithm]
    config = space.validate(config)
    sch = s_tir.Schedule(lowered.func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        spatial = sum(var.iter_type == tirx.IterVar.DataPar for var in sch.get(block).iter_vars)
        _bind_spatial(sch, block, spatial, config["threads_per_block"], False)
    return sch
