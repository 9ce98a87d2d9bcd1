"""``tpc.torch.Convolution``: a message-passing convolution as one compiled op, with every derivative.

``out[n] = sum over edges e with receivers[e] = n of tp(node_feats[senders[e]], edge_attrs[e],
edge_weights[e])``, MACE's gather + ``conv_tp`` + ``scatter_sum``:

* forward: the product fused with its gather and scatter-sum (:class:`tpc.Fused`); the edges
  are put in receiver order first (a stable sort, skipped when they are in order already);
* backward: :class:`tpc.ConvolutionGradient` gives every edge's gradients in one kernel (x1
  and the output gradient read through the indices, any edge order), then x1's terms are
  summed onto the senders;
* higher derivatives: each is again these two ops at other arguments
  (:func:`tpc.torch.ops.second_derivatives`).

Every sum runs in a fixed order: the same bits run to run and for any thread count.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tpc.ops import ConvolutionGradient
from tpc.ops import TensorProduct as TensorProductSpec
from tpc.targets import resolve_target
from tpc.torch.modules import CompiledModule
from tpc.torch.ops import (
    TORCH_DTYPES,
    compiled_op,
    gradient_nodes,
    host_tensor,
    record,
    register,
    second_derivatives,
    wanted_gradients,
)
from tpc.torch.workspace import WORKSPACE


def _indices(name: str, index: torch.Tensor, edges: int, rows: int | None = None) -> torch.Tensor:
    """An int64 CPU index of one entry per edge, its values checked against ``rows`` node rows
    when given (the kernels check the indices they read themselves)."""
    if index.dtype != torch.int64 or index.shape != (edges,):
        raise ValueError(f"{name} must be an int64 tensor of shape ({edges},), got {index.dtype} {tuple(index.shape)}")
    if rows is not None and edges and (int(index.min()) < 0 or int(index.max()) >= rows):
        raise ValueError(f"{name} has values outside [0, {rows}) (the node rows): min {int(index.min())}, "
                         f"max {int(index.max())}")
    return index.detach().contiguous()


def _reordered(values: Optional[torch.Tensor], order: torch.Tensor) -> Optional[torch.Tensor]:
    """The rows of ``values`` in ``order``, in a workspace buffer (free again once the call ends)."""
    if values is None:
        return None
    return torch.index_select(values, 0, order, out=WORKSPACE.empty(tuple(values.shape), TORCH_DTYPES[values.dtype]))


@torch.library.custom_op("tpc::convolution", mutates_args=())
def convolution(node_feats: torch.Tensor, edge_attrs: torch.Tensor, edge_weights: Optional[torch.Tensor],
                senders: torch.Tensor, receivers: torch.Tensor, key: str) -> torch.Tensor:
    """The convolution of a registered spec: one row per node (see the module docstring)."""
    op = compiled_op(key)
    kernel = op.kernel("convolution", node_feats.dtype)
    edges, nodes = edge_attrs.shape[0], node_feats.shape[0]
    record(key, "convolution", TORCH_DTYPES[node_feats.dtype], edges)
    senders, receivers = _indices("senders", senders, edges), _indices("receivers", receivers, edges, nodes)
    edge_attrs, edge_weights = host_tensor(edge_attrs), host_tensor(edge_weights)
    if edges and not bool((receivers[1:] >= receivers[:-1]).all()):
        order = torch.argsort(receivers, stable=True)
        senders, receivers = senders[order], receivers[order]
        edge_attrs, edge_weights = _reordered(edge_attrs, order), _reordered(edge_weights, order)
    offsets = torch.zeros(nodes + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(receivers, minlength=nodes), 0, out=offsets[1:])
    out = WORKSPACE.empty((nodes, op.tp.irreps_out.dim), TORCH_DTYPES[node_feats.dtype])
    kernel(host_tensor(node_feats), edge_attrs, edge_weights, senders=senders, offsets=offsets, out=out)
    return out


@convolution.register_fake
def _convolution_fake(node_feats: torch.Tensor, edge_attrs: torch.Tensor, edge_weights: Optional[torch.Tensor],
                      senders: torch.Tensor, receivers: torch.Tensor, key: str) -> torch.Tensor:
    return node_feats.new_empty((node_feats.shape[0], compiled_op(key).tp.irreps_out.dim))


@torch.library.custom_op("tpc::convolution_gradients", mutates_args=())
def convolution_gradients(node_feats: torch.Tensor, edge_attrs: torch.Tensor, edge_weights: Optional[torch.Tensor],
                          grad: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor,
                          key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of ``<grad, convolution(...)>`` with respect to the node features, the edge
    attributes and the edge weights (empty when the product has none)."""
    op = compiled_op(key)
    kernel = op.kernel(ConvolutionGradient.kind, node_feats.dtype)
    edges, nodes = edge_attrs.shape[0], node_feats.shape[0]
    dtype = TORCH_DTYPES[node_feats.dtype]
    record(key, ConvolutionGradient.kind, dtype, edges)
    senders, receivers = _indices("senders", senders, edges), _indices("receivers", receivers, edges)
    outs = tuple(WORKSPACE.empty((edges, width), dtype) for width in ConvolutionGradient(op.tp).output_widths)
    kernel(host_tensor(node_feats), host_tensor(edge_attrs), host_tensor(edge_weights), host_tensor(grad),
           senders=senders, receivers=receivers, out=outs)
    node_grad = WORKSPACE.empty((nodes, op.tp.irreps_in1.dim), dtype).zero_().index_add_(0, senders, outs[0])
    return node_grad, outs[1], outs[2] if len(outs) > 2 else node_feats.new_empty(0)


