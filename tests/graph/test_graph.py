import json
import sys

import numpy as np
import pytest

import tpc
from tpc.graph import Elementwise, Gather, Graph, Input, Linear, Node, RadialBasis, TensorType, operation_from_dict
from tpc.verify import relative_error, tolerance

HIDDEN = "8x0e+8x1o"
OUT = "8x0e+8x1o+8x2e"


def interaction_block() -> tuple[Graph, tpc.TensorProduct]:
    """A MACE-style interaction: linear up, edge vectors, harmonics, channelwise product with
    per-edge weights, scatter-sum to the receivers, linear down, gated by silu'd scalars, plus a
    skip connection."""
    tp = tpc.ChannelwiseTensorProduct(HIDDEN, "0e+1o+2e", lmax=2)
    g = Graph()
    pos = g.input("pos", ("nodes", 3), "float64")
    h = g.input("h", ("nodes", HIDDEN), "float64")
    senders = g.input("senders", ("edges",), "int64")
    receivers = g.input("receivers", ("edges",), "int64")
    w_up = g.input("w_up", (Linear(HIDDEN, HIDDEN).weight_numel,), "float64")
    w_tp = g.input("w_tp", ("edges", tp.weight_numel), "float64")
    w_out = g.input("w_out", (Linear(tp.irreps_out, OUT).weight_numel,), "float64")
    w_gate = g.input("w_gate", (Linear(tp.irreps_out, "24x0e").weight_numel,), "float64")
    w_skip = g.input("w_skip", (Linear(HIDDEN, OUT).weight_numel,), "float64")

    up = g.linear(h, HIDDEN, w_up, name="up")
    vectors = g.elementwise("sub", g.gather(pos, receivers), g.gather(pos, senders), name="vectors")
    sh = g.spherical_harmonics(vectors, lmax=2, name="sh")
    messages = g.tensor_product(g.gather(up, senders), sh, w_tp, tp, name="messages")
    aggregated = g.scatter_sum(messages, receivers, "nodes", name="aggregated")
    down = g.linear(aggregated, OUT, w_out, name="down")
    gates = g.elementwise("silu", g.linear(aggregated, "24x0e", w_gate), name="gates")
    gated = g.elementwise("mul", down, gates, name="gated")
    g.output("out", g.elementwise("add", gated, g.linear(h, OUT, w_skip), name="out"))
    g.output("aggregated", aggregated)
    return g, tp


def block_inputs(g: Graph, rng: np.random.Generator, atoms: int = 20, cutoff: float = 2.0) -> dict:
    pos = rng.uniform(0, 4.0, (atoms, 3))
    distance = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    receivers, senders = np.nonzero((distance < cutoff) & ~np.eye(atoms, dtype=bool))
    edges = len(senders)
    inputs = {"pos": pos, "h": rng.standard_normal((atoms, tpc.Irreps(HIDDEN).dim)),
              "senders": senders.astype(np.int64), "receivers": receivers.astype(np.int64)}
    for node in g.nodes():
        if node.name.startswith("w_"):
            shape = tuple(edges if dim == "edges" else dim for dim in node.output.shape)
            inputs[node.name] = rng.standard_normal(shape)
    return inputs


