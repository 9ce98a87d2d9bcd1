"""Spherical-grid lowering of a Gaunt product: to grid values, pointwise product, quadrature.

Each input signal is evaluated on a product grid (Gauss-Legendre in the colatitude beta,
uniform in the azimuth alpha), the two are multiplied point by point, and the product is
integrated against the output harmonics. The grid is exact for polynomials of degree
``lmax1 + lmax2 + lmax_out`` (see :mod:`tpc.so3.grid`), so this is the spec's function, not an
approximation. Real harmonics separate, ``Y_lm(beta, alpha) = P_lm(beta) A_m(alpha)`` with
``A_m`` = cos(m alpha), 1 or sin(|m| alpha), so each change of basis is two small matrix
products instead of one dense one.

Stages, per sample and channel c (names are the module constants); m axes run over m + lmax:

* ``pack1``, ``pack2`` — the inputs as ``[b, c, degree, m]`` (see :mod:`tpc.lower._signal`).
* ``colatitude1``, ``colatitude2`` — ``[b, c, m, beta] = sum_l P_lm(beta) x[c, l, m]``.
* ``grid1``, ``grid2`` — ``[b, c, beta, alpha] = sum_m A_m(alpha) colatitude[c, m, beta]``.
* ``azimuthal`` — ``[b, c, beta, m] = sum_alpha grid1 * grid2 * A_m(alpha)``: the pointwise
  product and the azimuthal half of the quadrature.
* ``sh`` — ``[b, c, degree, m] = sum_beta w(beta) P_lm(beta) azimuthal[c, beta, m]`` for the
  output degrees.
* ``out`` — the flat output, block by block.

The last axis of each stage is the one a schedule vectorizes. The azimuth count can be padded
(a larger grid is still exact: ``alpha_lanes``) and the m axes of ``azimuthal`` and ``sh``
zero-padded (``m_lanes``) so that those loops are whole vectors.

Tables (PrimFunc parameters after ``out``, in this order), laid out so the vectorized axis is
contiguous: ``legendre1`` ``[degree, m + lmax1, beta]`` (input 1's degrees), ``legendre2``
(likewise), ``azimuth`` ``[m + lmax, alpha]`` (lmax the largest of the three degrees),
``azimuth_out`` ``[alpha, m + lmax_out]``, ``quadrature`` ``[degree, beta, m + lmax_out]``
(output degrees, quadrature weights folded in); the output m axes zero-padded.
"""

from __future__ import annotations

from math import pi

import numpy as np
from tvm import te

from tpc.dtypes import check_dtype
from tpc.lower._signal import SignalLayout, assemble, pack, signal_layout, vector_padded
from tpc.lower.lowered import Lowered
from tpc.lower.tir_edits import element_aligned
from tpc.ops import Product, TensorProduct
from tpc.so3 import S2Grid, s2_grid, sh_to_grid
from tpc.so3.fourier import torus_points
from tpc.so3.spherical_harmonics import _integral_harmonics

ALGORITHM = "grid"
PACK1, PACK2 = "pack1", "pack2"
COLATITUDE1, COLATITUDE2 = "colatitude1", "colatitude2"
GRID1, GRID2 = "grid1", "grid2"
AZIMUTHAL = "azimuthal"
SH = "sh"
OUT = "out"
TABLES = ("legendre1", "legendre2", "azimuth", "azimuth_out", "quadrature")
# Vector widths the azimuth count is padded for in the resolutions offered (1: the smallest
# exact grid). The azimuth is the innermost axis of the grid stages.
ALPHA_LANES = (1, 8, 16)


def grid_degree(tp: TensorProduct) -> int:
    """Polynomial degree the grid must integrate exactly: lmax1 + lmax2 + lmax_out."""
    layout = signal_layout(tp, ALGORITHM)
    return layout.lmax1 + layout.lmax2 + layout.lmax_out


