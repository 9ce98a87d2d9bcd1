"""``tpc.compile``: op -> lowered TE -> scheduled TIR -> native kernel."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import tvm
from tvm import s_tir

from tpc import cache
from tpc.archive import versions
from tpc.lower.algorithms import lower
from tpc.ops import Fused, Gradient, Op, OpLike, TensorProduct, as_op
from tpc.runtime import CompiledKernel, ConvolutionKernel, GradientKernel, ScheduleChoice, kernel_for, load
from tpc.schedule import (
    apply_schedule,
    default_config,
    lowering_options,
    scheduled_algorithms,
    search_space,
    validate_config,
)
from tpc.targets import TargetSpec, resolve_target

# Block boundaries in the output are `likely` conditions: partitioning turns the output loop
# into one branch-free loop per block.
PASS_CONFIG = {"s_tir.LoopPartition": {"partition_const_loop": True}}
# LLVM 22 (inside TVM 0.27) has an SLP-vectorizer bug: on AVX2 CPUs (not AVX-512) some
# partitioned loop nests come out as invalid IR ("Instruction does not dominate all uses").
# Such a module is compiled again without SLP vectorization.
SLP_OFF = ("-vectorize-slp:bool=false",)
INVALID_LLVM_MODULE = "LLVM module verification failed"


def compile_tir(mod: tvm.IRModule, spec: TargetSpec) -> Any:
    """``tvm.compile`` a scheduled module for ``spec`` with tpc's pass options, working around
    LLVM's SLP-vectorizer bug on CPUs (see :data:`SLP_OFF`)."""
    with tvm.transform.PassContext(opt_level=3, config=PASS_CONFIG):
        try:
            return tvm.compile(mod, target=spec.tvm_target())
        except tvm.error.InternalError as error:
            if spec.family != "cpu" or INVALID_LLVM_MODULE not in str(error) or "cl-opt" in spec.tvm_dict:
                raise
            return tvm.compile(mod, target=tvm.target.Target({**spec.tvm_dict, "cl-opt": list(SLP_OFF)}))


@dataclass(frozen=True)
class CacheKey:
    """What a cached schedule is looked up by: the op, batch (or edges), dtype and target."""

    op: Op
    batch: int | None
    dtype: str
    target: TargetSpec


@dataclass(frozen=True)
class BuildRequest:
    """Everything that determines a compiled kernel: the op, target, dtype and schedule."""

    op: Op
    target: TargetSpec
    dtype: str
    choice: ScheduleChoice


def choose_schedule(key: CacheKey, schedule: Union[None, str, Mapping[str, Any]],
                    algorithm: str | None = None) -> ScheduleChoice:
    """Turn the ``schedule`` and ``algorithm`` arguments of :func:`compile` into a checked choice.

    ``schedule`` None takes the best cached schedule for the key among the algorithms allowed
    (:func:`tpc.cache.lookup`: the target's own records, user cache then shipped, else those of
    the nearest kindred target, the source then naming it: "shipped, tuned on znver4"), else
    the default; a cached record whose knobs do not fit the current space is skipped with a
    warning naming its file and line, and the next-best one is taken. "default" forces the
    default knobs; a dict of knob values is used as given ("explicit"); a tuning record (a dict
    with "algorithm" and "config") likewise.
    ``algorithm`` None allows every algorithm that computes the op (the default:
    :attr:`tpc.ops.Op.default_algorithm`); a name allows only that one, and it must compute the
    op's function.
    """
    op, family = key.op, key.target.family
    if algorithm is not None:
        op.check_algorithm(algorithm)
    if isinstance(schedule, Mapping) and "config" in schedule:
        recorded = schedule.get("algorithm", "cg")
        if algorithm is not None and recorded != algorithm:
            raise ValueError(f"the schedule record is for the {recorded!r} algorithm, not {algorithm!r}")
        op.check_algorithm(recorded)
        return ScheduleChoice(recorded, validate_config(family, schedule["config"], recorded, op.schedule_key, op),
                              "explicit")
    chosen = algorithm or op.default_algorithm
    if schedule is None:
        allowed = [algorithm] if algorithm else op.algorithms
        versions = {name: search_space(family, name, op.schedule_key).version for name in allowed
                    if name in scheduled_algorithms(family, op.schedule_key)}
        hit = cache.lookup(op.fingerprint, key.batch, key.dtype, key.target, versions,
                           fits=lambda record: validate_config(family, record.config, record.algorithm,
                                                               op.schedule_key, op))
        if hit is not None:
            record = hit.record
            return ScheduleChoice(record.algorithm,
                                  validate_config(family, record.config, record.algorithm, op.schedule_key, op),
                                  hit.description)
    if schedule is None or schedule == "default":
        return ScheduleChoice(chosen, default_config(family, chosen, op.schedule_key, op), "default")
    if isinstance(schedule, Mapping):
        return ScheduleChoice(chosen, validate_config(family, schedule, chosen, op.schedule_key, op), "explicit")
    raise ValueError(f"schedule must be None, 'default', a dict of knob values or a tuning record, got {schedule!r}")


