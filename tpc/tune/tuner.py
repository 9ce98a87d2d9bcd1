"""``tpc.tune``: measured search over schedules, recorded in a log and in the schedule cache."""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from tpc import cache
from tpc.ops import Op, OpLike, as_op, make_op
from tpc.records import Record, append_records, read_records
from tpc.schedule import tuning_space
from tpc.schedule.space import AlgorithmSpace
from tpc.targets import TargetSpec, resolve_target
from tpc.tune.cost_model import CostModel
from tpc.tune.features import FEATURES_VERSION, TirFeaturizer, op_descriptors
from tpc.tune.measure import Anchor, LocalRunner, MeasureInput, Runner
from tpc.tune.prior import move_gains
from tpc.tune.search import ModelSearch, RandomSearch, Strategy

STRATEGIES = ("xgb", "random")
DEFAULT_BATCH = 10000
MODEL_KINDS = ("knobs", "tir")
"""The cost models kept per target: knob encoding only, and knobs plus scheduled-TIR features."""


@dataclass
class TuneResult:
    """What a tuning run found: the best and the default measurement, and every record.

    ``interrupted`` is True when the run stopped early: Ctrl-C, or a write that failed (a full
    disk), in which case ``error`` names the file and the reason and ``records`` are those the
    log holds.
    """

    records: list[Record]
    log: Path
    interrupted: bool = False
    error: Optional[str] = None

    @property
    def best(self) -> Optional[Record]:
        return _fastest(self.records)

    @property
    def default(self) -> Optional[Record]:
        """The measurement of what ``tpc.compile`` uses without a cached schedule: the default
        algorithm's default knobs, as last measured (a resumed log may hold older defaults)."""
        defaults = [r for r in self.records if r.strategy == "default" and r.ok]
        return [r for r in defaults if r.algorithm == defaults[0].algorithm][-1] if defaults else None

    @property
    def speedup(self) -> Optional[float]:
        """Default seconds over best seconds."""
        if self.best is None or self.default is None:
            return None
        return self.default.seconds / self.best.seconds


def default_log_path(op: Op, target: TargetSpec, dtype: str, batch: int) -> Path:
    """``tuning_logs/<op fingerprint>-<target>-<dtype>-b<batch>.jsonl`` under the current directory."""
    return Path("tuning_logs") / f"{op.fingerprint[:12]}-{target.name}-{dtype}-b{batch}.jsonl"


def _model_path(target: TargetSpec, space: AlgorithmSpace, kind: str) -> Path:
    name = f"{target.fingerprint}-{space.signature}-features{FEATURES_VERSION}-{kind}.npz"
    return cache.cache_root() / "models" / name


def _defaults(space: AlgorithmSpace) -> list[dict]:
    """Every searched algorithm's default configuration, measured first as baselines."""
    return [space.join(algorithm, {}) for algorithm in space.algorithms]


