import itertools

import numpy as np
import pytest

import tpc
from tpc.schedule import search_space, tuning_space
from tpc.tune.cost_model import CostModel
from tpc.tune.features import TirFeaturizer, candidate_features, op_descriptors
from tpc.tune.search import ModelSearch, RandomSearch

SPACE = search_space("cpu")


def synthetic_seconds(config):
    """A made-up objective for the strategies: small tiles and unrolled components are fast."""
    return 1e-3 * (1 + abs(np.log2(config["batch_tile"]) - 1) + (not config["unroll_components"])
                   + 0.5 * (config["materialize"] == "all") + 0.1 * config["channel_unroll"])


def test_space_sampling_neighbours_and_encoding():
    rng = np.random.default_rng(0)
    default = SPACE.default()
    # 7 tiles with direct coupling, the 5 tiles up to 16 with x2_first; 2 * 2 * 4 * 2 * 2 for the other knobs.
    assert SPACE.validate(default) == default and SPACE.size == (7 + 5) * 2 * 2 * 4 * 2 * 2
    for _ in range(50):
        config = SPACE.sample(rng)
        neighbour = SPACE.neighbour(config, rng)
        assert SPACE.validate(neighbour) == neighbour
        assert sum(neighbour[k] != config[k] for k in config) == 1
        assert all(0 <= x <= 1 for x in SPACE.encode(config))
    assert SPACE.key({"b": 1, "a": 2}) == SPACE.key({"a": 2, "b": 1})


def test_variations_move_each_knob_alone_within_the_rules():
    rng = np.random.default_rng(0)
    tiled = SPACE.validate({"coupling": "x2_first", "batch_tile": 16})
    varied = SPACE.variations(tiled, rng)
    assert sorted(next(k for k in c if c[k] != tiled[k]) for c in varied) == sorted(k.name for k in SPACE.knobs)
    assert all(SPACE.is_valid(c) and sum(c[k] != tiled[k] for k in c) == 1 for c in varied)
    gaunt = tuning_space("cpu", ["cg", "grid"])
    grid = gaunt.variations(gaunt.join("grid", {}), rng)
    assert len(grid) == len(gaunt.space_of("grid").knobs) and all(c["algorithm"] == "grid" for c in grid)


def test_moves_are_the_whole_one_knob_neighbourhood():
    tiled = SPACE.validate({"coupling": "x2_first", "batch_tile": 16})
    moves = SPACE.moves(tiled)
    assert all(SPACE.is_valid(c) and sum(c[k] != tiled[k] for k in c) == 1 for c in moves)
    # Every other value of every knob, except the tiles above 16 that x2_first forbids.
    assert len({SPACE.key(c) for c in moves}) == len(moves) == sum(len(k.values) - 1 for k in SPACE.knobs) - 2
    gaunt = tuning_space("cpu", ["cg", "grid"])
    grid = gaunt.join("grid", {})
    assert {gaunt.key(c) for c in gaunt.moves(grid)} == \
        {gaunt.key({"algorithm": "grid", **c}) for c in gaunt.space_of("grid").moves(gaunt.split(grid)[1])}


def test_rules_reject_combinations_and_sampling_respects_them():
    with pytest.raises(ValueError, match="coupling 'x2_first' needs batch_tile <= 16"):
        SPACE.validate({"coupling": "x2_first", "batch_tile": 32})
    rng = np.random.default_rng(2)
    config = SPACE.validate({"coupling": "x2_first", "batch_tile": 16})
    for _ in range(200):
        assert SPACE.is_valid(SPACE.sample(rng))
        config = SPACE.neighbour(config, rng)
        assert SPACE.is_valid(config)


def test_random_search_never_repeats_and_exhausts_the_space():
    search = RandomSearch(SPACE, seed=1)
    measured: set[str] = set()
    while True:
        batch = search.propose(16, measured)
        if not batch:
            break
        keys = {SPACE.key(c) for c in batch}
        assert not keys & measured and len(keys) == len(batch)
        measured |= keys
    assert len(measured) == SPACE.size


