"""The ``tpc::`` custom ops: compiled tensor products and their gradients, with every derivative.

The ops are ``torch.library`` custom ops (``tpc::tensor_product`` and
``tpc::tensor_product_gradient``), so they run in eager mode, under ``torch.compile`` and in
``torch.export`` graphs; tensors reach the TVM kernels through DLPack without copies.

A product ``y = tp(x1, x2, w)`` is linear in each argument. With ``F = <g, y>``, the gradients
are the compiled kernels ``d/dx1``, ``d/dx2``, ``d/dw`` of F (:func:`tpc.build.compile_gradient`),
and the derivative of a gradient is again a sum of those kernels and the product at other
arguments: e.g. ``<h, dF/dx1(x2, w, g)> = F(h, x2, w, g)``, whose derivatives are the
kernels at ``x1 = h``. So derivatives of any order stay compiled.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from tpc.build import compile as compile_kernel
from tpc.build import compile_gradient
from tpc.dtypes import DTYPES
from tpc.ops import TensorProduct as TensorProductSpec
from tpc.targets import TargetSpec, resolve_target

TORCH_DTYPES = {getattr(torch, name): name for name in DTYPES}
"""The dtype name of each torch dtype the kernels take."""


class _CompiledOp:
    """A product's kernels for one target, compiled on first use per dtype."""

    def __init__(self, tp: TensorProductSpec, target: TargetSpec) -> None:
        self.tp = tp
        self.target = target
        self._kernels: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def kernel(self, what: str, dtype: torch.dtype) -> Any:
        """The kernel of ``what`` ("forward", "x1", "x2" or "weight") for a torch dtype."""
        if dtype not in TORCH_DTYPES:
            raise TypeError(f"tpc tensor products take {' or '.join(DTYPES)} tensors, got {dtype}")
        key = (what, TORCH_DTYPES[dtype])
        with self._lock:
            if key not in self._kernels:
                self._kernels[key] = compile_kernel(self.tp, target=self.target, dtype=key[1]) if what == "forward" \
                    else compile_gradient(self.tp, what, target=self.target, dtype=key[1])
            return self._kernels[key]


_OPS: dict[str, _CompiledOp] = {}


def register(tp: TensorProductSpec, target: TargetSpec) -> str:
    """The ``key`` argument of the custom ops for ``tp`` on ``target``: the canonical JSON of
    both, so a module saved with ``torch.save`` finds its kernels again in another process."""
    key = json.dumps({"spec": tp.to_dict(), "target": target.tvm_dict}, sort_keys=True, separators=(",", ":"))
    compiled_op(key)
    return key


def compiled_op(key: str) -> _CompiledOp:
    """The kernels of the product ``key`` describes, set up on first use in this process."""
    op = _OPS.get(key)
    if op is None:
        try:
            data = json.loads(key)
            tp, target = TensorProductSpec.from_dict(data["spec"]), resolve_target(data["target"])
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise KeyError(f"the custom-op key {key[:80]!r} does not describe a tensor product and target "
                           f"({error})") from None
        op = _OPS.setdefault(key, _CompiledOp(tp, target))
    return op


def registered_product(key: str) -> TensorProductSpec:
    """The spec behind the ``key`` argument of the ``tpc::`` custom ops (for exporters)."""
    return compiled_op(key).tp


def _host(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A contiguous CPU tensor without autograd history, which DLPack can hand over as is."""
    if tensor is None:
        return None
    if tensor.device.type != "cpu":
        raise ValueError(f"tpc.torch runs on CPU tensors so far, got a tensor on {tensor.device}")
    return tensor.detach().contiguous()


def _empty(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized CPU tensor in memory numpy allocates: for outputs of tens of MB, torch's
    own allocation costs more than the kernel."""
    return torch.from_numpy(np.empty(shape, dtype=TORCH_DTYPES[dtype]))


@torch.library.custom_op("tpc::tensor_product", mutates_args=())
def tensor_product(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], key: str) -> torch.Tensor:
    """The product of a registered spec: x1 (batch, dim1), x2 (batch, dim2) -> (batch, dim_out)."""
    op = compiled_op(key)
    kernel = op.kernel("forward", x1.dtype)
    _record(key, "forward", x1)
    out = _empty((x1.shape[0], op.tp.irreps_out.dim), x1.dtype)
    kernel(_host(x1), _host(x2), _host(weight), out=out)
    return out


@tensor_product.register_fake
def _tensor_product_shape(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], key: str) -> torch.Tensor:
    return x1.new_empty((x1.shape[0], compiled_op(key).tp.irreps_out.dim))


@torch.library.custom_op("tpc::tensor_product_gradient", mutates_args=())
def tensor_product_gradient(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor,
                            key: str, wrt: str) -> torch.Tensor:
    """The gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt`` ("x1", "x2", "weight")."""
    op = compiled_op(key)
    kernel = op.kernel(wrt, x1.dtype)
    _record(key, wrt, x1)
    out = _empty(_gradient_shape(x1, x2, weight, wrt), x1.dtype)
    kernel(_host(x1), _host(x2), _host(weight), _host(grad), out=out)
    return out


@tensor_product_gradient.register_fake
def _gradient_fake(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor,
                   key: str, wrt: str) -> torch.Tensor:
    return x1.new_empty(_gradient_shape(x1, x2, weight, wrt))


