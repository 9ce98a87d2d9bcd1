"""TVM workarounds that edit a PrimFunc where no TIR constructor reaches: in its serialized form.

The function is written to its JSON node graph, the fields are set there, and the graph is
read back as a new function.
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import s_tir, tirx
from tvm_ffi.serialization import from_json_graph_str, to_json_graph_str


def blocks_into_columns(func: tirx.PrimFunc, first: int, columns: list[slice], width: int,
                        dtype: str) -> tirx.PrimFunc:
    """``func`` with its parameters from ``first`` on (one per output block) replaced by one
    ``out`` of ``width`` columns, each block buffer bound to its columns.

    The root block matches every block buffer to its region of ``out``. A matched buffer needs
    a symbolic element offset and the strides of ``out``, which TE output buffers do not have;
    as in :func:`element_aligned`, they are set in the function's serialized form.
    """
    graph = _serialized(func)
    nodes = graph["nodes"]

    def add(node_type: str, data) -> int:
        nodes.append({"type": node_type, "data": data})
        return len(nodes) - 1

    int32 = next(index for index, node in enumerate(nodes)
                 if node["type"] == "ir.PrimType" and node["data"]["dtype"] == "int32")
    params = nodes[nodes[graph["root_index"]]["data"]["params"]]["data"]
    for var_index in params[first:]:
        buffer = nodes[var_index]["data"]
        buffer_type = nodes[buffer["ty"]]["data"]
        name = add("ffi.String", nodes[buffer["name"]]["data"] + "_offset")
        buffer_type["elem_offset"] = add("ir.Var", {"span": 0, "ty": int32, "name": name})
        buffer_type["strides"] = add("ffi.Array", [
            add("ir.IntImm", {"span": 0, "ty": int32, "value": add("int", stride)}) for stride in (width, 1)])
    func = _deserialized(graph)
    rows = func.params[first].shape[0]
    out = tirx.decl_buffer((rows, width), dtype, "out")
    matches = [s_tir.MatchBufferRegion(buffer, tirx.BufferRegion(out, [
        tvm.ir.Range.from_min_extent(0, rows), tvm.ir.Range.from_min_extent(block.start, block.stop - block.start)]))
        for buffer, block in zip(func.params[first:], columns)]
    realize = func.body
    root = realize.block
    root = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, root.body, root.init,
                        root.alloc_buffers, matches, root.annotations)
    return tirx.PrimFunc(list(func.params[:first]) + [out], s_tir.SBlockRealize(realize.iter_values,
                                                                                 realize.predicate, root),
                         func.ret_type, func.attrs)


def _serialized(func) -> dict:
    """``func``'s node graph as JSON data, to edit fields that no TIR constructor exposes."""
    return json.loads(to_json_graph_str(func))


def _deserialized(graph: dict):
    """The object of a graph from :func:`_serialized`. Read directly, not through
    ``tvm.ir.load_json``, whose upgrade of older TVM versions' graphs (needless for a graph
    this TVM wrote) parses and writes the whole graph again in Python."""
    return from_json_graph_str(json.dumps(graph))


def element_aligned(func: tirx.PrimFunc, dtype: str) -> tirx.PrimFunc:
    """The same PrimFunc with its buffers promised only element alignment.

    TVM assumes 64-byte aligned arguments by default, and LLVM then emits aligned vector
    loads (AVX-512 ``vmovaps``) that fault on ordinary numpy arrays, whose large buffers are
    16-byte aligned. TE placeholders cannot say otherwise, so the alignment is rewritten in
    the function's serialized form and the function read back.
    """
    itemsize = np.dtype(dtype).itemsize
    graph = _serialized(func)
    for node in graph["nodes"]:
        if node.get("type") == "tirx.BufferType":
            node["data"]["data_alignment"] = itemsize
    relaxed = _deserialized(graph)
    buffers = [param for param in relaxed.params if hasattr(param, "data_alignment")]  # not scalar parameters
    if any(param.data_alignment != itemsize for param in buffers):
        raise RuntimeError("could not relax the argument alignment of the lowered function")
    return relaxed

