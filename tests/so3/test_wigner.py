import numpy as np
import pytest
import torch
from e3nn import o3

from tpc.so3 import (
    angles_to_matrix,
    matrix_to_angles,
    random_rotation,
    so3_generators,
    su2_clebsch_gordan,
    wigner_3j,
    wigner_D,
    wigner_D_from_matrix,
)

TRIPLES_6 = [(a, b, c) for a in range(7) for b in range(7) for c in range(abs(a - b), min(a + b, 6) + 1)]


@pytest.mark.parametrize("l1,l2,l3", TRIPLES_6)
def test_wigner_3j_equals_e3nn_up_to_6(l1, l2, l3):
    expected = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
    np.testing.assert_allclose(wigner_3j(l1, l2, l3), expected, rtol=0, atol=1e-12)


def test_wigner_3j_equals_e3nn_up_to_10():
    triples = [(a, b, c) for a in range(11) for b in range(11) for c in range(abs(a - b), min(a + b, 10) + 1)]
    worst = max(
        np.abs(wigner_3j(*t) - o3.wigner_3j(*t, dtype=torch.float64).numpy()).max() for t in triples
    )
    assert len(triples) > 500 and worst < 1e-12


def test_wigner_3j_properties(rng):
    for l1, l2, l3 in [(1, 1, 1), (2, 3, 4), (5, 5, 0), (4, 2, 3)]:
        c = wigner_3j(l1, l2, l3)
        assert np.isclose(np.linalg.norm(c), 1.0)
        np.testing.assert_allclose(np.swapaxes(c, 0, 1), (-1) ** (l1 + l2 + l3) * wigner_3j(l2, l1, l3), atol=1e-14)
        rotation = random_rotation(rng)
        d1, d2, d3 = (wigner_D_from_matrix(l, rotation) for l in (l1, l2, l3))
        np.testing.assert_allclose(np.einsum("abc,ai,bj,ck->ijk", c, d1, d2, d3), c, atol=1e-12)
    np.testing.assert_allclose(wigner_3j(0, 3, 3), np.eye(7)[None] / np.sqrt(7), atol=1e-15)
    epsilon = np.zeros((3, 3, 3))
    for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        epsilon[i, j, k], epsilon[j, i, k] = 1, -1
    np.testing.assert_allclose(wigner_3j(1, 1, 1), epsilon / np.sqrt(6), atol=1e-15)


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        wigner_3j(1, 1, 2)[0, 0, 0] = 1.0


@pytest.mark.parametrize("bad", [(1, 1, 3), (-1, 0, 1), (0, 2, 1), (1.5, 1, 1)])
def test_wigner_3j_rejects_impossible_triples(bad):
    with pytest.raises(ValueError):
        wigner_3j(*bad)


def test_su2_clebsch_gordan_known_values():
    cg = su2_clebsch_gordan(1, 1, 0)
    np.testing.assert_allclose([cg[2, 0, 0], cg[1, 1, 0], cg[0, 2, 0]], [1, -1, 1] / np.sqrt(3), atol=1e-15)
    assert np.isclose(su2_clebsch_gordan(1, 1, 2)[2, 2, 4], 1.0)


@pytest.mark.parametrize("l", range(6))
def test_generators_and_wigner_d_equal_e3nn(l, rng):
    np.testing.assert_allclose(so3_generators(l), o3.so3_generators(l).double().numpy(), atol=1e-6)
    angles = rng.uniform(0, 2 * np.pi, (3, 4))
    with torch.no_grad():
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            expected = o3.wigner_D(l, *(torch.tensor(a) for a in angles)).numpy()
        finally:
            torch.set_default_dtype(previous)
    np.testing.assert_allclose(wigner_D(l, *angles), expected, atol=1e-12)


def test_wigner_d_is_a_representation(rng):
    r1, r2 = random_rotation(rng), random_rotation(rng)
    for l in range(5):
        d = wigner_D_from_matrix(l, r1 @ r2)
        np.testing.assert_allclose(d, wigner_D_from_matrix(l, r1) @ wigner_D_from_matrix(l, r2), atol=1e-12)
        np.testing.assert_allclose(d @ d.T, np.eye(2 * l + 1), atol=1e-12)
    np.testing.assert_allclose(wigner_D_from_matrix(1, r1), r1, atol=1e-12)


def test_angles_round_trip(rng):
    rotations = random_rotation(rng, (10,))
    np.testing.assert_allclose(angles_to_matrix(*matrix_to_angles(rotations)), rotations, atol=1e-12)
    with pytest.raises(ValueError, match="proper"):
        matrix_to_angles(-np.eye(3))
