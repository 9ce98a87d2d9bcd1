"""The tensor-product specification: what to compute, with e3nn's exact semantics.

A :class:`TensorProduct` is immutable data. It fixes the irreps, the paths (instructions), the
normalization and the weight layout; it knows nothing of algorithms or schedules. Its
canonical JSON form and fingerprint identify it in caches and tuning records.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from tpc.irreps import Irreps, IrrepsLike
from tpc.so3 import wigner_3j

SPEC_FORMAT = "tpc.TensorProduct/1"
IRREP_NORMALIZATIONS = ("component", "norm", "none")
PATH_NORMALIZATIONS = ("element", "path", "none")

# For each connection mode, the channel indices of x1, x2, the weight and the output of one
# path, in einsum letters: u runs over mul1, v over mul2, w over mul_out. An unweighted "uuw"
# path sums over u into a single output channel.
MODE_INDICES: dict[str, tuple[str, str, str, str]] = {
    "uvw": ("u", "v", "uvw", "w"),
    "uvu": ("u", "v", "uv", "u"),
    "uvv": ("u", "v", "uv", "v"),
    "uuw": ("u", "u", "uw", "w"),
    "uuu": ("u", "u", "u", "u"),
    "uvuv": ("u", "v", "uv", "uv"),
}
MODES = tuple(MODE_INDICES)
WRT = ("x1", "x2", "weight")
"""The arguments a product has gradients with respect to."""


@dataclass(frozen=True)
class Instruction:
    """One path ``irreps_in1[i_in1] x irreps_in2[i_in2] -> irreps_out[i_out]``.

    ``path_weight`` is the factor given by the user (default 1). ``coefficient`` is the scalar
    that multiplies ``wigner_3j`` in this path once normalization is applied; e3nn stores the
    same number in its instructions under the name ``path_weight``.
    """

    i_in1: int
    i_in2: int
    i_out: int
    connection_mode: str
    has_weight: bool
    path_weight: float
    path_shape: tuple[int, ...]
    coefficient: float

    @property
    def weight_numel(self) -> int:
        """Number of weights this path consumes from the flat weight vector."""
        return math.prod(self.path_shape) if self.has_weight else 0


class TensorProduct:
    """A tensor product of irreps, as ``e3nn.o3.TensorProduct`` defines it.

    ``instructions`` are tuples ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``
    with modes ``uvw, uvu, uvv, uuw, uuu, uvuv``. ``shared_weights=True`` means one weight
    vector of shape ``(weight_numel,)`` for the whole batch; False means per-sample weights of
    shape ``(batch, weight_numel)``. The variances ``in1_var, in2_var, out_var`` (one per
    block, default 1) enter the normalization exactly as in e3nn.

    Every irreps must have dimension > 0 and every block multiplicity > 0: e3nn accepts
    ``0x1o`` blocks, but a zero-width operand has no layout a kernel can take, so such a spec is
    refused with a ValueError naming the argument (``Irreps.remove_zero_multiplicities`` drops
    the blocks; instruction indices then refer to the remaining ones).
    """

    def __init__(
        self,
        irreps_in1: IrrepsLike,
        irreps_in2: IrrepsLike,
        irreps_out: IrrepsLike,
        instructions: Iterable[Sequence[Any]],
        irrep_normalization: str = "component",
        path_normalization: str = "element",
        in1_var: Sequence[float] | None = None,
        in2_var: Sequence[float] | None = None,
        out_var: Sequence[float] | None = None,
        shared_weights: bool = True,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "irreps_in1", _spec_irreps("irreps_in1", irreps_in1))
        set_(self, "irreps_in2", _spec_irreps("irreps_in2", irreps_in2))
        set_(self, "irreps_out", _spec_irreps("irreps_out", irreps_out))
        if irrep_normalization not in IRREP_NORMALIZATIONS:
            raise ValueError(f"irrep_normalization must be one of {IRREP_NORMALIZATIONS}, got {irrep_normalization!r}")
        if path_normalization not in PATH_NORMALIZATIONS:
            raise ValueError(f"path_normalization must be one of {PATH_NORMALIZATIONS}, got {path_normalization!r}")
        if not isinstance(shared_weights, bool):
            raise TypeError(f"shared_weights must be True or False, got {shared_weights!r}")
        set_(self, "irrep_normalization", irrep_normalization)
        set_(self, "path_normalization", path_normalization)
        set_(self, "shared_weights", shared_weights)
        set_(self, "in1_var", _variances("in1_var", in1_var, self.irreps_in1))
        set_(self, "in2_var", _variances("in2_var", in2_var, self.irreps_in2))
        set_(self, "out_var", _variances("out_var", out_var, self.irreps_out))
        paths = [self._check_instruction(position, raw) for position, raw in enumerate(instructions)]
        set_(self, "instructions", tuple(self._normalize(paths)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a TensorProduct is immutable; cannot set {name!r}")

    # -- construction -----------------------------------------------------------------------

    def _check_instruction(self, position: int, raw: Sequence[Any]) -> tuple:
        where = f"instruction {position} {tuple(raw) if isinstance(raw, (list, tuple)) else raw!r}"
        if not isinstance(raw, (list, tuple)) or len(raw) not in (5, 6):
            raise ValueError(f"{where}: expected (i_in1, i_in2, i_out, mode, has_weight[, path_weight])")
        i_in1, i_in2, i_out, mode, has_weight = raw[:5]
        path_weight = raw[5] if len(raw) == 6 else 1.0
        for name, index, irreps in (("i_in1", i_in1, self.irreps_in1), ("i_in2", i_in2, self.irreps_in2),
                                    ("i_out", i_out, self.irreps_out)):
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(irreps):
                raise ValueError(f"{where}: {name}={index!r} is not a block index of {irreps} (0..{len(irreps) - 1})")
        if not isinstance(mode, str) or mode not in MODE_INDICES:
            raise ValueError(f"{where}: unknown connection mode {mode!r}; supported modes are {MODES}")
        if not isinstance(has_weight, (bool, np.bool_)):
            raise ValueError(f"{where}: has_weight must be True or False, got {has_weight!r}")
        if isinstance(path_weight, bool) or not isinstance(path_weight, (int, float, np.floating, np.integer)) \
                or not math.isfinite(path_weight) or path_weight < 0:
            raise ValueError(f"{where}: path_weight must be a finite number >= 0, got {path_weight!r}")
        (mul1, ir1), (mul2, ir2), (mul_out, ir_out) = (
            self.irreps_in1[i_in1], self.irreps_in2[i_in2], self.irreps_out[i_out])
        if ir_out not in ir1 * ir2:
            raise ValueError(f"{where}: {ir_out} is not in {ir1} x {ir2} (selection rule |l1-l2| <= l <= l1+l2, "
                             "parity p1*p2)")
        required = {
            "uvw": (bool(has_weight), "mode uvw needs has_weight=True"),
            "uvu": (mul1 == mul_out, f"mode uvu needs mul_in1 == mul_out, got {mul1} and {mul_out}"),
            "uvv": (mul2 == mul_out, f"mode uvv needs mul_in2 == mul_out, got {mul2} and {mul_out}"),
            "uuw": (mul1 == mul2 and (has_weight or mul_out == 1),
                    f"mode uuw needs mul_in1 == mul_in2 (got {mul1}, {mul2}) and, without weights, mul_out == 1"),
            "uuu": (mul1 == mul2 == mul_out, f"mode uuu needs equal multiplicities, got {mul1}, {mul2}, {mul_out}"),
            "uvuv": (mul1 * mul2 == mul_out, f"mode uvuv needs mul_in1 * mul_in2 == mul_out, got {mul1}*{mul2} "
                                             f"and {mul_out}"),
        }[mode]
        if not required[0]:
            raise ValueError(f"{where}: {required[1]}")
        sizes = {"u": mul1, "v": mul2, "w": mul_out}
        path_shape = tuple(sizes[letter] for letter in MODE_INDICES[mode][2])
        return int(i_in1), int(i_in2), int(i_out), mode, bool(has_weight), float(path_weight), path_shape

    def _normalize(self, paths: list[tuple]) -> list[Instruction]:
        def fan_in(path: tuple) -> float:
            i_in1, i_in2, _, mode, *_ = path
            mul1, mul2 = self.irreps_in1[i_in1].mul, self.irreps_in2[i_in2].mul
            elements = {"uvw": mul1 * mul2, "uvu": mul2, "uvv": mul1, "uuw": mul1, "uuu": 1, "uvuv": 1}[mode]
            return self.in1_var[i_in1] * self.in2_var[i_in2] * elements

        out = []
        for path in paths:
            i_in1, i_in2, i_out, mode, has_weight, path_weight, path_shape = path
            ir1, ir2, ir_out = (self.irreps_in1[i_in1].ir, self.irreps_in2[i_in2].ir, self.irreps_out[i_out].ir)
            alpha = {"component": ir_out.dim, "norm": ir1.dim * ir2.dim, "none": 1}[self.irrep_normalization]
            siblings = [p for p in paths if p[2] == i_out]
            if self.path_normalization == "element":
                x = sum(fan_in(p) for p in siblings)
            elif self.path_normalization == "path":
                x = fan_in(path) * len(siblings)
            else:
                x = 1.0
            if x > 0:
                alpha /= x
            coefficient = math.sqrt(alpha * self.out_var[i_out] * path_weight)
            out.append(Instruction(i_in1, i_in2, i_out, mode, has_weight, path_weight, path_shape, coefficient))
        return out

    # -- properties -------------------------------------------------------------------------

    @property
    def weight_numel(self) -> int:
        """Length of the flat weight vector (per sample when weights are not shared)."""
        return sum(ins.weight_numel for ins in self.instructions)

    def weight_slices(self) -> list[slice | None]:
        """Slice of the flat weight vector read by each instruction (None when unweighted)."""
        out, start = [], 0
        for ins in self.instructions:
            if ins.has_weight:
                out.append(slice(start, start + ins.weight_numel))
                start += ins.weight_numel
            else:
                out.append(None)
        return out

    def path_nnz(self, ins: Instruction) -> int:
        """Nonzero coupling coefficients of one path."""
        ls = (self.irreps_in1[ins.i_in1].ir.l, self.irreps_in2[ins.i_in2].ir.l, self.irreps_out[ins.i_out].ir.l)
        return int(np.count_nonzero(wigner_3j(*ls)))

    def coupling(self, index: int) -> np.ndarray:
        """The coupling coefficients of path ``index``, normalization included: ``(d1, d2, d_out)``."""
        ins = self.instructions[index]
        ls = (self.irreps_in1[ins.i_in1].ir.l, self.irreps_in2[ins.i_in2].ir.l, self.irreps_out[ins.i_out].ir.l)
        return ins.coefficient * wigner_3j(*ls)

    @property
    def nnz(self) -> int:
        """Nonzero coupling coefficients summed over paths (the sparse work per channel pair)."""
        return sum(self.path_nnz(ins) for ins in self.instructions)

    def path_flops(self, ins: Instruction) -> int:
        """FLOPs of one path for one sample, counted for the direct sparse evaluation.

        Each nonzero coupling coefficient costs 3 FLOPs (two products, one sum) per channel
        pair the mode combines; each weight application costs 2 FLOPs (multiply-add) per
        output component; an unweighted sum over channels costs 1 FLOP per term.
        """
        mul1, mul2 = self.irreps_in1[ins.i_in1].mul, self.irreps_in2[ins.i_in2].mul
        dim_out = self.irreps_out[ins.i_out].ir.dim
        pairs = mul1 if ins.connection_mode in ("uuw", "uuu") else mul1 * mul2
        flops = 3 * self.path_nnz(ins) * pairs
        if ins.has_weight:
            flops += 2 * math.prod(ins.path_shape) * dim_out
        elif ins.connection_mode in ("uvu", "uvv", "uuw"):
            flops += pairs * dim_out
        return flops

    def flops(self, batch: int = 1) -> int:
        """FLOPs of the whole product for ``batch`` samples (see :meth:`path_flops`)."""
        return batch * sum(self.path_flops(ins) for ins in self.instructions)

    # -- identity ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Canonical plain-data form (the inverse of :meth:`from_dict`)."""
        return {
            "format": SPEC_FORMAT,
            "irreps_in1": str(self.irreps_in1),
            "irreps_in2": str(self.irreps_in2),
            "irreps_out": str(self.irreps_out),
            "instructions": [[i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight, i.path_weight]
                             for i in self.instructions],
            "irrep_normalization": self.irrep_normalization,
            "path_normalization": self.path_normalization,
            "in1_var": list(self.in1_var),
            "in2_var": list(self.in2_var),
            "out_var": list(self.out_var),
            "shared_weights": self.shared_weights,
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, floats written so they read back exactly."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorProduct":
        """Rebuild a spec from :meth:`to_dict` output.

        Args:
            data: the plain-data form, as JSON reads it.

        Returns:
            The spec.

        Raises:
            ValueError: ``data`` is not a spec, or a field is missing or malformed; the message
                starts with ``spec field '<name>':``.
        """
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            raise ValueError(f"not a tensor-product spec: expected a dict with format {SPEC_FORMAT!r}")
        for field, (kinds, expected) in _SPEC_FIELDS.items():
            if field not in data:
                raise ValueError(f"spec field {field!r}: missing from the tensor-product spec")
            value = data[field]
            if not isinstance(value, kinds) or (field.endswith("_var") and not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
                raise ValueError(f"spec field {field!r}: expected {expected}, got {value!r}")
        for position, ins in enumerate(data["instructions"]):
            if not isinstance(ins, list):
                raise ValueError(f"spec field 'instructions': entry {position} must be a list "
                                 f"[i_in1, i_in2, i_out, mode, has_weight, path_weight], got {ins!r}")
        try:
            return cls(
                data["irreps_in1"], data["irreps_in2"], data["irreps_out"],
                [tuple(ins) for ins in data["instructions"]],
                irrep_normalization=data["irrep_normalization"],
                path_normalization=data["path_normalization"],
                in1_var=data["in1_var"], in2_var=data["in2_var"], out_var=data["out_var"],
                shared_weights=data["shared_weights"],
            )
        except (ValueError, TypeError) as error:
            message = str(error)
            field = "instructions" if message.startswith("instruction ") else next(
                (name for name in _SPEC_FIELDS if message.startswith(name)), None)
            if field is None:
                raise ValueError(f"tensor-product spec: {message}") from None
            detail = message.removeprefix(field + ": ").removeprefix(field + " ")
            raise ValueError(f"spec field {field!r}: {detail}") from None

    @classmethod
    def from_json(cls, text: str) -> "TensorProduct":
        """Rebuild a spec from :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"tensor-product spec is not valid JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_e3nn(cls, module: Any) -> "TensorProduct":
        """The spec of an ``e3nn.o3.TensorProduct`` module (any subclass, e3nn 0.4 to 0.6), every
        path's mode, weight shape and coefficient checked against the module's.

        Args:
            module: the e3nn module.

        Returns:
            The spec; with e3nn's default normalizations it equals the one built in tpc.

        Raises:
            TypeError: not an e3nn tensor product. ValueError: a path tpc does not compute
                (e.g. mode ``uvu<v``) or a coefficient it cannot reproduce, named.

        >>> from e3nn import o3  # doctest: +SKIP
        >>> TensorProduct.from_e3nn(o3.FullyConnectedTensorProduct("2x1o", "1o", "0e"))  # doctest: +SKIP
        TensorProduct('2x1o' x '1x1o' -> '1x0e', 1 paths, weight_numel=2, shared_weights=True)
        """
        from tpc.ops.from_e3nn import spec_from_e3nn

        return spec_from_e3nn(cls, module)

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON: equal specs, equal fingerprints."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorProduct) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return (f"TensorProduct({str(self.irreps_in1)!r} x {str(self.irreps_in2)!r} -> {str(self.irreps_out)!r}, "
                f"{len(self.instructions)} paths, weight_numel={self.weight_numel}, "
                f"shared_weights={self.shared_weights})")

    # -- inputs and the reference -----------------------------------------------------------

    def input_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """Shapes of x1, x2 and weight for ``batch`` samples (weight per sample or shared)."""
        return {"x1": (batch, self.irreps_in1.dim), "x2": (batch, self.irreps_in2.dim),
                "weight": (self.weight_numel,) if self.shared_weights else (batch, self.weight_numel)}

    def check_inputs(self, x1: Any, x2: Any, weight: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate the arguments of a call and return them as arrays.

        ``x1`` is (batch, irreps_in1.dim), ``x2`` (batch, irreps_in2.dim), ``weight``
        (weight_numel,) when shared or (batch, weight_numel) per sample, or None when the
        product has no weights. Raises TypeError for non-float data and ValueError for shapes.
        """
        x1 = _float_array("x1", x1)
        x2 = _float_array("x2", x2)
        if x1.ndim != 2 or x1.shape[1] != self.irreps_in1.dim:
            raise ValueError(f"x1 must have shape (batch, {self.irreps_in1.dim}) for {self.irreps_in1}, got {x1.shape}")
        batch = x1.shape[0]
        if x2.ndim != 2 or x2.shape != (batch, self.irreps_in2.dim):
            raise ValueError(f"x2 must have shape ({batch}, {self.irreps_in2.dim}) for {self.irreps_in2} "
                             f"(batch taken from x1), got {x2.shape}")
        if x1.dtype != x2.dtype:
            raise TypeError(f"x1 and x2 must have the same dtype, got {x1.dtype} and {x2.dtype}")
        expected = self.input_shapes(batch)["weight"]
        if weight is None:
            if self.weight_numel:
                raise ValueError(f"this tensor product has {self.weight_numel} weights: "
                                 f"pass weight of shape {expected}")
            return x1, x2, None
        weight = _float_array("weight", weight)
        if weight.shape != expected:
            sharing = "shared" if self.shared_weights else "per-sample"
            raise ValueError(f"weight must have shape {expected} ({sharing} weights), got {weight.shape}")
        if weight.dtype != x1.dtype:
            raise TypeError(f"weight must have the dtype of x1 ({x1.dtype}), got {weight.dtype}")
        return x1, x2, weight

    def reference(self, x1: Any, x2: Any, weight: Any = None) -> np.ndarray:
        """The product in float64 numpy, batch-first, e3nn's flat layout: the numerical truth."""
        x1, x2, weight = self.check_inputs(x1, x2, weight)
        as64 = [None if a is None else a.astype(np.float64) for a in (x1, x2, weight)]
        return einsum_forward(self, *as64)

    def reference_gradient(self, x1: Any, x2: Any, weight: Any, grad: Any, wrt: str) -> np.ndarray:
        """``d<grad, tp(x1, x2, weight)>/d wrt`` in float64 numpy, shaped like the argument ``wrt``
        (shared weights: the per-sample gradients summed over the batch)."""
        if wrt not in WRT:
            raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
        if wrt == "weight" and not self.weight_numel:
            raise ValueError("this tensor product has no weights to take the gradient with respect to")
        x1, x2, weight = self.check_inputs(x1, x2, weight)
        grad = _float_array("grad", grad)
        if grad.shape != (x1.shape[0], self.irreps_out.dim):
            raise ValueError(f"grad must have shape ({x1.shape[0]}, {self.irreps_out.dim}), got {grad.shape}")
        arguments = {"x1": x1, "x2": x2, "weight": weight}
        result = np.zeros(arguments[wrt].shape)
        as64 = [None if a is None else a.astype(np.float64) for a in (x1, x2, weight)]
        for path in _einsum_paths(self, *as64):
            if wrt not in path.operands:
                continue
            block = grad[:, path.out_slice].astype(np.float64).reshape(path.out_shape)
            others = [operand for name, operand in path.operands.items() if name != wrt] + [(block, path.out_letters)]
            wanted, letters = path.operands[wrt]
            # A channel the path sums over without a weight (unweighted uvu, uvv) gets the same
            # gradient for every value: a vector of ones carries its letter.
            others += [(np.ones(size), letter) for letter, size in zip(letters, wanted.shape)
                       if not any(letter in other for _, other in others)]
            subscripts = ",".join(other for _, other in others) + f"->{letters}"
            part = np.einsum(subscripts, *[array for array, _ in others], optimize=True)
            result[..., path.slices[wrt]] += part.reshape(result[..., path.slices[wrt]].shape)
        return result


@dataclass(frozen=True)
class _EinsumPath:
    """One path as an einsum: operands (x1, x2, the coupling, the weight if any) with their
    subscripts, the output block's subscripts and shape, and each argument's columns."""

    operands: dict[str, tuple[np.ndarray, str]]
    out_letters: str
    out_shape: tuple[int, ...]
    out_slice: slice
    slices: dict[str, slice]


def _einsum_paths(tp: TensorProduct, x1: np.ndarray, x2: np.ndarray, weight: np.ndarray | None) -> list[_EinsumPath]:
    """The paths of ``tp`` as einsums on checked arguments (subscript z: the sample), in x1's dtype."""
    batch = x1.shape[0]
    in1_slices, in2_slices, out_slices = tp.irreps_in1.slices(), tp.irreps_in2.slices(), tp.irreps_out.slices()
    paths = []
    for index, (ins, w_slice) in enumerate(zip(tp.instructions, tp.weight_slices())):
        (mul1, ir1), (mul2, ir2), (mul_out, ir_out) = (tp.irreps_in1[ins.i_in1], tp.irreps_in2[ins.i_in2],
                                                       tp.irreps_out[ins.i_out])
        coupling = tp.coupling(index).astype(x1.dtype)
        idx1, idx2, idx_w, idx_out = MODE_INDICES[ins.connection_mode]
        operands = {"x1": (x1[:, in1_slices[ins.i_in1]].reshape(batch, mul1, ir1.dim), f"z{idx1}i"),
                    "x2": (x2[:, in2_slices[ins.i_in2]].reshape(batch, mul2, ir2.dim), f"z{idx2}j"),
                    "coupling": (coupling, "ijk")}
        if ins.has_weight:
            w = weight[..., w_slice]
            operands["weight"] = (w.reshape(ins.path_shape), idx_w) if tp.shared_weights else \
                (w.reshape((batch,) + ins.path_shape), "z" + idx_w)
        elif ins.connection_mode == "uuw":
            idx_out = ""
        sizes = {"u": mul1, "v": mul2, "w": mul_out}
        paths.append(_EinsumPath(operands, f"z{idx_out}k", (batch, *[sizes[c] for c in idx_out], ir_out.dim),
                                 out_slices[ins.i_out],
                                 {"x1": in1_slices[ins.i_in1], "x2": in2_slices[ins.i_in2], "weight": w_slice}))
    return paths


def einsum_forward(tp: TensorProduct, x1: np.ndarray, x2: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """The product path by path with numpy einsum over dense coupling tensors, in x1's dtype.

    Arguments must already be checked (:meth:`TensorProduct.check_inputs`). This is the
    reference algorithm, and the plain-numpy baseline of the benchmarks.
    """
    out = np.zeros((x1.shape[0], tp.irreps_out.dim), x1.dtype)
    for path in _einsum_paths(tp, x1, x2, weight):
        subscripts = ",".join(letters for _, letters in path.operands.values()) + f"->{path.out_letters}"
        result = np.einsum(subscripts, *[array for array, _ in path.operands.values()], optimize=True)
        out[:, path.out_slice] += result.reshape(out[:, path.out_slice].shape)
    return out


_SPEC_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "irreps_in1": (str, "an irreps string"),
    "irreps_in2": (str, "an irreps string"),
    "irreps_out": (str, "an irreps string"),
    "instructions": (list, "a list of instructions"),
    "irrep_normalization": (str, f"one of {IRREP_NORMALIZATIONS}"),
    "path_normalization": (str, f"one of {PATH_NORMALIZATIONS}"),
    "in1_var": (list, "a list of numbers"),
    "in2_var": (list, "a list of numbers"),
    "out_var": (list, "a list of numbers"),
    "shared_weights": (bool, "true or false"),
}
"""The fields of a spec's plain-data form besides ``format``: the JSON type each must have."""


def _spec_irreps(name: str, value: IrrepsLike) -> Irreps:
    """``value`` as Irreps of dimension > 0 with no zero-multiplicity block; errors name ``name``."""
    try:
        irreps = Irreps(value)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{name}: {error}") from None
    if not irreps:
        raise ValueError(f"{name} is empty: a tensor product needs operands of dimension > 0")
    for index, (mul, ir) in enumerate(irreps):
        if mul == 0:
            raise ValueError(f"{name}: block {index} ({mul}x{ir}) has multiplicity 0; zero-width blocks are not "
                             "supported (Irreps.remove_zero_multiplicities drops them)")
    return irreps


def _variances(name: str, values: Sequence[float] | None, irreps: Irreps) -> tuple[float, ...]:
    if values is None:
        return tuple(1.0 for _ in irreps)
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a sequence of numbers, one per block of {irreps}, got {values!r}")
    values = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        raise ValueError(f"{name} must be a sequence of numbers, one per block of {irreps}, got {values!r}")
    values = tuple(float(v) for v in values)
    if len(values) != len(irreps):
        raise ValueError(f"{name} needs one variance per block of {irreps} ({len(irreps)}), got {len(values)}")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"{name} must be finite and >= 0, got {values}")
    return values


def _float_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), got dtype {array.dtype}")
    return array