def scheduled(op: Op, dtype: str, family: str, algorithm: str, config: Mapping[str, Any],
              batch: int | None = None) -> tuple[s_tir.Schedule, tuple[np.ndarray, ...]]:
    """The scheduled TIR of one configuration of ``op`` (symbolic batch unless ``batch`` is
    given) and the constant tables its function takes after ``out``."""
    lowered = lower(op, algorithm, dtype, batch=batch, **lowering_options(family, algorithm, config))
    return apply_schedule(lowered, family, config), lowered.tables


def build(request: BuildRequest) -> CompiledKernel:
    """Lower, schedule and compile one request."""
    choice = request.choice
    sch, tables = scheduled(request.op, request.dtype, request.target.family, choice.algorithm, choice.config)
    executable = compile_tir(sch.mod, request.target)
    return kernel_for(request.op, executable.mod, request.target, request.dtype, choice, executable=executable,
                      tables=tables)


def kernel_file(request: BuildRequest) -> Path:
    """Where :func:`compile` keeps the kernel of ``request``: ``<folder>/<sha256>.tpc``, the hash
    of the op, target, dtype, algorithm, knobs, the tpc and TVM versions and the compiler's source; the folder is
    ``$TPC_KERNEL_CACHE``, else ``$TPC_CACHE/kernels``. A file holds one request's kernel
    whatever the schedule cache says, so several schedule caches may share one folder."""
    identity = {"op": request.op.to_dict(), "target": request.target.tvm_dict, "dtype": request.dtype,
                "algorithm": request.choice.algorithm, "config": request.choice.config, **versions(),
                "compiler": compiler_digest()}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    folder = os.environ.get("TPC_KERNEL_CACHE") or cache.cache_root() / "kernels"
    return Path(folder) / f"{digest}.tpc"


@functools.lru_cache(maxsize=1)
def compiler_digest() -> str:
    """sha256 of the source of everything that decides a kernel's code (the ops, the lowerings,
    the schedules, the math): a kernel file built by other code under the same version is not reused."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for folder in ("ops", "lower", "schedule", "so3"):
        for path in sorted((root / folder).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cached_build(request: BuildRequest) -> CompiledKernel:
    """:func:`build`, or the kernel an earlier process built for the same request. A cached file
    that does not load (corrupt, another CPU) is rebuilt and replaced, with a warning."""
    path = kernel_file(request)
    if path.is_file():
        try:
            kernel = load(path)
            kernel.schedule = ScheduleChoice(**asdict(request.choice))
            return kernel
        except ValueError as error:
            warnings.warn(f"rebuilding a cached kernel that does not load: {error}", stacklevel=3)
    kernel = build(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    kernel.save(path)
    return kernel


def _check_batch(batch: int | None, name: str = "batch") -> None:
    """Reject a batch that is not a positive integer."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {batch!r}")


