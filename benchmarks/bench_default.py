"""Default (untuned) tpc kernels against e3nn and plain numpy, measured side by side.

For each preset: tpc's default x86 kernel, e3nn 0.6.0 (torch on the CPU, forward only) and
numpy einsum over dense coupling tensors, all in float32 on the same inputs, in one run.
Each result is checked against the float64 reference before it is timed.

    python benchmarks/bench_default.py [--presets mace-l2 fc-small] [--threads 2] [--batch N]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

import tpc
from tpc.ops.tensor_product import einsum_forward
from tpc.targets import host_cores
from tpc.testing import e3nn_module, machine, median_seconds
from tpc.verify import random_inputs, relative_error, tolerance

DEFAULT_PRESETS = ["mace-l1", "mace-l2", "mace-small-l2", "nequip", "fc-small", "gaunt-L2", "gaunt-L4"]


def bench(name: str, batch: int | None) -> dict:
    preset = tpc.presets.get(name)
    tp, batch = preset.tp, batch or preset.batch
    x1, x2, weight = random_inputs(tp, batch, np.random.default_rng(0), np.float32)
    kernel = tpc.compile(tp, batch=batch, target="x86", dtype="float32", schedule="default")
    module = e3nn_module(tp).float()
    tensors = [torch.from_numpy(a) for a in (x1, x2, weight) if a is not None]

    def e3nn_call():
        with torch.no_grad():
            return module(*tensors)

    def numpy_call():
        return einsum_forward(tp, x1, x2, weight)

    def tpc_call():
        return kernel(x1, x2, weight)

    check = slice(0, min(batch, 64))
    expected = tp.reference(x1[check], x2[check], None if weight is None else
                            (weight if tp.shared_weights else weight[check]))
    for label, call in (("tpc", tpc_call), ("e3nn", e3nn_call), ("numpy", numpy_call)):
        result = np.asarray(call())[check]
        error = relative_error(result, expected)
        if not error < tolerance("float32"):
            raise AssertionError(f"{name}: {label} differs from the reference by {error:.1e}")
    seconds = {label: median_seconds(call) for label, call in
               (("tpc", tpc_call), ("e3nn", e3nn_call), ("numpy", numpy_call))}
    return {"name": name, "batch": batch, "gflop": tp.flops(batch) / 1e9, **seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for e3nn")
    parser.add_argument("--batch", type=int, help="override each preset's batch size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TVM_NUM_THREADS", str(host_cores()))
    print(f"machine: {machine()}")
    print("float32 forward, median wall time per call (output allocation included)\n")
    header = (f"{'preset':<14} {'batch':>6} {'GFLOP':>7} {'tpc ms':>9} {'e3nn ms':>9} {'numpy ms':>9} "
              f"{'tpc GFLOP/s':>11} {'e3nn/tpc':>9} {'numpy/tpc':>9}")
    print(header)
    print("-" * len(header))
    for name in args.presets:
        row = bench(name, args.batch)
        print(f"{row['name']:<14} {row['batch']:>6} {row['gflop']:>7.3f} {row['tpc'] * 1e3:>9.2f} "
              f"{row['e3nn'] * 1e3:>9.2f} {row['numpy'] * 1e3:>9.2f} {row['gflop'] / row['tpc']:>11.2f} "
              f"{row['e3nn'] / row['tpc']:>9.2f} {row['numpy'] / row['tpc']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
