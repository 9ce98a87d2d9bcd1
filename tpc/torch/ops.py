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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.autograd.graph import get_gradient_edge

from tpc.build import compile as compile_kernel
from tpc.dtypes import DTYPES
from tpc.ops import ConvolutionGradient, Fused, Gradient, Op, Product
from tpc.ops import TensorProduct as TensorProductSpec
from tpc.targets import TargetSpec, resolve_target
from tpc.torch.workspace import WORKSPACE

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
        """The kernel of ``what`` (see :func:`op_of`) for a torch dtype."""
        if dtype not in TORCH_DTYPES:
            raise TypeError(f"tpc tensor products take {' or '.join(DTYPES)} tensors, got {dtype}")
        key = (what, TORCH_DTYPES[dtype])
        with self._lock:
            if key not in self._kernels:
                self._kernels[key] = compile_kernel(op_of(self.tp, what), target=self.target, dtype=key[1])
            return self._kernels[key]


def op_of(tp: TensorProductSpec, what: str) -> Op:
    """The op of a kernel the custom ops call: "forward" (the product), "convolution" (fused with
    its gather and scatter-sum), "convolution-gradient" (:class:`tpc.ConvolutionGradient`), else a
    gradient's arguments ("x1", "x1+x2+weight")."""
    if what == "forward":
        return Product(tp)
    if what == "convolution":
        return Fused(tp, "gather+scatter")
    if what == ConvolutionGradient.kind:
        return ConvolutionGradient(tp)
    return Gradient(tp, what)


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


def host_tensor(tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A contiguous CPU tensor without autograd history, which DLPack can hand over as is."""
    if tensor is None:
        return None
    if tensor.device.type != "cpu":
        raise ValueError(f"tpc.torch runs on CPU tensors so far, got a tensor on {tensor.device}")
    return tensor.detach().contiguous()


def _empty(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized CPU output tensor from the workspace (see :mod:`tpc.torch.workspace`)."""
    return WORKSPACE.empty(shape, TORCH_DTYPES[dtype])


@torch.library.custom_op("tpc::tensor_product", mutates_args=())
def tensor_product(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], key: str) -> torch.Tensor:
    """The product of a registered spec: x1 (batch, dim1), x2 (batch, dim2) -> (batch, dim_out)."""
    op = compiled_op(key)
    kernel = op.kernel("forward", x1.dtype)
    record(key, "forward", TORCH_DTYPES[x1.dtype], int(x1.shape[0]))
    out = _empty((x1.shape[0], op.tp.irreps_out.dim), x1.dtype)
    kernel(host_tensor(x1), host_tensor(x2), host_tensor(weight), out=out)
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
    record(key, wrt, TORCH_DTYPES[x1.dtype], int(x1.shape[0]))
    out = _empty(_gradient_shape(x1, x2, weight, wrt), x1.dtype)
    kernel(host_tensor(x1), host_tensor(x2), host_tensor(weight), host_tensor(grad), out=out)
    return out


@tensor_product_gradient.register_fake
def _gradient_fake(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor,
                   key: str, wrt: str) -> torch.Tensor:
    return x1.new_empty(_gradient_shape(x1, x2, weight, wrt))


def _gradient_shape(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], wrt: str) -> tuple:
    return tuple({"x1": x1, "x2": x2, "weight": weight}[wrt].shape)


