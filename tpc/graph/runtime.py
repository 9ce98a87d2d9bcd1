"""Running a compiled graph, and saving and loading it: input checks, intermediates, one
kernel call per step.

:class:`CompiledGraph` holds the graph and one :class:`Step` per kernel in topological order.
A step is plain data: the node it computes, its kind, its kernel and the names of its
arguments; :func:`_call` says how each kind of kernel is called. Nothing here imports the
compiler (:mod:`tpc.graph.compiler` makes compiled graphs), so a saved graph loads and runs
without it.

A compiled-graph file is a tar archive (see :mod:`tpc.archive`) with ``manifest.json``
(format, tpc and TVM versions, target, dtype, the graph's JSON, the edge order and the
steps, each with its kernel's member names and sha256), each step's shared library
``kernels/<i>.so``, for products with constant tables ``kernels/<i>.npz``, and a digest over
all of them. Loading checks the digest, the format, the versions, every checksum and that the
target and its CPU features are present here before any native code is loaded; it runs the
native code in the file, so load only files you trust.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from tpc.archive import (
    MANIFEST,
    check_member,
    load_library,
    read_archive,
    read_manifest,
    sha256,
    versions,
    write_archive,
)
from tpc.dtypes import check_dtype
from tpc.graph.graph import Graph
from tpc.graph.operations import OPERATIONS, Input
from tpc.graph.tensors import Dim
from tpc.ops import Fused, Product, op_from_dict
from tpc.runtime import ScheduleChoice, host_view, kernel_for, target_from_record, target_record
from tpc.targets import TargetSpec

GRAPH_FILE_FORMAT = "tpc.CompiledGraph/1"
"""The format tag of compiled-graph files."""
NODE_KINDS = tuple(kind for kind in OPERATIONS if kind not in ("input", "tensor_product"))
"""The kinds of steps that run a node's own function (see :class:`NodeKernel`)."""


class NodeKernel:
    """The compiled function of a graph node other than a tensor product, called with the
    argument arrays then the output array; its shared library on demand.

    ``executable`` (from ``tvm.compile``) exports the library; a loaded kernel has it as ``library``.
    """

    def __init__(self, module: Any, executable: Any = None, library: bytes | None = None) -> None:
        self._function = module["main"]
        self._executable = executable
        self._library = library

    def __call__(self, *arrays: Any) -> None:
        """Run the function on host arrays: the arguments, then the output."""
        self._function(*arrays)

    def library_bytes(self) -> bytes:
        """The shared library of the function (exported on first use)."""
        if self._library is None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "node.so")
                self._executable.export_library(path)
                self._library = Path(path).read_bytes()
        return self._library


@dataclass(frozen=True)
class Step:
    """One kernel of a compiled graph; ``node`` names the tensor it computes.

    ``kind`` is the node's operation kind (a :data:`NODE_KINDS` entry or "tensor_product",
    whose kernel is a :class:`tpc.Kernel`) or ``fused_<fusion>`` for a product fused with
    its gather and/or scatter-sum (a :class:`tpc.ConvolutionKernel`). ``arguments`` name the
    tensors it reads, in call order, and ``shape`` is its output's. ``indices`` pairs each
    index argument with the exclusive bound of its values. With ``segments`` the last
    argument is a scatter index, passed as its CSR ``(perm, offsets)`` ("csr") or, for a fused
    scatter-sum over receiver-sorted edges, as ``offsets`` alone.
    """

    node: str
    kind: str
    kernel: Any
    arguments: tuple[str, ...]
    shape: tuple[Dim, ...]
    indices: tuple[tuple[str, Dim], ...] = ()
    segments: str | None = None

    @property
    def schedule(self) -> ScheduleChoice | None:
        """The schedule of a product kernel (plain or fused), None for other kernels."""
        return None if self.kind in NODE_KINDS else self.kernel.schedule

    def to_dict(self) -> dict[str, Any]:
        """The step without its kernel, as JSON-ready data."""
        return {"node": self.node, "kind": self.kind, "arguments": list(self.arguments), "shape": list(self.shape),
                "indices": [list(pair) for pair in self.indices], "segments": self.segments}


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
    take turns. :meth:`save` writes the compiled graph to one file, :func:`load_graph` reads it.
    """

    def __init__(self, graph: Graph, steps: Sequence[Step], dtype: str, target: TargetSpec,
                 edge_order: tuple[str, str] | None = None) -> None:
        self.graph = graph
        self.inputs = {node.name: node.output.type for node in graph.nodes() if isinstance(node.op, Input)}
        self.steps = tuple(steps)
        self.outputs = graph.outputs
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

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the compiled graph to one file that :func:`load_graph` reads back.

        Args:
            path: the file; it is written under an unpredictable temporary name in the same
                folder, synced, then renamed, so a reader never sees half a file. A directory
                there is a ValueError.
        """
        members: dict[str, bytes] = {}
        steps = []
        for position, step in enumerate(self.steps):
            library = step.kernel.library_bytes()
            entry = {"library": f"kernels/{position}.so", "library_sha256": sha256(library), "tables": None,
                     "op": None, "schedule": None}
            members[entry["library"]] = library
            if step.kind not in NODE_KINDS:
                entry["op"] = step.kernel.op.to_dict()
                entry["schedule"] = asdict(step.kernel.schedule)
                if step.kernel.tables:
                    tables = step.kernel.tables_bytes()
                    entry["tables"] = {"file": f"kernels/{position}.npz", "count": len(step.kernel.tables),
                                       "sha256": sha256(tables)}
                    members[entry["tables"]["file"]] = tables
            steps.append({**step.to_dict(), "kernel": entry})
        manifest = {
            "format": GRAPH_FILE_FORMAT,
            **versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": target_record(self.target),
            "dtype": self.dtype,
            "graph": self.graph.to_dict(),
            "edge_order": None if self.edge_order is None else list(self.edge_order),
            "steps": steps,
        }
        write_archive(path, {MANIFEST: json.dumps(manifest, indent=1).encode(), **members})

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
                _call(step, args, out)
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
            if view.ndim != len(shape) or any(isinstance(dim, int) and dim != size
                                              for dim, size in zip(shape, view.shape)):
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


