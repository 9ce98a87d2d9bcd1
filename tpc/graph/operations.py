"""The operations of graph nodes: parameters, a type rule and a float64 reference each.

An :class:`Operation` is what a node computes (gather, spherical harmonics, radial basis,
tensor product, linear, scatter-sum, elementwise, or a graph input); the graph checks a node
by its operation's ``check`` and evaluates it by its ``evaluate``, the float64 oracle that
compiled graphs are tested against. Operations round-trip through plain data
(:meth:`Operation.to_dict`, :func:`operation_from_dict`), which is how graph JSON holds them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from tpc.dtypes import DTYPES
from tpc.graph.tensors import SCALAR, Dim, Tensor, TensorType, check_dim
from tpc.irreps import Irreps
from tpc.ops import TensorProduct
from tpc.so3 import spherical_harmonics
from tpc.so3.spherical_harmonics import NORMALIZATIONS

ELEMENTWISE_FUNCTIONS = ("add", "sub", "mul", "silu")
"""The functions an :class:`Elementwise` node computes."""


# -- checks shared by the operations --------------------------------------------------------


def _require_float_matrix(argument: str, tensor: Tensor) -> None:
    if tensor.dtype not in DTYPES:
        raise ValueError(f"{argument} {tensor.name!r} must be float32 or float64, got {tensor.dtype}")
    if len(tensor.shape) != 2:
        raise ValueError(f"{argument} {tensor.name!r} must have shape (rows, features), got {tensor.shape}")


def _require_vectors(argument: str, tensor: Tensor) -> None:
    _require_float_matrix(argument, tensor)
    if tensor.shape[1] != 3 or tensor.irreps not in (None, Irreps("1o")):
        raise ValueError(f"{argument} {tensor.name!r} must have shape (rows, 3) and irreps 1o or none, "
                         f"got {tensor.type}")


def _require_index(argument: str, tensor: Tensor) -> None:
    if tensor.dtype != "int64":
        raise ValueError(f"{argument} {tensor.name!r} must have dtype int64, got {tensor.dtype}")
    if len(tensor.shape) != 1:
        raise ValueError(f"{argument} {tensor.name!r} must have shape (rows,), got {tensor.shape}")


def _require_irreps(argument: str, tensor: Tensor, irreps: Irreps) -> None:
    if tensor.irreps != irreps:
        raise ValueError(f"{argument} {tensor.name!r} has irreps {tensor.irreps}, expected {irreps}")


def _require_scalars(argument: str, tensor: Tensor) -> None:
    if tensor.irreps is None or any(ir != SCALAR for _, ir in tensor.irreps):
        raise ValueError(f"{argument} {tensor.name!r} must have only scalar irreps (0e), got {tensor.irreps}")


def _require_same_rows(operands: Sequence[tuple[str, Tensor]]) -> None:
    (first_argument, first), *others = operands
    for argument, tensor in others:
        if tensor.shape[0] != first.shape[0]:
            raise ValueError(f"{argument} {tensor.name!r} has {tensor.shape[0]!r} rows but {first_argument} "
                             f"{first.name!r} has {first.shape[0]!r}")


def _require_same_dtype(operands: Sequence[tuple[str, Tensor]]) -> str:
    (first_argument, first), *others = operands
    for argument, tensor in others:
        if tensor.dtype != first.dtype:
            raise ValueError(f"{argument} {tensor.name!r} is {tensor.dtype} but {first_argument} {first.name!r} "
                             f"is {first.dtype}")
    return first.dtype


def _require_weight(argument: str, tensor: Tensor, numel: int, shared: bool, rows: Dim) -> None:
    expected = (numel,) if shared else (rows, numel)
    if tensor.shape != expected:
        sharing = "shared" if shared else "per-sample"
        raise ValueError(f"{argument} {tensor.name!r} must have shape {expected} ({numel} {sharing} weights), "
                         f"got {tensor.shape}")


def _require_indices_below(argument: str, tensor: Tensor, index: np.ndarray, bound: int) -> None:
    if index.size and (index.min() < 0 or index.max() >= bound):
        raise ValueError(f"{argument} {tensor.name!r} has values outside [0, {bound}): "
                         f"min {index.min()}, max {index.max()}")


# -- operations -----------------------------------------------------------------------------


class Operation(ABC):
    """An operation of a graph node: immutable parameters, a type rule and a float64 reference.

    ``check(inputs)`` takes the input tensors in the order of ``arguments`` and returns the
    output type, or raises ValueError naming the offending argument and tensor (the graph adds
    the node's name). ``evaluate(values, inputs, sizes)`` computes the output in float64 from
    the input arrays, with ``sizes`` the values of the symbolic dims.
    """

    kind: ClassVar[str]

    @property
    @abstractmethod
    def arguments(self) -> tuple[str, ...]:
        """Names of the inputs, in order."""

    @abstractmethod
    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        """The output type for these inputs."""

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        """The output for these float64 (or int64 index) arrays."""
        raise NotImplementedError(f"{self.kind} nodes are bound, not evaluated")

    def params(self) -> dict[str, Any]:
        """The parameters as JSON-ready data."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Operation":
        """Rebuild the operation from :meth:`params` output."""
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **params}``, the operation's JSON form."""
        return {"kind": self.kind, **self.params()}

    def describe(self) -> str:
        """A one-line label: the kind and the parameters."""
        params = ", ".join(f"{name}={value}" for name, value in self.params().items())
        return f"{self.kind}({params})" if params else self.kind


