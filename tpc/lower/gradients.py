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

from tvm import te, tirx

from tpc.lower.lowered import Inputs, Lowered, Operand, PathPlan
from tpc.lower.paths import check_lowering_arguments, coupling_expression, forward_plans, lower_plans, unflatten
from tpc.lower.tir_edits import element_aligned
from tpc.ops import Gradient, TensorProduct


def lower_gradient(tp: TensorProduct, wrt: str, dtype: str = "float32", batch: int | None = None,
                   coupling: str = "direct", in_place: bool = False) -> Lowered:
    """Lower the gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt``.

    For x1 and x2 the result has the input's shape and the stages of a Clebsch-Gordan product
    (``coupling`` and ``in_place`` as in :func:`tpc.lower.cg.lower_cg`). For the weights it is
    per sample, ``(batch, weight_numel)``, also when the product shares its weights (the caller sums).
    """
    op = Gradient(tp, wrt)
    check_lowering_arguments(dtype, coupling)
    batch = te.var("batch") if batch is None else batch
    inputs = Inputs.of(tp, dtype, batch)
    grad = te.placeholder((batch, tp.irreps_out.dim), dtype, name="grad")
    params = inputs.params() + [grad]
    plans = forward_plans(tp, inputs)
    if wrt == "weight":
        if in_place:
            raise ValueError("in_place applies to the x1 and x2 gradients, whose stages are a product's")
        return _lower_weight_gradient(tp, plans, grad, params, batch)
    out_slices = tp.irreps_out.slices()

    def grad_operand(plan: PathPlan) -> Operand:
        return Operand(grad, out_slices[plan.out_block].start, plan.coupling.shape[2], plan.out_letters)

    if wrt == "x1":
        transposed = [replace(plan, a=grad_operand(plan), coupling=plan.coupling.transpose(2, 1, 0),
                              out_letters=plan.a.letters, out_block=tp.instructions[plan.index].i_in1)
                      for plan in plans]
        return replace(lower_plans(transposed, inputs, params, tp.irreps_in1, batch, coupling, in_place=in_place),
                       op=op)
    transposed = [replace(plan, b=grad_operand(plan), coupling=plan.coupling.transpose(0, 2, 1),
                          out_letters=plan.b.letters, out_block=tp.instructions[plan.index].i_in2)
                  for plan in plans]
    return replace(lower_plans(transposed, inputs, params, tp.irreps_in2, batch, coupling, in_place=in_place),
                   op=op)


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
            out_channel = 0
            for letter in plan.out_letters:
                out_channel = out_channel * plan.extents[letter] + values[letter]
            z_value = z[(b, *[values[letter] for letter in plan.z_letters], k)]
            term = z_value * grad[b, grad_start + out_channel * components + k]
            return te.sum(term, axis=[*axes.values(), k])

        # te.compute calls body at once, so closing over this iteration's names is safe.
        gw = te.compute((batch, plan.extent(plan.weight_letters)), body, name=f"gw{plan.index}")
        pieces.append((plan.weight_offset, plan.extent(plan.weight_letters), gw))

    def assemble(b, c):
        value = zero
        for start, size, gw in reversed(pieces):
            value = tirx.if_then_else(tirx.likely(c < start + size), gw[b, c - start], value)
        return value

    out = te.compute((batch, tp.weight_numel), assemble, name="out")
    func = element_aligned(te.create_prim_func(params + [out]), dtype)
    return Lowered(func, (), "out", algorithm="cg", op=Gradient(tp, "weight"))
