"""Lowering by op and algorithm name.

Which algorithms compute an op is the op's own knowledge (:attr:`tpc.ops.Op.algorithms`); this
module picks the lowering that builds the chosen one.
"""

from __future__ import annotations

from typing import Any

from tpc.lower.cg import lower_cg
from tpc.lower.contraction import lower_contraction
from tpc.lower.convolution import lower_convolution, lower_convolution_gradient
from tpc.lower.fourier import lower_fourier
from tpc.lower.gradients import lower_gradient
from tpc.lower.grid import lower_grid
from tpc.lower.lowered import Lowered
from tpc.ops import Contraction, ConvolutionGradient, Fused, Gradient, Op

_LOWERINGS = {"cg": lower_cg, "fourier": lower_fourier, "grid": lower_grid}


def lower(op: Op, algorithm: str = "cg", dtype: str = "float32", batch: int | None = None, **options: Any) -> Lowered:
    """Lower ``op`` with ``algorithm`` (fused ops always have symbolic sizes); ``options`` are that
    algorithm's lowering options."""
    op.check_algorithm(algorithm)
    if isinstance(op, Contraction):
        lowered = lower_contraction(op, dtype, **options)
    elif isinstance(op, Fused):
        lowered = lower_convolution(op.tp, op.fusion, dtype, **options)
    elif isinstance(op, ConvolutionGradient):
        lowered = lower_convolution_gradient(op.tp, dtype, **options)
    elif isinstance(op, Gradient):
        lowered = lower_gradient(op.tp, op.wrt, dtype, batch=batch, **options)
    else:
        lowered = _LOWERINGS[algorithm](op.tp, dtype, batch=batch, **options)
    return lowered
