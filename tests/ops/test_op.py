"""Ops as values: identity (fingerprints unchanged from the records' format), serialization,
validation, the algorithms that compute them and their float64 references."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

import tpc
from tpc.ops import (
    ALGORITHMS,
    FUSIONS,
    GRID_FROM_DEGREE,
    WRT,
    Fused,
    Gradient,
    Product,
    algorithms_for,
    as_op,
    make_op,
    op_from_dict,
)
from tpc.verify import relative_error, tolerance

FC = tpc.presets.get("fc-small").tp
UVU = tpc.ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", 1)
GAUNT = tpc.presets.get("gaunt-L3").tp
UNWEIGHTED = tpc.GauntTensorProduct("0e+1o", "0e+1o", 1)


def every_op(tp):
    """The product, every single and joined gradient the spec allows, and every fusion."""
    wrts = [wrt for wrt in WRT if wrt != "weight" or tp.weight_numel] + ["x1+x2"]
    return [Product(tp)] + [Gradient(tp, wrt) for wrt in wrts] + [Fused(tp, fusion) for fusion in FUSIONS]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("tp", [FC, UVU, UNWEIGHTED], ids=["fc-small", "uvu", "unweighted"])
def test_fingerprints_are_the_values_records_were_written_with(tp):
    assert Product(tp).fingerprint == tp.fingerprint
    for wrt in ("x1", "x2", "weight", "x1+weight"):
        if "weight" not in wrt or tp.weight_numel:
            assert Gradient(tp, wrt).fingerprint == sha256(f"{tp.fingerprint}/d{wrt}")
    for fusion in FUSIONS:
        assert Fused(tp, fusion).fingerprint == sha256(f"{tp.fingerprint}/fused:{fusion}")
    prints = [op.fingerprint for op in every_op(tp)]
    assert len(set(prints)) == len(prints)


def test_fingerprints_are_pinned():
    """fc-small's op fingerprints as tuning logs hold them: a change here orphans every record."""
    assert Product(FC).fingerprint == "8e0713e6720d45eaff7632039d65399cf779a1a469e1880530e13645df83a79b"
    assert Gradient(FC, "x1").fingerprint == "05d6ed1b6585eadd8133b46a9eabec78fbb3b0089660b14c340251bb3c8ea72b"
    assert Fused(FC, "gather+scatter").fingerprint == \
        "644de8a783777980e39fd277560e8a1bcf3ce8bc2bb3dfced9f781209f75fe86"


@pytest.mark.parametrize("op", every_op(UVU) + every_op(UNWEIGHTED), ids=lambda op: f"{op.kind}-{op.schedule_key}")
def test_to_dict_and_op_from_dict_round_trip(op):
    data = op.to_dict()
    assert data["kind"] == op.kind and data["format"] == "tpc.Op/1"
    again = op_from_dict(json.loads(json.dumps(data)))
    assert type(again) is type(op) and again == op and again.fingerprint == op.fingerprint
    assert hash(again) == hash(op)


def test_malformed_op_descriptions_are_refused():
    data = Gradient(UVU, "x2").to_dict()
    for bad in (None, [], {}, {**data, "format": "tpc.Op/2"}, {**data, "kind": "hessian"}):
        with pytest.raises(ValueError, match="not a tpc op description"):
            op_from_dict(bad)
    with pytest.raises(ValueError, match="malformed op description"):
        op_from_dict({key: value for key, value in data.items() if key != "spec"})
    with pytest.raises(ValueError, match="wrt must name arguments"):
        op_from_dict({**data, "wrt": "x3"})
    with pytest.raises(ValueError, match="unknown fusion"):
        op_from_dict({**Fused(UVU).to_dict(), "fusion": "all"})


def test_gradient_wrt_is_kept_in_canonical_order():
    op = Gradient(UVU, "weight+x2+x1")
    assert op.wrt == "x1+x2+weight" and op.arguments == ("x1", "x2", "weight")
    assert op == Gradient(UVU, "x1+x2+weight") and op.fingerprint == Gradient(UVU, "x1+x2+weight").fingerprint
    assert Gradient(UVU, "x2+x1").schedule_key == "x1+x2"
    assert Gradient(UVU, "x1+weight").output_width == UVU.irreps_in1.dim + UVU.weight_numel
    assert Gradient(UVU, "x2").output_width == UVU.irreps_in2.dim
    assert Gradient(UVU).wrt == "x1"


