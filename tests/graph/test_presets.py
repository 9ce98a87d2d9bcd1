import subprocess
import sys

import numpy as np
import pytest

import tpc
from tpc import presets
from tpc.graph import Gather, Graph, ScatterSum, TensorProductOp
from tpc.graph.compiler import compile_graph
from tpc.graph.presets import mace_interaction
from tpc.testing import E3nnInteraction, box_side, interaction_inputs, random_system
from tpc.tune.graph import UNFUSED_AND_FUSED
from tpc.verify import relative_error, tolerance


def test_graph_preset_validates_and_round_trips():
    assert presets.graph_names() == ["mace-interaction-l2"]
    preset = presets.get_graph("mace-interaction-l2")
    assert preset.name == "mace-interaction-l2" and preset.description
    assert preset.sizes == {"nodes": 2000, "edges": 60000}
    types = preset.graph.validate()
    node_irreps = tpc.Irreps("32x0e+32x1o+32x2e")
    assert types["h"].irreps == types["out"].irreps == node_irreps and types["out"].dtype == "float32"
    assert preset.graph.outputs == {"out": "out", "aggregated": "aggregated"}
    text = preset.graph.to_json()
    assert Graph.from_json(text).to_json() == text


def test_product_is_fed_by_a_gather_and_feeds_a_scatter_sum():
    g, tp = mace_interaction(channels=4)
    dag = g.dag
    assert isinstance(dag.nodes["messages"]["op"], TensorProductOp) and dag.nodes["messages"]["op"].tp == tp
    assert dag.nodes["messages"]["inputs"] == ("sender_features", "sh", "edge_weights")
    assert isinstance(dag.nodes["sender_features"]["op"], Gather)
    assert dag.nodes["sender_features"]["inputs"] == ("up", "senders")
    assert list(dag.successors("messages")) == ["aggregated"]
    assert isinstance(dag.nodes["aggregated"]["op"], ScatterSum)


def test_mace_interaction_irreps_follow_its_arguments():
    g, tp = mace_interaction(channels=4, lmax=3, sh_lmax=1, radial=5, radial_hidden=6, dtype="float64")
    types = g.validate()
    assert types["h"].irreps == tp.irreps_in1 == tpc.Irreps("4x0e+4x1o+4x2e+4x3o")
    assert types["sh"].irreps == tp.irreps_in2 == tpc.Irreps("0e+1o")
    assert types["radial_basis"].irreps == tpc.Irreps("5x0e") and types["radial_hidden2"].shape == ("edges", 6)
    assert types["edge_weights"].shape == ("edges", tp.weight_numel)
    assert types["gates"].irreps == tpc.Irreps("16x0e") and types["out"].dtype == "float64"


def test_unknown_graph_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid graph presets: mace-interaction-l2"):
        presets.get_graph("mace-l2")


def test_import_tpc_does_not_import_networkx():
    code = "import sys, tpc; tpc.presets.graph_names(); assert 'networkx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reference_matches_e3nn():
    g, tp = mace_interaction(dtype="float64")
    system = random_system(60, neighbours=10, seed=3, cutoff=5.0)
    inputs = interaction_inputs(g, system, seed=4, dtype="float64")
    expected = g.reference(**inputs)
    block = E3nnInteraction(tp, radial=8, radial_hidden=32, cutoff=5.0)
    got = block(block.tensors(inputs))
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == block.dtype
        assert relative_error(got[name].numpy(), expected[name]) < tolerance("float64")
    assert np.abs(expected["out"]).max() > 1.0 and np.abs(expected["aggregated"]).max() > 1.0


@pytest.mark.parametrize("fusion", UNFUSED_AND_FUSED)
def test_compiled_preset_matches_e3nn_in_float32(fusion):
    g, tp = mace_interaction(channels=8, cutoff=4.0)
    system = random_system(50, neighbours=12, seed=5, cutoff=4.0)
    inputs = interaction_inputs(g, system, seed=6, dtype="float32")
    compiled = compile_graph(g, dtype="float32", fusion=fusion)
    assert any(step.kind == "fused_gather+scatter" for step in compiled.steps) == (fusion != "none")
    got = compiled(**inputs)
    oracle = E3nnInteraction(tp, radial=8, radial_hidden=32, cutoff=4.0)
    expected = oracle(oracle.tensors(inputs))
    single = E3nnInteraction(tp, radial=8, radial_hidden=32, cutoff=4.0, dtype="float32")
    in_float32 = single(single.tensors(inputs))
    for name in ("out", "aggregated"):
        assert got[name].dtype == np.float32
        assert relative_error(got[name], expected[name].numpy()) < tolerance("float32")
        assert relative_error(in_float32[name].numpy(), expected[name].numpy()) < tolerance("float32")


def test_random_system_is_a_periodic_radius_graph():
    atoms, neighbours, cutoff = 1000, 30.0, 5.0
    system = random_system(atoms, neighbours, seed=1, cutoff=cutoff)
    pos, shifts, senders, receivers = (system[name] for name in ("pos", "shifts", "senders", "receivers"))
    assert pos.dtype == shifts.dtype == np.float64 and senders.dtype == receivers.dtype == np.int64
    assert abs(len(senders) / atoms - neighbours) < 0.15 * neighbours
    side = box_side(atoms, neighbours, cutoff)
    assert pos.min() >= 0 and pos.max() < side
    vectors = pos[receivers] - pos[senders] + shifts
    assert np.linalg.norm(vectors, axis=1).max() < cutoff
    difference = pos[None, :] - pos[:, None]  # [sender, receiver]
    minimum_image = difference - side * np.round(difference / side)
    np.testing.assert_allclose(vectors, minimum_image[senders, receivers], rtol=0, atol=1e-12)
    distance = np.linalg.norm(minimum_image, axis=-1)
    np.fill_diagonal(distance, np.inf)
    brute_force = set(zip(*np.nonzero(distance < cutoff)))
    assert set(zip(senders.tolist(), receivers.tolist())) == brute_force and len(brute_force) == len(senders)


