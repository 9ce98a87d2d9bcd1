"""Clebsch-Gordan lowering: a TensorProduct spec as TVM tensor expressions, path by path
(the stages are those of :func:`tpc.lower.paths.lower_plans`).

The batch dimension is a symbolic variable: one kernel serves every batch size.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import te

from tpc.lower.lowered import Inputs, Lowered
from tpc.lower.paths import check_lowering_arguments, forward_plans, lower_plans
from tpc.ops import Product, TensorProduct


def lower_cg(tp: TensorProduct, dtype: str = "float32", batch: int | None = None,
             coupling: str = "direct", in_place: bool = False) -> Lowered:
    """Lower ``tp`` with the Clebsch-Gordan algorithm for ``dtype`` (float32 or float64).

    ``coupling`` "x2_first" contracts x2 with the coupling coefficients first, once per
    sample and x2 channel, where the result is reused across x1 channels (modes uvw, uvu,
    uvv): ``z[u, v, k] = sum_i x1[u, i] a[v, i, k]`` with ``a[v, i, k] = sum_j C[i, j, k] x2[v, j]``.
    ``in_place`` writes each output block straight into ``out`` (see :func:`tpc.lower.paths.lower_plans`).
    The batch is symbolic unless ``batch`` fixes it (tools that need static shapes).
    """
    check_lowering_arguments(dtype, coupling)
    batch = te.var("batch") if batch is None else batch
    inputs = Inputs.of(tp, dtype, batch)
    lowered = lower_plans(forward_plans(tp, inputs), inputs, inputs.params(), tp.irreps_out, batch, coupling,
                          in_place=in_place)
    return replace(lowered, op=Product(tp))
