"""Clebsch-Gordan lowering: a TensorProduct spec as TVM tensor expressions.

Stages, for every path p (instruction) and the output:

* ``z{p}`` — the coupling part, ``z[b, u, (v,) k] = sum_{i,j} C[i,j,k] x1[b,u,i] x2[b,v,j]``.
  The coupling coefficients are constants in the expression, one term per nonzero, selected
  by the output component k: nothing reads a coefficient table from memory.
* ``y{p}`` — the path output ``[b, channel, k]``: the weights applied and the mode's channel
  sum done (a reduction where the mode sums over channels).
* ``out`` — the flat ``(batch, irreps_out.dim)`` result: for each output block, the sum of
  the paths writing it. Block boundaries are ``likely`` conditions, so loop partitioning
  splits the output loop into one branch-free loop per block.

The batch dimension is a symbolic variable: one kernel serves every batch size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, tirx

from tpc.ops import TensorProduct
from tpc.so3 import wigner_3j

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class PathStages:
    """Names of one path's stages and whether ``z`` is worth keeping in memory.

    ``z`` is reused across output channels in modes uvw and weighted uuw (the output channel
    w is not one of z's channels); elsewhere inlining it into ``y`` costs nothing extra.
    """

    z: str
    y: str
    reuses_z: bool
    z_channels: tuple[int, ...]
    y_channels: int
    reductions: tuple[int, ...]
    components: int
    factor: str | None = None

    def loop_extents(self, stage: str) -> list[tuple[str, int]]:
        """The stage's axes after the batch, with their extents: ("c", n) channels,
        ("k", n) output components, ("r", n) reductions, in loop order."""
        if stage == self.z:
            return [("c", n) for n in self.z_channels] + [("k", self.components)]
        return [("c", self.y_channels), ("k", self.components)] + [("r", n) for n in self.reductions]


@dataclass(frozen=True)
class Lowered:
    """A lowered product: its PrimFunc, the algorithm and stage names.

    The PrimFunc's parameters are x1, x2[, weight], out, then one per entry of ``tables``:
    constant arrays (basis changes too large to fold into the code) that every call passes
    after ``out``. ``paths`` names the stages of each path (the Clebsch-Gordan algorithm).
    """

    func: object
    paths: tuple[PathStages, ...]
    out: str
    algorithm: str = "cg"
    tables: tuple[np.ndarray, ...] = ()


def _coupling(tp: TensorProduct, index: int) -> np.ndarray:
    ins = tp.instructions[index]
    ls = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
    return ins.coefficient * wigner_3j(*ls)


def _select_component(k, values: list, zero):
    """``values[k]`` for a loop variable k, as a Select chain that folds when k is constant."""
    out = zero
    for component in reversed(range(len(values))):
        out = tirx.Select(k == component, values[component], out)
    return out


COUPLINGS = ("direct", "x2_first")


def lower_cg(tp: TensorProduct, dtype: str = "float32", batch: int | None = None,
             coupling: str = "direct") -> Lowered:
    """Lower ``tp`` with the Clebsch-Gordan algorithm for ``dtype`` (float32 or float64).

    ``coupling`` "x2_first" contracts x2 with the coupling coefficients first, once per
    sample and x2 channel, where the result is reused across x1 channels (modes uvw, uvu,
    uvv): ``z[u, v, k] = sum_i x1[u, i] a[v, i, k]`` with ``a[v, i, k] = sum_j C[i, j, k] x2[v, j]``.
    The batch is symbolic unless ``batch`` fixes it (tools that need static shapes).
    """
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    batch = te.var("batch") if batch is None else batch
    x1 = te.placeholder((batch, tp.irreps_in1.dim), dtype, name="x1")
    x2 = te.placeholder((batch, tp.irreps_in2.dim), dtype, name="x2")
    weight = None
    if tp.weight_numel:
        shape = (tp.weight_numel,) if tp.shared_weights else (batch, tp.weight_numel)
        weight = te.placeholder(shape, dtype, name="weight")
    zero = tirx.const(0.0, dtype)
    in1_slices, in2_slices = tp.irreps_in1.slices(), tp.irreps_in2.slices()

    def w_at(b, flat):
        return weight[flat] if tp.shared_weights else weight[b, flat]

    path_outputs: dict[int, list] = {}
    stages = []
    weight_offsets = tp.weight_slices()
    for p, ins in enumerate(tp.instructions):
        (mul1, ir1), (mul2, ir2), (mul_out, ir_out) = (
            tp.irreps_in1[ins.i_in1], tp.irreps_in2[ins.i_in2], tp.irreps_out[ins.i_out])
        if mul1 == 0 or mul2 == 0 or mul_out == 0:
            continue
        coefficients = _coupling(tp, p)
        start1, start2 = in1_slices[ins.i_in1].start, in2_slices[ins.i_in2].start
        mode = ins.connection_mode
        factor = None
        if coupling == "x2_first" and mode in ("uvw", "uvu", "uvv") and mul1 > 1:
            factor = _x2_factor(x2, coefficients, (start2, ir2.dim), batch, mul2, zero, f"a{p}")
            coupled = _factored_expression(x1, factor, coefficients, (start1, ir1.dim), zero)
        else:
            coupled = _coupling_expression(x1, x2, coefficients, (start1, ir1.dim), (start2, ir2.dim), zero)
        # te.compute calls its function at once, so closing over loop variables is safe here.
        if mode in ("uuw", "uuu"):
            z = te.compute((batch, mul1, ir_out.dim), lambda b, u, k: coupled(b, u, u, k), name=f"z{p}")
        else:
            z = te.compute((batch, mul1, mul2, ir_out.dim), lambda b, u, v, k: coupled(b, u, v, k), name=f"z{p}")
        offset = weight_offsets[p].start if ins.has_weight else 0
        y = _path_output(mode, ins.has_weight, z, batch, (mul1, mul2, mul_out, ir_out.dim), offset, w_at, p)
        stages.append(PathStages(
            z.op.name, y.op.name, reuses_z=mode == "uvw" or (mode == "uuw" and ins.has_weight),
            z_channels=tuple(int(n) for n in z.shape[1:-1]), y_channels=mul_out,
            reductions=tuple(int(axis.dom.extent) for axis in y.op.reduce_axis), components=ir_out.dim,
            factor=None if factor is None else factor.op.name))
        path_outputs.setdefault(ins.i_out, []).append(y)

    out_slices = tp.irreps_out.slices()

    def assemble(b, c):
        value = zero
        for block in reversed(range(len(tp.irreps_out))):
            block_slice, dim = out_slices[block], tp.irreps_out[block].ir.dim
            if block_slice.stop == block_slice.start:
                continue
            local = c - block_slice.start
            ys = path_outputs.get(block, [])
            block_value = sum((y[b, local // dim, local % dim] for y in ys[1:]), ys[0][b, local // dim, local % dim]) \
                if ys else zero
            value = tirx.if_then_else(tirx.likely(c < block_slice.stop), block_value, value)
        return value

    out = te.compute((batch, tp.irreps_out.dim), assemble, name="out")
    params = [x1, x2] + ([weight] if weight is not None else []) + [out]
    func = element_aligned(te.create_prim_func(params), dtype)
    return Lowered(func, tuple(stages), "out")


def element_aligned(func, dtype: str):
    """The same PrimFunc with its buffers promised only element alignment.

    TVM assumes 64-byte aligned arguments by default, and LLVM then emits aligned vector
    loads (AVX-512 ``vmovaps``) that fault on ordinary numpy arrays, whose large buffers are
    16-byte aligned. TE placeholders cannot say otherwise, so the alignment is rewritten in
    the function's serialized form and the function read back.
    """
    itemsize = np.dtype(dtype).itemsize
    graph = json.loads(tvm.ir.save_json(func))
    for node in graph["nodes"]:
        if node.get("type") == "tirx.BufferType":
            node["data"]["data_alignment"] = itemsize
    relaxed = tvm.ir.load_json(json.dumps(graph))
    if any(param.data_alignment != itemsize for param in relaxed.params):
        raise RuntimeError("could not relax the argument alignment of the lowered function")
    return relaxed


def _coupling_expression(x1, x2, coupling: np.ndarray, block1: tuple[int, int], block2: tuple[int, int], zero):
    """``(b, u, v, k) -> sum_{i,j} C[i,j,k] x1[b,u,i] x2[b,v,j]`` with one term per nonzero."""
    (start1, d1), (start2, d2) = block1, block2
    dtype = x1.dtype

    def expression(b, u, v, k):
        per_component = []
        for component in range(coupling.shape[2]):
            terms = [
                tirx.const(float(coupling[i, j, component]), dtype)
                * x1[b, start1 + u * d1 + int(i)] * x2[b, start2 + v * d2 + int(j)]
                for i, j in zip(*np.nonzero(coupling[:, :, component]))
            ]
            per_component.append(sum(terms[1:], terms[0]) if terms else zero)
        return _select_component(k, per_component, zero)

    return expression


def _factor_pairs(coupling: np.ndarray) -> list[tuple[int, int]]:
    """The (i, k) pairs where ``C[i, :, k]`` has a nonzero, in k-major order."""
    nonzero = np.any(coupling != 0, axis=1)
    return [(int(i), int(k)) for k in range(coupling.shape[2]) for i in np.nonzero(nonzero[:, k])[0]]


def _x2_factor(x2, coupling: np.ndarray, block2: tuple[int, int], batch, mul2: int, zero, name: str):
    """``a[b, v, q] = sum_j C[i, j, k] x2[b, v, j]`` for the q-th nonzero pair (i, k)."""
    start2, d2 = block2
    dtype = x2.dtype
    values = []
    for i, k in _factor_pairs(coupling):
        def value(b, v, i=i, k=k):
            terms = [tirx.const(float(coupling[i, j, k]), dtype) * x2[b, start2 + v * d2 + int(j)]
                     for j in np.nonzero(coupling[i, :, k])[0]]
            return sum(terms[1:], terms[0])
        values.append(value)
    return te.compute((batch, mul2, len(values)),
                      lambda b, v, q: _select_component(q, [value(b, v) for value in values], zero), name=name)


def _factored_expression(x1, factor, coupling: np.ndarray, block1: tuple[int, int], zero):
    """``(b, u, v, k) -> sum_i x1[b,u,i] a[b,v,q(i,k)]``: one multiply-add per nonzero pair."""
    start1, d1 = block1
    pairs = _factor_pairs(coupling)

    def expression(b, u, v, k):
        per_component = []
        for component in range(coupling.shape[2]):
            terms = [x1[b, start1 + u * d1 + i] * factor[b, v, q] for q, (i, kk) in enumerate(pairs) if kk == component]
            per_component.append(sum(terms[1:], terms[0]) if terms else zero)
        return _select_component(k, per_component, zero)

    return expression


def _path_output(mode: str, has_weight: bool, z, batch, sizes: tuple[int, int, int, int], offset: int, w_at, p: int):
    """The ``y`` stage of one path: weights and the mode's channel sum applied to ``z``."""
    mul1, mul2, mul_out, dim = sizes
    name = f"y{p}"
    shape = (batch, mul_out, dim)
    if mode == "uvw":
        u, v = te.reduce_axis((0, mul1), "u"), te.reduce_axis((0, mul2), "v")
        return te.compute(shape, lambda b, w, k: te.sum(
            w_at(b, offset + (u * mul2 + v) * mul_out + w) * z[b, u, v, k], axis=[u, v]), name=name)
    if mode == "uvu":
        v = te.reduce_axis((0, mul2), "v")
        scale = (lambda b, u: w_at(b, offset + u * mul2 + v)) if has_weight else None
        return te.compute(shape, lambda b, u, k: te.sum(
            z[b, u, v, k] * scale(b, u) if scale else z[b, u, v, k], axis=[v]), name=name)
    if mode == "uvv":
        u = te.reduce_axis((0, mul1), "u")
        scale = (lambda b, v: w_at(b, offset + u * mul2 + v)) if has_weight else None
        return te.compute(shape, lambda b, v, k: te.sum(
            z[b, u, v, k] * scale(b, v) if scale else z[b, u, v, k], axis=[u]), name=name)
    if mode == "uuw":
        u = te.reduce_axis((0, mul1), "u")
        if has_weight:
            return te.compute(shape, lambda b, w, k: te.sum(
                w_at(b, offset + u * mul_out + w) * z[b, u, k], axis=[u]), name=name)
        return te.compute(shape, lambda b, w, k: te.sum(z[b, u, k], axis=[u]), name=name)
    if mode == "uuu":
        if has_weight:
            return te.compute(shape, lambda b, u, k: w_at(b, offset + u) * z[b, u, k], name=name)
        return te.compute(shape, lambda b, u, k: z[b, u, k], name=name)
    if mode == "uvuv":
        if has_weight:
            return te.compute(shape, lambda b, c, k: w_at(b, offset + c) * z[b, c // mul2, c % mul2, k], name=name)
        return te.compute(shape, lambda b, c, k: z[b, c // mul2, c % mul2, k], name=name)
    raise ValueError(f"no Clebsch-Gordan lowering for mode {mode!r}")
