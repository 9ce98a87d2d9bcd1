"""tpc.torch.SymmetricContraction against mace-torch's SymmetricContraction (float64): values,
gradients with respect to the features and the weights, and which kernels a pass runs."""

import sys

import pytest
import torch

import tpc
import tpc.torch
from tpc.testing import float64_torch
from tpc.verify import relative_error


def _pair(irreps_in: str, irreps_out: str, correlation: int, elements: int, basis: str = "wigner"):
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    spec = tpc.SymmetricContraction(irreps_in, irreps_out, correlation, elements, basis)
    with float64_torch():
        torch.manual_seed(0)
        theirs = SymmetricContraction(o3.Irreps(irreps_in), o3.Irreps(irreps_out), correlation, num_elements=elements,
                                      use_reduced_cg=basis == "reduced")
    ours = tpc.torch.SymmetricContraction(spec).double()
    ours.load_state_dict({name: value for name, value in theirs.state_dict().items()
                          if name in dict(ours.named_parameters())})
    return ours, theirs


@pytest.mark.parametrize("irreps_out,correlation,basis", [("3x0e+3x1o", 3, "wigner"), ("3x0e+3x1o+3x2e", 2, "wigner"),
                                                         ("3x0e+3x1o", 3, "reduced")])
def test_values_and_gradients_equal_mace(irreps_out, correlation, basis):
    ours, theirs = _pair("3x0e+3x1o+3x2e", irreps_out, correlation, 4, basis)  # l <= 3: tests/ops (a 25 s build here)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (6,), generator=generator), 4).double()
    upstream = torch.randn(6, ours.spec.irreps_out.dim, generator=generator, dtype=torch.float64)
    results = []
    for module in (ours, theirs):
        out = module(x, y)
        results.append([out.detach(), *torch.autograd.grad(out, [x, *module.parameters()], grad_outputs=upstream)])
    for a, b in zip(*results):
        assert relative_error(a.numpy(), b.numpy()) < 1e-10


def test_forces_run_no_weight_kernel_and_bad_elements_are_named():
    ours, _ = _pair("3x0e+3x1o", "3x0e", 2, 2)
    x = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).double()
    with tpc.torch.record_calls() as calls:
        torch.autograd.grad(ours(x, y).sum(), x)
    assert [call.what for call in calls] == ["symmetric-contraction", "symmetric-contraction:x"]
    with tpc.torch.record_calls() as calls:
        ours(x, y).sum().backward()
    assert [call.what for call in calls][-1] == "symmetric-contraction:weight"
    with pytest.raises(ValueError, match="y must hold one-hot elements"):
        ours(x, y * 0.5)
    with pytest.raises(ValueError, match=r"y must be one-hot elements of shape \(nodes, 2\)"):
        ours(x, y[:, :1])


def _second_derivatives(module, x, y, upstream, wrt_weights: bool):
    """Gradients of ``<v, d<upstream, module(x, y)>/d(x or the weights)>`` with respect to x,
    the weights and ``upstream``: what training on forces (or on weight gradients) differentiates."""
    parameters = list(module.parameters())
    first = torch.autograd.grad((module(x, y) * upstream).sum(), parameters if wrt_weights else [x],
                                create_graph=True)
    generator = torch.Generator().manual_seed(2)
    loss = sum((part * torch.randn(part.shape, generator=generator, dtype=part.dtype)).sum() + (part ** 2).sum()
               for part in first)
    return torch.autograd.grad(loss, [x, upstream, *parameters], allow_unused=True)


@pytest.mark.parametrize("wrt_weights,basis,correlation", [(False, "wigner", 3), (True, "wigner", 3),
                                                             (False, "reduced", 3), (False, "wigner", 1)])
def test_second_derivatives_equal_mace(wrt_weights, basis, correlation):
    ours, theirs = _pair("3x0e+3x1o", "3x0e+3x1o", correlation, 3, basis)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (7,), generator=generator), 3).double()
    upstream = torch.randn(7, ours.spec.irreps_out.dim, generator=generator, dtype=torch.float64,
                           requires_grad=True)
    with tpc.torch.record_calls() as calls:
        ours_gradients = _second_derivatives(ours, x, y, upstream, wrt_weights)
    theirs_gradients = _second_derivatives(theirs, x, y, upstream, wrt_weights)
    for a, b in zip(ours_gradients, theirs_gradients):
        if b is None or not b.abs().sum():  # mace's unused weights (the weights' own second derivative)
            assert a is None or not a.abs().sum()
            continue
        assert relative_error(a.numpy(), b.numpy()) < 1e-10
    ran = {call.what for call in calls}
    tangents = {"symmetric-contraction:tangent", "symmetric-contraction:x:tangent",
                "symmetric-contraction:weight:tangent"}
    assert tangents <= ran if not wrt_weights else not ran & tangents


def test_third_derivatives_raise():
    ours, _ = _pair("3x0e+3x1o", "3x0e", 2, 2)
    x = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).double()
    (gx,) = torch.autograd.grad(ours(x, y).sum(), x, create_graph=True)
    (gxx,) = torch.autograd.grad((gx ** 2).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third derivatives of a tpc symmetric contraction"):
        torch.autograd.grad(gxx.sum(), x)


def test_a_reduced_basis_without_cuequivariance_is_left_with_the_reason(monkeypatch):
    from tpc.ops import symmetric_contraction
    from tpc.so3 import reduced

    _, theirs = _pair("3x0e+3x1o", "3x0e+3x1o", 2, 2, "reduced")
    for cached in (reduced._cuequivariance, symmetric_contraction._coupling):
        cached.cache_clear()
    monkeypatch.setitem(sys.modules, "cuequivariance", None)  # as if it were not installed
    (entry,) = tpc.torch.convert(torch.nn.Sequential(theirs)).tpc_conversion
    assert not entry.converted and "reduced basis needs cuequivariance" in entry.reason
    with pytest.raises(ImportError, match="pip install cuequivariance"):
        tpc.SymmetricContraction("3x0e+3x1o", "3x0e+3x1o", 2, 2, "reduced").weight_shapes()
