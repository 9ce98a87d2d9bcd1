"""Target names and their TVM targets: ``host``, ``x86``, ``arm``, ``cuda``.

A :class:`TargetSpec` carries the TVM target dictionary (kind, triple, cpu or arch, cores),
the family that picks a schedule space (``cpu`` or ``cuda``), a fingerprint of the dictionary
that keys caches, the CPU features its code may use, and whether a saved kernel can run on this
machine (its triple, and every CPU feature it was compiled for, present here).

:func:`kinship` says how near a schedule tuned on one target is to another: the same target,
the same CPU with another core count, the same vector instruction set (:func:`vector_isa`:
AVX-512, AVX2, AVX, SSE on x86; SVE or NEON on aarch64; a CUDA GPU's major compute
capability), the same architecture, or unrelated; the schedule cache serves the nearest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import psutil
import tvm

TARGET_NAMES = ("host", "x86", "arm", "cuda")
DEFAULT_CUDA_ARCH = "sm_90"
ARM_TRIPLE = "aarch64-linux-gnu"
X86_TRIPLE = "x86_64-linux-gnu"
TUNING_FEATURE_PREFIXES = ("fast-", "faster-", "slow-", "prefer-", "tuning-", "no-bypass-", "allow-light-",
                           "idivq-to-divl", "macrofusion", "branchfusion", "fuse-", "use-", "enable-select-opt",
                           "vzeroupper", "lea-", "false-deps-", "pad-short-functions", "ermsb")
"""LLVM features that tune code generation rather than allow instructions; ignored when comparing CPUs."""


@dataclass(frozen=True)
class TargetSpec:
    """A resolved compilation target."""

    name: str
    family: str
    options: tuple[tuple[str, Any], ...]

    @property
    def tvm_dict(self) -> dict[str, Any]:
        """The TVM target as a plain dict (``tvm.target.Target`` accepts it)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.options}

    def tvm_target(self) -> "tvm.target.Target":
        """The TVM target object."""
        return tvm.target.Target(self.tvm_dict)

    @property
    def triple(self) -> str | None:
        """LLVM triple of a CPU target (None for CUDA)."""
        return self.tvm_dict.get("mtriple") if self.family == "cpu" else None

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the target dict, for cache keys."""
        canonical = json.dumps(self.tvm_dict, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def runs_here(self) -> tuple[bool, str]:
        """Whether a kernel for this target can run in this process, and why not."""
        if self.family == "cuda":
            if tvm.cuda(0).exist:
                return True, ""
            return False, "it was built for CUDA and this machine has no CUDA device"
        host = host_triple()
        if self.triple != host:
            return False, f"it was built for {self.triple} and this machine is {host}"
        missing = missing_cpu_features(self.cpu_features())
        if missing:
            return False, f"it was built for CPU features this machine lacks: {', '.join(missing)}"
        return True, ""

    def cpu_features(self) -> list[str]:
        """The instruction-set features LLVM compiles this CPU target's code for (its ``mcpu`` and
        ``mattr``), sorted; empty for CUDA."""
        if self.family != "cpu":
            return []
        return _instruction_features(tvm.target.codegen.llvm_get_cpu_features(self.tvm_target()))


def host_cpu_features() -> list[str]:
    """The instruction-set features of this machine's CPU, as LLVM names them."""
    return list(_host_cpu_features())


@functools.lru_cache(maxsize=None)
def _host_cpu_features() -> tuple[str, ...]:
    return tuple(_instruction_features(tvm.target.codegen.llvm_get_cpu_features(
        tvm.target.Target({"kind": "llvm", "mtriple": host_triple(),
                           "mcpu": tvm.target.codegen.llvm_get_system_cpu()}))))


def missing_cpu_features(features: Any) -> list[str]:
    """The features of ``features`` (LLVM names) that this machine's CPU lacks, sorted.

    Raises:
        ValueError: ``features`` is not a list of strings.
    """
    if not isinstance(features, (list, tuple)) or not all(isinstance(name, str) for name in features):
        raise ValueError(f"CPU features must be a list of LLVM feature names, got {features!r}")
    present = set(host_cpu_features())
    return sorted(name for name in _instruction_features(features) if name not in present)


def _instruction_features(features: Any) -> list[str]:
    """The names of ``features`` without a leading ``+``, tuning features left out, sorted."""
    names = (str(name).lstrip("+") for name in features)
    return sorted({name for name in names if not name.startswith(TUNING_FEATURE_PREFIXES)})


