"""The ``in_place`` knob, shared by the CPU and CUDA schedules of the CG algorithm.

With it, the product is lowered with one stage per output block that writes straight into
its columns of ``out`` (see :func:`tpc.lower.paths.lower_plans`); a path output that sums over
no channel is then a plain expression, inlined into its block.
"""

from __future__ import annotations

from typing import Any, Mapping

from tpc.lower import Lowered, PathStages
from tpc.schedule.space import Knob

IN_PLACE = Knob("in_place", (False, True), False,
                "compute each output block straight into its columns of the output, or assemble the output "
                "from per-path buffers")
"""Off in the knob; the product spaces (CPU and CUDA) turn it on by default: it won on every CG
preset tuned (the shipped records of znver1, znver4 and sm_90) and made the default 1.01 to 1.39x
faster on all twelve CG presets on znver3, while it slowed the x1 and x2 gradients, whose space
keeps it off (docs/measurements.md, 2026-12-07). An op with many paths into one output block
keeps it off too, as inlining them takes TVM minutes (:data:`tpc.schedule.MAX_IN_PLACE_PATHS`)."""


def inlined_paths(lowered: Lowered, config: Mapping[str, Any]) -> list[PathStages]:
    """The paths whose output goes into its block; raises if ``lowered`` was not lowered with
    ``in_place`` as ``config`` says (:func:`tpc.schedule.lowering_options`)."""
    if bool(lowered.blocks) != config["in_place"]:
        raise ValueError(f"in_place is {config['in_place']} but the product was lowered "
                         f"{'with' if lowered.blocks else 'without'} output blocks in place")
    return [path for path in lowered.paths if lowered.blocks and not path.sums_channels]
