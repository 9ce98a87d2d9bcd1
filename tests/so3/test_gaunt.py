import numpy as np
import pytest

from tpc.so3 import (
    gaunt_coefficients,
    gaunt_factor,
    gaunt_product,
    gaunt_product_fourier,
    gaunt_product_grid,
    s2_grid,
    sh_to_grid,
    three_j_zero,
    wigner_3j,
)


def _signals(rng, channels, lmax):
    return rng.standard_normal((channels, (lmax + 1) ** 2))


@pytest.mark.parametrize("lmax", range(0, 9))
def test_three_routes_agree_to_1e10(lmax, rng):
    x1, x2 = _signals(rng, 5, lmax), _signals(rng, 5, lmax)
    by_coefficients = gaunt_product(x1, x2, lmax)
    assert np.abs(by_coefficients).max() > 0.1
    scale = np.abs(by_coefficients).max()
    assert np.abs(gaunt_product_fourier(x1, x2, lmax) - by_coefficients).max() < 1e-10 * scale
    assert np.abs(gaunt_product_grid(x1, x2, lmax) - by_coefficients).max() < 1e-10 * scale


@pytest.mark.parametrize("lmax1,lmax2,lmax_out", [(1, 3, 2), (4, 0, 4), (2, 5, 7), (6, 3, 1), (3, 3, 6)])
def test_three_routes_agree_for_unequal_degrees(lmax1, lmax2, lmax_out, rng):
    x1, x2 = _signals(rng, 3, lmax1), _signals(rng, 3, lmax2)
    expected = gaunt_product(x1, x2, lmax_out)
    np.testing.assert_allclose(gaunt_product_fourier(x1, x2, lmax_out), expected, atol=1e-10)
    np.testing.assert_allclose(gaunt_product_grid(x1, x2, lmax_out), expected, atol=1e-10)


def test_product_is_the_pointwise_product_on_the_sphere(rng):
    lmax = 3
    x1, x2 = _signals(rng, 1, lmax)[0], _signals(rng, 1, lmax)[0]
    grid = s2_grid(4 * lmax)
    values = sh_to_grid(2 * lmax, grid)
    product = gaunt_product(x1, x2, 2 * lmax)
    np.testing.assert_allclose(values @ product, (values[:, :16] @ x1) * (values[:, :16] @ x2), atol=1e-12)


@pytest.mark.parametrize("l1,l2,l3", [(0, 0, 0), (1, 1, 2), (2, 3, 3), (4, 4, 6), (5, 3, 4), (1, 1, 1), (2, 3, 4)])
def test_coefficients_equal_quadrature_of_three_harmonics(l1, l2, l3):
    grid = s2_grid(l1 + l2 + l3)
    y = sh_to_grid(max(l1, l2, l3), grid)
    blocks = [y[:, l * l : (l + 1) ** 2] for l in (l1, l2, l3)]
    integral = np.einsum("pi,pj,pk,p->ijk", *blocks, grid.weights.reshape(-1))
    np.testing.assert_allclose(gaunt_coefficients(l1, l2, l3), integral, atol=1e-13)
    np.testing.assert_allclose(gaunt_coefficients(l1, l2, l3), gaunt_factor(l1, l2, l3) * wigner_3j(l1, l2, l3))


def test_three_j_zero_known_values():
    assert np.isclose(three_j_zero(1, 1, 0), -1 / np.sqrt(3))
    assert np.isclose(three_j_zero(2, 2, 0), 1 / np.sqrt(5))
    assert np.isclose(three_j_zero(1, 1, 2), np.sqrt(2 / 15))
    assert three_j_zero(1, 1, 1) == 0.0 and gaunt_factor(2, 3, 4) == 0.0


def test_bad_signal_sizes():
    with pytest.raises(ValueError, match="not a square"):
        gaunt_product(np.ones(5), np.ones(4), 1)
    with pytest.raises(ValueError, match="not exact"):
        s2_grid(10, res_beta=3)
    with pytest.raises(ValueError, match="needs"):
        gaunt_product_grid(np.ones(9), np.ones(9), 2, grid=s2_grid(4))
