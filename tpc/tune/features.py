"""Features of a candidate for the cost model: knob encoding plus op descriptors.

The op descriptors (degrees, channels, nonzeros, FLOPs, batch, dtype) let one model, trained
on the measurements of several ops, rank candidates of an op it has not seen (transfer).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from tpc.ops import TensorProduct
from tpc.schedule.space import SearchSpace


def op_descriptors(tp: TensorProduct, batch: int, dtype: str) -> list[float]:
    """Shape of the work, independent of the schedule."""
    muls = [mul for mul, _ in tp.irreps_out] or [0]
    ls = [ir.l for _, ir in tp.irreps_in1 + tp.irreps_in2 + tp.irreps_out] or [0]
    modes = [ins.connection_mode for ins in tp.instructions]
    return [
        math.log2(max(batch, 1)),
        math.log2(1 + len(tp.instructions)),
        math.log2(1 + tp.nnz),
        math.log2(1 + tp.flops()),
        math.log2(1 + tp.weight_numel),
        math.log2(1 + tp.irreps_out.dim),
        float(max(ls)),
        math.log2(1 + float(np.mean(muls))),
        float(tp.shared_weights),
        float(dtype == "float64"),
        sum(mode == "uvw" for mode in modes) / max(len(modes), 1),
    ]


def candidate_features(space: SearchSpace, config: Mapping[str, Any], descriptors: list[float]) -> list[float]:
    """Knob encoding followed by the op descriptors."""
    return space.encode(config) + descriptors
