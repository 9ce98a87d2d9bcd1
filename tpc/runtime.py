"""Compiled kernels (products, gradients, fused products): call them, save them to one file,
load them without the compiler.

A kernel file is an archive (:mod:`tpc.archive`) with ``manifest.json`` (the op and its spec,
dtype, target and, for a CPU target, the CPU features its code uses, schedule, tpc and TVM
versions, sha256 of the library and tables), ``kernel.so``, for algorithms that need constant
tables (basis changes) ``tables.npz``, and a digest over all of them. Loading checks the
digest, the format, the versions, the checksums, and that the target and its CPU features are
present here before any native code is loaded. Loading runs the native code in the file: load
only files you trust.
"""

from __future__ import annotations

import ctypes
import functools
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import tvm
from tvm.support import cc

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
from tpc.ops import ConvolutionGradient, Fused, Gradient, Op, Product, TensorProduct, op_from_dict
from tpc.targets import ARM_TRIPLE, TargetSpec, host_triple, missing_cpu_features, resolve_target, worker_threads

# One TVM worker per physical core unless the user chose (read when TVM's pool first starts).
os.environ.setdefault("TVM_NUM_THREADS", str(worker_threads()))

KERNEL_FORMAT = "tpc.Kernel/1"
KERNEL_CLASSES: dict[str, Any] = {}
"""Kernel classes of op kinds defined beside this module, by kind (they register themselves)."""
LIBRARY = "kernel.so"
TABLES = "tables.npz"
ARM_LINKER = "aarch64-linux-gnu-gcc"


@dataclass(frozen=True)
class ScheduleChoice:
    """Which schedule a kernel was built with and where it came from.

    ``source`` is "default", "explicit", "user cache" or "shipped".
    """

    algorithm: str
    config: dict
    source: str