def tune(
    op: OpLike,
    batch: Optional[int] = None,
    target: Union[str, dict, TargetSpec] = "host",
    dtype: str = "float32",
    trials: int = 64,
    strategy: str = "xgb",
    log: Union[None, str, Path] = None,
    resume: bool = False,
    seed: int = 0,
    runner: Optional[Runner] = None,
    round_size: int = 8,
    progress: bool = True,
    wrt: Optional[str] = None,
    fusion: Optional[str] = None,
) -> TuneResult:
    """Measure up to ``trials`` schedules of an op and cache the best.

    ``op`` is a spec (its product) or an op (:class:`tpc.Product`, :class:`tpc.Gradient`,
    :class:`tpc.Fused`, whose ``batch`` counts edges); ``wrt`` or ``fusion`` with a spec name
    its gradient or fused product as :func:`tpc.ops.make_op` does.

    The default schedule is measured first; every later candidate is timed in turns with a
    reference measured before (the default, or a candidate clearly faster, see
    :func:`reference_record`), and recorded as its ratio to it times its seconds (see
    :mod:`tpc.tune.measure`). Every measurement is appended to ``log`` as it completes; with
    ``resume`` the log's earlier measurements for the same key count as trials and are never
    repeated. Ctrl-C stops after the current measurement round is recorded and returns what
    was found; so does a failed write of the log or the schedule cache (a full disk), with
    ``interrupted`` set and ``error`` naming the file.

    Before the first trial, a target whose kernels cannot run on this machine is refused unless
    a ``runner`` is given (one that measures elsewhere), and the log and the user cache are
    checked to be writable.

    Raises:
        ValueError: bad arguments, a target that cannot run here without a ``runner``, or a log
            or cache file that cannot be written (the message names it).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    op = as_op(op, "tpc.tune")
    if wrt is not None or fusion is not None:
        if op.kind != "product":
            raise ValueError("give wrt or fusion with a TensorProduct, not with an op that already names them")
        op = make_op(op.tp, wrt, fusion)
    spec = resolve_target(target)
    check_runs_here(spec, runner)
    batch = batch or DEFAULT_BATCH
    algorithms = [op.default_algorithm] + [name for name in op.algorithms if name != op.default_algorithm]
    space = tuning_space(spec.family, algorithms, op.schedule_key, op)
    log = Path(log) if log is not None else default_log_path(op, spec, dtype, batch)
    check_writable(log, "tuning log")
    check_writable(cache.user_cache_file(), "schedule cache")
    runner = runner or LocalRunner()
    measure_input = partial(MeasureInput, op.to_dict(), spec.tvm_dict, dtype, batch)
    key = (op.fingerprint, batch, dtype, spec.fingerprint)
    previous = [r for r in read_records(log) if resume and (r.op, r.batch, r.dtype, r.target_fingerprint) == key
                and r.algorithm in space.algorithms and r.space_version == space.version_of(r.algorithm)]
    models = {kind: CostModel.load(_model_path(spec, space, kind)) for kind in MODEL_KINDS} \
        if strategy == "xgb" else {}
    searcher: Strategy = (ModelSearch(space, models["knobs"], op.fingerprint + f"/{batch}/{dtype}",
                                      op_descriptors(op, batch, dtype), seed=seed, tir_model=models["tir"],
                                      featurize=TirFeaturizer(op, spec, dtype, batch, space),
                                      prior=move_gains((r for _, found in cache.cached_records() for r in found), space,
                                                       spec.tvm_dict, op.fingerprint))
                          if strategy == "xgb" else RandomSearch(space, seed=seed))
    searcher.observe([space.join(r.algorithm, r.config) for r in previous],
                     [r.seconds if r.ok else None for r in previous])
    records = list(previous)
    measured = {space.key(space.join(r.algorithm, r.config)) for r in records}
    baselines = _defaults(space)
    defaults = {space.key(default) for default in baselines}
    started, interrupted, error = time.monotonic(), False, None
    try:
        while len(records) < trials:
            count = min(round_size, trials - len(records))
            configs = [d for d in baselines if space.key(d) not in measured][:count] \
                or searcher.propose(count, measured)
            if not configs:
                break  # the whole space has been measured
            split = [space.split(c) for c in configs]
            results = runner.measure([measure_input(algorithm, knobs) for algorithm, knobs in split],
                                     _anchor(records, measure_input))
            fresh = [Record(op.fingerprint, batch, dtype, spec.tvm_dict, spec.fingerprint, space.version_of(algorithm),
                            algorithm, knobs, result.seconds, result.error,
                            "default" if space.key(c) in defaults else searcher.name, len(records) + i,
                            device=result.device)
                     for i, (c, (algorithm, knobs), result) in enumerate(zip(configs, split, results))]
            measured |= {space.key(c) for c in configs}
            error = _keep(fresh, log, records)
            if error is not None:
                interrupted = True
                break
            searcher.observe(configs, [r.seconds if r.ok else None for r in fresh])
            if progress:
                _progress(records, trials, op.flops(batch), time.monotonic() - started)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for kind, model in models.items():
            path = _model_path(spec, space, kind)
            try:
                model.save(path)
            except OSError as failure:
                warnings.warn(f"cost model's training set not saved: {_reason(failure, path)}", stacklevel=3)
        if progress:
            print(file=sys.stderr)
    return TuneResult(records, log, interrupted, error)


def check_runs_here(spec: TargetSpec, runner: Optional[Runner]) -> None:
    """Refuse a target whose kernels cannot run on this machine unless a runner is given.

    Args:
        spec: the target to tune for.
        runner: the runner that will measure; one given may measure elsewhere.

    Raises:
        ValueError: the target cannot run here and no runner was given.
    """
    runs, why = spec.runs_here()
    if not runs and runner is None:
        reason = why.replace("it was built for", "kernels for it are")
        raise ValueError(f"cannot tune for target {spec.name!r} on this machine: {reason}; "
                         "tune on a machine of that target, or measure there through a TVM RPC tracker "
                         "(tpc tune --rpc HOST:PORT --rpc-key KEY; runner=tpc.tune.RPCRunner(...))")


def check_writable(path: Path, what: str) -> None:
    """Make sure ``path`` can be appended to (its folder created), before any trial is spent.

    Args:
        path: a file the run appends to.
        what: what the file is, for the message.

    Raises:
        ValueError: the file or its folder cannot be created or written; the message names it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as error:
        existing = next((folder for folder in path.parents if folder.exists()), None)
        reason = f"{existing} is not a folder" if existing is not None and not existing.is_dir() \
            else error.strerror or str(error)
        raise ValueError(f"cannot write the {what} {path}: {reason}") from None


