"""``tpc.compile``: spec -> lowered TE -> scheduled TIR -> native kernel for one target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
import tvm
from tvm import s_tir

from tpc import cache
from tpc.lower import lower_cg
from tpc.ops import TensorProduct
from tpc.runtime import Kernel, ScheduleChoice
from tpc.schedule import apply_schedule, default_config, search_space, validate_config
from tpc.targets import TargetSpec, resolve_target

ALGORITHMS = ("cg",)
# Block boundaries in the output are `likely` conditions: partitioning turns the output loop
# into one branch-free loop per block.
PASS_CONFIG = {"s_tir.LoopPartition": {"partition_const_loop": True}}


@dataclass(frozen=True)
class CacheKey:
    """What a cached schedule is looked up by."""

    tp: TensorProduct
    batch: int | None
    dtype: str
    target: TargetSpec


@dataclass(frozen=True)
class BuildRequest:
    """Everything that determines a compiled kernel."""

    tp: TensorProduct
    target: TargetSpec
    dtype: str
    choice: ScheduleChoice


def choose_schedule(request_key: CacheKey, schedule: Union[None, str, Mapping[str, Any]]) -> ScheduleChoice:
    """Turn the ``schedule`` argument of :func:`compile` into a checked choice.

    None takes the best cached schedule for the key (user cache, then shipped schedules/),
    else the default; "default" forces the default knobs; a dict of knob values is used as
    given ("explicit"); a tuning record (a dict with "algorithm" and "config") likewise.
    """
    family = request_key.target.family
    if schedule is None:
        space = search_space(family)
        hit = cache.lookup(request_key.tp.fingerprint, request_key.batch, request_key.dtype,
                           request_key.target.fingerprint, space.version)
        if hit is not None and hit.record.algorithm in ALGORITHMS:
            return ScheduleChoice(hit.record.algorithm, space.validate(hit.record.config), hit.source)
    if schedule is None or schedule == "default":
        return ScheduleChoice("cg", default_config(family), "default")
    if isinstance(schedule, Mapping):
        if "config" in schedule:
            algorithm = schedule.get("algorithm", "cg")
            if algorithm not in ALGORITHMS:
                raise ValueError(f"unknown algorithm {algorithm!r}; available: {ALGORITHMS}")
            return ScheduleChoice(algorithm, validate_config(family, schedule["config"]), "explicit")
        return ScheduleChoice("cg", validate_config(family, schedule), "explicit")
    raise ValueError(f"schedule must be None, 'default', a dict of knob values or a tuning record, got {schedule!r}")


def scheduled(tp: TensorProduct, dtype: str, family: str, config: Mapping[str, Any],
              batch: int | None = None) -> tuple[s_tir.Schedule, tuple[np.ndarray, ...]]:
    """The scheduled TIR of one configuration (symbolic batch unless ``batch`` is given) and
    the constant tables its function takes after ``out``."""
    lowered = lower_cg(tp, dtype, batch=batch, coupling=config.get("coupling", "direct"))
    return apply_schedule(lowered, family, config), lowered.tables


def build(request: BuildRequest) -> Kernel:
    """Lower, schedule and compile one request."""
    sch, tables = scheduled(request.tp, request.dtype, request.target.family, request.choice.config)
    with tvm.transform.PassContext(opt_level=3, config=PASS_CONFIG):
        executable = tvm.compile(sch.mod, target=request.target.tvm_target())
    return Kernel.from_executable(executable, request.tp, request.target, request.dtype, request.choice, tables)


def compile(  # noqa: A001 - the public name mirrors tvm.compile
    tp: TensorProduct,
    batch: int | None = None,
    target: Union[str, dict, TargetSpec] = "host",
    dtype: str = "float32",
    schedule: Union[None, str, Mapping[str, Any]] = None,
) -> Kernel:
    """Compile ``tp`` for ``target`` and ``dtype``.

    The kernel serves every batch size; ``batch`` names the size it will mostly run at (it
    selects a tuned schedule once schedules are cached). ``schedule``: None or "default" for
    the default knobs, a dict of knob values, or a tuning record. ``Kernel.schedule`` tells
    which was used and where it came from.
    """
    if not isinstance(tp, TensorProduct):
        raise TypeError(f"tpc.compile takes a TensorProduct, got {type(tp).__name__}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be a positive integer or None, got {batch!r}")
    spec = resolve_target(target)
    choice = choose_schedule(CacheKey(tp, batch, dtype, spec), schedule)
    return build(BuildRequest(tp, spec, dtype, choice))
