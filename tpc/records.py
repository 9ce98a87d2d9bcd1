"""Tuning records: one JSON line per measurement, append-only.

A record says which schedule was measured for which op, batch, dtype and target, and what
came out (seconds, or the error). A tuning run's seconds after its first round are relative:
timed in turns with the run's reference record (its first measurement, or a later one more
than 15% faster, see :func:`tpc.tune.tuner.reference_record`), scaled by that one's seconds.
Writing holds an exclusive lock on the log (so tuners sharing a log or the schedule cache never
interleave lines) and flushes and syncs each line, so a killed tuner loses at most the line
being written. A log rewritten whole (``tpc cache prune``) is written to a new file renamed over
it under the same lock (:func:`locked_log`); a writer that was waiting for the lock finds the
file it locked replaced and locks the new one instead, so no line goes to the old file. The
next append repairs a cut last line before writing: a fragment that is not a whole record is
truncated away, so a new record is never glued onto it and the log stays one valid record a
line. Reading skips a line that does not parse (a log cut by a crash and not
appended to since, or a foreign line) with a warning instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import tvm

from tpc._version import __version__

RECORD_FORMAT = "tpc.Record/1"


@dataclass(frozen=True)
class Record:
    """One measurement of one schedule; ``device`` says what ran it: "local" (the tuning
    machine), or "rpc:KEY", a device behind a TVM RPC tracker."""

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
    device: str = "local"
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
    """Append records to a log under an exclusive lock, each line synced to disk before the next.

    A cut last line left by a killed writer is repaired first (see the module docstring). A
    record whose write fails (a full disk) is cut off again before the error is raised, so
    the log holds only whole lines.

    Args:
        path: the JSON-lines log; it and its folder are created when missing.
        records: the records to append, in order.

    Raises:
        OSError: the log cannot be opened or written (its name is in the error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked_log(path) as handle:
        _repair_cut_line(handle, path)
        for record in records:
            start = os.fstat(handle).st_size
            try:
                _write_all(handle, (record.to_json() + "\n").encode())
                os.fsync(handle)
            except OSError as error:
                os.ftruncate(handle, start)
                raise OSError(error.errno, f"cannot append to {path}: {error.strerror}", str(path)) from None


@contextmanager
def locked_log(path: Union[str, os.PathLike]) -> Iterator[int]:
    """The log opened for appending (created when missing) under an exclusive lock: its handle.

    Whoever rewrites the log whole renames the new file over it while holding this lock; a
    caller that was waiting for the lock then holds the lock of a file no longer at ``path``,
    and opens and locks ``path`` again, so what it writes lands in the file that is there.
    Closing the handle when the block ends releases the lock.
    """
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            opened = os.fstat(handle)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
        except BaseException:
            os.close(handle)
            raise
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(handle)  # replaced while we waited: lock the file now at the path
    try:
        yield handle
    finally:
        os.close(handle)  # closing releases the lock


def _write_all(handle: int, data: bytes) -> None:
    while data:
        data = data[os.write(handle, data):]


def _repair_cut_line(handle: int, path: Path) -> None:
    """Make the log end in a newline: a last line without one is kept (newline added) when it is
    a whole record, else truncated with a warning."""
    size = os.fstat(handle).st_size
    if size == 0 or os.pread(handle, 1, size - 1) == b"\n":
        return
    start, chunk = size, 4096
    while start > 0:
        begin = max(0, start - chunk)
        newline = os.pread(handle, start - begin, begin).rfind(b"\n")
        if newline >= 0:
            start = begin + newline + 1
            break
        start = begin
    fragment = os.pread(handle, size - start, start)
    try:
        Record.from_dict(json.loads(fragment))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        warnings.warn(f"{path}: dropping a cut last line of {len(fragment)} bytes (a writer was killed mid-line)",
                      stacklevel=3)
        os.ftruncate(handle, start)
    else:
        _write_all(handle, b"\n")


def read_records(path: Union[str, os.PathLike]) -> list[Record]:
    """All readable records of a log; bad lines are skipped with a warning.

    Args:
        path: a JSON-lines log written by :func:`append_records`.

    Returns:
        The records in file order; none for a missing file.

    >>> read_records("no-such-log.jsonl")
    []
    """
    return [record for _, record in read_numbered_records(path)]


def read_numbered_records(path: Union[str, os.PathLike],
                          on_bad_line: Optional[Callable[[str], None]] = None) -> list[tuple[int, Record]]:
    """The readable records of a log with their line numbers; bad lines are skipped with a warning.

    Args:
        path: a JSON-lines log written by :func:`append_records`.
        on_bad_line: called with the message (naming the file and line) of each line skipped,
            instead of warning.

    Returns:
        ``(line number, record)`` pairs in file order; none for a missing file.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                records.append((number, Record.from_dict(json.loads(line))))
            except (ValueError, RecursionError) as error:
                message = f"{path}:{number}: skipping unreadable tuning record ({error})"
                if on_bad_line is None:
                    warnings.warn(message, stacklevel=3)
                else:
                    on_bad_line(message)
    return records
