"""Tuning a graph: its tensor-product kernels as tasks that share one trial budget.

A graph is cut into kernels as :func:`tpc.graph.compiler.fuse_products` cuts it; every tensor
product, fused or not, is a task: one op (the product, or the product with its fusion) at one
size (the graph's row count for it). Identical tasks are tuned once and weighted by how often
the graph runs them. Each task is tuned by :func:`tpc.tune.tuner.tune` with its own log and
its records go to the schedule cache under the task's own op fingerprint, so a tuned task
serves every graph that contains it.

The budget is spent a round at a time, as Ansor's gradient task scheduler does: first one
round per task, then each round goes to the task whose tuning is expected to cut the graph's
time the most: its weight times the larger of its recent improvement per trial and an
optimistic guess (its best latency over the trials it has had).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from tpc.graph import Graph, TensorProductOp
from tpc.graph.compiler import FUSION_CHOICES, fuse_products, product_rows
from tpc.ops import Fused, Op, Product, TensorProduct
from tpc.targets import TargetSpec, resolve_target
from tpc.tune.measure import Runner
from tpc.tune.tuner import STRATEGIES, TuneResult, check_runs_here, default_log_path, tune

UNFUSED_AND_FUSED = ("none", "gather+scatter")
"""The two cuts a graph is usually tuned with: one kernel per node, and each product fused
with its gathers and scatter-sum (shipped schedules, ``tpc list``, the graph benchmark)."""
BACKWARD_SHARE = 0.2
"""Weight of a task's recent improvement against the optimistic guess (Ansor's alpha)."""


@dataclass(frozen=True)
class Task:
    """One kernel to tune: an op (a product, or a product fused with its neighbours) at ``batch``
    rows (edges), run ``count`` times per graph call; ``nodes`` names the graph's products it covers."""

    op: Op
    batch: int
    count: int
    nodes: tuple[str, ...]

    @property
    def tp(self) -> TensorProduct:
        """The product's spec."""
        return self.op.tp

    @property
    def fusion(self) -> Optional[str]:
        """What is fused into the product, None for a product alone."""
        return self.op.fusion if isinstance(self.op, Fused) else None

    @property
    def label(self) -> str:
        """Its graph nodes and fusion, for tables."""
        return f"{'+'.join(self.nodes)} ({self.fusion or 'product'}, {self.batch} rows)"


@dataclass
class TaskProgress:
    """A task's tuning so far: its latest result and its best latency after each round."""

    task: Task
    result: Optional[TuneResult] = None
    history: list[float] = field(default_factory=list)
    exhausted: bool = False

    @property
    def trials(self) -> int:
        return 0 if self.result is None else len(self.result.records)

    @property
    def best(self) -> Optional[float]:
        return None if self.result is None or self.result.best is None else self.result.best.seconds

    @property
    def default(self) -> Optional[float]:
        return None if self.result is None or self.result.default is None else self.result.default.seconds


@dataclass
class GraphTuneResult:
    """Every task's tuning, and the graph's tuned product time against its default."""

    tasks: list[TaskProgress]
    interrupted: bool = False
    error: Optional[str] = None
    """Why the run stopped early when a write failed (see :class:`tpc.tune.tuner.TuneResult`)."""

    def total(self, which: str) -> Optional[float]:
        """Seconds per graph call spent in the tasks' kernels, with their "default" or "best" schedules."""
        values = [(progress.task.count, getattr(progress, which)) for progress in self.tasks]
        if any(value is None for _, value in values):
            return None
        return sum(count * value for count, value in values)


def graph_tasks(graph: Graph, sizes: Mapping[str, int], fusion: str = "gather+scatter") -> list[Task]:
    """The tuning tasks of ``graph`` cut with ``fusion``, at the symbolic dim sizes ``sizes``."""
    if fusion not in FUSION_CHOICES:
        raise ValueError(f"fusion must be one of {FUSION_CHOICES}, got {fusion!r}")
    fused = {group.product.name: group.fusion for group in fuse_products(graph, fusion).fused}
    tasks: dict[tuple[str, int], Task] = {}
    for node in graph.nodes():
        if not isinstance(node.op, TensorProductOp):
            continue
        rows = product_rows(node, sizes)
        if rows is None:
            raise ValueError(f"give the size of dim {node.inputs[1].shape[0]!r} (product {node.name!r}); "
                             f"sizes has {sorted(sizes)}")
        fusion = fused.get(node.name)
        task = Task(Product(node.op.tp) if fusion is None else Fused(node.op.tp, fusion), rows, 1, (node.name,))
        known = tasks.get((task.op, task.batch))
        tasks[(task.op, task.batch)] = task if known is None else \
            Task(task.op, task.batch, known.count + 1, known.nodes + task.nodes)
    return list(tasks.values())