def load_graph(path: Union[str, os.PathLike]) -> CompiledGraph:
    """Load a compiled graph saved with :meth:`CompiledGraph.save`, without the compiler.

    Loading runs the native code the file holds, with this process's rights: load only files
    you trust. The digest and checksums catch corruption and accidental edits, not forgery.

    Args:
        path: the compiled-graph file.

    Returns:
        The compiled graph, ready to call.

    Raises:
        ValueError: a file it cannot use, naming the problem: over the size limits, a
            digest or checksum that does not match, not a compiled-graph file, other tpc or TVM
            versions, a malformed manifest, a target or CPU features this machine lacks.
    """
    members = read_archive(path, (MANIFEST,))
    manifest = read_manifest(path, members, GRAPH_FILE_FORMAT)
    with _corrupt_manifest(path):
        entries = [(entry, entry["kernel"]) for entry in manifest["steps"]]
        described = [(kernel["library"], kernel["library_sha256"], kernel["tables"]) for _, kernel in entries]
    libraries = [check_member(path, members, name, checksum, "library") for name, checksum, _ in described]
    tables = [_read_tables(path, members, table) for _, _, table in described]
    target = target_from_record(path, manifest.get("target"))
    with _corrupt_manifest(path):
        dtype = check_dtype(manifest["dtype"])
        graph = Graph.from_dict(manifest["graph"])
        edge_order = None if manifest["edge_order"] is None else tuple(manifest["edge_order"])
        plans = [_step_plan(entry, kernel) for entry, kernel in entries]
    runs, why = target.runs_here()
    if not runs:
        raise ValueError(f"{path}: cannot load this compiled graph here: {why}")
    steps = []
    for (fields, op, schedule), library, table in zip(plans, libraries, tables):
        module = load_library(library)
        kernel = NodeKernel(module, library=library) if op is None else \
            kernel_for(op, module, target, dtype, schedule, library=library, tables=table)
        steps.append(Step(kernel=kernel, **fields))
    return CompiledGraph(graph, steps, dtype, target, edge_order)


def _step_plan(entry: Mapping[str, Any], kernel: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """A step of a manifest as its fields, the op of its product kernel and its schedule
    (None and None for a node's own function); a kind that disagrees with its kernel raises
    ValueError."""
    kind = entry["kind"]
    fields = {"node": entry["node"], "kind": kind, "arguments": tuple(entry["arguments"]),
              "shape": tuple(entry["shape"]), "indices": tuple((name, dim) for name, dim in entry["indices"]),
              "segments": entry["segments"]}
    if kind in NODE_KINDS:
        if kernel["op"] is not None:
            raise ValueError(f"step {entry['node']!r} ({kind}) names an op; only product steps have one")
        return fields, None, None
    op = op_from_dict(kernel["op"])
    expected = Product if kind == "tensor_product" else Fused
    if not isinstance(op, expected) or (isinstance(op, Fused) and kind != "fused_" + op.fusion):
        raise ValueError(f"step {entry['node']!r} ({kind}) has a kernel for {op.description}")
    return fields, op, ScheduleChoice(**kernel["schedule"])


@contextmanager
def _corrupt_manifest(path: Union[str, os.PathLike]) -> Iterator[None]:
    """Report a manifest entry that is missing or malformed as a ValueError naming the file."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{path}: corrupt manifest ({type(error).__name__}: {error})") from None


def _read_tables(path: Union[str, os.PathLike], members: Mapping[str, bytes],
                 described: Any) -> tuple[np.ndarray, ...]:
    """The constant tables of a product kernel, checked against the manifest's description."""
    if described is None:
        return ()
    with _corrupt_manifest(path):
        name, checksum, count = described["file"], described["sha256"], described["count"]
    data = check_member(path, members, name, checksum, "table")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        tables = tuple(archive[f"table{i}"] for i in range(len(archive.files)))
    if len(tables) != count:
        raise ValueError(f"{path}: expected {count} tables, found {len(tables)}")
    return tables


def _call(step: Step, args: list[np.ndarray], out: np.ndarray) -> None:
    """Run a step's kernel on host arrays in the step's argument order, writing ``out``."""
    if step.kind in NODE_KINDS:
        step.kernel(*args, out)
    elif step.kind == "tensor_product":
        step.kernel(*args, out=out)
    else:
        kernel = step.kernel
        queue = list(args)
        x1 = queue.pop(0)
        senders = queue.pop(0) if kernel.gather else None
        x2 = queue.pop(0)
        offsets = queue.pop() if kernel.scatter else None
        weight = queue.pop(0) if queue else None
        kernel(x1, x2, weight, senders=senders, offsets=offsets, out=out)

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
