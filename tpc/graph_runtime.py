"""Running a compiled graph: input checks, intermediates, one kernel call per node.

:class:`CompiledGraph` holds one :class:`Step` per node in topological order; it needs the
compiled functions only, not the compiler (:mod:`tpc.graph_build` makes them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import threading

import numpy as np

from tpc.graph import Dim, TensorType
from tpc.runtime import ScheduleChoice, host_view
from tpc.targets import TargetSpec


@dataclass(frozen=True)
class Step:
    """One kernel: its compiled function, called with the argument arrays then the output array;
    ``node`` names the tensor it computes.

    ``indices`` pairs each index argument with the exclusive bound of its values. With
    ``segments`` the last argument is a scatter index, passed as its CSR ``(perm, offsets)``
    ("csr") or, for a fused scatter-sum over receiver-sorted edges, as ``offsets`` alone.
    ``schedule`` is the schedule of a product kernel (plain or fused), None for other kernels.
    """

    node: str
    kind: str
    function: Callable[..., Any]
    arguments: tuple[str, ...]
    shape: tuple[Dim, ...]
    indices: tuple[tuple[str, Dim], ...] = ()
    segments: str | None = None
    schedule: ScheduleChoice | None = None


class CompiledGraph:
    """A compiled graph: ``compiled(**inputs)`` returns the outputs by name.

    Inputs are numpy arrays or DLPack CPU tensors, C-contiguous; float inputs must have the
    compiled dtype and index inputs int64. Shapes must match the graph's, with each symbolic
    dim the same size everywhere, and index values must address existing rows.

    With ``edge_order`` ``(dim, index)``, every input whose first dim is ``dim`` is put in the
    order that sorts the input ``index`` (stably) before the kernels run, and every output
    whose first dim is ``dim`` is put back in the given order: the results are those of the
    given order, and summed rows are summed in a fixed order.

    Intermediate tensors keep their memory from one call to the next (first-touching hundreds
    of megabytes of messages costs as much as computing them); calls from several threads
    take turns.
    """

    def __init__(self, inputs: Mapping[str, TensorType], steps: Sequence[Step], outputs: Mapping[str, str],
                 dtype: str, target: TargetSpec, edge_order: tuple[str, str] | None = None) -> None:
        self.inputs = dict(inputs)
        self.steps = tuple(steps)
        self.outputs = dict(outputs)
        self.dtype = dtype
        self.target = target
        self.edge_order = edge_order
        shapes = {**{name: t.shape for name, t in self.inputs.items()}, **{s.node: s.shape for s in self.steps}}
        self._edge_outputs = [name for name, tensor in self.outputs.items()
                              if edge_order is not None and shapes[tensor][:1] == (edge_order[0],)]
        self._intermediates: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"CompiledGraph({len(self.steps)} kernels, inputs {sorted(self.inputs)}, outputs "
                f"{sorted(self.outputs)}, dtype={self.dtype}, target={self.target.name})")

    def __call__(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Run every kernel in order on the given inputs; see the class docstring."""
        with self._lock:  # intermediates are reused from call to call
            return self._run(arrays)

    def _run(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        values, sizes = self._bind(arrays)
        self._check_indices(values, sizes)
        order = self._sort_edges(values)
        csr: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        returned = set(self.outputs.values())
        for step in self.steps:
            shape = tuple(sizes[dim] if isinstance(dim, str) else dim for dim in step.shape)
            if step.node in returned:
                out = np.empty(shape, dtype=self.dtype)
            else:  # an intermediate: its memory is kept for the next call of the same sizes
                out = self._intermediates.get(step.node)
                if out is None or out.shape != shape:
                    out = self._intermediates[step.node] = np.empty(shape, dtype=self.dtype)
            args = [values[name] for name in step.arguments]
            if step.segments is not None:
                key = (step.arguments[-1], shape[0])
                if key not in csr:
                    csr[key] = _segment_csr(args[-1], shape[0])
                args[-1:] = csr[key] if step.segments == "csr" else csr[key][1:]
            if not args[0].size:  # TVM rejects empty arrays; only a scatter-sum makes rows from none
                out.fill(0)
            elif out.size:
                step.function(*args, out)
            values[step.node] = out
        results = {name: values[tensor] for name, tensor in self.outputs.items()}
        if order is not None:
            for name in self._edge_outputs:
                results[name] = np.empty_like(results[name])
                results[name][order] = values[self.outputs[name]]
        return results

    def _sort_edges(self, values: dict[str, np.ndarray]) -> np.ndarray | None:
        """Reorder the edge inputs by the sort index (see the class docstring); the order used."""
        if self.edge_order is None:
            return None
        dim, index = self.edge_order
        order = np.argsort(values[index], kind="stable")
        for name, tensor_type in self.inputs.items():
            if tensor_type.shape[:1] == (dim,):
                values[name] = values[name][order]
        return order

    def _bind(self, arrays: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Host views of the inputs, checked, and the sizes of the symbolic dims."""
        missing, unknown = sorted(self.inputs.keys() - arrays.keys()), sorted(arrays.keys() - self.inputs.keys())
        if missing or unknown:
            raise ValueError(f"the compiled graph takes the inputs {sorted(self.inputs)}: missing {missing}, "
                             f"unknown {unknown}")
        values: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        for name, tensor_type in self.inputs.items():
            view = host_view(f"input {name!r}", arrays[name])
            dtype = "int64" if tensor_type.dtype == "int64" else self.dtype
            if view.dtype != np.dtype(dtype):
                raise TypeError(f"input {name!r} must have dtype {dtype}, got {view.dtype}")
            shape = tensor_type.shape
            if view.ndim != len(shape) or any(isinstance(dim, int) and dim != size for dim, size in zip(shape, view.shape)):
                raise ValueError(f"input {name!r} must have shape {_shape(shape)}, got {view.shape}")
            for axis, dim in enumerate(shape):
                if isinstance(dim, str) and sizes.setdefault(dim, view.shape[axis]) != view.shape[axis]:
                    raise ValueError(f"input {name!r}: dim {dim!r} (axis {axis}) is {view.shape[axis]} here but "
                                     f"{sizes[dim]} in an earlier input")
            values[name] = view
        return values, sizes

    def _check_indices(self, values: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> None:
        """Every gather and scatter-sum index addresses existing rows (before any kernel runs)."""
        checked: set[tuple[str, int]] = set()
        for step in self.steps:
            for name, dim in step.indices:
                index = values[name]
                bound = sizes[dim] if isinstance(dim, str) else dim
                if (name, bound) in checked:
                    continue
                checked.add((name, bound))
                if index.size and (index.min() < 0 or index.max() >= bound):
                    raise ValueError(f"node {step.node!r} ({step.kind}): index {name!r} has values outside "
                                     f"[0, {bound}): min {index.min()}, max {index.max()}")


def _segment_csr(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(perm, offsets)``: positions sorted by index value (stable, so every row sums in a fixed
    order) and where each value's run starts, ``size + 1`` entries."""
    perm = np.argsort(index, kind="stable").astype(np.int64)
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=size), out=offsets[1:])
    return perm, offsets


def _shape(shape: Sequence[Dim]) -> str:
    """A shape as the graph writes it, e.g. ``(nodes, 32)``."""
    return f"({', '.join(str(dim) for dim in shape)}{',' if len(shape) == 1 else ''})"
