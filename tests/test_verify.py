"""tpc.verify: the tolerance table, the error measure, random arguments per op and ``check``."""

import numpy as np
import pytest

import tpc
from tpc.dtypes import DTYPES
from tpc.ops import FUSIONS, Fused, Gradient, Product
from tpc.verify import (
    DIRECTIONS,
    MEAN_DEGREE,
    TOLERANCES,
    CheckResult,
    check,
    direction_of,
    random_arguments,
    random_inputs,
    relative_error,
    tolerance,
)

SHARED = tpc.FullyConnectedTensorProduct("2x0e+1x1o", "0e+1o", "1x0e+2x1o")
PER_SAMPLE = tpc.ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", 1)
UNWEIGHTED = tpc.GauntTensorProduct("0e+1o", "0e+1o", 1)


def test_the_table_has_one_tolerance_per_dtype_and_direction():
    assert set(TOLERANCES) == {(dtype, direction) for dtype in DTYPES for direction in DIRECTIONS}
    for direction in DIRECTIONS:
        assert tolerance("float64", direction) < tolerance("float32", direction)
        assert tolerance("float32", direction) == TOLERANCES[("float32", direction)]
    assert tolerance("float32") == 1e-4 and tolerance("float64") == 1e-10
    assert tolerance(np.float64, "gradient") == tolerance(np.dtype("float64"), "gradient") == 1e-10


def test_a_tolerance_for_an_unknown_dtype_or_direction_is_an_error():
    with pytest.raises(ValueError, match="dtype must be one of"):
        tolerance("float16")
    with pytest.raises(ValueError, match="direction must be one of"):
        tolerance("float32", "backward")
    with pytest.raises(ValueError, match="direction must be one of"):
        tolerance("float64", "Gradient")


def test_relative_error_is_the_largest_difference_over_the_largest_expected_value():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == pytest.approx(0.2)
    # scaled by the largest |expected| as a whole, not element by element
    assert relative_error([[1e-3, 100.0]], [[2e-3, 100.0]]) == pytest.approx(1e-5)
    assert relative_error([-3.0, 1.0], [-2.0, 1.0]) == pytest.approx(0.5)
    assert relative_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert relative_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert relative_error([1e-3], [0.0]) > 1e100  # anything against an all-zero reference is wrong
    assert np.isnan(relative_error([np.nan, 1.0], [1.0, 1.0]))
    assert relative_error(np.float32([1.0, 2.0]), [1.0, 2.0]) == 0.0


