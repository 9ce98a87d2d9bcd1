"""The schedule cache: the best measured schedule per (op, batch bucket, dtype, target).

Two places hold tuning records: the user cache (``$TPC_CACHE/schedules.jsonl``, default
``~/.cache/tpc``), written by ``tpc tune``, and the shipped schedules, ``tpc/schedules/*.jsonl``
inside the package (installed with it), tuned for the presets on the machines named by the
files. A lookup takes the successful records of the op, dtype and current knob-space version
and ranks them by the kinship of the target they were tuned on to the one compiled for
(:func:`tpc.targets.kinship`): the same target first, then the same CPU with another core
count, then a CPU of the same architecture and vector instruction set (an AVX-512 x86 record
for another AVX-512 x86 CPU, AVX2 for AVX2, NEON for NEON), then any CPU of the architecture
(any CUDA GPU for a GPU). Among targets equally kin, the one sharing most instruction-set
features answers, then the nearest core count, the user cache before the shipped files; its
record at the nearest tuned batch bucket, the fastest there. A hit from another target says
so: its description reads e.g. "shipped, tuned on znver4", what ``Kernel.schedule.source``
shows. CPU knobs count elements and loop iterations, so every CPU builds them; a kernel
that does not build with a cached schedule is built with the default instead (``tpc.compile``).

A cache file is edited by hand and written by older versions, so every record is checked when
read: a line that does not parse, a record whose fields have the wrong types (a batch that is
not a positive integer, a config that is not a dict, ...) or, at lookup, whose knobs do not fit
the current knob space is skipped with a warning naming the file and line, and the next-best
record answers instead.

Each file is read once per process and read again only when its size, modification time or
inode changes (:func:`read_cache_file`). :func:`prune` rewrites a file keeping the best records
per key, under the lock appenders take (:func:`tpc.records.locked_log`).
"""

from __future__ import annotations

import json
import math
import os
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from tpc.files import write_atomically
from tpc.records import Record, append_records, locked_log, read_numbered_records
from tpc.targets import EXACT, SAME_CPU, TargetSpec, feature_similarity, kinship, target_label

PACKAGED_SCHEDULES = Path(__file__).resolve().parent / "schedules"
"""The shipped schedules inside the installed package."""
SHIPPED_DIR = PACKAGED_SCHEDULES
"""Where lookups find the shipped schedules (tests point it elsewhere)."""
SOURCES = ("user cache", "shipped")


def cache_root() -> Path:
    """``$TPC_CACHE`` or ``~/.cache/tpc``."""
    return Path(os.environ.get("TPC_CACHE") or Path.home() / ".cache" / "tpc")


def user_cache_file() -> Path:
    """The user's schedule cache (JSON lines of tuning records)."""
    return cache_root() / "schedules.jsonl"


def batch_bucket(batch: int) -> int:
    """Batch sizes are cached by power of two: 10000 and 16000 share the bucket 16384."""
    return 1 << max(0, math.ceil(math.log2(max(batch, 1))))


@dataclass(frozen=True)
class CachedRecord:
    """A successful record of a cache file, with where it came from (for warnings)."""

    source: str
    path: Path
    line: int
    record: Record


@dataclass(frozen=True)
class CacheHit:
    """A cached schedule: the record, the place it was found ("user cache" or "shipped"), its
    file and line, and the kinship of the target it was tuned on (:data:`tpc.targets.EXACT`, ...)."""

    record: Record
    source: str
    path: Optional[Path] = None
    line: int = 0
    kinship: int = EXACT

    @property
    def description(self) -> str:
        """The place, and for a record of another target the one it was tuned on: "shipped",
        "shipped, tuned on znver4", "user cache, tuned on znver3 with 16 cores"."""
        if self.kinship == EXACT:
            return self.source
        cores = self.record.target.get("num-cores")
        with_cores = f" with {cores} cores" if self.kinship == SAME_CPU and cores is not None else ""
        return f"{self.source}, tuned on {target_label(self.record.target)}{with_cores}"


