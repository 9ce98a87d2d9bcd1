"""Ops: what one compiled kernel computes, as one value.

:class:`Op` is what every kind of op offers the compiler, the cache, the tuner and the checks.
A :class:`ProductOp` is computed from one tensor product spec: the product itself
(:class:`Product`), its gradient with respect to some of its arguments (:class:`Gradient`) or
the product fused with the gather of its x1 and/or the scatter-sum of its output
(:class:`Fused`). The op is what schedules are cached and tuned for: its fingerprint keys the
records, its ``schedule_key`` picks the knob space, its ``algorithms`` are those that compute
exactly its function, and ``reference`` is its float64 truth.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from tpc.ops.gaunt_form import gaunt_form_problem, require_gaunt_form
from tpc.ops.symmetric_contraction import SymmetricContraction
from tpc.ops.tensor_product import WRT, TensorProduct

ALGORITHMS = ("cg", "fourier", "grid")
"""Clebsch-Gordan computes every op; the grid and 2D Fourier algorithms only Gaunt products."""
GRID_FROM_DEGREE = 4
"""Gaunt products whose largest degree is at least this default to the grid algorithm, whose
default schedule is the faster one from there on (see docs/measurements.md)."""
FUSIONS = ("gather", "scatter", "gather+scatter")
"""The neighbours a product can be fused with in a graph (see :mod:`tpc.lower.convolution`)."""
JOINT_GRADIENTS = ("x1+x2", "x1+weight", "x2+weight", "x1+x2+weight")
"""The ``wrt`` of every gradient with respect to several arguments, in canonical order."""
OP_FORMAT = "tpc.Op/1"


class Op(ABC):
    """What one kernel computes: see the module docstring. Subclasses are frozen dataclasses."""

    kind: ClassVar[str] = ""
    indexed: ClassVar[bool] = False
    """Whether the op's kernels take index arrays (senders, receivers, offsets) and a node count."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """The op's identity in tuning records and the schedule cache."""

    @property
    @abstractmethod
    def schedule_key(self) -> str | None:
        """The schedule registry's name of the op (None: a product)."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms that compute exactly this op's function, "cg" first."""
        return ("cg",)

    @property
    def default_algorithm(self) -> str:
        """The algorithm used without a tuned schedule."""
        return "cg"

    @property
    @abstractmethod
    def output_width(self) -> int:
        """Columns of the compiled function's ``out`` per row (several gradients: side by side)."""

    @abstractmethod
    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        """The shape of each argument of the op's kernels for ``batch`` samples (edges for a fused
        op, whose ``nodes`` counts the rows of gathered x1 and of scatter-summed results)."""

    def output_shape(self, batch: int, nodes: int | None = None) -> tuple[int, ...]:
        """The shape of the op's result (arguments as in :meth:`argument_shapes`)."""
        return (batch, self.output_width)

    @abstractmethod
    def flops(self, batch: int = 1) -> int:
        """Floating-point operations of ``batch`` samples, counted for the direct evaluation."""

    @abstractmethod
    def reference(self, *arguments: Any, **indices: Any) -> np.ndarray:
        """The op's result in float64 numpy: the numerical truth its kernels are checked against."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The op as JSON-ready data, with ``format`` and ``kind`` (see :func:`op_from_dict`)."""

    def check_algorithm(self, algorithm: str) -> None:
        """Raise ValueError if ``algorithm`` is unknown or does not compute this op's function."""
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}; available: {list(ALGORITHMS)}")
        if algorithm not in self.algorithms:
            raise ValueError(f"{self.description} is computed with {list(self.algorithms)} only, not {algorithm!r}")

    @property
    def description(self) -> str:
        """A few words naming the op, for messages and tables."""
        return self.kind