def test_model_search_finds_the_optimum_of_a_learnable_objective():
    descriptors = op_descriptors(tpc.Product(tpc.presets.get("fc-small").tp), 64, "float32")
    search = ModelSearch(SPACE, CostModel(), "op", descriptors, seed=0)
    first = search.propose(8, {SPACE.key(SPACE.default())})
    assert [sum(c[k] != SPACE.default()[k] for k in c) for c in first[:len(SPACE.knobs)]] == [1] * len(SPACE.knobs)
    measured: set[str] = set()
    best = []
    for _ in range(5):
        configs = search.propose(8, measured)
        assert not {SPACE.key(c) for c in configs} & measured
        measured |= {SPACE.key(c) for c in configs}
        search.observe(configs, [synthetic_seconds(c) for c in configs])
        best.append(min(s for _, s in search.measured))
    optimum = min(synthetic_seconds(dict(zip([k.name for k in SPACE.knobs], values)))
                  for values in itertools.product(*[k.values for k in SPACE.knobs]))
    assert best[-1] == optimum


def test_model_search_first_moves_the_knobs_other_ops_gained_from():
    """With a prior: each knob's move the prior expects fastest, knobs by that gain, and second
    the gaining moves together (x2_first left out: the rules reject it at batch tile 32)."""
    descriptors = op_descriptors(tpc.Product(tpc.presets.get("fc-small").tp), 64, "float32")
    prior = {(None, "in_place", True, False): 0.3, (None, "batch_tile", 8, 32): 0.2,
             (None, "batch_tile", 8, 16): 0.1, (None, "coupling", "direct", "x2_first"): 0.1,
             (None, "unroll_components", True, False): 0.01, (None, "channel_unroll", 1, 2): -0.5}
    default = SPACE.default()
    for seed in range(3):
        search = ModelSearch(SPACE, CostModel(), "op", descriptors, seed=seed, prior=prior)
        first = search.propose(8, {SPACE.key(default)})
        changed = [{name: value for name, value in c.items() if value != default[name]} for c in first]
        assert changed[:4] == [{"in_place": False}, {"in_place": False, "batch_tile": 32}, {"batch_tile": 32},
                               {"coupling": "x2_first"}]
        rest = {name for c in changed[4:] for name in c}
        assert [len(c) for c in changed[4:]] == [1] * 4 and rest == {"materialize", "reduction_order",
                                                                       "channel_unroll", "unroll_components"}
        assert {"channel_unroll": 2} not in changed


def test_model_search_walks_the_neighbourhood_of_the_fastest():
    descriptors = op_descriptors(tpc.Product(tpc.presets.get("fc-small").tp), 64, "float32")
    search = ModelSearch(SPACE, CostModel(), "op", descriptors, seed=0, local=0.5)
    rng = np.random.default_rng(3)
    configs = [SPACE.sample(rng) for _ in range(12)]
    search.observe(configs, [synthetic_seconds(c) for c in configs])
    fastest = min(configs, key=synthetic_seconds)
    measured = {SPACE.key(c) for c in configs}
    neighbourhood = {SPACE.key(c) for c in SPACE.moves(fastest)}
    proposed = search.propose(8, measured)
    assert sum(SPACE.key(c) in neighbourhood for c in proposed[:4]) == 4
    # Once the fastest's neighbourhood is measured, the next fastest's is walked.
    measured |= neighbourhood
    runner_up = sorted(configs, key=synthetic_seconds)[1]
    around_runner_up = {SPACE.key(c) for c in SPACE.moves(runner_up)} - measured
    assert {SPACE.key(c) for c in search.propose(8, measured)[:4]} <= around_runner_up


def test_model_search_first_tries_the_moves_that_made_another_configuration_faster():
    """From the fastest configuration, the moves that gained elsewhere in this op (more than
    timing noise), largest gain first, before the model's picks."""
    descriptors = op_descriptors(tpc.Product(tpc.presets.get("fc-small").tp), 64, "float32")
    default = SPACE.default()
    seconds = {"channel_unroll": (8, 5e-3), "unroll_components": (False, 9e-3), "in_place": (False, 8e-3),
               "coupling": ("x2_first", 9.9e-3), "materialize": ("all", 12e-3)}
    configs = [default] + [{**default, name: value} for name, (value, _) in seconds.items()]
    for seed in range(3):
        search = ModelSearch(SPACE, CostModel(), "op", descriptors, seed=seed)
        search.observe(configs, [10e-3] + [s for _, s in seconds.values()])
        proposed = search.propose(8, {SPACE.key(c) for c in configs})
        fastest = {**default, "channel_unroll": 8}
        assert proposed[:2] == [{**fastest, "in_place": False}, {**fastest, "unroll_components": False}]
        assert {**fastest, "materialize": "all"} not in proposed[2:3]


