"""An exported tensor product in onnxruntime, with and without the tpc library, against tpc itself.

For one preset (default mace-l2, batch 10000, float32), on the same inputs in one run:
onnxruntime running the model's fallback function (standard ONNX operators), onnxruntime
with the tpc custom-op library registered, and tpc's kernel called directly, allocating its
output or writing into a preallocated one. The kernel is ``tpc.compile``'s (the cached tuned
schedule when there is one) and the library is built from it. onnxruntime gets as many
intra-op threads as tpc's thread pool (TVM_NUM_THREADS, set to the usable cores unless given).
Every route is checked against the float64 reference before it is timed.

    python benchmarks/bench_onnx.py [--preset mace-l2] [--batch 10000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

import tpc
from tpc.export import build_ort_library, export_onnx
from tpc.targets import host_cores
from tpc.testing import machine
from tpc.verify import random_inputs, relative_error, tolerance

WARMUP = 3
TOLERANCE = tolerance("float32")


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` in milliseconds over ``repeats`` calls after the warm-up."""
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def session(model: Path, threads: int, library: Path | None) -> ort.InferenceSession:
    """An onnxruntime CPU session with ``threads`` intra-op threads, the library registered if given."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if library is not None:
        options.register_custom_ops_library(str(library))
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mace-l2")
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per route, after warm-up")
    args = parser.parse_args()
    threads = int(os.environ.get("TVM_NUM_THREADS") or host_cores())
    os.environ["TVM_NUM_THREADS"] = str(threads)

    tp = tpc.presets.get(args.preset).tp
    x1, x2, weight = random_inputs(tp, args.batch, np.random.default_rng(0), np.float32)
    kernel = tpc.compile(tp, batch=args.batch, dtype="float32")
    with tempfile.TemporaryDirectory() as folder:
        library = build_ort_library(kernel, Path(folder) / "tp.so")
        model = Path(folder) / "tp.onnx"
        export_onnx(tp, model, dtype="float32", algorithm=kernel.schedule.algorithm)
        fallback, with_library = session(model, threads, None), session(model, threads, library)
    feeds = {"x1": x1, "x2": x2} | ({} if weight is None else {"weight": weight})
    out = np.empty((args.batch, tp.irreps_out.dim), np.float32)
    routes = {
        "onnxruntime, fallback function": lambda: fallback.run(None, feeds)[0],
        "onnxruntime, tpc library": lambda: with_library.run(None, feeds)[0],
        "tpc": lambda: kernel(x1, x2, weight),
        "tpc, out= preallocated": lambda: kernel(x1, x2, weight, out=out),
    }

    check = slice(0, min(args.batch, 64))
    expected = tp.reference(x1[check], x2[check], None if weight is None else
                            (weight if tp.shared_weights else weight[check]))
    for name, run in routes.items():
        error = relative_error(run()[check], expected)
        if not error < TOLERANCE:
            raise AssertionError(f"{name} differs from the reference by {error:.1e}")

    print(f"machine: {machine()}")
    print(f"onnxruntime {ort.__version__}; {threads} intra-op threads for onnxruntime and tpc alike "
          f"(the machine's usable cores unless TVM_NUM_THREADS says otherwise)")
    print(f"{args.preset}, batch {args.batch}, float32, {tp.flops(args.batch) / 1e9:.3f} GFLOP; tpc kernel: "
          f"algorithm {kernel.schedule.algorithm}, schedule from {kernel.schedule.source}")
    print(f"median of {args.repeats} calls after {WARMUP} warm-up calls, each route in its own block; "
          "onnxruntime allocates its output on every call\n")
    header = f"{'route':<32} {'ms':>9} {'GFLOP/s':>9} {'speed-up vs fallback':>21}"
    print(header)
    print("-" * len(header))
    baseline = None
    for name, run in routes.items():
        ms = median_ms(run, args.repeats)
        baseline = baseline or ms
        print(f"{name:<32} {ms:>9.2f} {tp.flops(args.batch) / ms / 1e6:>9.2f} {baseline / ms:>20.2f}x", flush=True)


if __name__ == "__main__":
    main()
