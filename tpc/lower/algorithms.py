"""Which algorithms compute a spec's function, and lowering by algorithm name.

The Clebsch-Gordan algorithm computes every spec and every gradient. The grid and 2D
Fourier algorithms multiply signals on the sphere, so they are offered only for Gaunt
products (see :mod:`tpc.lower.gaunt_form`); asking for them on another spec is an error that
says why.
"""

from __future__ import annotations

from typing import Any

from tpc.lower.cg import Lowered, lower_cg
from tpc.lower.convolution import lower_convolution
from tpc.lower.fourier import lower_fourier
from tpc.lower.gaunt_form import gaunt_form_problem, require_gaunt_form
from tpc.lower.gradients import lower_gradient
from tpc.lower.grid import lower_grid
from tpc.ops import TensorProduct, check_fusion, check_wrt

ALGORITHMS = ("cg", "fourier", "grid")
_LOWERINGS = {"cg": lower_cg, "fourier": lower_fourier, "grid": lower_grid}
GRID_FROM_DEGREE = 4
"""Gaunt products whose largest degree is at least this default to the grid algorithm: on
x86 its default schedule overtakes Clebsch-Gordan's there (``benchmarks/bench_gaunt.py``,
batch 10000, one channel: 1.8 against 2.7 ms at degree 4, 1.0 against 0.7 ms at degree 3)."""


def algorithms_for(tp: TensorProduct, wrt: str | None = None, fusion: str | None = None) -> tuple[str, ...]:
    """The algorithms that compute exactly ``tp``'s function, "cg" first; for its gradient with
    respect to ``wrt`` (``None``: the product itself) or fused with its neighbours (``fusion``),
    Clebsch-Gordan only."""
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"algorithms_for takes a TensorProduct, got {type(tp).__name__}")
    if wrt is not None:
        check_wrt(tp, wrt)
        return ("cg",)
    if fusion is not None:
        check_fusion(fusion)
        return ("cg",)
    return ALGORITHMS if gaunt_form_problem(tp) is None else ("cg",)


def default_algorithm(tp: TensorProduct, wrt: str | None = None, fusion: str | None = None) -> str:
    """The algorithm used without a tuned schedule: the grid for Gaunt products of degree >=
    :data:`GRID_FROM_DEGREE`, Clebsch-Gordan otherwise (and for every gradient and fused kernel)."""
    if "grid" not in algorithms_for(tp, wrt, fusion):
        return "cg"
    degree = max(ir.l for _, ir in tp.irreps_in1 + tp.irreps_in2 + tp.irreps_out)
    return "grid" if degree >= GRID_FROM_DEGREE else "cg"


def check_algorithm(tp: TensorProduct, algorithm: str, wrt: str | None = None, fusion: str | None = None) -> None:
    """Raise ValueError if ``algorithm`` is unknown or would not compute ``tp``'s function (or
    its gradient with respect to ``wrt``, or the fused kernel ``fusion``)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; available: {list(ALGORITHMS)}")
    if wrt is not None and algorithm != "cg":
        raise ValueError(f"gradients are computed with the 'cg' algorithm only, not {algorithm!r}")
    if fusion is not None and algorithm != "cg":
        raise ValueError(f"fused kernels are computed with the 'cg' algorithm only, not {algorithm!r}")
    if algorithm != "cg":
        require_gaunt_form(tp, algorithm)


def lower(tp: TensorProduct, algorithm: str = "cg", dtype: str = "float32", batch: int | None = None,
          wrt: str | None = None, fusion: str | None = None, **options: Any) -> Lowered:
    """Lower ``tp`` (or its gradient with respect to ``wrt``, or ``tp`` fused with its neighbours
    as ``fusion`` says, whose sizes are always symbolic) with ``algorithm``; ``options`` are
    that algorithm's lowering options."""
    check_algorithm(tp, algorithm, wrt, fusion)
    if fusion is not None:
        return lower_convolution(tp, fusion, dtype, **options)
    if wrt is not None:
        return lower_gradient(tp, wrt, dtype, batch=batch, **options)
    return _LOWERINGS[algorithm](tp, dtype, batch=batch, **options)
