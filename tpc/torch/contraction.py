"""``tpc.torch.SymmetricContraction``: MACE's product basis on compiled kernels.

The module has mace-torch's ``SymmetricContraction`` structure (``contractions.N.weights_max``
and ``contractions.N.weights.M``), so mace's state_dicts load into it. Its forward is the
custom op ``tpc::symmetric_contraction``; its backward computes the node features' gradient
(``tpc::symmetric_contraction_x_gradient``) and, when the running pass uses them, the weights'
(``tpc::symmetric_contraction_weight_gradient``: per node, then summed over the nodes of each
element in node order). Both gradients have gradients of their own (second derivatives, e.g.
forces in a training loss): the x gradient's are the tangent ops (the derivatives along the
incoming gradient: ``tpc::symmetric_contraction_tangent`` for ``grad``, and the gradient ops
with a ``tangent`` for x and the weights); the weight gradient's are the forward and the x
gradient at the incoming gradient as weights, the function being linear in its weights.
Third derivatives are not compiled: asking for one raises.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Optional

import torch

from tpc.build import compile as compile_kernel
from tpc.ops import Contraction
from tpc.ops import SymmetricContraction as SymmetricContractionSpec
from tpc.targets import TargetSpec, resolve_target
from tpc.torch.ops import TORCH_DTYPES, engine_wants, gradient_nodes, host_tensor, record
from tpc.torch.workspace import WORKSPACE

_KERNELS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


def contraction_key(spec: SymmetricContractionSpec, target: TargetSpec) -> str:
    """The custom ops' ``key`` of a contraction on a target: the canonical JSON of both."""
    return json.dumps({"contraction": spec.to_dict(), "target": target.tvm_dict}, sort_keys=True, separators=(",", ":"))


def contraction_op(key: str, what: str) -> tuple[Contraction, TargetSpec]:
    """The op and target of a recorded call (:class:`tpc.torch.ops.KernelCall`) of the contraction
    ops: ``what`` is the op's :attr:`~tpc.ops.Contraction.schedule_key`, e.g.
    "symmetric-contraction:x" or "symmetric-contraction:x:tangent"."""
    spec, target = _spec_and_target(key)
    return Contraction.from_schedule_key(spec, what), target


def _spec_and_target(key: str) -> tuple[SymmetricContractionSpec, TargetSpec]:
    try:
        data = json.loads(key)
        return SymmetricContractionSpec.from_dict(data["contraction"]), resolve_target(data["target"])
    except (ValueError, KeyError, TypeError) as error:
        raise KeyError(f"the custom-op key {key[:80]!r} does not describe a symmetric contraction and target "
                       f"({error})") from None


def _kernel(key: str, what: str, dtype: torch.dtype) -> Any:
    """The compiled op ``what`` (a schedule key, see :func:`contraction_op`) of the contraction
    ``key``, per dtype, on first use; the call is recorded for ``tpc tune --model``."""
    if dtype not in TORCH_DTYPES:
        raise TypeError(f"tpc symmetric contractions take float32 or float64 tensors, got {dtype}")
    index = (key, what, TORCH_DTYPES[dtype])
    with _LOCK:
        if index not in _KERNELS:
            op, target = contraction_op(key, what)
            _KERNELS[index] = compile_kernel(op, target=target, dtype=TORCH_DTYPES[dtype])
        return _KERNELS[index]


def forget_contraction_kernels(spec: SymmetricContractionSpec) -> None:
    """Drop the kernels of ``spec`` (any target) compiled so far in this process: the next call
    compiles them again, with the schedules the cache holds then (e.g. just tuned ones)."""
    with _LOCK:
        for index in [index for index in _KERNELS if _spec_and_target(index[0])[0] == spec]:
            del _KERNELS[index]


