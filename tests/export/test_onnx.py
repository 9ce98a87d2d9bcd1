"""ONNX export: the node contract, and the function fallback in stock onnxruntime against the reference."""

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tpc
from tpc import TensorProduct
from tpc.cli import main
from tpc.export import export_onnx
from tpc.testing import e3nn_forward, foundation_cases
from tpc.verify import random_inputs, relative_error, tolerance

SPECS = {
    "uvw-shared": tpc.FullyConnectedTensorProduct("3x0e+2x1o", "2x0e+2x1o", "2x0e+3x1o+2x2e"),
    "uvw-per-sample-empty-block": TensorProduct(
        "2x0e+3x1o", "2x1o", "4x1o+3x3e+2x1e", [(0, 0, 0, "uvw", True), (1, 0, 2, "uvw", True, 0.5)],
        shared_weights=False),
    "uvu-per-sample": tpc.ChannelwiseTensorProduct("5x0e+5x1o+5x2e", "1x0e+1x1o+1x2e", 2),
    "uvu-shared-and-unweighted": TensorProduct(
        "4x1o+4x2e", "3x1o", "4x0e+4x1e+4x2o+4x1o",
        [(0, 0, 0, "uvu", True), (0, 0, 1, "uvu", False), (1, 0, 2, "uvu", True), (1, 0, 3, "uvu", True)]),
    "uvv": TensorProduct(
        "3x1o+2x0e", "2x1o+2x2e", "2x0e+2x1e+2x2e",
        [(0, 0, 0, "uvv", True), (0, 0, 2, "uvv", False), (1, 1, 2, "uvv", True), (0, 0, 1, "uvv", True)],
        shared_weights=False),
    "uuw-weighted": TensorProduct(
        "3x1o+3x2e", "3x1o+3x0e", "2x0e+4x1e+2x2e+1x2o",
        [(0, 0, 0, "uuw", True), (0, 0, 1, "uuw", True), (1, 0, 3, "uuw", True), (1, 1, 2, "uuw", True)],
        shared_weights=False),
    "uuw-unweighted": TensorProduct(
        "4x1o+4x2e", "4x1o", "1x0e+1x1e+1x2o+1x3o", [(0, 0, 0, "uuw", False), (0, 0, 1, "uuw", False),
                                                     (1, 0, 2, "uuw", False), (1, 0, 3, "uuw", False)]),
    "uuu-shared": TensorProduct(
        "3x1o+3x2e", "3x1o+3x2e", "3x0e+3x1e+3x2e",
        [(0, 0, 0, "uuu", True), (1, 1, 2, "uuu", False, 2.0), (1, 1, 1, "uuu", True), (0, 0, 2, "uuu", True)]),
    "uvuv": TensorProduct(
        "2x0e+2x1o", "3x1o", "6x1o+6x0e+6x2e",
        [(0, 0, 0, "uvuv", True), (1, 0, 1, "uvuv", False), (1, 0, 2, "uvuv", True)], shared_weights=False),
    "gaunt-L3-no-weights": tpc.presets.get("gaunt-L3").tp,
    "mixed-modes-summed-blocks": TensorProduct(
        "2x0e+2x1o", "2x1o+2x0e", "2x1o+2x0e+1x2e",
        [(0, 0, 0, "uvu", True), (1, 1, 0, "uuu", True), (1, 0, 1, "uvw", True), (1, 0, 2, "uvw", True),
         (1, 1, 0, "uvv", False), (0, 1, 1, "uuw", True)],
        irrep_normalization="norm", path_normalization="path", in1_var=[0.5, 2.0], shared_weights=False),
}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x1, x2, weight) -> np.ndarray:
    feeds = {"x1": x1, "x2": x2} | ({} if weight is None else {"weight": weight})
    return session.run(None, feeds)[0]


def test_the_specs_cover_every_mode_and_weight_layout():
    tps = list(SPECS.values())
    assert {ins.connection_mode for tp in tps for ins in tp.instructions} == set(tpc.ops.MODES)
    assert any(tp.weight_numel == 0 for tp in tps)
    assert {tp.shared_weights for tp in tps if tp.weight_numel} == {True, False}
    assert any(len({ins.i_out for ins in tp.instructions}) < len(tp.irreps_out) for tp in tps)


