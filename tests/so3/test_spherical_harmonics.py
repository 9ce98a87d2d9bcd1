import numpy as np
import pytest
import torch
from e3nn import o3

from tpc.so3 import random_rotation, s2_grid, sh_to_grid, spherical_harmonics, wigner_D_from_matrix


@pytest.mark.parametrize("normalization", ["integral", "component", "norm"])
@pytest.mark.parametrize("normalize", [True, False])
def test_equal_to_e3nn_up_to_11(normalization, normalize, rng):
    vectors = rng.standard_normal((50, 3)) * 1.7
    ours = spherical_harmonics(list(range(12)), vectors, normalize, normalization)
    theirs = o3.spherical_harmonics(list(range(12)), torch.tensor(vectors), normalize, normalization).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * np.abs(theirs).max())


def test_argument_forms_match_e3nn(rng):
    vectors = rng.standard_normal((4, 2, 3))
    for ls in [2, [1, 3], "0e+1o+2e"]:
        expected = o3.spherical_harmonics(ls, torch.tensor(vectors), True).numpy()
        np.testing.assert_allclose(spherical_harmonics(ls, vectors, True), expected, atol=1e-12)
    assert spherical_harmonics(1, vectors.astype(np.float32)).dtype == np.float32


def test_l1_is_sqrt3_xyz_and_zero_vector(rng):
    v = rng.standard_normal((5, 3))
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(spherical_harmonics(1, v, True, "component"), np.sqrt(3) * unit, atol=1e-14)
    zero = spherical_harmonics([0, 1, 2], np.zeros((1, 3)), True, "component")
    np.testing.assert_allclose(zero, [[1.0] + [0.0] * 8])


def test_equivariance_up_to_degree_20(rng):
    vectors = rng.standard_normal((30, 3))
    rotation = random_rotation(rng)
    for l in (3, 8, 20):
        rotated = spherical_harmonics(l, vectors @ rotation.T)
        expected = spherical_harmonics(l, vectors) @ wigner_D_from_matrix(l, rotation).T
        np.testing.assert_allclose(rotated, expected, atol=1e-10)


def test_orthonormal_on_the_sphere():
    lmax = 15
    grid = s2_grid(2 * lmax)
    values = sh_to_grid(lmax, grid)
    gram = values.T @ (values * grid.weights.reshape(-1, 1))
    np.testing.assert_allclose(gram, np.eye((lmax + 1) ** 2), atol=1e-12)


@pytest.mark.parametrize(
    "ls,vectors,error",
    [
        (1, np.zeros((3, 2)), ValueError),
        (1, np.zeros(3, dtype=np.int64), TypeError),
        (-1, np.zeros((1, 3)), ValueError),
        ("1e", np.zeros((1, 3)), ValueError),
        (1, np.zeros((1, 3)), None),
    ],
)
def test_bad_arguments(ls, vectors, error):
    if error is None:
        spherical_harmonics(ls, vectors)
        return
    with pytest.raises(error):
        spherical_harmonics(ls, vectors)
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(1, np.ones((1, 3)), normalization="unit")