def _arguments(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor]) -> tuple:
    """The kernels' arguments: y, one-hot elements (nodes, num_elements), as element indices."""
    y = host_tensor(y)
    if y.dim() != 2 or not bool(((y == 0) | (y == 1)).all()) or not bool((y.sum(dim=1) == 1).all()):
        raise ValueError(f"y must hold one-hot elements (nodes, num_elements), got shape {tuple(y.shape)}")
    return host_tensor(x), y.argmax(dim=1), [host_tensor(weight) for weight in weights]


def _run(key: str, what: str, arguments: tuple, **extras: Any) -> Any:
    """Run the op ``what`` (a schedule key) of the contraction ``key`` on ``arguments`` (from
    :func:`_arguments`) and record the call; ``extras`` are the kernel's ``grad``, ``tangent``
    and ``out``, given as tensors or None."""
    x = arguments[0]
    kernel = _kernel(key, what, x.dtype)
    record(key, what, TORCH_DTYPES[x.dtype], int(x.shape[0]))
    extras = {name: host_tensor(value) if isinstance(value, torch.Tensor) and name != "out" else value
              for name, value in extras.items() if value is not None}
    return kernel(*arguments, **extras)


def _what(wrt: str, tangent: Optional[torch.Tensor]) -> str:
    return Contraction.key_of(wrt, tangent is not None)


@torch.library.custom_op("tpc::symmetric_contraction", mutates_args=())
def symmetric_contraction(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                          key: str) -> torch.Tensor:
    """The contraction: x (nodes, channels, D), y one-hot elements (nodes, num_elements) -> (nodes, irreps_out.dim)."""
    return _run(key, Contraction.kind, _arguments(x, y, weights))


@symmetric_contraction.register_fake
def _contraction_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], key: str) -> torch.Tensor:
    return x.new_empty((x.shape[0], _spec_and_target(key)[0].irreps_out.dim))


@torch.library.custom_op("tpc::symmetric_contraction_tangent", mutates_args=())
def symmetric_contraction_tangent(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                                  tangent: torch.Tensor, key: str) -> torch.Tensor:
    """The contraction's derivative along ``tangent`` (shaped as x): the x gradient's gradient
    with respect to its ``grad``."""
    return _run(key, _what("", tangent), _arguments(x, y, weights), tangent=tangent)


@symmetric_contraction_tangent.register_fake
def _tangent_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], tangent: torch.Tensor,
                  key: str) -> torch.Tensor:
    return x.new_empty((x.shape[0], _spec_and_target(key)[0].irreps_out.dim))


@torch.library.custom_op("tpc::symmetric_contraction_x_gradient", mutates_args=())
def symmetric_contraction_x_gradient(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                                     grad: torch.Tensor, tangent: Optional[torch.Tensor], key: str) -> torch.Tensor:
    """The gradient of ``<grad, symmetric_contraction(x, ...)>`` with respect to x, or with a
    ``tangent`` its derivative along it (the x gradient's gradient with respect to x)."""
    out = WORKSPACE.empty(tuple(x.shape), TORCH_DTYPES[x.dtype])
    _run(key, _what("x", tangent), _arguments(x, y, weights), grad=grad, tangent=tangent, out=out)
    return out


@symmetric_contraction_x_gradient.register_fake
def _x_gradient_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], grad: torch.Tensor,
                     tangent: Optional[torch.Tensor], key: str) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("tpc::symmetric_contraction_weight_gradient", mutates_args=())
def symmetric_contraction_weight_gradient(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                                          grad: torch.Tensor, tangent: Optional[torch.Tensor],
                                          key: str) -> list[torch.Tensor]:
    """The gradients of ``<grad, symmetric_contraction(x, y, weights)>`` with respect to the
    weights: each node's, summed over the nodes of each element in node order; with a
    ``tangent``, their derivatives along it (the x gradient's gradient with respect to the weights)."""
    arguments = _arguments(x, y, weights)
    per_node = _run(key, _what("weight", tangent), arguments, grad=grad, tangent=tangent)
    return [torch.zeros(weight.shape[0], weight.shape[2], weight.shape[1], dtype=weight.dtype)
            .index_add_(0, arguments[1], torch.from_numpy(part)).transpose(1, 2).contiguous()
            for weight, part in zip(weights, per_node)]