def test_interaction_block_matches_e3nn(rng):
    import torch
    from e3nn import o3

    from tpc.testing import e3nn_module, float64_torch

    g, tp = interaction_block()
    inputs = block_inputs(g, rng)
    assert len(inputs["senders"]) > 100
    result = g.reference(**inputs)

    t = {name: torch.as_tensor(value) for name, value in inputs.items()}
    with float64_torch(), torch.no_grad():
        up = o3.Linear(HIDDEN, HIDDEN)(t["h"], weight=t["w_up"])
        vectors = t["pos"][t["receivers"]] - t["pos"][t["senders"]]
        sh = o3.spherical_harmonics([0, 1, 2], vectors, normalize=True, normalization="component")
        messages = e3nn_module(tp)(up[t["senders"]], sh, t["w_tp"])
        aggregated = torch.zeros(20, tp.irreps_out.dim).index_add_(0, t["receivers"], messages)
        down = o3.Linear(str(tp.irreps_out), OUT)(aggregated, weight=t["w_out"])
        gates = torch.nn.functional.silu(o3.Linear(str(tp.irreps_out), "24x0e")(aggregated, weight=t["w_gate"]))
        gated = o3.ElementwiseTensorProduct(OUT, "24x0e")(down, gates)
        out = gated + o3.Linear(HIDDEN, OUT)(t["h"], weight=t["w_skip"])
    assert relative_error(result["aggregated"], aggregated.numpy()) < tolerance("float64")
    assert relative_error(result["out"], out.numpy()) < tolerance("float64")
    assert np.abs(result["out"]).max() > 1.0


@pytest.mark.parametrize("shared", [True, False])
def test_linear_matches_e3nn_with_repeated_irreps(rng, shared):
    import torch
    from e3nn import o3

    from tpc.testing import float64_torch

    irreps_in, irreps_out = "3x0e+2x1o+4x0e+1x2e", "5x0e+2x1o+3x1e"
    linear = Linear(irreps_in, irreps_out, shared_weights=shared)
    x = rng.standard_normal((6, tpc.Irreps(irreps_in).dim))
    weight = rng.standard_normal((linear.weight_numel,) if shared else (6, linear.weight_numel))
    g = Graph()
    features = g.input("x", (6, irreps_in), "float64")
    w = g.input("w", weight.shape, "float64")
    g.output("y", g.linear(features, irreps_out, w))
    with float64_torch(), torch.no_grad():
        module = o3.Linear(irreps_in, irreps_out, shared_weights=shared, internal_weights=False)
        expected = module(torch.as_tensor(x), torch.as_tensor(weight)).numpy()
    assert module.weight_numel == linear.weight_numel
    assert relative_error(g.reference(x=x, w=weight)["y"], expected) < tolerance("float64")


@pytest.mark.parametrize("number, cutoff", [(1, 1.0), (8, 5.0), (5, 2.5)])
def test_radial_basis_matches_e3nn(rng, number, cutoff):
    import torch
    from e3nn.math import soft_one_hot_linspace

    directions = rng.standard_normal((200, 3))
    lengths = np.concatenate([[0.0, 1e-9, cutoff, np.nextafter(cutoff, 0)], rng.uniform(0, 1.5 * cutoff, 196)])
    vectors = directions / np.linalg.norm(directions, axis=1, keepdims=True) * lengths[:, None]
    g = Graph()
    g.output("basis", g.radial_basis(g.input("v", ("edges", 3), "float64"), number, cutoff))
    got = g.reference(v=vectors)["basis"]
    r = torch.as_tensor(np.linalg.norm(vectors, axis=1))
    expected = (soft_one_hot_linspace(r, 0.0, cutoff, number, basis="bessel", cutoff=True) * number**0.5).numpy()
    assert got.shape == (200, number)
    assert relative_error(got[1:], expected[1:]) < tolerance("float64")
    assert np.isnan(expected[0]).all() and not got[0].any()  # e3nn's 0/0 at r = 0 is masked to 0 here
    assert not got[lengths >= cutoff].any()
    assert (np.abs(got[(lengths > 0) & (lengths < 0.9 * cutoff)]).max(axis=1) > 0).all()


def test_radial_basis_op_parameters_round_trip():
    operation = RadialBasis(8, 5)
    assert operation.cutoff == 5.0 and isinstance(operation.cutoff, float)
    assert operation_from_dict(json.loads(json.dumps(operation.to_dict()))) == operation
    assert operation.describe() == "radial_basis(number=8, cutoff=5.0)"
    g = Graph()
    basis = g.radial_basis(g.input("v", ("edges", "1o")), 4, 2.0, name="basis")
    assert str(basis.type) == "(edges, 4x0e) float32"


