"""Rotations and the matrices by which O(3) acts on irreps (for equivariance checks)."""

from __future__ import annotations

import numpy as np

from tpc.irreps import Irreps, IrrepsLike
from tpc.so3.wigner import wigner_D


def _axis_rotation(angle: np.ndarray, plane: tuple[int, int]) -> np.ndarray:
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.zeros(angle.shape + (3, 3))
    fixed = 3 - sum(plane)
    matrix[..., fixed, fixed] = 1.0
    a, b = plane
    matrix[..., a, a], matrix[..., a, b] = c, -s
    matrix[..., b, a], matrix[..., b, b] = s, c
    return matrix


def angles_to_matrix(alpha, beta, gamma) -> np.ndarray:
    """Rotation matrix ``R_y(alpha) @ R_x(beta) @ R_y(gamma)`` (e3nn's Euler convention)."""
    return _axis_rotation(alpha, (2, 0)) @ _axis_rotation(beta, (1, 2)) @ _axis_rotation(gamma, (2, 0))


def matrix_to_angles(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`angles_to_matrix` for proper rotations (det = +1)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.allclose(np.linalg.det(matrix), 1.0, atol=1e-6):
        raise ValueError("matrix_to_angles needs proper rotations (determinant +1)")
    y_image = matrix[..., :, 1]
    alpha = np.arctan2(y_image[..., 0], y_image[..., 2])
    beta = np.arccos(np.clip(y_image[..., 1], -1.0, 1.0))
    rest = np.swapaxes(angles_to_matrix(alpha, beta, np.zeros_like(alpha)), -1, -2) @ matrix
    gamma = np.arctan2(rest[..., 0, 2], rest[..., 0, 0])
    return alpha, beta, gamma


def random_rotation(rng: np.random.Generator, size: tuple[int, ...] = ()) -> np.ndarray:
    """Uniformly distributed proper rotation matrices of shape ``size + (3, 3)``."""
    q, r = np.linalg.qr(rng.standard_normal(size + (3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    flip = np.linalg.det(q) < 0
    q[flip] = -q[flip]
    return q


def wigner_D_from_matrix(l: int, matrix: np.ndarray) -> np.ndarray:
    """Wigner D matrix of degree l for a proper rotation matrix."""
    return wigner_D(l, *matrix_to_angles(matrix))


def irreps_D(irreps: IrrepsLike, matrix: np.ndarray) -> np.ndarray:
    """Block-diagonal matrix by which the orthogonal ``matrix`` acts on the flat layout of irreps.

    An improper matrix (determinant -1) is split into inversion times a rotation; the
    inversion multiplies each irrep by its parity.
    """
    irreps = Irreps(irreps)
    matrix = np.asarray(matrix, dtype=np.float64)
    det = np.linalg.det(matrix)
    if not np.isclose(abs(det), 1.0, atol=1e-6):
        raise ValueError(f"expected an orthogonal matrix, got determinant {det}")
    improper = det < 0
    rotation = -matrix if improper else matrix
    out = np.zeros((irreps.dim, irreps.dim))
    for (mul, ir), block in zip(irreps, irreps.slices()):
        d = wigner_D_from_matrix(ir.l, rotation) * (ir.p if improper else 1)
        out[block, block] = np.kron(np.eye(mul), d)
    return out
