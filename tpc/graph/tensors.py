"""The tensors of a graph: their types (shape, dtype, irreps), handles and validated nodes.

Every node of a :class:`tpc.graph.Graph` computes one tensor, named like the node. A shape
mixes integers and symbolic dims (names such as ``"edges"``, fixed when the graph is called).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence, Union

import numpy as np

from tpc.dtypes import DTYPES
from tpc.irreps import Irrep, Irreps, IrrepsLike

if TYPE_CHECKING:
    from tpc.graph.operations import Operation

TENSOR_DTYPES = DTYPES + ("int64",)
"""The dtypes of graph tensors: the float dtypes tpc compiles for, and int64 for indices."""
SCALAR = Irrep("0e")

Dim = Union[int, str]
"""One axis of a shape: a size, or the name of a size fixed when the graph is called."""


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
        object.__setattr__(self, "shape", tuple(check_dim(dim, f"shape {self.shape}") for dim in self.shape))
        try:
            dtype = self.dtype if isinstance(self.dtype, str) else np.dtype(self.dtype).name
        except TypeError:
            dtype = repr(self.dtype)
        if dtype not in TENSOR_DTYPES:
            raise ValueError(f"dtype must be one of {TENSOR_DTYPES}, got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        if self.irreps is None:
            return
        irreps = Irreps(self.irreps)
        object.__setattr__(self, "irreps", irreps)
        if dtype not in DTYPES:
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
    """A validated node: its name, operation (``op``), input tensors (in argument order) and
    output tensor."""

    name: str
    op: "Operation"
    inputs: tuple[Tensor, ...]
    output: Tensor


def check_dim(dim: Any, where: str) -> Dim:
    """``dim`` as a shape entry (an integer >= 0 or a name); anything else raises ValueError
    saying ``where`` it was found."""
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
        return int(dim)
    if isinstance(dim, str) and dim.isidentifier():
        return dim
    raise ValueError(f"bad dim {dim!r} in {where}: expected an integer >= 0 or a name such as 'edges'")
