"""The tuner against random search and TVM MetaSchedule, same trial budget, side by side.

For each problem and seed: tpc with the XGBoost model, tpc with random search, and
MetaSchedule's ``tune_tir`` on tpc's own TE compute (batch fixed, since MetaSchedule needs a
static shape). Prints a row as each run ends, then per problem the best latency each run
reached, the trials each needed to reach 95% of the best overall, and wall time. Each run
starts with a fresh cache directory; the shipped schedules stay, as for a user who has just
installed tpc, so xgb's first round is ordered by what they say of other ops (never of the
tuned op, see :mod:`tpc.tune.prior`). ``--log-dir`` keeps tpc's tuning logs
(``tpc report`` plots them) and the re-timed latencies (below) per problem.

"xgb-warm" is tpc's XGBoost search for a user who has tuned other ops on the machine before:
its cache starts with the cost models that tuning the ``--warm-from`` problems (with xgb, same
budget, once per invocation) left behind, and nothing else.

Columns: "searched to 95%" leaves out the default schedules tpc measures first (the trials the
search itself needed, as for an op whose default is poor); "within 10%" counts the trials
within 10% of the best overall, which says more than the first hit where the best few
schedules differ by less than a measurement's noise. Below each table, per strategy, the
median over seeds of "searched to 95%"; for random search also the mean number of draws its
pooled rate of draws within 95% implies (its first hit is a geometric variable, so a few seeds
say little).

A shared machine drifts, so a run's recorded latencies also say when it ran (tpc's reference
record keeps one run's latencies comparable, not those of different runs). After a problem's
runs, every configuration a tpc run recorded within RETIME_WITHIN of that run's best recording
is built again and re-timed side by side: in RETIME_ROUNDS turns with the best recording, in
RETIME_PASSES passes over the configurations in random orders, then RETIME_TOP_PASSES more
passes over those within RETIME_TOP of the best so re-timed; a configuration's latency is the
median over its passes. A second table judges each run's trials by these latencies (a trial
not re-timed: its recording times the run's median ratio of re-timed to recorded latency).
``--from-logs`` re-times and judges the tpc runs of an earlier invocation's ``--log-dir``
without running them again (their wall time is then the span of each log's timestamps);
MetaSchedule, if asked, runs anew.

A problem is a product preset (``tpc presets``) or a graph preset, whose fused kernels (cut
"gather+scatter" at the preset's sizes, batch = edges) are tuned one by one. MetaSchedule runs
on products only: a fused kernel reads its edges through index arrays and a data-dependent run
length, which its TE form cannot give it with static shapes.

MetaSchedule runs with its default LLVM rules except one: MultiLevelTiling's three write-cache
choices per reduction block are turned off, since its space generator multiplies them over the
blocks into more design spaces than it can initialize for a product with many path sums. It
tunes in a process of its own, stopped after ``--metaschedule-minutes`` with the trials
measured by then, since its search may go on looking for new schedules for as long as it is let.

    python benchmarks/bench_tuner.py [--problems mace-l2 fc-small] [--trials 64] [--seeds 0 1 2]
                                     [--strategies xgb random metaschedule xgb-warm]
                                     [--metaschedule-minutes 30] [--metaschedule-population 512]
                                     [--warm-from mace-small-l2 mace-l1] [--log-dir DIR]
    python benchmarks/bench_tuner.py --from-logs DIR [--problems ...] [--seeds ...] [--strategies ...]

Results: ``docs/measurements.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import tvm
from tvm.s_tir import meta_schedule as ms

import tpc
from tpc.build import compile_tir
from tpc.lower import lower_cg
from tpc.ops import Op, make_op
from tpc.records import Record, read_records
from tpc.testing import machine
from tpc.tune.graph import graph_tasks
from tpc.tune.measure import LocalRunner, MeasureInput
from tpc.tune.worker import prepare_timing, relative_timing
from tpc.verify import random_inputs, relative_error, tolerance

RETIME_WITHIN = 1.15
RETIME_ROUNDS = 3
RETIME_PASSES = 3
"""Passes of the re-timing, minutes apart, a configuration's latency the median over them: a
single pass, or the mean of two, can catch one configuration in a slow minute."""
RETIME_TOP = 1.10
RETIME_TOP_PASSES = 3
"""More passes over the configurations within RETIME_TOP of the best after the first passes:
where the best few differ by less than the noise of one pass, the fastest of them is whichever
pass came out lowest unless they are timed more often."""


@dataclass(frozen=True)
class Problem:
    """One kernel to tune: a product (fusion None) or a fused product, at ``batch`` rows or edges."""

    name: str
    tp: tpc.TensorProduct
    batch: int
    fusion: Optional[str] = None

    @property
    def op(self) -> Op:
        """The op tuned: the product, or the product fused with ``fusion``."""
        return make_op(self.tp, fusion=self.fusion)


@dataclass(frozen=True)
class Run:
    """One strategy's trials: latency per trial (inf for errors), wall time, re-timed best
    (MetaSchedule), which trials measured a default schedule (tpc measures those first), and
    what each trial measured (tpc: :func:`config_key`)."""

    latencies: list[float]
    wall: float
    retimed: Optional[float]
    defaults: tuple[bool, ...]
    configs: tuple[str, ...] = ()

    def searched(self) -> list[float]:
        """The latencies of the trials the search chose, defaults left out."""
        return [latency for latency, default in zip(self.latencies, self.defaults) if not default]


def problems(name: str) -> list[Problem]:
    """The problems a name stands for: a product preset, or the fused kernels of a graph preset."""
    if name in tpc.presets.names():
        preset = tpc.presets.get(name)
        return [Problem(name, preset.tp, preset.batch)]
    graph = tpc.presets.get_graph(name)
    tasks = [task for task in graph_tasks(graph.graph, graph.sizes) if task.fusion]
    return [Problem(f"{name} {'+'.join(task.nodes)} ({task.fusion})", task.tp, task.batch, task.fusion)
            for task in tasks]


STRATEGIES = ("xgb", "random", "metaschedule", "xgb-warm")


def tpc_run(problem: Problem, trials: int, strategy: str, seed: int, log: Path,
            models: Optional[Path] = None) -> Run:
    """tpc's trials, logged to ``log``, from a cache holding nothing but a copy of the cost
    models in ``models`` (if given)."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TPC_CACHE"] = folder
        if models is not None:
            shutil.copytree(models, Path(folder) / "models")
        start = time.perf_counter()
        result = tpc.tune(problem.op, batch=problem.batch, trials=trials, strategy=strategy, seed=seed, log=log,
                          progress=False)
        wall = time.perf_counter() - start
    return tpc_records_run(result.records, wall)