@symmetric_contraction_weight_gradient.register_fake
def _weight_gradient_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], grad: torch.Tensor,
                          tangent: Optional[torch.Tensor], key: str) -> list[torch.Tensor]:
    return [torch.empty_like(weight) for weight in weights]


def _setup(ctx: Any, inputs: tuple, output: Any) -> None:
    """Save a contraction op's tensors: x, y, the weights, then ``grad`` and ``tangent`` where it has them."""
    x, y, weights, *extras, key = inputs
    ctx.save_for_backward(x, y, *weights, *extras)
    ctx.key = key
    ctx.weight_count = len(weights)
    ctx.gradient_nodes = gradient_nodes((x, *weights, *extras[:1]))


def _saved(ctx: Any) -> tuple:
    """x, y, the weights, ``grad`` and ``tangent`` (None where the op has none)."""
    x, y, *rest = ctx.saved_tensors
    grad, tangent = (rest[ctx.weight_count:] + [None, None])[:2]
    return x, y, rest[:ctx.weight_count], grad, tangent


def _wanted(ctx: Any) -> tuple[bool, bool, bool]:
    """Whether the pass uses the gradient of x, of any weight and of ``grad`` (where the op takes one)."""
    needs = (ctx.needs_input_grad[0],) + (ctx.needs_input_grad[2],) * ctx.weight_count + \
        tuple(ctx.needs_input_grad[3:4])
    wanted = engine_wants(needs, ctx.gradient_nodes)
    return wanted[0], any(wanted[1:1 + ctx.weight_count]), any(wanted[1 + ctx.weight_count:])


def _backward(ctx: Any, grad: torch.Tensor) -> tuple:
    x, y, weights, _, _ = _saved(ctx)
    x_wanted, weights_wanted, _ = _wanted(ctx)
    x_gradient = symmetric_contraction_x_gradient(x, y, weights, grad, None, ctx.key) if x_wanted else None
    weight_gradients = symmetric_contraction_weight_gradient(x, y, weights, grad, None, ctx.key) \
        if weights_wanted else [None] * ctx.weight_count
    return x_gradient, None, list(weight_gradients), None


def _x_gradient_backward(ctx: Any, upstream: torch.Tensor) -> tuple:
    """The x gradient's gradients: its derivatives along ``upstream`` (see the module docstring)."""
    x, y, weights, grad, tangent = _saved(ctx)
    if tangent is not None:
        raise NotImplementedError("third derivatives of a tpc symmetric contraction are not compiled")
    x_wanted, weights_wanted, grad_wanted = _wanted(ctx)
    return (symmetric_contraction_x_gradient(x, y, weights, grad, upstream, ctx.key) if x_wanted else None, None,
            list(symmetric_contraction_weight_gradient(x, y, weights, grad, upstream, ctx.key))
            if weights_wanted else [None] * ctx.weight_count,
            symmetric_contraction_tangent(x, y, weights, upstream, ctx.key) if grad_wanted else None, None, None)


def _weight_gradient_backward(ctx: Any, upstream: list[Optional[torch.Tensor]]) -> tuple:
    """The weight gradient's gradients: it is ``<grad, f(x, weights)>``'s gradient and ``f`` is
    linear in the weights, so they are the x gradient and the forward at ``upstream`` as weights."""
    x, y, weights, grad, tangent = _saved(ctx)
    if tangent is not None:
        raise NotImplementedError("third derivatives of a tpc symmetric contraction are not compiled")
    x_wanted, _, grad_wanted = _wanted(ctx)
    upstream = [torch.zeros_like(weight) if part is None else part.contiguous()
                for weight, part in zip(weights, upstream)]
    return (symmetric_contraction_x_gradient(x, y, upstream, grad, None, ctx.key) if x_wanted else None, None,
            [None] * ctx.weight_count, symmetric_contraction(x, y, upstream, ctx.key) if grad_wanted else None,
            None, None)


