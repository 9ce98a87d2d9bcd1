"""Tensor-product graphs: message-passing blocks as data, compiled into kernels and run.

The graph itself (:class:`Graph`, its tensors and operations, validation, JSON, drawing and
float64 reference) is imported here. Compiling (:func:`compile_graph`, which imports TVM's
lowering) and running or loading compiled graphs (:class:`CompiledGraph`, :func:`load_graph`)
are imported on first use, so working with graphs needs no compiler and loading a compiled
graph imports none.
"""

from tpc.graph.graph import GRAPH_FORMAT, Graph
from tpc.graph.operations import (
    ELEMENTWISE_FUNCTIONS,
    OPERATIONS,
    Elementwise,
    Gather,
    Input,
    Linear,
    LinearPath,
    Operation,
    RadialBasis,
    ScatterSum,
    SphericalHarmonics,
    TensorProductOp,
    operation_from_dict,
)
from tpc.graph.tensors import TENSOR_DTYPES, Dim, Node, Tensor, TensorType

_LAZY = {"compile_graph": "tpc.graph.compiler", "CompiledGraph": "tpc.graph.runtime", "load_graph": "tpc.graph.runtime"}


def __getattr__(name: str):
    """The compiler and the runtime, imported on first use of one of their names."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tpc.graph' has no attribute {name!r}")


__all__ = [
    "ELEMENTWISE_FUNCTIONS",
    "GRAPH_FORMAT",
    "OPERATIONS",
    "TENSOR_DTYPES",
    "CompiledGraph",
    "Dim",
    "Elementwise",
    "Gather",
    "Graph",
    "Input",
    "Linear",
    "LinearPath",
    "Node",
    "Operation",
    "RadialBasis",
    "ScatterSum",
    "SphericalHarmonics",
    "Tensor",
    "TensorProductOp",
    "TensorType",
    "compile_graph",
    "load_graph",
    "operation_from_dict",
]