@dataclass(frozen=True)
class Input(Operation):
    """A graph input of the given type."""

    type: TensorType
    kind: ClassVar[str] = "input"

    def __post_init__(self) -> None:
        if not isinstance(self.type, TensorType):
            raise TypeError(f"an input needs a TensorType, got {self.type!r}")

    @property
    def arguments(self) -> tuple[str, ...]:
        return ()

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        return self.type

    def params(self) -> dict[str, Any]:
        return self.type.to_dict()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Input":
        return cls(TensorType.from_dict(params))

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Gather(Operation):
    """Rows of ``x`` picked by an int64 ``index``: x (n, d), index (m,) -> (m, d)."""

    kind: ClassVar[str] = "gather"

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("x", "index")

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        x, index = inputs
        _require_float_matrix("x", x)
        _require_index("index", index)
        return TensorType((index.shape[0], x.shape[1]), x.dtype, x.irreps)

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        x, index = values
        _require_indices_below("index", inputs[1], index, x.shape[0])
        return x[index]


class _OfVectors(Operation):
    """An operation computing features of the rows of one (rows, 3) ``vectors`` input, with the irreps
    ``irreps_out``."""

    irreps_out: ClassVar[Irreps]

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("vectors",)

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        (vectors,) = inputs
        _require_vectors("vectors", vectors)
        return TensorType((vectors.shape[0], self.irreps_out.dim), vectors.dtype, self.irreps_out)


@dataclass(frozen=True)
class SphericalHarmonics(_OfVectors):
    """e3nn's spherical harmonics 0e+1o+2e+... up to ``lmax`` of vectors (rows, 3).

    A row with a NaN coordinate has NaN degrees >= 1 and its constant degree 0, as in e3nn,
    where normalizing it gives NaN coordinates. A row with an infinite coordinate is treated
    alike (e3nn makes NaN only the components that read the infinite one).
    """

    lmax: int
    normalize: bool = True
    normalization: str = "component"
    kind: ClassVar[str] = "spherical_harmonics"

    def __post_init__(self) -> None:
        if isinstance(self.lmax, bool) or not isinstance(self.lmax, int) or self.lmax < 0:
            raise ValueError(f"lmax must be an integer >= 0, got {self.lmax!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")

    @property
    def irreps_out(self) -> Irreps:
        """``1x0e+1x1o+...`` up to lmax."""
        return Irreps.spherical_harmonics(self.lmax)


    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        vectors = values[0]
        with np.errstate(invalid="ignore", over="ignore"):
            out = spherical_harmonics(list(range(self.lmax + 1)), vectors, self.normalize, self.normalization)
        out[~np.isfinite(vectors).all(axis=1), 1:] = np.nan
        return out


