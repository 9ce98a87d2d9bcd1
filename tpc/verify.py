"""The correctness contract: random arguments per op, one error measure, one tolerance table.

Every check of a compiled result (the tuner's worker before it times a candidate, the tests,
the benchmarks) draws its arguments here, measures :func:`relative_error` against the op's
float64 reference and compares it with :data:`TOLERANCES`. numpy only: the tuner's workers
import it without e3nn, scipy or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tpc.dtypes import check_dtype
from tpc.ops import Contraction, ConvolutionGradient, Fused, Gradient, Op, TensorProduct

DIRECTIONS = ("forward", "gradient", "second derivative")
TOLERANCES: dict[tuple[str, str], float] = {
    ("float32", "forward"): 1e-4,
    ("float32", "gradient"): 1e-4,
    ("float32", "second derivative"): 1e-4,
    ("float64", "forward"): 1e-10,
    ("float64", "gradient"): 1e-10,
    ("float64", "second derivative"): 1e-10,
}
"""Largest :func:`relative_error` a result may have against its float64 reference, by (dtype, direction)."""
MEAN_DEGREE = 30
"""Edges per receiver of the random graphs fused ops are checked and timed on (MACE and NequIP
radius graphs have 20-40 neighbours per atom)."""


def tolerance(dtype: str, direction: str = "forward") -> float:
    """The tolerance for results of ``dtype`` computed in ``direction`` (one of :data:`DIRECTIONS`).

    >>> tolerance("float32")
    0.0001
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return TOLERANCES[(check_dtype(str(np.dtype(dtype))), direction)]


def direction_of(op: Op) -> str:
    """The direction an op's result is computed in: "gradient" for gradients, else "forward"."""
    if isinstance(op, Contraction):
        return "gradient" if op.wrt else "forward"
    return "gradient" if isinstance(op, (Gradient, ConvolutionGradient)) else "forward"


def relative_error(actual: Any, expected: Any) -> float:
    """``max |actual - expected| / max |expected|`` (0 when both are zero); for tuples of arrays
    (a gradient with respect to several arguments), the largest of each part's.

    >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    0.2
    """
    if isinstance(expected, tuple):
        if not isinstance(actual, tuple) or len(actual) != len(expected):
            raise ValueError(f"expected a tuple of {len(expected)} arrays, got {type(actual).__name__}")
        return max((relative_error(part, value) for part, value in zip(actual, expected)), default=0.0)
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max(initial=0.0)) / scale


