"""Spherical quadrature grids and the matrices between harmonics and grid values.

Gauss-Legendre nodes in cos(beta) and uniform nodes in alpha, with beta measured from e3nn's
y axis. A grid with ``res_beta >= degree // 2 + 1`` and ``res_alpha >= degree + 1``
integrates every polynomial of degree <= ``degree`` on the sphere exactly, so the product of
harmonics of degrees l1, l2, l3 is integrated exactly when ``l1 + l2 + l3 <= degree``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import pi

import numpy as np

from tpc.so3._cache import cached_table
from tpc.so3.fourier import torus_points
from tpc.so3.gaunt import degree_of
from tpc.so3.spherical_harmonics import _integral_harmonics


@dataclass(frozen=True)
class S2Grid:
    """A product grid on the sphere, exact for polynomials of degree <= ``degree``."""

    degree: int
    res_beta: int
    res_alpha: int

    @property
    def betas(self) -> np.ndarray:
        """Polar angles (from the y axis), shape (res_beta,)."""
        return np.arccos(np.polynomial.legendre.leggauss(self.res_beta)[0])[::-1]

    @property
    def alphas(self) -> np.ndarray:
        """Azimuths, shape (res_alpha,)."""
        return 2 * pi * np.arange(self.res_alpha) / self.res_alpha

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weight of each point, shape (res_beta, res_alpha); they sum to 4 pi."""
        beta_weights = np.polynomial.legendre.leggauss(self.res_beta)[1][::-1]
        return np.repeat(beta_weights[:, None] * (2 * pi / self.res_alpha), self.res_alpha, axis=1)

    @property
    def points(self) -> np.ndarray:
        """Unit vectors in e3nn coordinates, shape (res_beta, res_alpha, 3)."""
        return torus_points(self.betas[:, None], self.alphas[None, :])

    @property
    def size(self) -> int:
        """Number of points."""
        return self.res_beta * self.res_alpha


def s2_grid(degree: int, res_beta: int | None = None, res_alpha: int | None = None) -> S2Grid:
    """The smallest grid exact for ``degree``, or the given resolution if it is exact too."""
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    min_beta, min_alpha = degree // 2 + 1, degree + 1
    res_beta = min_beta if res_beta is None else res_beta
    res_alpha = min_alpha if res_alpha is None else res_alpha
    if res_beta < min_beta or res_alpha < min_alpha:
        raise ValueError(
            f"a {res_beta} x {res_alpha} grid is not exact for degree {degree}: "
            f"needs res_beta >= {min_beta} and res_alpha >= {min_alpha}"
        )
    return S2Grid(degree, res_beta, res_alpha)


@cached_table("sh_to_grid")
def _sh_to_grid(lmax: int, res_beta: int, res_alpha: int) -> np.ndarray:
    xyz = S2Grid(0, res_beta, res_alpha).points.reshape(-1, 3)
    return _integral_harmonics(lmax, xyz[:, 2], xyz[:, 0], xyz[:, 1]).T


def sh_to_grid(lmax: int, grid: S2Grid) -> np.ndarray:
    """Values of the orthonormal harmonics of degree <= lmax at the grid points: (points, (lmax+1)**2)."""
    return _sh_to_grid(lmax, grid.res_beta, grid.res_alpha)


@cached_table("grid_to_sh")
def _grid_to_sh(lmax: int, res_beta: int, res_alpha: int) -> np.ndarray:
    weights = S2Grid(0, res_beta, res_alpha).weights.reshape(-1)
    return (_sh_to_grid(lmax, res_beta, res_alpha) * weights[:, None]).T


def grid_to_sh(lmax: int, grid: S2Grid) -> np.ndarray:
    """Quadrature ((lmax+1)**2, points): grid values of f -> integrals of f Y_lm, exact when
    f is a polynomial of degree <= ``grid.degree - lmax``."""
    return _grid_to_sh(lmax, grid.res_beta, grid.res_alpha)


def gaunt_product_grid(x1: np.ndarray, x2: np.ndarray, lmax_out: int, grid: S2Grid | None = None) -> np.ndarray:
    """Gaunt product through a spherical grid: to grid values, pointwise product, quadrature.

    Same arguments and result as :func:`tpc.so3.gaunt.gaunt_product`; ``grid`` defaults to the
    smallest exact one and must be exact for degree lmax1 + lmax2 + lmax_out.
    """
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    lmax1, lmax2 = degree_of(x1.shape[-1]), degree_of(x2.shape[-1])
    needed = lmax1 + lmax2 + lmax_out
    grid = s2_grid(needed) if grid is None else grid
    if grid.degree < needed:
        raise ValueError(f"grid is exact up to degree {grid.degree}, the product needs {needed}")
    values = (x1 @ sh_to_grid(lmax1, grid).T) * (x2 @ sh_to_grid(lmax2, grid).T)
    return values @ grid_to_sh(lmax_out, grid).T
