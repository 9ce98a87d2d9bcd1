import functools

import numpy as np
import pytest

import tpc
from tpc import presets
from tpc.testing import e3nn_forward
from tpc.verify import random_inputs, relative_error, tolerance


def test_required_presets_exist_with_batches():
    required = {"mace-l1", "mace-l2", "mace-l3", "mace-small-l2", "nequip", "fc-small", "nequip-default"}
    required |= {"mace-conv-0e", "mace-conv-0e1o", "mace-conv-0e1o2e"}
    required |= {f"gaunt-L{L}" for L in range(2, 11)}
    assert required <= set(presets.names())
    for name in presets.names():
        preset = presets.get(name)
        assert preset.name == name and preset.batch > 0 and isinstance(preset.tp, tpc.TensorProduct)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid presets: mace-l1"):
        presets.get("mace-l9")


def test_mace_l2_matches_the_mace_convolution():
    tp = presets.get("mace-l2").tp
    assert tp.irreps_in1 == tpc.Irreps("128x0e+128x1o+128x2e")
    assert tp.irreps_in2 == tpc.Irreps("0e+1o+2e+3o")
    assert {ir for _, ir in tp.irreps_out} == {ir for _, ir in tpc.Irreps("0e+1o+2e")}
    assert tp.irreps_out == tp.irreps_out.sort().irreps
    assert not tp.shared_weights and all(i.connection_mode == "uvu" for i in tp.instructions)
    assert len(tp.instructions) == 13 and tp.weight_numel == 13 * 128


def test_gaunt_presets_are_single_channel_up_to_l():
    tp = presets.get("gaunt-L6").tp
    assert tp.irreps_in1 == tp.irreps_in2 == tp.irreps_out == tpc.Irreps.spherical_harmonics(6)


@pytest.mark.parametrize("name", ["mace-small-l2", "nequip", "nequip-default", "fc-small"])
def test_presets_agree_with_e3nn(name, rng):
    tp = presets.get(name).tp
    x1, x2, weight = random_inputs(tp, 3, rng)
    assert relative_error(tp.reference(x1, x2, weight), e3nn_forward(tp, x1, x2, weight)) < tolerance("float64")
    assert np.isfinite(tp.flops(presets.get(name).batch))


# -- real models' products ----------------------------------------------------------------------

# (hidden irreps of the mace-torch model, interaction layer) -> the preset of its conv_tp
MACE_LAYERS = {
    ("128x0e", 0): "mace-conv-0e",
    ("128x0e", 1): "mace-conv-0e",
    ("128x0e+128x1o", 0): "mace-conv-0e",
    ("128x0e+128x1o", 1): "mace-conv-0e1o",
    ("128x0e+128x1o+128x2e", 0): "mace-conv-0e",
    ("128x0e+128x1o+128x2e", 1): "mace-conv-0e1o2e",
}


@functools.lru_cache(maxsize=None)
def _mace_model(hidden_irreps: str):
    """A two-interaction ``ScaleShiftMACE`` (max_ell 3, residual interactions, random weights) as
    mace's tests build it; correlation 1, since conv_tp does not depend on it and higher orders
    take seconds to build."""
    import torch
    import torch.nn.functional as F
    from e3nn import o3
    from mace import modules

    torch.manual_seed(0)
    return modules.ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=6, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=4, hidden_irreps=o3.Irreps(hidden_irreps), MLP_irreps=o3.Irreps("16x0e"),
        gate=F.silu, atomic_energies=np.array([-1.0, -2.0, -3.0, -4.0]), avg_num_neighbors=30.0,
        atomic_numbers=[1, 6, 7, 8], correlation=1, radial_type="bessel", atomic_inter_scale=1.0,
        atomic_inter_shift=0.0)


@pytest.mark.parametrize(("hidden", "layer"), list(MACE_LAYERS), ids=[f"{h}-layer{n}" for h, n in MACE_LAYERS])
def test_mace_presets_are_the_conv_tp_of_mace_torch(hidden, layer):
    conv_tp = _mace_model(hidden).interactions[layer].conv_tp
    tp = presets.get(MACE_LAYERS[hidden, layer]).tp
    assert str(tp.irreps_in1) == str(conv_tp.irreps_in1)
    assert str(tp.irreps_in2) == str(conv_tp.irreps_in2)
    assert str(tp.irreps_out) == str(conv_tp.irreps_out)  # one block per path, not simplified
    assert not conv_tp.shared_weights and not tp.shared_weights and tp.weight_numel == conv_tp.weight_numel
    assert len(tp.instructions) == len(conv_tp.instructions)
    for ours, theirs in zip(tp.instructions, conv_tp.instructions):
        assert (ours.i_in1, ours.i_in2, ours.i_out, ours.connection_mode, ours.has_weight, ours.path_shape) == \
            (theirs.i_in1, theirs.i_in2, theirs.i_out, theirs.connection_mode, theirs.has_weight,
             tuple(theirs.path_shape))
        assert ours.coefficient == pytest.approx(theirs.path_weight, rel=1e-12, abs=0)
    assert tpc.TensorProduct.from_e3nn(conv_tp) == tp


