"""``tpc.compile_graph``: a tensor-product graph as compiled kernels, products fused with
their neighbours where the graph allows.

Fusion (:func:`fuse_products`): a tensor product whose x1 is a gather used by nothing else
reads the gathered rows itself; a product whose messages only feed a scatter-sum sums them
per receiver itself (:mod:`tpc.lower.convolution`), over edges sorted by the receivers index,
which must then be a graph input. Fused products go through :func:`tpc.build.compile_convolution`,
the others through :func:`tpc.compile`, each with its tuned schedule from the cache when there
is one. Every other op is lowered by :mod:`tpc.lower.graph_ops`, scheduled here for a CPU
(rows split into tiles run in parallel, a node's inner stages computed per row, the feature
loop vectorized where it is plain, unrolled where its body selects per column) and built
with ``tvm.compile``. Symbolic dims ("edges", "nodes") stay symbolic, so one compiled graph
serves every size. Running lives in :mod:`tpc.graph_runtime`, which needs no compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import s_tir, te

from tpc.build import compile_tir
from tpc.build import compile as compile_product
from tpc.build import compile_convolution
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
from tpc.ops import FUSIONS
from tpc.runtime import ConvolutionKernel
from tpc.targets import TargetSpec, resolve_target

ROW_TILE = 16
"""Rows per parallel task."""

LOWERINGS: dict[type, Callable[..., te.Tensor]] = {
    Gather: lower_gather, SphericalHarmonics: lower_spherical_harmonics, Linear: lower_linear,
    ScatterSum: lower_scatter_sum, Elementwise: lower_elementwise, RadialBasis: lower_radial_basis,
}


FUSION_CHOICES = ("none",) + FUSIONS
"""What :func:`compile_graph` may fuse into a tensor product: nothing, or one of :data:`tpc.ops.FUSIONS`."""


@dataclass(frozen=True)
class FusedProduct:
    """A tensor product node with the gather and/or scatter-sum node fused into it."""

    product: Node
    gather: Node | None
    scatter: Node | None

    @property
    def fusion(self) -> str:
        """The fusion's name, e.g. "gather+scatter"."""
        return "+".join(part for part, node in (("gather", self.gather), ("scatter", self.scatter)) if node)

    @property
    def last(self) -> Node:
        """The node whose output the fused kernel computes."""
        return self.scatter or self.product


@dataclass(frozen=True)
class Partition:
    """How a graph is cut into kernels: the fused products and the edge order they need.

    ``edge_order`` is ``(dim, index)``: the runtime sorts every input whose first dim is
    ``dim`` by the input ``index`` (stably) before running, because fused scatter-sums read
    each receiver's edges as one run; None when no fused scatter-sum needs it.
    """

    fused: tuple[FusedProduct, ...]
    edge_order: tuple[str, str] | None

    def absorbed(self) -> set[str]:
        """Names of the nodes that no kernel of their own computes."""
        return {node.name for group in self.fused for node in (group.gather, group.product, group.scatter)
                if node is not None and node is not group.last}


def fuse_products(graph: Graph, fusion: str = "gather+scatter") -> Partition:
    """Which products of ``graph`` take in their gather and scatter-sum, as far as ``fusion``
    (one of :data:`FUSION_CHOICES`) allows.

    A gather is fused when the product's x1 is its output and nothing else (no other node, no
    graph output) reads it. A scatter-sum is fused when it is the only reader of the
    product's output, its index is a graph input whose first dim is symbolic, and that index
    is the one the edges are sorted by (the first such index found, in graph order).
    """
    if fusion not in FUSION_CHOICES:
        raise ValueError(f"fusion must be one of {FUSION_CHOICES}, got {fusion!r}")
    nodes = graph.nodes()
    by_name = {node.name: node for node in nodes}
    readers: dict[str, list[Node]] = {name: [] for name in by_name}
    for node in nodes:
        for tensor in node.inputs:
            readers[tensor.name].append(node)
    outputs = set(graph.outputs.values())

    def only_reader(name: str) -> Node | None:
        """The one node reading ``name``, if nothing else (no other node, no graph output) does."""
        return readers[name][0] if len(readers[name]) == 1 and name not in outputs else None

    wanted = set(fusion.split("+"))
    fused, edge_order = [], None
    for node in nodes:
        if not isinstance(node.op, TensorProductOp):
            continue
        source = by_name[node.inputs[0].name]
        gather = source if "gather" in wanted and isinstance(source.op, Gather) and only_reader(source.name) else None
        scatter, consumer = None, only_reader(node.name)
        if "scatter" in wanted and consumer is not None and isinstance(consumer.op, ScatterSum) \
                and consumer.inputs[0].name == node.name:
            index = by_name[consumer.inputs[1].name]
            dim = index.output.shape[0]
            if isinstance(index.op, Input) and isinstance(dim, str) and edge_order in (None, (dim, index.name)):
                scatter, edge_order = consumer, (dim, index.name)
        if gather or scatter:
            fused.append(FusedProduct(node, gather, scatter))
    return Partition(tuple(fused), edge_order)


