"""Tuning kernels as tasks that share one trial budget: a graph's tensor products, or any list.

:func:`tune_tasks` tunes a list of :class:`Task` from any source: a graph's (:func:`graph_tasks`,
:func:`tune_graph`) or the kernels a PyTorch model was seen to call (:mod:`tpc.torch.tuning`).
A graph is cut into kernels as :func:`tpc.graph.compiler.fuse_products` cuts it; every tensor
product, fused or not, is a task: one op (the product, or the product with its fusion) at one
size (the graph's row count for it). Identical tasks are tuned once and weighted by how often
the graph runs them. Each task is tuned by :func:`tpc.tune.tuner.tune` with its own log and
its records go to the schedule cache under the task's own op fingerprint, so a tuned task
serves every graph (or model) that contains it.

The budget is spent a round at a time, as Ansor's gradient task scheduler does: first one
round per task (shorter when the budget is short, so that every task gets one), then each
round goes to the task whose tuning is expected to cut the graph's time the most: its weight
times the larger of its recent improvement per trial and an optimistic guess (its best
latency over the trials it has had).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from tpc.graph import Graph, TensorProductOp
from tpc.graph.compiler import FUSION_CHOICES, fuse_products, product_rows
from tpc.ops import Contraction, ConvolutionGradient, Fused, Gradient, Op, Product, TensorProduct
from tpc.targets import TargetSpec, resolve_target
from tpc.tune.measure import LocalRunner, Runner
from tpc.tune.tuner import STRATEGIES, TuneResult, check_runs_here, default_log_path, tune

UNFUSED_AND_FUSED = ("none", "gather+scatter")
"""The two cuts a graph is usually tuned with: one kernel per node, and each product fused
with its gathers and scatter-sum (shipped schedules, ``tpc list``, the graph benchmark)."""
BACKWARD_SHARE = 0.2
"""Weight of a task's recent improvement against the optimistic guess (Ansor's alpha)."""


@dataclass(frozen=True)
class Task:
    """One kernel to tune: an op (a product, its gradient, or a product fused with its neighbours)
    at ``batch`` rows (edges, nodes), run ``count`` times per graph (or model) call; ``nodes``
    names the graph's products (or the model's modules) it covers; ``dtype`` the dtype it runs
    in, None for the dtype the whole run is tuned in."""

    op: Op
    batch: int
    count: int
    nodes: tuple[str, ...]
    dtype: Optional[str] = None

    @property
    def tp(self) -> TensorProduct:
        """The product's spec."""
        return self.op.tp

    @property
    def fusion(self) -> Optional[str]:
        """What is fused into the product, None for a product alone."""
        return self.op.fusion if isinstance(self.op, Fused) else None

    @property
    def what(self) -> str:
        """What the kernel computes: "product", the fusion, "d/dx1" for a gradient, or "convolution gradients"."""
        if isinstance(self.op, Gradient):
            return f"d/d{self.op.wrt}"
        if isinstance(self.op, ConvolutionGradient):
            return "convolution gradients"
        if isinstance(self.op, Contraction):
            return "symmetric contraction" + (f", d/d{self.op.wrt}" if self.op.wrt else "") + \
                (", along a tangent" if self.op.tangent else "")
        return self.fusion or "product"

    @property
    def label(self) -> str:
        """Its graph nodes (or modules), what it computes and its rows (and dtype, if its own), for tables."""
        dtype = f", {self.dtype}" if self.dtype is not None else ""
        return f"{'+'.join(self.nodes)} ({self.what}, {self.batch} rows{dtype})"


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
    """Every task's tuning, and the graph's (or model's: ``subject``) tuned product time against its default."""

    tasks: list[TaskProgress]
    interrupted: bool = False
    error: Optional[str] = None
    """Why the run stopped early when a write failed (see :class:`tpc.tune.tuner.TuneResult`)."""
    subject: str = "graph"
    """What the tasks make up, for the progress line and the table: "graph" or "model"."""

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
    measurements in all, shared between its tasks: :func:`tune_tasks` of :func:`graph_tasks`.

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
    tasks = graph_tasks(graph, sizes, fusion)
    if not tasks:
        raise ValueError("the graph has no tensor product to tune")
    return tune_tasks(tasks, target=target, dtype=dtype, trials=trials, strategy=strategy, log_dir=log_dir, seed=seed,
                      runner=runner, round_size=round_size, progress=progress)