def tpc_records_run(records: Sequence[Record], wall: float) -> Run:
    """The run that a tpc tuning's records (in trial order) make."""
    return Run([r.seconds if r.ok else float("inf") for r in records], wall, None,
               tuple(r.strategy == "default" for r in records),
               tuple(config_key(r.algorithm, r.config) for r in records))


def logged_run(log: Path) -> Run:
    """The run an earlier invocation logged, its wall time the span of the log's timestamps."""
    records = read_records(log) if log.exists() else []
    if not records:
        raise SystemExit(f"{log}: no tuning log with records (--from-logs reads what --log-dir kept)")
    stamps = [datetime.fromisoformat(r.timestamp.replace("Z", "+00:00")) for r in records]
    return tpc_records_run(records, (max(stamps) - min(stamps)).total_seconds())


def config_key(algorithm: str, config: dict) -> str:
    """One schedule of a problem, as a string."""
    return json.dumps([algorithm, config], sort_keys=True)


def retime(problem: Problem, runs: dict[tuple[str, int], Run]) -> dict[str, float]:
    """Re-time side by side the configurations each tpc run recorded within :data:`RETIME_WITHIN`
    of its own best recording: each in turns with the best recording overall
    (:data:`RETIME_ROUNDS` turns), in :data:`RETIME_PASSES` passes over the configurations in
    random orders, then :data:`RETIME_TOP_PASSES` over those within :data:`RETIME_TOP` of the
    best; seconds per configuration the median over passes of its median ratio to that anchor,
    times the anchor's median seconds over all turns."""
    recorded: dict[str, float] = {}
    chosen: set[str] = set()
    for run in runs.values():
        run_best = min(run.latencies, default=float("inf"))
        for key, latency in zip(run.configs, run.latencies):
            recorded[key] = min(recorded.get(key, float("inf")), latency)
            if latency <= RETIME_WITHIN * run_best:
                chosen.add(key)
    if not chosen:
        return {}
    best = min(recorded.values())
    keys = sorted(chosen)
    target = tpc.resolve_target("host").tvm_dict
    inputs = [MeasureInput(problem.op.to_dict(), target, "float32", problem.batch, *json.loads(key)) for key in keys]
    runner, rng = LocalRunner(), np.random.default_rng(0)
    anchor = keys.index(min(keys, key=recorded.__getitem__))
    ratios: dict[str, list[float]] = {keys[anchor]: [1.0]}
    anchor_seconds = []
    with tempfile.TemporaryDirectory() as folder:
        libraries = [Path(folder) / f"candidate{i}.so" for i in range(len(keys))]
        built = [i for i, answer in enumerate(runner.build(inputs, libraries)) if "error" not in answer]
        anchor_timing = prepare_timing(runner.run_job(libraries[anchor], inputs[anchor]))
        timed = [i for i in built if i != anchor]
        for passes in (RETIME_PASSES, RETIME_TOP_PASSES):
            for _ in range(passes):
                for i in rng.permutation(timed):
                    ratio, seconds = relative_timing(prepare_timing(runner.run_job(libraries[i], inputs[i])),
                                                     anchor_timing, RETIME_ROUNDS)
                    ratios.setdefault(keys[i], []).append(ratio)
                    anchor_seconds.append(seconds)
            fastest = min(float(np.median(values)) for values in ratios.values())
            timed = [i for i in timed if np.median(ratios[keys[i]]) <= RETIME_TOP * fastest]
    scale = float(np.median(anchor_seconds)) if anchor_seconds else best
    return {key: float(np.median(values)) * scale for key, values in ratios.items()}


