"""Tensor-product graphs: message-passing blocks as data.

A :class:`Graph` is a DAG of operations (gather, spherical harmonics, radial basis, tensor
product, linear, scatter-sum, elementwise; :mod:`tpc.graph.operations`) over named tensors,
held in a ``networkx.DiGraph``. Every node computes one tensor, named like the node; graph
inputs are nodes too (operation :class:`Input`). The graph validates itself, draws itself
(:mod:`tpc.graph.draw`), round-trips through JSON, and evaluates itself in float64 numpy: the
oracle that compiled graphs are checked against. :meth:`Graph.nodes` lists the nodes in
topological order with the types of their inputs and outputs, which is what a compiler walks.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Iterator, Sequence

import networkx as nx
import numpy as np

from tpc.graph.draw import draw as draw_graph
from tpc.graph.draw import to_dot
from tpc.graph.operations import (
    Elementwise,
    Gather,
    Input,
    Linear,
    Operation,
    RadialBasis,
    ScatterSum,
    SphericalHarmonics,
    TensorProductOp,
    blame,
    operation_from_dict,
)
from tpc.graph.tensors import Dim, Node, Tensor, TensorType
from tpc.irreps import IrrepsLike
from tpc.ops import TensorProduct

GRAPH_FORMAT = "tpc.Graph/2"
"""The format tag of graph JSON that :meth:`Graph.to_dict` writes."""
READ_FORMATS = ("tpc.Graph/1", GRAPH_FORMAT)
"""The format tags :meth:`Graph.from_dict` reads: ``tpc.Graph/1`` names an elementwise
node's function ``op``."""


