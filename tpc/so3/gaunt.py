"""Gaunt coefficients: integrals of three real spherical harmonics over the sphere.

``gaunt_coefficients(l1, l2, l3)[i, j, k]`` is the integral of Y_{l1,i} Y_{l2,j} Y_{l3,k}
for e3nn's orthonormal ("integral") real harmonics. It equals
``gaunt_factor(l1, l2, l3) * wigner_3j(l1, l2, l3)``, which is zero when l1+l2+l3 is odd.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial, pi, sqrt

import numpy as np

from tpc.so3._cache import cached_table
from tpc.so3.wigner import _check_triangle, wigner_3j


def three_j_zero(l1: int, l2: int, l3: int) -> float:
    """The textbook Wigner 3j symbol (l1 l2 l3; 0 0 0), computed exactly."""
    _check_triangle(l1, l2, l3)
    total = l1 + l2 + l3
    if total % 2:
        return 0.0
    g = total // 2
    squared = Fraction(
        factorial(total - 2 * l1) * factorial(total - 2 * l2) * factorial(total - 2 * l3),
        factorial(total + 1),
    ) * Fraction(factorial(g), factorial(g - l1) * factorial(g - l2) * factorial(g - l3)) ** 2
    return (-1) ** g * sqrt(float(squared))


def gaunt_factor(l1: int, l2: int, l3: int) -> float:
    """Scalar g with ``gaunt_coefficients(l1, l2, l3) == g * wigner_3j(l1, l2, l3)``."""
    dims = (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)
    return sqrt(dims / (4 * pi)) * abs(three_j_zero(l1, l2, l3))


@cached_table("gaunt")
def gaunt_coefficients(l1: int, l2: int, l3: int) -> np.ndarray:
    """Integral of Y_{l1} Y_{l2} Y_{l3} over the sphere, shape (2l1+1, 2l2+1, 2l3+1)."""
    return gaunt_factor(l1, l2, l3) * wigner_3j(l1, l2, l3)


def degree_of(num_coefficients: int) -> int:
    """L such that a signal with all degrees 0..L has ``num_coefficients == (L+1)**2``."""
    root = int(round(sqrt(num_coefficients)))
    if num_coefficients < 1 or root * root != num_coefficients:
        raise ValueError(
            f"a signal with degrees 0..L has (L+1)**2 coefficients; {num_coefficients} is not a square"
        )
    return root - 1


@cached_table("gaunt_tensor")
def gaunt_tensor(lmax1: int, lmax2: int, lmax_out: int) -> np.ndarray:
    """All Gaunt coefficients between signals of degrees 0..lmax1, 0..lmax2 and 0..lmax_out."""
    table = np.zeros(((lmax1 + 1) ** 2, (lmax2 + 1) ** 2, (lmax_out + 1) ** 2))
    for l1 in range(lmax1 + 1):
        for l2 in range(lmax2 + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax_out) + 1):
                if (l1 + l2 + l3) % 2 == 0:
                    table[l1 * l1 : (l1 + 1) ** 2, l2 * l2 : (l2 + 1) ** 2, l3 * l3 : (l3 + 1) ** 2] = (
                        gaunt_coefficients(l1, l2, l3)
                    )
    return table


def gaunt_product(x1: np.ndarray, x2: np.ndarray, lmax_out: int) -> np.ndarray:
    """Gaunt product through Gaunt coefficients: the degree <= lmax_out part of f1 * f2.

    Args:
        x1: coefficients of f1 in the orthonormal real harmonics, shape (..., (L1+1)**2).
        x2: coefficients of f2, shape (..., (L2+1)**2); leading axes broadcast with x1's
            (channels, batch).
        lmax_out: the largest degree kept.

    Returns:
        Coefficients of the product, shape (..., (lmax_out+1)**2), float64.

    >>> one = np.zeros(4); one[0] = 2 * np.sqrt(np.pi)   # the constant function 1
    >>> f = np.array([0.0, 1.0, 2.0, 3.0])
    >>> np.allclose(gaunt_product(one, f, 1), f)
    True
    """
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    table = gaunt_tensor(degree_of(x1.shape[-1]), degree_of(x2.shape[-1]), lmax_out)
    return np.einsum("...i,...j,ijk->...k", x1, x2, table, optimize=True)