@dataclass(frozen=True)
class RadialBasis(_OfVectors):
    """e3nn's Bessel basis of the lengths of vectors (rows, 3), as MACE and NequIP scale it.

    Column k (k = 1..number) of a row with length r is
    ``sqrt(number) * sqrt(2 / cutoff) * sin(k pi r / cutoff) / r`` for ``0 < r < cutoff`` and 0
    elsewhere: ``soft_one_hot_linspace(r, 0, cutoff, number, "bessel", cutoff=True)`` times
    ``sqrt(number)``. At r = 0 e3nn's masked 0/0 gives NaN; here the mask's 0 wins. A NaN or
    infinite r gives a NaN row, as in e3nn (sin of it is NaN): bad positions propagate to the
    outputs instead of reading as edges beyond the cutoff.
    """

    number: int
    cutoff: float
    kind: ClassVar[str] = "radial_basis"

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, (int, np.integer)) or self.number < 1:
            raise ValueError(f"number must be an integer >= 1 (how many basis functions), got {self.number!r}")
        if (isinstance(self.cutoff, bool) or not isinstance(self.cutoff, (int, float, np.integer, np.floating))
                or not math.isfinite(self.cutoff) or self.cutoff <= 0):
            raise ValueError(f"cutoff must be a finite number > 0, got {self.cutoff!r}")
        object.__setattr__(self, "number", int(self.number))
        object.__setattr__(self, "cutoff", float(self.cutoff))

    @property
    def irreps_out(self) -> Irreps:
        """``{number}x0e``: the basis values are scalars."""
        return Irreps([(self.number, SCALAR)])


    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        lengths = np.linalg.norm(values[0], axis=1)[:, None]
        inside = (lengths > 0) & (lengths < self.cutoff)
        safe_lengths = np.where(inside, lengths, 1.0)
        frequencies = np.arange(1, self.number + 1) * (math.pi / self.cutoff)
        scale = math.sqrt(self.number) * math.sqrt(2 / self.cutoff)
        values = np.where(inside, scale * np.sin(frequencies * safe_lengths) / safe_lengths, 0.0)
        return np.where(np.isfinite(lengths), values, np.nan)