def test_nodes_are_topological_with_types():
    g, tp = interaction_block()
    nodes = g.nodes()
    position = {node.name: i for i, node in enumerate(nodes)}
    assert all(isinstance(node, Node) for node in nodes)
    for node in nodes:
        assert all(position[tensor.name] < position[node.name] for tensor in node.inputs)
    messages = nodes[position["messages"]]
    assert [tensor.name for tensor in messages.inputs][1:] == ["sh", "w_tp"]
    assert messages.output.shape == ("edges", tp.irreps_out.dim)
    assert messages.output.irreps == tp.irreps_out and messages.output.dtype == "float64"
    assert nodes[position["aggregated"]].output.shape == ("nodes", tp.irreps_out.dim)
    assert [node.name for node in nodes[:9]] == ["pos", "h", "senders", "receivers", "w_up", "w_tp", "w_out",
                                                 "w_gate", "w_skip"]


def test_builder_shapes_and_auto_names():
    g = Graph()
    h = g.input("h", ("nodes", tpc.Irreps("4x0e+2x1o")))
    index = g.input("index", ("edges",), np.int64)
    assert h.shape == ("nodes", 10) and h.irreps == tpc.Irreps("4x0e+2x1o") and h.dtype == "float32"
    assert index.dtype == "int64" and str(index.type) == "(edges,) int64"
    first, second = g.gather(h, index), g.gather(h, index)
    assert (first.name, second.name) == ("gather_0", "gather_1")
    assert str(first.type) == "(edges, 4x0e+2x1o) float32"


def test_json_round_trip_keeps_graph_and_values(rng, tmp_path):
    g, _ = interaction_block()
    text = g.to_json()
    again = Graph.from_json(text)
    assert again.to_json() == text and again.outputs == g.outputs
    inputs = block_inputs(g, rng, atoms=8, cutoff=3.0)
    expected, got = g.reference(**inputs), again.reference(**inputs)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_graph_json_of_the_first_format_still_loads():
    g, _ = interaction_block()
    data = json.loads(g.to_json())
    data["format"] = "tpc.Graph/1"
    for entry in data["nodes"]:
        if entry["op"]["kind"] == "elementwise":
            entry["op"]["op"] = entry["op"].pop("function")
    assert Graph.from_dict(data).to_json() == g.to_json()


@pytest.mark.parametrize("mutate, message", [
    (lambda data: "{not json", "not valid JSON"),
    (lambda data: json.dumps([1, 2]), "not a tpc graph"),
    (lambda data: json.dumps(data | {"format": "tpc.Graph/0"}), "not a tpc graph"),
    (lambda data: json.dumps(data | {"nodes": {}}), "'nodes' must be a list"),
    (lambda data: json.dumps(data | {"outputs": ["out"]}), "'outputs' must be an object"),
    (lambda data: json.dumps(data | {"nodes": [{"op": {"kind": "gather"}, "inputs": []}]}), "node 0 has no name"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "g", "inputs": []}]}), "node 'g' needs an 'op'"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "g", "op": {"kind": "conv"}, "inputs": []}]}),
     "node 'g': unknown operation kind 'conv'"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "g", "op": {"kind": "scatter_sum"}, "inputs": []}]}),
     "node 'g': bad parameters for scatter_sum: .*'size'"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "g", "op": {"kind": "gather", "axis": 1}, "inputs": []}]}),
     "node 'g': bad parameters for gather"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "x", "op": {"kind": "input", "shape": ["n", 3],
                                                                      "dtype": "float16"}, "inputs": []}]}),
     "node 'x': dtype must be one of"),
    (lambda data: json.dumps(data | {"nodes": [{"name": "g", "inputs": [], "op": {
        "kind": "tensor_product", "tp": {"format": "tpc.TensorProduct/1"}}}]}),
     "node 'g': spec field 'irreps_in1': missing"),
    (lambda data: json.dumps(data | {"nodes": data["nodes"] + data["nodes"][:1]}), "node 'pos' \\(input\\): duplicate"),
    (lambda data: json.dumps(data | {"outputs": {"out": 3}}), "output 'out': expected a Tensor or a tensor name"),
])
def test_malformed_json_is_a_clear_value_error(mutate, message):
    g, _ = interaction_block()
    with pytest.raises(ValueError, match=message):
        Graph.from_json(mutate(json.loads(g.to_json())))


