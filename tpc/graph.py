"""Tensor-product graphs: message-passing blocks as data.

A :class:`Graph` is a DAG of ops (gather, spherical harmonics, radial basis, tensor product,
linear, scatter-sum, elementwise) over named tensors, held in a ``networkx.DiGraph``. Every node
computes one tensor, named like the node; graph inputs are nodes too (op :class:`Input`).
Tensors carry a shape (integers and symbolic dims such as ``"edges"``), a dtype and, for
feature tensors, their irreps. The graph validates itself, draws itself, round-trips through
JSON, and evaluates itself in float64 numpy: the oracle that compiled blocks are checked
against. :meth:`Graph.nodes` lists the nodes in topological order with the types of their
inputs and outputs, which is what a lowering walks.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterator, Mapping, NamedTuple, Sequence, Union

import networkx as nx
import numpy as np

from tpc.irreps import Irrep, Irreps, IrrepsLike
from tpc.ops import TensorProduct
from tpc.so3 import spherical_harmonics
from tpc.so3.spherical_harmonics import NORMALIZATIONS

GRAPH_FORMAT = "tpc.Graph/1"
FLOAT_DTYPES = ("float32", "float64")
DTYPES = FLOAT_DTYPES + ("int64",)
ELEMENTWISE_OPS = ("add", "sub", "mul", "silu")
SCALAR = Irrep("0e")

Dim = Union[int, str]
"""One axis of a shape: a size, or the name of a size fixed when the graph is called."""


# -- tensors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorType:
    """Shape, dtype and (for feature tensors) irreps of a tensor.

    A dim is an integer >= 0 or a name (a Python identifier such as ``"edges"``); two tensors
    agree on a dim when the entries are equal. A tensor with irreps is a (rows, irreps.dim)
    float matrix in e3nn's flat layout.
    """

    shape: tuple[Dim, ...]
    dtype: str
    irreps: Irreps | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.shape, (list, tuple)):
            raise ValueError(f"shape must be a tuple of dims, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_check_dim(dim, f"shape {self.shape}") for dim in self.shape))
        try:
            dtype = self.dtype if isinstance(self.dtype, str) else np.dtype(self.dtype).name
        except TypeError:
            dtype = repr(self.dtype)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        if self.irreps is None:
            return
        irreps = Irreps(self.irreps)
        object.__setattr__(self, "irreps", irreps)
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"a tensor with irreps must be float32 or float64, got {dtype}")
        if len(self.shape) != 2 or self.shape[1] != irreps.dim:
            raise ValueError(f"a tensor with irreps {irreps} must have shape (rows, {irreps.dim}), got {self.shape}")

    @classmethod
    def parse(cls, shape: Sequence[Dim | IrrepsLike], dtype: str) -> "TensorType":
        """Read a builder shape: the last entry may be irreps (``("nodes", "8x0e+8x1o")``).

        A string entry that is a Python identifier is a symbolic dim; any other string, or an
        Irreps, in the last place gives the tensor those irreps and their dimension.
        """
        if not isinstance(shape, (list, tuple)):
            raise ValueError(f"shape must be a tuple such as ('nodes', '8x0e+8x1o'), got {shape!r}")
        entries = list(shape)
        if entries and (isinstance(entries[-1], Irreps)
                        or (isinstance(entries[-1], str) and not entries[-1].isidentifier())):
            irreps = Irreps(entries[-1])
            return cls(tuple(entries[:-1]) + (irreps.dim,), dtype, irreps)
        return cls(tuple(entries), dtype)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the inverse of :meth:`from_dict`)."""
        return {"shape": list(self.shape), "dtype": self.dtype,
                "irreps": None if self.irreps is None else str(self.irreps)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorType":
        """Rebuild a type from :meth:`to_dict` output."""
        return cls(data["shape"], data["dtype"], data.get("irreps"))

    def __str__(self) -> str:
        dims = [str(dim) for dim in self.shape]
        if self.irreps is not None:
            dims[-1] = str(self.irreps)
        return f"({', '.join(dims)}{',' if len(dims) == 1 else ''}) {self.dtype}"


@dataclass(frozen=True)
class Tensor:
    """A tensor of a graph: its name (the name of the node computing it) and its type.

    The builder methods of :class:`Graph` return these handles and take them as arguments.
    """

    name: str
    type: TensorType

    @property
    def shape(self) -> tuple[Dim, ...]:
        """The shape, symbolic dims included."""
        return self.type.shape

    @property
    def dtype(self) -> str:
        """The dtype: float32, float64 or int64."""
        return self.type.dtype

    @property
    def irreps(self) -> Irreps | None:
        """The irreps of a feature tensor, None for others."""
        return self.type.irreps


class Node(NamedTuple):
    """A validated node: its name, op, input tensors (in argument order) and output tensor."""

    name: str
    op: "Op"
    inputs: tuple[Tensor, ...]
    output: Tensor


def _check_dim(dim: Any, where: str) -> Dim:
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
        return int(dim)
    if isinstance(dim, str) and dim.isidentifier():
        return dim
    raise ValueError(f"bad dim {dim!r} in {where}: expected an integer >= 0 or a name such as 'edges'")


# -- checks shared by the ops ---------------------------------------------------------------


def _require_float_matrix(argument: str, tensor: Tensor) -> None:
    if tensor.dtype not in FLOAT_DTYPES:
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


# -- ops ------------------------------------------------------------------------------------


class Op(ABC):
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
    def from_params(cls, params: Mapping[str, Any]) -> "Op":
        """Rebuild the op from :meth:`params` output."""
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **params}``, the op's JSON form."""
        return {"kind": self.kind, **self.params()}

    def describe(self) -> str:
        """A one-line label: the kind and the parameters."""
        params = ", ".join(f"{name}={value}" for name, value in self.params().items())
        return f"{self.kind}({params})" if params else self.kind


