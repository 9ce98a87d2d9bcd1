"""Export a tensor product as an ONNX model that runs in stock onnxruntime.

The graph holds a single ``ai.tpc::TensorProduct`` node. Its attributes carry the spec, so an
onnxruntime custom-op library can replace the node with a compiled tpc kernel; without that
library onnxruntime inlines the model-local function of the same name, whose body computes
the product with standard ONNX operators (MatMul, Reshape, Transpose, Mul, ...).

The body evaluates each path with dense coupling matrices: the x2 block is contracted with
the coupling first (one matrix product over the batch), then a batched matrix product with
the x1 block yields every channel pair, and the weights and the mode's channel sum follow.
Uniform modes (uuw, uuu) take the outer product of the two blocks and contract it with the
coupling in one matrix product instead. Output blocks are summed over their paths and
concatenated, with zeros where no path writes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tpc._version import __version__
from tpc.dtypes import DTYPES
from tpc.ops import Instruction, TensorProduct, algorithms_for

DOMAIN = "ai.tpc"
OP_TYPE = "TensorProduct"
OPSET = 21
IR_VERSION = 10
ELEMENT_TYPES = {name: helper.np_dtype_to_tensor_dtype(np.dtype(name)) for name in DTYPES}
ATTRIBUTES = ("spec", "fingerprint", "algorithm", "dtype")


def export_onnx(tp: TensorProduct, path: str | os.PathLike | None = None, dtype: str = "float32",
                algorithm: str = "cg") -> onnx.ModelProto:
    """The ONNX model of ``tp`` for a dynamic batch, written to ``path`` when one is given.

    Inputs are ``x1`` (batch, irreps_in1.dim), ``x2`` (batch, irreps_in2.dim) and, when the
    product has weights, ``weight`` ((weight_numel,) shared or (batch, weight_numel) per
    sample); the output ``y`` is (batch, irreps_out.dim), all of element type ``dtype``.
    ``algorithm`` names the algorithm a compiled kernel should use in place of the node.
    """
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"export_onnx takes a TensorProduct, got {type(tp).__name__}")
    if not isinstance(dtype, str) or dtype not in ELEMENT_TYPES:
        raise ValueError(f"dtype must be one of {tuple(ELEMENT_TYPES)}, got {dtype!r}")
    if algorithm not in algorithms_for(tp):
        raise ValueError(f"algorithm {algorithm!r} does not compute this product; choose one of {algorithms_for(tp)}")
    element_type = ELEMENT_TYPES[dtype]
    function, coefficients = tensor_product_function(tp, dtype)
    inputs = list(function.input)
    node = helper.make_node(OP_TYPE, inputs, ["y"], domain=DOMAIN, spec=tp.to_json(), fingerprint=tp.fingerprint,
                            algorithm=algorithm, dtype=dtype)
    graph_inputs = [
        helper.make_tensor_value_info("x1", element_type, ["batch", tp.irreps_in1.dim]),
        helper.make_tensor_value_info("x2", element_type, ["batch", tp.irreps_in2.dim]),
    ]
    if tp.weight_numel:
        weight_shape = [tp.weight_numel] if tp.shared_weights else ["batch", tp.weight_numel]
        graph_inputs.append(helper.make_tensor_value_info("weight", element_type, weight_shape))
    graph = helper.make_graph(
        [node], "tensor_product", graph_inputs,
        [helper.make_tensor_value_info("y", element_type, ["batch", tp.irreps_out.dim])],
        initializer=[numpy_helper.from_array(array, name) for name, array in coefficients.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
        functions=[function], ir_version=IR_VERSION, producer_name="tpc",
        producer_version=__version__,
        doc_string=f"tensor product {tp.irreps_in1} x {tp.irreps_in2} -> {tp.irreps_out}")
    if path is not None:
        onnx.save_model(model, os.fspath(path))
    return model


def tensor_product_function(tp: TensorProduct,
                            dtype: str = "float32") -> tuple[onnx.FunctionProto, dict[str, np.ndarray]]:
    """The fallback function ``ai.tpc::TensorProduct`` of ``tp`` and the coefficient tensors it reads.

    The function's inputs are ``x1``, ``x2``, ``weight`` (when the product has weights), then
    the coefficients by name, in the order of the returned dict; its output is ``y``. Other
    exporters place it beside their own ``ai.tpc::TensorProduct`` nodes.
    """
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"tensor_product_function takes a TensorProduct, got {type(tp).__name__}")
    if not isinstance(dtype, str) or dtype not in ELEMENT_TYPES:
        raise ValueError(f"dtype must be one of {tuple(ELEMENT_TYPES)}, got {dtype!r}")
    body = _FunctionBody(tp, np.dtype(dtype))
    inputs = ["x1", "x2"] + (["weight"] if tp.weight_numel else []) + list(body.coefficients)
    function = helper.make_function(
        DOMAIN, OP_TYPE, inputs, ["y"], body.nodes, [helper.make_opsetid("", OPSET)], attributes=list(ATTRIBUTES))
    return function, body.coefficients


class _FunctionBody:
    """The nodes of the function body and the coefficient tensors they read, for one spec.

    Tensors keep the batch as their first axis and reshapes copy it with a 0, so a batch of
    zero samples stays well defined (the one flattened batch, in :meth:`_mix_channels`, is
    inferred from a nonzero row length).
    """

    def __init__(self, tp: TensorProduct, dtype: np.dtype) -> None:
        self.tp = tp
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.coefficients: dict[str, np.ndarray] = {}
        self._blocks: dict[tuple[str, int], str] = {}
        self._outer_products: dict[tuple[int, int], str] = {}
        self._names = 0
        self._build()

    # -- graph plumbing ---------------------------------------------------------------------

    def _op(self, op_type: str, *inputs: str, **attributes: object) -> str:
        self._names += 1
        output = f"{op_type.lower()}_{self._names}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def _int64s(self, values: Sequence[int]) -> str:
        return self._op("Constant", value=numpy_helper.from_array(np.asarray(values, np.int64)))

    def _reshape(self, tensor: str, shape: Sequence[int]) -> str:
        return self._op("Reshape", tensor, self._int64s(shape))

    def _coefficient(self, name: str, array: np.ndarray) -> str:
        """A constant tensor passed to the function as an input named ``name`` (once per name)."""
        self.coefficients.setdefault(name, np.ascontiguousarray(array, self.dtype))
        return name

    def _block(self, operand: str, index: int) -> str:
        """Block ``index`` of x1 or x2 as (batch, mul, 2l+1), sliced once however many paths read it."""
        key = (operand, index)
        if key not in self._blocks:
            irreps = self.tp.irreps_in1 if operand == "x1" else self.tp.irreps_in2
            columns = irreps.slices()[index]
            flat = self._op("Slice", operand, self._int64s([columns.start]), self._int64s([columns.stop]),
                            self._int64s([1]))
            mul, ir = irreps[index]
            self._blocks[key] = self._reshape(flat, [0, mul, ir.dim])
        return self._blocks[key]

    def _weight(self, weights: slice, shape: Sequence[int]) -> str:
        """One path's weights reshaped to ``shape``, behind a batch axis when they are per sample."""
        axis = 0 if self.tp.shared_weights else 1
        piece = self._op("Slice", "weight", self._int64s([weights.start]), self._int64s([weights.stop]),
                         self._int64s([axis]))
        return self._reshape(piece, list(shape) if self.tp.shared_weights else [0, *shape])

    def _widen(self, block: str, name: str, selection: np.ndarray) -> str:
        """``block @ selection`` for a 0/1 selection matrix, skipped when it is the identity."""
        rows, columns = selection.shape
        if rows == columns:
            return block
        return self._op("MatMul", block, self._coefficient(name, selection))

    def _scale_rows(self, tensor: str, scale: str, width: int) -> str:
        """``tensor * scale`` for a scale whose last axis is 1 and a tensor whose last axis is ``width``.

        onnxruntime broadcasts along a short last axis slowly, so the scale is widened first by
        a matrix product with a row of ones, and the product is taken between equal last axes.
        """
        if width > 1:
            ones = self._coefficient(f"ones_{width}", np.ones((1, width)))
            scale = self._op("MatMul", scale, ones)
        return self._op("Mul", tensor, scale)

    def _zeros(self, width: int) -> str:
        batch = self._op("Shape", "x1", start=0, end=1)
        shape = self._op("Concat", batch, self._int64s([width]), axis=0)
        zero = numpy_helper.from_array(np.zeros(1, self.dtype))
        return self._op("ConstantOfShape", shape, value=zero)

    # -- the product ------------------------------------------------------------------------

    def _build(self) -> None:
        tp = self.tp
        contributions: dict[int, list[str]] = {}
        for number, (ins, weights) in enumerate(zip(tp.instructions, tp.weight_slices())):
            multiplicities = (tp.irreps_in1[ins.i_in1].mul, tp.irreps_in2[ins.i_in2].mul, tp.irreps_out[ins.i_out].mul)
            if 0 in multiplicities:
                continue  # a path between empty blocks adds nothing
            if ins.connection_mode in ("uuw", "uuu"):
                path = self._uniform_path(number, ins, weights)
            else:
                path = self._pair_path(number, ins, weights)
            mul_out, ir_out = tp.irreps_out[ins.i_out]
            contributions.setdefault(ins.i_out, []).append(self._reshape(path, [0, mul_out * ir_out.dim]))
        pieces: list[str] = []
        zero_width = 0
        for i_out, (mul_out, ir_out) in enumerate(tp.irreps_out):
            if i_out not in contributions:
                zero_width += mul_out * ir_out.dim
                continue
            if zero_width:
                pieces.append(self._zeros(zero_width))
                zero_width = 0
            paths = contributions[i_out]
            pieces.append(paths[0] if len(paths) == 1 else self._op("Sum", *paths))
        if zero_width or not pieces:
            pieces.append(self._zeros(zero_width))
        self.nodes.append(helper.make_node("Concat", pieces, ["y"], axis=1) if len(pieces) > 1
                          else helper.make_node("Identity", pieces, ["y"]))

    def _pair_path(self, number: int, ins: Instruction, weights: slice | None) -> str:
        """A path of mode uvw, uvu, uvv or uvuv: (batch, mul_out, 2l_out+1)."""
        coupling = self.tp.coupling(number)
        dim1, dim2, dim_out = coupling.shape
        mul1, mul2 = self.tp.irreps_in1[ins.i_in1].mul, self.tp.irreps_in2[ins.i_in2].mul
        mode = ins.connection_mode
        # x2 against the coupling: (batch, mul2, dim1 * dim_out), then laid out (batch, dim1, mul2 * dim_out).
        by_x2 = self._coefficient(f"coupling_{number}", coupling.transpose(1, 0, 2).reshape(dim2, dim1 * dim_out))
        partial = self._op("MatMul", self._block("x2", ins.i_in2), by_x2)
        if mul2 == 1:
            partial = self._reshape(partial, [0, dim1, dim_out])
        else:
            partial = self._reshape(partial, [0, mul2, dim1, dim_out])
            partial = self._reshape(self._op("Transpose", partial, perm=[0, 2, 1, 3]), [0, dim1, mul2 * dim_out])
        left = self._block("x1", ins.i_in1)
        if mode == "uvu" and mul2 == 1:
            if not ins.has_weight:
                return self._op("MatMul", left, partial)
            # Scale whichever side has fewer components per channel: the x1 block or the result.
            weight = self._weight(weights, [mul1, 1])
            if dim1 <= dim_out:
                return self._op("MatMul", self._scale_rows(left, weight, dim1), partial)
            return self._scale_rows(self._op("MatMul", left, partial), weight, dim_out)
        pairs = self._op("MatMul", left, partial)
        if mode == "uvw":
            return self._mix_channels(self._reshape(pairs, [0, mul1 * mul2, dim_out]), weights,
                                      (mul1 * mul2, ins.path_shape[2]), dim_out)
        pairs = self._reshape(pairs, [0, mul1, mul2, dim_out])
        if ins.has_weight:
            pairs = self._scale_rows(pairs, self._weight(weights, [mul1, mul2, 1]), dim_out)
        if mode == "uvuv":
            return pairs
        return self._op("ReduceSum", pairs, self._int64s([2 if mode == "uvu" else 1]), keepdims=0)

    def _uniform_path(self, number: int, ins: Instruction, weights: slice | None) -> str:
        """A path of mode uuw or uuu: (batch, mul_out, 2l_out+1)."""
        coupling = self.tp.coupling(number)
        dim1, dim2, dim_out = coupling.shape
        mul = self.tp.irreps_in1[ins.i_in1].mul
        key = (ins.i_in1, ins.i_in2)
        if key not in self._outer_products:
            # Both blocks widened to (batch, mul, dim1 * dim2) by matrix products with 0/1
            # matrices (repeat each x1 component, tile the x2 block), then multiplied: onnxruntime
            # broadcasts along short axes slowly.
            repeated = self._widen(self._block("x1", ins.i_in1), f"repeat_{dim1}_{dim2}",
                                   np.kron(np.eye(dim1), np.ones((1, dim2))))
            tiled = self._widen(self._block("x2", ins.i_in2), f"tile_{dim1}_{dim2}",
                                np.kron(np.ones((1, dim1)), np.eye(dim2)))
            self._outer_products[key] = self._op("Mul", repeated, tiled)
        flat_coupling = self._coefficient(f"coupling_{number}", coupling.reshape(dim1 * dim2, dim_out))
        channels = self._op("MatMul", self._outer_products[key], flat_coupling)
        if ins.connection_mode == "uuu":
            return self._scale_rows(channels, self._weight(weights, [mul, 1]), dim_out) if ins.has_weight else channels
        if ins.has_weight:
            return self._mix_channels(channels, weights, ins.path_shape, dim_out)
        return self._op("ReduceSum", channels, self._int64s([1]), keepdims=1)

    def _mix_channels(self, channels: str, weights: slice, shape: tuple[int, int], dim_out: int) -> str:
        """``out[w, k] = sum_c weight[c, w] channels[c, k]`` for (batch, c, k) channels: (batch, w, k).

        ``shape`` is the weights' (c, w); ``dim_out`` the number of components k.
        """
        if self.tp.shared_weights:
            # One matrix product over batch and components, the weights as its right operand.
            # The rows are flattened explicitly: a transpose feeding MatMul directly is fused
            # by onnxruntime into a kernel that rejects a batch of zero samples.
            rows = self._reshape(self._op("Transpose", channels, perm=[0, 2, 1]), [-1, shape[0]])
            mixed = self._op("MatMul", rows, self._weight(weights, shape))
            return self._op("Transpose", self._reshape(mixed, [-1, dim_out, shape[1]]), perm=[0, 2, 1])
        per_sample = self._op("Transpose", self._weight(weights, shape), perm=[0, 2, 1])
        return self._op("MatMul", per_sample, channels)