def random_inputs(tp: TensorProduct, batch: int, rng: np.random.Generator,
                  dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Standard-normal ``x1, x2, weight`` of a product's shapes (weight None when it has none)."""
    shapes = tp.input_shapes(batch)
    x1 = rng.standard_normal(shapes["x1"]).astype(dtype)
    x2 = rng.standard_normal(shapes["x2"]).astype(dtype)
    if tp.weight_numel == 0:
        return x1, x2, None
    return x1, x2, rng.standard_normal(shapes["weight"]).astype(dtype)


def random_arguments(op: Op, batch: int, rng: np.random.Generator, dtype: str = "float64",
                     nodes: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``op``'s kernels and of ``op.reference``, drawn at random.

    Args:
        op: the op.
        batch: samples (edges for a fused op).
        rng: the generator the values are drawn from.
        dtype: the dtype of the float arguments (indices are int64).
        nodes: a fused op's node count (default: one per :data:`MEAN_DEGREE` edges, at least 1).

    Returns:
        ``x1``, ``x2``, ``weight`` (None without weights), then ``grad`` for a gradient, or
        ``senders`` (with the gather) and ``offsets`` (with the scatter-sum, receivers sorted)
        for a fused op; a convolution's gradients take ``grad`` per node, ``senders`` and ``receivers``.
    """
    if isinstance(op, Contraction):
        return _contraction_arguments(op, batch, rng, dtype)
    x1, x2, weight = random_inputs(op.tp, batch, rng, dtype)
    arguments: dict[str, Any] = {"x1": x1, "x2": x2, "weight": weight}
    if isinstance(op, Gradient):
        arguments["grad"] = rng.standard_normal((batch, op.tp.irreps_out.dim)).astype(dtype)
    if isinstance(op, ConvolutionGradient):
        nodes = nodes or max(1, batch // MEAN_DEGREE)
        arguments["x1"] = rng.standard_normal((nodes, op.tp.irreps_in1.dim)).astype(dtype)
        arguments["grad"] = rng.standard_normal((nodes, op.tp.irreps_out.dim)).astype(dtype)
        arguments["senders"] = rng.integers(0, nodes, batch).astype(np.int64)
        arguments["receivers"] = rng.integers(0, nodes, batch).astype(np.int64)
    if isinstance(op, Fused):
        nodes = nodes or max(1, batch // MEAN_DEGREE)
        senders = rng.integers(0, nodes, batch)
        receivers = np.sort(rng.integers(0, nodes, batch))
        if op.gather:
            arguments["x1"] = rng.standard_normal((nodes, op.tp.irreps_in1.dim)).astype(dtype)
            arguments["senders"] = senders.astype(np.int64)
        if op.scatter:
            arguments["offsets"] = np.concatenate([[0], np.cumsum(np.bincount(receivers, minlength=nodes))]) \
                .astype(np.int64)
    return arguments


def _contraction_arguments(op: Contraction, batch: int, rng: np.random.Generator, dtype: str) -> dict[str, Any]:
    """``x``, ``elements``, ``weights`` (a list, scaled down as mace initializes them), for a
    gradient ``grad`` and for a tangent op ``tangent``, of a symmetric contraction over ``batch`` nodes."""
    spec = op.spec
    shapes = [shape for _, _, shape in spec.weight_shapes()]
    arguments: dict[str, Any] = {
        "x": rng.standard_normal((batch, spec.channels, spec.coupling_irreps.dim)).astype(dtype),
        "elements": rng.integers(0, spec.num_elements, batch).astype(np.int64),
        "weights": [(rng.standard_normal(shape) / shape[1]).astype(dtype) for shape in shapes]}
    if op.wrt:
        arguments["grad"] = rng.standard_normal((batch, spec.irreps_out.dim)).astype(dtype)
    if op.tangent:
        arguments["tangent"] = rng.standard_normal(arguments["x"].shape).astype(dtype)
    return arguments


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check`: the relative error, the tolerance it was held to, and whether it passed."""

    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        """True when the error is below the tolerance (a NaN error fails)."""
        return self.error < self.tolerance

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = "within" if self.ok else "beyond"
        return f"relative error {self.error:.2e} against the reference, {verdict} the tolerance {self.tolerance:.0e}"


def check(op: Op, function: Callable[..., Any], batch: int = 13, dtype: str = "float64", seed: int = 0,
          direction: str | None = None, nodes: int | None = None) -> CheckResult:
    """Call ``function(**random_arguments(op, ...))`` and compare it with ``op.reference``.

    Args:
        op: the op ``function`` computes.
        function: a compiled kernel or anything called like one (keyword arguments).
        batch: samples (edges for a fused op) to check on.
        dtype: the dtype of the arguments, which picks the tolerance.
        seed: the seed of the random arguments.
        direction: the tolerance's direction (default: :func:`direction_of` ``op``).
        nodes: a fused op's node count (see :func:`random_arguments`).

    Returns:
        A :class:`CheckResult`, true when the result is within tolerance.

    >>> import tpc
    >>> op = tpc.Product(tpc.presets.get("fc-small").tp)
    >>> check(op, op.reference).ok
    True
    """
    arguments = random_arguments(op, batch, np.random.default_rng(seed), dtype, nodes)
    result = function(**arguments)
    expected = op.reference(**arguments)
    return CheckResult(relative_error(result, expected), tolerance(dtype, direction or direction_of(op)))
