"""An exported mace-l2 model gives tpc's outputs in onnxruntime, with and without the tpc library.

Four routes on the same float32 inputs (batch 1000, fixed seed): the model in stock
onnxruntime (its fallback function), the model with the tpc custom-op library registered,
tpc's compiled kernel called directly, and the float64 reference. Both onnxruntime routes run
in fresh interpreters that never import tpc or TVM. Agreement is measured as the maximum
absolute difference relative to the largest |y| of the reference (``relative_error``); the
float32 tolerance of :data:`tpc.verify.TOLERANCES` (1e-4) leaves float32 rounding (about 1e-6
here) a wide margin and still catches any wrong path, coefficient or weight, which moves outputs
by order one.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

import tpc
from tpc.export import build_ort_library, export_onnx
from tpc.verify import random_inputs, relative_error, tolerance

TOLERANCE = tolerance("float32")
BATCH = 1000
MACE = tpc.presets.get("mace-l2").tp
OTHER = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)

# Runs one model in onnxruntime, optionally with a custom-op library, and writes its output
# (or the error message) next to the inputs; fails if tpc or TVM were imported.
RUNNER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime as ort
    model, library, inputs, output, result = sys.argv[1:]
    options = ort.SessionOptions()
    if library:
        options.register_custom_ops_library(library)
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        np.save(output, session.run(None, dict(np.load(inputs)))[0])
        error = None
    except Exception as caught:
        error = str(caught)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("tpc", "tvm", "tvm_ffi"))
    assert not loaded, loaded
    json.dump({"error": error}, open(result, "w"))
""")


def in_fresh_onnxruntime(folder, name, model, library, feeds):
    """``model``'s output in a new interpreter that imports only onnxruntime and numpy, or
    the error message of session creation or run."""
    inputs, output, result = folder / f"{name}.npz", folder / f"{name}.npy", folder / f"{name}.json"
    np.savez(inputs, **feeds)
    argv = [sys.executable, "-c", RUNNER, str(model), str(library or ""), str(inputs), str(output), str(result)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    error = json.loads(result.read_text())["error"]
    return np.load(output) if error is None else error


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """mace-l2 compiled, its library and model written, and the seeded inputs."""
    folder = tmp_path_factory.mktemp("mace-onnx")
    kernel = tpc.compile(MACE, batch=BATCH, dtype="float32")
    library = build_ort_library(kernel, folder / "mace.so")
    model = folder / "mace.onnx"
    export_onnx(MACE, model, dtype="float32", algorithm=kernel.schedule.algorithm)
    x1, x2, weight = random_inputs(MACE, BATCH, np.random.default_rng(20240917), "float32")
    return {"folder": folder, "kernel": kernel, "library": library, "model": model,
            "feeds": {"x1": x1, "x2": x2, "weight": weight}}


def test_mace_l2_agrees_in_onnxruntime_with_and_without_the_library_and_in_tpc(exported):
    folder, feeds = exported["folder"], exported["feeds"]
    outputs = {
        "stock onnxruntime": in_fresh_onnxruntime(folder, "stock", exported["model"], None, feeds),
        "onnxruntime + tpc library": in_fresh_onnxruntime(folder, "library", exported["model"], exported["library"],
                                                          feeds),
        "tpc": exported["kernel"](feeds["x1"], feeds["x2"], feeds["weight"]),
    }
    reference = MACE.reference(feeds["x1"], feeds["x2"], feeds["weight"])
    for name, output in outputs.items():
        assert isinstance(output, np.ndarray), f"{name}: {output}"
        assert output.dtype == np.float32 and output.shape == (BATCH, MACE.irreps_out.dim), name
        assert relative_error(output, reference) < TOLERANCE, name
    names = list(outputs)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert relative_error(outputs[first], outputs[second]) < TOLERANCE, (first, second)


def test_a_library_built_for_another_op_is_refused(exported, tmp_path):
    """The library replaces the model's fallback function, so a mismatch is an error, not a
    silent fallback, and the message names both products."""
    other = build_ort_library(tpc.compile(OTHER, dtype="float32"), tmp_path / "other.so")
    feeds = {name: array[:4] for name, array in exported["feeds"].items()}
    message = in_fresh_onnxruntime(tmp_path, "other", exported["model"], other, feeds)
    assert isinstance(message, str), "the model ran with a library built for another product"
    assert (f"this library was built for the tensor product with fingerprint {OTHER.fingerprint}, "
            f"the node computes the one with fingerprint {MACE.fingerprint}") in message


def test_registering_a_missing_library_raises(tmp_path):
    missing = tmp_path / "missing.so"
    with pytest.raises(Exception, match="Failed to load library") as raised:
        ort.SessionOptions().register_custom_ops_library(str(missing))
    assert str(missing) in str(raised.value)