symmetric_contraction.register_autograd(_backward, setup_context=_setup)
symmetric_contraction_x_gradient.register_autograd(_x_gradient_backward, setup_context=_setup)
symmetric_contraction_weight_gradient.register_autograd(_weight_gradient_backward, setup_context=_setup)


class SymmetricContraction(torch.nn.Module):
    """MACE's product basis, compiled: ``module(x, y)`` with x (nodes, channels, D) and y the
    one-hot elements (nodes, num_elements), as mace-torch's ``SymmetricContraction`` is called.

    Args:
        spec: the contraction.
        target: a CPU target (``"host"``, ``"x86"``, ``"arm"`` or a TVM target dict).

    >>> import tpc, tpc.torch, torch
    >>> module = tpc.torch.SymmetricContraction(tpc.SymmetricContraction("4x0e+4x1o", "4x0e", 2, 3))
    >>> y = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    >>> module(torch.randn(2, 4, 4), y).shape
    torch.Size([2, 4])
    """

    __jit_unused_properties__ = ["spec", "target"]

    def __init__(self, spec: SymmetricContractionSpec, target: Any = "host") -> None:
        super().__init__()
        if not isinstance(spec, SymmetricContractionSpec):
            raise TypeError(f"tpc.torch.SymmetricContraction takes a tpc.SymmetricContraction, got "
                            f"{type(spec).__name__}")
        resolved = resolve_target(target)
        if resolved.family != "cpu":
            raise ValueError(f"tpc.torch runs on CPU targets (x86, arm, host) so far, not {resolved.name!r}")
        self.key: str = contraction_key(spec, resolved)
        self.correlation: int = spec.correlation
        self.num_elements: int = spec.num_elements
        self.contractions = torch.nn.ModuleList()
        for _, ir in spec.irreps_out:
            shapes = [shape for ir_, _, shape in spec.weight_shapes() if ir_ == ir]
            contraction = torch.nn.Module()
            contraction.weights_max = torch.nn.Parameter(torch.randn(shapes[-1]) / shapes[-1][1])
            contraction.weights = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(shape) / shape[1]) for shape in reversed(shapes[:-1])])
            self.contractions.append(contraction)

    @property
    def spec(self) -> SymmetricContractionSpec:
        """The contraction this module computes."""
        return _spec_and_target(self.key)[0]

    @property
    def target(self) -> TargetSpec:
        """The target its kernels are compiled for."""
        return _spec_and_target(self.key)[1]

    def kernels(self) -> dict[tuple[str, str], Any]:
        """The kernels compiled so far for this contraction, by (what, dtype name): what is the op's
        schedule key, e.g. "symmetric-contraction:x" (see :meth:`tpc.torch.TensorProduct.kernels`)."""
        with _LOCK:
            return {(what, dtype): kernel for (key, what, dtype), kernel in _KERNELS.items() if key == self.key}

    def extra_repr(self) -> str:
        spec = self.spec
        return f"{spec.irreps_in} -> {spec.irreps_out}, correlation {spec.correlation}, {spec.num_elements} elements"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.dim() != 2 or y.shape[1] != self.num_elements:
            raise ValueError("y must be one-hot elements of shape (nodes, {})".format(self.num_elements))
        weights: list[torch.Tensor] = []
        for contraction in self.contractions:
            # Views, not the leaves: the backward can then ask whether the pass uses their gradients.
            lower = [weight.view_as(weight) for weight in contraction.weights]
            lower.reverse()  # mace keeps the orders correlation - 1 down to 1
            weights += lower + [contraction.weights_max.view_as(contraction.weights_max)]
        return torch.ops.tpc.symmetric_contraction(x, y, weights, self.key)
