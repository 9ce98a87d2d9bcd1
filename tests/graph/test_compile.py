import numpy as np
import pytest

import tpc
from tpc.dtypes import DTYPES
from tpc.graph import Gather, Graph, Linear
from tpc.graph.compiler import FUSION_CHOICES, compile_graph, fuse_products
from tpc.verify import relative_error, tolerance

from .test_graph import HIDDEN, block_inputs, interaction_block


@pytest.fixture(scope="module")
def block():
    return interaction_block()


@pytest.fixture(scope="module")
def compiled_block(block):
    return {dtype: compile_graph(block[0], dtype=dtype) for dtype in ("float64", "float32")}


@pytest.fixture(scope="module", params=FUSION_CHOICES)
def fused_block(request, block):
    return request.param, {dtype: compile_graph(block[0], dtype=dtype, fusion=request.param)
                           for dtype in ("float64", "float32")}


def _as(inputs: dict, dtype: str) -> dict:
    return {name: value.astype(dtype) if value.dtype == np.float64 else value for name, value in inputs.items()}


def _relative_error(got: dict, expected: dict) -> float:
    assert got.keys() == expected.keys()
    return max(np.abs(got[name] - expected[name]).max() / np.abs(expected[name]).max() for name in expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_matches_reference(block, compiled_block, rng, dtype):
    g, _ = block
    for atoms, cutoff in ((20, 2.0), (13, 2.5)):
        inputs = block_inputs(g, rng, atoms=atoms, cutoff=cutoff)
        got = compiled_block[dtype](**_as(inputs, dtype))
        assert all(value.dtype == np.dtype(dtype) for value in got.values())
        assert _relative_error(got, g.reference(**inputs)) < tolerance(dtype)


def test_every_fusion_matches_reference_and_unsorted_edges_come_back_in_order(block, fused_block, rng):
    fusion, compiled = fused_block
    g, _ = block
    steps = [step.kind for step in compiled["float64"].steps]
    assert ("fused_" + fusion in steps) == (fusion != "none")
    assert ("tensor_product" in steps) == (fusion == "none")
    inputs = block_inputs(g, rng, atoms=23, cutoff=2.2)
    order = rng.permutation(len(inputs["senders"]))  # edges in no particular order
    for name in ("senders", "receivers", "w_tp"):
        inputs[name] = inputs[name][order]
    expected = g.reference(**inputs)
    assert _relative_error(compiled["float64"](**inputs), expected) < tolerance("float64")
    assert _relative_error(compiled["float32"](**_as(inputs, "float32")), expected) < tolerance("float32")


def test_edge_outputs_keep_the_given_edge_order(rng):
    g = Graph()
    x = g.input("x", ("nodes", "4x0e+2x1o"), "float64")
    index = g.input("receivers", ("edges",), "int64")
    senders = g.input("senders", ("edges",), "int64")
    w = g.input("w", ("edges", 8), "float64")
    tp = tpc.ChannelwiseTensorProduct("4x0e+2x1o", "0e+1o", lmax=1)
    vectors = g.input("v", ("edges", 3), "float64")
    sh = g.spherical_harmonics(vectors, 1, name="sh")
    w_tp = g.input("w_tp", ("edges", tp.weight_numel), "float64")
    g.output("summed", g.scatter_sum(g.tensor_product(g.gather(x, senders), sh, w_tp, tp), index, "nodes"))
    g.output("edge_sh", sh)
    g.output("w_back", g.elementwise("add", w, w))
    compiled = compile_graph(g, dtype="float64")
    assert compiled.edge_order == ("edges", "receivers")
    edges = 40
    inputs = {"x": rng.standard_normal((9, 10)), "receivers": rng.integers(0, 9, edges),
              "senders": rng.integers(0, 9, edges), "w": rng.standard_normal((edges, 8)),
              "v": rng.standard_normal((edges, 3)), "w_tp": rng.standard_normal((edges, tp.weight_numel))}
    got, expected = compiled(**inputs), g.reference(**inputs)
    for name in expected:
        assert relative_error(got[name], expected[name]) < tolerance("float64")
    no_edges = {name: value[:0] if name != "x" else value for name, value in inputs.items()}
    got, expected = compiled(**no_edges), g.reference(**no_edges)
    assert {name: value.shape for name, value in got.items()} == {"summed": (9, tp.irreps_out.dim),
                                                                  "edge_sh": (0, 4), "w_back": (0, 8)}
    assert not expected["summed"].any() and all(np.array_equal(got[name], expected[name]) for name in expected)


@pytest.mark.parametrize("nodes", [20, 0])
def test_every_fusion_runs_without_edges_or_nodes(block, fused_block, rng, nodes):
    """Empty sums are zeros: without edges "aggregated" is zero and "out" is the skip
    connection alone; without nodes every output has no rows."""
    fusion, compiled = fused_block
    g, _ = block
    inputs = block_inputs(g, rng, atoms=20)
    inputs |= {"pos": inputs["pos"][:nodes], "h": inputs["h"][:nodes], "senders": inputs["senders"][:0],
               "receivers": inputs["receivers"][:0], "w_tp": inputs["w_tp"][:0]}
    expected = g.reference(**inputs)
    assert expected["aggregated"].shape[0] == expected["out"].shape[0] == nodes
    assert not expected["aggregated"].any() and (nodes == 0 or expected["out"].any())
    for dtype in ("float64", "float32"):
        got = compiled[dtype](**_as(inputs, dtype))
        for name in expected:
            assert got[name].shape == expected[name].shape and got[name].dtype == np.dtype(dtype), (fusion, name)
            np.testing.assert_allclose(got[name], expected[name], rtol=tolerance(dtype), atol=tolerance(dtype))


def test_fusion_rules(block):
    g, _ = block
    partition = fuse_products(g)
    (group,) = partition.fused
    assert isinstance(group.gather.op, Gather) and group.gather.inputs[1].name == "senders"
    assert (group.product.name, group.scatter.name, group.fusion) == ("messages", "aggregated", "gather+scatter")
    assert partition.edge_order == ("edges", "receivers")
    assert fuse_products(g, "none").fused == () and fuse_products(g, "none").edge_order is None
    assert fuse_products(g, "gather").fused[0].fusion == "gather"
    assert fuse_products(g, "gather").edge_order is None
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse_products(g, "everything")
    tp = tpc.ChannelwiseTensorProduct("4x0e", "0e", lmax=0)
    shared = Graph()  # the gathered rows and the messages are read twice: nothing is fused
    x = shared.input("x", ("nodes", "4x0e"), "float64")
    index = shared.input("i", ("edges",), "int64")
    gathered = shared.gather(x, index)
    messages = shared.tensor_product(gathered, shared.input("y", ("edges", "0e"), "float64"),
                                     shared.input("w", ("edges", tp.weight_numel), "float64"), tp)
    shared.output("summed", shared.scatter_sum(messages, index, "nodes"))
    shared.output("gathered", gathered)
    shared.output("messages", messages)
    assert fuse_products(shared).fused == ()


def test_block_with_zero_edges(block, compiled_block, rng):
    g, tp = block
    inputs = block_inputs(g, rng, atoms=7)
    inputs.update(senders=np.zeros(0, np.int64), receivers=np.zeros(0, np.int64), w_tp=np.zeros((0, tp.weight_numel)))
    got = compiled_block["float64"](**inputs)
    expected = g.reference(**inputs)
    np.testing.assert_array_equal(got["aggregated"], 0.0)
    assert relative_error(got["out"], expected["out"]) < tolerance("float64")


def _single(build, **arrays):
    g = Graph()
    g.output("y", build(g))
    compiled = compile_graph(g, dtype="float64")
    assert relative_error(compiled(**arrays)["y"], g.reference(**arrays)["y"]) < tolerance("float64")


def test_gather_alone(rng):
    x, index = rng.standard_normal((11, 7)), rng.integers(0, 11, 29)
    _single(lambda g: g.gather(g.input("x", ("nodes", 7), "float64"), g.input("i", ("edges",), "int64")), x=x, i=index)


def test_scatter_sum_alone_with_empty_and_repeated_rows(rng):
    x, index = rng.standard_normal((31, 5)), rng.integers(0, 6, 31)
    index[index == 3] = 4  # row 3 receives nothing
    g = Graph()
    nodes = g.input("n", ("nodes", 1), "float64")
    summed = g.scatter_sum(g.input("x", ("edges", 5), "float64"), g.input("i", ("edges",), "int64"), "nodes")
    g.output("y", summed)
    g.output("n_out", nodes)
    compiled = compile_graph(g, dtype="float64")
    got = compiled(x=x, i=index, n=np.zeros((9, 1)))["y"]
    expected = np.zeros((9, 5))
    np.add.at(expected, index, x)
    assert relative_error(got, expected) < tolerance("float64")
    assert not got[3].any() and not got[6:].any()
    np.testing.assert_array_equal(compiled(x=x, i=index, n=np.zeros((9, 1)))["y"], got)  # fixed summation order


@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("normalize, normalization", [(True, "component"), (False, "integral"), (True, "norm")])
def test_spherical_harmonics_alone(rng, lmax, normalize, normalization):
    vectors = rng.standard_normal((19, 3))
    vectors[4] = 0.0
    _single(lambda g: g.spherical_harmonics(g.input("v", ("edges", 3), "float64"), lmax, normalize, normalization),
            v=vectors)


@pytest.mark.parametrize("dtype", DTYPES)
def test_radial_basis_alone_with_zero_and_distant_vectors(rng, dtype):
    cutoff = 2.5
    vectors = rng.uniform(-2.0, 2.0, (41, 3))
    vectors[3] = 0.0
    vectors[7] = [cutoff, 0.0, 0.0]
    vectors[8:12] = [[3.0, 0.0, 0.0], [0.0, -4.0, 0.0], [2.0, 2.0, 2.0], [100.0, 0.0, 1.0]]  # beyond the cutoff
    g = Graph()
    g.output("y", g.radial_basis(g.input("v", ("edges", 3), dtype), 8, cutoff))
    expected = g.reference(v=vectors)["y"]
    got = compile_graph(g, dtype=dtype)(v=vectors.astype(dtype))["y"]
    assert got.dtype == np.dtype(dtype) and np.isfinite(got).all()
    assert not got[3].any() and not got[7:12].any()
    assert np.abs(got - expected).max() / np.abs(expected).max() < tolerance(dtype)


@pytest.mark.parametrize("shared", [True, False])
def test_linear_alone_with_repeated_irreps(rng, shared):
    irreps_in, irreps_out = "3x0e+2x1o+4x0e+1x2e", "5x0e+2x1o+3x1e"
    linear = Linear(irreps_in, irreps_out, shared_weights=shared)
    weight = rng.standard_normal((linear.weight_numel,) if shared else (6, linear.weight_numel))
    _single(lambda g: g.linear(g.input("x", ("rows", irreps_in), "float64"), irreps_out,
                               g.input("w", ("rows",) + weight.shape[1:] if not shared else weight.shape, "float64")),
            x=rng.standard_normal((6, tpc.Irreps(irreps_in).dim)), w=weight)


@pytest.mark.parametrize("function", ["add", "sub", "mul", "mul1", "silu"])
def test_elementwise_alone(rng, function):
    rows = 9
    a = rng.standard_normal((rows, tpc.Irreps(HIDDEN).dim))
    if function == "silu":
        scalars = rng.standard_normal((rows, 5)) * 30
        _single(lambda g: g.elementwise("silu", g.input("a", ("rows", "5x0e"), "float64")), a=scalars)
        return
    b_irreps = {"add": HIDDEN, "sub": HIDDEN, "mul": "16x0e", "mul1": "0e"}[function]
    b = rng.standard_normal((rows, tpc.Irreps(b_irreps).dim))
    _single(lambda g: g.elementwise(function[:3], g.input("a", ("rows", HIDDEN), "float64"),
                                    g.input("b", ("rows", b_irreps), "float64")), a=a, b=b)


@pytest.mark.parametrize("mutate, error, message", [
    (lambda x: x.pop("h"), ValueError, r"missing \['h'\]"),
    (lambda x: x.update(extra=np.zeros(1)), ValueError, r"unknown \['extra'\]"),
    (lambda x: x.update(h=x["h"].astype(np.float32)), TypeError, "input 'h' must have dtype float64, got float32"),
    (lambda x: x.update(senders=x["senders"].astype(np.int32)), TypeError, "'senders' must have dtype int64"),
    (lambda x: x.update(h=x["h"][:, :5].copy()), ValueError, r"input 'h' must have shape \(nodes, 32\)"),
    (lambda x: x.update(h=x["h"][:3].copy()), ValueError, "dim 'nodes' .* is 3 here but 20"),
    (lambda x: x.update(h=np.asfortranarray(x["h"])), ValueError, "C-contiguous"),
    (lambda x: x.update(h=[[0.0]]), TypeError, "numpy array or a DLPack tensor"),
    (lambda x: x["senders"].__setitem__(0, 20), ValueError, r"index 'senders' has values outside \[0, 20\)"),
    (lambda x: x["receivers"].__setitem__(0, -1), ValueError, r"index 'receivers' has values outside"),
])
def test_bad_inputs_give_clear_errors(block, compiled_block, rng, mutate, error, message):
    g, _ = block
    inputs = block_inputs(g, rng)
    mutate(inputs)
    with pytest.raises(error, match=message):
        compiled_block["float64"](**inputs)


def test_dlpack_inputs_and_bad_arguments(block, compiled_block, rng):
    import torch

    g, _ = block
    inputs = block_inputs(g, rng)
    got = compiled_block["float64"](**{name: torch.as_tensor(value) for name, value in inputs.items()})
    assert _relative_error(got, g.reference(**inputs)) < tolerance("float64")
    with pytest.raises(TypeError, match="takes a tpc.graph.Graph"):
        compile_graph("graph")
    with pytest.raises(ValueError, match="dtype must be one of"):
        compile_graph(g, dtype="float16")
    with pytest.raises(ValueError, match="CPU kernels only"):
        compile_graph(g, target="cuda")
    with pytest.raises(ValueError, match="cannot"):
        compile_graph(g, target="arm")


@pytest.mark.parametrize("normalize", [True, False])
def test_non_finite_vectors_give_nan_harmonics_and_radial_basis_as_in_e3nn(rng, normalize):
    """Rows with a NaN or infinite coordinate: e3nn's Bessel basis is NaN (sin of NaN or of
    infinity) and for a NaN coordinate its harmonics of degree >= 1 are NaN, degree 0 staying
    constant (an infinite one gives NaN in e3nn only where it is read; here all of degree >= 1).
    The reference and the compiled kernels agree, rather than reading the row as an edge beyond
    the cutoff."""
    import torch
    from e3nn import o3
    from e3nn.math import soft_one_hot_linspace

    g = Graph()
    v = g.input("v", ("edges", 3), "float64")
    g.output("basis", g.radial_basis(v, 4, 2.0))
    g.output("sh", g.spherical_harmonics(v, 2, normalize=normalize))
    vectors = rng.uniform(-1, 1, (7, 3))
    vectors[1, 0], vectors[3, 2], vectors[4] = np.nan, np.inf, (np.nan, -np.inf, 1.0)
    vectors[5] = (5.0, 0.0, 0.0)  # beyond the cutoff: zeros
    expected = g.reference(v=vectors)
    bad = np.zeros(7, bool)
    bad[[1, 3, 4]] = True
    assert np.isnan(expected["basis"][bad]).all() and not np.isnan(expected["basis"][~bad]).any()
    assert not expected["basis"][5].any()
    assert np.isnan(expected["sh"][bad, 1:]).all() and not np.isnan(expected["sh"][~bad]).any()
    np.testing.assert_allclose(expected["sh"][:, 0], 1.0)
    t = torch.as_tensor(vectors)
    e3nn_basis = soft_one_hot_linspace(t.norm(dim=1), 0.0, 2.0, 4, basis="bessel", cutoff=True).numpy()
    assert np.array_equal(np.isnan(e3nn_basis), np.isnan(expected["basis"]))
    if normalize:
        e3nn_sh = o3.spherical_harmonics([0, 1, 2], t, normalize=True, normalization="component").numpy()
        nan_rows = np.isnan(vectors).any(axis=1)
        assert np.array_equal(np.isnan(e3nn_sh[nan_rows]), np.isnan(expected["sh"][nan_rows]))
        assert not np.isnan(e3nn_sh[~bad]).any()
    for dtype in DTYPES:
        got = compile_graph(g, dtype=dtype)(v=vectors.astype(dtype))
        for name in expected:
            assert np.array_equal(np.isnan(got[name]), np.isnan(expected[name])), (dtype, name)
            finite = ~np.isnan(expected[name])
            assert relative_error(got[name][finite], expected[name][finite]) < tolerance(dtype)
