import numpy as np
import pytest

import tpc
from tpc import presets
from tpc.testing import e3nn_forward
from tpc.verify import random_inputs, relative_error, tolerance


def test_required_presets_exist_with_batches():
    required = {"mace-l1", "mace-l2", "mace-l3", "mace-small-l2", "nequip", "fc-small"}
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


@pytest.mark.parametrize("name", ["mace-small-l2", "nequip", "fc-small"])
def test_presets_agree_with_e3nn(name, rng):
    tp = presets.get(name).tp
    x1, x2, weight = random_inputs(tp, 3, rng)
    assert relative_error(tp.reference(x1, x2, weight), e3nn_forward(tp, x1, x2, weight)) < tolerance("float64")
    assert np.isfinite(tp.flops(presets.get(name).batch))
