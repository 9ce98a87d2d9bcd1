"""``tpc.torch.SymmetricContraction``: MACE's product basis on compiled kernels.

The module has mace-torch's ``SymmetricContraction`` structure (``contractions.N.weights_max``
and ``contractions.N.weights.M``), so mace's state_dicts load into it. Its forward is the
custom op ``tpc::symmetric_contraction``; its backward computes the node features' gradient
(``tpc::symmetric_contraction_x_gradient``) and, when the running pass uses them, the weights'
(``tpc::symmetric_contraction_weight_gradient``: per node, then summed over the nodes of each
element in node order). Second derivatives are not compiled yet: asking for one raises.
"""

from __future__ import annotations

import json
import threading
from typing import Any

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
    ops: ``what`` is "symmetric-contraction" or it with ":x" or ":weight"."""
    spec, target = _spec_and_target(key)
    return Contraction(spec, what.partition(":")[2]), target


def _spec_and_target(key: str) -> tuple[SymmetricContractionSpec, TargetSpec]:
    try:
        data = json.loads(key)
        return SymmetricContractionSpec.from_dict(data["contraction"]), resolve_target(data["target"])
    except (ValueError, KeyError, TypeError) as error:
        raise KeyError(f"the custom-op key {key[:80]!r} does not describe a symmetric contraction and target "
                       f"({error})") from None


def _kernel(key: str, wrt: str, dtype: torch.dtype) -> Any:
    """The compiled forward (``wrt=""``) or gradient of the contraction ``key``, per dtype, on first use."""
    if dtype not in TORCH_DTYPES:
        raise TypeError(f"tpc symmetric contractions take float32 or float64 tensors, got {dtype}")
    index = (key, wrt, TORCH_DTYPES[dtype])
    with _LOCK:
        if index not in _KERNELS:
            spec, target = _spec_and_target(key)
            _KERNELS[index] = compile_kernel(Contraction(spec, wrt), target=target, dtype=TORCH_DTYPES[dtype])
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


@torch.library.custom_op("tpc::symmetric_contraction", mutates_args=())
def symmetric_contraction(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                          key: str) -> torch.Tensor:
    """The contraction: x (nodes, channels, D), y one-hot elements (nodes, num_elements) -> (nodes, irreps_out.dim)."""
    kernel = _kernel(key, "", x.dtype)
    record(key, "symmetric-contraction", TORCH_DTYPES[x.dtype], int(x.shape[0]))
    return kernel(*_arguments(x, y, weights))


@symmetric_contraction.register_fake
def _contraction_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], key: str) -> torch.Tensor:
    return x.new_empty((x.shape[0], _spec_and_target(key)[0].irreps_out.dim))


@torch.library.custom_op("tpc::symmetric_contraction_x_gradient", mutates_args=())
def symmetric_contraction_x_gradient(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                                     grad: torch.Tensor, key: str) -> torch.Tensor:
    """The gradient of ``<grad, symmetric_contraction(x, ...)>`` with respect to x."""
    kernel = _kernel(key, "x", x.dtype)
    record(key, "symmetric-contraction:x", TORCH_DTYPES[x.dtype], int(x.shape[0]))
    out = WORKSPACE.empty(tuple(x.shape), TORCH_DTYPES[x.dtype])
    kernel(*_arguments(x, y, weights), host_tensor(grad), out=out)
    return out


@symmetric_contraction_x_gradient.register_fake
def _x_gradient_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], grad: torch.Tensor,
                     key: str) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("tpc::symmetric_contraction_weight_gradient", mutates_args=())
def symmetric_contraction_weight_gradient(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor],
                                          grad: torch.Tensor, key: str) -> list[torch.Tensor]:
    """The gradients of ``<grad, symmetric_contraction(x, y, weights)>`` with respect to
    the weights: each node's, summed over the nodes of each element in node order."""
    kernel = _kernel(key, "weight", x.dtype)
    record(key, "symmetric-contraction:weight", TORCH_DTYPES[x.dtype], int(x.shape[0]))
    x, elements, weights = _arguments(x, y, weights)
    per_node = kernel(x, elements, weights, host_tensor(grad))
    return [torch.zeros(weight.shape[0], weight.shape[2], weight.shape[1], dtype=weight.dtype)
            .index_add_(0, elements, torch.from_numpy(part)).transpose(1, 2).contiguous()
            for weight, part in zip(weights, per_node)]


@symmetric_contraction_weight_gradient.register_fake
def _weight_gradient_fake(x: torch.Tensor, y: torch.Tensor, weights: list[torch.Tensor], grad: torch.Tensor,
                          key: str) -> list[torch.Tensor]:
    return [torch.empty_like(weight) for weight in weights]


def _setup(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
    x, y, weights, key = inputs
    ctx.save_for_backward(x, y, *weights)
    ctx.key = key
    ctx.gradient_nodes = gradient_nodes((x, *weights))
    ctx.weight_count = len(weights)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple:
    x, y, *weights = ctx.saved_tensors
    wanted = engine_wants((ctx.needs_input_grad[0],) + (ctx.needs_input_grad[2],) * ctx.weight_count,
                          ctx.gradient_nodes)
    x_gradient = symmetric_contraction_x_gradient(x, y, weights, grad, ctx.key) if wanted[0] else None
    weight_gradients = symmetric_contraction_weight_gradient(x, y, weights, grad, ctx.key) \
        if any(wanted[1:]) else [None] * ctx.weight_count
    return x_gradient, None, list(weight_gradients), None


symmetric_contraction.register_autograd(_backward, setup_context=_setup)


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
        """The kernels compiled so far for this contraction, by (what, dtype name): what is
        "symmetric-contraction" or it with ":x" or ":weight" (see :meth:`tpc.torch.TensorProduct.kernels`)."""
        with _LOCK:
            return {(f"{Contraction.kind}:{wrt}" if wrt else Contraction.kind, dtype): kernel
                    for (key, wrt, dtype), kernel in _KERNELS.items() if key == self.key}

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
