"""tpc.torch: modules on compiled kernels, their derivatives, torch.compile and torch.export."""

import numpy as np
import pytest
import torch
from e3nn import o3

import tpc
import tpc.torch
from tpc.testing import e3nn_module, foundation_cases
from tpc.verify import random_inputs, relative_error, tolerance

# One small product per mode (the first of each) and a mixed one.
CASES = [case for case in foundation_cases(per_mode=1, mixed=1)]


def _arguments(tp, batch, seed, dtype=torch.float64):
    x1, x2, weight = random_inputs(tp, batch, np.random.default_rng(seed))
    return [None if a is None else torch.tensor(a, dtype=dtype, requires_grad=True) for a in (x1, x2, weight)]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gradcheck_and_gradgradcheck(case):
    tp = case.tp
    module = tpc.torch.TensorProduct(tp, internal_weights=False)
    arguments = [a for a in _arguments(tp, 3, 0) if a is not None]
    assert torch.autograd.gradcheck(module, arguments)
    assert torch.autograd.gradgradcheck(module, arguments)


def test_internal_weights_are_a_parameter_and_get_gradients():
    tp = tpc.FullyConnectedTensorProduct("2x0e+2x1o", "0e+1o", "3x0e+2x1o")
    module = tpc.torch.TensorProduct(tp).double()
    assert [name for name, _ in module.named_parameters()] == ["weight"]
    x1, x2, _ = _arguments(tp, 4, 1)
    assert torch.autograd.gradcheck(lambda a, b, w: torch.func.functional_call(module, {"weight": w}, (a, b)),
                                    (x1, x2, module.weight.detach().clone().requires_grad_()))
    module(x1, x2).sum().backward()
    assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_mace_l2_forward_and_gradients_equal_e3nn_in_float32():
    tp = tpc.presets.get("mace-l2").tp
    batch = 1000
    module = tpc.torch.TensorProduct(tp)
    reference = e3nn_module(tp).float()
    ours = _arguments(tp, batch, 2, torch.float32)
    theirs = [a.detach().clone().requires_grad_() for a in ours]
    upstream = torch.randn(batch, tp.irreps_out.dim, generator=torch.Generator().manual_seed(3))
    y, expected = module(*ours), reference(*theirs)
    assert relative_error(y.detach().numpy(), expected.detach().double().numpy()) < tolerance("float32")
    (y * upstream).sum().backward()
    (expected * upstream).sum().backward()
    for name, a, b in zip(("x1", "x2", "weight"), ours, theirs):
        assert relative_error(a.grad.numpy(), b.grad.double().numpy()) < tolerance("float32", "gradient"), name


def test_forces_and_training_on_forces_through_second_derivatives():
    """Energy from positions through spherical harmonics and a product; forces are -dE/dpos
    and a loss on forces needs the derivative of that gradient with respect to the weights."""
    tp = tpc.FullyConnectedTensorProduct("0e+1o+2e", "0e+1o+2e", "0e")
    positions = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(tp.weight_numel, dtype=torch.float64, requires_grad=True)
    module = tpc.torch.TensorProduct(tp, internal_weights=False)
    reference = e3nn_module(tp)

    def loss(product):
        sh = o3.spherical_harmonics("0e+1o+2e", positions, normalize=False)
        energy = product(sh, sh, weights).sum()
        forces = -torch.autograd.grad(energy, positions, create_graph=True)[0]
        return forces.pow(2).sum()

    ours = torch.autograd.grad(loss(module), weights)[0]
    expected = torch.autograd.grad(loss(reference), weights)[0]
    assert relative_error(ours.numpy(), expected.numpy()) < tolerance("float64", "second derivative")


def test_leading_dimensions_broadcast_like_e3nn():
    tp = tpc.ChannelwiseTensorProduct("3x0e+3x1o", "0e+1o", 1)
    module = tpc.torch.TensorProduct(tp)
    x1, x2 = torch.randn(2, 5, tp.irreps_in1.dim), torch.randn(5, tp.irreps_in2.dim)
    weight = torch.randn(2, 5, tp.weight_numel)
    expected = e3nn_module(tp).float()(x1, x2, weight)
    assert relative_error(module(x1, x2, weight).numpy(), expected.double().numpy()) < tolerance("float32")