def add_records(records: Iterable[Record]) -> None:
    """Keep the successful records in the user cache."""
    append_records(user_cache_file(), [record for record in records if record.ok])


def warn_skipped(path: Path, line: int, problem: Any) -> None:
    """Warn that a cached record is not used, naming its file, line and the problem."""
    warnings.warn(_skipped(path, line, problem), stacklevel=3)


def record_problem(record: Record) -> Optional[str]:
    """Why a record's fields cannot be used as a cached schedule, or None when they can.

    Args:
        record: a record as read from a file; its fields are whatever the JSON held.

    Returns:
        A one-line description of the first field of the wrong type or value, else None.
    """
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for name in ("op", "dtype", "target_fingerprint", "algorithm"):
        if not isinstance(getattr(record, name), str):
            return f"{name} must be a string, got {getattr(record, name)!r}"
    if not is_int(record.batch) or record.batch < 1:
        return f"batch must be a positive integer, got {record.batch!r}"
    if not is_int(record.space_version):
        return f"space_version must be an integer, got {record.space_version!r}"
    for name in ("target", "config"):
        if not isinstance(getattr(record, name), dict):
            return f"{name} must be a JSON object, got {getattr(record, name)!r}"
    if record.error is not None and not isinstance(record.error, str):
        return f"error must be a string or null, got {record.error!r}"
    seconds = record.seconds
    if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                or not math.isfinite(seconds) or seconds <= 0):
        return f"seconds must be a positive number or null, got {seconds!r}"
    return None