@convolution_gradients.register_fake
def _gradients_fake(node_feats: torch.Tensor, edge_attrs: torch.Tensor, edge_weights: Optional[torch.Tensor],
                    grad: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor,
                    key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty_like(node_feats), torch.empty_like(edge_attrs),
            node_feats.new_empty(0) if edge_weights is None else torch.empty_like(edge_weights))


def _setup_convolution(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    node_feats, edge_attrs, edge_weights, senders, receivers, key = inputs
    ctx.save_for_backward(node_feats, edge_attrs, edge_weights, senders, receivers)
    ctx.key = key
    ctx.gradient_nodes = gradient_nodes(inputs[:3])


def _convolution_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    node_feats, edge_attrs, edge_weights, senders, receivers = ctx.saved_tensors
    wanted = wanted_gradients(ctx, 3)
    if not any(wanted):
        return None, None, None, None, None, None
    values = convolution_gradients(node_feats, edge_attrs, edge_weights, grad, senders, receivers, ctx.key)
    return (*(value if wanted[position] else None for position, value in enumerate(values)), None, None, None)


convolution.register_autograd(_convolution_backward, setup_context=_setup_convolution)


def _setup_gradients(ctx: Any, inputs: tuple, output: Any) -> None:
    node_feats, edge_attrs, edge_weights, grad, senders, receivers, key = inputs
    ctx.save_for_backward(node_feats, edge_attrs, edge_weights, grad, senders, receivers)
    ctx.key = key
    ctx.gradient_nodes = gradient_nodes(inputs[:4])
    ctx.set_materialize_grads(False)


def _gradients_backward(ctx: Any, *upstreams: Optional[torch.Tensor]) -> tuple:
    """The derivatives of the sum of ``<upstream, gradient>`` over the three gradients."""
    node_feats, edge_attrs, edge_weights, grad, senders, receivers = ctx.saved_tensors
    key = ctx.key

    def gradients_at(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], names: list[str]) -> dict:
        values = convolution_gradients(x1, x2, weight, grad, senders, receivers, key)
        return {name: value for name, value in zip(("x1", "x2", "weight"), values) if name in names}

    total = second_derivatives(
        {"x1": node_feats, "x2": edge_attrs, "weight": edge_weights}, dict(zip(("x1", "x2", "weight"), upstreams)),
        dict(zip(("x1", "x2", "weight", "grad"), wanted_gradients(ctx, 4))), gradients_at,
        lambda x1, x2, weight: convolution(x1, x2, weight, senders, receivers, key),
        any(not ins.has_weight for ins in compiled_op(key).tp.instructions))
    return total["x1"], total["x2"], total["weight"], total["grad"], None, None, None


convolution_gradients.register_autograd(_gradients_backward, setup_context=_setup_gradients)


class Convolution(CompiledModule):
    """A compiled message-passing convolution: ``module(node_feats, edge_attrs, edge_weights, edge_index)``
    is ``scatter_sum(tp(node_feats[edge_index[0]], edge_attrs, edge_weights), edge_index[1])``
    with one row per node, as MACE's interaction blocks compute it (their ``conv_fusion`` call).

    Args:
        tp: the product, with per-edge weights (``shared_weights=False``) or none.
        target: a CPU target (``"host"``, ``"x86"``, ``"arm"`` or a TVM target dict).

    >>> import tpc, tpc.torch, torch
    >>> module = tpc.torch.Convolution(tpc.mace_convolution("4x0e", 1))
    >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    >>> module(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 8), edge_index).shape
    torch.Size([3, 16])
    """

    def __init__(self, tp: TensorProductSpec, target: Any = "host") -> None:
        super().__init__()
        if not isinstance(tp, TensorProductSpec):
            raise TypeError(f"tpc.torch.Convolution takes a tpc.TensorProduct, got {type(tp).__name__}")
        ConvolutionGradient(tp)  # per-edge weights or none
        resolved = resolve_target(target)
        if resolved.family != "cpu":
            raise ValueError(f"tpc.torch runs on CPU targets (x86, arm, host) so far, not {resolved.name!r}")
        self.key: str = register(tp, resolved)
        self.dim1: int = tp.irreps_in1.dim
        self.dim2: int = tp.irreps_in2.dim
        self.weight_numel: int = tp.weight_numel

    def forward(self, node_feats: torch.Tensor, edge_attrs: torch.Tensor, edge_weights: Optional[torch.Tensor],
                edge_index: torch.Tensor) -> torch.Tensor:
        if node_feats.dim() != 2 or node_feats.shape[1] != self.dim1 or edge_attrs.dim() != 2 \
                or edge_attrs.shape[1] != self.dim2:
            raise ValueError("node_feats and edge_attrs must be (nodes, {}) and (edges, {}), got {} and {}".format(
                self.dim1, self.dim2, list(node_feats.shape), list(edge_attrs.shape)))
        if self.weight_numel > 0 and (edge_weights is None or list(edge_weights.shape) != [edge_attrs.shape[0],
                                                                                            self.weight_numel]):
            raise ValueError("edge_weights must be (edges, {})".format(self.weight_numel))
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError("edge_index must be (2, edges): senders, then receivers")
        weights = edge_weights if self.weight_numel > 0 else None
        return torch.ops.tpc.convolution(node_feats, edge_attrs, weights, edge_index[0], edge_index[1], self.key)
