"""The edits of a PrimFunc's serialized form: relaxed alignment and output blocks bound to columns."""

import numpy as np
import tvm
from tvm import te

from tpc.lower.tir_edits import blocks_into_columns, element_aligned


def test_element_aligned_promises_element_alignment_only():
    x = te.placeholder((te.var("n"), 3), "float64", name="x")
    out = te.compute(x.shape, lambda i, j: x[i, j] * 2.0, name="out")
    func = te.create_prim_func([x, out])
    assert all(param.data_alignment > 8 for param in func.params)
    relaxed = element_aligned(func, "float64")
    assert [param.data_alignment for param in relaxed.params] == [8, 8]


def test_blocks_into_columns_binds_each_block_to_its_columns_of_one_out():
    x = te.placeholder((4, 2), "float32", name="x")
    first = te.compute((4, 2), lambda i, j: x[i, j] + 1.0, name="out0")
    second = te.compute((4, 3), lambda i, j: x[i, j % 2] * 10.0, name="out1")
    func = blocks_into_columns(te.create_prim_func([x, first, second]), 1, [slice(0, 2), slice(2, 5)], 5, "float32")
    assert [param.name for param in func.params] == ["x", "out"]
    kernel = tvm.compile(tvm.IRModule({"main": func}), target="llvm")["main"]
    values = np.arange(8, dtype="float32").reshape(4, 2)
    result = tvm.runtime.tensor(np.zeros((4, 5), "float32"))
    kernel(tvm.runtime.tensor(values), result)
    np.testing.assert_array_equal(result.numpy(), np.hstack([values + 1, values[:, [0, 1, 0]] * 10]))
