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


def write_atomically(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None], mode: int | None = None,
                     create_folder: bool = True) -> Path:
    """Write ``path`` through ``write(stream)`` on a fresh temporary file, then rename it over ``path``.

    Args:
        path: the file to write. An existing file is replaced only once the new one is complete
            and on disk; the folder is synced after the rename.
        write: writes the whole content to the binary stream it is given.
        mode: the file's permission bits (default: what the umask gives a new file).
        create_folder: create the folder when it is missing (else writing there fails).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name to write to")
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask() if mode is None else mode)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return path


def sync_folder(folder: Path) -> None:
    """Sync a folder so that a rename in it survives a crash (where the system allows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


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
