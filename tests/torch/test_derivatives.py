"""First and second derivatives of ``tpc.torch.TensorProduct`` against e3nn's autograd (float64).

Several gradients at once run the one-pass kernel (``tpc::tensor_product_gradients``); the
second derivatives of a first derivative with respect to several arguments run through it too.
"""

import numpy as np
import pytest
import torch

import tpc
import tpc.torch
from tpc.testing import e3nn_module, foundation_cases
from tpc.verify import random_inputs, relative_error

TOLERANCE = 1e-10
CASES = [(case.name, case.tp) for case in foundation_cases(per_mode=1, mixed=1)]
# The convolutions of a real MACE model (mace-torch 0.3.16, 128 channels, max_ell 3), layers 0 and 1.
CASES += [(name, tpc.presets.get(name).tp) for name in ("mace-conv-0e", "mace-conv-0e1o")]


def _derivatives(module, arguments: list[torch.Tensor], upstream: torch.Tensor, directions: list[torch.Tensor]):
    """Gradients of ``<upstream, module(*arguments)>`` with respect to every argument, and the
    gradients of ``sum <direction, first derivative>`` with respect to every argument and the upstream."""
    first = torch.autograd.grad((module(*arguments) * upstream).sum(), arguments, create_graph=True)
    mixed = sum((derivative * direction).sum() for derivative, direction in zip(first, directions))
    second = torch.autograd.grad(mixed, [*arguments, upstream], allow_unused=True, materialize_grads=True)
    return [value.detach() for value in (*first, *second)]


@pytest.mark.parametrize("name,tp", CASES, ids=[name for name, _ in CASES])
def test_first_and_second_derivatives_equal_e3nn(name, tp):
    rng = np.random.default_rng(7)
    batch = 5
    arguments = [torch.tensor(a, requires_grad=True) for a in random_inputs(tp, batch, rng) if a is not None]
    upstream = torch.tensor(rng.standard_normal((batch, tp.irreps_out.dim)), requires_grad=True)
    directions = [torch.tensor(rng.standard_normal(a.shape)) for a in arguments]
    ours = _derivatives(tpc.torch.TensorProduct(tp, internal_weights=False), arguments, upstream, directions)
    theirs = _derivatives(e3nn_module(tp), arguments, upstream, directions)
    labels = [f"d/d{n}" for n in ("x1", "x2", "weight")][:len(arguments)]
    labels += [f"d2/d{n}" for n in ("x1", "x2", "weight")][:len(arguments)] + ["d2/dupstream"]
    for label, a, b in zip(labels, ours, theirs):
        assert relative_error(a.numpy(), b.numpy()) < TOLERANCE, label


def test_several_gradients_run_as_one_kernel():
    tp = tpc.presets.get("mace-conv-0e").tp
    module = tpc.torch.TensorProduct(tp, internal_weights=False)
    arguments = [torch.tensor(a, requires_grad=True) for a in random_inputs(tp, 4, np.random.default_rng(0))]
    with tpc.torch.record_calls() as calls:
        (module(*arguments) ** 2).sum().backward()
    assert [call.what for call in calls] == ["forward", "x1+x2+weight"]
    arguments[1].requires_grad_(False)
    with tpc.torch.record_calls() as calls:
        (module(*arguments) ** 2).sum().backward()
    assert [call.what for call in calls] == ["forward", "x1+weight"]


def test_gradients_the_pass_does_not_use_are_not_computed():
    """Forces ask for the positions' gradient only: the weights' kernel does not run then."""
    tp = tpc.FullyConnectedTensorProduct("4x0e+4x1o", "0e+1o", "4x0e+4x1o")
    module = tpc.torch.TensorProduct(tp)
    x1 = torch.randn(6, tp.irreps_in1.dim, requires_grad=True)
    x2 = torch.randn(6, tp.irreps_in2.dim)
    with tpc.torch.record_calls() as calls:
        (gradient,) = torch.autograd.grad(module(x1, x2).square().sum(), x1)
    assert [call.what for call in calls] == ["forward", "x1"] and module.weight.grad is None
    with tpc.torch.record_calls() as calls:
        module(x1, x2).square().sum().backward()
    assert [call.what for call in calls] == ["forward", "x1+weight"]
    assert torch.equal(x1.grad, gradient) and module.weight.grad is not None
