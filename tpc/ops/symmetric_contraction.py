"""MACE's product basis as a spec: the symmetric contraction of a node's features with itself.

For node ``b``, channel ``c`` and output irrep ``ir`` (components ``m``)::

    out[b, c, m] = sum over nu = 1..correlation, over k, over i1..i_nu of
                   (sum_e y[b, e] W_nu[e, k, c]) U_nu[m, i1, ..., i_nu, k] x[b, c, i1] ... x[b, c, i_nu]

``x[b, c, :]`` holds the channel's components of every input irrep (``coupling_irreps``, e.g.
0e+1o+2e+3o: 16 numbers), ``y`` the node's element (one-hot in MACE), ``U_nu`` the coupling
tensors and ``W_nu`` one weight per element, path and channel. Channels are independent.

mace-torch has two bases of coupling tensors, and weights mean something only in theirs:
``basis="wigner"`` (:func:`tpc.so3.coupling.coupling_basis`, mace's Wigner 3j route, taken
without cuequivariance or with ``use_reduced_cg=False``) and ``basis="reduced"``
(:func:`tpc.so3.reduced.reduced_coupling_basis`, cuequivariance's reduced basis, taken with
cuequivariance installed and ``use_reduced_cg=True``). Both equal mace's ``U_matrix_{nu}`` buffers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tpc.irreps import Irrep, Irreps
from tpc.so3.coupling import coupling_basis
from tpc.so3.reduced import reduced_coupling_basis

SYMMETRIC_CONTRACTION_FORMAT = "tpc.SymmetricContraction/1"
BASES = {"wigner": coupling_basis, "reduced": reduced_coupling_basis}
"""The coupling bases of mace-torch, by name (see the module docstring)."""


@functools.lru_cache(maxsize=None)
def _coupling(irreps: str, ir_out: str, correlation: int, basis: str) -> np.ndarray:
    tensor = BASES[basis](Irreps(irreps), Irrep(ir_out), correlation)
    tensor.setflags(write=False)
    return tensor


@dataclass(frozen=True)
class SymmetricContraction:
    """The symmetric contraction of MACE's ``EquivariantProductBasisBlock`` (see the module docstring).

    Args:
        irreps_in: the node features, every irrep with the same multiplicity (the channels),
            e.g. ``"128x0e+128x1o+128x2e+128x3o"``; each irrep at most once.
        irreps_out: the output irreps, each at most once, with the same multiplicity.
        correlation: the polynomial's degree (MACE's ``correlation``), at least 1.
        num_elements: the elements the weights are chosen by.
        basis: the coupling tensors, "wigner" or "reduced" (needs cuequivariance), as mace's
            module was built (see the module docstring).

    >>> spec = SymmetricContraction("8x0e+8x1o", "8x0e", 2, 3)
    >>> [(str(ir), nu, shape) for ir, nu, shape in spec.weight_shapes()]
    [('0e', 1, (3, 1, 8)), ('0e', 2, (3, 2, 8))]
    """

    irreps_in: Irreps
    irreps_out: Irreps
    correlation: int
    num_elements: int
    basis: str = "wigner"

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"basis must be one of {sorted(BASES)}, got {self.basis!r}")
        object.__setattr__(self, "irreps_in", Irreps(self.irreps_in))
        object.__setattr__(self, "irreps_out", Irreps(self.irreps_out))
        for name, value in (("correlation", self.correlation), ("num_elements", self.num_elements)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, irreps in (("irreps_in", self.irreps_in), ("irreps_out", self.irreps_out)):
            if not len(irreps):
                raise ValueError(f"{name} is empty")
            if len({ir for _, ir in irreps}) != len(irreps):
                raise ValueError(f"{name} {irreps} has an irrep twice; each irrep is one block of channels")
        multiplicities = {mul for mul, _ in self.irreps_in} | {mul for mul, _ in self.irreps_out}
        if len(multiplicities) != 1 or 0 in multiplicities:
            raise ValueError(f"every irrep of irreps_in and irreps_out must have the same multiplicity (the "
                             f"channels), got {self.irreps_in} and {self.irreps_out}")

    @property
    def channels(self) -> int:
        """The number of channels (the common multiplicity)."""
        return self.irreps_in[0].mul

    @property
    def coupling_irreps(self) -> Irreps:
        """The irreps of one channel of the input, multiplicity 1 each."""
        return Irreps([(1, ir) for _, ir in self.irreps_in])

    def coupling(self, ir_out: Irrep | str, nu: int) -> np.ndarray:
        """The read-only coupling tensor ``U_nu`` of an output irrep (mace's ``U_matrix_{nu}``):
        ``(ir.dim, D, ..., D, paths)``, the first axis absent for a scalar."""
        return _coupling(str(self.coupling_irreps), str(Irrep(ir_out)), nu, self.basis)

    def weight_shapes(self) -> list[tuple[Irrep, int, tuple[int, int, int]]]:
        """``(ir_out, nu, (num_elements, paths, channels))`` for every output irrep and order."""
        return [(ir, nu, (self.num_elements, self.coupling(ir, nu).shape[-1], self.channels))
                for _, ir in self.irreps_out for nu in range(1, self.correlation + 1)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description (see :meth:`from_dict`); the basis only when it is not "wigner"."""
        data = {"format": SYMMETRIC_CONTRACTION_FORMAT, "irreps_in": str(self.irreps_in),
                "irreps_out": str(self.irreps_out), "correlation": int(self.correlation),
                "num_elements": int(self.num_elements)}
        return {**data, "basis": self.basis} if self.basis != "wigner" else data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SymmetricContraction":
        """Rebuild a spec from :meth:`to_dict`; anything malformed raises ValueError."""
        if not isinstance(data, Mapping) or data.get("format") != SYMMETRIC_CONTRACTION_FORMAT:
            raise ValueError(f"not a {SYMMETRIC_CONTRACTION_FORMAT} description")
        try:
            return cls(data["irreps_in"], data["irreps_out"], data["correlation"], data["num_elements"],
                       data.get("basis", "wigner"))
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed symmetric contraction description: {error}") from None

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def nonzeros(self) -> int:
        """Nonzero coupling coefficients over every output irrep and order."""
        return sum(int(np.count_nonzero(self.coupling(ir, nu))) for _, ir in self.irreps_out
                   for nu in range(1, self.correlation + 1))

    def flops(self, batch: int = 1) -> int:
        """Floating-point operations of ``batch`` nodes evaluated term by term: per channel, one
        multiply per input factor and one add for each nonzero coefficient of order nu (nu + 1
        operations), and a multiply-add per path for the weights."""
        per_channel = sum(int(np.count_nonzero(self.coupling(ir, nu))) * (nu + 1) + 2 * shape[1]
                          for ir, nu, shape in self.weight_shapes())
        return batch * self.channels * per_channel

    def reference(self, x: Any, y: Any, weights: Sequence[Sequence[Any]]) -> np.ndarray:
        """The contraction in float64 (complex128 for a complex x).

        Args:
            x: ``(batch, channels, coupling_irreps.dim)``, as mace reshapes node features.
            y: ``(batch, num_elements)``, the elements (one-hot in MACE).
            weights: per output irrep, per ``nu = 1..correlation``, ``(num_elements, paths, channels)``.

        Returns:
            ``(batch, irreps_out.dim)``: for each output irrep its channels' components, channel-major.
        """
        x = _float64(x)
        y = np.asarray(y, dtype=np.float64)
        batch = x.shape[0]
        dim = self.coupling_irreps.dim
        if x.shape != (batch, self.channels, dim) or y.shape != (batch, self.num_elements):
            raise ValueError(f"x must be ({batch}, {self.channels}, {dim}) and y ({batch}, {self.num_elements}), "
                             f"got {x.shape} and {y.shape}")
        self._check_weights(weights)
        outs = []
        for (_, ir), per_order in zip(self.irreps_out, weights):
            out = np.zeros((batch, self.channels, ir.dim), dtype=x.dtype)
            power = np.ones((batch, self.channels, 1))
            for nu, weight in enumerate(per_order, start=1):
                power = np.einsum("bcn,bci->bcni", power, x).reshape(batch, self.channels, -1)
                coupling = self.coupling(ir, nu).reshape(ir.dim, dim ** nu, -1)
                expected = (self.num_elements, coupling.shape[-1], self.channels)
                weight = np.asarray(weight, dtype=np.float64)
                if weight.shape != expected:
                    raise ValueError(f"the weights of {ir} at order {nu} must have shape {expected}, "
                                     f"got {weight.shape}")
                element_weight = np.einsum("be,ekc->bck", y, weight)
                out += np.einsum("bcn,mnk,bck->bcm", power, coupling, element_weight)
            outs.append(out.reshape(batch, -1))
        return np.concatenate(outs, axis=1)

    def reference_gradient(self, x: Any, y: Any, weights: Sequence[Sequence[Any]], grad: Any,
                           wrt: str) -> np.ndarray | tuple[np.ndarray, ...]:
        """The gradient of ``<grad, reference(x, y, weights)>`` in float64 (complex128 for a complex x).

        Args:
            x, y, weights: as for :meth:`reference`.
            grad: ``(batch, irreps_out.dim)``.
            wrt: ``"x"``: returns ``(batch, channels, D)``; ``"weight"``: per node, not summed
                over the nodes of an element, one ``(batch, channels, paths)`` array per output
                irrep and order (the weights' gradient is their sum weighted by ``y``).
        """
        x, y, grad = _float64(x), np.asarray(y, dtype=np.float64), np.asarray(grad, dtype=np.float64)
        self._check_weights(weights)
        batch, dim = x.shape[0], self.coupling_irreps.dim
        if grad.shape != (batch, self.irreps_out.dim):
            raise ValueError(f"grad must be ({batch}, {self.irreps_out.dim}), got {grad.shape}")
        gradient_x, gradient_weights = np.zeros_like(x), []
        for (_, ir), block, per_order in zip(self.irreps_out, self.irreps_out.slices(), weights):
            upstream = grad[:, block].reshape(batch, self.channels, ir.dim)
            for nu, weight in enumerate(per_order, start=1):
                coupling = self.coupling(ir, nu).reshape(ir.dim, *([dim] * nu), -1)
                if wrt == "weight":
                    # The first product holds channels x D^nu x paths values per node: a few
                    # nodes at a time keep it near REFERENCE_BYTES (correlation 3 at l <= 3
                    # took gigabytes per node batch otherwise).
                    step = max(1, REFERENCE_BYTES // (16 * self.channels * coupling[0].size))
                    parts = []
                    for start in range(0, max(batch, 1), step):  # no nodes: one empty part
                        nodes = slice(start, start + step)
                        summed = np.einsum("bcm,m...k->bc...k", upstream[nodes], coupling)
                        for _ in range(nu):
                            summed = np.einsum("bci...,bci->bc...", summed, x[nodes])
                        parts.append(summed)
                    gradient_weights.append(np.concatenate(parts))
                    continue
                element_weight = np.einsum("be,ekc->bck", y, np.asarray(weight, dtype=np.float64))
                summed = np.einsum("bcm,bck,m...k->bc...", upstream, element_weight, coupling)
                for position in range(nu):
                    term = np.moveaxis(summed, 2 + position, -1)
                    for _ in range(nu - 1):
                        term = np.einsum("bci...,bci->bc...", term, x)
                    gradient_x += term
        if wrt == "weight":
            return tuple(gradient_weights)
        if wrt != "x":
            raise ValueError(f"wrt must be 'x' or 'weight', got {wrt!r}")
        return gradient_x

    def _check_weights(self, weights: Sequence[Sequence[Any]]) -> None:
        if len(weights) != len(self.irreps_out) or any(len(per_ir) != self.correlation for per_ir in weights):
            raise ValueError(f"weights must hold {self.correlation} arrays for each of the {len(self.irreps_out)} "
                             "output irreps")


REFERENCE_BYTES = 1 << 28
"""About the most memory one intermediate of the float64 weight-gradient reference takes."""


def _float64(value: Any) -> np.ndarray:
    """``value`` as float64, or complex128 if it is complex (the tangent ops' complex step)."""
    array = np.asarray(value)
    return array.astype(np.complex128 if np.iscomplexobj(array) else np.float64)
