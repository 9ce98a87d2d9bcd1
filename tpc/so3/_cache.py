"""Compute-once storage for coefficient tables: in memory always, on disk for large ones.

Tables are returned read-only so that no caller can corrupt the shared copy. A disk entry
that cannot be read (truncated, wrong shape, foreign file) is recomputed and rewritten with a
warning, never trusted.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from tpc.files import write_atomically

FORMAT_VERSION = 1


def cache_dir() -> Path:
    """Directory for on-disk coefficient tables: ``$TPC_CACHE/so3`` or ``~/.cache/tpc/so3``."""
    root = os.environ.get("TPC_CACHE") or os.path.join(Path.home(), ".cache", "tpc")
    return Path(root) / "so3"


def cached_table(name: str, on_disk: Callable[..., bool] = lambda *args: False):
    """Decorate ``compute(*int_args) -> ndarray`` to memoize it, on disk when ``on_disk(*args)``."""

    def decorate(compute: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        @functools.lru_cache(maxsize=None)
        def lookup(*args: int) -> np.ndarray:
            table = _load_or_compute(name, args, compute) if on_disk(*args) else compute(*args)
            table = np.ascontiguousarray(table)
            table.setflags(write=False)
            return table

        @functools.wraps(compute)
        def wrapper(*args: int) -> np.ndarray:
            for arg in args:
                if isinstance(arg, bool) or not isinstance(arg, (int, np.integer)):
                    raise ValueError(f"{compute.__name__} takes integer arguments, got {args}")
            return lookup(*(int(a) for a in args))

        wrapper.cache_clear = lookup.cache_clear  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _load_or_compute(name: str, args: tuple[int, ...], compute: Callable[..., np.ndarray]) -> np.ndarray:
    path = cache_dir() / f"{name}-v{FORMAT_VERSION}-{'_'.join(map(str, args))}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            warnings.warn(f"ignoring unreadable coefficient cache file {path}: {error}", stacklevel=3)
    table = compute(*args)
    _write_table(path, table)
    return table


def _write_table(path: Path, table: np.ndarray) -> None:
    """Keep ``table`` at ``path`` (atomically); a cache that cannot be written is a warning, not an error."""
    try:
        write_atomically(path, lambda stream: np.save(stream, table, allow_pickle=False))
    except OSError as error:
        warnings.warn(f"could not write coefficient cache file {path}: {error}", stacklevel=4)
