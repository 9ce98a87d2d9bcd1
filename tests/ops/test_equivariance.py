"""Rotation and parity equivariance of the reference, for every connection mode."""

import numpy as np
import pytest

from tpc.ops import MODES
from tpc.so3 import irreps_D, random_rotation
from tpc.testing import random_tensor_product
from tpc.verify import random_inputs


@pytest.mark.parametrize("mode", MODES + ("mixed",))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("improper", [False, True], ids=["rotation", "rotation+inversion"])
def test_equivariant(mode, seed, improper):
    rng = np.random.default_rng([seed, MODES.index(mode) if mode in MODES else 9])
    tp = random_tensor_product(rng, mode)
    x1, x2, weight = random_inputs(tp, 5, rng)
    matrix = random_rotation(rng) * (-1 if improper else 1)
    d1, d2, d_out = (irreps_D(irreps, matrix) for irreps in (tp.irreps_in1, tp.irreps_in2, tp.irreps_out))
    transformed_first = tp.reference(x1 @ d1.T, x2 @ d2.T, weight)
    transformed_after = tp.reference(x1, x2, weight) @ d_out.T
    assert np.abs(transformed_after).max() > 0
    np.testing.assert_allclose(transformed_first, transformed_after, atol=1e-10 * np.abs(transformed_after).max())


def test_inversion_alone_flips_odd_outputs(rng):
    tp = random_tensor_product(rng, "uvw")
    x1, x2, weight = random_inputs(tp, 3, rng)
    inversion = -np.eye(3)
    out = tp.reference(x1 @ irreps_D(tp.irreps_in1, inversion).T, x2 @ irreps_D(tp.irreps_in2, inversion).T, weight)
    parities = np.concatenate([[ir.p] * (mul * ir.dim) for mul, ir in tp.irreps_out])
    np.testing.assert_allclose(out, tp.reference(x1, x2, weight) * parities, atol=1e-12)
