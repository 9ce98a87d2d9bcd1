"""The spec itself: validation, immutability, identity, weights, FLOPs, input checks."""

import json

import numpy as np
import pytest

import tpc
from tpc import TensorProduct
from tpc.testing import foundation_cases
from tpc.verify import random_inputs

IN1, IN2, OUT = "2x0e+2x1o", "1x1o+1x2e", "2x1o+1x1e+2x2e"


def _tp(**options):
    paths = [(1, 1, 0, "uvu", True), (0, 0, 0, "uvu", True, 0.5), (1, 0, 1, "uvw", True)]
    return TensorProduct(IN1, IN2, OUT, paths, **options)


BAD_INSTRUCTIONS = [
    ([(0, 0, 0)], "expected"),
    ([(0, 0, 0, "uvu", True, 1.0, 7)], "expected"),
    ("uvu", "expected"),
    ([(5, 0, 0, "uvu", True)], "i_in1=5"),
    ([(0, -1, 0, "uvu", True)], "i_in2=-1"),
    ([(0, 0, 9, "uvu", True)], "i_out=9"),
    ([(0.0, 0, 0, "uvu", True)], "i_in1"),
    ([(0, 0, 0, "uvx", True)], "unknown connection mode"),
    ([(0, 0, 0, "uvu", "yes")], "has_weight"),
    ([(0, 0, 0, "uvu", True, -1.0)], "path_weight"),
    ([(0, 0, 0, "uvu", True, float("nan"))], "path_weight"),
    ([(0, 0, 0, "uvu", True, "1")], "path_weight"),
    ([(0, 0, 1, "uvu", True)], "not in"),  # 0e x 1o -> 1e breaks parity
    ([(0, 1, 0, "uvu", True)], "not in"),  # 0e x 2e -> 1o breaks the selection rule
    ([(0, 0, 0, "uvw", False)], "has_weight=True"),
    ([(0, 0, 0, "uvv", True)], "mul_in2 == mul_out"),
    ([(0, 0, 0, "uuu", False)], "equal multiplicities"),
    ([(0, 0, 0, "uuw", True)], "mul_in1 == mul_in2"),
]


@pytest.mark.parametrize("instructions,message", BAD_INSTRUCTIONS)
def test_bad_instructions_are_explained(instructions, message):
    with pytest.raises(ValueError, match=message):
        TensorProduct(IN1, IN2, OUT, instructions)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"irrep_normalization": "unit"}, "irrep_normalization"),
        ({"path_normalization": "all"}, "path_normalization"),
        ({"in1_var": [1.0]}, "in1_var"),
        ({"out_var": [1.0, 1.0, -1.0]}, "out_var"),
    ],
)
def test_bad_options_are_explained(options, message):
    with pytest.raises(ValueError, match=message):
        _tp(**options)
    with pytest.raises(TypeError, match="shared_weights"):
        _tp(shared_weights=1)


def test_uvuv_needs_the_product_of_multiplicities():
    with pytest.raises(ValueError, match=r"mul_in1 \* mul_in2 == mul_out"):
        TensorProduct("2x0e", "3x0e", "2x0e", [(0, 0, 0, "uvuv", True)])
    assert TensorProduct("2x0e", "3x0e", "6x0e", [(0, 0, 0, "uvuv", True)]).weight_numel == 6


def test_uuw_without_weights_needs_one_output_channel():
    with pytest.raises(ValueError, match="mul_out == 1"):
        TensorProduct("2x1o", "2x1o", "2x0e", [(0, 0, 0, "uuw", False)])
    assert TensorProduct("2x1o", "2x1o", "1x0e", [(0, 0, 0, "uuw", False)]).weight_numel == 0


def test_spec_is_immutable_and_hashable():
    tp = _tp()
    with pytest.raises(AttributeError):
        tp.irreps_in1 = tpc.Irreps("0e")
    with pytest.raises(AttributeError):
        tp.instructions[0].coefficient = 2.0
    assert isinstance(tp.instructions, tuple)
    assert len({tp, _tp()}) == 1 and tp == _tp() and tp != _tp(shared_weights=False)


def test_public_attributes_and_weights():
    tp = _tp()
    assert tp.irreps_in1 == tpc.Irreps(IN1) and tp.irreps_out == tpc.Irreps(OUT)
    assert [ins.path_shape for ins in tp.instructions] == [(2, 1), (2, 1), (2, 1, 1)]
    assert tp.weight_numel == 2 + 2 + 2
    assert tp.weight_slices() == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert tp.instructions[1].path_weight == 0.5


