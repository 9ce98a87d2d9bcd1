"""CUDA schedules: batch and channels bound to thread blocks and threads.

Each path stage is its own kernel: (sample, channel) pairs are fused and spread over
``threads_per_block`` threads per block, each thread computing all output components of its
pair; the final assembly maps (sample, output element) to threads the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

from tvm import s_tir

from tpc.lower import Lowered
from tpc.schedule.space import Knob, SearchSpace, validate

KNOBS = (
    Knob("threads_per_block", (32, 64, 128, 256, 512), 128, "threads per thread block"),
    Knob("materialize", ("reused", "all"), "reused",
         "keep the coupling stage z in global memory only where it is reused, or always"),
    Knob("unroll_components", (True, False), True, "unroll the loop over output components k"),
)

SPACE = SearchSpace("cuda", KNOBS, version=1)


def default_config() -> dict[str, Any]:
    """The default CUDA knob values."""
    return validate(KNOBS, None, "cuda")


def _bind_spatial(sch: s_tir.Schedule, block, spatial: int, threads: int, unroll_last: bool) -> None:
    loops = sch.get_loops(block)
    fused = sch.fuse(*loops[:spatial])
    block_x, thread_x = sch.split(fused, [None, threads])
    sch.bind(block_x, "blockIdx.x")
    sch.bind(thread_x, "threadIdx.x")
    if unroll_last:
        sch.unroll(sch.get_loops(block)[2])


def apply(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a lowered product for a CUDA GPU with the given knob values."""
    config = validate(KNOBS, config, "cuda")
    threads = config["threads_per_block"]
    sch = s_tir.Schedule(lowered.func)
    for path in lowered.paths:
        materialized = path.reuses_z or config["materialize"] == "all"
        if not materialized:
            sch.compute_inline(sch.get_sblock(path.z))
            continue
        z = sch.get_sblock(path.z)
        spatial = len(sch.get_loops(z)) - 1
        _bind_spatial(sch, z, spatial, threads, config["unroll_components"] and path.components > 1)
    for path in lowered.paths:
        y = sch.get_sblock(path.y)
        _bind_spatial(sch, y, 2, threads, config["unroll_components"] and path.components > 1)
    _bind_spatial(sch, sch.get_sblock(lowered.out), 2, threads, False)
    return sch