@dataclass
class _ParsedFile:
    """One cache file as last read: its stamp, records by (op, dtype), and why lines were skipped."""

    stamp: tuple[int, ...]
    entries: list[CachedRecord]
    by_op: dict[tuple[str, str], list[CachedRecord]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


_PARSED: dict[tuple[Path, str], _ParsedFile] = {}
_PARSED_LOCK = threading.Lock()


def read_cache_file(path: Path, source: str) -> list[CachedRecord]:
    """The successful, well-formed records of one cache file, with their line numbers.

    The file is parsed once and again only when its (size, modification time, inode) changes;
    each call warns again about the lines it skipped (Python shows a warning once per place).

    Args:
        path: a JSON-lines file of tuning records; a missing file has none.
        source: the name of the place it belongs to, e.g. "user cache".

    Returns:
        The records in file order; unreadable lines and records with fields of the wrong types
        are skipped with a warning naming the file and line, failed measurements silently.
    """
    return _read(Path(path), source).entries


def _read(path: Path, source: str) -> _ParsedFile:
    """The parsed file, warning about the lines it skipped."""
    parsed = _parsed(path, source)
    for message in parsed.problems:
        warnings.warn(message, stacklevel=4)
    return parsed


def _parsed(path: Path, source: str) -> _ParsedFile:
    try:
        status = path.stat()
    except OSError:
        status = None
    if status is None or not stat.S_ISREG(status.st_mode):
        with _PARSED_LOCK:
            _PARSED.pop((path, source), None)
        return _ParsedFile((), [])
    stamp = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    with _PARSED_LOCK:
        known = _PARSED.get((path, source))
    if known is not None and known.stamp == stamp:
        return known
    parsed = _ParsedFile(stamp, [])
    for number, record in read_numbered_records(path, on_bad_line=parsed.problems.append):
        problem = record_problem(record)
        if problem is not None:
            parsed.problems.append(_skipped(path, number, problem))
        elif record.ok:
            entry = CachedRecord(source, path, number, record)
            parsed.entries.append(entry)
            parsed.by_op.setdefault((record.op, record.dtype), []).append(entry)
    with _PARSED_LOCK:
        _PARSED[(path, source)] = parsed
    return parsed


def cache_files() -> list[tuple[str, Path]]:
    """(place, file) of every schedule file consulted, in order: the user cache, then the shipped files."""
    shipped = sorted(Path(SHIPPED_DIR).glob("*.jsonl"))
    return [("user cache", user_cache_file())] + [("shipped", path) for path in shipped]


def cached_entries() -> list[CachedRecord]:
    """The successful records of the user cache, then of the shipped schedules, with file and line."""
    return [entry for source, path in cache_files() for entry in read_cache_file(path, source)]


def cached_records() -> list[tuple[str, list[Record]]]:
    """The successful records of the user cache, then of the shipped schedules."""
    entries = cached_entries()
    return [(source, [entry.record for entry in entries if entry.source == source]) for source in SOURCES]


def lookup(op: str, batch: Optional[int], dtype: str, target: Union[TargetSpec, str],
           space_versions: Mapping[str, int], fits: Optional[Callable[[Record], Any]] = None) -> Optional[CacheHit]:
    """The best cached record for the key among the algorithms of ``space_versions``.

    Args:
        op: the op's fingerprint (:attr:`tpc.ops.Op.fingerprint`).
        batch: the batch size (edges for a fused kernel); the nearest tuned batch bucket is
            used, and None takes the fastest record of any batch.
        dtype: the element type, e.g. "float32".
        target: the target compiled for; records of kindred targets answer where it has none
            (see the module docstring). A :attr:`tpc.targets.TargetSpec.fingerprint` instead
            takes records of that exact target only.
        space_versions: algorithm -> current version of its knob space; records of other
            versions are stale and ignored.
        fits: checks a candidate's knobs against the current space, raising ValueError or
            TypeError when they do not fit; such a record is skipped with a warning naming
            its file and line, and the next-best one is tried.

    Returns:
        The nearest target's best usable record (the user cache's before the shipped files'
        for the same target), or None when no file holds a usable record for a kindred target.
    """
    ranked = []
    for source, path in cache_files():
        for entry in _read(path, source).by_op.get((op, dtype), ()):
            record = entry.record
            if space_versions.get(record.algorithm) != record.space_version:
                continue
            rank = _target_rank(target, record, SOURCES.index(source))
            if rank is not None:
                ranked.append((rank, _batch_distance(record, batch), record.seconds, len(ranked), entry))
    for rank, _, _, _, entry in sorted(ranked, key=lambda item: item[:4]):
        try:
            if fits is not None:
                fits(entry.record)
        except (ValueError, TypeError) as error:
            warn_skipped(entry.path, entry.line, error)
            continue
        return CacheHit(entry.record, entry.source, entry.path, entry.line, rank[0])
    return None


def _target_rank(target: Union[TargetSpec, str], record: Record, source: int) -> Optional[tuple]:
    """How a record's target ranks for ``target``: (kinship, -feature similarity, core-count
    distance, place, target fingerprint); None when it does not serve it."""
    fingerprint = target if isinstance(target, str) else target.fingerprint
    if record.target_fingerprint == fingerprint:
        return (EXACT, 0.0, 0, source, fingerprint)
    if isinstance(target, str):
        return None
    kin = kinship(target, record.target)
    if kin is None:
        return None
    cores = (target.tvm_dict.get("num-cores"), record.target.get("num-cores"))
    distance = abs(cores[0] - cores[1]) if all(isinstance(count, int) for count in cores) else 0
    return (kin, -feature_similarity(target.tvm_dict, record.target), distance, source, record.target_fingerprint)


def _batch_distance(record: Record, batch: Optional[int]) -> float:
    """How far a record's batch bucket is from ``batch``'s, in powers of two (0 when ``batch`` is None)."""
    if batch is None:
        return 0.0
    return abs(math.log2(batch_bucket(record.batch)) - math.log2(batch_bucket(batch)))


def _skipped(path: Path, line: int, problem: Any) -> str:
    return f"{path}:{line}: skipping cached schedule record: {problem}"


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` kept of a file and why it dropped the rest (counts of lines)."""

    path: Path
    kept: int = 0
    slower: int = 0
    """beyond the fastest ``keep`` configurations of their key, or a slower repeat of one of them"""
    stale: int = 0
    """failed measurements, and records of a knob space (or target kind) this version has not"""
    unreadable: int = 0
    """lines that do not parse as records, or whose fields have the wrong types"""

    @property
    def dropped(self) -> int:
        """Lines dropped in all."""
        return self.slower + self.stale + self.unreadable

    def summary(self, dry_run: bool = False) -> str:
        """One line: what was (or would be) kept and dropped."""
        kept, dropped = ("would keep", "would drop") if dry_run else ("kept", "dropped")
        return (f"{self.path}: {kept} {self.kept} of {self.kept + self.dropped} lines; {dropped} {self.slower} "
                f"slower, {self.stale} failed or of stale knob spaces, {self.unreadable} unreadable")


def prune(path: Optional[Union[str, os.PathLike]] = None, keep: int = 3, dry_run: bool = False) -> PruneReport:
    """Rewrite a schedule file keeping the fastest ``keep`` configurations per key.

    A key is (op, batch bucket, dtype, target, algorithm, knob-space version): what a lookup
    tells apart. Kept lines stay as written and in their order; the file is replaced atomically
    (:func:`tpc.files.write_atomically`) while holding the lock appenders take, so a tuner
    appending at the same time loses nothing. More than the single best is kept by default
    because the tuner's prior learns from pairs of configurations one knob apart.

    Args:
        path: the file; default the user cache (:func:`user_cache_file`).
        keep: configurations kept per key (at least 1).
        dry_run: count only; leave the file as it is.

    Returns:
        The counts; a missing file has none.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    path = Path(path) if path is not None else user_cache_file()
    if not path.is_file():
        return PruneReport(path)
    with locked_log(path):
        lines = path.read_bytes().splitlines(keepends=True)
        kept, report = _pruned_lines(lines, keep, path)
        if not dry_run and report.dropped:
            mode = stat.S_IMODE(path.stat().st_mode)
            write_atomically(path, lambda stream: stream.write(b"".join(kept)), mode=mode)
    return report


def _pruned_lines(lines: list[bytes], keep: int, path: Path) -> tuple[list[bytes], PruneReport]:
    """The lines :func:`prune` keeps, and its report."""
    versions = _current_versions()
    unreadable, stale, groups = 0, 0, {}
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = Record.from_dict(json.loads(line))
        except (ValueError, RecursionError, UnicodeDecodeError):
            record = None
        if record is None or record_problem(record) is not None:
            unreadable += 1
            continue
        family = {"llvm": "cpu", "cuda": "cuda"}.get(record.target.get("kind"))
        if not record.ok or record.space_version not in versions.get((family, record.algorithm), ()):
            stale += 1
            continue
        key = (record.op, batch_bucket(record.batch), record.dtype, record.target_fingerprint, record.algorithm,
               record.space_version)
        groups.setdefault(key, []).append((record.seconds, index, json.dumps(record.config, sort_keys=True)))
    chosen = set()
    for measured in groups.values():
        configs = set()
        for _, index, config in sorted(measured):
            if config not in configs and len(configs) < keep:
                configs.add(config)
                chosen.add(index)
    kept = [line if line.endswith(b"\n") else line + b"\n" for index, line in enumerate(lines) if index in chosen]
    slower = sum(len(measured) for measured in groups.values()) - len(chosen)
    return kept, PruneReport(path, len(kept), slower, stale, unreadable)


def _current_versions() -> dict[tuple[str, str], set[int]]:
    """(family, algorithm) -> the versions of its knob spaces (products, gradients, fused kernels)."""
    from tpc.ops import FUSIONS, WRT
    from tpc.schedule import FAMILIES, scheduled_algorithms, search_space

    versions: dict[tuple[str, str], set[int]] = {}
    for family in FAMILIES:
        for key in (None, *WRT, *FUSIONS):
            for algorithm in scheduled_algorithms(family, key):
                versions.setdefault((family, algorithm), set()).add(search_space(family, algorithm, key).version)
    return versions