@pytest.mark.parametrize("wrt,message", [
    ("out", "wrt must name arguments"), ("x1+x1", "wrt must name arguments"), ("", "wrt must name arguments"),
    ("x1+", "wrt must name arguments"), ("X1", "wrt must name arguments"), ("x1,x2", "wrt must name arguments"),
    (None, "wrt must be a string"), (("x1",), "wrt must be a string"),
])
def test_bad_gradient_arguments_are_named(wrt, message):
    with pytest.raises(ValueError, match=message):
        Gradient(UVU, wrt)


def test_a_gradient_with_respect_to_missing_weights_is_refused():
    with pytest.raises(ValueError, match="no weights"):
        Gradient(UNWEIGHTED, "weight")
    with pytest.raises(ValueError, match="no weights"):
        Gradient(UNWEIGHTED, "x1+weight")
    assert Gradient(UNWEIGHTED, "x1+x2").output_width == 2 * UNWEIGHTED.irreps_in1.dim


def test_ops_need_a_spec_and_are_frozen():
    with pytest.raises(TypeError, match="an op takes a TensorProduct"):
        Product("1x0e")
    with pytest.raises(TypeError, match="an op takes a TensorProduct"):
        Fused(Product(UVU), "gather")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Gradient(UVU, "x1").wrt = "x2"
    with pytest.raises(ValueError, match="unknown fusion 'scatter\\+gather'"):
        Fused(UVU, "scatter+gather")


def test_fused_ops_know_their_parts():
    parts = {fusion: (Fused(UVU, fusion).gather, Fused(UVU, fusion).scatter) for fusion in FUSIONS}
    assert parts == {"gather": (True, False), "scatter": (False, True), "gather+scatter": (True, True)}
    assert Fused(UVU).fusion == "gather+scatter" and Fused(UVU, "scatter").schedule_key == "scatter"
    assert Product(UVU).schedule_key is None
    assert Fused(UVU).output_width == Product(UVU).output_width == UVU.irreps_out.dim


def test_fused_reference_equals_a_gather_and_scatter_sum_written_out(rng):
    nodes, senders = 4, np.array([2, 0, 2, 3, 1, 2])
    receivers = np.array([0, 0, 1, 3, 3, 3])  # sorted; receiver 2 gets nothing
    offsets = np.array([0, 2, 3, 3, 6])
    x1 = rng.standard_normal((nodes, UVU.irreps_in1.dim))
    x2 = rng.standard_normal((6, UVU.irreps_in2.dim))
    weight = rng.standard_normal((6, UVU.weight_numel))
    messages = np.stack([UVU.reference(x1[s:s + 1], x2[e:e + 1], weight[e:e + 1])[0] for e, s in enumerate(senders)])
    summed = np.zeros((nodes, UVU.irreps_out.dim))
    for edge, receiver in enumerate(receivers):
        summed[receiver] += messages[edge]
    assert np.all(summed[2] == 0) and np.abs(summed).max() > 0
    exact = tolerance("float64")
    assert relative_error(Fused(UVU, "gather").reference(x1, x2, weight, senders=senders), messages) < exact
    gathered_and_summed = Fused(UVU, "gather+scatter").reference(x1, x2, weight, senders=senders, offsets=offsets)
    assert gathered_and_summed.shape == summed.shape and relative_error(gathered_and_summed, summed) < exact
    edge_x1 = x1[senders]
    assert relative_error(Fused(UVU, "scatter").reference(edge_x1, x2, weight, offsets=offsets), summed) < exact
    np.testing.assert_array_equal(Product(UVU).reference(edge_x1, x2, weight), UVU.reference(edge_x1, x2, weight))


def test_gradient_reference_is_the_spec_gradient_one_array_per_argument(rng):
    x1, x2, weight = (rng.standard_normal(shape) for shape in ((5, UVU.irreps_in1.dim), (5, UVU.irreps_in2.dim),
                                                               (5, UVU.weight_numel)))
    grad = rng.standard_normal((5, UVU.irreps_out.dim))
    single = Gradient(UVU, "x2").reference(x1, x2, weight, grad)
    np.testing.assert_array_equal(single, UVU.reference_gradient(x1, x2, weight, grad, "x2"))
    joined = Gradient(UVU, "weight+x1").reference(x1, x2, weight, grad)
    assert isinstance(joined, tuple) and len(joined) == 2
    np.testing.assert_array_equal(joined[0], UVU.reference_gradient(x1, x2, weight, grad, "x1"))
    np.testing.assert_array_equal(joined[1], UVU.reference_gradient(x1, x2, weight, grad, "weight"))


