"""Gradients of a tensor product as tensor expressions, built from the same path plans.

A product is linear in each of x1, x2 and the weights. With ``F = <g, tp(x1, x2, w)>`` for an
output gradient ``g``, each partial derivative of F is again a sum of couplings, one per path:

* d/dx1: g and x2 coupled with the coefficients transposed ``C[i,j,k] -> C'[k,j,i]``, the
  weights applied, summed into x1's blocks — a product in its own right, so it lowers (and
  is scheduled) exactly like the forward product;
* d/dx2: x1 and g coupled with ``C'[i,k,j]``, into x2's blocks;
* d/dw: the forward coupling of x1 and x2 contracted with g over the output components,
  one value per weight and sample.

Every gradient function takes ``x1, x2[, weight], grad`` then ``out``, whichever argument it
does not depend on included, so all share one calling convention.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tvm import te, tirx

from tpc.lower.lowered import Inputs, Lowered, Operand, PathPlan, select_component
from tpc.lower.paths import (
    assembly,
    check_lowering_arguments,
    coupling_expression,
    flat_index,
    forward_plans,
    lower_plans,
    path_stages,
    unflatten,
)
from tpc.lower.tir_edits import blocks_into_columns, element_aligned
from tpc.ops import Gradient, TensorProduct


def lower_gradient(tp: TensorProduct, wrt: str, dtype: str = "float32", batch: int | None = None,
                   coupling: str = "direct", in_place: bool = False) -> Lowered:
    """Lower the gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt``.

    For x1 and x2 the result has the input's shape and the stages of a Clebsch-Gordan product
    (``coupling`` and ``in_place`` as in :func:`tpc.lower.cg.lower_cg`). For the weights it is
    per sample, ``(batch, weight_numel)``, also when the product shares its weights (the caller sums).
    Several arguments ("x1+x2+weight") make one function with one output each, in that order
    (see :func:`lower_joint`).
    """
    op = Gradient(tp, wrt)
    check_lowering_arguments(dtype, coupling)
    batch = te.var("batch") if batch is None else batch
    inputs = Inputs.of(tp, dtype, batch)
    grad = te.placeholder((batch, tp.irreps_out.dim), dtype, name="grad")
    params = inputs.params() + [grad]
    plans = forward_plans(tp, inputs)
    if len(op.arguments) > 1:
        if in_place:
            raise ValueError("in_place applies to gradients with respect to one argument, x1 or x2")
        return lower_joint(op, inputs, grad, params, plans, batch, coupling)
    if wrt == "weight":
        if in_place:
            raise ValueError("in_place applies to the x1 and x2 gradients, whose stages are a product's")
        return _lower_weight_gradient(tp, plans, grad, params, batch)
    irreps = tp.irreps_in1 if wrt == "x1" else tp.irreps_in2
    return replace(lower_plans(_transposed(tp, plans, grad, wrt), inputs, params, irreps, batch, coupling,
                               in_place=in_place), op=op)


def _transposed(tp: TensorProduct, plans: list[PathPlan], grad, wrt: str) -> list[PathPlan]:
    """The plans of the x1 or x2 gradient: grad coupled with the other input, the coefficients
    transposed, into the blocks of ``wrt``."""
    out_slices = tp.irreps_out.slices()

    def grad_operand(plan: PathPlan) -> Operand:
        return Operand(grad, out_slices[plan.out_block].start, plan.coupling.shape[2], plan.out_letters)

    if wrt == "x1":
        return [replace(plan, a=grad_operand(plan), coupling=plan.coupling.transpose(2, 1, 0),
                        out_letters=plan.a.letters, out_block=tp.instructions[plan.index].i_in1) for plan in plans]
    return [replace(plan, b=grad_operand(plan), coupling=plan.coupling.transpose(0, 2, 1),
                    out_letters=plan.b.letters, out_block=tp.instructions[plan.index].i_in2) for plan in plans]


def lower_joint(op: Gradient, inputs: Inputs, grad, params: list, plans: list[PathPlan], batch,
                 coupling: str) -> Lowered:
    """Several gradients in one pass over the samples: one output per argument (``out_x1``,
    ``out_x2``, then the weights', each path's ``gw{p}`` writing its columns), every stage per sample.

    The x1 and x2 gradients are the transposed products. The weight gradient reuses the
    coupling ``z`` of one of them: the x1 gradient's ``z[letters, i] = sum C g x2`` contracted
    with ``x1[.., i]`` (or the x2 gradient's with x2) is ``sum C x1 x2 g``, so it costs one
    multiply-add per value of z instead of a coupling of its own.
    """
    tp, dtype = op.tp, str(grad.dtype)
    outputs, stages, sums, channel_sums, couplings = [], [], [], [], {}
    for name in ("x1", "x2"):
        if name in op.arguments:
            transposed = _transposed(tp, plans, grad, name)
            summed_first = [] if name == "x1" or "x1" not in op.arguments and "weight" in op.arguments else \
                [plan for plan in transposed if _channels_first(plan)]
            named, path_outputs, zs = path_stages([plan for plan in transposed if plan not in summed_first], inputs,
                                                  batch, coupling, prefix=f"{name}_")
            for plan in summed_first:
                m, y = _channels_summed_first(plan, inputs, batch, f"{name}_m{plan.index}", f"{name}_y{plan.index}")
                channel_sums.append(m.op.name)
                sums.append(y.op.name)
                path_outputs.setdefault(plan.out_block, []).append(y)
            stages += named
            couplings[name] = {plan.index: (plan.z_letters, zs[plan.index]) for plan in transposed if plan.index in zs}
            irreps = tp.irreps_in1 if name == "x1" else tp.irreps_in2
            outputs.append(te.compute((batch, irreps.dim), assembly(irreps, path_outputs, dtype), name=f"out_{name}"))
    columns = []
    if "weight" in op.arguments:
        source = "x1" if "x1" in couplings else "x2"
        for plan in plans:
            if plan.weight_letters is not None:
                operand = plan.a if source == "x1" else plan.b
                z_letters, z = couplings[source][plan.index]
                outputs.append(_weight_sum(plan, z, z_letters, operand, batch, f"gw{plan.index}"))
                columns.append(slice(plan.weight_offset, plan.weight_offset + plan.extent(plan.weight_letters)))
    func = te.create_prim_func(params + outputs)
    if columns:  # each path's weight gradient straight into its columns of one output
        func = blocks_into_columns(func, len(params) + len(outputs) - len(columns), columns, tp.weight_numel, dtype)
    names = tuple(output.op.name for output in outputs)
    return Lowered(element_aligned(func, dtype), tuple(stages), names[0], op=op, outputs=names, sums=tuple(sums),
                   channel_sums=tuple(channel_sums))


def _channels_first(plan: PathPlan) -> bool:
    """Whether the gradient path writes one channel (x2 of multiplicity 1, as in MACE's
    convolution) from a sum over channels: then summing the channels first is cheaper."""
    return plan.extent(plan.out_letters) == 1 and plan.extent(plan.reduce_letters) > 1


def _channels_summed_first(plan: PathPlan, inputs: Inputs, batch, m_name: str, y_name: str) -> tuple[te.Tensor, ...]:
    """A gradient path into one channel with its channel sum first:
    ``m[b, 0, q] = sum over channels of weight a[.., i_q] b[.., k_q]`` for every pair (i, k)
    the coefficients couple, then ``y[b, 0, n] = sum_q C[i_q, k_q, n] m[b, 0, q]``. It costs one
    multiply-add per pair and channel instead of one per nonzero coefficient and channel."""
    a, b, coupling = plan.a, plan.b, plan.coupling
    dtype = str(a.tensor.dtype)
    zero = tirx.const(0.0, dtype)
    pairs = [(int(i), int(k)) for i, k in zip(*np.nonzero(np.any(coupling != 0, axis=2)))]
    axes = {letter: te.reduce_axis((0, plan.extents[letter]), letter) for letter in plan.reduce_letters
            if plan.extents[letter] > 1}

    def body(sample, channel, q):
        values = {letter: axes.get(letter, 0) for letter in plan.reduce_letters}
        values.update(dict.fromkeys(plan.out_letters, 0))
        column_a = flat_index(a.letters, values, plan.extents)
        column_b = flat_index(b.letters, values, plan.extents)
        terms = [a.tensor[sample, a.column(column_a, i)] * b.tensor[sample, b.column(column_b, k)] for i, k in pairs]
        term = select_component(q, terms, zero)
        if plan.weight_letters is not None:
            flat = flat_index(plan.weight_letters, values, plan.extents)
            term = inputs.weight_at(sample, plan.weight_offset + flat) * term
        return te.sum(term, axis=list(axes.values()))

    m = te.compute((batch, 1, len(pairs)), body, name=m_name)

    def output(sample, channel, n):
        values = []
        for component in range(coupling.shape[2]):
            terms = [tirx.const(float(coupling[i, k, component]), dtype) * m[sample, 0, q]
                     for q, (i, k) in enumerate(pairs) if coupling[i, k, component] != 0]
            values.append(sum(terms[1:], terms[0]) if terms else zero)
        return select_component(n, values, zero)

    return m, te.compute((batch, 1, coupling.shape[2]), output, name=y_name)


def _weight_sum(plan: PathPlan, z: te.Tensor, z_letters: tuple[str, ...], operand: Operand, batch,
                name: str) -> te.Tensor:
    """``gw[b, weight channel] = sum z[b, .., n] operand[b, .., n]`` over the components n of the
    input whose gradient ``z`` (channel letters ``z_letters``) couples, x1's i or x2's j, and
    the letters the weight lacks."""
    summed = [letter for letter in dict.fromkeys(z_letters + operand.letters) if letter not in plan.weight_letters]
    axes = {letter: te.reduce_axis((0, plan.extents[letter]), letter) for letter in summed
            if plan.extents[letter] > 1}

    def body(b, c):
        values = {letter: axes.get(letter, 0) for letter in summed}
        values.update(unflatten(c, plan.weight_letters, plan.extents))
        channel = flat_index(operand.letters, values, plan.extents)
        z_channel = [values[letter] for letter in z_letters]
        terms = [z[(b, *z_channel, n)] * operand.tensor[b, operand.column(channel, n)] for n in range(operand.dim)]
        total = sum(terms[1:], terms[0])
        return te.sum(total, axis=list(axes.values())) if axes else total

    return te.compute((batch, plan.extent(plan.weight_letters)), body, name=name)


def _weight_assembly(pieces: list[tuple[int, int, te.Tensor]], dtype: str):
    """``(b, c) -> the weight gradient at flat weight c``: the piece of the path that owns c."""
    zero = tirx.const(0.0, dtype)

    def assemble(b, c):
        value = zero
        for start, size, gw in reversed(pieces):
            value = tirx.if_then_else(tirx.likely(c < start + size), gw[b, c - start], value)
        return value

    return assemble


def _lower_weight_gradient(tp: TensorProduct, plans: list[PathPlan], grad, params: list, batch) -> Lowered:
    """Per weighted path: ``z`` as in the product, then ``gw{p}[b, weight] = sum z g`` over the
    output components and the letters the weight does not carry; ``out`` the flat weights."""
    dtype = str(grad.dtype)
    zero = tirx.const(0.0, dtype)
    out_slices = tp.irreps_out.slices()
    pieces: list[tuple[int, int, te.Tensor]] = []
    for plan in plans:
        if plan.weight_letters is None:
            continue
        letters = plan.z_letters
        coupled = coupling_expression(plan, zero)
        components = plan.coupling.shape[2]
        z = te.compute((batch, *[plan.extents[letter] for letter in letters], components),
                       lambda b, *rest: coupled(b, dict(zip(letters, rest[:-1])), rest[-1]), name=f"z{plan.index}")
        summed = [letter for letter in dict.fromkeys(letters + plan.out_letters) if letter not in plan.weight_letters]
        axes = {letter: te.reduce_axis((0, plan.extents[letter]), letter) for letter in summed}
        k = te.reduce_axis((0, components), "k")
        grad_start = out_slices[plan.out_block].start

        def body(b, c):
            values = dict(axes)
            values.update(unflatten(c, plan.weight_letters, plan.extents))
            out_channel = flat_index(plan.out_letters, values, plan.extents)
            z_value = z[(b, *[values[letter] for letter in plan.z_letters], k)]
            term = z_value * grad[b, grad_start + out_channel * components + k]
            return te.sum(term, axis=[*axes.values(), k])

        # te.compute calls body at once, so closing over this iteration's names is safe.
        gw = te.compute((batch, plan.extent(plan.weight_letters)), body, name=f"gw{plan.index}")
        pieces.append((plan.weight_offset, plan.extent(plan.weight_letters), gw))

    out = te.compute((batch, tp.weight_numel), _weight_assembly(pieces, dtype), name="out")
    func = element_aligned(te.create_prim_func(params + [out]), dtype)
    return Lowered(func, (), "out", algorithm="cg", op=Gradient(tp, "weight"))
