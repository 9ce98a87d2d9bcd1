"""tpc's reference against e3nn 0.6.0 itself, in float64."""

import numpy as np
import pytest
import torch
from e3nn import o3

import tpc
from tpc.so3 import gaunt_factor, gaunt_product
from tpc.testing import e3nn_forward, e3nn_module, float64_torch, foundation_cases
from tpc.verify import random_inputs, relative_error, tolerance

CASES = foundation_cases()


def test_the_parity_set_is_large_and_covers_every_option():
    assert len(CASES) >= 30
    tps = [case.tp for case in CASES]
    modes = {ins.connection_mode for tp in tps for ins in tp.instructions}
    assert modes == set(tpc.ops.MODES)
    assert {tp.path_normalization for tp in tps} == {"element", "path"}
    assert {tp.irrep_normalization for tp in tps} == {"component", "norm"}
    assert {tp.shared_weights for tp in tps} == {True, False}
    assert any(ins.path_weight != 1.0 for tp in tps for ins in tp.instructions)
    assert any(tp.in1_var != (1.0,) * len(tp.irreps_in1) for tp in tps)
    assert max(tp.irreps_in1.lmax for tp in tps) == 4
    assert any(len({ins.i_out for ins in tp.instructions}) < len(tp.instructions) for tp in tps)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reference_equals_e3nn(case):
    rng = np.random.default_rng(7)
    x1, x2, weight = random_inputs(case.tp, 9, rng)
    expected = e3nn_forward(case.tp, x1, x2, weight)
    assert np.abs(expected).max() > 0
    assert relative_error(case.tp.reference(x1, x2, weight), expected) < tolerance("float64")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_normalization_coefficients_and_weight_layout_equal_e3nn(case):
    module = e3nn_module(case.tp)
    assert case.tp.weight_numel == module.weight_numel
    for ours, theirs in zip(case.tp.instructions, module.instructions, strict=True):
        assert ours.path_shape == tuple(theirs.path_shape)
        assert np.isclose(ours.coefficient, theirs.path_weight, rtol=1e-14)


@pytest.mark.parametrize(
    "in1,in2,out",
    [("4x0e+3x1o", "2x0e+1x1o+1x2e", "5x0e+2x1o+3x2e"), ("2x1o+2x1e", "3x1o", "1x0e+2x1e+2x2o+1x0o")],
)
def test_fully_connected_equals_e3nn(in1, in2, out, rng):
    tp = tpc.FullyConnectedTensorProduct(in1, in2, out)
    module = o3.FullyConnectedTensorProduct(in1, in2, out, internal_weights=False, shared_weights=True)
    assert [(i.i_in1, i.i_in2, i.i_out) for i in tp.instructions] == [
        (i.i_in1, i.i_in2, i.i_out) for i in module.instructions
    ]
    x1, x2, weight = random_inputs(tp, 6, rng)
    with torch.no_grad():
        expected = module(*(torch.tensor(a, dtype=torch.float32) for a in (x1, x2, weight))).double().numpy()
    assert relative_error(expected, tp.reference(x1, x2, weight)) < tolerance("float32")
    assert relative_error(tp.reference(x1, x2, weight), e3nn_forward(tp, x1, x2, weight)) < tolerance("float64")


def test_channelwise_follows_mace_ordering():
    tp = tpc.ChannelwiseTensorProduct("8x0e+8x1o", "0e+1o+2e", 2, filter_ir_out="0e+1o+2e")
    # MACE: paths in (i1, i2, ir_out) order, outputs stably sorted by (l, p), odd first.
    assert str(tp.irreps_out) == "8x0e+8x0e+8x1o+8x1o+8x1o+8x2e+8x2e"
    assert [(i.i_in1, i.i_in2, i.i_out) for i in tp.instructions] == [
        (0, 0, 0), (1, 1, 1), (0, 1, 2), (1, 0, 3), (1, 2, 4), (0, 2, 5), (1, 1, 6)
    ]
    assert all(i.connection_mode == "uvu" and i.has_weight for i in tp.instructions)
    assert not tp.shared_weights and tp.weight_numel == 7 * 8
    both_parities = tpc.ChannelwiseTensorProduct("2x1o", "1o", 2)
    assert str(both_parities.irreps_out) == "2x0e+2x1e+2x2e"


def test_channelwise_equals_e3nn(rng):
    tp = tpc.ChannelwiseTensorProduct("3x0e+3x1o+3x2e", "0e+1o+2e+3o", 3)
    x1, x2, weight = random_inputs(tp, 5, rng)
    assert relative_error(tp.reference(x1, x2, weight), e3nn_forward(tp, x1, x2, weight)) < tolerance("float64")


@pytest.mark.parametrize("lmax", [1, 2, 4, 6])
def test_gaunt_product_equals_the_documented_e3nn_product_and_the_sphere_product(lmax, rng):
    channels = 3
    signal = tpc.Irreps([(channels, ir) for _, ir in tpc.Irreps.spherical_harmonics(lmax)])
    tp = tpc.GauntTensorProduct(signal, signal, lmax)
    with float64_torch():
        module = o3.TensorProduct(
            str(signal), str(signal), str(tp.irreps_out),
            [(i1, i2, l3, "uuu", False, gaunt_factor(a.l, b.l, l3) ** 2)
             for i1, (_, a) in enumerate(signal) for i2, (_, b) in enumerate(signal)
             for l3 in range(abs(a.l - b.l), min(a.l + b.l, lmax) + 1) if (a.l + b.l + l3) % 2 == 0],
            irrep_normalization="none", path_normalization="none",
        )
    x1, x2, _ = random_inputs(tp, 4, rng)
    ours = tp.reference(x1, x2)
    with torch.no_grad():
        assert relative_error(ours, module(torch.tensor(x1), torch.tensor(x2)).numpy()) < tolerance("float64")

    def per_channel(x, irreps):
        blocks = [x[:, s].reshape(len(x), channels, -1) for s in irreps.slices()]
        return np.concatenate(blocks, axis=-1)  # (batch, channel, (L+1)^2)

    expected = gaunt_product(per_channel(x1, signal), per_channel(x2, signal), lmax)
    assert relative_error(per_channel(ours, tp.irreps_out), expected) < tolerance("float64")
    assert all((tp.irreps_in1[i.i_in1].ir.l + tp.irreps_in2[i.i_in2].ir.l + tp.irreps_out[i.i_out].ir.l) % 2 == 0
               for i in tp.instructions)