@torch.library.custom_op("tpc::tensor_product_gradients", mutates_args=())
def tensor_product_gradients(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor,
                             key: str, wrt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of ``<grad, tp(x1, x2, weight)>`` with respect to several arguments (``wrt``
    such as "x1+x2+weight") in one pass: always (x1's, x2's, weight's), those not asked for empty."""
    op = compiled_op(key)
    kernel = op.kernel(wrt, x1.dtype)
    record(key, wrt, TORCH_DTYPES[x1.dtype], int(x1.shape[0]))
    names = wrt.split("+")
    outs = {name: _empty(_gradient_shape(x1, x2, weight, name), x1.dtype) for name in names}
    kernel(host_tensor(x1), host_tensor(x2), host_tensor(weight), host_tensor(grad), out=tuple(outs.values()))
    return tuple(outs[name] if name in outs else x1.new_empty(0) for name in ("x1", "x2", "weight"))


@tensor_product_gradients.register_fake
def _gradients_fake(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor,
                    key: str, wrt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    names = wrt.split("+")
    return tuple(x1.new_empty(_gradient_shape(x1, x2, weight, name) if name in names else (0,))
                 for name in ("x1", "x2", "weight"))


def gradients(x1: torch.Tensor, x2: torch.Tensor, weight: Optional[torch.Tensor], grad: torch.Tensor, key: str,
              names: list[str]) -> dict[str, torch.Tensor]:
    """The gradients of ``<grad, tp(x1, x2, weight)>`` with respect to ``names``: one kernel for one
    argument, the one-pass kernel for several."""
    if len(names) == 1:
        return {names[0]: tensor_product_gradient(x1, x2, weight, grad, key, names[0])}
    if not names:
        return {}
    values = tensor_product_gradients(x1, x2, weight, grad, key, "+".join(names))
    return {name: value for name, value in zip(("x1", "x2", "weight"), values) if name in names}


def gradient_nodes(inputs: tuple) -> tuple:
    """The autograd node each tensor input's gradient flows into, for :func:`wanted_gradients`
    (None where it needs none, or where the input is a leaf, whose node autograd makes later)."""
    return tuple(get_gradient_edge(value).node
                 if isinstance(value, torch.Tensor) and value.requires_grad and value.grad_fn is not None else None
                 for value in inputs)


def wanted_gradients(ctx: Any, count: int) -> list[bool]:
    """Which of the first ``count`` inputs this backward pass needs gradients for.

    ``ctx.needs_input_grad`` says which inputs require grad; of those, the ones whose gradient
    the running pass does not use (a weight's while ``torch.autograd.grad`` asks for forces
    only) are left out, so their kernels do not run. A leaf input under ``torch.autograd.grad``
    cannot be asked about and counts as needed.
    """
    return engine_wants(ctx.needs_input_grad[:count], ctx.gradient_nodes[:count])


def engine_wants(needs: Sequence[bool], nodes: Sequence[Any]) -> list[bool]:
    """Of the inputs that require grad (``needs``), those whose gradient node (:func:`gradient_nodes`)
    the running backward pass executes (see :func:`wanted_gradients`)."""
    wanted = []
    for needed, node in zip(needs, nodes):
        if needed and node is not None:
            try:
                needed = torch._C._will_engine_execute_node(node)
            except RuntimeError:
                needed = True
        wanted.append(bool(needed))
    return wanted


def _setup_product(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x1, x2, weight, key = inputs
    ctx.save_for_backward(x1, x2, weight)
    ctx.key = key
    ctx.gradient_nodes = gradient_nodes(inputs[:3])


def _product_backward(ctx: Any, grad: torch.Tensor) -> tuple:
    x1, x2, weight = ctx.saved_tensors
    names = [name for name, wanted in zip(("x1", "x2", "weight"), wanted_gradients(ctx, 3)) if wanted]
    values = gradients(x1, x2, weight, grad, ctx.key, names)
    return values.get("x1"), values.get("x2"), values.get("weight"), None


tensor_product.register_autograd(_product_backward, setup_context=_setup_product)


def _setup_gradient(ctx: Any, inputs: tuple, output: Any) -> None:
    x1, x2, weight, grad, key, wrt = inputs
    ctx.save_for_backward(x1, x2, weight, grad)
    ctx.key, ctx.wrt = key, wrt
    ctx.gradient_nodes = gradient_nodes(inputs[:4])
    ctx.set_materialize_grads(False)


def _gradient_backward(ctx: Any, upstream: Optional[torch.Tensor]) -> tuple:
    """The derivatives of ``<upstream, d/d(wrt) F>`` (see :func:`_second_derivatives`)."""
    return _second_derivatives(ctx, {ctx.wrt: upstream})


def _gradients_backward(ctx: Any, *upstreams: Optional[torch.Tensor]) -> tuple:
    """The derivatives of the sum over the computed arguments of ``<upstream, d/d(argument) F>``."""
    return _second_derivatives(ctx, dict(zip(("x1", "x2", "weight"), upstreams)))


def _second_derivatives(ctx: Any, upstreams: dict[str, Optional[torch.Tensor]]) -> tuple:
    """The derivatives of the product's ``S`` (see :func:`second_derivatives`)."""
    x1, x2, weight, grad = ctx.saved_tensors
    key = ctx.key
    total = second_derivatives(
        {"x1": x1, "x2": x2, "weight": weight}, upstreams,
        dict(zip(("x1", "x2", "weight", "grad"), wanted_gradients(ctx, 4))),
        lambda a1, a2, w, names: gradients(a1, a2, w, grad, key, names),
        lambda a1, a2, w: tensor_product(a1, a2, w, key),
        any(not ins.has_weight for ins in compiled_op(key).tp.instructions))
    return total["x1"], total["x2"], total["weight"], total["grad"], None, None


def second_derivatives(arguments: dict[str, Optional[torch.Tensor]], upstreams: dict[str, Optional[torch.Tensor]],
                       wanted: dict[str, bool], gradients_at: Any, forward_at: Any,
                       partial_paths: bool) -> dict[str, Optional[torch.Tensor]]:
    """Derivatives of ``S = sum <upstream, d/d(argument) F>`` over the arguments with an upstream,
    for ``F = <grad, f(x1, x2, weight)>`` with f linear in each argument (a product, a convolution).

    Each term of S is F with that argument replaced by its upstream, so its derivatives are
    ``gradients_at(x1, x2, weight, names)`` (a dict by name) and, for grad,
    ``forward_at(x1, x2, weight)`` at those arguments. Where f also has unweighted paths
    (``partial_paths``), a weights' term depends on the weighted paths only: the same
    expressions at zero weights are subtracted.

    Returns:
        The derivative with respect to each of x1, x2, weight and grad that ``wanted`` asks for, else None.
    """
    total: dict[str, Optional[torch.Tensor]] = dict.fromkeys(wanted)
    for wrt, upstream in upstreams.items():
        if upstream is None:
            continue
        names = [name for name in ("x1", "x2", "weight") if wanted[name] and name != wrt]

        def at(values: dict) -> dict[str, torch.Tensor]:
            out = gradients_at(values["x1"], values["x2"], values["weight"], names) if names else {}
            if wanted["grad"]:
                out["grad"] = forward_at(values["x1"], values["x2"], values["weight"])
            return out

        substituted = {**arguments, wrt: upstream}
        terms = at(substituted)
        if wrt == "weight" and partial_paths:
            unweighted = at({**substituted, "weight": torch.zeros_like(upstream)})
            terms = {name: value - unweighted[name] for name, value in terms.items()}
        for name, value in terms.items():
            total[name] = value if total[name] is None else total[name] + value
    return total


tensor_product_gradient.register_autograd(_gradient_backward, setup_context=_setup_gradient)
tensor_product_gradients.register_autograd(_gradients_backward, setup_context=_setup_gradient)


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


def record(key: str, what: str, dtype: str, rows: int) -> None:
    """Append a kernel call to every open recording (a no-op without one)."""
    if not _RECORDINGS:
        return
    call = KernelCall(key, what, dtype, rows)
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