class _Compiled:
    """A compiled module with its op, target, dtype and schedule; its library on demand.

    ``tables`` are the constant arrays the compiled function takes after ``out``.
    """

    op: Op

    def __init__(self, module: Any, tp: Any, target: TargetSpec, dtype: str, schedule: ScheduleChoice,
                 executable: Any = None, library: bytes | None = None, tables: tuple[np.ndarray, ...] = (),
                 op: Op | None = None) -> None:
        self.tables = tuple(np.ascontiguousarray(table, dtype=dtype) for table in tables)
        self._device_tables: dict[Any, list[Any]] = {}
        self._module = module
        self._executable = executable
        self._library = library
        self.spec = tp
        self.op = Product(tp) if op is None else op
        self.target = target
        self.dtype = dtype
        self.schedule = schedule

    @functools.cached_property
    def _runs_here(self) -> tuple[bool, str]:
        """Whether this process can run the kernel (one around a module on an RPC device, whose
        class says ``remote = True``, runs there), checked once rather than on every call."""
        return (True, "") if getattr(type(self._module), "remote", False) is True else self.target.runs_here()

    def library_module(self) -> Any:
        """The TVM runtime module (host code, with any device module imported)."""
        return self._module

    def library_bytes(self) -> bytes:
        """The shared library of the kernel (exported on first use)."""
        if self._library is None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, LIBRARY)
                self._executable.export_library(path, fcompile=_library_compiler(self.target))
                self._library = Path(path).read_bytes()
        return self._library

    def tables_bytes(self) -> bytes:
        """The constant tables as one ``.npz`` file (``table0``, ``table1``, ...)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{f"table{i}": table for i, table in enumerate(self.tables)})
        return buffer.getvalue()

    def _check_dtypes(self, views: dict[str, np.ndarray | None]) -> None:
        """Every given host array has the kernel's dtype."""
        for name, view in views.items():
            if view is not None and view.dtype != np.dtype(self.dtype):
                raise TypeError(f"{name} has dtype {view.dtype}, this kernel was compiled for {self.dtype}")

    def _host_result(self, shape: tuple[int, ...], out: Any) -> np.ndarray:
        """A new result array, or a checked view of the one the caller gave."""
        if out is None:
            return np.empty(shape, dtype=self.dtype)
        result = host_view("out", out, writable=True)
        if result.shape != shape or result.dtype != np.dtype(self.dtype):
            raise ValueError(f"out must have shape {shape} and dtype {self.dtype}, got {result.shape} {result.dtype}")
        return result

    def _tables_on(self, device: Any) -> list[Any]:
        """The constant tables copied to ``device`` (once per device)."""
        key = (device.dlpack_device_type(), device.index)
        if key not in self._device_tables:
            self._device_tables[key] = [tvm.runtime.tensor(table, device) for table in self.tables]
        return self._device_tables[key]


    # -- saving -----------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """What the kernel file records next to the library."""
        tables = {"file": TABLES, "count": len(self.tables), "sha256": sha256(self.tables_bytes())} \
            if self.tables else None
        return {
            "format": KERNEL_FORMAT,
            "op": self.op.to_dict(),
            "spec": self.spec.to_dict(),
            "dtype": self.dtype,
            "target": target_record(self.target),
            "schedule": asdict(self.schedule),
            "library": LIBRARY,
            "library_sha256": sha256(self.library_bytes()),
            "tables": tables,
            **versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the kernel to one file that :func:`load` reads back.

        Args:
            path: the file; written under an unpredictable temporary name in the same folder,
                synced, then renamed over ``path``. A directory there is a ValueError.
        """
        members = {MANIFEST: json.dumps(self.manifest(), indent=1).encode(), LIBRARY: self.library_bytes()}
        if self.tables:
            members[TABLES] = self.tables_bytes()
        write_archive(path, members)


class Kernel(_Compiled):
    """A compiled tensor product for one target and dtype; any batch size.

    ``kernel(x1, x2, weight)`` takes numpy arrays or DLPack tensors (torch CPU tensors are
    used without a copy) and returns the same kind; ``out=`` writes into a given array.
    ``schedule`` says which algorithm and knobs it was built with, and where they came from.
    """

    def __repr__(self) -> str:
        return (f"Kernel({self.spec!r}, target={self.target.name}, dtype={self.dtype}, "
                f"algorithm={self.schedule.algorithm}, schedule from {self.schedule.source})")

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, x1: Any, x2: Any, weight: Any = None, *, out: Any = None) -> Any:
        """The product of one batch; see the class docstring for the argument kinds."""
        runs, why = self._runs_here
        if not runs:
            raise RuntimeError(f"cannot run this kernel here: {why}")
        if self.target.family == "cuda":
            return self._call_on_device(x1, x2, weight, out)
        views = [host_view(name, value) for name, value in (("x1", x1), ("x2", x2))]
        weight_view = None if weight is None else host_view("weight", weight)
        v1, v2, weight_view = self.spec.check_inputs(views[0], views[1], weight_view)
        self._check_dtypes({"x1": v1, "x2": v2, "weight": weight_view})
        batch = v1.shape[0]
        result = self._host_result((batch, self.spec.irreps_out.dim), out)
        if batch:
            args = [v1, v2] + ([weight_view] if weight_view is not None else []) + [result, *self.tables]
            self._module["main"](*args)
        if out is not None:
            return out
        return _like(x1, result)

    def _call_on_device(self, x1: Any, x2: Any, weight: Any, out: Any) -> Any:
        """CUDA kernels take DLPack tensors that live on the GPU (torch, cupy, TVM)."""
        tensors = {name: _device_tensor(name, value) for name, value in (("x1", x1), ("x2", x2), ("weight", weight))
                   if value is not None}
        batch = int(tensors["x1"].shape[0]) if tensors["x1"].ndim == 2 else -1
        expected = self.spec.input_shapes(batch)
        if self.spec.weight_numel and "weight" not in tensors:
            raise ValueError(f"this tensor product has {self.spec.weight_numel} weights: pass weight of shape "
                             f"{expected['weight']}")
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != expected[name]:
                raise ValueError(f"{name} must have shape {expected[name]}, got {tuple(tensor.shape)}")
            if str(tensor.dtype) != self.dtype:
                raise TypeError(f"{name} has dtype {tensor.dtype}, this kernel was compiled for {self.dtype}")
        shape = (batch, self.spec.irreps_out.dim)
        if out is None:
            if type(x1).__module__.startswith("torch"):
                import torch

                out = torch.empty(shape, dtype=getattr(torch, self.dtype), device=x1.device)
            else:
                out = tvm.runtime.empty(shape, self.dtype, tensors["x1"].device)
        result = _device_tensor("out", out)
        if tuple(result.shape) != shape or str(result.dtype) != self.dtype:
            raise ValueError(f"out must have shape {shape} and dtype {self.dtype}")
        if batch:
            self._module["main"](*tensors.values(), result, *self._tables_on(result.device))
        return out

# Shared-weight gradients are summed over samples a chunk at a time; the per-sample buffer
# holds about this many values (but at least MIN_CHUNK samples, for parallel work).
CHUNK_VALUES = 1 << 20
MIN_CHUNK = 16


class GradientKernel(_Compiled):
    """The compiled gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt``.

    ``kernel(x1, x2, weight, grad)`` (weight None when the product has none) takes numpy
    arrays or DLPack host tensors and returns an array shaped like the argument ``wrt``:
    for shared weights the per-sample gradients summed over the batch. With several arguments
    ("x1+x2+weight", computed in one pass) it returns a tuple, one such array per argument in
    that order, and ``out`` is a tuple too. ``schedule`` says which knobs it was built with and
    where they came from.
    """

    def __init__(self, module: Any, tp: TensorProduct, wrt: str, target: TargetSpec, dtype: str,
                 schedule: ScheduleChoice, executable: Any = None, library: bytes | None = None) -> None:
        super().__init__(module, tp, target, dtype, schedule, executable, library)
        self.op = Gradient(tp, wrt)
        self.wrt = self.op.wrt

    def __repr__(self) -> str:
        return (f"GradientKernel(d/d{self.wrt} of {self.spec!r}, target={self.target.name}, dtype={self.dtype}, "
                f"schedule from {self.schedule.source})")

    def __call__(self, x1: Any, x2: Any, weight: Any, grad: Any, *, out: Any = None) -> Any:
        """The gradient for one batch; see the class docstring."""
        runs, why = self._runs_here
        if not runs:
            raise RuntimeError(f"cannot run this kernel here: {why}")
        v1, v2, w = self.spec.check_inputs(host_view("x1", x1), host_view("x2", x2),
                                           None if weight is None else host_view("weight", weight))
        g = host_view("grad", grad)
        batch = v1.shape[0]
        if g.shape != (batch, self.spec.irreps_out.dim):
            raise ValueError(f"grad must have shape ({batch}, {self.spec.irreps_out.dim}), got {g.shape}")
        self._check_dtypes({"x1": v1, "x2": v2, "weight": w, "grad": g})
        shapes = {"x1": v1.shape, "x2": v2.shape, "weight": None if w is None else w.shape}
        names = self.op.arguments
        outs = (out,) if len(names) == 1 else (out or (None,) * len(names))
        if len(outs) != len(names):
            raise ValueError(f"out must be a tuple of {len(names)} arrays, one per argument of {self.wrt}")
        results = [self._host_result(shapes[name], given) for name, given in zip(names, outs)]
        weights = [] if w is None else [w]
        if "weight" in names and self.spec.shared_weights:
            self._summed_weight_gradient(v1, v2, weights, g, results)
        elif batch:
            self._module["main"](v1, v2, *weights, g, *results)
        values = tuple(given if given is not None else _like(x1, result) for given, result in zip(outs, results))
        return values[0] if len(names) == 1 else values

    def _summed_weight_gradient(self, x1: np.ndarray, x2: np.ndarray, weights: list, grad: np.ndarray,
                                results: list[np.ndarray]) -> None:
        """Shared weights: per-sample gradients of one chunk of samples at a time, the weights'
        summed (the other arguments' written into their rows of the results)."""
        numel = self.spec.weight_numel
        chunk = max(MIN_CHUNK, CHUNK_VALUES // numel)
        per_sample = np.empty((min(chunk, x1.shape[0]), numel), dtype=self.dtype)
        position = self.op.arguments.index("weight")
        summed = results[position]
        summed[...] = 0
        for start in range(0, x1.shape[0], chunk):
            stop = min(start + chunk, x1.shape[0])
            part = per_sample[:stop - start]
            rows = [part if index == position else result[start:stop] for index, result in enumerate(results)]
            self._module["main"](x1[start:stop], x2[start:stop], *weights, grad[start:stop], *rows)
            summed += part.sum(axis=0)


class ConvolutionKernel(_Compiled):
    """A product fused with the gather of its x1 and/or the scatter-sum of its output
    (``fusion``, see :mod:`tpc.lower.convolution`), for host arrays.

    ``kernel(x1, x2, weight, senders=, offsets=, out=)``: ``senders`` (int64, one per edge)
    with the gather, where x1 holds one row per node; ``offsets`` (int64, receivers + 1
    non-decreasing entries from 0 to the edge count) with the scatter-sum, where the edges are
    sorted by receiver. The result has one row per receiver with the scatter-sum, else one per
    edge. Senders must address rows of x1 and the offsets must describe runs covering the edges.
    """

    def __init__(self, module: Any, tp: TensorProduct, fusion: str, target: TargetSpec, dtype: str,
                 schedule: ScheduleChoice, executable: Any = None, library: bytes | None = None) -> None:
        super().__init__(module, tp, target, dtype, schedule, executable, library)
        self.op = Fused(tp, fusion)
        self.fusion = fusion
        self.gather, self.scatter = self.op.gather, self.op.scatter

    def __repr__(self) -> str:
        return (f"ConvolutionKernel({self.fusion} of {self.spec!r}, target={self.target.name}, dtype={self.dtype}, "
                f"schedule from {self.schedule.source})")

    def __call__(self, x1: Any, x2: Any, weight: Any = None, *, senders: Any = None, offsets: Any = None,
                 out: Any = None) -> np.ndarray:
        """The fused product of one graph; see the class docstring."""
        runs, why = self._runs_here
        if not runs:
            raise RuntimeError(f"cannot run this kernel here: {why}")
        v1, v2 = host_view("x1", x1), host_view("x2", x2)
        w = None if weight is None else host_view("weight", weight)
        edges = v2.shape[0]
        for name, needed, value in (("senders", self.gather, senders), ("offsets", self.scatter, offsets)):
            if needed != (value is not None):
                raise ValueError(f"this {self.fusion} kernel {'needs' if needed else 'takes no'} {name}")
        width = self.spec.irreps_in1.dim
        if v1.ndim != 2 or v1.shape[1] != width or (not self.gather and v1.shape[0] != edges):
            rows_of_x1 = "nodes" if self.gather else edges
            raise ValueError(f"x1 must have shape ({rows_of_x1}, {width}), got {v1.shape}")
        self._check_dtypes({"x1": v1, "x2": v2, "weight": w})
        # x2 and the weights are checked like a product's over the edges.
        _, v2, w = self.spec.check_inputs(np.broadcast_to(np.zeros((1, width), v2.dtype), (edges, width)), v2, w)
        args = [v1] + ([_edge_index("senders", senders, edges, v1.shape[0], "x1")] if self.gather else []) + [v2] \
            + ([w] if w is not None else [])
        rows = edges
        if self.scatter:
            view = host_view("offsets", offsets)
            lengths = np.diff(view) if view.ndim == 1 else np.zeros(0)
            if view.dtype != np.int64 or view.ndim != 1 or view.size == 0 or view[0] != 0 or view[-1] != edges \
                    or (lengths.size and lengths.min() < 0):
                raise ValueError(f"offsets must be a one-dimensional int64 array rising from 0 to the edge count "
                                 f"({edges}) without decreasing, got {view.dtype} {view.shape}")
            rows = view.shape[0] - 1
        result = self._host_result((rows, self.spec.irreps_out.dim), out)
        if self.scatter:
            args += [view, result, int(lengths.max()) if lengths.size else 0]
        else:
            args.append(result)
        if not edges:
            result.fill(0)
        elif rows:
            self._module["main"](*args)
        return result


class ConvolutionGradientKernel(_Compiled):
    """The per-edge gradients of a convolution (:class:`tpc.ConvolutionGradient`), for host arrays.

    ``kernel(x1, x2, weight, grad, senders=, receivers=, out=)``: x1 and grad hold one row per
    node, x2 and the weights one per edge, ``senders`` and ``receivers`` (int64, one per edge,
    any order) address rows of x1 and of grad. Returns (x1's term per edge, x2's gradient, the
    weights'), without the weights' when the product has none; ``out`` is such a tuple too.
    """

    def __init__(self, module: Any, tp: TensorProduct, target: TargetSpec, dtype: str, schedule: ScheduleChoice,
                 executable: Any = None, library: bytes | None = None) -> None:
        super().__init__(module, tp, target, dtype, schedule, executable, library)
        self.op = ConvolutionGradient(tp)

    def __repr__(self) -> str:
        return (f"ConvolutionGradientKernel({self.spec!r}, target={self.target.name}, dtype={self.dtype}, "
                f"schedule from {self.schedule.source})")

    def __call__(self, x1: Any, x2: Any, weight: Any, grad: Any, *, senders: Any, receivers: Any,
                 out: Any = None) -> tuple:
        """The gradients of one graph; see the class docstring."""
        runs, why = self._runs_here
        if not runs:
            raise RuntimeError(f"cannot run this kernel here: {why}")
        v1, v2, g = host_view("x1", x1), host_view("x2", x2), host_view("grad", grad)
        w = None if weight is None else host_view("weight", weight)
        edges = v2.shape[0]
        for name, view, width in (("x1", v1, self.spec.irreps_in1.dim), ("grad", g, self.spec.irreps_out.dim)):
            if view.ndim != 2 or view.shape[1] != width:
                raise ValueError(f"{name} must have shape (nodes, {width}), got {view.shape}")
        self._check_dtypes({"x1": v1, "x2": v2, "weight": w, "grad": g})
        width = self.spec.irreps_in1.dim
        _, v2, w = self.spec.check_inputs(np.broadcast_to(np.zeros((1, width), v2.dtype), (edges, width)), v2, w)
        indices = [_edge_index(name, value, edges, rows, of)
                   for name, value, rows, of in (("senders", senders, v1.shape[0], "x1"),
                                                 ("receivers", receivers, g.shape[0], "grad"))]
        outs = out or (None,) * len(self.op.arguments)
        if len(outs) != len(self.op.arguments):
            raise ValueError(f"out must be a tuple of {len(self.op.arguments)} arrays, one per argument")
        results = [self._host_result((edges, columns), given) for columns, given in zip(self.op.output_widths, outs)]
        if edges:
            self._module["main"](v1, indices[0], v2, *([] if w is None else [w]), g, indices[1], *results)
        return tuple(results)


def _edge_index(name: str, value: Any, edges: int, rows: int, of: str) -> np.ndarray:
    """A checked int64 index of one entry per edge, each addressing one of ``rows`` rows of ``of``."""
    view = host_view(name, value)
    if view.dtype != np.int64 or view.shape != (edges,):
        raise ValueError(f"{name} must be a one-dimensional int64 array of shape ({edges},), got {view.dtype} "
                         f"{view.shape}")
    if edges and (view.min() < 0 or view.max() >= rows):
        raise ValueError(f"{name} has values outside [0, {rows}) (the rows of {of}): min {view.min()}, "
                         f"max {view.max()}")
    return view


CompiledKernel = Union["Kernel", "GradientKernel", "ConvolutionKernel", "ConvolutionGradientKernel"]


def kernel_for(op: Op, module: Any, target: TargetSpec, dtype: str, schedule: ScheduleChoice, executable: Any = None,
               library: bytes | None = None, tables: tuple[np.ndarray, ...] = ()) -> CompiledKernel:
    """The kernel class that calls a compiled ``op``, around its module."""
    if op.kind in KERNEL_CLASSES:
        return KERNEL_CLASSES[op.kind](module, op, target, dtype, schedule, executable, library)
    if isinstance(op, Fused):
        return ConvolutionKernel(module, op.tp, op.fusion, target, dtype, schedule, executable, library)
    if isinstance(op, ConvolutionGradient):
        return ConvolutionGradientKernel(module, op.tp, target, dtype, schedule, executable, library)
    if isinstance(op, Gradient):
        return GradientKernel(module, op.tp, op.wrt, target, dtype, schedule, executable, library)
    return Kernel(module, op.tp, target, dtype, schedule, executable, library, tables)


def load(path: Union[str, os.PathLike]) -> CompiledKernel:
    """Load a kernel saved with ``save`` (a product, gradient or fused kernel).

    Loading runs the native code the file holds, with this process's rights: load only files
    you trust. The digest and checksums catch corruption and accidental edits, not forgery.

    Args:
        path: the kernel file.

    Returns:
        The kernel, ready to call.

    Raises:
        ValueError: a file it cannot use, naming the problem: over the size limits, a digest or
            checksum that does not match, wrong format or versions, a malformed manifest, a
            target or CPU features this machine lacks.
    """
    members = read_archive(path, (MANIFEST, LIBRARY))
    manifest = read_manifest(path, members, KERNEL_FORMAT)
    library = check_member(path, members, LIBRARY, manifest.get("library_sha256"), "library")
    target = target_from_record(path, manifest.get("target"))
    try:
        op = op_from_dict(manifest["op"]) if "op" in manifest else Product(TensorProduct.from_dict(manifest["spec"]))
        schedule = ScheduleChoice(**manifest["schedule"])
        dtype = check_dtype(manifest["dtype"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: corrupt manifest ({error})") from None
    tables = _read_tables(path, manifest.get("tables"), members)
    runs, why = target.runs_here()
    if not runs:
        raise ValueError(f"{path}: cannot load this kernel here: {why}")
    return kernel_for(op, load_library(library), target, dtype, schedule, library=library, tables=tables)


def target_record(target: TargetSpec) -> dict[str, Any]:
    """The manifest entry of a target: its name, family, TVM dict and the CPU features its code uses."""
    return {"name": target.name, "family": target.family, "tvm": target.tvm_dict,
            "cpu_features": target.cpu_features()}


def target_from_record(path: Union[str, os.PathLike], record: Any) -> TargetSpec:
    """The target of a manifest entry written by :func:`target_record`.

    Raises:
        ValueError: the entry is malformed, or, for a CPU target whose triple is this machine's,
            it names CPU features this machine lacks (code using them would die on an illegal
            instruction).
    """
    if not isinstance(record, dict):
        raise ValueError(f"{path}: corrupt manifest (target is not an object)")
    try:
        resolved = resolve_target(record["tvm"])
        target = TargetSpec(record["name"], resolved.family, resolved.options)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: corrupt manifest (target: {type(error).__name__}: {error})") from None
    if target.family == "cpu" and target.triple == host_triple():
        if "cpu_features" not in record:
            raise ValueError(f"{path}: corrupt manifest (target has no cpu_features)")
        try:
            missing = missing_cpu_features(record["cpu_features"])
        except ValueError as error:
            raise ValueError(f"{path}: corrupt manifest ({error})") from None
        if missing:
            raise ValueError(f"{path}: cannot load this file here: its code uses CPU features this machine lacks: "
                             f"{', '.join(missing)}")
    return target


def _read_tables(path: Union[str, os.PathLike], described: Any, members: dict[str, bytes]) -> tuple[np.ndarray, ...]:
    """The constant tables of a kernel file, checked against the manifest's description."""
    if described is None and TABLES not in members:
        return ()
    if not isinstance(described, dict):
        raise ValueError(f"{path}: the manifest and the archive disagree about the kernel's tables ({TABLES})")
    data = check_member(path, members, TABLES, described.get("sha256"), "table")
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        tables = tuple(archive[f"table{i}"] for i in range(len(archive.files)))
    if len(tables) != described.get("count"):
        raise ValueError(f"{path}: expected {described.get('count')} tables, found {len(tables)}")
    return tables


def _library_compiler(target: TargetSpec):
    """The linker for a target's shared library: the cross gcc for ARM, TVM's default else."""
    if target.triple == ARM_TRIPLE:
        if shutil.which(ARM_LINKER) is None:
            raise RuntimeError(f"writing an ARM kernel library needs {ARM_LINKER}: "
                               "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross")
        return cc.cross_compiler(ARM_LINKER)
    return None


def host_view(name: str, value: Any, writable: bool = False) -> np.ndarray:
    """A zero-copy numpy view of a host array or DLPack tensor, C-contiguous.

    Args:
        name: what the value is, for error messages.
        value: a numpy array or a DLPack host tensor.
        writable: whether the kernel writes it (an output). A read-only output is a
            ValueError; a read-only input (a read-only memory map, an array with
            ``setflags(write=False)``) is given to TVM as a writable-flagged view of the same
            memory, since TVM refuses read-only arrays and kernels never write their inputs.

    Returns:
        The view.
    """
    if isinstance(value, np.ndarray):
        view = value
    elif hasattr(value, "__dlpack__"):
        try:
            view = np.from_dlpack(value)
        except (RuntimeError, TypeError, BufferError) as error:
            raise TypeError(f"{name} cannot be viewed on the host without a copy: {error}") from None
    else:
        raise TypeError(f"{name} must be a numpy array or a DLPack tensor, got {type(value).__name__}")
    if not view.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (row-major, no strides); make a contiguous copy first")
    if not view.flags.writeable:
        if writable:
            raise ValueError(f"{name} is read-only; the kernel writes its result there, so pass a writable array")
        view = _writable_alias(view)
    return view


def _writable_alias(view: np.ndarray) -> np.ndarray:
    """A writable-flagged array over the same memory as the read-only C-contiguous ``view``.

    Only for kernel inputs, which the kernels read and never write.
    """
    if view.size == 0:
        return np.empty(view.shape, view.dtype)
    memory = (ctypes.c_char * view.nbytes).from_address(view.ctypes.data)
    memory.owner = view  # the alias keeps the original memory alive
    return np.frombuffer(memory, view.dtype).reshape(view.shape)


def _device_tensor(name: str, value: Any) -> Any:
    """A TVM view of a DLPack tensor on a CUDA device."""
    if isinstance(value, tvm.runtime.Tensor):
        tensor = value
    elif hasattr(value, "__dlpack__"):
        tensor = tvm.runtime.from_dlpack(value)
    else:
        raise TypeError(f"{name} must be a DLPack tensor on the GPU, got {type(value).__name__}")
    if tensor.device.dlpack_device_type() != tvm.cuda(0).dlpack_device_type():
        raise TypeError(f"{name} is on {tensor.device}; this kernel runs on CUDA devices")
    return tensor


def _like(template: Any, result: np.ndarray) -> Any:
    """Return ``result`` as the same kind of array as ``template`` (torch in, torch out)."""
    if type(template).__module__.startswith("torch"):
        import torch

        return torch.from_numpy(result)
    return result
