"""onnxruntime custom-op libraries built from compiled kernels, run where no TVM is imported."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tpc
from tpc.export import ort_library
from tpc.export.ort_library import build_ort_library
from tpc.verify import random_inputs, relative_error, tolerance

UVU = tpc.ChannelwiseTensorProduct("8x0e+8x1o+8x2e", "0e+1o+2e", 2)
GAUNT = tpc.presets.get("gaunt-L2").tp
ELEMENT_TYPES = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}

# Runs the models of plan.json in a fresh interpreter that imports only onnxruntime and numpy;
# each case's output (or error message) is written back for the test to check.
RUNNER = """
import json, sys
import numpy as np
import onnxruntime as ort
results = {}
for case in json.load(open("plan.json")):
    options = ort.SessionOptions()
    if case["library"]:
        options.register_custom_ops_library(case["library"])
    try:
        session = ort.InferenceSession(case["model"], options, providers=["CPUExecutionProvider"])
        feeds = dict(np.load(case["inputs"]))
        np.save(case["output"], session.run(None, feeds)[0])
        results[case["name"]] = None
    except Exception as error:
        results[case["name"]] = str(error)
assert "tvm" not in sys.modules and "tvm_ffi" not in sys.modules and "tpc" not in sys.modules, sorted(sys.modules)
json.dump(results, open("results.json", "w"))
"""


def make_model(tp, dtype, path, extras=0, static_dims=True, identity_fallback=False, name="tp0"):
    """A model with one ai.tpc::TensorProduct node, written by hand; its model-local fallback
    function, when asked for, returns x1 (a stand-in that tells which of the two ran)."""
    element = ELEMENT_TYPES[dtype]
    inputs = ["x1", "x2"] + (["weight"] if tp.weight_numel else []) + [f"coefficient{i}" for i in range(extras)]
    node = helper.make_node("TensorProduct", inputs, ["y"], name=name, domain="ai.tpc", spec=tp.to_json(),
                            fingerprint=tp.fingerprint, algorithm="cg", dtype=dtype)
    shapes = tp.input_shapes(-1)

    def dims(name):
        return ["batch" if d < 0 else d if static_dims else f"{name}_{i}" for i, d in enumerate(shapes[name])]

    graph_inputs = [helper.make_tensor_value_info(n, element, dims(n)) for n in inputs[:3 if tp.weight_numel else 2]]
    coefficients = [numpy_helper.from_array(np.full((2, 3), i, np.int64 if i % 2 else dtype), f"coefficient{i}")
                    for i in range(extras)]
    graph = helper.make_graph([node], "tensor_product", graph_inputs,
                              [helper.make_tensor_value_info("y", element, ["batch", tp.irreps_out.dim])],
                              initializer=coefficients)
    fallback = helper.make_function("ai.tpc", "TensorProduct", inputs, ["y"],
                                    [helper.make_node("Identity", ["x1"], ["y"])], [helper.make_opsetid("", 21)],
                                    attributes=["spec", "fingerprint", "algorithm", "dtype"])
    model = helper.make_model(graph, ir_version=10, functions=[fallback] if identity_fallback else [],
                              opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.tpc", 1)])
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """Libraries for a per-sample-weighted uvu product (float32, float64) and an unweighted
    Gaunt product through the grid algorithm (whose constant tables are embedded)."""
    folder = tmp_path_factory.mktemp("ort-libraries")
    kernels = {"uvu32": tpc.compile(UVU, dtype="float32"), "uvu64": tpc.compile(UVU, dtype="float64"),
               "gaunt32": tpc.compile(GAUNT, dtype="float32", algorithm="grid")}
    assert kernels["gaunt32"].tables
    return {name: build_ort_library(kernel, folder / f"{name}.so") for name, kernel in kernels.items()}


def run_in_onnxruntime(folder, cases):
    """Run ``cases`` ((name, model, library or None, feeds)) in a fresh interpreter without
    tpc or TVM; return name -> output array or error message."""
    plan = []
    for name, model, library, feeds in cases:
        np.savez(folder / f"{name}.npz", **feeds)
        plan.append({"name": name, "model": str(model), "library": library and str(library),
                     "inputs": str(folder / f"{name}.npz"), "output": str(folder / f"{name}.npy")})
    (folder / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run([sys.executable, "-c", RUNNER], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads((folder / "results.json").read_text())
    return {name: np.load(folder / f"{name}.npy") if error is None else error for name, error in results.items()}


def feeds_for(tp, batch, dtype, rng):
    x1, x2, weight = random_inputs(tp, batch, rng, dtype)
    return {"x1": x1, "x2": x2} | ({} if weight is None else {"weight": weight})


def test_library_links_no_tvm(libraries):
    for library in libraries.values():
        linked = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout
        assert "tvm" not in linked, linked
        symbols = subprocess.run(["nm", "-D", str(library)], capture_output=True, text=True, check=True).stdout
        exported = [line.split()[-1] for line in symbols.splitlines() if line.split()[-2] in "TDB"]
        assert exported == ["RegisterCustomOps"]
        assert "TVM" not in symbols


def test_matches_reference_without_tvm(libraries, tmp_path, rng):
    """Per-sample weights with two ignored coefficient inputs, float64, embedded tables, zero
    batch; the Gaunt model also has a fallback function, which the library must replace."""
    cases, expected = [], {}
    for name, tp, dtype, extras in [("uvu32", UVU, "float32", 2), ("uvu64", UVU, "float64", 0),
                                    ("gaunt32", GAUNT, "float32", 1)]:
        for batch in (37, 0):
            feeds = feeds_for(tp, batch, dtype, rng)
            model = make_model(tp, dtype, tmp_path / f"{name}.onnx", extras=extras, identity_fallback=name == "gaunt32")
            cases.append((f"{name}-{batch}", model, libraries[name], feeds))
            reference = tp.reference(**feeds) if batch else np.zeros((0, tp.irreps_out.dim))
            expected[f"{name}-{batch}"] = (reference, dtype)
    outputs = run_in_onnxruntime(tmp_path, cases)
    for name, (reference, dtype) in expected.items():
        output = outputs[name]
        assert isinstance(output, np.ndarray), f"{name}: {output}"
        assert output.dtype == dtype and output.shape == reference.shape
        assert relative_error(output, reference) < tolerance(dtype), name


def test_refuses_models_it_was_not_built_for(libraries, tmp_path, rng):
    unweighted = make_model(GAUNT, "float32", tmp_path / "gaunt.onnx")
    with_fallback = make_model(GAUNT, "float32", tmp_path / "fallback.onnx", identity_fallback=True)
    in_float64 = make_model(UVU, "float64", tmp_path / "uvu64.onnx")
    gaunt_feeds = feeds_for(GAUNT, 4, "float32", rng)
    outputs = run_in_onnxruntime(tmp_path, [
        ("other-op", unweighted, libraries["uvu32"], gaunt_feeds),
        ("other-dtype", in_float64, libraries["uvu32"], feeds_for(UVU, 4, "float64", rng)),
        ("no-library", unweighted, None, gaunt_feeds),
        ("fallback", with_fallback, None, gaunt_feeds),
    ])
    message = outputs["other-op"]
    assert isinstance(message, str)
    assert UVU.fingerprint in message and GAUNT.fingerprint in message and "'tp0'" in message
    assert "built for dtype float32, the node has dtype float64" in outputs["other-dtype"]
    assert isinstance(outputs["no-library"], str) and "TensorProduct" in outputs["no-library"]
    np.testing.assert_array_equal(outputs["fallback"], gaunt_feeds["x1"])


def test_wrong_input_shapes_are_clear_errors(libraries, tmp_path, rng):
    model = make_model(UVU, "float32", tmp_path / "dynamic.onnx", static_dims=False)
    good = feeds_for(UVU, 5, "float32", rng)
    outputs = run_in_onnxruntime(tmp_path, [
        ("good", model, libraries["uvu32"], good),
        ("x2", model, libraries["uvu32"], good | {"x2": good["x2"][:, :8]}),
        ("weight", model, libraries["uvu32"], good | {"weight": good["weight"][:4]}),
    ])
    assert isinstance(outputs["good"], np.ndarray)
    assert "x2 must have shape (5, 9), got (5, 8)" in outputs["x2"]
    assert f"weight must have shape (5, {UVU.weight_numel}), got (4, {UVU.weight_numel})" in outputs["weight"]


def test_only_host_kernels(tmp_path):
    arm = tpc.compile(tpc.ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", 1), target="arm")
    with pytest.raises(ValueError, match="'arm'"):
        build_ort_library(arm, tmp_path / "arm.so")


def test_a_planted_link_at_a_guessable_temporary_name_is_not_followed(tmp_path, monkeypatch):
    """The library is written through a temporary file of an unpredictable name: a link planted
    at ``<library>.tmp`` keeps its target, and no temporary file is left behind."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "library.so"
    path.with_name("library.so.tmp").symlink_to(victim)

    def fake_compiler(command, what, cwd=None):
        Path(command[command.index("-o") + 1]).write_bytes(b"built library")
        return ""

    monkeypatch.setattr(ort_library, "_compiler", lambda: "c++")
    monkeypatch.setattr(ort_library, "ort_include_dir", lambda: tmp_path)
    monkeypatch.setattr(ort_library, "_kernel_objects", lambda kernel, folder: [])
    monkeypatch.setattr(ort_library, "_check_symbols", lambda objects: None)
    monkeypatch.setattr(ort_library, "_run", fake_compiler)
    assert build_ort_library(tpc.compile(UVU, batch=8), path) == path
    assert path.read_bytes() == b"built library" and victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["library.so", "library.so.tmp", "victim"]