@pytest.mark.parametrize("case", foundation_cases()[::5], ids=lambda case: case.name)
def test_json_round_trip_and_stable_fingerprint(case):
    tp = case.tp
    again = TensorProduct.from_json(tp.to_json())
    assert again == tp and again.fingerprint == tp.fingerprint
    assert json.loads(tp.to_json()) == tp.to_dict()
    assert len(tp.fingerprint) == 64


def test_fingerprint_is_pinned():
    # the canonical form is a storage format: changing it invalidates every cache
    tp = tpc.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o+1x0e")
    assert tp.to_json().startswith('{"format":"tpc.TensorProduct/1","in1_var":[1.0,1.0]')
    assert tp.fingerprint == TensorProduct.from_json(tp.to_json()).fingerprint
    assert tp.fingerprint != tpc.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x0e+1x1o").fingerprint


@pytest.mark.parametrize(
    "text,message",
    [
        ("{", "not valid JSON"),
        ("[]", "not a tensor-product spec"),
        ('{"format": "other"}', "not a tensor-product spec"),
        ('{"format": "tpc.TensorProduct/1"}', "spec field 'irreps_in1': missing"),
    ],
)
def test_corrupt_spec_json_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        TensorProduct.from_json(text)


def test_flops_and_nonzeros_count_the_sparse_work():
    tp = TensorProduct("3x1o", "2x1o", "3x1e", [(0, 0, 0, "uvu", True)], path_normalization="none")
    # w3j(1,1,1) has 6 nonzeros; 3*2 channel pairs; 3*2 weights applied to 3 components
    assert tp.nnz == 6
    assert tp.flops() == 3 * 6 * 6 + 2 * 6 * 3
    assert tp.flops(batch=10) == 10 * tp.flops()
    mace = tpc.presets.get("mace-l2").tp
    assert mace.nnz == sum(mace.path_nnz(ins) for ins in mace.instructions) > 0


