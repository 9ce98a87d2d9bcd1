import pickle

import pytest
from e3nn import o3

import tpc
from tpc import Irrep, Irreps

MALFORMED = [
    "x", "1x", "x0e", "0", "e", "o", "1", "12", "0x", "1xe", "1xo", "-1x0e", "1x-1e", "1x0q", "1x0E",
    "1x0O", "0a", "1x1.5e", "1.5x1e", "1x0e++1x1o", "1x0e+", "+1x0e", "+", " + ", "abc", "1x0e,1x1o",
    "1x0e 1x1o", "1x0e+x", "2x2x2e", "1xx0e", "1x0ee", "1x0eo", "0e0", "e0", "1x e", "1x0 e", "1 0e",
    "1x0e+1x", "1_0x0e", "1x1_0e", "１x0e", "1x０e", "1x0e;", "(1x0e)", "[1x0e]", "1x0e+ +1x1o", "1*0e",
    "1X0e", "0x0", "1x-0e", "1e+1", "nan", "inf", "1x1p", "1x2y+", "10x",
]


def test_parses_e3nn_grammar():
    irreps = Irreps("32x0e+32x1o + 2x2e")
    assert [(m, ir.l, ir.p) for m, ir in irreps] == [(32, 0, 1), (32, 1, -1), (2, 2, 1)]
    assert Irreps("0e + 1o") == Irreps("1x0e+1x1o")
    assert Irreps("2y + 3y") == Irreps("1x2e+1x3o")
    assert Irreps("") == Irreps() == Irreps([])
    assert Irreps("0x1o").dim == 0
    assert Irreps(" 3 x 1o ") == Irreps("3x1o")


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_strings_raise_value_error_naming_the_token(text):
    with pytest.raises(ValueError) as error:
        Irreps(text)
    assert repr(text) in str(error.value)


def test_enough_malformed_cases():
    assert len(set(MALFORMED)) >= 50


@pytest.mark.parametrize("bad", [3, 2.5, {"0e": 1}, object()])
def test_wrong_types_raise_type_error(bad):
    with pytest.raises(TypeError):
        Irreps(bad)


@pytest.mark.parametrize("bad", [[(-1, "0e")], [(1.5, "0e")], [(True, "0e")], [(1, "0q")], [(1, 2, 3)]])
def test_bad_terms_raise_value_error(bad):
    with pytest.raises(ValueError):
        Irreps(bad)


@pytest.mark.parametrize("args", [(-1, 1), (1, 0), (1, 2), (1.0, 1), (True, 1)])
def test_bad_irrep_arguments(args):
    with pytest.raises(ValueError):
        Irrep(*args)


@pytest.mark.parametrize(
    "text", ["32x0e+32x1o+2x2e", "1e+1e+0e", "2o+1e+0e+1e", "0x1o+4x0e+2x3e", "3x0o", "", "5x2e+5x2o+5x1e"]
)
def test_matches_e3nn(text):
    ours, theirs = Irreps(text), o3.Irreps(text)
    assert str(ours) == str(theirs)
    assert ours.dim == theirs.dim
    assert ours.num_irreps == theirs.num_irreps
    assert ours.ls == theirs.ls
    assert ours.slices() == theirs.slices()
    assert str(ours.simplify()) == str(theirs.simplify())
    assert str(ours.regroup()) == str(theirs.regroup())
    sorted_ours, sorted_theirs = ours.sort(), theirs.sort()
    assert str(sorted_ours.irreps) == str(sorted_theirs.irreps)
    assert sorted_ours.p == tuple(sorted_theirs.p)
    assert sorted_ours.inv == tuple(sorted_theirs.inv)
    if len(ours):
        assert ours.lmax == theirs.lmax


def test_repr_round_trips():
    for text in ["32x0e+32x1o+2x2e", "", "1x5o"]:
        irreps = Irreps(text)
        assert eval(repr(irreps), {"Irreps": Irreps}) == irreps
        assert Irreps(str(irreps)) == irreps
    ir = Irrep("3o")
    assert eval(repr(ir), {"Irrep": Irrep}) == ir
    assert pickle.loads(pickle.dumps(Irreps("2x1o+0e"))) == Irreps("2x1o+0e")


def test_iteration_indexing_and_arithmetic():
    irreps = Irreps("2x0e+3x1o")
    mul, ir = irreps[1]
    assert (mul, ir) == (3, Irrep("1o")) and irreps[1].dim == 9
    assert irreps[1:] == Irreps("3x1o")
    assert irreps + "1e" == Irreps("2x0e+3x1o+1x1e")
    assert "1e" + irreps == Irreps("1e+2x0e+3x1o")
    assert irreps * 2 == Irreps("2x0e+3x1o+2x0e+3x1o")
    assert Irrep("1o") in irreps and "2e" not in irreps
    assert Irreps("1o+2x1o").count("1o") == 3
    assert list(Irrep("1o") * Irrep("1o")) == [Irrep("0e"), Irrep("1e"), Irrep("2e")]
    assert Irreps.spherical_harmonics(3) == Irreps("0e+1o+2e+3o")
    assert Irrep("0e").is_scalar and not Irrep("0o").is_scalar
    assert irreps != "2x0e+3x1o"
    assert len({Irreps("0e"), Irreps("1x0e")}) == 1


def test_lmax_of_empty_irreps_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        Irreps("").lmax


def test_zero_multiplicity_blocks_parse_as_in_e3nn_and_can_be_dropped():
    """Irreps keep e3nn's ``0x1o`` blocks (a tensor-product spec refuses them, naming its
    argument); ``remove_zero_multiplicities`` gives the irreps a spec accepts."""
    text = "0x1o+4x0e+0x2e+2x1o"
    irreps = Irreps(text)
    assert len(irreps) == 4 and irreps.dim == o3.Irreps(text).dim == 10
    kept = irreps.remove_zero_multiplicities()
    assert str(kept) == str(o3.Irreps(text).remove_zero_multiplicities()) == "4x0e+2x1o"
    with pytest.raises(ValueError, match=r"irreps_in1: block 0 \(0x1o\) has multiplicity 0"):
        tpc.TensorProduct(irreps, "1x0e", irreps, [(1, 0, 1, "uvu", True)])
    assert tpc.TensorProduct(kept, "1x0e", kept, [(0, 0, 0, "uvu", True)]).irreps_in1 == kept
