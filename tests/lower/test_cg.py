"""The Clebsch-Gordan lowering: stages per path and the coupling variants."""

import numpy as np
import pytest
from tvm import s_tir

import tpc
from tpc import TensorProduct
from tpc.lower import lower_cg
from tpc.schedule import cpu
from tpc.verify import random_inputs, relative_error, tolerance


def test_unknown_coupling_is_refused():
    with pytest.raises(ValueError, match="coupling must be one of"):
        lower_cg(tpc.presets.get("fc-small").tp, coupling="x1_first")


def test_x2_first_adds_a_factor_stage_only_where_x1_channels_reuse_it():
    tp = TensorProduct("4x1o + 1x2e", "4x1o", "4x1e + 4x0e + 4x2e + 2x2o",
                       [(0, 0, 0, "uvu", True), (0, 0, 1, "uvw", True), (0, 0, 2, "uuu", False),
                        (1, 0, 3, "uvw", True)])
    direct = lower_cg(tp, "float64")
    factored = lower_cg(tp, "float64", coupling="x2_first")
    assert [path.factor for path in direct.paths] == [None] * 4
    # uuu has no x2 channel to share; a single x1 channel gains nothing from the factor.
    assert [path.factor for path in factored.paths] == ["a0", "a1", None, None]
    schedule = s_tir.Schedule(factored.func)
    assert all(schedule.get_sblock(name) is not None for name in ("a0", "a1"))


def test_in_place_has_a_stage_per_output_block_and_zeros_blocks_without_paths():
    tp = TensorProduct("4x1o + 1x2e", "4x1o", "4x1e + 4x0e + 1x3o + 2x2o",
                       [(0, 0, 0, "uvu", True), (0, 0, 0, "uvw", True), (0, 0, 1, "uuu", False),
                        (1, 0, 3, "uvw", True)])
    lowered = lower_cg(tp, "float64", in_place=True)
    assert [(block.stage, block.components) for block in lowered.blocks] == [
        ("out0", 3), ("out1", 1), ("out2", 7), ("out3", 5)]
    assert [param.name for param in lowered.func.params] == ["x1", "x2", "weight", "out"]
    kernel = tpc.compile(tp, dtype="float64", schedule={"in_place": True, "batch_tile": 2})
    x1, x2, weight = random_inputs(tp, 5, np.random.default_rng(1), "float64")
    expected = tp.reference(x1, x2, weight)
    result = kernel(x1, x2, weight)
    np.testing.assert_array_equal(result[:, 16:23], 0.0)  # 1x3o: no path writes it
    assert relative_error(result, expected) < tolerance("float64")


def test_a_schedule_refuses_a_product_lowered_the_other_way():
    tp = tpc.presets.get("fc-small").tp
    with pytest.raises(ValueError, match="in_place is True but the product was lowered without"):
        cpu.apply(lower_cg(tp), {"in_place": True})