def host_triple() -> str:
    """LLVM triple of this machine."""
    return {"x86_64": X86_TRIPLE, "aarch64": ARM_TRIPLE, "arm64": ARM_TRIPLE}.get(
        platform.machine(), f"{platform.machine()}-linux-gnu")


def host_cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_threads() -> int:
    """Threads for TVM's CPU thread pool: one per physical core this process may use.

    TVM's own default assumes two hardware threads per x86 core and starts half as many
    workers as there are CPUs, which leaves half the cores idle where there is no SMT.
    """
    logical = host_cores()
    physical, total = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    if not physical or not total:
        return logical
    return max(1, logical * physical // total)


def _cpu(name: str, triple: str, mcpu: str, cores: int, mattr: tuple[str, ...] = ()) -> TargetSpec:
    options = [("kind", "llvm"), ("mtriple", triple), ("mcpu", mcpu), ("num-cores", cores)]
    if mattr:
        options.append(("mattr", mattr))
    return TargetSpec(name, "cpu", tuple(options))


def resolve_target(target: Union[str, dict, TargetSpec] = "host") -> TargetSpec:
    """Resolve a target name, ``"cuda:sm_80"``, or a full TVM target dict.

    Args:
        target: "host" (this machine), "x86", "arm", "cuda" or "cuda:sm_XX", a TVM target
            dict of kind llvm or cuda, or a :class:`TargetSpec` (returned as is).

    Returns:
        The target's :class:`TargetSpec`. Unknown names raise ValueError listing the valid ones.

    >>> spec = resolve_target("cuda:sm_90")
    >>> spec.family, spec.tvm_dict
    ('cuda', {'kind': 'cuda', 'arch': 'sm_90'})
    """
    if isinstance(target, TargetSpec):
        return target
    if isinstance(target, dict):
        return _from_dict(target)
    if not isinstance(target, str):
        raise TypeError(f"target must be a name or a TVM target dict, got {type(target).__name__}")
    name, _, arch = target.partition(":")
    if name == "host":
        return _cpu("host", host_triple(), tvm.target.codegen.llvm_get_system_cpu(), host_cores())
    if name == "x86":
        on_x86 = host_triple() == X86_TRIPLE
        mcpu = tvm.target.codegen.llvm_get_system_cpu() if on_x86 else "x86-64"
        return _cpu("x86", X86_TRIPLE, mcpu, host_cores() if on_x86 else 1)
    if name == "arm":
        return _cpu("arm", ARM_TRIPLE, arch or "generic", 4, ("+neon",))
    if name == "cuda":
        arch = arch or DEFAULT_CUDA_ARCH
        if not arch.startswith("sm_") or not arch[3:].isdigit():
            raise ValueError(f"CUDA arch must look like sm_90, got {arch!r}")
        return TargetSpec("cuda", "cuda", (("kind", "cuda"), ("arch", arch)))
    raise ValueError(f"unknown target {target!r}; valid targets: {', '.join(TARGET_NAMES)} "
                     "(cuda:sm_XX picks an arch), or a TVM target dict")


def _from_dict(options: dict) -> TargetSpec:
    try:
        tvm.target.Target(options)
    except Exception as error:  # TVM raises its own error types for bad dicts
        raise ValueError(f"invalid TVM target {options!r}: {error}") from None
    kind = options.get("kind")
    if kind == "cuda":
        return TargetSpec("cuda", "cuda", _freeze(options))
    if kind == "llvm":
        options = {"mtriple": host_triple(), **options}
        triple = options["mtriple"]
        name = "arm" if triple.startswith("aarch64") else "x86" if triple == X86_TRIPLE else "llvm"
        return TargetSpec(name, "cpu", _freeze(options))
    raise ValueError(f"unsupported TVM target kind {kind!r}; tpc compiles for llvm (CPU) and cuda")


def _freeze(options: dict) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((key, tuple(value) if isinstance(value, list) else value) for key, value in options.items()))


EXACT, SAME_CPU, SAME_ISA, SAME_ARCH = range(4)
"""Kinship of the target a schedule was tuned on to the one compiled for (:func:`kinship`), nearest first."""


@dataclass(frozen=True)
class VectorIsa:
    """A target's architecture and the widest vector instruction set LLVM may use on it.

    ``arch`` is the triple's first part ("x86_64", "aarch64") or "cuda"; ``isa`` is e.g.
    "avx512", "avx2", "neon", "sve" or, for CUDA, "sm_9x"; ``vector_bits`` its vector width
    (0 where scalable or unknown).
    """

    arch: str
    isa: str
    vector_bits: int


