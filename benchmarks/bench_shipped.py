"""Per preset, side by side in one run: the default schedule as it was (assembled from per-path
buffers), the default now (in place), the shipped schedule this machine gets (its own CPU's, or a
kindred CPU's: the source column names it) and a schedule tuned here in a short run.

Every kernel is checked against the float64 reference first; the kernels of a preset are then
timed in turns, ``--rounds`` times (median of each kernel's rounds), since a shared machine's
speed drifts from one minute to the next. The user's cache is not read or written (a
temporary one is used), so "shipped" is what a new user of this machine gets.

    python benchmarks/bench_shipped.py [--presets mace-l2 fc-small] [--trials 8] [--rounds 3]
                                       [--batch N]

``--trials 0`` leaves the tuned-here column out (a tuning run costs a few minutes per preset on
2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

import tpc
from tpc.testing import machine, median_seconds
from tpc.verify import random_inputs, relative_error, tolerance

DEFAULT_PRESETS = ["mace-l1", "mace-l2", "mace-small-l2", "nequip", "fc-small", "gaunt-L2", "gaunt-L4",
                   "mace-conv-0e1o"]


def kernels(name: str, batch: int, trials: int, folder: Path) -> dict[str, tpc.Kernel]:
    """The kernels to compare, by column: compiled before the tuning run, which fills the cache."""
    preset = tpc.presets.get(name)
    columns = {}
    if tpc.schedule.default_config("cpu")["in_place"] and tpc.Product(preset.tp).default_algorithm == "cg":
        columns["assembled"] = tpc.compile(preset.tp, batch=batch, schedule={"in_place": False})
    columns["default"] = tpc.compile(preset.tp, batch=batch, schedule="default")
    columns["shipped"] = tpc.compile(preset.tp, batch=batch)
    if trials:
        result = tpc.tune(preset.tp, batch=batch, trials=trials, log=folder / f"{name}.jsonl", progress=False)
        best = result.best
        columns["tuned"] = tpc.compile(preset.tp, batch=batch, schedule={"algorithm": best.algorithm,
                                                                       "config": best.config})
    return columns


def bench(name: str, batch: int | None, trials: int, rounds: int, folder: Path) -> dict:
    preset = tpc.presets.get(name)
    batch = batch or preset.batch
    columns = kernels(name, batch, trials, folder)
    x1, x2, weight = random_inputs(preset.tp, batch, np.random.default_rng(0), np.float32)
    check = slice(0, min(batch, 64))
    expected = preset.tp.reference(x1[check], x2[check], None if weight is None else
                                   (weight if preset.tp.shared_weights else weight[check]))
    out = np.empty((batch, preset.tp.irreps_out.dim), np.float32)
    for label, kernel in columns.items():
        error = relative_error(kernel(x1, x2, weight)[check], expected)
        if not error < tolerance("float32"):
            raise AssertionError(f"{name}: the {label} kernel differs from the reference by {error:.1e}")
    times: dict[str, list[float]] = {label: [] for label in columns}
    for _ in range(rounds):
        for label, kernel in columns.items():
            times[label].append(median_seconds(lambda: kernel(x1, x2, weight, out=out), min_seconds=0.3))
    return {"name": name, "batch": batch, "seconds": {label: statistics.median(t) for label, t in times.items()},
            "source": columns["shipped"].schedule.source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS, choices=tpc.presets.names())
    parser.add_argument("--batch", type=int, help="override each preset's batch size")
    parser.add_argument("--trials", type=int, default=8, help="trials of the tuning run here (0: no such column)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of timing in turns")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-shipped-"))
    os.environ["TPC_CACHE"] = str(folder / "cache")  # not the user's: what a new user gets
    print(f"machine: {machine()}")
    print(f"float32 forward, ms per call (median of {args.rounds} rounds timed in turns); 'assembled' is the "
          f"default before in-place became the default; 'tuned' is {args.trials} trials here"
          + ("" if args.trials else " (left out: --trials 0)") + "\n")
    header = (f"{'preset':<15} {'batch':>6} {'assembled':>10} {'default':>9} {'shipped':>9} {'tuned':>9} "
              f"{'dflt/shp':>8} {'shp/tuned':>9}  shipped schedule from")
    print(header)
    print("-" * len(header))
    for name in args.presets:
        row = bench(name, args.batch, args.trials, args.rounds, folder)
        ms = {label: f"{seconds * 1e3:.3f}" for label, seconds in row["seconds"].items()}
        seconds = row["seconds"]
        ratio = seconds["default"] / seconds["shipped"]
        tuned = f"{seconds['shipped'] / seconds['tuned']:.2f}" if "tuned" in seconds else "-"
        print(f"{name:<15} {row['batch']:>6} {ms.get('assembled', '-'):>10} {ms['default']:>9} {ms['shipped']:>9} "
              f"{ms.get('tuned', '-'):>9} {ratio:>8.2f} {tuned:>9}  {row['source']}", flush=True)


if __name__ == "__main__":
    main()