def warm_models(sources: Sequence[Problem], trials: int, folder: Path, log_dir: Path) -> Path:
    """Tune each source problem with xgb in a cache at ``folder``; return its cost-model directory."""
    os.environ["TPC_CACHE"] = str(folder)
    for problem in sources:
        start = time.perf_counter()
        result = tpc.tune(problem.op, batch=problem.batch, trials=trials, strategy="xgb", seed=0,
                          log=log_dir / f"warm-from-{file_name(problem.name)}.jsonl", progress=False)
        best = min((r.seconds for r in result.records if r.ok), default=float("inf"))
        print(f"warm-from {problem.name}: best {best * 1e3:.3f} ms, {time.perf_counter() - start:.0f} s", flush=True)
    return folder / "models"


def metaschedule_rules() -> list:
    """MetaSchedule's default LLVM rules, MultiLevelTiling without its write-cache choices (see the docstring)."""
    return [ms.schedule_rule.MultiLevelTiling(structure="SSRSRS", max_innermost_factor=64)
            if isinstance(rule, ms.schedule_rule.MultiLevelTiling) else rule
            for rule in ms.schedule_rule.ScheduleRule.create("llvm")]


def metaschedule_run(problem: Problem, trials: int, seed: int, minutes: float, population: int) -> Run:
    """MetaSchedule's trials on the product's TE compute, and the re-timed latency of its best.

    It tunes in a process of its own, stopped after ``minutes`` with what its database holds
    by then (with its builders and runners, which share its process group); ``population``:
    its evolutionary search's population size.
    """
    tp, batch = problem.tp, problem.batch
    func = lower_cg(tp, batch=batch).func
    target = tpc.resolve_target("host").tvm_target()
    with tempfile.TemporaryDirectory() as work_dir:
        start = time.perf_counter()
        tuning = multiprocessing.get_context("spawn").Process(
            target=metaschedule_tune, args=(tp.to_dict(), batch, trials, seed, population, work_dir))
        tuning.start()
        tuning.join(minutes * 60)
        if tuning.is_alive():
            os.killpg(tuning.pid, signal.SIGKILL)
            tuning.join()
            print(f"  metaschedule seed {seed}: stopped after {minutes:g} min", flush=True)
        wall = time.perf_counter() - start
        database = ms.database.JSONDatabase(work_dir=work_dir)
        latencies = [float(np.median([float(s) for s in r.run_secs])) if r.run_secs else float("inf")
                     for r in database.get_all_tuning_records()]
        if not any(np.isfinite(latencies)):
            return Run(latencies, wall, None, (False,) * len(latencies))
        schedule = ms.tir_integration.compile_tir(database, func, target)
    function = compile_tir(schedule.mod, tpc.resolve_target("host"))
    x1, x2, weight = random_inputs(tp, batch, np.random.default_rng(0), np.float32)
    out = np.zeros((batch, tp.irreps_out.dim), np.float32)
    args = [a for a in (x1, x2, weight) if a is not None] + [out]
    function["main"](*args)
    check = slice(0, 16)
    error = relative_error(out[check], tp.reference(x1[check], x2[check],
                                                    weight if tp.shared_weights else weight[check]))
    if not error < tolerance("float32"):
        raise AssertionError(f"MetaSchedule's best schedule is wrong: {error:.1e}")
    tensors = [tvm.runtime.tensor(a) for a in args]
    best = function.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=5, min_repeat_ms=40)(*tensors).median
    return Run(latencies, wall, best, (False,) * len(latencies))