def test_reference_inputs_are_checked(rng):
    tp = _tp()
    x1, x2, weight = random_inputs(tp, 4, rng)
    tp.reference(x1, x2, weight)
    cases = [
        ((x1[:, :-1], x2, weight), ValueError, r"x1 must have shape \(batch, 8\)"),
        ((x1[0], x2, weight), ValueError, "x1 must have shape"),
        ((x1, x2[:3], weight), ValueError, r"x2 must have shape \(4, 8\)"),
        ((x1, x2, None), ValueError, "6 weights"),
        ((x1, x2, weight[:-1]), ValueError, r"weight must have shape \(6,\)"),
        ((x1, x2, np.tile(weight, (4, 1))), ValueError, "shared weights"),
        ((x1.astype(int), x2, weight), TypeError, "x1 must be a floating-point"),
        ((x1, x2.astype(np.complex128), weight), TypeError, "x2 must be a floating-point"),
        ((x1, x2, weight.astype(bool)), TypeError, "weight must be a floating-point"),
        ((x1.astype(np.float32), x2, weight), TypeError, "same dtype"),
        ((x1, x2, weight.astype(np.float32)), TypeError, "dtype of x1"),
        ((["a"], x2, weight), TypeError, "floating-point"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            tp.reference(*args)
    per_sample = _tp(shared_weights=False)
    with pytest.raises(ValueError, match="per-sample"):
        per_sample.reference(x1, x2, weight)
    per_sample.reference(x1, x2, np.tile(weight, (4, 1)))


def test_reference_accepts_float32_and_returns_float64(rng):
    tp = _tp()
    x1, x2, weight = random_inputs(tp, 3, rng, dtype=np.float32)
    out = tp.reference(x1, x2, weight)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, tp.reference(*(a.astype(np.float64) for a in (x1, x2, weight))))


def test_output_blocks_without_paths_are_zero(rng):
    tp = TensorProduct("2x1o", "1x1o", "2x0e+2x3o", [(0, 0, 0, "uvu", True)])
    x1, x2, weight = random_inputs(tp, 3, rng)
    out = tp.reference(x1, x2, weight)
    assert np.all(out[:, 2:] == 0) and np.abs(out[:, :2]).max() > 0
    assert TensorProduct("1x0e", "1x0e", "1x0e", []).reference(np.ones((2, 1)), np.ones((2, 1))).tolist() == [[0], [0]]


@pytest.mark.parametrize("name", ["mace-small-l2", "fc-small"])
def test_the_reference_of_an_empty_batch_is_empty(name):
    tp = tpc.presets.get(name).tp
    shapes = tp.input_shapes(0)
    arrays = [np.zeros(shapes[key]) for key in ("x1", "x2", "weight")]
    assert tp.reference(*arrays).shape == (0, tp.irreps_out.dim)
    grad = np.zeros((0, tp.irreps_out.dim))
    assert tp.reference_gradient(*arrays, grad, "weight").shape == shapes["weight"]


@pytest.mark.parametrize("build, message", [
    (lambda: TensorProduct("2x0e+0x1o", "1x1o", "2x1o", [(0, 0, 0, "uvu", True)]),
     r"irreps_in1: block 1 \(0x1o\) has multiplicity 0"),
    (lambda: TensorProduct("2x0e", "0x1o", "2x1o", [(0, 0, 0, "uvu", True)]), "irreps_in2: block 0 .0x1o."),
    (lambda: TensorProduct("2x0e", "1x1o", "2x1o+0x0e", [(0, 0, 0, "uvu", True)]), "irreps_out: block 1 .0x0e."),
    (lambda: TensorProduct("", "1x1o", "2x1o", []), "irreps_in1 is empty"),
    (lambda: TensorProduct("1x0e", "1x0e", "", []), "irreps_out is empty"),
    (lambda: tpc.ChannelwiseTensorProduct("0x1o+4x0e", "0e+1o", lmax=1), "irreps_in1: block 0 .0x1o."),
    (lambda: tpc.FullyConnectedTensorProduct("4x0e", "", "4x0e"), "irreps_in2 is empty"),
    (lambda: tpc.GauntTensorProduct("0x0e+0x1o", "0x0e", lmax=1), "irreps_in1: block 0 .0x0e."),
])
def test_zero_width_specs_are_refused_naming_the_argument(build, message):
    """A zero-width operand used to build a spec that compiled and then failed on the first call
    with a stride error from TVM; it is refused when the spec is made."""
    with pytest.raises(ValueError, match=message):
        build()


def test_a_spec_without_paths_is_still_a_spec():
    tp = TensorProduct("2x0e", "1x0e", "2x0e", [])
    assert tp.weight_numel == 0 and not tp.reference(np.ones((3, 2)), np.ones((3, 1))).any()


@pytest.mark.parametrize("field, value, message", [
    ("in1_var", "x", "expected a list of numbers, got 'x'"),
    ("in1_var", [1.0, "x"], "expected a list of numbers"),
    ("in2_var", [1.0], "needs one variance per block"),
    ("out_var", [1.0, -1.0, 1.0], "must be finite and >= 0"),
    ("irreps_in1", "2x0e+", "bad irreps '2x0e\\+': empty term"),
    ("irreps_in2", "1x1q+1x2e", "bad irreps"),
    ("irreps_out", 5, "expected an irreps string, got 5"),
    ("irreps_in1", "0x0e+2x1o", "block 0 .0x0e. has multiplicity 0"),
    ("instructions", "none", "expected a list of instructions"),
    ("instructions", [[1, 1, 0, "uvu"]], "instruction 0 .* expected .i_in1, i_in2, i_out, mode"),
    ("instructions", [7], "entry 0 must be a list"),
    ("instructions", [[1, 1, 0, ["uvu"], True]], "instruction 0 .*unknown connection mode"),
    ("instructions", [[1, 9, 0, "uvu", True]], "instruction 0 .*i_in2=9 is not a block index"),
    ("instructions", [[1, 1, 0, "uvu", True, "x"]], "instruction 0 .*path_weight must be a finite number"),
    ("irrep_normalization", None, "expected one of"),
    ("path_normalization", "bad", "must be one of"),
    ("shared_weights", 1, "expected true or false, got 1"),
])
def test_spec_json_errors_name_the_field(field, value, message):
    data = _tp().to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=f"^spec field '{field}': {message}"):
        TensorProduct.from_json(json.dumps(data))
    del data[field]
    with pytest.raises(ValueError, match=f"^spec field '{field}': missing"):
        TensorProduct.from_dict(data)
