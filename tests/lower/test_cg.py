"""The Clebsch-Gordan lowering: stages per path and the coupling variants."""

import pytest
from tvm import s_tir

import tpc
from tpc import TensorProduct
from tpc.lower import lower_cg


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
