import numpy as np
import pytest

from tpc.so3 import grid_to_sh, s2_grid, sh_to_grid, spherical_harmonics


@pytest.mark.parametrize("degree", [0, 1, 4, 9, 20])
def test_grid_integrates_every_polynomial_of_its_degree(degree, rng):
    grid = s2_grid(degree)
    assert (grid.res_beta, grid.res_alpha) == (degree // 2 + 1, degree + 1)
    assert np.isclose(grid.weights.sum(), 4 * np.pi)
    np.testing.assert_allclose(np.linalg.norm(grid.points, axis=-1), 1.0)
    # a random polynomial of the degree: product of random linear forms; compare with a fine grid
    forms = rng.standard_normal((degree, 3))
    def poly(points):
        return np.prod(points.reshape(-1, 3) @ forms.T, axis=-1) if degree else np.ones(points.size // 3)
    fine = s2_grid(degree + 40)
    exact = poly(fine.points) @ fine.weights.reshape(-1)
    assert np.isclose(poly(grid.points) @ grid.weights.reshape(-1), exact, atol=1e-10)


def test_smaller_grid_is_not_exact():
    degree = 8
    grid = s2_grid(degree)
    too_coarse_beta = s2_grid(degree - 2)
    f = lambda g: sh_to_grid(4, g)[:, 20] ** 2  # Y_{4,0}^2 has degree 8, integral 1
    assert np.isclose(f(grid) @ grid.weights.reshape(-1), 1.0)
    assert not np.isclose(f(too_coarse_beta) @ too_coarse_beta.weights.reshape(-1), 1.0)


def test_round_trip_coefficients_through_grid(rng):
    lmax = 7
    grid = s2_grid(2 * lmax, res_beta=12, res_alpha=20)
    coefficients = rng.standard_normal((lmax + 1) ** 2)
    values = sh_to_grid(lmax, grid) @ coefficients
    np.testing.assert_allclose(grid_to_sh(lmax, grid) @ values, coefficients, atol=1e-12)


def test_grid_values_are_e3nn_harmonics_at_the_points():
    grid = s2_grid(6)
    expected = spherical_harmonics(list(range(4)), grid.points.reshape(-1, 3))
    np.testing.assert_allclose(sh_to_grid(3, grid), expected, atol=1e-13)
