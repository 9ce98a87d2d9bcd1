"""MACE's reduced product basis: cuequivariance's symmetric tensor-product basis in e3nn's conventions.

With cuequivariance installed and ``use_reduced_cg`` set (the default of mace-torch's models),
mace builds its product basis as ``cuequivariance.reduced_symmetric_tensor_product_basis`` of
O3 irreps whose coupling coefficients are e3nn's Wigner 3j times the square root of the
output's dimension, ordered by ``(l, p)``. The basis is linearly independent (fewer paths than
the Wigner route of :mod:`tpc.so3.coupling`) and is fixed by cuequivariance's own
orthogonalization, so it is taken from cuequivariance: a trained model's weights only keep their
meaning in exactly that basis.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from tpc.irreps import Irrep, Irreps
from tpc.so3.wigner import wigner_3j


@functools.lru_cache(maxsize=None)
def _cuequivariance() -> tuple[Any, type]:
    """cuequivariance and its O3 group with e3nn's real basis and coupling coefficients."""
    try:
        import cuequivariance as cue
    except ImportError:
        raise ImportError("the reduced product basis (mace's use_reduced_cg) is cuequivariance's: "
                          "pip install cuequivariance") from None

    class E3nnO3(cue.O3):
        """O3 irreps in e3nn's conventions, as mace-torch declares them to cuequivariance."""

        def __mul__(self, other: Any) -> list:
            return [E3nnO3(l=ir.l, p=ir.p) for ir in cue.O3.__mul__(self, other)]

        def __lt__(self, other: Any) -> bool:
            other = self._from(other)
            return (self.l, self.p) < (other.l, other.p)

        @classmethod
        def clebsch_gordan(cls, rep1: Any, rep2: Any, rep3: Any) -> np.ndarray:
            rep1, rep2, rep3 = (cls._from(rep) for rep in (rep1, rep2, rep3))
            if rep1.p * rep2.p != rep3.p:
                return np.zeros((0, rep1.dim, rep2.dim, rep3.dim))
            return (wigner_3j(rep1.l, rep2.l, rep3.l) * np.sqrt(rep3.dim))[None]

        @classmethod
        def iterator(cls):
            for l in itertools.count(0):
                yield cls(l=l, p=(-1) ** l)
                yield cls(l=l, p=-((-1) ** l))

    return cue, E3nnO3


def reduced_coupling_basis(irreps: Irreps, ir_out: Irrep, correlation: int) -> np.ndarray:
    """The reduced coupling tensors of ``correlation`` copies of ``irreps`` to ``ir_out``, in the
    layout of :func:`tpc.so3.coupling.coupling_basis`; with no path, zeros of one path.

    Args:
        irreps: the irreps of one channel of the input (multiplicity 1 each in MACE).
        ir_out: the output irrep.
        correlation: how many copies of the input are coupled.

    Returns:
        The tensor mace's ``SymmetricContraction(..., use_reduced_cg=True)`` keeps as
        ``U_matrix_{correlation}`` when cuequivariance is installed.

    Raises:
        ImportError: cuequivariance is not installed.

    >>> reduced_coupling_basis(Irreps("0e+1o"), Irrep("0e"), 2).shape
    (4, 4, 2)
    """
    irreps, ir_out = Irreps(irreps), Irrep(ir_out)
    if correlation < 1:
        raise ValueError(f"correlation must be at least 1, got {correlation}")
    cue, group = _cuequivariance()
    try:
        basis = cue.reduced_symmetric_tensor_product_basis(
            cue.Irreps(group, str(irreps)), correlation, keep_ir=group(l=ir_out.l, p=ir_out.p),
            layout=cue.ir_mul).array
    except ValueError:
        basis = np.zeros((irreps.dim,) * correlation + (0,))
    if basis.shape[-1] == 0:
        return np.zeros(([ir_out.dim] if ir_out.dim != 1 else []) + [irreps.dim] * correlation + [1])
    tensor = np.moveaxis(np.asarray(basis, dtype=np.float64).reshape(*[irreps.dim] * correlation, ir_out.dim, -1),
                         -2, 0)
    return tensor[0] if ir_out.dim == 1 else tensor