def test_model_search_combines_the_moves_that_each_made_a_configuration_faster():
    """Knob effects that add up: the default's faster one-knob moves applied together, a move the
    rules reject with the others (x2_first at batch tile 32) and a gain within timing noise left out."""
    descriptors = op_descriptors(tpc.Product(tpc.presets.get("fc-small").tp), 64, "float32")
    search = ModelSearch(SPACE, CostModel(), "op", descriptors, seed=0)
    default = SPACE.default()
    moves = {"in_place": (False, 6e-3), "batch_tile": (32, 8.5e-3), "coupling": ("x2_first", 9e-3),
             "channel_unroll": (4, 9.5e-3), "reduction_order": ("inner", 9.9e-3), "materialize": ("all", 12e-3)}
    configs = [default] + [{**default, name: value} for name, (value, _) in moves.items()]
    search.observe(configs, [10e-3] + [seconds for _, seconds in moves.values()])
    measured = {SPACE.key(c) for c in configs}
    combined = {**default, "in_place": False, "batch_tile": 32, "channel_unroll": 4}
    assert SPACE.key(combined) in {SPACE.key(c) for c in search.propose(8, measured)}
    # Measured, the combination is the fastest; its own faster moves are combined next.
    faster = {"batch_tile": (16, 4e-3), "unroll_components": (False, 4.5e-3)}
    configs = [combined] + [{**combined, name: value} for name, (value, _) in faster.items()]
    search.observe(configs, [5e-3] + [seconds for _, seconds in faster.values()])
    measured |= {SPACE.key(c) for c in configs}
    combined_again = {**combined, "batch_tile": 16, "unroll_components": False}
    assert SPACE.key(combined_again) in {SPACE.key(c) for c in search.propose(8, measured)}


def test_model_search_reranks_its_shortlist_with_tir_features():
    op = tpc.Product(tpc.presets.get("fc-small").tp)
    space = tuning_space("cpu", ["cg"])
    featurizer = TirFeaturizer(op, tpc.resolve_target("host"), "float32", 64, space)
    asked: list[str] = []

    def featurize(config):
        asked.append(space.key(config))
        return featurizer(config)

    search = ModelSearch(space, CostModel(), "op", op_descriptors(op, 64, "float32"), seed=0, tir_model=CostModel(),
                         featurize=featurize, shortlist=3)
    measured: set[str] = set()
    for _ in range(3):
        configs = search.propose(4, measured)
        assert len(configs) == 4 and not {space.key(c) for c in configs} & measured
        measured |= {space.key(c) for c in configs}
        search.observe(configs, [synthetic_seconds(c) for c in configs])
    assert search.tir_model.trained
    # Features were asked for the measured configurations and the shortlists only: 3 per
    # proposed configuration from the annealing, 3 per local pick (2 of 4) from the neighbourhood.
    assert set(asked) >= measured and len(set(asked)) <= len(measured) + 2 * 3 * (4 + 2)


def test_cost_model_ranks_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    descriptors = [1.0, 2.0]
    configs = [SPACE.sample(rng) for _ in range(40)]
    model = CostModel()
    model.add("g", [candidate_features(SPACE, c, descriptors) for c in configs],
              [synthetic_seconds(c) for c in configs])
    fresh = [SPACE.sample(rng) for _ in range(30)]
    scores = model.predict([candidate_features(SPACE, c, descriptors) for c in fresh])
    truth = [-synthetic_seconds(c) for c in fresh]
    assert np.corrcoef(scores, truth)[0, 1] > 0.7
    model.save(tmp_path / "m.npz")
    again = CostModel.load(tmp_path / "m.npz")
    assert again.trained and np.allclose(again.predict([candidate_features(SPACE, fresh[0], descriptors)]),
                                         model.predict([candidate_features(SPACE, fresh[0], descriptors)]))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert not CostModel.load(tmp_path / "bad.npz").trained


def test_cost_model_orders_the_fastest_despite_a_slow_outlier():
    # Candidates 4% apart and one 100 times slower: the fastest few must not share one label.
    features = [[float(i)] for i in range(10)]
    seconds = [1.04 ** i for i in range(9)] + [100.0]
    model = CostModel()
    model.add("g", features, seconds)
    scores = model.predict(features[:5])
    assert all(np.diff(scores) < 0)