def compile(  # noqa: A001 - the public name mirrors tvm.compile
    op: OpLike,
    *,
    batch: int | None = None,
    target: Union[str, dict, TargetSpec] = "host",
    dtype: str = "float32",
    schedule: Union[None, str, Mapping[str, Any]] = None,
    algorithm: str | None = None,
) -> CompiledKernel:
    """Compile an op (a spec: its product) for ``target`` and ``dtype``.

    Args:
        op: a :class:`tpc.TensorProduct` (its product), or a :class:`tpc.Product`,
            :class:`tpc.Gradient` or :class:`tpc.Fused`.
        batch: the size the kernel will mostly run at (edges for a fused op); it selects a
            tuned schedule. The kernel serves every size.
        target: "host", "x86", "arm", "cuda[:sm_XX]", a TVM target dict or a TargetSpec.
        dtype: "float32" or "float64".
        schedule: None (the best cached schedule, else the default), "default", a dict of
            knob values, or a tuning record.
        algorithm: None for any algorithm that computes the op (the cached winner, else the
            op's default), or one of ``op.algorithms``.

    Returns:
        A :class:`tpc.Kernel` (product), :class:`tpc.GradientKernel` or
        :class:`tpc.ConvolutionKernel`; its ``schedule`` tells which algorithm and schedule
        were used and where they came from ("default", "explicit", "user cache", "shipped", or
        e.g. "shipped, tuned on znver4" for a kindred target's). A cached schedule that fails
        to build gives way to the default, with a warning. Kernels are kept under ``$TPC_CACHE/kernels``
        (:func:`kernel_file`): the next process compiling the same thing loads it instead.

    >>> import tpc
    >>> kernel = tpc.compile(tpc.presets.get("fc-small").tp, dtype="float64")
    >>> kernel.schedule.algorithm
    'cg'
    """
    op = as_op(op, "tpc.compile")
    _check_batch(batch)
    spec = resolve_target(target)
    choice = choose_schedule(CacheKey(op, batch, dtype, spec), schedule, algorithm)
    if choice.source in ("default", "explicit"):
        return cached_build(BuildRequest(op, spec, dtype, choice))
    try:
        return cached_build(BuildRequest(op, spec, dtype, choice))
    except Exception as error:  # a cached schedule, perhaps tuned elsewhere, must not fail a build
        default = ScheduleChoice(choice.algorithm,
                                 default_config(spec.family, choice.algorithm, op.schedule_key, op), "default")
        warnings.warn(f"{op.description} did not build for {spec.name} with the schedule from {choice.source} "
                      f"({type(error).__name__}: {' '.join(str(error).split())[:300]}); using the default schedule",
                      stacklevel=2)
        return cached_build(BuildRequest(op, spec, dtype, default))


def compile_gradient(tp: TensorProduct, wrt: str, target: Union[str, dict, TargetSpec] = "host",
                     dtype: str = "float32", batch: int | None = None,
                     schedule: Union[None, str, Mapping[str, Any]] = None) -> GradientKernel:
    """``tpc.compile(tpc.Gradient(tp, wrt), ...)``: the gradient of ``<grad, tp(x1, x2, weight)>``
    with respect to ``wrt`` ("x1", "x2" or "weight") for a CPU target."""
    _check_spec("compile_gradient", tp)
    return compile(Gradient(tp, wrt), batch=batch, target=target, dtype=dtype, schedule=schedule)


def compile_convolution(tp: TensorProduct, fusion: str, target: Union[str, dict, TargetSpec] = "host",
                        dtype: str = "float32", edges: int | None = None,
                        schedule: Union[None, str, Mapping[str, Any]] = None) -> ConvolutionKernel:
    """``tpc.compile(tpc.Fused(tp, fusion), batch=edges, ...)``: ``tp`` fused with the gather of
    its x1 and/or the scatter-sum of its output ("gather", "scatter" or "gather+scatter") for a
    CPU target; ``edges`` is the edge count it will mostly run at."""
    _check_spec("compile_convolution", tp)
    _check_batch(edges, "edges")
    return compile(Fused(tp, fusion), batch=edges, target=target, dtype=dtype, schedule=schedule)


def _check_spec(function: str, tp: Any) -> None:
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"tpc.{function} takes a TensorProduct, got {type(tp).__name__}")