def _keep(fresh: list[Record], log: Path, records: list[Record]) -> Optional[str]:
    """Append a round's records to the log (adding each written one to ``records``) and the
    cache; a failed write ends the round and its one-line message is returned."""
    try:
        for record in fresh:
            append_records(log, [record])
            records.append(record)
    except OSError as error:
        return f"stopped: {_reason(error, log)}"
    try:
        cache.add_records(fresh)
    except OSError as error:
        return f"stopped: {_reason(error, cache.user_cache_file())}"
    return None


def _reason(error: OSError, path: Path) -> str:
    """One line for a failed write of ``path``: the file, then the system's reason."""
    message = str(error.strerror or error)
    return message if str(path) in message else f"cannot write {path}: {message}"


def _anchor(records: list[Record], measure_input: Callable[[str, dict], MeasureInput]) -> Optional[Anchor]:
    """The candidates of the next round are timed against the run's reference record (see
    :func:`reference_record`)."""
    reference = reference_record(records)
    return Anchor(measure_input(reference.algorithm, reference.config), reference.seconds) if reference else None


REANCHOR_GAIN = 1.15
"""How much faster than the reference a record must be to become the reference."""


def reference_record(records: Sequence[Record]) -> Optional[Record]:
    """The record later candidates are timed against.

    That is the first successful record (the default schedule, unless it failed), replaced, in
    log order, by each record more than :data:`REANCHOR_GAIN` times faster than the reference
    before it: kernels of one character keep their ratio best as the machine drifts, while the
    fastest of near ties is the one whose timing came out lowest and would pass that luck on.

    Args:
        records: a run's records in log order.

    Returns:
        The reference record, or None where no record succeeded.
    """
    reference = None
    for record in records:
        if record.ok and (reference is None or record.seconds * REANCHOR_GAIN < reference.seconds):
            reference = record
    return reference


def _fastest(records: list[Record]) -> Optional[Record]:
    ok = [r for r in records if r.ok]
    return min(ok, key=lambda r: r.seconds) if ok else None


def _progress(records: list[Record], trials: int, flops: int, elapsed: float) -> None:
    ok = [r.seconds for r in records if r.ok]
    best = f"best {min(ok) * 1e3:8.3f} ms {flops / min(ok) / 1e9:7.2f} GFLOP/s" if ok else "no valid kernel yet"
    errors = sum(not r.ok for r in records)
    print(f"\r[{len(records):>4}/{trials}] {best}  errors {errors}  elapsed {elapsed:6.0f} s", end="",
          file=sys.stderr, flush=True)


def summary(result: TuneResult, flops: int) -> str:
    """The final table: default against best, and the speed-up."""
    lines = [f"{'schedule':<10} {'ms':>10} {'GFLOP/s':>9}  knobs"]
    for label, record in (("default", result.default), ("best", result.best)):
        if record is None:
            lines.append(f"{label:<10} {'-':>10} {'-':>9}  (no successful measurement)")
        else:
            lines.append(f"{label:<10} {record.seconds * 1e3:>10.3f} {flops / record.seconds / 1e9:>9.2f}  "
                         f"{record.algorithm} {record.config}")
    speedup = result.speedup
    errors = sum(not r.ok for r in result.records)
    lines.append(f"speed-up {speedup:.2f}x over the default" if speedup else "speed-up unknown")
    lines.append(f"{len(result.records)} trials ({errors} errors), log {result.log}"
                 + ("; interrupted" if result.interrupted and result.error is None else ""))
    if result.error is not None:
        lines.append(result.error)
    return "\n".join(lines)
