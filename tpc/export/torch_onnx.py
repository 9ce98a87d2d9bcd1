"""Export PyTorch models that use ``tpc.torch.TensorProduct`` to ONNX.

``torch.onnx.export`` (dynamo) translates each ``tpc::tensor_product`` call into an opaque
``ai.tpc::TensorProduct`` node with the attributes :func:`tpc.export.export_onnx` writes, so
an onnxruntime custom-op library can replace it with a compiled kernel. The exporter inlines
onnxscript functions, so the fallback functions are added afterwards: each node gets the
coefficient initializers of its spec and dtype as extra inputs, and the model one function
per spec and dtype. ONNX tells model-local functions apart by (domain, name, overload), so
every function and its nodes carry the overload ``<fingerprint>-<dtype>``: products of
different specs in one model each run their own fallback in stock onnxruntime.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Optional, TypeVar

import numpy as np
import onnx
import onnxscript
import torch
from onnx import helper, numpy_helper
from onnxscript import DOUBLE, FLOAT, ir

import tpc.torch
from tpc.dtypes import DTYPES
from tpc.export.onnx import ATTRIBUTES, DOMAIN, IR_VERSION, OP_TYPE, OPSET, tensor_product_function
from tpc.ops import Product, TensorProduct

ONNX_DTYPES = {ir.DataType.from_numpy(np.dtype(name)): name for name in DTYPES}
"""The dtype name of each ONNX element type the exported nodes take."""
_CUSTOM = onnxscript.values.Opset(DOMAIN, 1)
_Real = TypeVar("_Real", FLOAT, DOUBLE)


def export_torch_onnx(model: torch.nn.Module, args: tuple, path: str | os.PathLike | None = None,
                      dynamic_batch: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``model`` called on ``args``, written to ``path`` when one is given.

    Every ``tpc.torch.TensorProduct`` in the model becomes an ``ai.tpc::TensorProduct`` node
    (inputs x1, x2, [weight], then its coefficients) whose ``algorithm`` attribute is the one
    tpc uses without a tuned schedule. With ``dynamic_batch``, the first axis of every tensor
    argument with two or more axes is one symbolic batch size (export with a batch of at
    least 2: torch specializes sizes 0 and 1); one-axis tensors, such as shared weights, keep
    their size. Call ``model.eval()`` first for inference behaviour.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"export_torch_onnx takes a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of the model's positional arguments, got {type(args).__name__}")
    with _tensor_product_schema(), warnings.catch_warnings():
        # torch warns whenever inputs share a dimension, as they share the batch here.
        warnings.filterwarnings("ignore", message="# The axis name: batch will not be used", category=UserWarning)
        program = torch.onnx.export(
            model, args, dynamo=True, opset_version=OPSET, verbose=False,
            dynamic_shapes=_batch_shapes(args) if dynamic_batch else None,
            custom_translation_table={torch.ops.tpc.tensor_product.default: _translate})
    exported = program.model_proto
    _add_fallbacks(exported)
    exported.ir_version = max(exported.ir_version, IR_VERSION)
    if path is not None:
        onnx.save_model(exported, os.fspath(path))
    return exported


@contextlib.contextmanager
def _tensor_product_schema() -> Iterator[None]:
    """``ai.tpc::TensorProduct`` declared to onnx while the exporter runs, which it needs to
    emit the node as is; removed afterwards unless it was there before."""
    if onnx.defs.has(OP_TYPE, DOMAIN):
        yield
        return
    parameter = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        OP_TYPE, DOMAIN, 1,
        doc="A tpc tensor product: x1, x2, [weight], then the coefficients of the spec's fallback function.",
        inputs=[parameter("inputs", "T", param_option=onnx.defs.OpSchema.FormalParameterOption.Variadic)],
        outputs=[parameter("y", "T")],
        type_constraints=[("T", [f"tensor({data_type.name.lower()})" for data_type in ONNX_DTYPES],
                           " or ".join(DTYPES))],
        attributes=[onnx.defs.OpSchema.Attribute(name, onnx.defs.OpSchema.AttrType.STRING) for name in ATTRIBUTES])
    onnx.defs.register_schema(schema)
    try:
        yield
    finally:
        onnx.defs.deregister_schema(OP_TYPE, 1, DOMAIN)


def _batch_shapes(args: tuple) -> tuple:
    """``dynamic_shapes`` making axis 0 of every tensor argument of rank >= 2 the batch."""
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if isinstance(arg, torch.Tensor) and arg.dim() >= 2 else None for arg in args)


def _translate(x1: _Real, x2: _Real, weight: Optional[_Real] = None, key: str = "") -> _Real:
    """``torch.ops.tpc.tensor_product`` as an ``ai.tpc::TensorProduct`` node without coefficients."""
    tp = tpc.torch.registered_product(key)
    if x1.dtype not in ONNX_DTYPES:
        raise TypeError(f"tpc tensor products export {' or '.join(DTYPES)} tensors, got {x1.dtype}")
    inputs = [x1, x2] + ([weight] if weight is not None else [])
    return _CUSTOM.TensorProduct(*inputs, spec=tp.to_json(), fingerprint=tp.fingerprint,
                                 algorithm=Product(tp).default_algorithm, dtype=ONNX_DTYPES[x1.dtype])


def _add_fallbacks(model: onnx.ModelProto) -> None:
    """Give each tpc node its coefficient inputs and overload, and the model their functions."""
    coefficient_names: dict[str, list[str]] = {}
    for node in _nodes(model.graph):
        if (node.domain, node.op_type) != (DOMAIN, OP_TYPE):
            continue
        attributes = {attribute.name: helper.get_attribute_value(attribute).decode() for attribute in node.attribute}
        overload = f"{attributes['fingerprint']}-{attributes['dtype']}"
        if overload not in coefficient_names:
            function, coefficients = tensor_product_function(TensorProduct.from_json(attributes["spec"]),
                                                             attributes["dtype"])
            function.overload = overload
            model.functions.append(function)
            prefix = f"tpc_{attributes['fingerprint'][:16]}_{attributes['dtype']}_"
            model.graph.initializer.extend(numpy_helper.from_array(array, prefix + name)
                                           for name, array in coefficients.items())
            coefficient_names[overload] = [prefix + name for name in coefficients]
        node.input.extend(coefficient_names[overload])
        node.overload = overload


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """The nodes of ``graph`` and of the subgraphs of its control-flow nodes."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _nodes(subgraph)
