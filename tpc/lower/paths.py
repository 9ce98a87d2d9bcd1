"""Path plans as TVM tensor expressions: the Clebsch-Gordan machinery that products, their
gradients and fused products share (:mod:`tpc.lower.cg`, :mod:`tpc.lower.gradients`,
:mod:`tpc.lower.convolution` make the plans; :func:`lower_plans` makes their stages).

Stages, for every path p (instruction) and the output:

* ``z{p}`` — the coupling part, ``z[b, u, (v,) k] = sum_{i,j} C[i,j,k] x1[b,u,i] x2[b,v,j]``.
  The coupling coefficients are constants in the expression, one term per nonzero, selected
  by the output component k: nothing reads a coefficient table from memory.
* ``y{p}`` — the path output ``[b, channel, k]``: the weights applied and the mode's channel
  sum done (a reduction where the mode sums over channels).
* ``out`` — the flat ``(batch, irreps_out.dim)`` result: for each output block, the sum of
  the paths writing it. Block boundaries are ``likely`` conditions, so loop partitioning
  splits the output loop into one branch-free loop per block. Lowered ``in_place``, there is
  no such stage: one stage per output block writes that block's columns of ``out`` directly.

The batch dimension is a symbolic variable: one kernel serves every batch size.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from tpc.dtypes import check_dtype
from tpc.lower.lowered import Inputs, Lowered, Operand, OutputBlock, PathPlan, PathStages, Runs, select_component
from tpc.lower.tir_edits import blocks_into_columns, element_aligned
from tpc.ops import TensorProduct
from tpc.ops.tensor_product import MODE_INDICES


def path_letters(tp: TensorProduct, index: int) -> tuple[dict[str, int], tuple[str, ...], tuple[str, ...],
                                                        tuple[str, ...], tuple[str, ...] | None]:
    """Letter extents and the letters of x1, x2, the output and the weights of path ``index``."""
    ins = tp.instructions[index]
    idx1, idx2, idx_w, idx_out = MODE_INDICES[ins.connection_mode]
    extents = {"u": tp.irreps_in1[ins.i_in1].mul, "v": tp.irreps_in2[ins.i_in2].mul, "w": tp.irreps_out[ins.i_out].mul}
    if ins.connection_mode == "uuw" and not ins.has_weight:
        idx_out = ""
    return extents, tuple(idx1), tuple(idx2), tuple(idx_out), tuple(idx_w) if ins.has_weight else None


def forward_plans(tp: TensorProduct, inputs: Inputs) -> list[PathPlan]:
    """The product's paths: x1 and x2 coupled, the weights applied, into the output blocks."""
    in1_slices, in2_slices = tp.irreps_in1.slices(), tp.irreps_in2.slices()
    weight_slices = tp.weight_slices()
    plans = []
    for p, ins in enumerate(tp.instructions):
        extents, letters1, letters2, letters_out, letters_w = path_letters(tp, p)
        if 0 in extents.values():
            continue
        ir1, ir2 = tp.irreps_in1[ins.i_in1].ir, tp.irreps_in2[ins.i_in2].ir
        plans.append(PathPlan(
            p, Operand(inputs.x1, in1_slices[ins.i_in1].start, ir1.dim, letters1),
            Operand(inputs.x2, in2_slices[ins.i_in2].start, ir2.dim, letters2), tp.coupling(p), extents,
            letters_out, letters_w, weight_slices[p].start if ins.has_weight else 0, ins.i_out))
    return plans


COUPLINGS = ("direct", "x2_first")