def grid_resolution(tp: TensorProduct, alpha_lanes: int = 1) -> tuple[int, int]:
    """The smallest exact (res_beta, res_alpha) for ``tp``, res_alpha padded for vectors of
    ``alpha_lanes`` lanes (see :func:`tpc.lower._signal.vector_padded`)."""
    smallest = s2_grid(grid_degree(tp))
    return smallest.res_beta, vector_padded(smallest.res_alpha, alpha_lanes)


def grid_resolutions(tp: TensorProduct) -> list[tuple[int, int]]:
    """Exact (res_beta, res_alpha) choices worth offering: the smallest first, then res_alpha
    padded for 8 and 16 lanes (whole vectors in the azimuth loops); no repeats."""
    out: list[tuple[int, int]] = []
    for lanes in ALPHA_LANES:
        resolution = grid_resolution(tp, lanes)
        if resolution not in out:
            out.append(resolution)
    return out


def lower_grid(tp: TensorProduct, dtype: str = "float32", batch: int | None = None,
               resolution: tuple[int, int] | None = None, alpha_lanes: int = 1, m_lanes: int = 1) -> Lowered:
    """Lower the Gaunt product ``tp`` through a spherical grid of ``resolution`` (res_beta,
    res_alpha), by default the smallest exact one with res_alpha padded for ``alpha_lanes``.
    The m axes of the output stages are padded with zeros for ``m_lanes``. ValueError if
    ``tp`` is not a Gaunt product or the grid is not exact for it."""
    check_dtype(dtype)
    layout = signal_layout(tp, ALGORITHM)
    degree = layout.lmax1 + layout.lmax2 + layout.lmax_out
    if resolution is None:
        resolution = grid_resolution(tp, alpha_lanes)
    elif alpha_lanes != 1:
        raise ValueError("give either resolution or alpha_lanes, not both")
    grid = s2_grid(degree, *resolution)
    width_out = vector_padded(2 * layout.lmax_out + 1, m_lanes)
    tables = grid_tables(layout, grid, width_out)
    batch = te.var("batch") if batch is None else batch
    x1 = te.placeholder((batch, tp.irreps_in1.dim), dtype, name="x1")
    x2 = te.placeholder((batch, tp.irreps_in2.dim), dtype, name="x2")
    legendre1, legendre2, azimuth, azimuth_out, quadrature = (
        te.placeholder(table.shape, dtype, name=name) for name, table in zip(TABLES, tables))
    channels, lmax_all = layout.channels, max(layout.lmax1, layout.lmax2, layout.lmax_out)

    def to_grid(x, irreps, degrees, legendre, names):
        lmax = degrees[-1]
        packed = pack(x, irreps, degrees, channels, batch, names[0])
        k = te.reduce_axis((0, len(degrees)), "k")
        colatitude = te.compute(
            (batch, channels, 2 * lmax + 1, grid.res_beta),
            lambda b, c, t, i: te.sum(legendre[k, t, i] * packed[b, c, k, t], axis=k), name=names[1])
        t = te.reduce_axis((0, 2 * lmax + 1), "t")
        return te.compute(
            (batch, channels, grid.res_beta, grid.res_alpha),
            lambda b, c, i, j: te.sum(azimuth[t + lmax_all - lmax, j] * colatitude[b, c, t, i], axis=t),
            name=names[2])

    values1 = to_grid(x1, tp.irreps_in1, layout.degrees1, legendre1, (PACK1, COLATITUDE1, GRID1))
    values2 = to_grid(x2, tp.irreps_in2, layout.degrees2, legendre2, (PACK2, COLATITUDE2, GRID2))
    j = te.reduce_axis((0, grid.res_alpha), "j")
    azimuthal = te.compute(
        (batch, channels, grid.res_beta, width_out),
        lambda b, c, i, t: te.sum(values1[b, c, i, j] * values2[b, c, i, j] * azimuth_out[j, t], axis=j),
        name=AZIMUTHAL)
    i = te.reduce_axis((0, grid.res_beta), "i")
    sh = te.compute(
        (batch, channels, len(layout.degrees_out), width_out),
        lambda b, c, k, t: te.sum(quadrature[k, i, t] * azimuthal[b, c, i, t], axis=i), name=SH)
    lmax_out = layout.lmax_out
    out = assemble(lambda b, c, k, m: sh[b, c, k, m + lmax_out], dtype, tp.irreps_out, layout.degrees_out, batch,
                   OUT, padding=lambda b: sh[b, 0, 0, width_out - 1])
    params = [x1, x2, out, legendre1, legendre2, azimuth, azimuth_out, quadrature]
    func = element_aligned(te.create_prim_func(params), dtype)
    return Lowered(func, (), OUT, algorithm=ALGORITHM, tables=tuple(table.astype(dtype) for table in tables),
                   op=Product(tp))


