"""Tuning records: one JSON line per measurement, append-only.

A record says which schedule was measured for which op, batch, dtype and target, and what
came out (seconds, or the error). A tuning run's seconds after its first round are relative:
timed in turns with the run's reference record (its first measurement, or a later one more
than 15% faster, see :func:`tpc.tune.tuner.reference_record`), scaled by that one's seconds.
Writing flushes and syncs each line, so a killed tuner loses at most the line being written;
reading skips a line that does not parse (a truncated last line after a crash) with a warning
instead of failing.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import tvm

from tpc._version import __version__

RECORD_FORMAT = "tpc.Record/1"


@dataclass(frozen=True)
class Record:
    """One measurement of one schedule."""

    op: str
    batch: int
    dtype: str
    target: dict
    target_fingerprint: str
    space_version: int
    algorithm: str
    config: dict
    seconds: Optional[float]
    error: Optional[str] = None
    strategy: str = ""
    trial: int = 0
    tpc_version: str = __version__
    tvm_version: str = tvm.__version__
    timestamp: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def ok(self) -> bool:
        """True for a successful measurement."""
        return self.error is None and self.seconds is not None

    def to_json(self) -> str:
        """The record as one line of JSON."""
        return json.dumps({"format": RECORD_FORMAT, **asdict(self)}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        """Rebuild a record; anything malformed raises ValueError."""
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ValueError("not a tpc tuning record")
        fields = {key: value for key, value in data.items() if key != "format"}
        try:
            return cls(**fields)
        except TypeError as error:
            raise ValueError(f"malformed tuning record: {error}") from None


def append_records(path: Union[str, os.PathLike], records: Iterable[Record]) -> None:
    """Append records to a log, each line flushed to disk before the next is written.

    Args:
        path: the JSON-lines log; it and its folder are created when missing.
        records: the records to append, in order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        for record in records:
            stream.write(record.to_json() + "\n")
            stream.flush()
            os.fsync(stream.fileno())


def read_records(path: Union[str, os.PathLike]) -> list[Record]:
    """All readable records of a log; bad lines are skipped with a warning.

    Args:
        path: a JSON-lines log written by :func:`append_records`.

    Returns:
        The records in file order; none for a missing file.

    >>> read_records("no-such-log.jsonl")
    []
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append(Record.from_dict(json.loads(line)))
            except (json.JSONDecodeError, ValueError) as error:
                warnings.warn(f"{path}:{number}: skipping unreadable tuning record ({error})", stacklevel=2)
    return records
