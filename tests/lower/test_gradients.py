"""Gradient kernels against e3nn's autograd, in float64, for every mode."""

import itertools

import numpy as np
import pytest

import tpc
import tpc.runtime
from tpc.build import compile_gradient
from tpc.lower.gradients import lower_gradient
from tpc.schedule import search_space
from tpc.testing import e3nn_gradients, foundation_cases, gradient_problem
from tpc.verify import random_inputs, relative_error, tolerance

CASES = foundation_cases(per_mode=2, mixed=2)
GRADIENT_TOLERANCE = tolerance("float64", "gradient")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gradients_equal_e3nn_autograd(case):
    arguments, expected = gradient_problem(case.tp, 11, 3)
    for wrt, value in expected.items():
        actual = compile_gradient(case.tp, wrt, dtype="float64")(*arguments)
        assert actual.shape == value.shape
        assert relative_error(actual, value) < GRADIENT_TOLERANCE, wrt


def test_x2_first_coupling_gives_the_same_gradients():
    tp = tpc.presets.get("fc-small").tp
    rng = np.random.default_rng(4)
    x1, x2, weight = random_inputs(tp, 3, rng)
    grad = rng.standard_normal((3, tp.irreps_out.dim))
    expected = e3nn_gradients(tp, x1, x2, weight, grad)
    for wrt in ("x1", "x2"):
        lowered = lower_gradient(tp, wrt, "float64", coupling="x2_first")
        assert any(path.factor for path in lowered.paths)
        factored = compile_gradient(tp, wrt, dtype="float64", schedule={"coupling": "x2_first"})
        assert relative_error(factored(x1, x2, weight, grad), expected[wrt]) < GRADIENT_TOLERANCE


@pytest.mark.parametrize("case", CASES[::3], ids=lambda case: case.name)
def test_output_blocks_written_in_place_give_the_same_gradients(case):
    arguments, expected = gradient_problem(case.tp, 9, 6)
    for wrt in ("x1", "x2"):
        in_place = compile_gradient(case.tp, wrt, dtype="float64", schedule={"in_place": True, "batch_tile": 4})
        assert relative_error(in_place(*arguments), expected[wrt]) < GRADIENT_TOLERANCE, wrt


def test_the_weight_gradient_is_not_written_in_place():
    with pytest.raises(ValueError, match="in_place applies to the x1 and x2 gradients"):
        lower_gradient(tpc.presets.get("fc-small").tp, "weight", in_place=True)


def test_shared_weight_gradients_are_summed_chunk_by_chunk(monkeypatch):
    tp = tpc.FullyConnectedTensorProduct("3x0e+2x1o", "2x0e+1x1o", "2x0e+3x1o")
    monkeypatch.setattr(tpc.runtime, "CHUNK_VALUES", 1)  # chunks of MIN_CHUNK samples
    rng = np.random.default_rng(5)
    x1, x2, weight = random_inputs(tp, 2 * tpc.runtime.MIN_CHUNK + 5, rng)
    grad = rng.standard_normal((x1.shape[0], tp.irreps_out.dim))
    actual = compile_gradient(tp, "weight", dtype="float64")(x1, x2, weight, grad)
    assert relative_error(actual, e3nn_gradients(tp, x1, x2, weight, grad)["weight"]) < GRADIENT_TOLERANCE


def test_float32_gradients_and_a_zero_batch():
    tp = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)
    rng = np.random.default_rng(6)
    x1, x2, weight = random_inputs(tp, 7, rng, np.float32)
    grad = rng.standard_normal((7, tp.irreps_out.dim)).astype(np.float32)
    as64 = [a.astype(np.float64) for a in (x1, x2, weight, grad)]
    expected = e3nn_gradients(tp, *as64)
    kernel = compile_gradient(tp, "x2")
    assert relative_error(kernel(x1, x2, weight, grad), expected["x2"]) < tolerance("float32", "gradient")
    assert kernel(x1[:0], x2[:0], weight[:0], grad[:0]).shape == (0, tp.irreps_in2.dim)


