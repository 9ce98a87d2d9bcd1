"""The schedule cache: the best measured schedule per (op, batch bucket, dtype, target).

Two places are consulted, in order: the user cache (``$TPC_CACHE/schedules.jsonl``, default
``~/.cache/tpc``), written by ``tpc tune``, and the repository's ``schedules/`` folder,
tuned records shipped for the presets. Both hold tuning records; the first place with
successful records of the op, dtype, target and current knob-space version answers with its
fastest record at the nearest tuned batch bucket.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tpc.records import Record, append_records, read_records

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
class CacheHit:
    """A cached schedule and where it was found ("user cache" or "shipped")."""

    record: Record
    source: str


def add_records(records: Iterable[Record]) -> None:
    """Keep the successful records in the user cache."""
    append_records(user_cache_file(), [record for record in records if record.ok])


def cached_records() -> list[tuple[str, list[Record]]]:
    """The successful records of the user cache, then of the shipped schedules."""
    out = []
    for source, files in (("user cache", [user_cache_file()]), ("shipped", sorted(SHIPPED_DIR.glob("*.jsonl")))):
        out.append((source, [record for path in files for record in read_records(path) if record.ok]))
    return out


def lookup(op: str, batch: Optional[int], dtype: str, target_fingerprint: str,
           space_versions: Mapping[str, int]) -> Optional[CacheHit]:
    """The best cached record for the key among the algorithms of ``space_versions``.

    Args:
        op: the op's fingerprint (:attr:`tpc.ops.Op.fingerprint`).
        batch: the batch size (edges for a fused kernel); the nearest tuned batch bucket is
            used, and None takes the fastest record of any batch.
        dtype: the element type, e.g. "float32".
        target_fingerprint: :attr:`tpc.targets.TargetSpec.fingerprint` of the target.
        space_versions: algorithm -> current version of its knob space; records of other
            versions are stale and ignored.

    Returns:
        The hit from the user cache if it holds any record for the key, else from the shipped
        schedules; None when neither does.
    """
    for source, records in cached_records():
        candidates = [
            record for record in records
            if record.op == op and record.dtype == dtype and record.target_fingerprint == target_fingerprint
            and space_versions.get(record.algorithm) == record.space_version
        ]
        if candidates:
            return CacheHit(_best_for_batch(candidates, batch), source)
    return None


def _best_for_batch(records: list[Record], batch: Optional[int]) -> Record:
    if batch is None:
        return min(records, key=lambda r: r.seconds)
    wanted = math.log2(batch_bucket(batch))
    distance = min(abs(math.log2(batch_bucket(r.batch)) - wanted) for r in records)
    nearest = [r for r in records if abs(math.log2(batch_bucket(r.batch)) - wanted) == distance]
    return min(nearest, key=lambda r: r.seconds)
