"""Export a tensor product to ONNX and run it in onnxruntime, with and without tpc's kernel.

The model runs in stock onnxruntime through its fallback function (standard ONNX operators).
Registering the custom-op library built from the compiled kernel makes onnxruntime run tpc's
kernel instead, with no TVM needed at run time. The same files from the command line:
tpc export-onnx --preset mace-l2 -o mace.onnx --ort-library mace.so

Run: python examples/export_onnx.py [PRESET]
"""

import sys
import tempfile
import timeit
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

import tpc
from tpc.export import build_ort_library, export_onnx

name = sys.argv[1] if len(sys.argv) > 1 else "mace-l2"
tp = tpc.presets.get(name).tp
batch = 1000
rng = np.random.default_rng(0)
x1 = rng.standard_normal((batch, tp.irreps_in1.dim), dtype=np.float32)
x2 = rng.standard_normal((batch, tp.irreps_in2.dim), dtype=np.float32)
weight = rng.standard_normal(tp.input_shapes(batch)["weight"], dtype=np.float32) if tp.weight_numel else None
feeds = {"x1": x1, "x2": x2} | ({"weight": weight} if tp.weight_numel else {})


def milliseconds(run, repeats=10):
    """Best wall time of ``run`` over ``repeats`` calls, after one warm-up call."""
    run()
    return 1e3 * min(timeit.repeat(run, number=1, repeat=repeats))


kernel = tpc.compile(tp, batch=batch, dtype="float32")
expected = kernel(x1, x2, weight)
with tempfile.TemporaryDirectory() as folder:
    model = str(Path(folder) / f"{name}.onnx")
    export_onnx(tp, model, algorithm=kernel.schedule.algorithm)
    library = build_ort_library(kernel, Path(folder) / f"{name}.so")
    with_library = ort.SessionOptions()
    with_library.register_custom_ops_library(str(library))
    sessions = {
        "onnxruntime (fallback function)": ort.InferenceSession(model, providers=["CPUExecutionProvider"]),
        "onnxruntime + tpc library": ort.InferenceSession(model, with_library, providers=["CPUExecutionProvider"]),
    }

print(f"{name} ({tpc.presets.get(name).description}), batch {batch}, float32")
kernel_label = f"tpc kernel ({kernel.schedule.algorithm})"
print(f"  {kernel_label:<34} {milliseconds(lambda: kernel(x1, x2, weight)):8.2f} ms")
for label, session in sessions.items():
    difference = np.abs(session.run(None, feeds)[0] - expected).max()
    ms = milliseconds(partial(session.run, None, feeds))
    print(f"  {label:<34} {ms:8.2f} ms   max |difference to tpc| = {difference:.2e}")