def test_gaunt_products_get_every_algorithm_and_other_ops_clebsch_gordan_only():
    assert Product(GAUNT).algorithms == ALGORITHMS == ("cg", "fourier", "grid")
    assert algorithms_for(GAUNT) == algorithms_for(Product(GAUNT)) == ALGORITHMS
    for op in every_op(GAUNT)[1:] + every_op(UVU) + [Product(FC)]:
        assert op.algorithms == ("cg",) and op.default_algorithm == "cg", op
        op.check_algorithm("cg")
    for degree in (GRID_FROM_DEGREE - 1, GRID_FROM_DEGREE):
        tp = tpc.GauntTensorProduct("+".join(f"{l}{'eo'[l % 2]}" for l in range(degree + 1)), "0e+1o", degree)
        assert Product(tp).default_algorithm == ("grid" if degree >= GRID_FROM_DEGREE else "cg")
        assert Gradient(tp, "x1").default_algorithm == Fused(tp).default_algorithm == "cg"


def test_an_algorithm_that_does_not_compute_the_op_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown algorithm 'spectral'"):
        Product(GAUNT).check_algorithm("spectral")
    with pytest.raises(ValueError, match="grid algorithm computes Gaunt products only, and this spec is not one"):
        Product(UVU).check_algorithm("grid")
    with pytest.raises(ValueError, match=r"the gradient with respect to x1 is computed with \['cg'\] only, not 'grid'"):
        Gradient(GAUNT, "x1").check_algorithm("grid")
    with pytest.raises(ValueError, match=r"fused with its scatter is computed with \['cg'\] only, not 'fourier'"):
        Fused(GAUNT, "scatter").check_algorithm("fourier")
    Product(GAUNT).check_algorithm("fourier")


def test_as_op_and_make_op():
    op = Gradient(UVU, "x2")
    assert as_op(op) is op and as_op(UVU) == Product(UVU)
    for value in ("1x0e", None, UVU.to_dict()):
        with pytest.raises(TypeError, match="tpc.compile takes a TensorProduct or an op"):
            as_op(value, "tpc.compile")
    with pytest.raises(TypeError, match="algorithms_for takes a TensorProduct or an op"):
        algorithms_for("1x0e")
    assert make_op(UVU) == Product(UVU) and make_op(UVU, "x2") == op
    assert make_op(UVU, fusion="scatter") == Fused(UVU, "scatter")
    with pytest.raises(ValueError, match="a fused kernel computes the product, not a gradient"):
        make_op(UVU, "x1", "gather")


def test_argument_and_output_shapes_match_what_the_reference_takes_and_gives(rng):
    batch, nodes = 17, 5
    for op in (Product(UVU), Gradient(UVU, "x1"), Gradient(UVU, "weight"), Fused(UVU, "gather+scatter"),
               Fused(UVU, "gather"), Fused(UVU, "scatter")):
        arguments = tpc.verify.random_arguments(op, batch, rng, "float64", nodes)
        shapes = op.argument_shapes(batch, nodes)
        assert shapes == {name: value.shape for name, value in arguments.items() if value is not None}
        assert op.reference(**arguments).shape == op.output_shape(batch, nodes)
    assert "weight" not in Product(UNWEIGHTED).argument_shapes(batch)
    assert Gradient(FC, "weight").output_shape(batch) == (FC.weight_numel,)  # shared weights: summed
    assert Gradient(UVU, "x1+x2").output_shape(batch) == (batch, UVU.irreps_in1.dim + UVU.irreps_in2.dim)
    with pytest.raises(ValueError, match="needs the node count"):
        Fused(UVU, "gather").argument_shapes(batch)


def test_an_op_counts_the_flops_of_its_product():
    assert Product(FC).flops(10) == Gradient(FC, "x2").flops(10) == Fused(FC, "scatter").flops(10) == FC.flops(10)
