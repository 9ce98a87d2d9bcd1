"""Which algorithms a spec gets, the default one, and forcing one that does not apply."""

import math

import numpy as np
import pytest

import tpc
from tpc.lower.fourier import CONVOLUTIONS
from tpc.ops import ALGORITHMS, GRID_FROM_DEGREE, Product
from tpc.so3 import gaunt_product
from tpc.verify import random_inputs, relative_error, tolerance


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
        assert Product(tp).default_algorithm == ("grid" if degree >= GRID_FROM_DEGREE else "cg")
    assert Product(tpc.presets.get("mace-l3").tp).default_algorithm == "cg"
    kernel = tpc.compile(tpc.presets.get("gaunt-L4").tp, schedule="default")
    assert (kernel.schedule.algorithm, kernel.schedule.source) == ("grid", "default")


def test_forcing_an_algorithm_names_why_it_does_not_apply():
    with pytest.raises(ValueError, match="unknown algorithm 'spectral'"):
        Product(tpc.presets.get("gaunt-L2").tp).check_algorithm("spectral")
    with pytest.raises(ValueError, match="fourier algorithm computes Gaunt products only.*differ in channel count"):
        Product(tpc.presets.get("mace-l2").tp).check_algorithm("fourier")
    Product(tpc.presets.get("mace-l2").tp).check_algorithm("cg")


def _signals(x: np.ndarray, degree: int, channels: int) -> np.ndarray:
    """e3nn layout ``[b, block_l + u (2l+1) + m]`` of ``Cx0e+Cx1o+...`` -> ``[b, u, l^2 + l + m]``."""
    blocks, start = [], 0
    for l in range(degree + 1):
        width = channels * (2 * l + 1)
        blocks.append(x[:, start:start + width].reshape(len(x), channels, 2 * l + 1))
        start += width
    return np.concatenate(blocks, axis=2)


# Clebsch-Gordan kernels take over a minute each to build from degree 7 (200+ paths) and
# several minutes from degree 8; CI checks that route up to degree 6, the Gaunt routes up to 10.
CG_UP_TO = 6
CONFIGS = {"fourier": [{"convolution": convolution} for convolution in CONVOLUTIONS]}
ROUTES = [pytest.param(degree, algorithm, config, id="-".join([str(degree), algorithm, *config.values()]))
          for degree in range(1, 11) for algorithm in ALGORITHMS for config in CONFIGS.get(algorithm, [{}])
          if algorithm != "cg" or degree <= CG_UP_TO]


@pytest.mark.parametrize("degree,algorithm,config", ROUTES)
def test_every_route_equals_the_gaunt_product_on_the_sphere(degree, algorithm, config):
    """Against tpc.so3.gaunt_product (Gaunt coefficients), not the spec's own reference: the
    float64 check of every algorithm (and each Fourier convolution) at every degree."""
    channels = 3
    signal = "+".join(f"{channels}x{l}{'eo'[l % 2]}" for l in range(degree + 1))
    tp = tpc.GauntTensorProduct(signal, signal, degree)
    kernel = tpc.compile(tp, dtype="float64", algorithm=algorithm, schedule=config or "default")
    rng = np.random.default_rng(degree)
    for batch in (1, 7, 1000) if degree == 3 else (1, 7):
        x1, x2, _ = random_inputs(tp, batch, rng, "float64")
        expected = gaunt_product(_signals(x1, degree, channels), _signals(x2, degree, channels), degree)
        got = _signals(kernel(x1, x2), degree, channels)
        assert relative_error(got, expected) < tolerance("float64")


@pytest.mark.parametrize("degree,channels", [(7, 1), (10, 1), (7, 2)])
@pytest.mark.parametrize("algorithm", ["grid", "fourier"])
def test_full_products_at_the_papers_degrees_equal_the_reference(degree, channels, algorithm):
    """Outputs up to 2 L (PriceofFreedom's problem has one channel): the output's many block
    widths once made TVM's region analysis overflow a 32-bit constant before anything ran."""
    signal = "+".join(f"{channels}x{l}{'eo'[l % 2]}" for l in range(degree + 1))
    tp = tpc.GauntTensorProduct(signal, signal, 2 * degree)
    assert math.lcm(*(2 * ir.l + 1 for _, ir in tp.irreps_out)) >= 2 ** 31  # the case that failed is reached
    assert Product(tp).default_algorithm == "grid"
    kernel = tpc.compile(tp, dtype="float64", algorithm=algorithm)
    x1, x2, _ = random_inputs(tp, 23, np.random.default_rng(degree), "float64")
    assert relative_error(kernel(x1, x2), tp.reference(x1, x2)) < 1e-10
