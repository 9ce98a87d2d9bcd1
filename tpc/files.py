"""Atomic file writes: a temporary file of an unpredictable name in the target's folder, synced, then renamed.

A reader sees the old file or the complete new one, never a half-written one; two writers of one
path never share a temporary file, so the last rename wins with a whole file; and a planted link
at a guessable temporary name cannot redirect the write, because ``mkstemp`` creates a new file
exclusively.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union


def write_atomically(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(stream)`` on a fresh temporary file, then rename it over ``path``.

    Args:
        path: the file to write; its folder is created when missing. An existing file is
            replaced only once the new one is complete and on disk.
        write: writes the whole content to the binary stream it is given.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name to write to")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Union[str, os.PathLike], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`).

    Args:
        path: the file to write.
        data: its whole content.

    Returns:
        ``path`` as a Path.
    """
    return write_atomically(path, lambda stream: stream.write(data))


def _umask() -> int:
    """The process's umask (read by setting and restoring it), so a written file gets the usual permissions."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
