"""tpc export-onnx --ort-library: the model and the library it writes load and run in onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import tpc
from tpc.cli import main
from tpc.verify import random_inputs, relative_error, tolerance

UVU = tpc.ChannelwiseTensorProduct("8x0e+8x1o+8x2e", "0e+1o+2e", 2)


def run_model(model: onnx.ModelProto, library, tp, batch=9):
    """Output of ``model`` in onnxruntime (with ``library`` registered when given) and the reference."""
    options = ort.SessionOptions()
    if library is not None:
        options.register_custom_ops_library(str(library))
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x1, x2, weight = random_inputs(tp, batch, np.random.default_rng(3), "float32")
    feeds = {"x1": x1, "x2": x2} | ({} if weight is None else {"weight": weight})
    return session.run(None, feeds)[0], tp.reference(x1, x2, weight)


def without_fallback(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its fallback function: only a registered library can run its node."""
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.functions[:]
    return stripped


def node_attribute(model: onnx.ModelProto, name: str) -> str:
    (node,) = model.graph.node
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name).decode()


def test_writes_a_model_and_a_library_that_load(tmp_path, capsys):
    spec = tmp_path / "conv.json"
    spec.write_text(UVU.to_json())
    model_path, library_path = tmp_path / "conv.onnx", tmp_path / "conv.so"
    assert main(["export-onnx", str(spec), "-o", str(model_path), "--ort-library", str(library_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"wrote {library_path}: onnxruntime library of conv.json (host, float32, algorithm cg")
    assert lines[1].startswith(f"wrote {model_path}: ONNX model of conv.json")
    model = onnx.load(model_path)
    assert node_attribute(model, "algorithm") == "cg"
    for library, loaded in ((None, model), (library_path, model), (library_path, without_fallback(model))):
        output, reference = run_model(loaded, library, UVU)
        assert relative_error(output, reference) < tolerance("float32")


def test_the_node_names_the_algorithm_of_the_kernel(tmp_path, capsys):
    """Without cached schedules a Gaunt product of degree 4 compiles with the grid algorithm."""
    tp = tpc.presets.get("gaunt-L4").tp
    model_path, library_path = tmp_path / "gaunt.onnx", tmp_path / "gaunt.so"
    assert main(["export-onnx", "--preset", "gaunt-L4", "-o", str(model_path), "--ort-library", str(library_path)]) == 0
    assert tpc.compile(tp, batch=tpc.presets.get("gaunt-L4").batch).schedule.algorithm == "grid"
    assert "algorithm grid" in capsys.readouterr().out
    model = onnx.load(model_path)
    assert node_attribute(model, "algorithm") == "grid"
    output, reference = run_model(without_fallback(model), library_path, tp)
    assert relative_error(output, reference) < tolerance("float32")


def test_a_library_for_another_target_is_an_error(tmp_path, capsys):
    model_path, library_path = tmp_path / "conv.onnx", tmp_path / "conv.so"
    argv = ["export-onnx", "--preset", "fc-small", "-o", str(model_path), "--ort-library", str(library_path),
            "--target", "arm"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("tpc: error: onnxruntime libraries run host CPU kernels") and "'arm'" in error
    assert not model_path.exists() and not library_path.exists()


@pytest.mark.parametrize("option,value", [("--target", "host"), ("--batch", "100")])
def test_kernel_options_without_a_library_are_an_error(tmp_path, capsys, option, value):
    assert main(["export-onnx", "--preset", "fc-small", "-o", str(tmp_path / "fc.onnx"), option, value]) == 2
    assert f"{option} selects the kernel of --ort-library" in capsys.readouterr().err
    assert not (tmp_path / "fc.onnx").exists()