def metaschedule_tune(spec: dict, batch: int, trials: int, seed: int, population: int, work_dir: str) -> None:
    """MetaSchedule's ``tune_tir`` of a product, its records in ``work_dir``'s JSON database
    (the body of :func:`metaschedule_run`'s tuning process, leader of its own process group)."""
    os.setpgrp()
    func = lower_cg(tpc.TensorProduct.from_dict(spec), batch=batch).func
    ms.tune_tir(func, tpc.resolve_target("host").tvm_target(), work_dir, max_trials_global=trials,
                num_trials_per_iter=min(trials, 16), builder=ms.builder.LocalBuilder(timeout_sec=300), seed=seed,
                space=ms.space_generator.PostOrderApply(sch_rules=metaschedule_rules()),
                strategy=ms.search_strategy.EvolutionarySearch(population_size=population))


def trials_to_reach(latencies: list[float], threshold: float) -> str:
    """The 1-based trial at which the best so far first reaches ``threshold``, or "never"."""
    running = np.minimum.accumulate(latencies) if latencies else []
    hits = [i + 1 for i, value in enumerate(running) if value <= threshold]
    return str(hits[0]) if hits else "never"


def file_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.+-`` made one dash."""
    return re.sub(r"[^\w.+-]+", "-", text).strip("-")


def best_ms(run: Run) -> str:
    """The run's best latency in ms, or "none" when it measured nothing."""
    return f"{min(run.latencies) * 1e3:.3f}" if run.latencies else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["mace-l2", "fc-small"],
                        help="product presets, or graph presets (their fused kernels)")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES[:3]))
    parser.add_argument("--warm-from", nargs="+", default=["mace-small-l2", "mace-l1"],
                        help="problems whose tuning warm-starts xgb-warm's cost model (none of --problems)")
    parser.add_argument("--metaschedule-minutes", type=float, default=30,
                        help="stop a MetaSchedule run after this long, with the trials it has measured")
    parser.add_argument("--metaschedule-population", type=int, default=512,
                        help="population of MetaSchedule's evolutionary search (512, its default)")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep tpc's tuning logs here")
    parser.add_argument("--from-logs", type=Path, default=None,
                        help="re-time and judge the tpc runs logged in this --log-dir of an earlier invocation "
                             "instead of running them")
    args = parser.parse_args()
    if args.from_logs is not None:
        if not args.from_logs.is_dir():
            parser.error(f"--from-logs {args.from_logs}: no such folder")
        args.log_dir = args.from_logs
    targets = [p for name in args.problems for p in problems(name)]
    warm = "xgb-warm" in args.strategies
    sources = [p for name in args.warm_from for p in problems(name)] if warm else []
    overlap = {p.name for p in sources} & {p.name for p in targets}
    if overlap:
        parser.error(f"--warm-from must not include a tuned problem: {sorted(overlap)}")
    print(f"machine: {machine()}")
    source = f"runs logged in {args.from_logs}" if args.from_logs else f"budget {args.trials} trials"
    print(f"{source}, seeds {args.seeds}, float32, x86 (host)\n", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        log_dir = args.log_dir or Path(scratch)
        log_dir.mkdir(parents=True, exist_ok=True)
        models = None
        if warm and args.from_logs is None:
            models = warm_models(sources, args.trials, Path(scratch) / "warm", log_dir)
        for problem in targets:
            print(f"{problem.name} (batch {problem.batch})", flush=True)
            runs: dict[tuple[str, int], Run] = {}
            for seed in args.seeds:
                for strategy in args.strategies:
                    if args.from_logs is not None and strategy != "metaschedule":
                        run = logged_run(log_path(log_dir, problem, strategy, seed))
                    else:
                        run = strategy_run(problem, strategy, args.trials, seed, log_dir, models,
                                           (args.metaschedule_minutes, args.metaschedule_population))
                    if run is not None:
                        runs[(strategy, seed)] = run
                        print(f"  done: {strategy} seed {seed}: {len(run.latencies)} trials, best {best_ms(run)} ms, "
                              f"{run.wall:.0f} s", flush=True)
            print("  as recorded during each run:")
            report(runs)
            start = time.perf_counter()
            retimed = retime(problem, runs)
            print(f"  re-timed side by side ({len(retimed)} configurations, {RETIME_PASSES} passes of "
                  f"{RETIME_ROUNDS} turns each with the best recording, {RETIME_TOP_PASSES} more within "
                  f"{RETIME_TOP:g}x of the best, {time.perf_counter() - start:.0f} s):")
            (log_dir / f"{file_name(problem.name)}-retimed.json").write_text(json.dumps(retimed, indent=1))
            report({name: judged_by(run, retimed) for name, run in runs.items()})


def strategy_run(problem: Problem, strategy: str, trials: int, seed: int, log_dir: Path,
                 models: Optional[Path], metaschedule: tuple[float, int]) -> Optional[Run]:
    """One run of a strategy (see :data:`STRATEGIES`); None for MetaSchedule on a fused kernel;
    ``metaschedule``: MetaSchedule's minutes and population (see :func:`metaschedule_run`)."""
    if strategy == "metaschedule":
        return metaschedule_run(problem, trials, seed, *metaschedule) if problem.fusion is None else None
    log = log_path(log_dir, problem, strategy, seed)
    log.unlink(missing_ok=True)
    if strategy == "xgb-warm":
        return tpc_run(problem, trials, "xgb", seed, log, models)
    return tpc_run(problem, trials, strategy, seed, log)


def log_path(log_dir: Path, problem: Problem, strategy: str, seed: int) -> Path:
    """Where a tpc run's tuning log is kept."""
    return log_dir / f"{file_name(problem.name)}-{strategy}-seed{seed}.jsonl"


def judged_by(run: Run, retimed: dict[str, float]) -> Run:
    """The run with each trial's latency replaced by its re-timed one, where there is one, and
    the others scaled from the run's recordings to the re-timing (by the median ratio of its
    re-timed trials); MetaSchedule's runs (no configurations) keep only their re-timed best.

    Scaled, a trial not re-timed stays more than RETIME_WITHIN slower than its run's best, as
    the run measured it; unscaled, a recording from a fast minute could pass for a fast kernel.
    """
    if not run.configs:
        return Run([run.retimed] if run.retimed else [], run.wall, run.retimed, (False,) if run.retimed else ())
    ratios = [retimed[key] / latency for key, latency in zip(run.configs, run.latencies) if key in retimed]
    scale = float(np.median(ratios)) if ratios else 1.0
    latencies = [retimed.get(key, latency * scale) for key, latency in zip(run.configs, run.latencies)]
    return Run(latencies, run.wall, None, run.defaults, run.configs)


def report(runs: dict[tuple[str, int], Run]) -> None:
    """The table of one problem's runs."""
    best_overall = min(min(run.latencies, default=float("inf")) for run in runs.values())
    print(f"  best overall {best_overall * 1e3:.3f} ms")
    print(f"  {'strategy':<13} {'seed':>4} {'best ms':>9} {'retimed ms':>10} {'trials to 95%':>14} "
          f"{'searched to 95%':>16} {'within 10%':>11} {'wall s':>8}")
    threshold = best_overall / 0.95
    for (strategy, seed), run in runs.items():
        retimed = f"{run.retimed * 1e3:.3f}" if run.retimed else "-"
        print(f"  {strategy:<13} {seed:>4} {best_ms(run):>9} {retimed:>10} "
              f"{trials_to_reach(run.latencies, threshold):>14} {trials_to_reach(run.searched(), threshold):>16} "
              f"{sum(latency <= best_overall / 0.9 for latency in run.latencies):>11} {run.wall:>8.0f}", flush=True)
    summarize(runs, threshold)
    print(flush=True)


def summarize(runs: dict[tuple[str, int], Run], threshold: float) -> None:
    """Per strategy, the median over seeds of the searched trials to ``threshold``; for random
    search, also the mean it implies: its trials are uniform draws, so the share of them at or
    under ``threshold``, pooled over seeds, estimates the chance p of one draw, and 1/p the
    draws it needs on average, a steadier figure than the first hits of a few seeds."""
    for strategy in dict.fromkeys(strategy for strategy, _ in runs):
        searched = [run.searched() for (name, _), run in runs.items() if name == strategy]
        firsts = [trials_to_reach(latencies, threshold) for latencies in searched]
        median = np.median([float(first) if first != "never" else np.inf for first in firsts])
        line = f"  {strategy}: median searched to 95% {median:g}" if np.isfinite(median) else \
            f"  {strategy}: median searched to 95% never"
        if strategy == "random":
            hits, draws = sum(value <= threshold for run in searched for value in run), sum(map(len, searched))
            mean = f"{draws / hits:.1f}" if hits else f"more than {draws}"
            line += f"; {hits} of {draws} draws within 95% of the best, so {mean} draws on average"
        print(line, flush=True)


if __name__ == "__main__":
    main()
