"""The compiled symmetric contraction (:class:`tpc.ops.Contraction`) for host arrays: beside
:mod:`tpc.runtime`, needing neither the lowering nor a tuner."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tpc.ops import Contraction
from tpc.runtime import KERNEL_CLASSES, ScheduleChoice, _Compiled, _like, host_view
from tpc.targets import TargetSpec


class ContractionKernel(_Compiled):
    """A compiled symmetric contraction, its x gradient or its weights' gradient per node.

    ``kernel(x, elements, weights[, grad][, tangent], out=None)``: ``x`` (nodes, channels, D),
    ``elements`` (int64, one per node, each below ``num_elements``), ``weights`` one array per
    output irrep and order ``(num_elements, paths, channels)`` (irreps in order, orders
    1..correlation), for a gradient ``grad`` (nodes, irreps_out.dim), and for a tangent op
    ``tangent`` (shaped as x). Returns the output (nodes, irreps_out.dim); the x gradient
    (nodes, channels, D); or per node the weights' gradients, a tuple of ``(nodes, channels,
    paths)`` arrays in the order of the weights; a tangent op their derivatives along ``tangent``.
    """

    def __init__(self, module: Any, op: Contraction, target: TargetSpec, dtype: str, schedule: ScheduleChoice,
                 executable: Any = None, library: bytes | None = None) -> None:
        super().__init__(module, op.spec, target, dtype, schedule, executable, library, op=op)

    def __repr__(self) -> str:
        return (f"ContractionKernel({self.op.description} of {self.spec!r}, target={self.target.name}, "
                f"dtype={self.dtype}, schedule from {self.schedule.source})")

    def __call__(self, x: Any, elements: Any, weights: Sequence[Any], grad: Any = None, tangent: Any = None, *,
                 out: Any = None) -> Any:
        """The contraction (or gradient) of one batch of nodes; see the class docstring."""
        runs, why = self._runs_here
        if not runs:
            raise RuntimeError(f"cannot run this kernel here: {why}")
        spec, wrt = self.spec, self.op.wrt
        view = host_view("x", x)
        nodes = view.shape[0] if view.ndim == 3 else -1
        if view.shape != (nodes, spec.channels, spec.coupling_irreps.dim):
            raise ValueError(f"x must have shape (nodes, {spec.channels}, {spec.coupling_irreps.dim}), "
                             f"got {view.shape}")
        indices = host_view("elements", elements)
        if indices.dtype != np.int64 or indices.shape != (nodes,):
            raise ValueError(f"elements must be a one-dimensional int64 array of shape ({nodes},), got "
                             f"{indices.dtype} {indices.shape}")
        if nodes and (indices.min() < 0 or indices.max() >= spec.num_elements):
            raise ValueError(f"elements has values outside [0, {spec.num_elements})")
        shapes = [shape for _, _, shape in spec.weight_shapes()]
        if len(weights) != len(shapes):
            raise ValueError(f"weights must be {len(shapes)} arrays, one per output irrep and order")
        views = [host_view(f"weights[{i}]", weight) for i, weight in enumerate(weights)]
        for i, (weight, shape) in enumerate(zip(views, shapes)):
            if weight.shape != shape:
                raise ValueError(f"weights[{i}] must have shape {shape}, got {weight.shape}")
        arguments = {"x": view, **{f"weights[{i}]": weight for i, weight in enumerate(views)}}
        if wrt:
            arguments["grad"] = host_view("grad", grad)
            if arguments["grad"].shape != (nodes, spec.irreps_out.dim):
                raise ValueError(f"grad must have shape ({nodes}, {spec.irreps_out.dim}), got "
                                 f"{arguments['grad'].shape}")
        if self.op.tangent:
            arguments["tangent"] = host_view("tangent", tangent)
            if arguments["tangent"].shape != view.shape:
                raise ValueError(f"tangent must have the shape of x, {view.shape}, got {arguments['tangent'].shape}")
        self._check_dtypes(arguments)
        results = self._results(nodes, out)
        if nodes:
            extras = [arguments[name] for name in ("grad", "tangent") if name in arguments]
            self._module["main"](view, indices, *views, *extras, *results)
        if wrt == "weight":
            return tuple(results) if out is None else out
        if wrt == "x":
            return _like(x, results[0]) if out is None else out
        return _like(x, np.concatenate([result.reshape(nodes, -1) for result in results], axis=1)) \
            if len(results) > 1 else _like(x, results[0].reshape(nodes, -1))

    def _results(self, nodes: int, out: Any) -> list[np.ndarray]:
        """The arrays the kernel writes: the caller's (the weight gradient's tuple, the x gradient's
        array) or new ones; the forward writes one block per output irrep."""
        spec, wrt = self.spec, self.op.wrt
        if wrt == "x":
            return [self._host_result((nodes, spec.channels, spec.coupling_irreps.dim), out)]
        if wrt == "weight":
            shapes = [(nodes, shape[2], shape[1]) for _, _, shape in spec.weight_shapes()]
            outs = out if out is not None else (None,) * len(shapes)
            return [self._host_result(shape, given) for shape, given in zip(shapes, outs)]
        return [np.empty((nodes, spec.channels, ir.dim), dtype=self.dtype) for _, ir in spec.irreps_out]


KERNEL_CLASSES[Contraction.kind] = ContractionKernel
