"""Clebsch-Gordan coefficients and Wigner matrices in e3nn's real basis.

The real basis of degree l is the one of e3nn: real spherical harmonics ordered m = -l..l,
obtained from the complex (Condon-Shortley) basis by :func:`change_basis_real_to_complex`,
which carries a ``(-i)**l`` factor so that all coupling coefficients are real.
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial, lcm, sqrt

import numpy as np

from tpc.so3._cache import cached_table


def _check_triangle(l1: int, l2: int, l3: int) -> None:
    for l in (l1, l2, l3):
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 0:
            raise ValueError(f"degrees must be integers >= 0, got ({l1}, {l2}, {l3})")
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        raise ValueError(f"({l1}, {l2}, {l3}) violates the triangle inequality |l1-l2| <= l3 <= l1+l2")


def su2_clebsch_gordan_coefficient(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> float:
    """<j1 m1 j2 m2 | j3 m3> (Condon-Shortley), from Racah's formula in exact integer arithmetic."""
    if m3 != m1 + m2 or not abs(j1 - j2) <= j3 <= j1 + j2:
        return 0.0
    if abs(m1) > j1 or abs(m2) > j2 or abs(m3) > j3:
        return 0.0
    f = factorial
    k_min = max(0, j2 - j3 - m1, j1 - j3 + m2)
    k_max = min(j1 + j2 - j3, j1 - m1, j2 + m2)
    denominators = [
        f(k) * f(j1 + j2 - j3 - k) * f(j1 - m1 - k) * f(j2 + m2 - k) * f(j3 - j2 + m1 + k) * f(j3 - j1 - m2 + k)
        for k in range(k_min, k_max + 1)
    ]
    common = lcm(*denominators)
    numerator = sum((-1) ** (k_min + i) * (common // d) for i, d in enumerate(denominators))
    if numerator == 0:
        return 0.0
    squared = Fraction(
        (2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3)
        * f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2) * numerator**2,
        f(j1 + j2 + j3 + 1) * common**2,
    )
    magnitude = sqrt(float(squared))
    return magnitude if numerator > 0 else -magnitude


@cached_table("su2_cg")
def su2_clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Complex-basis Clebsch-Gordan tensor C[m1, m2, m3] (indices shifted by +l), real valued."""
    _check_triangle(l1, l2, l3)
    table = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(max(-l2, -l3 - m1), min(l2, l3 - m1) + 1):
            table[l1 + m1, l2 + m2, l3 + m1 + m2] = su2_clebsch_gordan_coefficient(l1, m1, l2, m2, l3, m1 + m2)
    return table


@cached_table("real_to_complex")
def change_basis_real_to_complex(l: int) -> np.ndarray:
    """Unitary Q with ``complex_coefficients = Q @ real_coefficients`` for degree l.

    Row index is the complex m, column index the real m, both shifted by +l. The global
    ``(-i)**l`` makes the real-basis coupling coefficients real, as in e3nn.
    """
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    q[l, l] = 1.0
    for m in range(1, l + 1):
        q[l - m, l + m] = 1 / sqrt(2)
        q[l - m, l - m] = -1j / sqrt(2)
        q[l + m, l + m] = (-1) ** m / sqrt(2)
        q[l + m, l - m] = 1j * (-1) ** m / sqrt(2)
    return (-1j) ** l * q


@cached_table("wigner_3j", on_disk=lambda l1, l2, l3: l1 + l2 + l3 >= 24)
def wigner_3j(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real coupling tensor C[i, j, k] of e3nn (``e3nn.o3.wigner_3j``), Frobenius norm 1.

    Invariant: ``C[i,j,k] = C[a,b,c] D1[a,i] D2[b,j] D3[c,k]`` for every rotation.

    Args:
        l1, l2, l3: degrees satisfying the triangle rule ``|l1 - l2| <= l3 <= l1 + l2``.

    Returns:
        Shape (2 l1 + 1, 2 l2 + 1, 2 l3 + 1), float64, read-only (cached).

    >>> C = wigner_3j(1, 1, 2)
    >>> C.shape, round(float(np.linalg.norm(C)), 12)
    ((3, 3, 5), 1.0)
    """
    _check_triangle(l1, l2, l3)
    cg = su2_clebsch_gordan(l1, l2, l3)
    q1, q2, q3 = (change_basis_real_to_complex(l) for l in (l1, l2, l3))
    real = np.einsum("ij,kl,nm,ikn->jlm", q1, q2, q3.conj(), cg, optimize=True)
    if np.abs(real.imag).max() > 1e-10:
        raise ArithmeticError(f"coupling tensor ({l1}, {l2}, {l3}) is not real")
    real = real.real
    real[np.abs(real) < 1e-15] = 0.0
    return real / np.linalg.norm(real)


@cached_table("so3_generators")
def so3_generators(l: int) -> np.ndarray:
    """Real antisymmetric generators (X_x, X_y, X_z) of degree l in e3nn's basis, shape (3, d, d).

    In the l=1 basis (x, y, z), ``expm(t * X_a)`` is the rotation by t around axis a.
    """
    m = np.arange(-l, l + 1, dtype=np.float64)
    raising = np.diag(-np.sqrt(l * (l + 1) - m[:-1] * (m[:-1] + 1)), k=-1)
    lowering = np.diag(np.sqrt(l * (l + 1) - m[1:] * (m[1:] - 1)), k=1)
    complex_generators = np.stack(
        [0.5 * (raising + lowering), np.diag(1j * m), -0.5j * (raising - lowering)]
    )
    q = change_basis_real_to_complex(l)
    # The complex (x, z, -y) generators become the real generators around e3nn's x, y, z:
    # e3nn's y axis is the polar axis of its spherical harmonics.
    return np.einsum("ji,ajk,kl->ail", q.conj(), complex_generators, q).real


@cached_table("generator_eig")
def _generator_eigensystem(l: int, axis: int) -> np.ndarray:
    """Eigen-decomposition of the Hermitian ``i X_axis``, packed as [eigenvalues; vectors]."""
    values, vectors = np.linalg.eigh(1j * so3_generators(l)[axis])
    return np.concatenate([values[None, :].astype(np.complex128), vectors])


def _expm_generator(l: int, axis: int, angle: np.ndarray) -> np.ndarray:
    packed = _generator_eigensystem(l, axis)
    values, vectors = packed[0].real, packed[1:]
    phases = np.exp(-1j * np.multiply.outer(angle, values))
    return np.einsum("ij,...j,kj->...ik", vectors, phases, vectors.conj()).real


def wigner_D(l: int, alpha, beta, gamma) -> np.ndarray:
    """Wigner D matrix of degree l for Y-X-Y Euler angles, as ``e3nn.o3.wigner_D``.

    ``D(alpha, beta, gamma) = expm(alpha X_y) expm(beta X_x) expm(gamma X_y)``; angles
    broadcast, the result has shape ``(..., 2l+1, 2l+1)``.
    """
    alpha, beta, gamma = np.broadcast_arrays(
        np.asarray(alpha, float), np.asarray(beta, float), np.asarray(gamma, float)
    )
    return _expm_generator(l, 1, alpha) @ _expm_generator(l, 0, beta) @ _expm_generator(l, 1, gamma)
