"""A tensor product fused with the gather before it and the scatter-sum after it.

In a message-passing layer the product runs once per edge e,
``message[e] = tp(x[senders[e]], x2[e], weight[e])``, and the messages are summed onto the
receivers, ``out[n] = sum_{e: receivers[e] = n} message[e]``. Run op by op, the gathered
features and the messages (edges x irreps_out.dim) go through memory. Fused:

* ``gather``: the product reads x1 through the senders index; no gathered copy exists.
* ``scatter``: the edges come sorted by receiver and ``offsets`` says where each receiver's
  run starts. The product's path sums run over a receiver's edges, so its messages are
  summed in registers, in edge order, without atomics, and nothing per edge is stored. The
  final assembly of the path outputs is linear, so it runs once per receiver, not per edge.
  (The graph runtime sorts the edges once, at the graph's entry: read through a permutation
  instead, the per-edge operands made the kernel several times slower.)

``edge_x1`` is a stage that only says where an edge's x1 is read; schedules inline it.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import te, tirx

from tpc.lower.gradients import lower_joint
from tpc.lower.lowered import Inputs, Lowered, Runs
from tpc.lower.paths import check_lowering_arguments, forward_plans, lower_plans
from tpc.ops import ConvolutionGradient, Fused, Gradient, TensorProduct

GATHER_STAGE = "edge_x1"
GRAD_GATHER_STAGE = "edge_grad"


X1_LAYOUTS = ("mul_ir", "ir_mul")
TRANSPOSED_STAGE = "x1_ir_mul"


def lower_convolution(tp: TensorProduct, fusion: str, dtype: str = "float32", coupling: str = "direct",
                      x1_layout: str = "mul_ir", in_place: bool = False) -> Lowered:
    """Lower ``tp`` with its gather and/or scatter-sum fused (``fusion``: "gather", "scatter" or
    "gather+scatter"; see the module docstring).

    ``x1_layout`` "ir_mul" (with the gather only) first copies the node features to
    component-major blocks (stage ``x1_ir_mul``, one pass over the nodes), so that a path reads
    the same component of consecutive channels from adjacent memory: loads across channels
    become vector loads. ``in_place`` (with the gather only) writes the output blocks as
    :func:`tpc.lower.paths.lower_plans` says.

    Parameters, in order: ``x1`` (node features, or one row per edge when the gather is not
    fused), ``senders`` (int64, with the gather), ``x2`` (per edge), ``weight`` (per edge or
    shared, when the product has weights), ``offsets`` (int64, receivers + 1 entries, with the
    scatter-sum), then ``out`` (one row per receiver with the scatter-sum, else per edge), and
    with the scatter-sum the scalar ``longest_run``, the largest number of edges of one
    receiver. Edge and row counts are symbolic.
    """
    op = Fused(tp, fusion)
    gather, scatter = op.gather, op.scatter
    check_lowering_arguments(dtype, coupling)
    if x1_layout not in X1_LAYOUTS:
        raise ValueError(f"x1_layout must be one of {X1_LAYOUTS}, got {x1_layout!r}")
    transposed = x1_layout == "ir_mul"
    if transposed and not gather:
        raise ValueError("x1_layout 'ir_mul' needs the gather fused (it transposes the node features once)")
    edges = te.var("edges")
    x1 = te.placeholder((te.var("nodes") if gather else edges, tp.irreps_in1.dim), dtype, name="x1")
    senders = te.placeholder((edges,), "int64", name="senders")
    plain = Inputs.of(tp, dtype, edges)
    edge_x1 = x1
    if gather:
        source = _component_major(x1, tp) if transposed else x1
        edge_x1 = te.compute((edges, tp.irreps_in1.dim), lambda e, c: source[senders[e].astype("int32"), c],
                             name=GATHER_STAGE)
    inputs = Inputs(edge_x1, plain.x2, plain.weight, tp.shared_weights)
    offsets = te.placeholder((te.var("receivers_and_one"),), "int64", name="offsets")
    params = [x1] + ([senders] if gather else []) + plain.params()[1:] + ([offsets] if scatter else [])
    runs = Runs(offsets, te.var("longest_run")) if scatter else None
    plans = forward_plans(tp, inputs)
    if transposed:
        plans = [replace(plan, a=replace(plan.a, channels=tp.irreps_in1[tp.instructions[plan.index].i_in1].mul))
                 for plan in plans]
    lowered = lower_plans(plans, inputs, params, tp.irreps_out, edges, coupling, runs, in_place)
    return replace(lowered, op=op)


def _component_major(x1: te.Tensor, tp: TensorProduct) -> te.Tensor:
    """x1 with each block stored component-major: column ``start + i * mul + u`` holds channel
    u's component i (e3nn stores it at ``start + u * dim + i``)."""
    zero = tirx.const(0, "int32")

    def source_column(col):
        value = zero
        for (mul, ir), block in reversed(list(zip(tp.irreps_in1, tp.irreps_in1.slices()))):
            if block.stop > block.start:
                local = col - block.start
                value = tirx.if_then_else(tirx.likely(col < block.stop),
                                          block.start + (local % mul) * ir.dim + local // mul, value)
        return value

    return te.compute(x1.shape, lambda n, col: x1[n, source_column(col)], name=TRANSPOSED_STAGE)


def lower_convolution_gradient(tp: TensorProduct, dtype: str = "float32", coupling: str = "direct") -> Lowered:
    """Lower :class:`~tpc.ops.ConvolutionGradient`: every edge's gradients in one pass, x1 read
    through ``senders`` (stage ``edge_x1``) and the output gradient through ``receivers``
    (stage ``edge_grad``), the stages of :func:`tpc.lower.gradients.lower_joint` over the edges.

    Parameters, in order: ``x1`` (nodes), ``senders`` (int64), ``x2``, ``weight`` (per edge,
    when the product has weights), ``grad`` (one row per node), ``receivers`` (int64), then one
    output per argument (x1's term per edge, x2's, the weights'). Edge and node counts are symbolic.
    """
    op = ConvolutionGradient(tp)
    check_lowering_arguments(dtype, coupling)
    edges, nodes = te.var("edges"), te.var("nodes")
    x1 = te.placeholder((nodes, tp.irreps_in1.dim), dtype, name="x1")
    grad = te.placeholder((nodes, tp.irreps_out.dim), dtype, name="grad")
    senders = te.placeholder((edges,), "int64", name="senders")
    receivers = te.placeholder((edges,), "int64", name="receivers")
    edge_x1 = te.compute((edges, tp.irreps_in1.dim), lambda e, c: x1[senders[e].astype("int32"), c],
                         name=GATHER_STAGE)
    edge_grad = te.compute((edges, tp.irreps_out.dim), lambda e, c: grad[receivers[e].astype("int32"), c],
                           name=GRAD_GATHER_STAGE)
    plain = Inputs.of(tp, dtype, edges)
    inputs = Inputs(edge_x1, plain.x2, plain.weight, False)
    params = [x1, senders] + plain.params()[1:] + [grad, receivers]
    lowered = lower_joint(Gradient(tp, "+".join(op.arguments)), inputs, edge_grad, params, forward_plans(tp, inputs),
                          edges, coupling)
    return replace(lowered, op=op)