def test_to_dot_labels_ops_shapes_and_arguments():
    g, tp = interaction_block()
    dot = g.to_dot()
    assert dot.startswith("digraph tpc_graph {") and dot.rstrip().endswith("}")
    assert f'"node:messages" [label="messages\\ntensor_product(9 paths, {tp.weight_numel} per-sample weights)' in dot
    assert f"(edges, {tp.irreps_out}) float64" in dot
    assert '"node:sh" [label="sh\\nspherical_harmonics(lmax=2, normalize=True' in dot
    assert '"node:w_tp" -> "node:messages" [label="weight"];' in dot
    assert '"node:aggregated" -> "output:aggregated";' in dot
    assert dot.count(" -> ") == sum(len(node.inputs) for node in g.nodes()) + 2


def test_draw_writes_an_image(tmp_path):
    g, _ = interaction_block()
    g.draw(tmp_path / "block.png")
    assert (tmp_path / "block.png").read_bytes().startswith(b"\x89PNG")


def test_draw_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    g, _ = interaction_block()
    with pytest.raises(RuntimeError, match=r'pip install "tpc\[plot\]"'):
        g.draw(tmp_path / "block.png")


# -- malformed graphs -------------------------------------------------------------------------


def _features(g: Graph, name: str = "x", irreps: str = HIDDEN, rows: str = "edges", dtype: str = "float64"):
    return g.input(name, (rows, irreps), dtype)


def _cycle(g: Graph):
    g.add("idx", Input(TensorType(("edges",), "int64")))
    g.add("a", Gather(), ["b", "idx"])
    g.add("b", Gather(), ["a", "idx"])
    g.output("out", "b")


def _dangling_input(g: Graph):
    g.input("unused", ("nodes", 3))
    g.output("out", g.input("pos", ("nodes", 3)))


def _unproduced_input(g: Graph):
    g.add("idx", Input(TensorType(("edges",), "int64")))
    g.add("picked", Gather(), ["features", "idx"])
    g.output("out", "picked")


def _no_output(g: Graph):
    g.input("pos", ("nodes", 3))


def _output_of_unknown_tensor(g: Graph):
    g.input("pos", ("nodes", 3))
    g.output("pos", "pos")
    g.output("out", "forces")


def _duplicate_name(g: Graph):
    g.input("pos", ("nodes", 3))
    g.input("pos", ("nodes", "1o"))


def _duplicate_output(g: Graph):
    pos = g.input("pos", ("nodes", 3))
    g.output("out", pos)
    g.output("out", pos)


def _float_index(g: Graph):
    g.gather(g.input("pos", ("nodes", 3)), g.input("senders", ("edges",)), name="edge_pos")


def _float_index_added_unchecked(g: Graph):
    g.add("pos", Input(TensorType(("nodes", 3), "float32")))
    g.add("senders", Input(TensorType(("edges",), "float64")))
    g.add("edge_pos", Gather(), ["pos", "senders"])
    g.output("out", "edge_pos")


def _index_matrix(g: Graph):
    g.scatter_sum(_features(g), g.input("receivers", ("edges", 2), "int64"), "nodes", name="agg")


def _tp(shared: bool = False) -> tpc.TensorProduct:
    return tpc.ChannelwiseTensorProduct(HIDDEN, "0e+1o", lmax=1, shared_weights=shared)