def tune_graph(graph: Graph, sizes: Mapping[str, int], target: Union[str, dict, TargetSpec] = "host",
               dtype: str = "float32", trials: int = 64, fusion: str = "gather+scatter", strategy: str = "xgb",
               log_dir: Union[str, Path] = "tuning_logs", seed: int = 0, runner: Optional[Runner] = None,
               round_size: int = 8, progress: bool = True) -> GraphTuneResult:
    """Tune the kernels of ``graph`` (cut with ``fusion``) at ``sizes`` with ``trials``
    measurements in all, shared between its tasks (see the module docstring).

    Each task's measurements go to its own log under ``log_dir`` and to the schedule cache,
    where :func:`tpc.compile_graph` finds them. Logs of earlier runs are resumed, so their
    measurements count as trials and are never repeated. Ctrl-C stops after the current round,
    and so does a failed write (``error`` says which file and why).

    Raises:
        ValueError: bad arguments, or a target whose kernels cannot run on this machine while
            no ``runner`` is given (refused before the first trial).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    spec = resolve_target(target)
    check_runs_here(spec, runner)
    tasks = [TaskProgress(task) for task in graph_tasks(graph, sizes, fusion)]
    if not tasks:
        raise ValueError("the graph has no tensor product to tune")
    if trials < len(tasks):
        raise ValueError(f"trials must be at least the number of tasks ({len(tasks)}), got {trials}")
    result = GraphTuneResult(tasks)
    spent = 0
    while spent < trials:
        progress_of = _next_task(tasks)
        if progress_of is None:
            break  # every task's space is measured
        task, before = progress_of.task, progress_of.trials
        goal = before + min(round_size, trials - spent)
        log = Path(log_dir) / default_log_path(task.op, spec, dtype, task.batch).name
        outcome = tune(task.op, batch=task.batch, target=spec, dtype=dtype, trials=goal, strategy=strategy, log=log,
                       resume=True, seed=seed, runner=runner, round_size=round_size, progress=False)
        progress_of.result = outcome
        progress_of.history.append(progress_of.best if progress_of.best is not None else float("inf"))
        progress_of.exhausted = progress_of.trials < goal
        spent += progress_of.trials - before
        if progress:
            _report(result, spent, trials)
        if outcome.interrupted:
            result.interrupted, result.error = True, outcome.error
            break
    if progress:
        print(file=sys.stderr)
    return result


def _next_task(tasks: list[TaskProgress]) -> Optional[TaskProgress]:
    """The task the next round goes to: an untuned one first, then the one with the largest
    expected saving per trial (see the module docstring)."""
    open_tasks = [progress for progress in tasks if not progress.exhausted]
    untried = [progress for progress in open_tasks if progress.result is None]
    if untried or not open_tasks:
        return untried[0] if untried else None

    def expected_saving(progress: TaskProgress) -> float:
        best = progress.best
        if best is None:
            return float("inf")  # no valid kernel yet: anything found saves the most
        recent = 0.0
        if len(progress.history) >= 2 and progress.history[-2] != float("inf"):
            recent = (progress.history[-2] - progress.history[-1]) / max(progress.trials, 1)
        optimistic = best / max(progress.trials, 1)
        return progress.task.count * (BACKWARD_SHARE * recent + (1 - BACKWARD_SHARE) * optimistic)

    return max(open_tasks, key=expected_saving)


def _report(result: GraphTuneResult, spent: int, trials: int) -> None:
    best = result.total("best")
    text = f"graph kernels {best * 1e3:8.3f} ms" if best is not None else "no valid kernel for every task yet"
    print(f"\r[{spent:>4}/{trials}] {text}  tasks {len(result.tasks)}", end="", file=sys.stderr, flush=True)


def graph_summary(result: GraphTuneResult) -> str:
    """The final table: each task's default and best latency and trials, then the totals."""
    lines = [f"{'task':<52} {'runs':>4} {'trials':>6} {'default ms':>11} {'best ms':>9} {'speed-up':>8}"]
    for progress in result.tasks:
        default, best = progress.default, progress.best
        speedup = f"{default / best:7.2f}x" if default and best else "       -"
        lines.append(f"{progress.task.label:<52} {progress.task.count:>4} {progress.trials:>6} "
                     f"{_ms(default):>11} {_ms(best):>9} {speedup:>8}")
    default, best = result.total("default"), result.total("best")
    speedup = f"{default / best:.2f}x" if default and best else "unknown"
    lines.append(f"products per graph call: default {_ms(default)} ms, tuned {_ms(best)} ms, speed-up {speedup}"
                 + ("; interrupted" if result.interrupted and result.error is None else ""))
    if result.error is not None:
        lines.append(result.error)
    return "\n".join(lines)


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"
