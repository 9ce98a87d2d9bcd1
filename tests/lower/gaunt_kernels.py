"""Compile and run Gaunt kernels (grid and 2D Fourier) against the float64 reference."""

from __future__ import annotations

from functools import cache

import numpy as np
import tvm

import tpc
from tpc.build import compile_tir
from tpc.verify import random_inputs, relative_error, tolerance


def signal(degree: int, channels: int) -> str:
    """``Cx0e + Cx1o + ... + Cx(degree)``."""
    return "+".join(f"{channels}x{l}{'eo'[l % 2]}" for l in range(degree + 1))


@cache
def gaunt(degree: int, channels: int) -> tpc.TensorProduct:
    """The Gaunt product of two degree-``degree`` signals, output degree <= ``degree``."""
    return tpc.GauntTensorProduct(signal(degree, channels), signal(degree, channels), degree)


def compile_schedule(sch):
    """The host executable of a scheduled module, built as tpc builds kernels."""
    return compile_tir(sch.mod, tpc.resolve_target("host"))


@cache
def _case(tp: tpc.TensorProduct, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x1, x2, _ = random_inputs(tp, batch, np.random.default_rng(seed))
    return x1, x2, tp.reference(x1, x2)


def run(executable, lowered, tp: tpc.TensorProduct, x1: np.ndarray, x2: np.ndarray, dtype: str) -> np.ndarray:
    """``executable.mod["main"](x1, x2, out, *tables)`` on host tensors; the output as numpy."""
    device = tvm.cpu()
    out = tvm.runtime.tensor(np.full((x1.shape[0], tp.irreps_out.dim), np.nan, dtype), device)
    args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype), device) for x in (x1, x2)]
    tables = [tvm.runtime.tensor(table, device) for table in lowered.tables]
    executable.mod["main"](*args, out, *tables)
    return out.numpy()


def errors(executable, lowered, tp: tpc.TensorProduct, dtype: str, batches=(1, 7), seed: int = 0) -> dict[int, float]:
    """Relative error against ``tp.reference`` for each batch size."""
    out = {}
    for batch in batches:
        x1, x2, expected = _case(tp, batch, seed)
        out[batch] = relative_error(run(executable, lowered, tp, x1, x2, dtype), expected)
    return out


def assert_exact(executable, lowered, tp: tpc.TensorProduct, dtype: str, batches=(1, 7), seed: int = 0) -> None:
    """The kernel equals the reference within :func:`tpc.verify.tolerance` for every batch size."""
    found = errors(executable, lowered, tp, dtype, batches, seed)
    assert all(error < tolerance(dtype) for error in found.values()), f"relative errors {found} ({dtype})"