@dataclass(frozen=True)
class TensorProductOp(Operation):
    """The tensor product ``tp`` of x1 and x2 with weights (per sample or shared, as ``tp`` says)."""

    tp: TensorProduct
    kind: ClassVar[str] = "tensor_product"

    def __post_init__(self) -> None:
        if not isinstance(self.tp, TensorProduct):
            raise TypeError(f"tensor_product needs a tpc.TensorProduct, got {type(self.tp).__name__}")

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("x1", "x2", "weight") if self.tp.weight_numel else ("x1", "x2")

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        operands = list(zip(self.arguments, inputs))
        rows = inputs[0].shape[0]
        for (argument, tensor), irreps in zip(operands, (self.tp.irreps_in1, self.tp.irreps_in2)):
            _require_float_matrix(argument, tensor)
            _require_irreps(argument, tensor, irreps)
        _require_same_rows(operands[:2])
        dtype = _require_same_dtype(operands)
        if self.tp.weight_numel:
            _require_weight("weight", inputs[2], self.tp.weight_numel, self.tp.shared_weights, rows)
        return TensorType((rows, self.tp.irreps_out.dim), dtype, self.tp.irreps_out)

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        return self.tp.reference(*values)

    def params(self) -> dict[str, Any]:
        return {"tp": self.tp.to_dict()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "TensorProductOp":
        return cls(TensorProduct.from_dict(params["tp"]))

    def describe(self) -> str:
        sharing = "shared" if self.tp.shared_weights else "per-sample"
        return f"{self.kind}({len(self.tp.instructions)} paths, {self.tp.weight_numel} {sharing} weights)"


class LinearPath(NamedTuple):
    """One weight block of a linear map: input block ``i_in`` to output block ``i_out``."""

    i_in: int
    i_out: int
    weights: slice
    coefficient: float


@dataclass(frozen=True)
class Linear(Operation):
    """e3nn's equivariant linear map (``o3.Linear``, no biases) with its weights as an input.

    Every pair (input block, output block) of the same irrep is a path with a (mul_in, mul_out)
    weight block, flattened in that order; each output block is divided by the square root of
    the summed multiplicities of the input blocks feeding it (path normalization "element").
    """

    irreps_in: Irreps
    irreps_out: Irreps
    shared_weights: bool = True
    kind: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        if self.irreps_in is None:
            raise ValueError("irreps_in is None: linear maps feature tensors, which have irreps")
        object.__setattr__(self, "irreps_in", Irreps(self.irreps_in))
        object.__setattr__(self, "irreps_out", Irreps(self.irreps_out))
        if not isinstance(self.shared_weights, bool):
            raise ValueError(f"shared_weights must be True or False, got {self.shared_weights!r}")

    def paths(self) -> list[LinearPath]:
        """The weight blocks in e3nn's order (by input block, then output block)."""
        pairs = [(i_in, i_out) for i_in, (_, ir_in) in enumerate(self.irreps_in)
                 for i_out, (_, ir_out) in enumerate(self.irreps_out) if ir_in == ir_out]
        fan_in = {i_out: sum(self.irreps_in[i].mul for i, o in pairs if o == i_out) for _, i_out in pairs}
        paths, start = [], 0
        for i_in, i_out in pairs:
            stop = start + self.irreps_in[i_in].mul * self.irreps_out[i_out].mul
            paths.append(LinearPath(i_in, i_out, slice(start, stop), 1 / math.sqrt(fan_in[i_out] or 1)))
            start = stop
        return paths

    @property
    def weight_numel(self) -> int:
        """Number of weights per sample (or in all, when shared)."""
        return sum(path.weights.stop - path.weights.start for path in self.paths())

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("x", "weight") if self.weight_numel else ("x",)

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        x = inputs[0]
        _require_float_matrix("x", x)
        _require_irreps("x", x, self.irreps_in)
        dtype = _require_same_dtype(list(zip(self.arguments, inputs)))
        if self.weight_numel:
            _require_weight("weight", inputs[1], self.weight_numel, self.shared_weights, x.shape[0])
        return TensorType((x.shape[0], self.irreps_out.dim), dtype, self.irreps_out)

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        x = values[0]
        rows = x.shape[0]
        out = np.zeros((rows, self.irreps_out.dim))
        slices_in, slices_out = self.irreps_in.slices(), self.irreps_out.slices()
        subscripts = "uw,zui->zwi" if self.shared_weights else "zuw,zui->zwi"
        for path in self.paths():
            mul_in, ir = self.irreps_in[path.i_in]
            mul_out = self.irreps_out[path.i_out].mul
            block = x[:, slices_in[path.i_in]].reshape(rows, mul_in, ir.dim)
            weight = values[1][..., path.weights]
            weight = weight.reshape(weight.shape[:-1] + (mul_in, mul_out))
            product = np.einsum(subscripts, weight, block).reshape(rows, mul_out * ir.dim)  # rows may be 0
            out[:, slices_out[path.i_out]] += path.coefficient * product
        return out

    def params(self) -> dict[str, Any]:
        return {"irreps_in": str(self.irreps_in), "irreps_out": str(self.irreps_out),
                "shared_weights": self.shared_weights}

    def describe(self) -> str:
        return f"{self.kind}({self.weight_numel} {'shared' if self.shared_weights else 'per-sample'} weights)"


@dataclass(frozen=True)
class ScatterSum(Operation):
    """Rows of ``x`` summed into ``size`` rows by an int64 ``index``: (m, d), (m,) -> (size, d)."""

    size: Dim
    kind: ClassVar[str] = "scatter_sum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_dim(self.size, "size"))

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("x", "index")

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        x, index = inputs
        _require_float_matrix("x", x)
        _require_index("index", index)
        _require_same_rows([("x", x), ("index", index)])
        return TensorType((self.size, x.shape[1]), x.dtype, x.irreps)

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        x, index = values
        size = sizes[self.size] if isinstance(self.size, str) else self.size
        _require_indices_below("index", inputs[1], index, size)
        out = np.zeros((size, x.shape[1]))
        np.add.at(out, index, x)
        return out


@dataclass(frozen=True)
class Elementwise(Operation):
    """``add``/``sub`` of two tensors of one type, ``mul`` of features by scalar channels, ``silu``
    of scalars.

    For ``mul``, ``b`` holds scalars (0e) only: one per irrep copy of ``a`` (each copy scaled
    by its own, in ``a``'s order, as e3nn's gates do) or a single one for the whole row.
    """

    function: str
    kind: ClassVar[str] = "elementwise"

    def __post_init__(self) -> None:
        if self.function not in ELEMENTWISE_FUNCTIONS:
            raise ValueError(f"elementwise function must be one of {ELEMENTWISE_FUNCTIONS}, got {self.function!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Elementwise":
        """Rebuild the operation from :meth:`params` output; the key ``op`` (the name of
        ``function`` in ``tpc.Graph/1`` JSON) is read as ``function``."""
        return cls(**{("function" if name == "op" else name): value for name, value in params.items()})

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("a",) if self.function == "silu" else ("a", "b")

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        a = inputs[0]
        if a.dtype not in DTYPES:
            raise ValueError(f"a {a.name!r} must be float32 or float64, got {a.dtype}")
        if self.function == "silu":
            _require_scalars("a", a)
            return a.type
        b = inputs[1]
        if self.function in ("add", "sub"):
            if b.type != a.type:
                raise ValueError(f"{self.function} needs operands of one type: a {a.name!r} is {a.type}, "
                                 f"b {b.name!r} is {b.type}")
            return a.type
        _require_float_matrix("a", a)
        _require_float_matrix("b", b)
        if a.irreps is None:
            raise ValueError(f"a {a.name!r} must have irreps to be multiplied by scalar channels")
        _require_scalars("b", b)
        if b.irreps.dim not in (1, a.irreps.num_irreps):
            raise ValueError(f"b {b.name!r} has {b.irreps.dim} scalars; mul needs 1 or one per irrep copy of a "
                             f"{a.name!r} ({a.irreps.num_irreps})")
        _require_same_rows([("a", a), ("b", b)])
        _require_same_dtype([("a", a), ("b", b)])
        return a.type

    def evaluate(self, values: Sequence[np.ndarray], inputs: Sequence[Tensor], sizes: Mapping[str, int]) -> np.ndarray:
        a = values[0]
        if self.function == "silu":
            return a * 0.5 * (1.0 + np.tanh(a / 2))
        b = values[1]
        if self.function == "add":
            return a + b
        if self.function == "sub":
            return a - b
        copy_dims = [ir.dim for mul, ir in inputs[0].irreps for _ in range(mul)]
        return a * (b if b.shape[1] == 1 else np.repeat(b, copy_dims, axis=1))


OPERATIONS: dict[str, type[Operation]] = {
    operation.kind: operation
    for operation in (Input, Gather, SphericalHarmonics, RadialBasis, TensorProductOp, Linear, ScatterSum, Elementwise)
}
"""Every operation class by its kind, as graph JSON names it."""


def operation_from_dict(data: Any) -> Operation:
    """Rebuild an operation from its :meth:`Operation.to_dict` form.

    Args:
        data: ``{"kind": ..., **params}``.

    Returns:
        The operation; malformed data raises ValueError saying what is wrong.
    """
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in OPERATIONS:
        raise ValueError(f"unknown operation kind {kind!r}; expected one of {sorted(OPERATIONS)}")
    try:
        return OPERATIONS[kind].from_params({name: value for name, value in data.items() if name != "kind"})
    except KeyError as error:
        raise ValueError(f"{kind} is missing the parameter {error.args[0]!r}") from None
    except TypeError as error:
        raise ValueError(f"bad parameters for {kind}: {error}") from None


@contextmanager
def blame(node: str, kind: str) -> Iterator[None]:
    """Prefix a ValueError or TypeError raised inside with the node's name and operation kind."""
    try:
        yield
    except (ValueError, TypeError) as error:
        raise type(error)(f"node {node!r} ({kind}): {error}") from error