def _wrong_weight_size(g: Graph):
    tp = _tp()
    sh = _features(g, "sh", "0e+1o")
    weight = g.input("w", ("edges", tp.weight_numel + 1), "float64")
    g.tensor_product(_features(g), sh, weight, tp, name="msg")


def _per_sample_weight_for_shared_product(g: Graph):
    tp = _tp(shared=True)
    weight = g.input("w", ("edges", tp.weight_numel), "float64")
    g.tensor_product(_features(g), _features(g, "sh", "0e+1o"), weight, tp, name="msg")


def _missing_weight(g: Graph):
    g.tensor_product(_features(g), _features(g, "sh", "0e+1o"), None, _tp(), name="msg")


def _wrong_irreps(g: Graph):
    tp = _tp()
    weight = g.input("w", ("edges", tp.weight_numel), "float64")
    g.tensor_product(_features(g, "x", "8x0e+8x1e"), _features(g, "sh", "0e+1o"), weight, tp, name="msg")


def _rows_disagree(g: Graph):
    tp = _tp()
    weight = g.input("w", ("edges", tp.weight_numel), "float64")
    g.tensor_product(_features(g), _features(g, "sh", "0e+1o", rows="pairs"), weight, tp, name="msg")


def _mixed_dtypes(g: Graph):
    tp = _tp()
    weight = g.input("w", ("edges", tp.weight_numel), "float64")
    g.tensor_product(_features(g), _features(g, "sh", "0e+1o", dtype="float32"), weight, tp, name="msg")


def _vectors_not_3d(g: Graph):
    g.spherical_harmonics(g.input("vec", ("edges", 4)), lmax=2, name="sh")


def _bad_lmax(g: Graph):
    g.spherical_harmonics(g.input("vec", ("edges", 3)), lmax=-1, name="sh")


def _radial_no_functions(g: Graph):
    g.radial_basis(g.input("vec", ("edges", 3)), 0, 5.0, name="radial")


def _radial_bool_number(g: Graph):
    g.radial_basis(g.input("vec", ("edges", 3)), True, 5.0, name="radial")


def _radial_negative_cutoff(g: Graph):
    g.radial_basis(g.input("vec", ("edges", 3)), 8, -1.0, name="radial")


def _radial_infinite_cutoff(g: Graph):
    g.radial_basis(g.input("vec", ("edges", 3)), 8, float("inf"), name="radial")


def _radial_of_features(g: Graph):
    g.radial_basis(_features(g, "vec", "1x0e+1x1o"), 8, 5.0, name="radial")


def _radial_of_pseudovectors(g: Graph):
    g.radial_basis(_features(g, "vec", "1e"), 8, 5.0, name="radial")


def _scatter_rows_disagree(g: Graph):
    g.scatter_sum(_features(g), g.input("receivers", ("pairs",), "int64"), "nodes", name="agg")


def _unbound_dim(g: Graph):
    agg = g.scatter_sum(_features(g), g.input("receivers", ("edges",), "int64"), "graphs", name="agg")
    g.output("out", agg)


def _dead_node(g: Graph):
    pos = g.input("pos", ("nodes", 3))
    g.spherical_harmonics(pos, lmax=1, name="sh")
    g.output("out", pos)


def _linear_wrong_weight(g: Graph):
    g.linear(_features(g), "4x0e", g.input("w", (33,), "float64"), name="down")


def _linear_of_vectors(g: Graph):
    g.linear(g.input("vec", ("edges", 3)), "4x0e", g.input("w", (4,)), name="down")


def _silu_of_vectors(g: Graph):
    g.elementwise("silu", _features(g), name="act")


def _mul_by_wrong_scalar_count(g: Graph):
    g.elementwise("mul", _features(g), _features(g, "s", "3x0e"), name="gated")


def _add_of_different_types(g: Graph):
    g.elementwise("add", _features(g), _features(g, "y", "8x0e+8x1e"), name="sum")


def _unknown_elementwise(g: Graph):
    g.elementwise("tanh", _features(g, "x", "4x0e"), name="act")


