"""The schedule cache: the best measured schedule per (op, batch bucket, dtype, target).

Two places are consulted, in order: the user cache (``$TPC_CACHE/schedules.jsonl``, default
``~/.cache/tpc``), written by ``tpc tune``, and the repository's ``schedules/`` folder,
tuned records shipped for the presets. Both hold tuning records; the first place with
successful records of the op, dtype, target and current knob-space version answers with its
fastest record at the nearest tuned batch bucket.

A cache file is edited by hand and written by older versions, so every record is checked when
read: a line that does not parse, a record whose fields have the wrong types (a batch that is
not a positive integer, a config that is not a dict, ...) or, at lookup, whose knobs do not fit
the current knob space is skipped with a warning naming the file and line, and the next-best
record answers instead.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tpc.records import Record, append_records, read_numbered_records

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "schedules"


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
    """A cached schedule and where it was found ("user cache" or "shipped"), file and line."""

    record: Record
    source: str
    path: Optional[Path] = None
    line: int = 0


def add_records(records: Iterable[Record]) -> None:
    """Keep the successful records in the user cache."""
    append_records(user_cache_file(), [record for record in records if record.ok])


def warn_skipped(path: Path, line: int, problem: Any) -> None:
    """Warn that a cached record is not used, naming its file, line and the problem."""
    warnings.warn(f"{path}:{line}: skipping cached schedule record: {problem}", stacklevel=3)


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


def read_cache_file(path: Path, source: str) -> list[CachedRecord]:
    """The successful, well-formed records of one cache file, with their line numbers.

    Args:
        path: a JSON-lines file of tuning records; a missing file has none.
        source: the name of the place it belongs to, e.g. "user cache".

    Returns:
        The records in file order; unreadable lines and records with fields of the wrong types
        are skipped with a warning naming the file and line, failed measurements silently.
    """
    entries = []
    for number, record in read_numbered_records(path):
        problem = record_problem(record)
        if problem is not None:
            warn_skipped(path, number, problem)
        elif record.ok:
            entries.append(CachedRecord(source, path, number, record))
    return entries


def cached_entries() -> list[CachedRecord]:
    """The successful records of the user cache, then of the shipped schedules, with file and line."""
    places = (("user cache", [user_cache_file()]), ("shipped", sorted(SHIPPED_DIR.glob("*.jsonl"))))
    return [entry for source, files in places for path in files for entry in read_cache_file(path, source)]


def cached_records() -> list[tuple[str, list[Record]]]:
    """The successful records of the user cache, then of the shipped schedules."""
    entries = cached_entries()
    return [(source, [entry.record for entry in entries if entry.source == source])
            for source in ("user cache", "shipped")]


def lookup(op: str, batch: Optional[int], dtype: str, target_fingerprint: str,
           space_versions: Mapping[str, int], fits: Optional[Callable[[Record], Any]] = None) -> Optional[CacheHit]:
    """The best cached record for the key among the algorithms of ``space_versions``.

    Args:
        op: the op's fingerprint (:attr:`tpc.ops.Op.fingerprint`).
        batch: the batch size (edges for a fused kernel); the nearest tuned batch bucket is
            used, and None takes the fastest record of any batch.
        dtype: the element type, e.g. "float32".
        target_fingerprint: :attr:`tpc.targets.TargetSpec.fingerprint` of the target.
        space_versions: algorithm -> current version of its knob space; records of other
            versions are stale and ignored.
        fits: checks a candidate's knobs against the current space, raising ValueError or
            TypeError when they do not fit; such a record is skipped with a warning naming
            its file and line, and the next-best one is tried.

    Returns:
        The hit from the user cache if it holds any usable record for the key, else from the
        shipped schedules; None when neither does.
    """
    entries = cached_entries()
    for source in ("user cache", "shipped"):
        candidates = [
            entry for entry in entries
            if entry.source == source and entry.record.op == op and entry.record.dtype == dtype
            and entry.record.target_fingerprint == target_fingerprint
            and space_versions.get(entry.record.algorithm) == entry.record.space_version
        ]
        for entry in _best_first(candidates, batch):
            try:
                if fits is not None:
                    fits(entry.record)
            except (ValueError, TypeError) as error:
                warn_skipped(entry.path, entry.line, error)
                continue
            return CacheHit(entry.record, source, entry.path, entry.line)
    return None


def _best_first(entries: list[CachedRecord], batch: Optional[int]) -> list[CachedRecord]:
    """Entries by preference: nearest batch bucket (any when ``batch`` is None), then fastest."""
    if batch is None:
        return sorted(entries, key=lambda entry: entry.record.seconds)
    wanted = math.log2(batch_bucket(batch))
    return sorted(entries, key=lambda entry: (abs(math.log2(batch_bucket(entry.record.batch)) - wanted),
                                              entry.record.seconds))