@pytest.mark.parametrize("shared", [True, False])
def test_model_contract(shared):
    tp = tpc.ChannelwiseTensorProduct("3x0e+3x1o", "0e+1o", 1, shared_weights=shared)
    model = export_onnx(tp, dtype="float64")
    onnx.checker.check_model(model, full_check=True)
    assert {(entry.domain, entry.version) for entry in model.opset_import} >= {("ai.tpc", 1)}
    assert any(entry.domain == "" for entry in model.opset_import)

    (node,) = model.graph.node
    assert (node.domain, node.op_type) == ("ai.tpc", "TensorProduct")
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    assert attributes == {"spec": tp.to_json().encode(), "fingerprint": tp.fingerprint.encode(),
                          "algorithm": b"cg", "dtype": b"float64"}
    initializers = {tensor.name for tensor in model.graph.initializer}
    assert list(node.input[:3]) == ["x1", "x2", "weight"] and set(node.input[3:]) == initializers
    assert list(node.output) == ["y"]

    def shape(value):
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    inputs = {value.name: value for value in model.graph.input}
    assert list(inputs) == ["x1", "x2", "weight"]
    assert shape(inputs["x1"]) == ["batch", tp.irreps_in1.dim] and shape(inputs["x2"]) == ["batch", tp.irreps_in2.dim]
    assert shape(inputs["weight"]) == ([tp.weight_numel] if shared else ["batch", tp.weight_numel])
    (output,) = model.graph.output
    assert output.name == "y" and shape(output) == ["batch", tp.irreps_out.dim]
    assert {value.type.tensor_type.elem_type for value in (*model.graph.input, output)} == {onnx.TensorProto.DOUBLE}

    (function,) = model.functions
    assert (function.domain, function.name) == ("ai.tpc", "TensorProduct")
    assert list(function.input) == list(node.input) and list(function.output) == ["y"]
    assert "Einsum" not in {body_node.op_type for body_node in function.node}
    assert all(body_node.domain == "" for body_node in function.node)


def test_a_product_without_weights_has_no_weight_input(tmp_path):
    tp = tpc.presets.get("gaunt-L3").tp
    path = tmp_path / "gaunt.onnx"
    export_onnx(tp, path, algorithm="grid")
    model = onnx.load(path)
    (node,) = model.graph.node
    assert [value.name for value in model.graph.input] == ["x1", "x2"]
    assert list(node.input[:2]) == ["x1", "x2"] and "weight" not in node.input
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    assert attributes["algorithm"] == b"grid" and attributes["dtype"] == b"float32"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", SPECS)
def test_onnxruntime_equals_the_reference(name, dtype):
    tp = SPECS[name]
    model = export_onnx(tp, dtype=dtype)
    onnx.checker.check_model(model, full_check=True)
    session = _session(model)
    rng = np.random.default_rng(11)
    for batch in (1, 7, 33):
        x1, x2, weight = random_inputs(tp, batch, rng, dtype)
        result = _run(session, x1, x2, weight)
        assert result.dtype == np.dtype(dtype) and result.shape == (batch, tp.irreps_out.dim)
        assert relative_error(result, tp.reference(x1, x2, weight)) < tolerance(dtype), f"batch {batch}"


@pytest.mark.parametrize("case", foundation_cases(per_mode=2, mixed=2), ids=lambda case: case.name)
def test_onnxruntime_equals_e3nn(case):
    session = _session(export_onnx(case.tp, dtype="float64"))
    x1, x2, weight = random_inputs(case.tp, 5, np.random.default_rng(5), "float64")
    assert relative_error(_run(session, x1, x2, weight), e3nn_forward(case.tp, x1, x2, weight)) < tolerance("float64")


@pytest.mark.parametrize("name", ["uvw-shared", "uvw-per-sample-empty-block", "uuw-weighted", "gaunt-L3-no-weights"])
def test_a_batch_of_zero_samples(name):
    tp = SPECS[name]
    x1, x2, weight = random_inputs(tp, 0, np.random.default_rng(0), "float32")
    assert _run(_session(export_onnx(tp)), x1, x2, weight).shape == (0, tp.irreps_out.dim)


def test_mace_runs_in_a_process_without_tpc_or_tvm(tmp_path):
    tp = tpc.presets.get("mace-l2").tp
    x1, x2, weight = random_inputs(tp, 1000, np.random.default_rng(2), "float32")
    export_onnx(tp, tmp_path / "mace.onnx")
    for name, array in (("x1", x1), ("x2", x2), ("weight", weight)):
        np.save(tmp_path / f"{name}.npy", array)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import onnxruntime as ort

        folder = {str(tmp_path)!r}
        session = ort.InferenceSession(folder + "/mace.onnx", providers=["CPUExecutionProvider"])
        feeds = {{name: np.load(f"{{folder}}/{{name}}.npy") for name in ("x1", "x2", "weight")}}
        np.save(folder + "/y.npy", session.run(None, feeds)[0])
        loaded = [name for name in ("tpc", "tvm") if name in sys.modules]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert relative_error(np.load(tmp_path / "y.npy"), tp.reference(x1, x2, weight)) < tolerance("float32")


def test_cli_writes_a_model_that_loads(tmp_path, capsys):
    path = tmp_path / "fc.onnx"
    assert main(["export-onnx", "--preset", "fc-small", "--dtype", "float64", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "fc-small" in out and f"{path.stat().st_size:,} bytes" in out
    tp = tpc.presets.get("fc-small").tp
    x1, x2, weight = random_inputs(tp, 3, np.random.default_rng(1), "float64")
    result = _run(_session(onnx.load(path)), x1, x2, weight)
    assert relative_error(result, tp.reference(x1, x2, weight)) < tolerance("float64")


@pytest.mark.parametrize("dtype", ["float16", "int32", "double"])
def test_a_bad_dtype_is_named(dtype):
    with pytest.raises(ValueError, match=f"'{dtype}'"):
        export_onnx(SPECS["uvuv"], dtype=dtype)


def test_an_algorithm_that_does_not_compute_the_product_is_refused():
    with pytest.raises(ValueError, match="'grid'"):
        export_onnx(SPECS["uvuv"], algorithm="grid")
