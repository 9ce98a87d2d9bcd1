"""``tpc.torch.TensorProduct``: a compiled tensor product as a ``torch.nn.Module``.

The module holds plain data only (the custom ops' key, a few sizes, the weights), so it
survives ``torch.save``/``torch.load`` in another process, ``torch.jit.script`` and
``torch.export``; its kernels are found again from the key on first use.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from tpc.ops import TensorProduct as TensorProductSpec
from tpc.targets import TargetSpec, resolve_target
from tpc.torch.ops import compiled_kernels, compiled_op, register


class CompiledModule(torch.nn.Module):
    """What the modules on compiled kernels share: the custom ops' ``key`` (spec and target as
    canonical JSON), and from it the spec, the target and the kernels compiled so far."""

    __jit_unused_properties__ = ["tp", "target"]

    @property
    def tp(self) -> TensorProductSpec:
        """The spec this module computes."""
        return compiled_op(self.key).tp

    @property
    def target(self) -> TargetSpec:
        """The target its kernels are compiled for."""
        return compiled_op(self.key).target

    def kernels(self) -> dict[tuple[str, str], Any]:
        """The kernels compiled so far for this module's product, by (what, dtype name).

        What is "forward", a gradient's arguments ("x1", "x1+x2+weight"), "convolution" or
        "convolution-gradient"; kernels compile on first use, so a module that has not run has
        none. ``kernel.schedule.source`` tells whether a tuned schedule is in use ("user
        cache", "shipped") or the default.

        Returns:
            A new dict of the kernels; modules of the same product and target share them.
        """
        return compiled_kernels(self.key)

    def extra_repr(self) -> str:
        tp = self.tp
        return f"{tp.irreps_in1} x {tp.irreps_in2} -> {tp.irreps_out}, target={self.target.name}"


class TensorProduct(CompiledModule):
    """A compiled tensor product as a module: ``module(x1, x2[, weight])`` like e3nn's.

    ``internal_weights`` (default: True when the product has shared weights) keeps the
    weights as a parameter, initialised from a standard normal as e3nn does; otherwise they
    are passed to ``forward``: shape (weight_numel,) when shared, (..., weight_numel) per
    sample, and ``weight`` is an empty buffer, as in e3nn. Inputs may have any leading
    dimensions, broadcast against each other. Kernels are compiled on first use per dtype
    (the tuned schedule from the cache when there is one).

    Args:
        tp: the spec.
        target: a CPU target (``"host"``, ``"x86"``, ``"arm"`` or a TVM target dict).
        internal_weights: keep shared weights as a parameter.

    >>> import tpc, tpc.torch, torch
    >>> module = tpc.torch.TensorProduct(tpc.FullyConnectedTensorProduct("2x1o", "1o", "3x0e"))
    >>> module(torch.randn(5, 6), torch.randn(5, 3)).shape
    torch.Size([5, 3])
    """

    def __init__(self, tp: TensorProductSpec, target: Any = "host", internal_weights: bool | None = None) -> None:
        super().__init__()
        if not isinstance(tp, TensorProductSpec):
            raise TypeError(f"tpc.torch.TensorProduct takes a tpc.TensorProduct, got {type(tp).__name__}")
        resolved = resolve_target(target)
        if resolved.family != "cpu":
            raise ValueError(f"tpc.torch runs on CPU targets (x86, arm, host) so far, not {resolved.name!r}")
        if internal_weights is None:
            internal_weights = tp.shared_weights and tp.weight_numel > 0
        if internal_weights and not tp.shared_weights:
            raise ValueError("internal weights need a product with shared weights (shared_weights=True)")
        self.key: str = register(tp, resolved)
        self.dim1: int = tp.irreps_in1.dim
        self.dim2: int = tp.irreps_in2.dim
        self.dim_out: int = tp.irreps_out.dim
        self.weight_numel: int = tp.weight_numel
        self.shared_weights: bool = tp.shared_weights
        self.internal_weights: bool = bool(internal_weights)
        if self.internal_weights:
            self.weight = torch.nn.Parameter(torch.randn(tp.weight_numel))
        else:
            self.register_buffer("weight", torch.Tensor())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.internal_weights:
            if weight is not None:
                raise ValueError("this module keeps its weights internally; do not pass weight")
            # A view, not the leaf itself: the backward can then ask whether the running pass
            # uses the weights' gradient (forces do not) and skip its kernel.
            weight = self.weight.view_as(self.weight)
        elif self.weight_numel > 0 and weight is None:
            raise ValueError("this product has {} weights: pass weight".format(self.weight_numel))
        if x1.shape[-1] != self.dim1 or x2.shape[-1] != self.dim2:
            raise ValueError("x1 and x2 must end in ({},) and ({},), got {} and {}".format(
                self.dim1, self.dim2, list(x1.shape), list(x2.shape)))
        leading = list(x1.shape[:-1])
        if leading != list(x2.shape[:-1]):
            leading = list(torch.broadcast_tensors(x1[..., 0], x2[..., 0])[0].shape)
        x1 = x1.expand(leading + [self.dim1]).reshape(-1, self.dim1)
        x2 = x2.expand(leading + [self.dim2]).reshape(-1, self.dim2)
        if weight is not None and not self.shared_weights:
            weight = weight.expand(leading + [self.weight_numel]).reshape(-1, self.weight_numel)
        y = torch.ops.tpc.tensor_product(x1, x2, weight, self.key)
        return y.reshape(leading + [self.dim_out])
