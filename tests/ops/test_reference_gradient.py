"""The float64 gradient reference against e3nn's autograd, and the identity of gradient ops."""

import numpy as np
import pytest

import tpc
from tpc.ops import WRT, Gradient
from tpc.testing import foundation_cases, gradient_problem
from tpc.verify import random_inputs, relative_error, tolerance

CASES = foundation_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reference_gradient_equals_e3nn_autograd(case):
    arguments, expected = gradient_problem(case.tp, 9, 8)
    for wrt, value in expected.items():
        actual = case.tp.reference_gradient(*arguments, wrt)
        assert actual.shape == value.shape and actual.dtype == np.float64
        assert relative_error(actual, value) < tolerance("float64", "gradient"), wrt


def test_gradient_ops_have_fingerprints_of_their_own():
    tp = tpc.presets.get("fc-small").tp
    prints = [tpc.Product(tp).fingerprint] + [Gradient(tp, wrt).fingerprint for wrt in WRT]
    assert prints[0] == tp.fingerprint and len(set(prints)) == 4
    assert Gradient(tp, "x2").fingerprint == Gradient(tpc.presets.get("fc-small").tp, "x2").fingerprint
    assert Gradient(tp, "x2").fingerprint != Gradient(tpc.presets.get("mace-small-l2").tp, "x2").fingerprint


def test_bad_gradient_requests_are_named():
    tp = tpc.presets.get("fc-small").tp
    x1, x2, weight = random_inputs(tp, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="wrt must name arguments"):
        Gradient(tp, "out")
    with pytest.raises(ValueError, match="grad must have shape"):
        tp.reference_gradient(x1, x2, weight, np.zeros((3, tp.irreps_out.dim)), "x1")
    with pytest.raises(ValueError, match="no weights"):
        tpc.GauntTensorProduct("0e+1o", "0e+1o", 1).reference_gradient(x1[:, :4], x2[:, :4], None,
                                                                        np.zeros((2, 4)), "weight")
