"""``tpc.compile`` and ``tpc.compile_gradient``: spec -> lowered TE -> scheduled TIR -> native kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
import tvm
from tvm import s_tir

from tpc import cache
from tpc.lower.algorithms import algorithms_for, check_algorithm, default_algorithm, lower
from tpc.ops import TensorProduct, check_fusion, check_wrt, op_fingerprint
from tpc.runtime import ConvolutionKernel, GradientKernel, Kernel, ScheduleChoice
from tpc.schedule import (apply_schedule, default_config, lowering_options, scheduled_algorithms, search_space,
                          validate_config)
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
    """What a cached schedule is looked up by: the op (the product, or its gradient with respect
    to ``wrt``), batch, dtype and target."""

    tp: TensorProduct
    batch: int | None
    dtype: str
    target: TargetSpec
    wrt: str | None = None
    fusion: str | None = None

    @property
    def op(self) -> str | None:
        """The schedule registry's name of the op: None (the product), a gradient or a fusion."""
        return self.fusion or self.wrt


@dataclass(frozen=True)
class BuildRequest:
    """Everything that determines a compiled kernel (of the product, of its gradient with
    respect to ``wrt``, or of the product fused with its neighbours as ``fusion`` says)."""

    tp: TensorProduct
    target: TargetSpec
    dtype: str
    choice: ScheduleChoice
    wrt: str | None = None
    fusion: str | None = None


def choose_schedule(request_key: CacheKey, schedule: Union[None, str, Mapping[str, Any]],
                    algorithm: str | None = None) -> ScheduleChoice:
    """Turn the ``schedule`` and ``algorithm`` arguments of :func:`compile` into a checked choice.

    ``schedule`` None takes the best cached schedule for the key (user cache, then shipped
    schedules/) among the algorithms allowed, else the default; "default" forces the default
    knobs; a dict of knob values is used as given ("explicit"); a tuning record (a dict with
    "algorithm" and "config") likewise. ``algorithm`` None allows every algorithm that
    computes the op (the default: :func:`tpc.lower.algorithms.default_algorithm`); a name
    allows only that one, and it must compute the op's function.
    """
    tp, family, wrt, fusion, op = (request_key.tp, request_key.target.family, request_key.wrt, request_key.fusion,
                                   request_key.op)
    if algorithm is not None:
        check_algorithm(tp, algorithm, wrt, fusion)
    if isinstance(schedule, Mapping) and "config" in schedule:
        recorded = schedule.get("algorithm", "cg")
        if algorithm is not None and recorded != algorithm:
            raise ValueError(f"the schedule record is for the {recorded!r} algorithm, not {algorithm!r}")
        check_algorithm(tp, recorded, wrt, fusion)
        return ScheduleChoice(recorded, validate_config(family, schedule["config"], recorded, op), "explicit")
    chosen = algorithm or default_algorithm(tp, wrt, fusion)
    if schedule is None:
        allowed = [algorithm] if algorithm else algorithms_for(tp, wrt, fusion)
        versions = {name: search_space(family, name, op).version for name in allowed
                    if name in scheduled_algorithms(family, op)}
        hit = cache.lookup(op_fingerprint(tp, wrt, fusion), request_key.batch, request_key.dtype,
                           request_key.target.fingerprint, versions)
        if hit is not None:
            record = hit.record
            return ScheduleChoice(record.algorithm, validate_config(family, record.config, record.algorithm, op),
                                  hit.source)
    if schedule is None or schedule == "default":
        return ScheduleChoice(chosen, default_config(family, chosen, op), "default")
    if isinstance(schedule, Mapping):
        return ScheduleChoice(chosen, validate_config(family, schedule, chosen, op), "explicit")
    raise ValueError(f"schedule must be None, 'default', a dict of knob values or a tuning record, got {schedule!r}")


def scheduled(tp: TensorProduct, dtype: str, family: str, algorithm: str, config: Mapping[str, Any],
              batch: int | None = None, wrt: str | None = None,
              fusion: str | None = None) -> tuple[s_tir.Schedule, tuple[np.ndarray, ...]]:
    """The scheduled TIR of one configuration of the product (or of its gradient with respect
    to ``wrt``, or of the product fused as ``fusion`` says), symbolic batch unless ``batch`` is
    given, and the constant tables its function takes after ``out``."""
    lowered = lower(tp, algorithm, dtype, batch=batch, wrt=wrt, fusion=fusion,
                    **lowering_options(family, algorithm, config))
    return apply_schedule(lowered, family, config), lowered.tables


