"""Which algorithms a spec gets, the default one, and forcing one that does not apply."""

import pytest

import tpc
from tpc.lower.algorithms import GRID_FROM_DEGREE, check_algorithm, default_algorithm


def test_gaunt_products_get_every_algorithm_others_only_cg():
    assert tpc.algorithms_for(tpc.presets.get("gaunt-L3").tp) == ("cg", "fourier", "grid")
    for name in ("mace-l2", "nequip", "fc-small"):
        assert tpc.algorithms_for(tpc.presets.get(name).tp) == ("cg",)
    with pytest.raises(TypeError, match="takes a TensorProduct"):
        tpc.algorithms_for("1x0e")


def test_the_default_is_the_grid_from_its_crossover_degree():
    for degree in range(1, 7):
        tp = tpc.GauntTensorProduct("+".join(f"2x{l}{'eo'[l % 2]}" for l in range(degree + 1)),
                                    "2x0e+2x1o", degree)
        assert default_algorithm(tp) == ("grid" if degree >= GRID_FROM_DEGREE else "cg")
    assert default_algorithm(tpc.presets.get("mace-l3").tp) == "cg"
    kernel = tpc.compile(tpc.presets.get("gaunt-L4").tp, schedule="default")
    assert (kernel.schedule.algorithm, kernel.schedule.source) == ("grid", "default")


def test_forcing_an_algorithm_names_why_it_does_not_apply():
    with pytest.raises(ValueError, match="unknown algorithm 'spectral'"):
        check_algorithm(tpc.presets.get("gaunt-L2").tp, "spectral")
    with pytest.raises(ValueError, match="fourier algorithm computes Gaunt products only.*differ in channel count"):
        check_algorithm(tpc.presets.get("mace-l2").tp, "fourier")
    check_algorithm(tpc.presets.get("mace-l2").tp, "cg")
