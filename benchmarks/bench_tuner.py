"""The tuner against random search and TVM MetaSchedule, same trial budget, side by side.

For each problem and seed: tpc with the XGBoost model, tpc with random search, and
MetaSchedule's ``tune_tir`` on tpc's own TE compute (batch fixed, since MetaSchedule needs a
static shape). Prints the best latency each reached, the trials each needed to reach 95%
of the best overall, and wall time. Each strategy starts cold (a fresh cache directory).

    python benchmarks/bench_tuner.py [--problems mace-l2 fc-small] [--trials 64] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

import tpc
from tpc.build import PASS_CONFIG
from tpc.lower import lower_cg
from tpc.testing import machine, random_inputs, relative_error


def tpc_run(tp, batch: int, trials: int, strategy: str, seed: int) -> tuple[list[float], float]:
    """Latency of every trial (inf for errors) and the wall time, from a cold cache."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TPC_CACHE"] = folder
        start = time.perf_counter()
        result = tpc.tune(tp, batch=batch, trials=trials, strategy=strategy, seed=seed,
                          log=os.path.join(folder, "log.jsonl"), progress=False)
        wall = time.perf_counter() - start
    return [r.seconds if r.ok else float("inf") for r in result.records], wall


def metaschedule_run(tp, batch: int, trials: int, seed: int) -> tuple[list[float], float, float]:
    """MetaSchedule's per-trial latencies, wall time, and the re-timed latency of its best."""
    func = lower_cg(tp, batch=batch).func
    target = tpc.resolve_target("host").tvm_target()
    with tempfile.TemporaryDirectory() as work_dir:
        start = time.perf_counter()
        database = ms.tune_tir(func, target, work_dir, max_trials_global=trials, num_trials_per_iter=min(trials, 16),
                               builder=ms.builder.LocalBuilder(timeout_sec=300), seed=seed)
        wall = time.perf_counter() - start
        latencies = [float(np.median([float(s) for s in r.run_secs])) if r.run_secs else float("inf")
                     for r in database.get_all_tuning_records()]
        schedule = ms.tir_integration.compile_tir(database, func, target)
    with tvm.transform.PassContext(opt_level=3, config=PASS_CONFIG):
        function = tvm.compile(schedule.mod, target=target)
    x1, x2, weight = random_inputs(tp, batch, np.random.default_rng(0), np.float32)
    out = np.zeros((batch, tp.irreps_out.dim), np.float32)
    args = [a for a in (x1, x2, weight) if a is not None] + [out]
    function["main"](*args)
    check = slice(0, 16)
    error = relative_error(out[check], tp.reference(x1[check], x2[check],
                                                    weight if tp.shared_weights else weight[check]))
    if error > 1e-4:
        raise AssertionError(f"MetaSchedule's best schedule is wrong: {error:.1e}")
    tensors = [tvm.runtime.tensor(a) for a in args]
    best = function.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=5, min_repeat_ms=40)(*tensors).median
    return latencies, wall, best


def trials_to_reach(latencies: list[float], threshold: float) -> str:
    running = np.minimum.accumulate(latencies) if latencies else []
    hits = [i + 1 for i, value in enumerate(running) if value <= threshold]
    return str(hits[0]) if hits else "never"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["mace-l2", "fc-small"])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--skip-metaschedule", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"budget {args.trials} trials, seeds {args.seeds}, float32, x86 (host)\n")
    for name in args.problems:
        preset = tpc.presets.get(name)
        runs = {}
        for seed in args.seeds:
            for strategy in ("xgb", "random"):
                runs[(strategy, seed)] = (*tpc_run(preset.tp, preset.batch, args.trials, strategy, seed), None)
            if not args.skip_metaschedule:
                runs[("metaschedule", seed)] = metaschedule_run(preset.tp, preset.batch, args.trials, seed)
        best_overall = min(min(latencies) for latencies, _, _ in runs.values())
        print(f"{name} (batch {preset.batch}): best overall {best_overall * 1e3:.3f} ms")
        print(f"  {'strategy':<13} {'seed':>4} {'best ms':>9} {'retimed ms':>10} {'trials to 95%':>14} {'wall s':>8}")
        for (strategy, seed), (latencies, wall, retimed) in runs.items():
            retimed_text = f"{retimed * 1e3:.3f}" if retimed else "-"
            print(f"  {strategy:<13} {seed:>4} {min(latencies) * 1e3:>9.3f} {retimed_text:>10} "
                  f"{trials_to_reach(latencies, best_overall / 0.95):>14} {wall:>8.0f}", flush=True)
        print()


if __name__ == "__main__":
    main()