@dataclass(frozen=True)
class ProductOp(Op):
    """An op computed from one tensor product spec ``tp``: its product, a gradient, a fused product."""

    tp: TensorProduct

    def __post_init__(self) -> None:
        if not isinstance(self.tp, TensorProduct):
            raise TypeError(f"an op takes a TensorProduct, got {type(self.tp).__name__}")

    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, shape in self.tp.input_shapes(batch).items()
                if name != "weight" or self.tp.weight_numel}

    def flops(self, batch: int = 1) -> int:
        """The product's FLOPs (:meth:`tpc.TensorProduct.flops`): each gradient costs about as much."""
        return self.tp.flops(batch)

    def to_dict(self) -> dict[str, Any]:
        return {"format": OP_FORMAT, "kind": self.kind, "spec": self.tp.to_dict(), **self._parameters()}

    def _parameters(self) -> dict[str, str]:
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProductOp":
        """Rebuild an op of this class from :meth:`to_dict`."""
        parameters = {name: data[name] for name in ("wrt", "fusion") if name in data}
        return cls(TensorProduct.from_dict(data["spec"]), **parameters)


@dataclass(frozen=True)
class Product(ProductOp):
    """The tensor product ``tp(x1, x2, weight)`` itself.

    >>> import tpc
    >>> op = Product(tpc.presets.get("mace-l2").tp)
    >>> op.fingerprint == op.tp.fingerprint
    True
    """

    kind: ClassVar[str] = "product"

    @property
    def fingerprint(self) -> str:
        return self.tp.fingerprint

    @property
    def schedule_key(self) -> None:
        return None

    @property
    def algorithms(self) -> tuple[str, ...]:
        return ALGORITHMS if gaunt_form_problem(self.tp) is None else ("cg",)

    def check_algorithm(self, algorithm: str) -> None:
        """As :meth:`Op.check_algorithm`; for a product that is not a Gaunt product, the error says why."""
        if algorithm in ALGORITHMS and algorithm not in self.algorithms:
            require_gaunt_form(self.tp, algorithm)
        super().check_algorithm(algorithm)

    @property
    def default_algorithm(self) -> str:
        """The grid for Gaunt products of degree >= :data:`GRID_FROM_DEGREE`, else Clebsch-Gordan."""
        if "grid" not in self.algorithms:
            return "cg"
        degree = max(ir.l for _, ir in self.tp.irreps_in1 + self.tp.irreps_in2 + self.tp.irreps_out)
        return "grid" if degree >= GRID_FROM_DEGREE else "cg"

    @property
    def output_width(self) -> int:
        return self.tp.irreps_out.dim

    def reference(self, x1: Any, x2: Any, weight: Any = None) -> np.ndarray:
        """``tp(x1, x2, weight)`` in float64."""
        return self.tp.reference(x1, x2, weight)