def _wrong_input_count(g: Graph):
    g.add("pos", Input(TensorType(("nodes", 3), "float32")))
    g.add("picked", Gather(), ["pos"])
    g.output("out", "picked")


def _elementwise_added_with_bad_scalars(g: Graph):
    g.add("x", Input(TensorType(("edges", 32), "float64", HIDDEN)))
    g.add("s", Input(TensorType(("edges", 3), "float64", "3x0e")))
    g.add("gated", Elementwise("mul"), ["x", "s"])
    g.output("out", "gated")


def _foreign_tensor(g: Graph):
    other = Graph()
    g.gather(other.input("pos", ("nodes", 3)), g.input("senders", ("edges",), "int64"), name="edge_pos")


def _bad_shape(g: Graph):
    g.input("pos", ("nodes", -3))


MALFORMED = [
    (_cycle, r"node 'a' \(gather\): the graph has a cycle: a -> b -> a"),
    (_dangling_input, r"node 'unused' \(input\): graph input is never used"),
    (_unproduced_input, r"node 'picked' \(gather\): input 'features' is not produced by any node or graph input"),
    (_no_output, r"the graph has no outputs"),
    (_output_of_unknown_tensor, r"output 'out': tensor 'forces' is not produced"),
    (_duplicate_name, r"node 'pos' \(input\): duplicate name"),
    (_duplicate_output, r"output 'out': duplicate output name"),
    (_float_index, r"node 'edge_pos' \(gather\): index 'senders' must have dtype int64, got float32"),
    (_float_index_added_unchecked, r"node 'edge_pos' \(gather\): index 'senders' must have dtype int64, got float64"),
    (_index_matrix, r"node 'agg' \(scatter_sum\): index 'receivers' must have shape \(rows,\)"),
    (_wrong_weight_size, r"node 'msg' \(tensor_product\): weight 'w' must have shape \('edges', 40\) "
                         r"\(40 per-sample weights\), got \('edges', 41\)"),
    (_per_sample_weight_for_shared_product, r"node 'msg' \(tensor_product\): weight 'w' must have shape \(40,\) "
                                            r"\(40 shared weights\)"),
    (_missing_weight, r"node 'msg' \(tensor_product\): takes 3 inputs \(x1, x2, weight\), got 2"),
    (_wrong_irreps, r"node 'msg' \(tensor_product\): x1 'x' has irreps 8x0e\+8x1e, expected 8x0e\+8x1o"),
    (_rows_disagree, r"node 'msg' \(tensor_product\): x2 'sh' has 'pairs' rows but x1 "
                     r"'x' has 'edges'"),
    (_mixed_dtypes, r"node 'msg' \(tensor_product\): x2 'sh' is float32 but x1 'x' "
                    r"is float64"),
    (_vectors_not_3d, r"node 'sh' \(spherical_harmonics\): vectors 'vec' must have shape \(rows, 3\)"),
    (_bad_lmax, r"node 'sh' \(spherical_harmonics\): lmax must be an integer >= 0, got -1"),
    (_radial_no_functions, r"node 'radial' \(radial_basis\): number must be an integer >= 1 .*got 0"),
    (_radial_bool_number, r"node 'radial' \(radial_basis\): number must be an integer >= 1 .*got True"),
    (_radial_negative_cutoff, r"node 'radial' \(radial_basis\): cutoff must be a finite number > 0, got -1.0"),
    (_radial_infinite_cutoff, r"node 'radial' \(radial_basis\): cutoff must be a finite number > 0, got inf"),
    (_radial_of_features, r"node 'radial' \(radial_basis\): vectors 'vec' must have shape \(rows, 3\)"),
    (_radial_of_pseudovectors, r"node 'radial' \(radial_basis\): vectors 'vec' must have shape \(rows, 3\) "
                               r"and irreps 1o or none"),
    (_scatter_rows_disagree, r"node 'agg' \(scatter_sum\): index 'receivers' has 'pairs' rows but x "
                             r"'x' has 'edges'"),
    (_unbound_dim, r"node 'agg' \(scatter_sum\): dim 'graphs' is not a dim of any graph input"),
    (_dead_node, r"node 'sh' \(spherical_harmonics\): result is never used"),
    (_linear_wrong_weight, r"node 'down' \(linear\): weight 'w' must have shape \(32,\) \(32 shared weights\), "
                           r"got \(33,\)"),
    (_linear_of_vectors, r"node 'down' \(linear\): irreps_in is None: linear maps feature tensors"),
    (_silu_of_vectors, r"node 'act' \(elementwise\): a 'x' must have only scalar irreps"),
    (_mul_by_wrong_scalar_count, r"node 'gated' \(elementwise\): b 's' has 3 scalars; mul needs 1 "
                                 r"or one per irrep copy"),
    (_add_of_different_types, r"node 'sum' \(elementwise\): add needs operands of one type"),
    (_unknown_elementwise, r"node 'act' \(elementwise\): elementwise function must be one of"),
    (_wrong_input_count, r"node 'picked' \(gather\): takes 2 inputs \(x, index\), got 1"),
    (_elementwise_added_with_bad_scalars, r"node 'gated' \(elementwise\): b 's' has 3 scalars"),
    (_foreign_tensor, r"node 'edge_pos' \(gather\): x 'pos' is not a tensor of this graph"),
    (_bad_shape, r"node 'pos' \(input\): bad dim -3"),
]