@dataclass(frozen=True)
class Input(Op):
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
class Gather(Op):
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


class _OfVectors(Op):
    """An op computing features of the rows of one (rows, 3) ``vectors`` input, with the irreps
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
    """e3nn's spherical harmonics 0e+1o+2e+... up to ``lmax`` of vectors (rows, 3)."""

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
        return spherical_harmonics(list(range(self.lmax + 1)), values[0], self.normalize, self.normalization)


@dataclass(frozen=True)
class RadialBasis(_OfVectors):
    """e3nn's Bessel basis of the lengths of vectors (rows, 3), as MACE and NequIP scale it.

    Column k (k = 1..number) of a row with length r is
    ``sqrt(number) * sqrt(2 / cutoff) * sin(k pi r / cutoff) / r`` for ``0 < r < cutoff`` and 0
    elsewhere: ``soft_one_hot_linspace(r, 0, cutoff, number, "bessel", cutoff=True)`` times
    ``sqrt(number)``. At r = 0 e3nn's masked 0/0 gives NaN; here the mask's 0 wins.
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
        return np.where(inside, scale * np.sin(frequencies * safe_lengths) / safe_lengths, 0.0)


@dataclass(frozen=True)
class TensorProductOp(Op):
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
class Linear(Op):
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
            out[:, slices_out[path.i_out]] += path.coefficient * np.einsum(subscripts, weight, block).reshape(rows, -1)
        return out

    def params(self) -> dict[str, Any]:
        return {"irreps_in": str(self.irreps_in), "irreps_out": str(self.irreps_out),
                "shared_weights": self.shared_weights}

    def describe(self) -> str:
        return f"{self.kind}({self.weight_numel} {'shared' if self.shared_weights else 'per-sample'} weights)"


@dataclass(frozen=True)
class ScatterSum(Op):
    """Rows of ``x`` summed into ``size`` rows by an int64 ``index``: (m, d), (m,) -> (size, d)."""

    size: Dim
    kind: ClassVar[str] = "scatter_sum"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _check_dim(self.size, "size"))

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
class Elementwise(Op):
    """``add``/``sub`` of two tensors of one type, ``mul`` of features by scalar channels, ``silu``
    of scalars.

    For ``mul``, ``b`` holds scalars (0e) only: one per irrep copy of ``a`` (each copy scaled
    by its own, in ``a``'s order, as e3nn's gates do) or a single one for the whole row.
    """

    op: str
    kind: ClassVar[str] = "elementwise"

    def __post_init__(self) -> None:
        if self.op not in ELEMENTWISE_OPS:
            raise ValueError(f"elementwise op must be one of {ELEMENTWISE_OPS}, got {self.op!r}")

    @property
    def arguments(self) -> tuple[str, ...]:
        return ("a",) if self.op == "silu" else ("a", "b")

    def check(self, inputs: Sequence[Tensor]) -> TensorType:
        a = inputs[0]
        if a.dtype not in FLOAT_DTYPES:
            raise ValueError(f"a {a.name!r} must be float32 or float64, got {a.dtype}")
        if self.op == "silu":
            _require_scalars("a", a)
            return a.type
        b = inputs[1]
        if self.op in ("add", "sub"):
            if b.type != a.type:
                raise ValueError(f"{self.op} needs operands of one type: a {a.name!r} is {a.type}, b {b.name!r} is {b.type}")
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
        if self.op == "silu":
            return a * 0.5 * (1.0 + np.tanh(a / 2))
        b = values[1]
        if self.op == "add":
            return a + b
        if self.op == "sub":
            return a - b
        copy_dims = [ir.dim for mul, ir in inputs[0].irreps for _ in range(mul)]
        return a * (b if b.shape[1] == 1 else np.repeat(b, copy_dims, axis=1))


OPS: dict[str, type[Op]] = {op.kind: op for op in (Input, Gather, SphericalHarmonics, RadialBasis, TensorProductOp,
                                                    Linear, ScatterSum, Elementwise)}


def op_from_dict(data: Any) -> Op:
    """Rebuild an op from its :meth:`Op.to_dict` form; malformed data raises ValueError."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in OPS:
        raise ValueError(f"unknown op kind {kind!r}; expected one of {sorted(OPS)}")
    try:
        return OPS[kind].from_params({name: value for name, value in data.items() if name != "kind"})
    except KeyError as error:
        raise ValueError(f"{kind} is missing the parameter {error.args[0]!r}") from None
    except TypeError as error:
        raise ValueError(f"bad parameters for {kind}: {error}") from None