def test_torch_compile_and_torch_export_keep_the_compiled_op():
    tp = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)
    module = tpc.torch.TensorProduct(tp)
    x1, x2, weight = (torch.randn(6, tp.irreps_in1.dim), torch.randn(6, tp.irreps_in2.dim),
                      torch.randn(6, tp.weight_numel))
    eager = module(x1, x2, weight)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x1, x2, weight), eager)
    exported = torch.export.export(module, (x1, x2, weight))
    assert any(node.target is torch.ops.tpc.tensor_product.default for node in exported.graph.nodes)
    assert torch.equal(exported.module()(x1, x2, weight), eager)


def test_bad_arguments_are_named():
    tp = tpc.ChannelwiseTensorProduct("2x0e", "0e", 0)
    module = tpc.torch.TensorProduct(tp)
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="pass weight"):
        module(x, x[:, :1])
    with pytest.raises(ValueError, match="must end in"):
        module(x, x, torch.randn(3, tp.weight_numel))
    with pytest.raises(TypeError, match="float32 or float64"):
        module(x.half(), x[:, :1].half(), torch.randn(3, tp.weight_numel).half())
    with pytest.raises(ValueError, match="internal weights need"):
        tpc.torch.TensorProduct(tp, internal_weights=True)
    with pytest.raises(ValueError, match="CPU targets"):
        tpc.torch.TensorProduct(tp, target="cuda")
    with pytest.raises(TypeError, match="takes a tpc.TensorProduct"):
        tpc.torch.TensorProduct(o3.FullyConnectedTensorProduct("0e", "0e", "0e"))


def test_inductor_compiles_a_model_around_the_op_with_its_backward():
    tp = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)
    module = tpc.torch.TensorProduct(tp)
    x1 = torch.randn(6, tp.irreps_in1.dim, requires_grad=True)
    x2, weight = torch.randn(6, tp.irreps_in2.dim), torch.randn(6, tp.weight_numel)

    def energy(a, b, c):
        return (module(a, b, c).sin() * 2).sum()

    compiled = torch.compile(energy, fullgraph=True)
    value = compiled(x1, x2, weight)
    (compiled_grad,) = torch.autograd.grad(value, x1)
    expected = energy(x1, x2, weight)
    (eager_grad,) = torch.autograd.grad(expected, x1)
    assert relative_error(value.detach().numpy(), expected.detach().numpy()) < tolerance("float32")
    assert relative_error(compiled_grad.numpy(), eager_grad.numpy()) < tolerance("float32", "gradient")


SAVED_MODULE_RUNNER = """
import sys
import torch
module = torch.load(sys.argv[1], weights_only=False)
x1, x2 = torch.load(sys.argv[2])
x1.requires_grad_(True)
y = module(x1, x2)
(grad,) = torch.autograd.grad(y.square().sum(), x1)
torch.save((y.detach(), grad), sys.argv[3])
"""


def test_a_saved_module_runs_in_a_fresh_process(tmp_path):
    """torch.save keeps the spec with the module: a new process compiles (or finds) its kernels
    on first use, with the same outputs and gradients."""
    import subprocess
    import sys

    tp = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1, shared_weights=True)
    module = tpc.torch.TensorProduct(tp).double()
    x1 = torch.randn(9, tp.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(9, tp.irreps_in2.dim, dtype=torch.float64)
    y = module(x1, x2)
    (grad,) = torch.autograd.grad(y.square().sum(), x1)
    torch.save(module, tmp_path / "module.pt")
    torch.save((x1.detach(), x2), tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-c", SAVED_MODULE_RUNNER, str(tmp_path / "module.pt"), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "outputs.pt")], check=True, timeout=600)
    loaded_y, loaded_grad = torch.load(tmp_path / "outputs.pt")
    assert relative_error(loaded_y.numpy(), y.detach().numpy()) < tolerance("float64")
    assert relative_error(loaded_grad.numpy(), grad.numpy()) < tolerance("float64", "gradient")


def test_a_key_that_describes_no_product_is_named():
    with pytest.raises(KeyError, match="does not describe a tensor product"):
        tpc.torch.registered_product("f61e37a6")