def _gradient_shape(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], wrt: str) -> tuple:
    return tuple({"x1": x1, "x2": x2, "weight": weight}[wrt].shape)


def _setup_product(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x1, x2, weight, key = inputs
    ctx.save_for_backward(x1, x2, weight)
    ctx.key = key


def _product_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    x1, x2, weight = ctx.saved_tensors
    wanted = ctx.needs_input_grad
    grads = [tensor_product_gradient(x1, x2, weight, grad, ctx.key, wrt) if wanted[position] else None
             for position, wrt in enumerate(("x1", "x2", "weight"))]
    return (*grads, None)


tensor_product.register_autograd(_product_backward, setup_context=_setup_product)


def _setup_gradient(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x1, x2, weight, grad, key, wrt = inputs
    ctx.save_for_backward(x1, x2, weight, grad)
    ctx.key, ctx.wrt = key, wrt


def _gradient_backward(ctx: Any, upstream: torch.Tensor) -> tuple:
    """Derivatives of ``S = <upstream, d/d(wrt) F>``: F with ``wrt`` replaced by ``upstream``.

    Where the product also has unweighted paths, S depends on the weights' paths only; the
    same expressions at zero weights are then subtracted.
    """
    x1, x2, weight, grad = ctx.saved_tensors
    key, wrt = ctx.key, ctx.wrt
    arguments = {"x1": x1, "x2": x2, "weight": weight}
    arguments[wrt] = upstream
    wanted = dict(zip(("x1", "x2", "weight", "grad"), ctx.needs_input_grad[:4]))
    wanted[wrt] = False
    partial_paths = wrt == "weight" and any(not ins.has_weight for ins in compiled_op(key).tp.instructions)

    def at(arguments: dict) -> dict[str, Optional[torch.Tensor]]:
        a1, a2, w = arguments["x1"], arguments["x2"], arguments["weight"]
        out = {name: tensor_product_gradient(a1, a2, w, grad, key, name) if wanted[name] else None
               for name in ("x1", "x2", "weight")}
        out["grad"] = tensor_product(a1, a2, w, key) if wanted["grad"] else None
        return out

    result = at(arguments)
    if partial_paths:
        unweighted = at({**arguments, "weight": torch.zeros_like(upstream)})
        result = {name: None if value is None else value - unweighted[name] for name, value in result.items()}
    return result["x1"], result["x2"], result["weight"], result["grad"], None, None


tensor_product_gradient.register_autograd(_gradient_backward, setup_context=_setup_gradient)


@dataclass(frozen=True)
class KernelCall:
    """One kernel call of the ``tpc::`` custom ops: the product's custom-op ``key``, ``what`` the
    kernel computes ("forward", or the gradient's argument "x1", "x2", "weight"), the dtype's
    name and the batch ``rows`` (edges, nodes) it ran on."""

    key: str
    what: str
    dtype: str
    rows: int


_RECORDINGS: list[list[KernelCall]] = []
_RECORDINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def record_calls() -> Iterator[list[KernelCall]]:
    """Record every kernel call of the ``tpc::`` custom ops made inside, in any thread.

    What a model runs (which products, gradients, at how many rows, in which dtype) is known
    only once it runs; the tuner of a whole model (:mod:`tpc.torch.tuning`) learns its tasks so.
    Recordings may nest; each gets every call made while it is open.

    Returns:
        A context manager whose value is the list the calls are appended to, in call order.

    >>> import tpc, tpc.torch, torch
    >>> module = tpc.torch.TensorProduct(tpc.FullyConnectedTensorProduct("2x1o", "1o", "3x0e"))
    >>> with record_calls() as calls:
    ...     _ = module(torch.randn(5, 6), torch.randn(5, 3))
    >>> [(call.what, call.dtype, call.rows) for call in calls]
    [('forward', 'float32', 5)]
    """
    calls: list[KernelCall] = []
    with _RECORDINGS_LOCK:
        _RECORDINGS.append(calls)
    try:
        yield calls
    finally:
        with _RECORDINGS_LOCK:
            _RECORDINGS[:] = [other for other in _RECORDINGS if other is not calls]


def _record(key: str, what: str, x1: torch.Tensor) -> None:
    """Append the call to every open recording (a no-op without one)."""
    if not _RECORDINGS:
        return
    call = KernelCall(key, what, TORCH_DTYPES[x1.dtype], int(x1.shape[0]))
    with _RECORDINGS_LOCK:
        for calls in _RECORDINGS:
            calls.append(call)


def compiled_kernels(key: str) -> dict[tuple[str, str], Any]:
    """The kernels of the product ``key`` compiled so far in this process, by (what, dtype name):
    what is "forward" or a gradient's argument; each kernel's ``schedule.source`` says whether
    its schedule came from the user cache, the shipped schedules or the defaults."""
    op = compiled_op(key)
    with op._lock:
        return dict(op._kernels)


def forget_kernels(tp: TensorProductSpec) -> None:
    """Drop the kernels of ``tp`` (any target) compiled so far in this process: the next call
    compiles them again, with the schedules the cache holds then (e.g. just tuned ones)."""
    for op in list(_OPS.values()):
        if op.tp.fingerprint == tp.fingerprint:
            with op._lock:
                op._kernels.clear()