def tune_tasks(tasks: Sequence[Task], target: Union[str, dict, TargetSpec] = "host", dtype: str = "float32",
               trials: int = 64, strategy: str = "xgb", log_dir: Union[str, Path] = "tuning_logs", seed: int = 0,
               runner: Optional[Runner] = None, round_size: int = 8, progress: bool = True,
               subject: str = "graph") -> GraphTuneResult:
    """Tune ``tasks`` with ``trials`` measurements in all, shared between them as the module
    docstring says; each task in its own dtype, else in ``dtype``.

    Each task's measurements go to its own log under ``log_dir`` and to the schedule cache,
    where :func:`tpc.compile` (and so :func:`tpc.compile_graph` and :mod:`tpc.torch`) finds
    them. Logs of earlier runs are resumed, so their measurements count as trials and are never
    repeated. Ctrl-C stops after the current round, and so does a failed write (``error`` says
    which file and why). Without a ``runner``, one :class:`~tpc.tune.measure.LocalRunner` serves
    every task, so its worker processes start once.

    Args:
        tasks: the kernels to tune (see :class:`Task`).
        target: the target they are tuned for.
        dtype: the dtype of tasks that name none.
        trials: measurements in all; at least one per task.
        strategy: "xgb" or "random", as :func:`tpc.tune.tuner.tune`.
        log_dir: the folder of the tasks' logs.
        seed: the search's seed.
        runner: what measures (default: a local runner).
        round_size: measurements per round.
        progress: print a progress line on stderr after each round.
        subject: what the tasks make up ("graph", "model"), for the progress line and the table.

    Returns:
        Every task's tuning (:class:`GraphTuneResult`).

    Raises:
        ValueError: bad arguments, or a target whose kernels cannot run on this machine while
            no ``runner`` is given (refused before the first trial).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    spec = resolve_target(target)
    check_runs_here(spec, runner)
    progresses = [TaskProgress(task) for task in tasks]
    if not progresses:
        raise ValueError("there is no task to tune")
    if trials < len(progresses):
        raise ValueError(f"trials must be at least the number of tasks ({len(progresses)}), got {trials}")
    result = GraphTuneResult(progresses, subject=subject)
    shared = runner or LocalRunner()
    spent = 0
    try:
        while spent < trials:
            progress_of = _next_task(progresses)
            if progress_of is None:
                break  # every task's space is measured
            task, before = progress_of.task, progress_of.trials
            untried = sum(other.result is None for other in progresses)
            share = (trials - spent) // untried if progress_of.result is None else trials - spent
            goal = before + min(round_size, share)
            task_dtype = task.dtype or dtype
            log = Path(log_dir) / default_log_path(task.op, spec, task_dtype, task.batch).name
            outcome = tune(task.op, batch=task.batch, target=spec, dtype=task_dtype, trials=goal, strategy=strategy,
                           log=log, resume=True, seed=seed, runner=shared, round_size=round_size, progress=False)
            progress_of.result = outcome
            progress_of.history.append(progress_of.best if progress_of.best is not None else float("inf"))
            progress_of.exhausted = progress_of.trials < goal
            spent += progress_of.trials - before
            if progress:
                _report(result, spent, trials)
            if outcome.interrupted:
                result.interrupted, result.error = True, outcome.error
                break
    finally:
        if runner is None:
            shared.close()
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
    text = f"{result.subject} kernels {best * 1e3:8.3f} ms" if best is not None \
        else "no valid kernel for every task yet"
    print(f"\r[{spent:>4}/{trials}] {text}  tasks {len(result.tasks)}", end="", file=sys.stderr, flush=True)


def graph_summary(result: GraphTuneResult) -> str:
    """The final table: each task's default and best latency and trials, then the totals."""
    width = max([52] + [len(progress.task.label) for progress in result.tasks])
    lines = [f"{'task':<{width}} {'runs':>4} {'trials':>6} {'default ms':>11} {'best ms':>9} {'speed-up':>8}"]
    for progress in result.tasks:
        default, best = progress.default, progress.best
        speedup = f"{default / best:7.2f}x" if default and best else "       -"
        lines.append(f"{progress.task.label:<{width}} {progress.task.count:>4} {progress.trials:>6} "
                     f"{_ms(default):>11} {_ms(best):>9} {speedup:>8}")
    default, best = result.total("default"), result.total("best")
    speedup = f"{default / best:.2f}x" if default and best else "unknown"
    lines.append(f"products per {result.subject} call: default {_ms(default)} ms, tuned {_ms(best)} ms, "
                 f"speed-up {speedup}"
                 + ("; interrupted" if result.interrupted and result.error is None else ""))
    if result.error is not None:
        lines.append(result.error)
    return "\n".join(lines)


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"