def build(request: BuildRequest) -> Union[Kernel, GradientKernel, ConvolutionKernel]:
    """Lower, schedule and compile one request."""
    choice = request.choice
    sch, tables = scheduled(request.tp, request.dtype, request.target.family, choice.algorithm, choice.config,
                            wrt=request.wrt, fusion=request.fusion)
    executable = compile_tir(sch.mod, request.target)
    if request.fusion is not None:
        return ConvolutionKernel(executable.mod, request.tp, request.fusion, request.target, request.dtype, choice,
                                 executable=executable)
    if request.wrt is not None:
        return GradientKernel(executable.mod, request.tp, request.wrt, request.target, request.dtype, choice,
                              executable=executable)
    return Kernel.from_executable(executable, request.tp, request.target, request.dtype, request.choice, tables)


def _check_arguments(function: str, tp: TensorProduct, batch: int | None) -> None:
    """Reject a non-spec or a batch that is not a positive integer, naming ``tpc.<function>``."""
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"tpc.{function} takes a TensorProduct, got {type(tp).__name__}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive integer or None, got {batch!r}")


def compile(  # noqa: A001 - the public name mirrors tvm.compile
    tp: TensorProduct,
    batch: int | None = None,
    target: Union[str, dict, TargetSpec] = "host",
    dtype: str = "float32",
    schedule: Union[None, str, Mapping[str, Any]] = None,
    algorithm: str | None = None,
) -> Kernel:
    """Compile ``tp`` for ``target`` and ``dtype``.

    The kernel serves every batch size; ``batch`` names the size it will mostly run at (it
    selects a tuned schedule once schedules are cached). ``schedule``: None (the best cached
    schedule, else the default) or "default" for the default knobs, a dict of knob values,
    or a tuning record. ``algorithm``: None for any algorithm that computes the spec (the
    cached winner, else the default: the grid for Gaunt products of degree >= 4, else "cg"),
    or "cg", "fourier", "grid" (the last two only for Gaunt products, see
    :func:`tpc.algorithms_for`). ``Kernel.schedule`` tells which algorithm and schedule were
    used and where they came from.
    """
    _check_arguments("compile", tp, batch)
    spec = resolve_target(target)
    choice = choose_schedule(CacheKey(tp, batch, dtype, spec), schedule, algorithm)
    return build(BuildRequest(tp, spec, dtype, choice))


def compile_gradient(tp: TensorProduct, wrt: str, target: Union[str, dict, TargetSpec] = "host",
                     dtype: str = "float32", batch: int | None = None,
                     schedule: Union[None, str, Mapping[str, Any]] = None) -> GradientKernel:
    """Compile the gradient of ``<grad, tp(x1, x2, weight)>`` with respect to ``wrt``
    ("x1", "x2" or "weight") for a CPU target.

    ``batch`` and ``schedule`` as in :func:`compile`: by default the best cached schedule of
    the gradient op (tuned with ``tpc.tune(tp, wrt=...)``), else the default one;
    ``GradientKernel.schedule`` tells which. The product is linear in each argument, so these
    kernels also give every higher derivative (see :mod:`tpc.torch`).
    """
    _check_arguments("compile_gradient", tp, batch)
    check_wrt(tp, wrt)
    spec = resolve_target(target)
    choice = choose_schedule(CacheKey(tp, batch, dtype, spec, wrt), schedule)
    return build(BuildRequest(tp, spec, dtype, choice, wrt))


def compile_convolution(tp: TensorProduct, fusion: str, target: Union[str, dict, TargetSpec] = "host",
                        dtype: str = "float32", edges: int | None = None,
                        schedule: Union[None, str, Mapping[str, Any]] = None) -> ConvolutionKernel:
    """Compile ``tp`` fused with the gather of its x1 and/or the scatter-sum of its output
    (``fusion``: "gather", "scatter" or "gather+scatter") for a CPU target.

    ``edges`` names the edge count it will mostly run at and ``schedule`` is as in
    :func:`compile`: by default the best cached schedule of the fused op (tuned with
    ``tpc.tune(tp, fusion=...)``), else the default one.
    """
    _check_arguments("compile_convolution", tp, edges)
    check_fusion(fusion)
    spec = resolve_target(target)
    choice = choose_schedule(CacheKey(tp, edges, dtype, spec, fusion=fusion), schedule)
    return build(BuildRequest(tp, spec, dtype, choice, fusion=fusion))