def check_lowering_arguments(dtype: str, coupling: str) -> None:
    """Reject an unknown dtype or coupling order with the valid choices."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    check_dtype(dtype)


def lower_plans(plans: list[PathPlan], inputs: Inputs, params: list[te.Tensor], irreps_out, batch,
                coupling: str = "direct", runs: Runs | None = None, in_place: bool = False) -> Lowered:
    """The stages of every path and the assembled ``out`` (batch, irreps_out.dim), as a PrimFunc
    whose parameters are ``params`` then ``out`` (then ``runs.longest``).

    With ``runs`` the samples are summed in runs (see :class:`~tpc.lower.lowered.Runs`): ``out`` has one row per
    run and nothing per sample is stored. The sum happens in the path outputs ``y``, before the
    assembly, which is linear.

    ``in_place`` replaces the assembly by one stage per output block, ``out{block}``, that
    computes the block (the sum of its paths' ``y``) into the block's columns of ``out``: a
    schedule can inline the paths' ``y`` there and keep no per-path buffer at all.
    """
    if in_place and runs is not None:
        raise ValueError("in_place writes one output row per sample; it cannot sum runs of samples")
    dtype = str(inputs.x1.dtype)
    stages, path_outputs, _ = path_stages(plans, inputs, batch, coupling, runs)
    if in_place:
        return _lower_in_place(stages, path_outputs, params, irreps_out, batch, dtype)
    rows = batch if runs is None else runs.count
    out = te.compute((rows, irreps_out.dim), assembly(irreps_out, path_outputs, dtype, runs), name="out")
    scalars = [runs.longest] if runs is not None else []
    func = element_aligned(te.create_prim_func(params + [out] + scalars), dtype)
    return Lowered(func, tuple(stages), "out")


def path_stages(plans: list[PathPlan], inputs: Inputs, batch, coupling: str = "direct", runs: Runs | None = None,
                prefix: str = "") -> tuple[list[PathStages], dict[int, list], dict[int, te.Tensor]]:
    """Each path's coupling ``z`` and output ``y`` stages (names start with ``prefix``).

    Returns:
        The stages, the path outputs ``y`` by output block, and each path's ``z`` by path index.
    """
    zero = tirx.const(0.0, str(inputs.x1.dtype))
    path_outputs: dict[int, list] = {}
    stages, couplings = [], {}
    for plan in plans:
        p = plan.index
        letters = plan.z_letters
        factor = None
        if coupling == "x2_first" and _factorable(plan):
            factor = _b_factor(plan, batch, zero, f"{prefix}a{p}")
            coupled = _factored_expression(plan, factor, zero)
        else:
            coupled = coupling_expression(plan, zero)
        shape = (batch, *[plan.extents[letter] for letter in letters], plan.coupling.shape[2])
        # te.compute calls its function at once, so closing over loop variables is safe here.
        z = te.compute(shape, lambda b, *rest: coupled(b, dict(zip(letters, rest[:-1])), rest[-1]),
                       name=f"{prefix}z{p}")
        y = _path_output(plan, z, batch, inputs, f"{prefix}y{p}", runs)
        stages.append(PathStages(
            z.op.name, y.op.name, reuses_z=any(letter not in letters for letter in plan.out_letters),
            z_channels=tuple(int(n) for n in z.shape[1:-1]), y_channels=plan.extent(plan.out_letters),
            reductions=tuple(plan.extents[letter] for letter in plan.reduce_letters), components=plan.coupling.shape[2],
            factor=None if factor is None else factor.op.name))
        path_outputs.setdefault(plan.out_block, []).append(y)
        couplings[p] = z
    return stages, path_outputs, couplings


def assembly(irreps_out, path_outputs: dict[int, list], dtype: str, runs: Runs | None = None):
    """``(row, column) -> the sum of the path outputs at that column``: one branch per output
    block, its boundary a ``likely`` condition so that loop partitioning splits the loop."""
    zero = tirx.const(0.0, dtype)
    out_slices = irreps_out.slices()

    def assemble(b, c):
        value = zero
        for block in reversed(range(len(irreps_out))):
            block_slice, dim = out_slices[block], irreps_out[block].ir.dim
            if block_slice.stop == block_slice.start:
                continue
            local = c - block_slice.start
            ys = path_outputs.get(block, [])
            block_value = sum((y[b, local // dim, local % dim] for y in ys[1:]), ys[0][b, local // dim, local % dim]) \
                if ys else zero
            value = tirx.if_then_else(tirx.likely(c < block_slice.stop), block_value, value)
        if runs is not None:  # an empty run never initializes its sums
            value = tirx.if_then_else(runs.offsets[b + 1] > runs.offsets[b], value, zero)
        return value

    return assemble


def _lower_in_place(stages: list[PathStages], path_outputs: dict[int, list], params: list[te.Tensor], irreps_out,
                    batch, dtype: str) -> Lowered:
    """The PrimFunc of :func:`lower_plans` with ``in_place``: a stage per nonempty output block."""
    zero = tirx.const(0.0, dtype)
    blocks, columns, components = [], [], []
    for block, ((_, ir), block_slice) in enumerate(zip(irreps_out, irreps_out.slices())):
        if block_slice.stop > block_slice.start:
            value = _block_value(path_outputs.get(block, []), ir.dim, zero)
            blocks.append(te.compute((batch, block_slice.stop - block_slice.start), value, name=f"out{block}"))
            columns.append(block_slice)
            components.append(ir.dim)
    func = blocks_into_columns(te.create_prim_func(params + blocks), len(params), columns, irreps_out.dim, dtype)
    return Lowered(element_aligned(func, dtype), tuple(stages), "out",
                   blocks=tuple(OutputBlock(block.op.name, dim) for block, dim in zip(blocks, components)))


def _block_value(ys: list, dim: int, zero):
    """``(b, column) -> the sum of the paths' y at that column of the block`` (zero without paths)."""
    def value(b, column):
        terms = [y[b, column // dim, column % dim] for y in ys]
        return sum(terms[1:], terms[0]) if terms else zero
    return value


def flat_index(letters: tuple[str, ...], values: dict, extents: dict[str, int]):
    """The row-major flat index over ``letters`` of the given letter values (0 without letters)."""
    index = 0
    for letter in letters:
        index = index * extents[letter] + values[letter]
    return index


def coupling_expression(plan: PathPlan, zero):
    """``(b, letter values, k) -> sum_{i,j} C[i,j,k] a[b,.,i] b[b,.,j]`` with one term per nonzero."""
    a, b, coupling = plan.a, plan.b, plan.coupling
    dtype = a.tensor.dtype

    def expression(sample, values, k):
        channel_a, channel_b = flat_index(a.letters, values, plan.extents), flat_index(b.letters, values, plan.extents)
        per_component = []
        for component in range(coupling.shape[2]):
            terms = [
                tirx.const(float(coupling[i, j, component]), dtype)
                * a.tensor[sample, a.column(channel_a, i)] * b.tensor[sample, b.column(channel_b, j)]
                for i, j in zip(*np.nonzero(coupling[:, :, component]))
            ]
            per_component.append(sum(terms[1:], terms[0]) if terms else zero)
        return select_component(k, per_component, zero)

    return expression


def _factorable(plan: PathPlan) -> bool:
    """Whether contracting b with the coefficients first saves work: a's channels reuse it."""
    a, b = plan.a.letters, plan.b.letters
    return bool(a) and bool(b) and not set(a) & set(b) and plan.extent(a) > 1


def _factor_pairs(coupling: np.ndarray) -> list[tuple[int, int]]:
    """The (i, k) pairs where ``C[i, :, k]`` has a nonzero, in k-major order."""
    nonzero = np.any(coupling != 0, axis=1)
    return [(int(i), int(k)) for k in range(coupling.shape[2]) for i in np.nonzero(nonzero[:, k])[0]]


def _b_factor(plan: PathPlan, batch, zero, name: str):
    """``f[sample, b channel, q] = sum_j C[i, j, k] b[sample, ., j]`` for the q-th nonzero pair (i, k)."""
    b, coupling = plan.b, plan.coupling
    dtype = b.tensor.dtype
    values = []
    for i, k in _factor_pairs(coupling):
        def value(sample, channel, i=i, k=k):
            terms = [tirx.const(float(coupling[i, j, k]), dtype) * b.tensor[sample, b.column(channel, j)]
                     for j in np.nonzero(coupling[i, :, k])[0]]
            return sum(terms[1:], terms[0])
        values.append(value)
    return te.compute((batch, plan.extent(b.letters), len(values)),
                      lambda s, c, q: select_component(q, [value(s, c) for value in values], zero), name=name)


def _factored_expression(plan: PathPlan, factor, zero):
    """``(b, letter values, k) -> sum_i a[b,.,i] f[b,.,q(i,k)]``: one multiply-add per nonzero pair."""
    a, pairs = plan.a, _factor_pairs(plan.coupling)

    def expression(sample, values, k):
        channel_a = flat_index(a.letters, values, plan.extents)
        channel = flat_index(plan.b.letters, values, plan.extents)
        per_component = []
        for component in range(plan.coupling.shape[2]):
            terms = [a.tensor[sample, a.column(channel_a, i)] * factor[sample, channel, q]
                     for q, (i, kk) in enumerate(pairs) if kk == component]
            per_component.append(sum(terms[1:], terms[0]) if terms else zero)
        return select_component(k, per_component, zero)

    return expression


def unflatten(flat, letters: tuple[str, ...], extents: dict[str, int]) -> dict:
    """Letter values of a row-major flat channel index over ``letters``."""
    if len(letters) == 1:
        return {letters[0]: flat}
    values, stride = {}, 1
    for letter in reversed(letters):
        values[letter] = (flat // stride) % extents[letter]
        stride *= extents[letter]
    return values


def _path_output(plan: PathPlan, z, batch, inputs: Inputs, name: str, runs: Runs | None = None):
    """The ``y`` stage of one path: weights applied to ``z`` and the other letters summed (and,
    with ``runs``, the samples of each run)."""
    out_letters, weight_letters = plan.out_letters, plan.weight_letters

    def body(row, c, k):
        # A letter of extent 1 is no sum: without a reduce axis a path without channel sums
        # stays a plain expression that a schedule can inline into its consumer.
        axes = {letter: te.reduce_axis((0, plan.extents[letter]), letter) for letter in plan.reduce_letters
                if plan.extents[letter] > 1}
        sample, inside = row, None
        if runs is not None:
            start = runs.offsets[row].astype("int32")
            step = te.reduce_axis((0, runs.longest), name="s")
            inside = tirx.likely(step < runs.offsets[row + 1].astype("int32") - start)
            sample = start + step
        values = {letter: axes.get(letter, 0) for letter in plan.reduce_letters}
        values.update(unflatten(c, out_letters, plan.extents))
        term = z[(sample, *[values[letter] for letter in plan.z_letters], k)]
        if weight_letters is not None:
            flat = 0
            for letter in weight_letters:
                flat = flat * plan.extents[letter] + values[letter]
            term = inputs.weight_at(sample, plan.weight_offset + flat) * term
        if inside is not None:
            term = tirx.if_then_else(inside, term, tirx.const(0.0, str(z.dtype)))
        summed = ([step] if runs is not None else []) + list(axes.values())
        return te.sum(term, axis=summed) if summed else term

    rows = batch if runs is None else runs.count
    return te.compute((rows, plan.extent(out_letters), plan.coupling.shape[2]), body, name=name)
