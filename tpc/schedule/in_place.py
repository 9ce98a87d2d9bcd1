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


def inlined_paths(lowered: Lowered, config: Mapping[str, Any]) -> list[PathStages]:
    """The paths whose output goes into its block; raises if ``lowered`` was not lowered with
    ``in_place`` as ``config`` says (:func:`tpc.schedule.lowering_options`)."""
    if bool(lowered.blocks) != config["in_place"]:
        raise ValueError(f"in_place is {config['in_place']} but the product was lowered "
                         f"{'with' if lowered.blocks else 'without'} output blocks in place")
    return [path for path in lowered.paths if lowered.blocks and not path.sums_channels]