def test_random_system_is_seeded():
    first, again, other = random_system(80, 10, seed=2), random_system(80, 10, seed=2), random_system(80, 10, seed=3)
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["pos"], other["pos"])


@pytest.mark.parametrize("arguments, message", [
    ({"atoms": 40, "neighbours": 30.0}, r"must exceed twice the cutoff \(10\).*below 20.4 for 40 atoms"),
    ({"atoms": 1}, "atoms must be an integer >= 2"),
    ({"atoms": 100, "neighbours": 0.0}, "neighbours must be > 0"),
    ({"atoms": 100, "cutoff": -1.0}, "cutoff must be > 0"),
])
def test_random_system_rejects_impossible_requests(arguments, message):
    with pytest.raises(ValueError, match=message):
        random_system(**arguments)


def test_interaction_inputs_fill_features_and_weights():
    g, tp = mace_interaction(channels=4)
    system = random_system(30, neighbours=5, seed=0)
    inputs = interaction_inputs(g, system, seed=1, dtype="float32")
    edges = len(system["senders"])
    assert inputs["h"].shape == (30, tp.irreps_in1.dim) and inputs["shifts"].shape == (edges, 3)
    assert inputs["w_radial3"].shape == (32 * tp.weight_numel,)
    assert all(value.dtype == (np.int64 if name in ("senders", "receivers") else np.float32)
               for name, value in inputs.items())
    assert np.array_equal(interaction_inputs(g, system, seed=1)["w_up"], inputs["w_up"])
    with pytest.raises(ValueError, match=r"not graph inputs: \['charges'\]"):
        interaction_inputs(g, system | {"charges": np.zeros(30)})


@pytest.fixture(scope="module")
def small_interaction():
    """A float64 MACE block with cutoff 4, compiled unfused and fused."""
    g, tp = mace_interaction(channels=4, cutoff=4.0, dtype="float64")
    return g, tp, {fusion: compile_graph(g, dtype="float64", fusion=fusion) for fusion in UNFUSED_AND_FUSED}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_bad_position_gives_nan_where_e3nn_does(small_interaction, bad):
    """A NaN or infinite position makes its edges' vectors non-finite: e3nn's radial basis of such
    a length is NaN (sin of NaN or of infinity), so the edge weights, the messages and the sums of
    every node that edge reaches are NaN. The compiled graph gives NaN at exactly those entries,
    not the finite numbers of an edge read as beyond the cutoff."""
    g, tp, compiled = small_interaction
    system = random_system(30, neighbours=8, seed=5, cutoff=4.0)
    inputs = interaction_inputs(g, system, seed=6, dtype="float64")
    inputs["pos"][3, 1] = bad
    expected = g.reference(**inputs)
    oracle = E3nnInteraction(tp, radial=8, radial_hidden=32, cutoff=4.0)
    e3nn = {name: value.numpy() for name, value in oracle(oracle.tensors(inputs)).items()}
    touched = np.unique(system["receivers"][(system["senders"] == 3) | (system["receivers"] == 3)])
    for name in ("out", "aggregated"):
        nan = np.isnan(expected[name])
        assert np.array_equal(np.flatnonzero(nan.any(axis=1)), touched)
        assert np.array_equal(nan, np.isnan(e3nn[name]))
        finite = ~nan
        assert relative_error(expected[name][finite], e3nn[name][finite]) < tolerance("float64")
        for fusion, graph in compiled.items():
            got = graph(**inputs)[name]
            assert np.array_equal(np.isnan(got), nan), fusion
            assert relative_error(got[finite], expected[name][finite]) < tolerance("float64"), fusion


@pytest.mark.parametrize("nodes", [30, 0])
def test_no_edges_and_no_nodes_run_end_to_end(small_interaction, nodes):
    """Without edges every sum is empty: "aggregated" is zero and "out" is the skip connection
    alone; without nodes too, both outputs have no rows."""
    g, _, compiled = small_interaction
    inputs = interaction_inputs(g, random_system(30, neighbours=8, seed=5, cutoff=4.0), seed=6, dtype="float64")
    inputs |= {"pos": inputs["pos"][:nodes], "h": inputs["h"][:nodes], "shifts": np.zeros((0, 3)),
               "senders": np.zeros(0, np.int64), "receivers": np.zeros(0, np.int64)}
    expected = g.reference(**inputs)
    assert expected["aggregated"].shape == (nodes, 140) and not expected["aggregated"].any()
    assert expected["out"].shape == (nodes, 36)
    skip = g.reference(**(inputs | {"w_out": np.zeros_like(inputs["w_out"])}))["out"]
    np.testing.assert_array_equal(expected["out"], skip)
    if nodes:
        assert np.abs(expected["out"]).max() > 0.1
    for fusion, graph in compiled.items():
        got = graph(**inputs)
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name].shape == expected[name].shape, fusion
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-12, err_msg=fusion)