def test_random_inputs_have_the_products_shapes_and_dtype(rng):
    x1, x2, weight = random_inputs(SHARED, 5, rng, np.float32)
    assert (x1.shape, x2.shape, weight.shape) == ((5, SHARED.irreps_in1.dim), (5, 4), (SHARED.weight_numel,))
    assert x1.dtype == x2.dtype == weight.dtype == np.float32
    assert random_inputs(PER_SAMPLE, 5, rng)[2].shape == (5, PER_SAMPLE.weight_numel)
    assert random_inputs(UNWEIGHTED, 5, rng)[2] is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_arguments_of_products_and_gradients(rng, dtype):
    for tp in (SHARED, PER_SAMPLE, UNWEIGHTED):
        arguments = random_arguments(Product(tp), 7, rng, dtype)
        assert set(arguments) == {"x1", "x2", "weight"}
        assert arguments["x1"].shape == (7, tp.irreps_in1.dim) and arguments["x2"].shape == (7, tp.irreps_in2.dim)
        assert arguments["x1"].dtype == arguments["x2"].dtype == np.dtype(dtype)
        if tp is UNWEIGHTED:
            assert arguments["weight"] is None
        else:
            shape = (tp.weight_numel,) if tp.shared_weights else (7, tp.weight_numel)
            assert arguments["weight"].shape == shape and arguments["weight"].dtype == np.dtype(dtype)
        gradient = random_arguments(Gradient(tp, "x2"), 7, rng, dtype)
        assert set(gradient) == {"x1", "x2", "weight", "grad"}
        assert gradient["grad"].shape == (7, tp.irreps_out.dim) and gradient["grad"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_random_arguments_of_fused_ops_are_a_valid_graph(rng, fusion):
    op = Fused(PER_SAMPLE, fusion)
    edges, nodes = 90, 7
    arguments = random_arguments(op, edges, rng, "float32", nodes)
    assert set(arguments) == {"x1", "x2", "weight"} | ({"senders"} if op.gather else set()) \
        | ({"offsets"} if op.scatter else set())
    assert arguments["x1"].shape == ((nodes if op.gather else edges), PER_SAMPLE.irreps_in1.dim)
    assert arguments["x2"].shape == (edges, PER_SAMPLE.irreps_in2.dim)
    assert arguments["weight"].shape == (edges, PER_SAMPLE.weight_numel)
    if op.gather:
        senders = arguments["senders"]
        assert senders.dtype == np.int64 and senders.shape == (edges,)
        assert senders.min() >= 0 and senders.max() < nodes
    if op.scatter:
        offsets = arguments["offsets"]
        assert offsets.dtype == np.int64 and offsets.shape == (nodes + 1,)
        assert offsets[0] == 0 and offsets[-1] == edges and np.all(np.diff(offsets) >= 0)
    result = op.reference(**arguments)
    assert result.shape == ((nodes if op.scatter else edges), PER_SAMPLE.irreps_out.dim)


def test_fused_ops_default_to_one_node_per_mean_degree_edges(rng):
    op = Fused(PER_SAMPLE, "gather+scatter")
    arguments = random_arguments(op, 4 * MEAN_DEGREE, rng)
    assert arguments["x1"].shape[0] == 4 and arguments["offsets"].shape == (5,)
    assert random_arguments(op, 3, rng)["x1"].shape[0] == 1


def test_random_arguments_are_seeded():
    op = Gradient(SHARED, "weight")
    first, second = (random_arguments(op, 4, np.random.default_rng(9)) for _ in range(2))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def off_by(op, factor):
    """A function computing ``op`` wrong by ``factor`` (1.03: three percent too large)."""
    def function(**arguments):
        result = op.reference(**arguments)
        return result * factor
    return function


OPS = [Product(SHARED), Product(UNWEIGHTED), Gradient(SHARED, "x1"), Gradient(PER_SAMPLE, "weight"),
       Fused(PER_SAMPLE, "gather"), Fused(PER_SAMPLE, "scatter"), Fused(PER_SAMPLE, "gather+scatter")]


@pytest.mark.parametrize("op", OPS, ids=lambda op: f"{op.kind}-{getattr(op, 'wrt', getattr(op, 'fusion', ''))}")
def test_check_passes_the_reference_and_fails_a_result_off_by_a_few_percent(op):
    passed = check(op, op.reference, batch=40, nodes=5)
    assert passed.ok and bool(passed) and passed.error < 1e-14
    assert passed.tolerance == tolerance("float64", direction_of(op))
    assert "within" in str(passed)
    for dtype in ("float64", "float32"):
        failed = check(op, off_by(op, 1.03), batch=40, dtype=dtype, nodes=5)
        assert not failed and failed.error == pytest.approx(0.03) and "beyond" in str(failed)


def test_the_dtype_picks_the_tolerance():
    """One part in a million is float32 rounding, but wrong for a float64 result."""
    op = Product(SHARED)
    assert check(op, off_by(op, 1 + 1e-6), dtype="float32")
    result = check(op, off_by(op, 1 + 1e-6), dtype="float64")
    assert not result and result.error == pytest.approx(1e-6, rel=1e-3)


def test_check_uses_the_direction_of_the_op_unless_told():
    assert direction_of(Gradient(SHARED, "x2")) == "gradient"
    assert direction_of(Product(SHARED)) == direction_of(Fused(SHARED, "gather")) == "forward"
    op = Product(SHARED)
    assert check(op, op.reference, direction="second derivative").tolerance == tolerance("float64", "second derivative")
    with pytest.raises(ValueError, match="direction must be one of"):
        check(op, op.reference, direction="sideways")


def test_a_nan_result_fails():
    op = Product(SHARED)
    assert not CheckResult(float("nan"), 1e-4).ok
    assert not check(op, off_by(op, np.nan))


@pytest.mark.parametrize("op", [Product(SHARED), Gradient(PER_SAMPLE, "x1"), Fused(PER_SAMPLE, "gather+scatter")],
                         ids=lambda op: op.kind)
def test_compiled_kernels_pass_their_check(op):
    for dtype in ("float64", "float32"):
        kernel = tpc.compile(op, dtype=dtype)
        assert check(op, kernel, batch=60, dtype=dtype, nodes=4), dtype