@dataclass(frozen=True)
class Gradient(ProductOp):
    """The gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt``.

    ``wrt`` names one argument ("x1", "x2", "weight") or several joined by "+" in that order
    ("x1+weight"); it is stored in that canonical order. Several are computed in one pass.

    >>> import tpc
    >>> Gradient(tpc.presets.get("mace-l2").tp, "weight+x1").wrt
    'x1+weight'
    """

    wrt: str = "x1"
    kind: ClassVar[str] = "gradient"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.wrt, str):
            raise ValueError(f"wrt must be a string such as 'x1' or 'x1+weight', got {self.wrt!r}")
        names = self.wrt.split("+")
        unknown = [name for name in names if name not in WRT]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"wrt must name arguments among {WRT}, each once, joined by '+'; got {self.wrt!r}")
        if "weight" in names and not self.tp.weight_numel:
            raise ValueError("this tensor product has no weights to take the gradient with respect to")
        object.__setattr__(self, "wrt", "+".join(name for name in WRT if name in names))

    @property
    def arguments(self) -> tuple[str, ...]:
        """The arguments the gradient is taken with respect to, in the order of ``WRT``."""
        return tuple(self.wrt.split("+"))

    @property
    def fingerprint(self) -> str:
        """sha256 of the product's fingerprint plus "/d" and ``wrt``."""
        return hashlib.sha256(f"{self.tp.fingerprint}/d{self.wrt}".encode()).hexdigest()

    @property
    def schedule_key(self) -> str:
        return self.wrt

    @property
    def output_width(self) -> int:
        return sum(self.output_widths)

    @property
    def output_widths(self) -> tuple[int, ...]:
        """Columns per sample of the compiled function's output for each argument, in order (one
        output each; the weights' per sample also where they are shared)."""
        widths = {"x1": self.tp.irreps_in1.dim, "x2": self.tp.irreps_in2.dim, "weight": self.tp.weight_numel}
        return tuple(widths[name] for name in self.arguments)

    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        return {**super().argument_shapes(batch), "grad": (batch, self.tp.irreps_out.dim)}

    def output_shape(self, batch: int, nodes: int | None = None) -> tuple[int, ...]:
        """The argument's shape (shared weights: summed over the batch); several: ``(batch, output_width)``."""
        if len(self.arguments) > 1:
            return (batch, self.output_width)
        return self.tp.input_shapes(batch)[self.wrt]

    @property
    def description(self) -> str:
        return f"the gradient with respect to {self.wrt}"

    def reference(self, x1: Any, x2: Any, weight: Any, grad: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """The gradient shaped like its argument (shared weights: summed over the batch); with
        several arguments, one such array each, in the order of ``arguments``."""
        parts = tuple(self.tp.reference_gradient(x1, x2, weight, grad, name) for name in self.arguments)
        return parts[0] if len(parts) == 1 else parts

    def _parameters(self) -> dict[str, str]:
        return {"wrt": self.wrt}


@dataclass(frozen=True)
class Fused(ProductOp):
    """The product fused with the gather of its x1 and/or the scatter-sum of its output.

    ``fusion`` is one of :data:`FUSIONS`. With the gather, x1 holds one row per node and
    ``senders`` (one per edge) picks each edge's row; with the scatter-sum, edges are sorted
    by receiver and ``offsets`` (receivers + 1 entries) bound each receiver's run of edges.

    >>> import tpc
    >>> Fused(tpc.presets.get("mace-l2").tp, "gather+scatter").gather
    True
    """

    fusion: str = "gather+scatter"
    kind: ClassVar[str] = "fused"
    indexed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; expected one of {list(FUSIONS)}")

    @property
    def gather(self) -> bool:
        """Whether the gather of x1 is fused in."""
        return "gather" in self.fusion.split("+")

    @property
    def scatter(self) -> bool:
        """Whether the scatter-sum of the output is fused in."""
        return "scatter" in self.fusion.split("+")

    @property
    def fingerprint(self) -> str:
        """sha256 of the product's fingerprint plus "/fused:" and ``fusion``."""
        return hashlib.sha256(f"{self.tp.fingerprint}/fused:{self.fusion}".encode()).hexdigest()

    @property
    def schedule_key(self) -> str:
        return self.fusion

    @property
    def output_width(self) -> int:
        return self.tp.irreps_out.dim

    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        shapes = super().argument_shapes(batch)
        if self.gather:
            shapes = {"x1": (self._nodes(nodes), self.tp.irreps_in1.dim), "senders": (batch,),
                      **{name: shape for name, shape in shapes.items() if name != "x1"}}
        if self.scatter:
            shapes["offsets"] = (self._nodes(nodes) + 1,)
        return shapes

    def output_shape(self, batch: int, nodes: int | None = None) -> tuple[int, ...]:
        return (self._nodes(nodes) if self.scatter else batch, self.output_width)

    def _nodes(self, nodes: int | None) -> int:
        return _node_count(self, nodes)

    @property
    def description(self) -> str:
        return f"the product fused with its {self.fusion}"

    def reference(self, x1: Any, x2: Any, weight: Any = None, *, senders: Any = None,
                  offsets: Any = None) -> np.ndarray:
        """The fused result in float64: one row per receiver with the scatter-sum, else per edge."""
        x1 = np.asarray(x1, dtype=np.float64)
        if self.gather:
            x1 = x1[np.asarray(senders)]
        messages = self.tp.reference(x1, np.asarray(x2, dtype=np.float64),
                                     None if weight is None else np.asarray(weight, dtype=np.float64))
        if not self.scatter:
            return messages
        lengths = np.diff(np.asarray(offsets))
        receivers = np.repeat(np.arange(lengths.size), lengths)
        summed = np.zeros((lengths.size, messages.shape[1]))
        np.add.at(summed, receivers, messages)
        return summed

    def _parameters(self) -> dict[str, str]:
        return {"fusion": self.fusion}


@dataclass(frozen=True)
class ConvolutionGradient(ProductOp):
    """The gradients of a message-passing convolution, per edge.

    For ``out[n] = sum over edges e with receivers[e] = n of tp(x1[senders[e]], x2[e], weight[e])``
    and an output gradient ``grad`` (one row per node), each edge's gradients of
    ``<grad, out>``: with respect to x2 and its weights, and its term of the gradient with
    respect to x1 (summed onto the senders afterwards). One kernel computes all three, reading
    x1 through ``senders`` and grad through ``receivers`` (any edge order).

    >>> import tpc
    >>> ConvolutionGradient(tpc.presets.get("mace-l2").tp).output_widths
    (1152, 16, 1664)
    """

    kind: ClassVar[str] = "convolution-gradient"
    indexed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tp.weight_numel and self.tp.shared_weights:
            raise ValueError("convolution gradients are compiled for per-edge weights (shared_weights=False) "
                             "or products without weights")

    @property
    def fingerprint(self) -> str:
        """sha256 of the product's fingerprint plus "/convolution-gradient"."""
        return hashlib.sha256(f"{self.tp.fingerprint}/{self.kind}".encode()).hexdigest()

    @property
    def schedule_key(self) -> str:
        return self.kind

    @property
    def arguments(self) -> tuple[str, ...]:
        """The arguments of the per-edge gradients, in output order."""
        return ("x1", "x2", "weight") if self.tp.weight_numel else ("x1", "x2")

    @property
    def output_widths(self) -> tuple[int, ...]:
        """Columns per edge of each output: x1's term, x2's, the weights'."""
        return Gradient(self.tp, "+".join(self.arguments)).output_widths

    @property
    def output_width(self) -> int:
        return sum(self.output_widths)

    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        shapes = super().argument_shapes(batch)
        nodes = _node_count(self, nodes)
        return {"x1": (nodes, self.tp.irreps_in1.dim), "senders": (batch,),
                **{name: shape for name, shape in shapes.items() if name != "x1"},
                "grad": (nodes, self.tp.irreps_out.dim), "receivers": (batch,)}

    @property
    def description(self) -> str:
        return "the per-edge gradients of the convolution"

    def reference(self, x1: Any, x2: Any, weight: Any, grad: Any, *, senders: Any,
                  receivers: Any) -> tuple[np.ndarray, ...]:
        """Each edge's gradients in float64, one array per argument (x1's before its sum onto the senders)."""
        edge_x1 = np.asarray(x1, dtype=np.float64)[np.asarray(senders)]
        edge_grad = np.asarray(grad, dtype=np.float64)[np.asarray(receivers)]
        weight = None if weight is None else np.asarray(weight, dtype=np.float64)
        return tuple(self.tp.reference_gradient(edge_x1, np.asarray(x2, dtype=np.float64), weight, edge_grad, name)
                     for name in self.arguments)


@dataclass(frozen=True)
class Contraction(Op):
    """MACE's symmetric contraction (:class:`~tpc.ops.SymmetricContraction`), its gradient with
    respect to the node features (``wrt="x"``), or its weights' gradient per node (``"weight"``).
    With ``tangent=True``, the derivative of that function of x along a direction ``tangent``:
    the three pieces of the x gradient's own gradient (second derivatives).

    Arguments: ``x`` (nodes, channels, D), ``elements`` (int64, one per node), ``weights`` (a
    list: per output irrep, per order 1..correlation, ``(num_elements, paths, channels)``), for
    a gradient ``grad`` (nodes, irreps_out.dim), and for a tangent op ``tangent`` (shaped as x).
    A batch counts nodes.

    >>> import tpc
    >>> Contraction(tpc.SymmetricContraction("4x0e+4x1o", "4x0e", 2, 3), "x").output_width
    16
    """

    spec: SymmetricContraction
    wrt: str = ""
    tangent: bool = False
    kind: ClassVar[str] = "symmetric-contraction"
    indexed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.spec, SymmetricContraction):
            raise TypeError(f"a contraction op takes a SymmetricContraction, got {type(self.spec).__name__}")
        if self.wrt not in ("", "x", "weight"):
            raise ValueError(f"a contraction's wrt is '' (the forward), 'x' or 'weight', got {self.wrt!r}")
        if not isinstance(self.tangent, bool):
            raise TypeError(f"a contraction's tangent is a bool, got {type(self.tangent).__name__}")

    @property
    def fingerprint(self) -> str:
        """sha256 of the spec's fingerprint plus "/d" and ``wrt`` for a gradient, and "/tangent"."""
        suffix = (f"/d{self.wrt}" if self.wrt else "") + ("/tangent" if self.tangent else "")
        return hashlib.sha256(f"{self.spec.fingerprint}{suffix}".encode()).hexdigest()

    @property
    def schedule_key(self) -> str:
        """"symmetric-contraction", then ":x" or ":weight" for a gradient and ":tangent" for a tangent op."""
        return self.key_of(self.wrt, self.tangent)

    @classmethod
    def key_of(cls, wrt: str, tangent: bool) -> str:
        """The :attr:`schedule_key` of the op with ``wrt`` and ``tangent``, without a spec."""
        return ":".join([cls.kind] + ([wrt] if wrt else []) + (["tangent"] if tangent else []))

    @classmethod
    def from_schedule_key(cls, spec: SymmetricContraction, key: str) -> "Contraction":
        """The op of ``spec`` whose :attr:`schedule_key` is ``key``."""
        kind, *parts = key.split(":")
        tangent = parts[-1:] == ["tangent"]
        wrt = parts[:-1] if tangent else parts
        if kind != cls.kind or len(wrt) > 1:
            raise ValueError(f"{key!r} is not the schedule key of a symmetric contraction op")
        return cls(spec, wrt[0] if wrt else "", tangent)

    @property
    def output_width(self) -> int:
        """Values per node: the output, x's components, or the weights' per node (paths x channels)."""
        if self.wrt == "x":
            return self.spec.channels * self.spec.coupling_irreps.dim
        if self.wrt == "weight":
            return sum(shape[1] * shape[2] for _, _, shape in self.spec.weight_shapes())
        return self.spec.irreps_out.dim

    def argument_shapes(self, batch: int, nodes: int | None = None) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"x": (batch, self.spec.channels, self.spec.coupling_irreps.dim),
                                              "elements": (batch,)}
        if self.wrt:
            shapes["grad"] = (batch, self.spec.irreps_out.dim)
        if self.tangent:
            shapes["tangent"] = shapes["x"]
        return shapes

    def flops(self, batch: int = 1) -> int:
        """The forward's FLOPs (:meth:`SymmetricContraction.flops`); a gradient costs a few times that."""
        return self.spec.flops(batch)

    @property
    def description(self) -> str:
        what = {"": "the symmetric contraction", "x": "the symmetric contraction's x gradient",
                "weight": "the symmetric contraction's weight gradient per node"}
        return what[self.wrt] + (", along a tangent" if self.tangent else "")

    def reference(self, x: Any, elements: Any, weights: Any, grad: Any = None, tangent: Any = None) -> Any:
        """In float64: the output ``(nodes, irreps_out.dim)``; the x gradient ``(nodes, channels, D)``;
        per node the weights' gradients, one ``(nodes, channels, paths)`` array per irrep and order.
        A tangent op's is the derivative along ``tangent``, by a complex step: the function is a
        polynomial in x, so ``Im f(x + ih tangent) / h`` is exact to rounding for a tiny ``h``."""
        y = np.eye(self.spec.num_elements)[np.asarray(elements)]
        order = self.spec.correlation
        nested = [list(weights[start:start + order]) for start in range(0, len(weights), order)]
        if self.tangent:
            step = 1e-100
            x = np.asarray(x, dtype=np.float64) + 1j * step * np.asarray(tangent, dtype=np.float64)
        value = self.spec.reference_gradient(x, y, nested, grad, self.wrt) if self.wrt else \
            self.spec.reference(x, y, nested)
        if not self.tangent:
            return value
        if isinstance(value, tuple):
            return tuple(part.imag / step for part in value)
        return value.imag / step

    def to_dict(self) -> dict[str, Any]:
        data = {"format": OP_FORMAT, "kind": self.kind, "spec": self.spec.to_dict(), "wrt": self.wrt}
        return {**data, "tangent": True} if self.tangent else data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Contraction":
        """Rebuild the op from :meth:`to_dict`."""
        return cls(SymmetricContraction.from_dict(data["spec"]), data.get("wrt", ""), data.get("tangent", False))


