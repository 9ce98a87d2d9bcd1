import pytest

import tpc


@pytest.mark.parametrize(
    "in1,in2,lmax,message",
    [
        ("1x0e+1x1e", "1x0e", 2, "parity of a spherical harmonic"),
        ("2x0e+1x1o", "2x0e", 2, "same number of channels"),
        ("1x0e", "2x0e", 2, "same number of channels"),
        ("1x1o+1x0e", "1x0e", 2, "increasing order"),
        ("1x1o+1x1o", "1x0e", 2, "increasing order"),
        ("", "1x0e", 2, "empty"),
        ("1x0e", "1x0e", -1, "lmax"),
        ("1x0e", "1x0e", 2.0, "lmax"),
    ],
)
def test_gaunt_rejects_what_is_not_a_signal(in1, in2, lmax, message):
    with pytest.raises(ValueError, match=message):
        tpc.GauntTensorProduct(in1, in2, lmax)


def test_gaunt_has_only_even_paths_and_no_weights():
    tp = tpc.GauntTensorProduct("4x0e+4x1o+4x2e", "4x1o+4x3o", 3)
    assert str(tp.irreps_out) == "4x0e+4x1o+4x2e+4x3o"
    assert tp.weight_numel == 0
    assert (1, 1, 1) not in {(tp.irreps_in1[i.i_in1].ir.l, tp.irreps_in2[i.i_in2].ir.l, tp.irreps_out[i.i_out].ir.l)
                             for i in tp.instructions}
    assert all(i.connection_mode == "uuu" for i in tp.instructions)


def test_channelwise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lmax"):
        tpc.ChannelwiseTensorProduct("1x0e", "1x0e", -2)
    with pytest.raises(ValueError, match="no path"):
        tpc.ChannelwiseTensorProduct("1x2e", "1x0e", 1)


def test_fully_connected_skips_forbidden_paths():
    tp = tpc.FullyConnectedTensorProduct("1x1o", "1x1o", "1x1o+1x0e+1x1e")
    assert [(i.i_out) for i in tp.instructions] == [1, 2]
