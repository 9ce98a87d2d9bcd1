"""The tuner's space over algorithms: candidates, neighbours, encodings that line up."""

import numpy as np
import pytest

from tpc.schedule import scheduled_algorithms, search_space, tuning_space


def test_every_family_schedules_every_algorithm():
    assert scheduled_algorithms("cpu") == scheduled_algorithms("cuda") == ("cg", "fourier", "grid")
    with pytest.raises(ValueError, match="no cpu schedule for the 'spectral' algorithm"):
        search_space("cpu", "spectral")
    with pytest.raises(ValueError, match="unknown target family 'tpu'"):
        scheduled_algorithms("tpu")


def test_samples_and_neighbours_stay_valid_and_visit_every_algorithm():
    space = tuning_space("cpu", ["cg", "fourier", "grid"])
    rng = np.random.default_rng(0)
    seen, switched = set(), 0
    candidate = space.default()
    assert candidate["algorithm"] == "cg" and space.validate(candidate) == candidate
    for _ in range(300):
        neighbour = space.neighbour(candidate, rng)
        assert space.validate(neighbour) == neighbour
        switched += neighbour["algorithm"] != candidate["algorithm"]
        seen.add(space.sample(rng)["algorithm"])
        candidate = neighbour
    assert seen == {"cg", "fourier", "grid"} and 0 < switched < 150
    assert space.size == sum(search_space("cpu", name).size for name in ("cg", "fourier", "grid"))


def test_encodings_of_all_ops_of_a_family_line_up():
    """A cost model trains on candidates of every op of a target: same length, same columns."""
    cg_only = tuning_space("cpu", ["cg"])
    gaunt = tuning_space("cpu", ["cg", "grid", "fourier"])
    default = cg_only.default()
    assert cg_only.encode(default) == gaunt.encode(default)
    grid = gaunt.join("grid", {})
    assert len(gaunt.encode(grid)) == len(gaunt.encode(default))
    assert gaunt.encode(grid)[:3] == [0.0, 0.0, 1.0] and cg_only.signature == gaunt.signature


def test_algorithms_outside_the_searched_ones_are_refused():
    space = tuning_space("cpu", ["cg"])
    assert space.algorithms == ("cg",)
    with pytest.raises(ValueError, match="'grid' is not searched here"):
        space.join("grid", {})
    with pytest.raises(ValueError, match="knob 'batch_tile' = 3"):
        space.validate({"algorithm": "cg", "batch_tile": 3})
    assert tuning_space("cuda", ["grid", "spectral"]).algorithms == ("grid",)


def test_an_op_with_crowded_output_blocks_keeps_in_place_off_by_default():
    """In place, inlining many paths into one output block takes TVM minutes (tpc.schedule.MAX_IN_PLACE_PATHS)."""
    import tpc
    from tpc.ops import Fused, Gradient, Product
    from tpc.schedule import crowded_outputs, default_config, search_space, tuning_space, validate_config

    sparse, crowded = (tpc.presets.get(name).tp for name in ("mace-l2", "gaunt-L3"))
    assert not crowded_outputs(Product(sparse)) and crowded_outputs(Product(crowded))
    for family in ("cpu", "cuda"):
        assert default_config(family, "cg", None, Product(sparse))["in_place"]
        assert not default_config(family, "cg", None, Product(crowded))["in_place"]
        assert search_space(family, "cg", None, Product(crowded)).version == search_space(family).version
    assert not default_config("cpu", "cg", "gather", Fused(crowded, "gather"))["in_place"]
    assert not default_config("cpu", "cg", "x1", Gradient(sparse, "x1"))["in_place"]  # gradients: off anyway
    assert not tuning_space("cpu", ["cg"], None, Product(crowded)).default()["in_place"]
    assert not validate_config("cpu", {"batch_tile": 4}, "cg", None, Product(crowded))["in_place"]
    assert validate_config("cpu", {"in_place": True}, "cg", None, Product(crowded))["in_place"]
