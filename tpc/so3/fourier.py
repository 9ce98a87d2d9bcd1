"""Change of basis between real spherical harmonics and the 2D Fourier basis on the torus.

With the sphere parametrized by the polar angle theta (from e3nn's y axis) and the azimuth
phi, every harmonic of degree <= L is a 2D trigonometric polynomial
``Y_lm(theta, phi) = sum_{|u|,|v| <= L} T[lm, u, v] exp(i (u theta + v phi))``.
A product of functions is then a 2D convolution of their coefficients, and projecting back
onto harmonics is an exact integral. This is the Gaunt tensor product route of
Luo et al. (2024), "Enabling efficient equivariant operations in the Fourier basis via Gaunt
tensor products".
"""

from __future__ import annotations

from math import pi

import numpy as np

from tpc.so3._cache import cached_table
from tpc.so3.gaunt import degree_of
from tpc.so3.spherical_harmonics import _integral_harmonics


def torus_points(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """e3nn coordinates (x, y, z) of the angles: y = cos(theta) is the polar axis."""
    return np.stack(
        np.broadcast_arrays(np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)), axis=-1
    )


@cached_table("sh_to_fourier", on_disk=lambda lmax: lmax >= 12)
def sh_to_fourier(lmax: int) -> np.ndarray:
    """T[lm, u + lmax, v + lmax]: 2D Fourier coefficients of every harmonic of degree <= lmax.

    Exact: the harmonics are sampled on a (2 lmax + 1)^2 torus grid, which resolves every
    frequency they contain, and transformed with an FFT.
    """
    n = 2 * lmax + 1
    angles = 2 * pi * np.arange(n) / n
    theta, phi = np.meshgrid(angles, angles, indexing="ij")
    xyz = torus_points(theta, phi)
    samples = _integral_harmonics(lmax, xyz[..., 2], xyz[..., 0], xyz[..., 1])
    coefficients = np.fft.fftshift(np.fft.fft2(samples), axes=(-2, -1)) / (n * n)
    coefficients[np.abs(coefficients) < 1e-14] = 0.0
    return coefficients


def _sin_weighted_integral(k: np.ndarray) -> np.ndarray:
    """Integral over [0, pi] of exp(i k theta) sin(theta), for integer k."""
    k = np.asarray(k)
    out = np.zeros(k.shape, dtype=np.complex128)
    even = k % 2 == 0
    out[even] = -2.0 / (k[even].astype(np.float64) ** 2 - 1.0)
    out[k == 1] = 0.5j * pi
    out[k == -1] = -0.5j * pi
    return out


@cached_table("fourier_to_sh", on_disk=lambda lmax, degree: lmax + degree >= 24)
def fourier_to_sh(lmax: int, degree: int) -> np.ndarray:
    """M[lm, u + degree, v + degree] so that ``c_lm = sum_uv M[lm, u, v] G[u, v]`` for
    ``g = sum_uv G[u, v] exp(i (u theta + v phi))``, with ``c_lm`` the integral of g Y_lm over
    the sphere. Exact for any trigonometric polynomial of degree <= ``degree``.
    """
    harmonics = sh_to_fourier(lmax)  # [lm, u', v']
    u = np.arange(-degree, degree + 1)
    u_prime = np.arange(-lmax, lmax + 1)
    theta_integrals = _sin_weighted_integral(u[:, None] + u_prime[None, :])  # [u, u']
    out = np.zeros(((lmax + 1) ** 2, 2 * degree + 1, 2 * degree + 1), dtype=np.complex128)
    # The phi integral keeps v' = -v only, and contributes 2 pi.
    for v in range(-min(lmax, degree), min(lmax, degree) + 1):
        out[:, :, v + degree] = 2 * pi * harmonics[:, :, lmax - v] @ theta_integrals.T
    return out


def gaunt_product_fourier(x1: np.ndarray, x2: np.ndarray, lmax_out: int) -> np.ndarray:
    """Gaunt product through the 2D Fourier basis: to Fourier, 2D convolution, back to harmonics.

    Same arguments and result as :func:`tpc.so3.gaunt.gaunt_product`.
    """
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    lmax1, lmax2 = degree_of(x1.shape[-1]), degree_of(x2.shape[-1])
    f1 = np.tensordot(x1, sh_to_fourier(lmax1), axes=(-1, 0))
    f2 = np.tensordot(x2, sh_to_fourier(lmax2), axes=(-1, 0))
    degree = lmax1 + lmax2
    size = (2 * degree + 1, 2 * degree + 1)
    product = np.fft.ifft2(np.fft.fft2(f1, s=size) * np.fft.fft2(f2, s=size))
    out = np.tensordot(product, fourier_to_sh(lmax_out, degree), axes=([-2, -1], [1, 2]))
    return out.real
