"""The float64 gradient reference against e3nn's autograd, and the identity of gradient ops."""

import numpy as np
import pytest

import tpc
from tpc.ops import WRT, op_fingerprint
from tpc.testing import foundation_cases, gradient_problem, random_inputs, relative_error

CASES = foundation_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_reference_gradient_equals_e3nn_autograd(case):
    arguments, expected = gradient_problem(case.tp, 9, 8)
    for wrt, value in expected.items():
        actual = case.tp.reference_gradient(*arguments, wrt)
        assert actual.shape == value.shape and actual.dtype == np.float64
        assert relative_error(actual, value) < 1e-10, wrt


def test_gradient_ops_have_fingerprints_of_their_own():
    tp = tpc.presets.get("fc-small").tp
    prints = [op_fingerprint(tp)] + [op_fingerprint(tp, wrt) for wrt in WRT]
    assert prints[0] == tp.fingerprint and len(set(prints)) == 4
    assert op_fingerprint(tp, "x2") == op_fingerprint(tpc.presets.get("fc-small").tp, "x2")
    assert op_fingerprint(tp, "x2") != op_fingerprint(tpc.presets.get("mace-small-l2").tp, "x2")


def test_bad_gradient_requests_are_named():
    tp = tpc.presets.get("fc-small").tp
    x1, x2, weight = random_inputs(tp, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="wrt must be one of"):
        op_fingerprint(tp, "out")
    with pytest.raises(ValueError, match="grad must have shape"):
        tp.reference_gradient(x1, x2, weight, np.zeros((3, tp.irreps_out.dim)), "x1")
    with pytest.raises(ValueError, match="no weights"):
        tpc.GauntTensorProduct("0e+1o", "0e+1o", 1).reference_gradient(x1[:, :4], x2[:, :4], None,
                                                                        np.zeros((2, 4)), "weight")
