"""Compiled symmetric contractions (forward, x gradient, weights' gradient per node, and each
along a tangent) against the op's float64 reference, and the kernel's checks."""

import numpy as np
import pytest

import tpc
from tpc.ops import Contraction, op_from_dict
from tpc.verify import check, random_arguments

SPECS = {"l2-correlation-3": tpc.SymmetricContraction("3x0e+3x1o+3x2e", "3x0e+3x1o", 3, 4),
         "l1-correlation-2-to-2e": tpc.SymmetricContraction("20x0e+20x1o", "20x0e+20x1o+20x2e", 2, 1)}


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("wrt", ["", "x", "weight"])
@pytest.mark.parametrize("tangent", [False, True])
def test_kernels_equal_the_reference(name, wrt, tangent):
    op = Contraction(SPECS[name], wrt, tangent)
    assert op_from_dict(op.to_dict()) == op
    assert Contraction.from_schedule_key(op.spec, op.schedule_key) == op
    for dtype in ("float64", "float32"):
        result = check(op, tpc.compile(op, dtype=dtype), batch=11, dtype=dtype)
        assert result, (dtype, str(result))


def test_bad_arguments_are_named():
    op = Contraction(SPECS["l1-correlation-2-to-2e"], "x")
    kernel = tpc.compile(op, dtype="float64")
    arguments = random_arguments(op, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"elements has values outside \[0, 1\)"):
        kernel(**{**arguments, "elements": arguments["elements"] + 1})
    with pytest.raises(ValueError, match="x must have shape"):
        kernel(**{**arguments, "x": arguments["x"][:, :3].copy()})
    with pytest.raises(ValueError, match="weights must be 6 arrays"):
        kernel(**{**arguments, "weights": arguments["weights"][:2]})
    with pytest.raises(ValueError, match="grad must have shape"):
        kernel(**{**arguments, "grad": arguments["grad"][:, :4].copy()})
    with pytest.raises(ValueError, match="wrt is '' \\(the forward\\), 'x' or 'weight'"):
        Contraction(SPECS["l1-correlation-2-to-2e"], "y")
    tangent_op = Contraction(op.spec, "x", tangent=True)
    with pytest.raises(ValueError, match="tangent must have the shape of x"):
        tpc.compile(tangent_op, dtype="float64")(**arguments, tangent=arguments["x"][:4])
    with pytest.raises(ValueError, match="not the schedule key of a symmetric contraction op"):
        Contraction.from_schedule_key(op.spec, "symmetric-contraction:x:weight")


def test_sums_are_balanced_trees():
    """An x gradient at l <= 3, correlation 3 sums thousands of terms; as a chain of additions it
    crashed TVM's recursive passes (a segmentation fault building mace-product-0e1o2e's)."""
    from tvm import tirx

    from tpc.lower.contraction import _sum

    def depth(expr) -> int:
        return 1 + max(depth(expr.a), depth(expr.b)) if isinstance(expr, tirx.Add) else 0

    terms = [tirx.Var(f"v{i}", "float32") for i in range(5000)]
    total = _sum(terms)
    assert depth(total) == 13  # ceil(log2(5000))
    assert str(total).count("v") == 5000