def grid_tables(layout: SignalLayout, grid: S2Grid, width_out: int | None = None) -> tuple[np.ndarray, ...]:
    """The float64 tables of :data:`TABLES` for ``layout`` on ``grid``, the output m axes
    zero-padded to ``width_out`` (default 2 lmax_out + 1).

    Checked against :func:`tpc.so3.sh_to_grid`: the separated form reproduces the harmonics
    at every grid point.
    """
    lmax_all = max(layout.lmax1, layout.lmax2, layout.lmax_out)
    legendre_all = _colatitude_factors(lmax_all, grid.betas)
    azimuth = _azimuth_factors(lmax_all, grid.alphas)
    separated = np.einsum("lmi,mj->ijlm", legendre_all, azimuth).reshape(grid.size, -1)
    harmonics = sh_to_grid(lmax_all, grid)
    rows = [l * (2 * lmax_all + 1) + m + lmax_all for l in range(lmax_all + 1) for m in range(-l, l + 1)]
    error = np.abs(separated[:, rows] - harmonics).max()
    if error > 1e-10:
        raise RuntimeError(f"the separated harmonics differ from sh_to_grid by {error:.3g}")
    lmax_out = layout.lmax_out
    width_out = 2 * lmax_out + 1 if width_out is None else width_out

    def legendre(degrees: tuple[int, ...]) -> np.ndarray:
        lmax = degrees[-1]
        return legendre_all[list(degrees)][:, lmax_all - lmax: lmax_all + lmax + 1]

    def pad_m(table: np.ndarray) -> np.ndarray:
        return np.pad(table, [(0, 0)] * (table.ndim - 1) + [(0, width_out - table.shape[-1])])

    azimuth_out = pad_m(azimuth[lmax_all - lmax_out: lmax_all + lmax_out + 1].T)
    quadrature = pad_m((legendre(layout.degrees_out) * grid.weights[None, None, :, 0]).transpose(0, 2, 1))
    return tuple(np.ascontiguousarray(table) for table in (
        legendre(layout.degrees1), legendre(layout.degrees2), azimuth, azimuth_out, quadrature))


def _azimuth_factors(lmax: int, alphas: np.ndarray) -> np.ndarray:
    """A_m(alpha) for m = -lmax..lmax: sin(|m| alpha) for m < 0, 1, cos(m alpha) for m > 0."""
    m = np.arange(-lmax, lmax + 1)[:, None]
    return np.where(m < 0, np.sin(-m * alphas[None, :]), np.cos(m * alphas[None, :]))


def _colatitude_factors(lmax: int, betas: np.ndarray) -> np.ndarray:
    """P_lm(beta) with Y_lm = P_lm(beta) A_m(alpha), shape (lmax + 1, 2 lmax + 1, len(betas));
    zero where |m| > l. Read off the harmonics where A_m is 1: alpha = 0, or pi / (2|m|) for m < 0."""
    out = np.zeros((lmax + 1, 2 * lmax + 1, len(betas)))
    for m in range(-lmax, lmax + 1):
        alpha = pi / (2 * -m) if m < 0 else 0.0
        xyz = torus_points(betas, np.full_like(betas, alpha))
        values = _integral_harmonics(lmax, xyz[:, 2], xyz[:, 0], xyz[:, 1])
        for l in range(abs(m), lmax + 1):
            out[l, m + lmax] = values[l * l + l + m]
    return out
