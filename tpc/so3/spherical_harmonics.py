"""Real spherical harmonics in e3nn's basis, for any degree.

e3nn's harmonic (l, m) at (x, y, z) is the textbook real harmonic (no Condon-Shortley phase,
m = -l..l, cos for m > 0 and sin for m < 0) evaluated at (x', y', z') = (z, x, y): e3nn's y
axis is the polar axis. They are computed as homogeneous polynomials, so unnormalized input
gives ``|r|**l * Y(r / |r|)`` exactly as e3nn's ``normalize=False``.
"""

from __future__ import annotations

from math import factorial, pi, sqrt
from typing import Iterable, Union

import numpy as np

from tpc.irreps import Irreps

NORMALIZATIONS = ("integral", "component", "norm")


def _degree_list(ls: Union[int, Iterable[int], Irreps, str]) -> list[int]:
    if isinstance(ls, (int, np.integer)) and not isinstance(ls, bool):
        degrees = [int(ls)]
    elif isinstance(ls, (str, Irreps)):
        irreps = Irreps(ls)
        for mul, ir in irreps:
            if mul != 1 or ir.p != (-1) ** ir.l:
                raise ValueError(f"spherical harmonics have irreps 1x0e+1x1o+1x2e..., got {irreps}")
        degrees = [ir.l for _, ir in irreps]
    else:
        degrees = [int(l) for l in ls]
    if not degrees or any(l < 0 for l in degrees):
        raise ValueError(f"spherical harmonic degrees must be integers >= 0, got {ls!r}")
    return degrees


def degree_scale(l: int, normalization: str) -> float:
    """Factor turning an integral-normalized harmonic of degree l into ``normalization``."""
    if normalization == "integral":
        return 1.0
    if normalization == "component":
        return sqrt(4 * pi)
    if normalization == "norm":
        return sqrt(4 * pi / (2 * l + 1))
    raise ValueError(f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}")


def spherical_harmonics(
    ls: Union[int, Iterable[int], Irreps, str],
    vectors: np.ndarray,
    normalize: bool = True,
    normalization: str = "integral",
) -> np.ndarray:
    """Harmonics of the degrees ``ls`` at ``vectors`` (..., 3), concatenated on the last axis.

    Same arguments and result as ``e3nn.o3.spherical_harmonics``.

    Args:
        ls: a degree, degrees, or irreps whose degrees are taken in order.
        vectors: points, shape (..., 3), in e3nn's (x, y, z) with y the polar axis.
        normalize: scale the vectors to unit length first; otherwise degree l carries
            ``|r|**l``.
        normalization: "integral" (orthonormal on the sphere), "component" (each degree has
            squared norm 2l+1 on the unit sphere) or "norm" (squared norm 1).

    Returns:
        Shape (..., sum of 2l+1), the degrees one after the other.

    >>> spherical_harmonics([0, 1], np.array([0.0, 1.0, 0.0]), normalization="component")
    array([1.        , 0.        , 1.73205081, 0.        ])
    """
    degrees = _degree_list(ls)
    scales = [degree_scale(l, normalization) for l in degrees]
    vectors = np.asarray(vectors)
    if not np.issubdtype(vectors.dtype, np.floating):
        raise TypeError(f"vectors must be a floating-point array, got dtype {vectors.dtype}")
    if vectors.ndim == 0 or vectors.shape[-1] != 3:
        raise ValueError(f"vectors must have shape (..., 3), got {vectors.shape}")
    xyz = vectors.astype(np.float64)
    if normalize:
        norm = np.linalg.norm(xyz, axis=-1, keepdims=True)
        xyz = np.divide(xyz, norm, out=np.zeros_like(xyz), where=norm > 0)
    table = _integral_harmonics(max(degrees), xyz[..., 2], xyz[..., 0], xyz[..., 1])
    blocks = [table[l * l : (l + 1) * (l + 1)] * scale for l, scale in zip(degrees, scales)]
    return np.moveaxis(np.concatenate(blocks, axis=0), 0, -1).astype(vectors.dtype, copy=False)


def _integral_harmonics(lmax: int, xp: np.ndarray, yp: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """Orthonormal real harmonics up to lmax in textbook axes, shape ((lmax+1)**2, ...)."""
    r2 = xp * xp + yp * yp + zp * zp
    out = np.empty(((lmax + 1) ** 2,) + np.shape(xp))
    cos_part, sin_part = np.ones_like(xp), np.zeros_like(xp)  # Re and Im of (x' + i y')**m
    diagonal = 1.0  # (2m - 1)!!
    for m in range(lmax + 1):
        if m > 0:
            cos_part, sin_part = cos_part * xp - sin_part * yp, cos_part * yp + sin_part * xp
            diagonal *= 2 * m - 1
        previous, current = np.zeros_like(xp), np.full_like(xp, diagonal)
        for l in range(m, lmax + 1):
            if l > m:
                previous, current = current, ((2 * l - 1) * zp * current - (l + m - 1) * r2 * previous) / (l - m)
            norm = sqrt((2 * l + 1) / (4 * pi) * factorial(l - m) / factorial(l + m))
            if m == 0:
                out[l * l + l] = norm * current
            else:
                out[l * l + l + m] = sqrt(2) * norm * current * cos_part
                out[l * l + l - m] = sqrt(2) * norm * current * sin_part
    return out
