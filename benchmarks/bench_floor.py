"""How close a product's kernels are to the memory floor: read every input once, write the output.

For one preset (default mace-l2, batch 10000, float32), in one run: a TVM kernel that only
reads x1, x2 and the weights and writes an output of the product's size (the least memory
traffic any unfused kernel needs), the default schedule, and the schedule ``tpc.compile``
picks (tuned or shipped when cached), all writing into a preallocated output.

    python benchmarks/bench_floor.py [--preset mace-l2] [--batch 10000] [--repeats 20]
"""

from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
import tvm
from tvm import s_tir, te

import tpc
from tpc.build import compile_tir
from tpc.lower.tir_edits import element_aligned
from tpc.testing import machine, median_seconds
from tpc.verify import random_inputs


def traffic_kernel(tp: tpc.TensorProduct, batch: int) -> Callable[..., None]:
    """``out[b, c] = x1[b, c % d1] + x2[b, c % d2] + w[b, c % nw]``: every input read, the output written."""
    shapes = tp.input_shapes(batch)
    placeholders = [te.placeholder(shapes[name], "float32", name=name) for name in ("x1", "x2", "weight")]
    x1, x2, weight = placeholders
    shared = tp.shared_weights

    def value(b, c):
        w = weight[c % tp.weight_numel] if shared else weight[b, c % tp.weight_numel]
        return x1[b, c % tp.irreps_in1.dim] + x2[b, c % tp.irreps_in2.dim] + w

    out = te.compute((batch, tp.irreps_out.dim), value, name="out")
    sch = s_tir.Schedule(element_aligned(te.create_prim_func([*placeholders, out]), "float32"))
    rows, columns = sch.get_loops(sch.get_sblock("out"))
    sch.parallel(sch.split(rows, [None, 8])[0])
    sch.vectorize(sch.split(columns, [None, 16])[1])
    return compile_tir(sch.mod, tpc.resolve_target("host"))["main"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mace-l2")
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tp = tpc.presets.get(args.preset).tp
    if not tp.weight_numel:
        raise SystemExit(f"{args.preset} has no weights; this floor kernel reads x1, x2 and the weights")
    arrays = random_inputs(tp, args.batch, np.random.default_rng(0), np.float32)
    out = np.empty((args.batch, tp.irreps_out.dim), np.float32)
    floor = traffic_kernel(tp, args.batch)
    default = tpc.compile(tp, batch=args.batch, schedule="default")
    chosen = tpc.compile(tp, batch=args.batch)
    megabytes = (sum(a.nbytes for a in arrays) + out.nbytes) / 1e6
    print(f"machine: {machine()}")
    print(f"{args.preset}, batch {args.batch}, float32, {megabytes:.0f} MB read and written; "
          f"median of {args.repeats}; TVM workers: {tvm.get_global_func('runtime.NumThreads')()}")
    rows = [("memory floor (read inputs, write output)", lambda: floor(*arrays, out)),
            ("default schedule", lambda: default(*arrays, out=out)),
            (f"tpc.compile's schedule ({chosen.schedule.source})", lambda: chosen(*arrays, out=out))]
    times = {name: 1e3 * median_seconds(run, min_runs=args.repeats, min_seconds=0) for name, run in rows}
    base = times[rows[0][0]]
    print(f"\n{'kernel':<44}{'ms':>9}{'GB/s':>8}{'x floor':>9}")
    for name, ms in times.items():
        print(f"{name:<44}{ms:>9.2f}{megabytes / ms:>8.1f}{ms / base:>9.2f}")


if __name__ == "__main__":
    main()
