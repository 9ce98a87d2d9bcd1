"""Output buffers reused once nothing holds them: no first-touch page faults per call.

A fresh buffer of tens of MB is mapped anew by the allocator on each call and every page of it
faults on first write, which can cost more than the kernel writing it (docs/measurements.md).
The workspace keeps the buffers it handed out; a buffer is handed out again only when its
reference count says that no tensor, view or saved autograd value holds it any more.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

MIN_BYTES = 1 << 20
"""Buffers smaller than this come from the allocator, which reuses small freed blocks itself."""
MAX_PER_SHAPE = 8
"""Buffers kept per (shape, dtype): a model holds that many outputs of one shape alive at once."""
MAX_BYTES = 4 << 30
"""The most memory the workspace keeps; past it, buffers come from the allocator."""
_FREE = 3
"""``sys.getrefcount`` of a kept buffer no tensor holds: the list, the loop variable, the call's argument."""


class Workspace:
    """Uninitialized CPU tensors whose memory is reused across calls where that is safe.

    >>> workspace = Workspace()
    >>> first = workspace.empty((512, 1024), "float32")
    >>> pointer = first.data_ptr()
    >>> del first
    >>> workspace.empty((512, 1024), "float32").data_ptr() == pointer
    True
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[tuple[int, ...], str], list[np.ndarray]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        """An uninitialized tensor of ``shape`` and ``dtype`` (a numpy dtype name)."""
        shape = tuple(int(n) for n in shape)
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if size < MIN_BYTES:
            return torch.from_numpy(np.empty(shape, dtype=dtype))
        with self._lock:
            kept = self._buffers.setdefault((shape, dtype), [])
            for buffer in kept:
                if sys.getrefcount(buffer) == _FREE:
                    return torch.from_numpy(buffer)
            buffer = np.empty(shape, dtype=dtype)
            if len(kept) < MAX_PER_SHAPE and self._bytes + size <= MAX_BYTES:
                kept.append(buffer)
                self._bytes += size
            return torch.from_numpy(buffer)

    def clear(self) -> None:
        """Forget every kept buffer (memory held by live tensors is freed with them)."""
        with self._lock:
            self._buffers.clear()
            self._bytes = 0

    @property
    def kept_bytes(self) -> int:
        """Bytes of the buffers kept for reuse, held by tensors or not."""
        return self._bytes


WORKSPACE = Workspace()
"""The workspace of the ``tpc::`` custom ops' outputs."""