CONTRACTION_KEYS = tuple(Contraction.key_of(wrt, tangent) for wrt in ("", "x", "weight") for tangent in (False, True))
"""The schedule keys of the symmetric contraction's ops: forward, gradients and tangent ops."""


def _node_count(op: Op, nodes: int | None) -> int:
    if nodes is None:
        raise ValueError(f"{op.description} needs the node count for its shapes")
    return nodes


OpLike = Op | TensorProduct
_KINDS: dict[str, Any] = {cls.kind: cls for cls in (Product, Gradient, Fused, ConvolutionGradient, Contraction)}


def as_op(value: OpLike, caller: str = "this function") -> Op:
    """An op as given, or the :class:`Product` of a spec; anything else raises TypeError naming ``caller``."""
    if isinstance(value, Op):
        return value
    if isinstance(value, TensorProduct):
        return Product(value)
    raise TypeError(f"{caller} takes a TensorProduct or an op (Product, Gradient, Fused, ConvolutionGradient), "
                    f"got {type(value).__name__}")


def algorithms_for(op: OpLike) -> tuple[str, ...]:
    """The algorithms that compute exactly ``op``'s function ("cg" first); a spec stands for its product.

    >>> import tpc
    >>> algorithms_for(tpc.presets.get("gaunt-L3").tp)
    ('cg', 'fourier', 'grid')
    """
    return as_op(op, "algorithms_for").algorithms


def op_from_dict(data: Mapping[str, Any]) -> Op:
    """Rebuild an op from :meth:`Op.to_dict`; anything malformed raises ValueError."""
    if not isinstance(data, Mapping) or data.get("format") != OP_FORMAT or data.get("kind") not in _KINDS:
        raise ValueError("not a tpc op description")
    try:
        return _KINDS[data["kind"]].from_dict(data)
    except (KeyError, TypeError) as error:
        raise ValueError(f"malformed op description: {error}") from None


def make_op(tp: TensorProduct, wrt: str | None = None, fusion: str | None = None) -> Op:
    """The op the older (spec, wrt, fusion) arguments name: the product, a gradient or a fused product."""
    if wrt is not None and fusion is not None:
        raise ValueError("a fused kernel computes the product, not a gradient")
    if fusion is not None:
        return Fused(tp, fusion)
    if wrt is not None:
        return Gradient(tp, wrt)
    return Product(tp)
