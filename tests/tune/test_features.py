"""TIR features of scheduled products: fixed length, finite, sensitive to the knobs."""

import math

import numpy as np
import pytest

import tpc
from tpc.lower.cg import lower_cg
from tpc.ops import WRT, Gradient, make_op
from tpc.schedule import apply_schedule, tuning_space
from tpc.targets import resolve_target
from tpc.tune.features import PER_STORE_LENGTH, TIR_FEATURE_LENGTH, TirFeaturizer, op_descriptors, tir_features

HOST = resolve_target("host").tvm_target()
FC_TP = tpc.presets.get("fc-small").tp
FC = lower_cg(FC_TP, "float32")
MACE = lower_cg(tpc.presets.get("mace-small-l2").tp, "float32")
FLOAT_MUL = 2  # column of the per-store float multiplications, TVM's log2(1 + count)


def features(lowered, config, batch=1024, family="cpu", target=HOST):
    config = {"in_place": bool(lowered.blocks), **config}  # as the product was lowered
    return np.array(tir_features(apply_schedule(lowered, family, config), target, batch=batch))


def stores(vector):
    return round(2 ** vector[-1] - 1)


def test_fixed_length_and_finite_across_ops_schedules_and_targets():
    cases = [
        (FC, {}, "cpu", HOST), (FC, {"batch_tile": 1, "reduction_order": "inner"}, "cpu", HOST),
        (MACE, {}, "cpu", HOST), (MACE, {"materialize": "all", "channel_unroll": 4}, "cpu", HOST),
        (FC, {}, "cuda", resolve_target("cuda").tvm_target()),
    ]
    vectors = [features(lowered, config, family=family, target=target) for lowered, config, family, target in cases]
    vectors.append(np.array(tir_features(apply_schedule(FC, "cpu", {"in_place": False}), HOST)))
    assert PER_STORE_LENGTH == 164 and TIR_FEATURE_LENGTH == 2 * 164 + 1
    assert all(v.shape == (TIR_FEATURE_LENGTH,) and np.isfinite(v).all() and v.any() for v in vectors)
    assert stores(vectors[2]) != stores(vectors[3])  # materializing every stage adds stores


@pytest.mark.parametrize("batch", [None, 1024])
@pytest.mark.parametrize("knob, values", [("batch_tile", (1, 64)), ("reduction_order", ("outer", "inner"))])
def test_knobs_change_the_features(knob, values, batch):
    first, second = (features(FC, {knob: value}, batch=batch) for value in values)
    assert not np.allclose(first, second)


def test_binding_the_batch_matches_lowering_with_a_static_batch():
    for config in ({}, {"batch_tile": 64, "reduction_order": "inner"}):
        bound = features(FC, config, batch=1000)
        static = features(lower_cg(FC_TP, "float32", batch=1000), config, batch=None)
        np.testing.assert_allclose(bound, static)


def test_total_work_is_independent_of_the_tile_once_the_batch_is_bound():
    per_tile = [features(FC, {"batch_tile": tile}, batch=None)[FLOAT_MUL] for tile in (1, 64)]
    whole = [features(FC, {"batch_tile": tile}, batch=1024)[FLOAT_MUL] for tile in (1, 64)]
    assert per_tile[1] - per_tile[0] == pytest.approx(math.log2(64), abs=0.01)
    assert whole[0] == pytest.approx(whole[1]) and whole[0] == pytest.approx(per_tile[0] + math.log2(1024), abs=0.01)


def test_gradient_ops_have_features_of_their_own():
    tp = tpc.presets.get("mace-small-l2").tp
    for wrt, knobs in (("x2", {"batch_tile": 64}), ("weight", {"inline_z": True})):
        space = tuning_space("cpu", ["cg"], wrt)
        featurize = TirFeaturizer(Gradient(tp, wrt), resolve_target("host"), "float32", 1024, space)
        default, other = (np.array(featurize(space.join("cg", config))) for config in ({}, knobs))
        assert default.shape == (TIR_FEATURE_LENGTH,) and np.isfinite(default).all()
        assert not np.allclose(default, other)
    descriptors = [op_descriptors(make_op(tp, wrt), 1024, "float32") for wrt in (None, *WRT)]
    assert len({len(row) for row in descriptors}) == 1 and len({tuple(row) for row in descriptors}) == 4
