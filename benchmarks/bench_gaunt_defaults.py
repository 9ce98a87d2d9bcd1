"""Gaunt presets by the three algorithms with their default schedules, timed side by side.

For each preset: the Clebsch-Gordan kernel (``tpc.compile(tp, schedule="default")``) and the
spherical-grid and 2D Fourier kernels with their default CPU schedules, float32, numpy inputs
and ``out=``, on the same inputs. Each output is checked against the float64 reference first.
The kernels are timed in interleaved rounds (one call each per round) and the median is
reported, so that load from other processes falls on all of them alike.

    python benchmarks/bench_gaunt_defaults.py [--presets gaunt-L2 gaunt-L6 gaunt-L10] [--batch 10000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import tvm
from bench_default import machine

import tpc
from tpc.build import PASS_CONFIG
from tpc.lower import lower_fourier, lower_grid
from tpc.schedule.gaunt import (
    FOURIER_SPACE,
    GRID_SPACE,
    apply_fourier,
    apply_grid,
    lowering_options,
)
from tpc.testing import random_inputs, relative_error

DTYPE = "float32"


def gaunt_kernel(tp: tpc.TensorProduct, algorithm: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """``run(x1, x2, out)`` for the grid or Fourier kernel with its default schedule."""
    space, lower, apply = {"grid": (GRID_SPACE, lower_grid, apply_grid),
                           "fourier": (FOURIER_SPACE, lower_fourier, apply_fourier)}[algorithm]
    config = space.default()
    lowered = lower(tp, DTYPE, **lowering_options(config))
    with tvm.transform.PassContext(opt_level=3, config=PASS_CONFIG):
        executable = tvm.compile(apply(lowered, config).mod, target=tpc.resolve_target("host").tvm_target())
    main, tables = executable.mod["main"], lowered.tables
    return lambda x1, x2, out: main(x1, x2, out, *tables)


def bench(name: str, batch: int, rounds: int) -> dict[str, float]:
    tp = tpc.presets.get(name).tp
    x1, x2, _ = random_inputs(tp, batch, np.random.default_rng(0), np.float32)
    expected = tp.reference(x1, x2)
    cg = tpc.compile(tp, batch=batch, dtype=DTYPE, schedule="default")
    kernels = {"cg": lambda a, b, out: cg(a, b, out=out)}
    kernels |= {algorithm: gaunt_kernel(tp, algorithm) for algorithm in ("grid", "fourier")}
    out = np.empty((batch, tp.irreps_out.dim), DTYPE)
    for algorithm, run in kernels.items():
        out.fill(np.nan)
        run(x1, x2, out)
        error = relative_error(out, expected)
        if not error < 1e-4:
            raise AssertionError(f"{name} {algorithm}: relative error {error:.2e}")
    times: dict[str, list[float]] = {algorithm: [] for algorithm in kernels}
    for _ in range(rounds):
        for algorithm, run in kernels.items():
            start = time.perf_counter()
            run(x1, x2, out)
            times[algorithm].append(time.perf_counter() - start)
    return {algorithm: statistics.median(values) for algorithm, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["gaunt-L2", "gaunt-L6", "gaunt-L10"])
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(machine())
    print(f"batch {args.batch}, {DTYPE}, median of {args.rounds} interleaved rounds, milliseconds")
    print(f"{'preset':<10} {'cg':>10} {'grid':>10} {'fourier':>10} {'cg/grid':>8} {'cg/fourier':>10}")
    for name in args.presets:
        ms = {algorithm: seconds * 1e3 for algorithm, seconds in bench(name, args.batch, args.rounds).items()}
        print(f"{name:<10} {ms['cg']:>10.3f} {ms['grid']:>10.3f} {ms['fourier']:>10.3f} "
              f"{ms['cg'] / ms['grid']:>8.2f} {ms['cg'] / ms['fourier']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