def test_bad_requests_are_named():
    tp = tpc.GauntTensorProduct("0e+1o", "0e+1o", 1)
    with pytest.raises(ValueError, match="no weights"):
        lower_gradient(tp, "weight")
    with pytest.raises(ValueError, match="wrt must name arguments among"):
        compile_gradient(tp, "x3")
    with pytest.raises(ValueError, match="CPU targets"):
        compile_gradient(tp, "x1", target="cuda")
    with pytest.raises(ValueError, match=r"gradient with respect to x1 is computed with \['cg'\] only"):
        compile_gradient(tp, "x1", schedule={"algorithm": "grid", "config": {}})
    kernel = compile_gradient(tp, "x1", dtype="float64")
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match="grad must have shape"):
        kernel(x, x, None, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="compiled for float64"):
        kernel(x.astype(np.float32), x.astype(np.float32), None, np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("name", ["mace-small-l2", "fc-small"])
def test_every_weight_gradient_knob_setting_is_correct(name):
    """uvu (z read once per weight) and uvw (z reused across output channels), shared and per-sample weights."""
    tp = tpc.presets.get(name).tp
    rng = np.random.default_rng(7)
    x1, x2, weight = random_inputs(tp, 13, rng, np.float32)
    grad = rng.standard_normal((13, tp.irreps_out.dim)).astype(np.float32)
    expected = tp.reference_gradient(x1, x2, weight, grad, "weight")
    space = search_space("cpu", "cg", "weight")
    for tile, inline, unroll in itertools.product((1, 8), (False, True), (False, True)):
        config = {"batch_tile": tile, "inline_z": inline, "unroll_components": unroll}
        kernel = compile_gradient(tp, "weight", schedule=config)
        assert kernel.schedule == tpc.runtime.ScheduleChoice("cg", space.validate(config), "explicit")
        assert relative_error(kernel(x1, x2, weight, grad), expected) < tolerance("float32", "gradient"), config


def test_the_weight_gradient_knobs_change_the_code():
    lowered = lower_gradient(tpc.presets.get("mace-small-l2").tp, "weight")
    texts = {str(tpc.schedule.apply_schedule(lowered, "cpu", config).mod)
             for config in ({}, {"inline_z": True}, {"unroll_components": False}, {"batch_tile": 2})}
    assert len(texts) == 4
    with pytest.raises(ValueError, match="unknown cpu-weight-gradient schedule knob"):
        compile_gradient(tpc.presets.get("fc-small").tp, "weight", schedule={"materialize": "all"})


@pytest.mark.parametrize("case", CASES[::2], ids=lambda case: case.name)
def test_several_gradients_in_one_pass_equal_e3nn_autograd(case):
    arguments, expected = gradient_problem(case.tp, 11, 3)
    names = [name for name in ("x1", "x2", "weight") if name in expected]
    for count in range(2, len(names) + 1):
        for chosen in itertools.combinations(names, count):
            actual = compile_gradient(case.tp, "+".join(chosen), dtype="float64")(*arguments)
            assert isinstance(actual, tuple) and len(actual) == count
            for name, value in zip(chosen, actual):
                assert value.shape == expected[name].shape
                assert relative_error(value, expected[name]) < GRADIENT_TOLERANCE, (chosen, name)


def test_mace_convolution_x2_gradient_sums_its_channels_first():
    """x2 of multiplicity 1 (MACE's edge harmonics): each path's channel sum comes before the
    coefficients, except where the weight gradient needs that path's coupling."""
    tp = tpc.presets.get("mace-small-l2").tp
    joint = lower_gradient(tp, "x1+x2+weight")
    assert len(joint.channel_sums) == len(tp.instructions)
    assert joint.outputs[:2] == ("out_x1", "out_x2") and len(joint.outputs) == 2 + len(tp.instructions)
    assert not lower_gradient(tp, "x2+weight").channel_sums


JOINT_CASES = {"mace-small-l2": tpc.presets.get("mace-small-l2").tp,
               "uvw-shared": tpc.FullyConnectedTensorProduct("3x0e+2x1o", "2x0e+1x1o", "2x0e+3x1o")}


@pytest.mark.parametrize("name", JOINT_CASES)
def test_every_joint_gradient_knob_setting_is_correct(name, monkeypatch):
    """Shared weights (uvw-shared) are summed chunk by chunk (here 3 chunks) as for the weight gradient alone."""
    tp = JOINT_CASES[name]
    monkeypatch.setattr(tpc.runtime, "CHUNK_VALUES", 1)  # chunks of MIN_CHUNK samples
    rng = np.random.default_rng(8)
    batch = 2 * tpc.runtime.MIN_CHUNK + 5
    x1, x2, weight = random_inputs(tp, batch, rng, np.float32)
    grad = rng.standard_normal((batch, tp.irreps_out.dim)).astype(np.float32)
    expected = [tp.reference_gradient(x1, x2, weight, grad, wrt) for wrt in ("x1", "x2", "weight")]
    space = search_space("cpu", "cg", "x1+x2+weight")
    changes = [{}, {"batch_tile": 1}, {"materialize": "all"}, {"unroll_components": False}, {"channel_unroll": 2},
               {"reduction_order": "inner"}, {"coupling": "x2_first", "batch_tile": 4}]
    for change in changes:
        kernel = compile_gradient(tp, "x1+x2+weight", schedule=change)
        assert kernel.schedule == tpc.runtime.ScheduleChoice("cg", space.validate(change), "explicit")
        for actual, value in zip(kernel(x1, x2, weight, grad), expected):
            assert relative_error(actual, value) < tolerance("float32", "gradient"), change
    with pytest.raises(ValueError, match="unknown cpu-joint-gradient schedule knob"):
        compile_gradient(tp, "x1+x2", schedule={"in_place": True})
    with pytest.raises(ValueError, match="one per argument"):
        compile_gradient(tp, "x1+x2")(x1, x2, weight, grad, out=(np.empty_like(x1),))