@contextmanager
def _blame(node: str, kind: str) -> Iterator[None]:
    """Prefix a ValueError or TypeError raised inside with the node's name and op kind."""
    try:
        yield
    except (ValueError, TypeError) as error:
        raise type(error)(f"node {node!r} ({kind}): {error}") from error


# -- the graph ------------------------------------------------------------------------------


class Graph:
    """A DAG of ops over named tensors, built with the methods below.

    Builder methods (``input``, ``gather``, ``spherical_harmonics``, ``radial_basis``,
    ``tensor_product``, ``linear``, ``scatter_sum``, ``elementwise``) check their node at once
    and return a :class:`Tensor` handle; ``output`` names a result. :meth:`add` is the
    unchecked low-level form (names may refer to nodes added later), checked as a whole by
    :meth:`validate`.
    """

    def __init__(self) -> None:
        self._dag = nx.DiGraph()
        self._outputs: dict[str, str] = {}

    @property
    def dag(self) -> nx.DiGraph:
        """A read-only view of the node DAG: node attributes ``op`` and ``inputs``."""
        return self._dag.copy(as_view=True)

    @property
    def outputs(self) -> dict[str, str]:
        """Output name -> name of the tensor it returns."""
        return dict(self._outputs)

    def __repr__(self) -> str:
        return f"Graph({sum(1 for _ in self._defined())} nodes, outputs {sorted(self._outputs)})"

    # -- building ---------------------------------------------------------------------------

    def add(self, name: str, op: Op, inputs: Sequence[str] = ()) -> None:
        """Add node ``name`` computing ``op`` from the tensors named ``inputs``, without checks
        beyond a unique name; :meth:`validate` checks the rest."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a node name must be a non-empty string, got {name!r}")
        if not isinstance(op, Op):
            raise TypeError(f"node {name!r}: op must be a tpc.graph.Op, got {type(op).__name__}")
        if "op" in self._dag.nodes.get(name, {}):
            raise ValueError(f"node {name!r} ({op.kind}): duplicate name, a node {name!r} "
                             f"({self._dag.nodes[name]['op'].kind}) already exists")
        inputs = tuple(inputs)
        if not all(isinstance(tensor, str) for tensor in inputs):
            raise TypeError(f"node {name!r}: inputs must be tensor names, got {inputs!r}")
        self._dag.add_node(name, op=op, inputs=inputs)
        self._dag.add_edges_from((tensor, name) for tensor in inputs)

    def input(self, name: str, shape: Sequence[Dim | IrrepsLike], dtype: str = "float32") -> Tensor:
        """A graph input, e.g. ``input("h", ("nodes", "8x0e+8x1o"))`` or ``input("senders",
        ("edges",), "int64")``."""
        with _blame(name, Input.kind):
            tensor_type = TensorType.parse(shape, dtype)
        return self._append(Input, (), name, type=tensor_type)

    def gather(self, x: Tensor, index: Tensor, name: str | None = None) -> Tensor:
        """Rows of ``x`` picked by ``index``: (n, d), (m,) int64 -> (m, d)."""
        return self._append(Gather, (x, index), name)

    def spherical_harmonics(self, vectors: Tensor, lmax: int, normalize: bool = True,
                            normalization: str = "component", name: str | None = None) -> Tensor:
        """e3nn's harmonics ``0e+1o+2e+...`` up to ``lmax`` of vectors (rows, 3)."""
        return self._append(SphericalHarmonics, (vectors,), name, lmax=lmax, normalize=normalize,
                            normalization=normalization)

    def radial_basis(self, vectors: Tensor, number: int, cutoff: float, name: str | None = None) -> Tensor:
        """``number`` Bessel functions of the lengths of vectors (rows, 3), zero from ``cutoff`` on
        (e3nn's bessel ``soft_one_hot_linspace`` times ``sqrt(number)``): (rows, number) scalars."""
        return self._append(RadialBasis, (vectors,), name, number=number, cutoff=cutoff)

    def tensor_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None, tp: TensorProduct,
                       name: str | None = None) -> Tensor:
        """``tp(x1, x2, weight)``; ``weight`` is None when ``tp`` has no weights."""
        inputs = (x1, x2) if weight is None else (x1, x2, weight)
        return self._append(TensorProductOp, inputs, name, tp=tp)

    def linear(self, x: Tensor, irreps_out: IrrepsLike, weight: Tensor | None, name: str | None = None) -> Tensor:
        """e3nn's ``o3.Linear(x.irreps, irreps_out)`` with ``weight`` of shape (weight_numel,)
        (shared) or (rows, weight_numel) (per sample); None when there are no weights."""
        inputs = (x,) if weight is None else (x, weight)
        shared = not (isinstance(weight, Tensor) and len(weight.shape) == 2)
        irreps_in = x.irreps if isinstance(x, Tensor) else None
        return self._append(Linear, inputs, name, irreps_in=irreps_in, irreps_out=irreps_out, shared_weights=shared)

    def scatter_sum(self, x: Tensor, index: Tensor, size: Dim, name: str | None = None) -> Tensor:
        """Rows of ``x`` summed onto ``size`` rows (a dim, e.g. ``"nodes"``) by ``index``."""
        return self._append(ScatterSum, (x, index), name, size=size)

    def elementwise(self, op: str, a: Tensor, b: Tensor | None = None, name: str | None = None) -> Tensor:
        """``add``, ``sub``, ``mul`` (by scalar channels) of ``a`` and ``b``, or ``silu`` of scalars ``a``."""
        return self._append(Elementwise, (a,) if b is None else (a, b), name, op=op)

    def output(self, name: str, tensor: Tensor | str) -> None:
        """Return ``tensor`` (a handle, or a tensor name for graphs built with :meth:`add`) as
        the output ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an output name must be a non-empty string, got {name!r}")
        if name in self._outputs:
            raise ValueError(f"output {name!r}: duplicate output name (it returns {self._outputs[name]!r})")
        if isinstance(tensor, Tensor):
            self._check_handle(f"output {name!r}", tensor)
            tensor = tensor.name
        if not isinstance(tensor, str):
            raise TypeError(f"output {name!r}: expected a Tensor or a tensor name, got {type(tensor).__name__}")
        self._outputs[name] = tensor

    def _append(self, op_class: type[Op], inputs: Sequence[Tensor], name: str | None, **params: Any) -> Tensor:
        name = self._fresh_name(op_class.kind) if name is None else name
        with _blame(name, op_class.kind):
            op = op_class(**params)
            if len(inputs) != len(op.arguments):
                raise ValueError(f"takes {len(op.arguments)} inputs ({', '.join(op.arguments)}), got {len(inputs)}")
            for argument, tensor in zip(op.arguments, inputs):
                self._check_handle(argument, tensor)
            output_type = op.check(inputs)
        self.add(name, op, [tensor.name for tensor in inputs])
        self._dag.nodes[name]["type"] = output_type
        return Tensor(name, output_type)

    def _check_handle(self, role: str, tensor: Any) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{role} must be a Tensor returned by this graph's methods, got {type(tensor).__name__}")
        if self._dag.nodes.get(tensor.name, {}).get("type") != tensor.type:
            raise ValueError(f"{role} {tensor.name!r} is not a tensor of this graph")

    def _fresh_name(self, kind: str) -> str:
        return next(name for name in (f"{kind}_{i}" for i in itertools.count()) if name not in self._dag)

    def _topological_order(self) -> list[str]:
        """Nodes in topological order, ties broken by insertion order (deterministic)."""
        position = {name: index for index, name in enumerate(self._dag)}
        return list(nx.lexicographical_topological_sort(self._dag, key=position.__getitem__))

    def _defined(self) -> Iterator[tuple[str, dict]]:
        return ((name, data) for name, data in self._dag.nodes(data=True) if "op" in data)

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> dict[str, TensorType]:
        """Check the whole graph and return the type of every tensor.

        Raises ValueError naming the node (and tensor) for: an input that no node produces, a
        wrong number of inputs, a cycle, no outputs or an output of an unknown tensor,
        disagreeing shapes, dtypes or irreps along an edge, an unused graph input or node
        result, and a symbolic dim that no graph input fixes.
        """
        for name, data in self._dag.nodes(data=True):
            if "op" in data:
                continue
            consumer = next(iter(self._dag.successors(name)))
            kind = self._dag.nodes[consumer]["op"].kind
            raise ValueError(f"node {consumer!r} ({kind}): input {name!r} is not produced by any node or graph input")
        for name, data in self._defined():
            arguments = data["op"].arguments
            if len(data["inputs"]) != len(arguments):
                raise ValueError(f"node {name!r} ({data['op'].kind}): takes {len(arguments)} inputs "
                                 f"({', '.join(arguments)}), got {len(data['inputs'])}: {list(data['inputs'])}")
        try:
            cycle = nx.find_cycle(self._dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle is not None:
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            raise ValueError(f"node {cycle[0][0]!r} ({self._dag.nodes[cycle[0][0]]['op'].kind}): "
                             f"the graph has a cycle: {path}")
        if not self._outputs:
            raise ValueError("the graph has no outputs: name at least one result with output(name, tensor)")
        for output, tensor in self._outputs.items():
            if tensor not in self._dag:
                raise ValueError(f"output {output!r}: tensor {tensor!r} is not produced by any node or graph input")
        types: dict[str, TensorType] = {}
        for name in self._topological_order():
            data = self._dag.nodes[name]
            with _blame(name, data["op"].kind):
                types[name] = data["op"].check([Tensor(tensor, types[tensor]) for tensor in data["inputs"]])
            data["type"] = types[name]
        returned = set(self._outputs.values())
        for name, data in self._defined():
            if self._dag.out_degree(name) == 0 and name not in returned:
                problem = ("graph input is never used" if isinstance(data["op"], Input)
                           else "result is never used: no node takes it and it is not an output")
                raise ValueError(f"node {name!r} ({data['op'].kind}): {problem}")
        bound = {dim for name, data in self._defined() if isinstance(data["op"], Input)
                 for dim in types[name].shape if isinstance(dim, str)}
        for name, tensor_type in types.items():
            for dim in tensor_type.shape:
                if isinstance(dim, str) and dim not in bound:
                    raise ValueError(f"node {name!r} ({self._dag.nodes[name]['op'].kind}): dim {dim!r} is not "
                                     "a dim of any graph input, so its size is never known")
        return types

    def nodes(self) -> list[Node]:
        """The validated nodes in topological order, graph inputs included, each with its input
        and output tensors (names and types): what a lowering walks."""
        types = self.validate()
        return [Node(name, self._dag.nodes[name]["op"],
                     tuple(Tensor(tensor, types[tensor]) for tensor in self._dag.nodes[name]["inputs"]),
                     Tensor(name, types[name]))
                for name in self._topological_order()]

    # -- evaluation -------------------------------------------------------------------------

    def reference(self, **inputs: Any) -> dict[str, np.ndarray]:
        """Evaluate the graph in float64 numpy, node by node in topological order.

        Keyword arguments are the graph inputs by name (float arrays are taken to float64,
        index arrays to int64); symbolic dims take their sizes from them. Returns the outputs
        by name.
        """
        nodes = self.nodes()
        graph_inputs = [node for node in nodes if isinstance(node.op, Input)]
        missing = sorted({node.name for node in graph_inputs} - inputs.keys())
        unknown = sorted(inputs.keys() - {node.name for node in graph_inputs})
        if missing or unknown:
            raise ValueError(f"reference() needs exactly the graph inputs: missing {missing}, unknown {unknown}")
        sizes: dict[str, int] = {}
        values: dict[str, np.ndarray] = {}
        for node in graph_inputs:
            with _blame(node.name, node.op.kind):
                values[node.name] = _bind(inputs[node.name], node.output.type, sizes)
        for node in nodes:
            if not isinstance(node.op, Input):
                with _blame(node.name, node.op.kind):
                    values[node.name] = node.op.evaluate([values[tensor.name] for tensor in node.inputs],
                                                         node.inputs, sizes)
        return {output: values[tensor] for output, tensor in self._outputs.items()}

    # -- drawing ----------------------------------------------------------------------------

    def to_dot(self) -> str:
        """Graphviz dot text: one box per node (name, op, output shape/irreps), edges labelled
        with the argument they feed, one oval per output."""
        lines = ["digraph tpc_graph {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
        nodes = self.nodes()
        for node in nodes:
            shape = "ellipse" if isinstance(node.op, Input) else "box"
            label = f"{node.name}\n{node.op.describe()}\n{node.output.type}"
            lines.append(f"  {_quote('node:' + node.name)} [label={_quote(label)}, shape={shape}];")
        for node in nodes:
            for argument, tensor in zip(node.op.arguments, node.inputs):
                lines.append(f"  {_quote('node:' + tensor.name)} -> {_quote('node:' + node.name)} "
                             f"[label={_quote(argument)}];")
        for output, tensor in self._outputs.items():
            lines.append(f"  {_quote('output:' + output)} [label={_quote('output ' + output)}, shape=doubleoctagon];")
            lines.append(f"  {_quote('node:' + tensor)} -> {_quote('output:' + output)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def draw(self, path: str | os.PathLike) -> None:
        """Draw the graph into an image file (format from the suffix), one row per topological
        generation. matplotlib is an optional dependency, imported here."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise RuntimeError('drawing a graph needs matplotlib: pip install "tpc[plot]"') from None
        nodes = {node.name: node for node in self.nodes()}
        returned: dict[str, list[str]] = {}
        for output, tensor in self._outputs.items():
            returned.setdefault(tensor, []).append(output)
        position = {name: index for index, name in enumerate(self._dag)}
        generations = [sorted(generation, key=position.__getitem__)
                       for generation in nx.topological_generations(self._dag)]
        width = max(len(generation) for generation in generations)
        figure = Figure(figsize=(3.2 * width + 1, 1.3 * len(generations) + 1), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.set_axis_off()
        axes.set_xlim(-width / 2, width / 2)
        axes.set_ylim(-len(generations) + 0.5, 0.5)
        boxes = {}
        for depth, generation in enumerate(generations):
            for slot, name in enumerate(generation):
                node = nodes[name]
                label = "\n".join([name, node.op.describe(), str(node.output.type)]
                                  + [f"-> output {output}" for output in returned.get(name, [])])
                boxes[name] = axes.text(slot - (len(generation) - 1) / 2, -depth, label, ha="center", va="center",
                                        fontsize=7, family="monospace",
                                        bbox={"boxstyle": "round", "facecolor": "#e8f0fe" if isinstance(
                                            node.op, Input) else "white", "edgecolor": "#555555"})
        for producer, consumer in self._dag.edges:
            axes.annotate("", xy=(0.5, 1.0), xycoords=boxes[consumer], xytext=(0.5, 0.0), textcoords=boxes[producer],
                          arrowprops={"arrowstyle": "->", "color": "#555555"})
        figure.savefig(path)

    # -- serialization ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form: format tag, nodes in insertion order, outputs."""
        return {
            "format": GRAPH_FORMAT,
            "nodes": [{"name": name, "op": data["op"].to_dict(), "inputs": list(data["inputs"])}
                      for name, data in self._defined()],
            "outputs": dict(self._outputs),
        }

    def to_json(self) -> str:
        """The graph as JSON text (tensor products as ``TensorProduct.to_dict``)."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> "Graph":
        """Rebuild and validate a graph from :meth:`to_dict` output; malformed data raises
        ValueError saying what is wrong and where."""
        if not isinstance(data, dict) or data.get("format") != GRAPH_FORMAT:
            raise ValueError(f"not a tpc graph: expected a JSON object with format {GRAPH_FORMAT!r}")
        nodes, outputs = data.get("nodes"), data.get("outputs")
        if not isinstance(nodes, list):
            raise ValueError("graph JSON: 'nodes' must be a list of {name, op, inputs} objects")
        if not isinstance(outputs, dict):
            raise ValueError("graph JSON: 'outputs' must be an object mapping output names to tensor names")
        graph = cls()
        for position, entry in enumerate(nodes):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f"graph JSON: node {position} has no name")
            if "op" not in entry or not isinstance(entry.get("inputs"), list):
                raise ValueError(f"graph JSON: node {name!r} needs an 'op' object and an 'inputs' list")
            try:
                op = op_from_dict(entry["op"])
            except (ValueError, TypeError) as error:
                raise ValueError(f"graph JSON: node {name!r}: {error}") from None
            try:
                graph.add(name, op, entry["inputs"])
            except TypeError as error:
                raise ValueError(f"graph JSON: {error}") from None
        for output, tensor in outputs.items():
            try:
                graph.output(output, tensor)
            except TypeError as error:
                raise ValueError(f"graph JSON: {error}") from None
        graph.validate()
        return graph

    @classmethod
    def from_json(cls, text: str) -> "Graph":
        """Rebuild and validate a graph from :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"graph JSON is not valid JSON: {error}") from None
        return cls.from_dict(data)


def _bind(value: Any, tensor_type: TensorType, sizes: dict[str, int]) -> np.ndarray:
    """``value`` as a float64 (or int64) array of ``tensor_type``'s shape; symbolic dims seen for
    the first time are recorded in ``sizes``, later ones must agree."""
    array = np.asarray(value)
    wanted_kind = np.integer if tensor_type.dtype == "int64" else np.floating
    if not np.issubdtype(array.dtype, wanted_kind):
        raise TypeError(f"expected a {tensor_type.dtype} array, got dtype {array.dtype}")
    if array.ndim != len(tensor_type.shape):
        raise ValueError(f"expected shape {tensor_type.shape}, got an array of shape {array.shape}")
    for axis, (dim, size) in enumerate(zip(tensor_type.shape, array.shape)):
        if isinstance(dim, int) and dim != size:
            raise ValueError(f"expected shape {tensor_type.shape}, got an array of shape {array.shape}")
        if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
            raise ValueError(f"dim {dim!r} (axis {axis}) is {size} here but {sizes[dim]} in an earlier input")
    return array.astype(np.int64 if tensor_type.dtype == "int64" else np.float64)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