class Graph:
    """A DAG of operations over named tensors, built with the methods below.

    Builder methods (``input``, ``gather``, ``spherical_harmonics``, ``radial_basis``,
    ``tensor_product``, ``linear``, ``scatter_sum``, ``elementwise``) check their node at once
    and return a :class:`Tensor` handle; ``output`` names a result. :meth:`add` is the
    unchecked low-level form (names may refer to nodes added later), checked as a whole by
    :meth:`validate`.
    """

    def __init__(self) -> None:
        self._dag = nx.DiGraph()
        self._outputs: dict[str, str] = {}

    @property
    def dag(self) -> nx.DiGraph:
        """A read-only view of the node DAG: node attributes ``op`` (the :class:`Operation`) and ``inputs``."""
        return self._dag.copy(as_view=True)

    @property
    def outputs(self) -> dict[str, str]:
        """Output name -> name of the tensor it returns."""
        return dict(self._outputs)

    def __repr__(self) -> str:
        return f"Graph({sum(1 for _ in self._defined())} nodes, outputs {sorted(self._outputs)})"

    # -- building ---------------------------------------------------------------------------

    def add(self, name: str, operation: Operation, inputs: Sequence[str] = ()) -> None:
        """Add node ``name`` computing ``operation`` from the tensors named ``inputs``, without
        checks beyond a unique name; :meth:`validate` checks the rest."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a node name must be a non-empty string, got {name!r}")
        if not isinstance(operation, Operation):
            raise TypeError(f"node {name!r}: operation must be a tpc.graph.Operation, got {type(operation).__name__}")
        if "op" in self._dag.nodes.get(name, {}):
            raise ValueError(f"node {name!r} ({operation.kind}): duplicate name, a node {name!r} "
                             f"({self._dag.nodes[name]['op'].kind}) already exists")
        inputs = tuple(inputs)
        if not all(isinstance(tensor, str) for tensor in inputs):
            raise TypeError(f"node {name!r}: inputs must be tensor names, got {inputs!r}")
        self._dag.add_node(name, op=operation, inputs=inputs)
        self._dag.add_edges_from((tensor, name) for tensor in inputs)

    def input(self, name: str, shape: Sequence[Dim | IrrepsLike], dtype: str = "float32") -> Tensor:
        """A graph input, e.g. ``input("h", ("nodes", "8x0e+8x1o"))`` or ``input("senders",
        ("edges",), "int64")``."""
        with blame(name, Input.kind):
            tensor_type = TensorType.parse(shape, dtype)
        return self._append(Input, (), name, type=tensor_type)

    def gather(self, x: Tensor, index: Tensor, name: str | None = None) -> Tensor:
        """Rows of ``x`` picked by ``index``: (n, d), (m,) int64 -> (m, d)."""
        return self._append(Gather, (x, index), name)

    def spherical_harmonics(self, vectors: Tensor, lmax: int, normalize: bool = True,
                            normalization: str = "component", name: str | None = None) -> Tensor:
        """e3nn's harmonics ``0e+1o+2e+...`` up to ``lmax`` of vectors (rows, 3)."""
        return self._append(SphericalHarmonics, (vectors,), name, lmax=lmax, normalize=normalize,
                            normalization=normalization)

    def radial_basis(self, vectors: Tensor, number: int, cutoff: float, name: str | None = None) -> Tensor:
        """``number`` Bessel functions of the lengths of vectors (rows, 3), zero from ``cutoff`` on
        (e3nn's bessel ``soft_one_hot_linspace`` times ``sqrt(number)``): (rows, number) scalars."""
        return self._append(RadialBasis, (vectors,), name, number=number, cutoff=cutoff)

    def tensor_product(self, x1: Tensor, x2: Tensor, weight: Tensor | None, tp: TensorProduct,
                       name: str | None = None) -> Tensor:
        """``tp(x1, x2, weight)``; ``weight`` is None when ``tp`` has no weights."""
        inputs = (x1, x2) if weight is None else (x1, x2, weight)
        return self._append(TensorProductOp, inputs, name, tp=tp)

    def linear(self, x: Tensor, irreps_out: IrrepsLike, weight: Tensor | None, name: str | None = None) -> Tensor:
        """e3nn's ``o3.Linear(x.irreps, irreps_out)`` with ``weight`` of shape (weight_numel,)
        (shared) or (rows, weight_numel) (per sample); None when there are no weights."""
        inputs = (x,) if weight is None else (x, weight)
        shared = not (isinstance(weight, Tensor) and len(weight.shape) == 2)
        irreps_in = x.irreps if isinstance(x, Tensor) else None
        return self._append(Linear, inputs, name, irreps_in=irreps_in, irreps_out=irreps_out, shared_weights=shared)

    def scatter_sum(self, x: Tensor, index: Tensor, size: Dim, name: str | None = None) -> Tensor:
        """Rows of ``x`` summed onto ``size`` rows (a dim, e.g. ``"nodes"``) by ``index``."""
        return self._append(ScatterSum, (x, index), name, size=size)

    def elementwise(self, function: str, a: Tensor, b: Tensor | None = None, name: str | None = None) -> Tensor:
        """``add``, ``sub``, ``mul`` (by scalar channels) of ``a`` and ``b``, or ``silu`` of scalars ``a``."""
        return self._append(Elementwise, (a,) if b is None else (a, b), name, function=function)

    def output(self, name: str, tensor: Tensor | str) -> None:
        """Return ``tensor`` (a handle, or a tensor name for graphs built with :meth:`add`) as
        the output ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an output name must be a non-empty string, got {name!r}")
        if name in self._outputs:
            raise ValueError(f"output {name!r}: duplicate output name (it returns {self._outputs[name]!r})")
        if isinstance(tensor, Tensor):
            self._check_handle(f"output {name!r}", tensor)
            tensor = tensor.name
        if not isinstance(tensor, str):
            raise TypeError(f"output {name!r}: expected a Tensor or a tensor name, got {type(tensor).__name__}")
        self._outputs[name] = tensor

    def _append(self, operation_class: type[Operation], inputs: Sequence[Tensor], name: str | None,
                **params: Any) -> Tensor:
        name = self._fresh_name(operation_class.kind) if name is None else name
        with blame(name, operation_class.kind):
            operation = operation_class(**params)
            arguments = operation.arguments
            if len(inputs) != len(arguments):
                raise ValueError(f"takes {len(arguments)} inputs ({', '.join(arguments)}), got {len(inputs)}")
            for argument, tensor in zip(arguments, inputs):
                self._check_handle(argument, tensor)
            output_type = operation.check(inputs)
        self.add(name, operation, [tensor.name for tensor in inputs])
        self._dag.nodes[name]["type"] = output_type
        return Tensor(name, output_type)

    def _check_handle(self, role: str, tensor: Any) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{role} must be a Tensor returned by this graph's methods, got {type(tensor).__name__}")
        if self._dag.nodes.get(tensor.name, {}).get("type") != tensor.type:
            raise ValueError(f"{role} {tensor.name!r} is not a tensor of this graph")

    def _fresh_name(self, kind: str) -> str:
        return next(name for name in (f"{kind}_{i}" for i in itertools.count()) if name not in self._dag)

    def _topological_order(self) -> list[str]:
        """Nodes in topological order, ties broken by insertion order (deterministic)."""
        position = {name: index for index, name in enumerate(self._dag)}
        return list(nx.lexicographical_topological_sort(self._dag, key=position.__getitem__))

    def _defined(self) -> Iterator[tuple[str, dict]]:
        return ((name, data) for name, data in self._dag.nodes(data=True) if "op" in data)

    # -- validation -------------------------------------------------------------------------

    def validate(self) -> dict[str, TensorType]:
        """Check the whole graph and return the type of every tensor.

        Raises ValueError naming the node (and tensor) for: an input that no node produces, a
        wrong number of inputs, a cycle, no outputs or an output of an unknown tensor,
        disagreeing shapes, dtypes or irreps along an edge, an unused graph input or node
        result, and a symbolic dim that no graph input fixes.
        """
        for name, data in self._dag.nodes(data=True):
            if "op" in data:
                continue
            consumer = next(iter(self._dag.successors(name)))
            kind = self._dag.nodes[consumer]["op"].kind
            raise ValueError(f"node {consumer!r} ({kind}): input {name!r} is not produced by any node or graph input")
        for name, data in self._defined():
            arguments = data["op"].arguments
            if len(data["inputs"]) != len(arguments):
                raise ValueError(f"node {name!r} ({data['op'].kind}): takes {len(arguments)} inputs "
                                 f"({', '.join(arguments)}), got {len(data['inputs'])}: {list(data['inputs'])}")
        try:
            cycle = nx.find_cycle(self._dag)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle is not None:
            path = " -> ".join([edge[0] for edge in cycle] + [cycle[0][0]])
            raise ValueError(f"node {cycle[0][0]!r} ({self._dag.nodes[cycle[0][0]]['op'].kind}): "
                             f"the graph has a cycle: {path}")
        if not self._outputs:
            raise ValueError("the graph has no outputs: name at least one result with output(name, tensor)")
        for output, tensor in self._outputs.items():
            if tensor not in self._dag:
                raise ValueError(f"output {output!r}: tensor {tensor!r} is not produced by any node or graph input")
        types: dict[str, TensorType] = {}
        for name in self._topological_order():
            data = self._dag.nodes[name]
            with blame(name, data["op"].kind):
                types[name] = data["op"].check([Tensor(tensor, types[tensor]) for tensor in data["inputs"]])
            data["type"] = types[name]
        returned = set(self._outputs.values())
        for name, data in self._defined():
            if self._dag.out_degree(name) == 0 and name not in returned:
                problem = ("graph input is never used" if isinstance(data["op"], Input)
                           else "result is never used: no node takes it and it is not an output")
                raise ValueError(f"node {name!r} ({data['op'].kind}): {problem}")
        bound = {dim for name, data in self._defined() if isinstance(data["op"], Input)
                 for dim in types[name].shape if isinstance(dim, str)}
        for name, tensor_type in types.items():
            for dim in tensor_type.shape:
                if isinstance(dim, str) and dim not in bound:
                    raise ValueError(f"node {name!r} ({self._dag.nodes[name]['op'].kind}): dim {dim!r} is not "
                                     "a dim of any graph input, so its size is never known")
        return types

    def nodes(self) -> list[Node]:
        """The validated nodes in topological order, graph inputs included, each with its input
        and output tensors (names and types): what a lowering walks."""
        types = self.validate()
        return [Node(name, self._dag.nodes[name]["op"],
                     tuple(Tensor(tensor, types[tensor]) for tensor in self._dag.nodes[name]["inputs"]),
                     Tensor(name, types[name]))
                for name in self._topological_order()]

    # -- evaluation -------------------------------------------------------------------------

    def reference(self, **inputs: Any) -> dict[str, np.ndarray]:
        """Evaluate the graph in float64 numpy, node by node in topological order.

        Keyword arguments are the graph inputs by name (float arrays are taken to float64,
        index arrays to int64); symbolic dims take their sizes from them. Returns the outputs
        by name.
        """
        nodes = self.nodes()
        graph_inputs = [node for node in nodes if isinstance(node.op, Input)]
        missing = sorted({node.name for node in graph_inputs} - inputs.keys())
        unknown = sorted(inputs.keys() - {node.name for node in graph_inputs})
        if missing or unknown:
            raise ValueError(f"reference() needs exactly the graph inputs: missing {missing}, unknown {unknown}")
        sizes: dict[str, int] = {}
        values: dict[str, np.ndarray] = {}
        for node in graph_inputs:
            with blame(node.name, node.op.kind):
                values[node.name] = _bind(inputs[node.name], node.output.type, sizes)
        for node in nodes:
            if not isinstance(node.op, Input):
                with blame(node.name, node.op.kind):
                    values[node.name] = node.op.evaluate([values[tensor.name] for tensor in node.inputs],
                                                         node.inputs, sizes)
        return {output: values[tensor] for output, tensor in self._outputs.items()}

    # -- drawing ----------------------------------------------------------------------------

    def to_dot(self) -> str:
        """Graphviz dot text: one box per node (name, operation, output shape/irreps), edges
        labelled with the argument they feed, one oval per output."""
        return to_dot(self)

    def draw(self, path: str | os.PathLike) -> None:
        """Draw the graph into an image file (format from the suffix), one row per topological
        generation; needs matplotlib (see :func:`tpc.graph.draw.draw`)."""
        draw_graph(self, path)

    # -- serialization ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form: format tag, nodes in insertion order, outputs."""
        return {
            "format": GRAPH_FORMAT,
            "nodes": [{"name": name, "op": data["op"].to_dict(), "inputs": list(data["inputs"])}
                      for name, data in self._defined()],
            "outputs": dict(self._outputs),
        }

    def to_json(self) -> str:
        """The graph as JSON text (tensor products as ``TensorProduct.to_dict``)."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> "Graph":
        """Rebuild and validate a graph from :meth:`to_dict` output; malformed data raises
        ValueError saying what is wrong and where."""
        if not isinstance(data, dict) or data.get("format") not in READ_FORMATS:
            raise ValueError(f"not a tpc graph: expected a JSON object with format {GRAPH_FORMAT!r}")
        nodes, outputs = data.get("nodes"), data.get("outputs")
        if not isinstance(nodes, list):
            raise ValueError("graph JSON: 'nodes' must be a list of {name, op, inputs} objects")
        if not isinstance(outputs, dict):
            raise ValueError("graph JSON: 'outputs' must be an object mapping output names to tensor names")
        graph = cls()
        for position, entry in enumerate(nodes):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f"graph JSON: node {position} has no name")
            if "op" not in entry or not isinstance(entry.get("inputs"), list):
                raise ValueError(f"graph JSON: node {name!r} needs an 'op' object and an 'inputs' list")
            try:
                operation = operation_from_dict(entry["op"])
            except (ValueError, TypeError) as error:
                raise ValueError(f"graph JSON: node {name!r}: {error}") from None
            try:
                graph.add(name, operation, entry["inputs"])
            except TypeError as error:
                raise ValueError(f"graph JSON: {error}") from None
        for output, tensor in outputs.items():
            try:
                graph.output(output, tensor)
            except TypeError as error:
                raise ValueError(f"graph JSON: {error}") from None
        graph.validate()
        return graph

    @classmethod
    def from_json(cls, text: str) -> "Graph":
        """Rebuild and validate a graph from :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"graph JSON is not valid JSON: {error}") from None
        return cls.from_dict(data)


def _bind(value: Any, tensor_type: TensorType, sizes: dict[str, int]) -> np.ndarray:
    """``value`` as a float64 (or int64) array of ``tensor_type``'s shape; symbolic dims seen for
    the first time are recorded in ``sizes``, later ones must agree."""
    array = np.asarray(value)
    wanted_kind = np.integer if tensor_type.dtype == "int64" else np.floating
    if not np.issubdtype(array.dtype, wanted_kind):
        raise TypeError(f"expected a {tensor_type.dtype} array, got dtype {array.dtype}")
    if array.ndim != len(tensor_type.shape):
        raise ValueError(f"expected shape {tensor_type.shape}, got an array of shape {array.shape}")
    for axis, (dim, size) in enumerate(zip(tensor_type.shape, array.shape)):
        if isinstance(dim, int) and dim != size:
            raise ValueError(f"expected shape {tensor_type.shape}, got an array of shape {array.shape}")
        if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
            raise ValueError(f"dim {dim!r} (axis {axis}) is {size} here but {sizes[dim]} in an earlier input")
    return array.astype(np.int64 if tensor_type.dtype == "int64" else np.float64)

