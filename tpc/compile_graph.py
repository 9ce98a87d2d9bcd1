"""``tpc.compile_graph``: a tensor-product graph as one compiled kernel per node (no fusion).

Tensor products go through :func:`tpc.compile` (a tuned schedule from the cache when there is
one). Every other op is lowered by :mod:`tpc.lower.graph_ops`, scheduled here for a CPU
(rows split into tiles run in parallel, a node's inner stages computed per row, the feature
loop vectorized where it is plain, unrolled where its body selects per column) and built
with ``tvm.compile``. Symbolic dims ("edges", "nodes") stay symbolic, so one compiled graph
serves every size. Running lives in :mod:`tpc.graph_runtime`, which needs no compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tvm
from tvm import s_tir, te

from tpc.build import PASS_CONFIG
from tpc.build import compile as compile_product
from tpc.graph import (
    Dim,
    Elementwise,
    Gather,
    Graph,
    Input,
    Linear,
    Node,
    RadialBasis,
    ScatterSum,
    SphericalHarmonics,
    TensorProductOp,
)
from tpc.graph_runtime import CompiledGraph, Step
from tpc.lower.cg import DTYPES, element_aligned
from tpc.lower.graph_ops import (
    dim_extent,
    lower_elementwise,
    lower_gather,
    lower_linear,
    lower_radial_basis,
    lower_scatter_sum,
    lower_spherical_harmonics,
)
from tpc.targets import TargetSpec, resolve_target

ROW_TILE = 16
"""Rows per parallel task."""

LOWERINGS: dict[type, Callable[..., te.Tensor]] = {
    Gather: lower_gather, SphericalHarmonics: lower_spherical_harmonics, Linear: lower_linear,
    ScatterSum: lower_scatter_sum, Elementwise: lower_elementwise, RadialBasis: lower_radial_basis,
}


def compile_graph(graph: Graph, target: str | dict | TargetSpec = "host", dtype: str = "float32") -> CompiledGraph:
    """Compile every node of ``graph`` for a CPU ``target``; float tensors are computed in ``dtype``.

    The result is called with the graph inputs as keyword arguments (float inputs in ``dtype``,
    index inputs int64) and returns the graph outputs by name.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"compile_graph takes a tpc.graph.Graph, got {type(graph).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    spec = resolve_target(target)
    if spec.family != "cpu":
        raise ValueError(f"compile_graph builds CPU kernels only, got target {spec.name!r} ({spec.family})")
    runs, why = spec.runs_here()
    if not runs:
        raise ValueError(f"compile_graph runs its kernels in this process, but target {spec.name!r} cannot: {why}")
    nodes = graph.nodes()
    steps = [_compile_node(node, spec, dtype) for node in nodes if not isinstance(node.op, Input)]
    inputs = {node.name: node.output.type for node in nodes if isinstance(node.op, Input)}
    return CompiledGraph(inputs, steps, graph.outputs, dtype, spec)


def _compile_node(node: Node, spec: TargetSpec, dtype: str) -> Step:
    """One node as a runnable step."""
    arguments = tuple(tensor.name for tensor in node.inputs)
    bound: Dim | None = None
    if isinstance(node.op, Gather):
        bound = node.inputs[0].shape[0]
    elif isinstance(node.op, ScatterSum):
        bound = node.op.size
    if isinstance(node.op, TensorProductOp):
        kernel = compile_product(node.op.tp, target=spec, dtype=dtype)
        return Step(node.name, node.op.kind, _product_call(kernel), arguments, node.output.shape, bound)
    executable = build_node(node, spec, dtype)
    return Step(node.name, node.op.kind, executable.mod["main"], arguments, node.output.shape, bound)


def _product_call(kernel: Any) -> Callable[..., None]:
    def call(*arrays: Any) -> None:
        kernel(*arrays[:-1], out=arrays[-1])

    return call


def lower_node(node: Node, dtype: str) -> tuple[list[te.Tensor], te.Tensor]:
    """The placeholders (the function's arguments, in order) and output of a node other than a
    tensor product or input; a scatter-sum takes ``(x, perm, offsets)``, its index as a CSR."""
    sizes: dict[str, Any] = {}
    for tensor in (*node.inputs, node.output):
        for dim in tensor.shape:
            if isinstance(dim, str) and dim not in sizes:
                sizes[dim] = te.var(dim)
    placeholders = [te.placeholder([dim_extent(dim, sizes) for dim in tensor.shape],
                                   "int64" if tensor.dtype == "int64" else dtype, name=tensor.name)
                    for tensor in node.inputs]
    options = {}
    if isinstance(node.op, ScatterSum):
        x, index = placeholders
        rows = dim_extent(node.op.size, sizes)
        placeholders = [x, te.placeholder(index.shape, "int64", name="perm"),
                        te.placeholder((rows + 1,), "int64", name="offsets")]
    elif isinstance(node.op, Elementwise):
        options["irreps"] = node.inputs[0].irreps
    return placeholders, LOWERINGS[type(node.op)](node.op, placeholders, sizes, **options)


def schedule_node(func: tvm.tirx.PrimFunc, columns: str | None) -> s_tir.Schedule:
    """A simple CPU schedule for a lowered node: tiles of rows in parallel, inner stages computed
    per row, the column loop of a 2-D output "vectorize"d, "unroll"ed (a per-column selection
    then folds to constants) or left alone (None)."""
    sch = s_tir.Schedule(func)
    *stages, out = sch.get_child_blocks(sch.get_sblock("root"))
    loops = sch.get_loops(out)
    tile, row = sch.split(loops[0], [None, ROW_TILE])
    sch.parallel(tile)
    for stage in reversed(stages):
        sch.compute_at(stage, row)
    if len(loops) > 1 and columns is not None:
        getattr(sch, columns)(loops[-1])
    return sch


def build_node(node: Node, spec: TargetSpec, dtype: str) -> Any:
    """Lower, schedule and ``tvm.compile`` one node other than a tensor product or input."""
    placeholders, out = lower_node(node, dtype)
    func = element_aligned(te.create_prim_func([*placeholders, out]), dtype)
    sch = schedule_node(func, _column_loop(node))
    with tvm.transform.PassContext(opt_level=3, config=PASS_CONFIG):
        return tvm.compile(sch.mod, target=spec.tvm_target())



def _column_loop(node: Node) -> str | None:
    """Gathers and entrywise ops read their columns contiguously (vectorized); the other ops
    pick a formula per column (unrolled), except a scatter-sum, whose column loop sits around
    its data-dependent segment loop."""
    if isinstance(node.op, ScatterSum):
        return None
    if isinstance(node.op, Gather) or (isinstance(node.op, Elementwise) and node.op.op != "mul"):
        return "vectorize"
    return "unroll"