def compile_graph(graph: Graph, target: str | dict | TargetSpec = "host", dtype: str = "float32",
                  fusion: str = "gather+scatter", tuned: bool = True,
                  sizes: Mapping[str, int] | None = None) -> CompiledGraph:
    """Compile ``graph`` for a CPU ``target``; float tensors are computed in ``dtype``.

    ``fusion`` says what may be fused into tensor products (see :func:`fuse_products`):
    "gather+scatter" (the default), "gather", "scatter" or "none" (one kernel per node).
    Products take their best cached schedules (``tpc.tune_graph`` tunes them), those tuned
    nearest the typical ``sizes`` of the symbolic dims when given, or with ``tuned=False``
    their default ones. The compiled graph runs at any sizes. The result is called with the graph inputs as keyword arguments (float inputs in
    ``dtype``, index inputs int64) and returns the graph outputs by name.
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
    partition = fuse_products(graph, fusion)
    schedule = None if tuned else "default"
    groups = {group.last.name: group for group in partition.fused}
    absorbed = partition.absorbed()
    steps = []
    for node in graph.nodes():
        if node.name in groups:
            group = groups[node.name]
            steps.append(_compile_fused(group, spec, dtype, schedule, product_rows(group.product, sizes)))
        elif node.name not in absorbed and not isinstance(node.op, Input):
            steps.append(_compile_node(node, spec, dtype, schedule, product_rows(node, sizes)))
    inputs = {node.name: node.output.type for node in graph.nodes() if isinstance(node.op, Input)}
    return CompiledGraph(inputs, steps, graph.outputs, dtype, spec, partition.edge_order)


def _index_bounds(node: Node) -> tuple[tuple[str, Dim], ...]:
    """The index input of a gather or scatter-sum with the exclusive bound of its values."""
    if isinstance(node.op, Gather):
        return ((node.inputs[1].name, node.inputs[0].shape[0]),)
    if isinstance(node.op, ScatterSum):
        return ((node.inputs[1].name, node.op.size),)
    return ()


def product_rows(node: Node, sizes: Mapping[str, int] | None) -> int | None:
    """The rows (samples, edges) a tensor product node runs on, from its x2, where ``sizes``
    gives them; None for other nodes or unknown sizes."""
    if not isinstance(node.op, TensorProductOp):
        return None
    rows = node.inputs[1].shape[0]
    return rows if isinstance(rows, int) else (sizes or {}).get(rows)


def _compile_node(node: Node, spec: TargetSpec, dtype: str, schedule: str | None, rows: int | None) -> Step:
    """One node as a runnable step (``schedule`` as in :func:`tpc.compile` and ``rows`` its
    batch, for products)."""
    arguments = tuple(tensor.name for tensor in node.inputs)
    segments = "csr" if isinstance(node.op, ScatterSum) else None
    if isinstance(node.op, TensorProductOp):
        kernel = compile_product(node.op.tp, batch=rows, target=spec, dtype=dtype, schedule=schedule)
        return Step(node.name, node.op.kind, _product_call(kernel), arguments, node.output.shape,
                    schedule=kernel.schedule)
    executable = build_node(node, spec, dtype)
    return Step(node.name, node.op.kind, executable.mod["main"], arguments, node.output.shape,
                _index_bounds(node), segments)


def _compile_fused(group: FusedProduct, spec: TargetSpec, dtype: str, schedule: str | None,
                   edges: int | None) -> Step:
    """A product with its gather and/or scatter-sum as one step; its arguments are x1 (the
    gather's rows), the gather's index, x2, the weights, the scatter-sum's index, in that
    order, each only where it applies."""
    product, gather, scatter = group.product, group.gather, group.scatter
    x1, x2, *weight = [tensor.name for tensor in product.inputs]
    arguments = ([gather.inputs[0].name, gather.inputs[1].name] if gather else [x1]) + [x2] + weight + \
        ([scatter.inputs[1].name] if scatter else [])
    kernel = compile_convolution(product.op.tp, group.fusion, target=spec, dtype=dtype, edges=edges,
                                 schedule=schedule)
    bounds = (_index_bounds(gather) if gather else ()) + (_index_bounds(scatter) if scatter else ())
    return Step(group.last.name, "fused_" + group.fusion, _fused_call(kernel, bool(weight)), tuple(arguments),
                group.last.output.shape, bounds, "offsets" if scatter else None, kernel.schedule)


def _product_call(kernel: Any) -> Callable[..., None]:
    def call(*arrays: Any) -> None:
        kernel(*arrays[:-1], out=arrays[-1])

    return call


def _fused_call(kernel: ConvolutionKernel, weighted: bool) -> Callable[..., None]:
    """The step function of a fused kernel: arrays in the step's argument order, then out."""
    def call(*arrays: Any) -> None:
        queue = list(arrays)
        x1 = queue.pop(0)
        senders = queue.pop(0) if kernel.gather else None
        x2 = queue.pop(0)
        weight = queue.pop(0) if weighted else None
        offsets = queue.pop(0) if kernel.scatter else None
        kernel(x1, x2, weight, senders=senders, offsets=offsets, out=queue.pop(0))

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
    return compile_tir(sch.mod, spec)



def _column_loop(node: Node) -> str | None:
    """Gathers and entrywise ops read their columns contiguously (vectorized); the other ops
    pick a formula per column (unrolled), except a scatter-sum, whose column loop sits around
    its data-dependent segment loop."""
    if isinstance(node.op, ScatterSum):
        return None
    if isinstance(node.op, Gather) or (isinstance(node.op, Elementwise) and node.op.op != "mul"):
        return "vectorize"
    return "unroll"
