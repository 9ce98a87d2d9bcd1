"""Gradient kernels against e3nn's autograd, in float64, for every mode."""

import numpy as np
import pytest
import torch

import tpc
import tpc.runtime
from tpc.build import compile_gradient
from tpc.lower.gradients import lower_gradient
from tpc.testing import e3nn_module, foundation_cases, random_inputs, relative_error

CASES = foundation_cases(per_mode=2, mixed=2)


def e3nn_gradients(tp, x1, x2, weight, grad) -> dict[str, np.ndarray]:
    """d<grad, e3nn(x1, x2, weight)>/d(each argument), by torch autograd."""
    arguments = {name: torch.tensor(value, requires_grad=True) for name, value in
                 (("x1", x1), ("x2", x2), ("weight", weight)) if value is not None}
    output = e3nn_module(tp)(*arguments.values())
    (output * torch.as_tensor(grad)).sum().backward()
    return {name: tensor.grad.numpy() for name, tensor in arguments.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gradients_equal_e3nn_autograd(case):
    tp = case.tp
    rng = np.random.default_rng(3)
    x1, x2, weight = random_inputs(tp, 11, rng)
    grad = rng.standard_normal((11, tp.irreps_out.dim))
    expected = e3nn_gradients(tp, x1, x2, weight, grad)
    for wrt, value in expected.items():
        actual = compile_gradient(tp, wrt, dtype="float64")(x1, x2, weight, grad)
        assert actual.shape == value.shape
        assert relative_error(actual, value) < 1e-10, wrt


def test_x2_first_coupling_gives_the_same_gradients():
    tp = tpc.presets.get("fc-small").tp
    rng = np.random.default_rng(4)
    x1, x2, weight = random_inputs(tp, 3, rng)
    grad = rng.standard_normal((3, tp.irreps_out.dim))
    expected = e3nn_gradients(tp, x1, x2, weight, grad)
    for wrt in ("x1", "x2"):
        lowered = lower_gradient(tp, wrt, "float64", coupling="x2_first")
        assert any(path.factor for path in lowered.paths)
        direct = compile_gradient(tp, wrt, dtype="float64")
        assert relative_error(direct(x1, x2, weight, grad), expected[wrt]) < 1e-10


def test_shared_weight_gradients_are_summed_chunk_by_chunk(monkeypatch):
    tp = tpc.FullyConnectedTensorProduct("3x0e+2x1o", "2x0e+1x1o", "2x0e+3x1o")
    monkeypatch.setattr(tpc.runtime, "CHUNK_VALUES", 1)  # chunks of MIN_CHUNK samples
    rng = np.random.default_rng(5)
    x1, x2, weight = random_inputs(tp, 2 * tpc.runtime.MIN_CHUNK + 5, rng)
    grad = rng.standard_normal((x1.shape[0], tp.irreps_out.dim))
    actual = compile_gradient(tp, "weight", dtype="float64")(x1, x2, weight, grad)
    assert relative_error(actual, e3nn_gradients(tp, x1, x2, weight, grad)["weight"]) < 1e-10


def test_float32_gradients_and_a_zero_batch():
    tp = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)
    rng = np.random.default_rng(6)
    x1, x2, weight = random_inputs(tp, 7, rng, np.float32)
    grad = rng.standard_normal((7, tp.irreps_out.dim)).astype(np.float32)
    as64 = [a.astype(np.float64) for a in (x1, x2, weight, grad)]
    expected = e3nn_gradients(tp, *as64)
    kernel = compile_gradient(tp, "x2")
    assert relative_error(kernel(x1, x2, weight, grad), expected["x2"]) < 1e-5
    assert kernel(x1[:0], x2[:0], weight[:0], grad[:0]).shape == (0, tp.irreps_in2.dim)


def test_bad_requests_are_named():
    tp = tpc.GauntTensorProduct("0e+1o", "0e+1o", 1)
    with pytest.raises(ValueError, match="no weights"):
        lower_gradient(tp, "weight")
    with pytest.raises(ValueError, match="wrt must be one of"):
        compile_gradient(tp, "x3")
    with pytest.raises(ValueError, match="CPU targets"):
        compile_gradient(tp, "x1", target="cuda")
    kernel = compile_gradient(tp, "x1", dtype="float64")
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match="grad must have shape"):
        kernel(x, x, None, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="compiled for float64"):
        kernel(x.astype(np.float32), x.astype(np.float32), None, np.zeros((2, 4), np.float32))
