"""Gaunt products by Clebsch-Gordan, 2D Fourier and spherical grid, default and tuned, side by side.

For each degree L and channel count: the Gaunt product of two degree-L signals, output up
to degree L, batch 10000, float32, on this machine. One tuning run per problem searches the
three algorithms together (every algorithm's default measured first); the table gives, per
algorithm, the default and the best latency of that run, the FLOPs per sample of its lowered
function (TVM's estimate), and the tuner's choice, which ``tpc.compile`` then uses.

    python benchmarks/bench_gaunt.py [--degrees 1 2 ... 10] [--channels 1 32] [--trials 16] [--plot gaunt.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import tvm
from tvm.s_tir.analysis import estimate_tir_flops

import tpc
from tpc.lower.algorithms import lower
from tpc.ops import Product
from tpc.testing import machine

BATCH = 10000


def gaunt_problem(degree: int, channels: int) -> tpc.TensorProduct:
    signal = "+".join(f"{channels}x{l}{'eo'[l % 2]}" for l in range(degree + 1))
    return tpc.GauntTensorProduct(signal, signal, degree)


def flops_per_sample(tp: tpc.TensorProduct, algorithm: str) -> float:
    """TVM's FLOP estimate of the algorithm's default lowering, for one sample."""
    return float(estimate_tir_flops(tvm.IRModule({"main": lower(Product(tp), algorithm, batch=1).func})))


def tune_problem(tp: tpc.TensorProduct, trials: int, seed: int) -> tuple[dict[str, dict[str, float]], str, float]:
    """Per algorithm: default and best seconds of one joint tuning run; the winner; wall time."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TPC_CACHE"] = folder
        start = time.perf_counter()
        result = tpc.tune(tp, batch=BATCH, trials=trials, seed=seed, log=os.path.join(folder, "log.jsonl"),
                          progress=False)
        wall = time.perf_counter() - start
        chosen = tpc.compile(tp, batch=BATCH).schedule
    by_algorithm: dict[str, dict[str, float]] = {}
    for record in result.records:
        if not record.ok:
            continue
        row = by_algorithm.setdefault(record.algorithm, {"best": float("inf")})
        row["best"] = min(row["best"], record.seconds)
        if record.strategy == "default":
            row["default"] = record.seconds
    if chosen.algorithm != result.best.algorithm:
        raise AssertionError(f"compile chose {chosen.algorithm}, the tuning run's best was {result.best.algorithm}")
    return by_algorithm, result.best.algorithm, wall


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len({row["channels"] for row in rows}), figsize=(11, 4), squeeze=False)
    for axis, channels in zip(axes[0], sorted({row["channels"] for row in rows})):
        for algorithm in tpc.ALGORITHMS:
            points = [(row["degree"], row["times"][algorithm]["best"] * 1e3) for row in rows
                      if row["channels"] == channels and algorithm in row["times"]]
            if points:
                axis.plot(*zip(*points), marker="o", label=f"{algorithm} (tuned)")
        axis.set_yscale("log")
        axis.set_xlabel("degree L")
        axis.set_ylabel(f"ms per batch of {BATCH}")
        axis.set_title(f"Gaunt product, {channels} channel{'s' * (channels > 1)}")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--channels", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="gaunt.png", help="where to save latency against L (needs matplotlib)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"batch {BATCH}, float32, x86 (host); one tuning run of {args.trials} trials per problem\n")
    header = (f"{'L':>2} {'ch':>3} {'algorithm':<8} {'FLOP/sample':>12} {'default ms':>10} {'tuned ms':>9} "
              f"{'vs cg':>6}  choice")
    print(header)
    rows = []
    for channels in args.channels:
        for degree in args.degrees:
            tp = gaunt_problem(degree, channels)
            times, choice, wall = tune_problem(tp, args.trials, args.seed)
            rows.append({"degree": degree, "channels": channels, "times": times})
            for algorithm in tpc.ALGORITHMS:
                if algorithm not in times:
                    print(f"{degree:>2} {channels:>3} {algorithm:<8} (no successful measurement)")
                    continue
                row = times[algorithm]
                default = f"{row['default'] * 1e3:.3f}" if "default" in row else "-"
                speedup = times["cg"]["best"] / row["best"] if "cg" in times else float("nan")
                mark = f"<- tuner's choice ({wall:.0f} s)" if algorithm == choice else ""
                print(f"{degree:>2} {channels:>3} {algorithm:<8} {flops_per_sample(tp, algorithm):>12,.0f} "
                      f"{default:>10} {row['best'] * 1e3:>9.3f} {speedup:>6.2f}  {mark}", flush=True)
    try:
        plot(rows, args.plot)
        print(f"\nwrote {args.plot}")
    except ImportError:
        print('\nno plot: pip install "tpc[plot]"')


if __name__ == "__main__":
    main()
