"""``tpc.compile_graph``: a tensor-product graph as compiled kernels, products fused with
their neighbours where the graph allows.

Fusion (:func:`fuse_products`): a tensor product whose x1 is a gather used by nothing else
reads the gathered rows itself; a product whose messages only feed a scatter-sum sums them
per receiver itself (:mod:`tpc.lower.convolution`), over edges sorted by the receivers index,
which must then be a graph input. Fused products go through :func:`tpc.build.compile_convolution`,
the others through :func:`tpc.compile`, each with its tuned schedule from the cache when there
is one. Every other node is lowered by :mod:`tpc.graph.lower`, scheduled by the graph
schedules of :mod:`tpc.schedule` (see :mod:`tpc.schedule.graph`) and built with
``tvm.compile``. Symbolic dims ("edges", "nodes") stay symbolic, so one compiled graph serves
every size. Running, saving and loading live in :mod:`tpc.graph.runtime`, which needs no compiler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tvm import te

from tpc.build import compile as compile_product
from tpc.build import compile_convolution, compile_tir
from tpc.dtypes import check_dtype
from tpc.graph.graph import Graph
from tpc.graph.lower import lower_node
from tpc.graph.operations import Gather, Input, ScatterSum, TensorProductOp
from tpc.graph.runtime import CompiledGraph, NodeKernel, Step
from tpc.graph.tensors import Dim, Node
from tpc.lower.tir_edits import element_aligned
from tpc.ops import FUSIONS
from tpc.schedule import apply_graph_schedule
from tpc.targets import TargetSpec, resolve_target

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
    """Which products of ``graph`` take in their gather and scatter-sum, as far as ``fusion`` allows.

    A gather is fused when the product's x1 is its output and nothing else (no other node, no
    graph output) reads it. A scatter-sum is fused when it is the only reader of the
    product's output, its index is a graph input whose first dim is symbolic, and that index
    is the one the edges are sorted by (the first such index found, in graph order).

    Args:
        graph: the graph.
        fusion: one of :data:`FUSION_CHOICES`.

    Returns:
        The fused products and the edge order they need.
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

    Args:
        graph: the graph.
        target: a CPU target this process can run: "host", "x86", "arm", a TVM target dict or
            a TargetSpec.
        dtype: "float32" or "float64".
        fusion: what may be fused into tensor products (see :func:`fuse_products`):
            "gather+scatter", "gather", "scatter" or "none" (one kernel per node).
        tuned: products take their best cached schedules (``tpc.tune_graph`` tunes them);
            False takes their default ones.
        sizes: typical sizes of the symbolic dims; cached schedules tuned nearest them win.

    Returns:
        The compiled graph, which runs at any sizes: called with the graph inputs as keyword
        arguments (float inputs in ``dtype``, index inputs int64), it returns the graph
        outputs by name; :meth:`CompiledGraph.save` writes it to a file.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"compile_graph takes a tpc.graph.Graph, got {type(graph).__name__}")
    check_dtype(dtype)
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
    return CompiledGraph(graph, steps, dtype, spec, partition.edge_order)


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
    """One node as a step (``schedule`` as in :func:`tpc.compile` and ``rows`` its batch, for
    products)."""
    arguments = tuple(tensor.name for tensor in node.inputs)
    if isinstance(node.op, TensorProductOp):
        kernel = compile_product(node.op.tp, batch=rows, target=spec, dtype=dtype, schedule=schedule)
        return Step(node.name, node.op.kind, kernel, arguments, node.output.shape)
    segments = "csr" if isinstance(node.op, ScatterSum) else None
    return Step(node.name, node.op.kind, build_node(node, spec, dtype), arguments, node.output.shape,
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
    return Step(group.last.name, "fused_" + group.fusion, kernel, tuple(arguments), group.last.output.shape, bounds,
                "offsets" if scatter else None)


def build_node(node: Node, spec: TargetSpec, dtype: str) -> NodeKernel:
    """Lower, schedule and ``tvm.compile`` one node other than a tensor product or input."""
    placeholders, out = lower_node(node, dtype)
    func = element_aligned(te.create_prim_func([*placeholders, out]), dtype)
    executable = compile_tir(apply_graph_schedule(func, spec.family, node.op).mod, spec)
    return NodeKernel(executable.mod, executable=executable)