@pytest.mark.parametrize("build, message", MALFORMED, ids=[build.__name__.strip("_") for build, _ in MALFORMED])
def test_malformed_graph_names_node_and_problem(build, message):
    g = Graph()
    with pytest.raises(ValueError, match=message):
        build(g)
        g.validate()


def test_reference_checks_its_arguments(rng):
    g, _ = interaction_block()
    inputs = block_inputs(g, rng)
    with pytest.raises(ValueError, match=r"missing \['pos'\], unknown \['positions'\]"):
        g.reference(**{name: value for name, value in inputs.items() if name != "pos"}, positions=inputs["pos"])
    with pytest.raises(ValueError, match=r"node 'h' \(input\): dim 'nodes' \(axis 0\) is 19 here but 20"):
        g.reference(**inputs | {"h": inputs["h"][:19]})
    with pytest.raises(ValueError, match=r"node 'w_up' \(input\): expected shape \(128,\)"):
        g.reference(**inputs | {"w_up": inputs["w_up"][:5]})
    with pytest.raises(TypeError, match=r"node 'senders' \(input\): expected a int64 array, got dtype float64"):
        g.reference(**inputs | {"senders": inputs["senders"].astype(float)})
    bad = inputs["senders"].copy()
    bad[3] = 20
    with pytest.raises(ValueError, match=r"node 'gather_1' \(gather\): index 'senders' has values outside \[0, 20\)"):
        g.reference(**inputs | {"senders": bad})
    bad = inputs["receivers"].copy()
    bad[0] = -1
    with pytest.raises(ValueError, match=r"node 'gather_0' \(gather\): index 'receivers' has values outside"):
        g.reference(**inputs | {"receivers": bad})


def test_scatter_sum_checks_index_range_against_its_size():
    g = Graph()
    x = g.input("x", ("edges", "2x0e"), "float64")
    g.output("out", g.scatter_sum(x, g.input("receivers", ("edges",), "int64"), 3, name="agg"))
    result = g.reference(x=np.arange(8.0).reshape(4, 2), receivers=np.array([2, 0, 2, 1]))["out"]
    np.testing.assert_array_equal(result, [[2, 3], [6, 7], [4, 6]])
    with pytest.raises(ValueError, match=r"node 'agg' \(scatter_sum\): index 'receivers' has values outside \[0, 3\)"):
        g.reference(x=np.zeros((2, 2)), receivers=np.array([0, 3]))