def test_mace_convolution_defaults_to_the_interaction_target():
    # layer 1 of hidden 128x0e+128x1o+128x2e: 2e x 3o reaches 1o and 3o only (the target holds 0e, 1o, 2e, 3o)
    tp = tpc.mace_convolution("128x0e+128x1o+128x2e")
    assert tp == tpc.mace_convolution("128x0e+128x1o+128x2e", 3, target_irreps="128x0e+128x1o+128x2e+128x3o")
    assert [(ins.i_in2, str(tp.irreps_out[ins.i_out].ir)) for ins in tp.instructions if ins.i_in1 == 2] == \
        [(2, "0e"), (1, "1o"), (3, "1o"), (0, "2e"), (2, "2e"), (1, "3o"), (3, "3o")]
    # hidden irreps with odd scalars: the target holds both parities up to max_ell, as mace builds it
    odd = tpc.mace_convolution("8x0e+8x0o", 1)
    assert {str(ir) for _, ir in odd.irreps_out} == {"0e", "0o", "1o", "1e"}
    with pytest.raises(ValueError, match="sh_lmax"):
        tpc.mace_convolution("8x0e", -1)


def test_nequip_default_structure():
    """No nequip package is installed: the numbers below are derived by hand from nequip 0.19's
    NequIPGNNModel defaults (configs/tutorial.yaml: num_features 32, l_max 1, parity true,
    num_layers 4), ConvNetLayer and InteractionBlock. Harmonics 0e+1o; hidden irreps
    32x0e+32x0o+32x1e+32x1o (32x0e in the last layer); each layer keeps the hidden irreps its
    input reaches through the harmonics, and its convolution outputs the gate's input."""
    layers = presets.nequip_convolutions()
    expected = [
        # input, convolution output blocks (sorted, one per path), paths
        ("32x0e", "32x0e+32x1o", 2),
        ("32x0e+32x1o", "32x0e+32x0e+32x1o+32x1o+32x1e", 5),
        ("32x0e+32x1e+32x1o", "32x0o+32x0e+32x0e+32x1o+32x1o+32x1o+32x1e+32x1e", 8),
        ("32x0e+32x0o+32x1e+32x1o", "32x0e+32x0e", 2),
    ]
    assert [(str(tp.irreps_in1), str(tp.irreps_out), len(tp.instructions)) for tp in layers] == expected
    tp = presets.get("nequip-default").tp
    assert tp == layers[2] and str(tp.irreps_in2) == "1x0e+1x1o"
    # layer 2's paths in instruction order: (input block, harmonic) with the sorted output block
    assert [(ins.i_in1, ins.i_in2, ins.i_out) for ins in tp.instructions] == \
        [(1, 1, 0), (0, 0, 1), (2, 1, 2), (0, 1, 3), (1, 1, 4), (2, 0, 5), (1, 0, 6), (2, 1, 7)]
    assert not tp.shared_weights and tp.weight_numel == 8 * 32
    assert all(ins.connection_mode == "uvu" and ins.has_weight for ins in tp.instructions)


# (hidden irreps, layer) -> the preset of its product basis
MACE_PRODUCT_BASES = {
    ("128x0e", 0): "mace-product-0e",
    ("128x0e+128x1o", 0): "mace-product-0e1o",
    ("128x0e+128x1o", 1): "mace-product-0e",
    ("128x0e+128x1o+128x2e", 0): "mace-product-0e1o2e",
}


@pytest.mark.parametrize(("hidden", "layer"), list(MACE_PRODUCT_BASES),
                         ids=[f"{h}-layer{n}" for h, n in MACE_PRODUCT_BASES])
def test_product_basis_presets_are_those_of_mace_torch(hidden, layer):
    """Irreps and elements against the model (built at correlation 1, see ``_mace_model``); the
    coupling tensors against mace's module are tests/ops' business."""
    theirs = _mace_model(hidden).products[layer].symmetric_contractions
    spec = presets.get_contraction(MACE_PRODUCT_BASES[hidden, layer]).spec
    assert (str(spec.irreps_in), str(spec.irreps_out)) == (str(theirs.irreps_in), str(theirs.irreps_out))
    assert spec.num_elements == theirs.contractions[0].weights_max.shape[0] and spec.correlation == 3
    with pytest.raises(ValueError, match="unknown product-basis preset 'mace-product-1o'; valid ones: mace-product-0e"):
        presets.get_contraction("mace-product-1o")