X86_VECTOR_ISAS = (("avx512f", "avx512", 512), ("avx2", "avx2", 256), ("avx", "avx", 256), ("sse2", "sse", 128))
ARM_VECTOR_ISAS = (("sve2", "sve2", 0), ("sve", "sve", 0), ("neon", "neon", 128))


def vector_isa(target: Mapping[str, Any]) -> VectorIsa:
    """The vector instruction set of a TVM target dict, from the CPU features LLVM compiles it for.

    >>> vector_isa({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"})
    VectorIsa(arch='x86_64', isa='avx512', vector_bits=512)
    >>> vector_isa({"kind": "cuda", "arch": "sm_90"})
    VectorIsa(arch='cuda', isa='sm_9x', vector_bits=0)
    """
    return _vector_isa(_canonical(target))


def kinship(wanted: Union[TargetSpec, Mapping[str, Any]], tuned: Mapping[str, Any]) -> Optional[int]:
    """How near the target ``tuned`` (a TVM target dict a schedule was tuned on) is to ``wanted``.

    Returns:
        :data:`EXACT` for the same dict; :data:`SAME_CPU` for the same one but for its core
        count; :data:`SAME_ISA` for the same architecture and vector instruction set
        (:func:`vector_isa`); :data:`SAME_ARCH` for the same architecture (x86 with x86, any
        CUDA GPU with another); None for another kind or architecture, or a dict TVM rejects.
    """
    wanted = wanted.tvm_dict if isinstance(wanted, TargetSpec) else dict(wanted)
    return _kinship(_canonical(wanted), _canonical(tuned))


def feature_similarity(wanted: Mapping[str, Any], tuned: Mapping[str, Any]) -> float:
    """Shared over all instruction-set features of two CPU target dicts (1 for the same set), to
    rank kindred targets; 0 for CUDA or a dict TVM rejects."""
    first, second = _features(_canonical(wanted)), _features(_canonical(tuned))
    union = first | second
    return len(first & second) / len(union) if union else 0.0


def target_label(target: Mapping[str, Any]) -> str:
    """A short name of a target dict: its ``mcpu`` (with any ``mattr``) or CUDA ``arch``."""
    name = str(target.get("mcpu") or target.get("arch") or target.get("mtriple") or target.get("kind"))
    mattr = target.get("mattr")
    return f"{name} {','.join(map(str, mattr))}" if isinstance(mattr, (list, tuple)) and mattr else name


def _canonical(target: Mapping[str, Any]) -> str:
    return json.dumps(dict(target), sort_keys=True, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=1024)
def _resolved(canonical: str) -> Optional[TargetSpec]:
    try:
        return resolve_target(json.loads(canonical))
    except Exception:  # a record's target is whatever its file held: unresolvable is unrelated
        return None


@functools.lru_cache(maxsize=1024)
def _features(canonical: str) -> frozenset[str]:
    spec = _resolved(canonical)
    try:
        return frozenset(spec.cpu_features()) if spec is not None else frozenset()
    except Exception:  # LLVM refusing a foreign record's CPU: no features known
        return frozenset()


@functools.lru_cache(maxsize=1024)
def _vector_isa(canonical: str) -> VectorIsa:
    spec = _resolved(canonical)
    if spec is None:
        return VectorIsa("unknown", "", 0)
    if spec.family == "cuda":
        arch = str(spec.tvm_dict.get("arch", ""))
        return VectorIsa("cuda", arch[:-1] + "x" if arch[3:].isdigit() else arch, 0)
    arch = str(spec.triple).split("-")[0]
    features = _features(canonical)
    for feature, isa, bits in X86_VECTOR_ISAS if arch == "x86_64" else ARM_VECTOR_ISAS if arch == "aarch64" else ():
        if feature in features:
            return VectorIsa(arch, isa, bits)
    return VectorIsa(arch, "scalar", 0)


@functools.lru_cache(maxsize=4096)
def _kinship(wanted: str, tuned: str) -> Optional[int]:
    if wanted == tuned:
        return EXACT
    first, second = _resolved(wanted), _resolved(tuned)
    if first is None or second is None:
        return None
    if first.fingerprint == second.fingerprint:
        return EXACT
    without_cores = ({key: value for key, value in spec.tvm_dict.items() if key != "num-cores"}
                     for spec in (first, second))
    if first.family == "cpu" and next(without_cores) == next(without_cores):
        return SAME_CPU
    isa, other = _vector_isa(wanted), _vector_isa(tuned)
    if isa.arch != other.arch or isa.arch == "unknown":
        return None
    return SAME_ISA if isa.isa == other.isa else SAME_ARCH
