"""Generalized Clebsch-Gordan tensors: the coupling of ``nu`` copies of one set of irreps to an
output irrep, each basis element a path of successive Wigner 3j couplings, in MACE's order.

MACE's product basis (mace-torch's ``mace.tools.cg.U_matrix_real`` with its Wigner 3j route, the
one it takes without cuequivariance) couples the inputs left to right: the first input's
irreps, each coupled with every irrep of the next input into every allowed ``ir_out``, and so
on. The basis elements of one output irrep are the paths that end in it, sorted stably by
the irrep each path ends in. :func:`coupling_basis` reproduces those tensors exactly, so
weights trained against mace's buffers keep their meaning.
"""

from __future__ import annotations

import numpy as np

from tpc.irreps import Irrep, Irreps
from tpc.so3.wigner import wigner_3j


def _coupled_paths(irreps: Irreps, count: int) -> list[tuple[Irrep, np.ndarray]]:
    """Every path coupling ``count`` copies of ``irreps`` left to right, as (the irrep it ends
    in, its tensor of shape ``(ir.dim, irreps.dim, ..., irreps.dim)``), sorted stably by irrep;
    component normalization (each coupling scaled by the square root of its output's dimension)."""
    if count == 1:
        identity = np.eye(irreps.dim)
        paths = []
        for (mul, ir), block in zip(irreps, irreps.slices()):
            for u in range(mul):
                rows = slice(block.start + u * ir.dim, block.start + (u + 1) * ir.dim)
                paths.append((ir, identity[rows]))
        return paths
    paths = []
    for ir_left, left in _coupled_paths(irreps, count - 1):
        for (mul, ir), block in zip(irreps, irreps.slices()):
            for ir_out in ir_left * ir:
                coupling = wigner_3j(ir_out.l, ir_left.l, ir.l) * np.sqrt(ir_out.dim)
                tensor = np.einsum("jk,ijl->ikl", left.reshape(ir_left.dim, -1), coupling)
                tensor = tensor.reshape(ir_out.dim, *left.shape[1:], ir.dim)
                for u in range(mul):
                    path = np.zeros((ir_out.dim, *left.shape[1:], irreps.dim))
                    path[..., block.start + u * ir.dim:block.start + (u + 1) * ir.dim] = tensor
                    paths.append((ir_out, path))
    return sorted(paths, key=lambda path: (path[0].l, path[0].p))


def coupling_basis(irreps: Irreps, ir_out: Irrep, correlation: int) -> np.ndarray:
    """The coupling tensors of ``correlation`` copies of ``irreps`` to ``ir_out``, stacked on the
    last axis: shape ``(ir_out.dim, irreps.dim, ..., irreps.dim, paths)`` with size-1 axes
    dropped (as mace squeezes them); with no path, zeros of one path.

    Args:
        irreps: the irreps of one channel of the input (multiplicity 1 each in MACE).
        ir_out: the output irrep.
        correlation: how many copies of the input are coupled (the polynomial's degree).

    Returns:
        The tensor MACE's ``SymmetricContraction`` keeps as ``U_matrix_{correlation}``.

    >>> coupling_basis(Irreps("0e+1o"), Irrep("0e"), 2).shape
    (4, 4, 2)
    """
    irreps, ir_out = Irreps(irreps), Irrep(ir_out)
    if correlation < 1:
        raise ValueError(f"correlation must be at least 1, got {correlation}")
    chosen = [np.squeeze(path)[..., None] for ir, path in _coupled_paths(irreps, correlation) if ir == ir_out]
    if not chosen:
        return np.zeros(([ir_out.dim] if ir_out.dim != 1 else []) + [irreps.dim] * correlation + [1])
    return np.concatenate(chosen, axis=-1)
