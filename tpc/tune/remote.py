"""Sessions on devices behind a TVM RPC tracker, as the tuner's run workers use them.

The tracker's protocol is spoken here directly (TVM's ``tvm.rpc.base`` helpers) so that the
wait for a device is bounded and the device's address is known; :class:`RemoteModule` lets
the :mod:`tpc.runtime` kernel classes run around a module loaded on the device. The runner
that hands out the jobs is :class:`tpc.tune.rpc.RPCRunner`.

A TVM RPC server runs whatever code it is sent, with its user's rights, and its traffic is
neither authenticated nor encrypted: run trackers and servers on 127.0.0.1 or a trusted
network only.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np


class RPCError(ConnectionError):
    """The tracker or the devices under a key cannot be reached."""


def tracker_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` as ``(host, port)``.

    >>> tracker_address("127.0.0.1:9190")
    ('127.0.0.1', 9190)
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an RPC tracker is given as HOST:PORT (e.g. 127.0.0.1:9190), got {text!r}")
    return host, int(port)


def _tracker_socket(tracker: str, timeout: float) -> socket.socket:
    """A connection to the tracker that has passed TVM's handshake, with ``timeout`` on every call."""
    from tvm.rpc import base

    address = tracker_address(tracker)
    try:
        connection = socket.create_connection(address, timeout=timeout)
    except OSError as error:
        raise RPCError(f"no RPC tracker at {tracker} ({error.strerror or error}); start one with "
                       f"python -m tvm.exec.rpc_tracker --host {address[0]} --port {address[1]}") from None
    try:
        connection.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(connection, 4))[0]
    except (OSError, RuntimeError) as error:  # TVM's recvall raises RuntimeError on a closed connection
        magic = error
    if magic != base.RPC_TRACKER_MAGIC:
        connection.close()
        raise RPCError(f"{tracker} is not a TVM RPC tracker (its answer to the handshake: {magic})")
    return connection


def _ask_tracker(tracker: str, request: list[Any], timeout: float, waiting_for: str) -> Any:
    """The tracker's answer to one request, within ``timeout`` seconds (``waiting_for`` says what
    for, in the error when the time runs out)."""
    from tvm.rpc import base

    with _tracker_socket(tracker, timeout) as connection:
        try:
            base.sendjson(connection, request)
            answer = base.recvjson(connection)
        except TimeoutError:
            raise RPCError(f"{waiting_for} at the RPC tracker {tracker} within {timeout:g} s") from None
        except OSError as error:
            raise RPCError(f"the RPC tracker at {tracker} failed ({error})") from None
    if answer[0] != base.TrackerCode.SUCCESS:
        raise RPCError(f"the RPC tracker at {tracker} refused {request}: {answer}")
    return answer[1]


def servers_under(tracker: str, key: str, timeout: float = 10.0) -> list[str]:
    """The addresses (``host:port``) of the servers registered at ``tracker`` under ``key``."""
    from tvm.rpc import base

    summary = _ask_tracker(tracker, [base.TrackerCode.SUMMARY], timeout, "no summary")
    return [":".join(map(str, server["addr"])) for server in summary["server_info"]
            if server["key"] == f"server:{key}"]


def request_session(tracker: str, key: str, timeout: float, session_timeout: float) -> tuple[Any, str]:
    """A session on a device under ``key``, from the tracker, and the device's address.

    Args:
        tracker: the tracker, ``HOST:PORT``.
        key: the devices' key.
        timeout: seconds to wait for the tracker to hand over a free device.
        session_timeout: seconds after which the server ends the session (and kills its
            kernel, if one hangs).

    Raises:
        RPCError: no tracker, no free device under the key in time, or the device refused.
    """
    import tvm.rpc
    from tvm.rpc import base

    host, port, match_key = _ask_tracker(tracker, [base.TrackerCode.REQUEST, key, "", 1], timeout,
                                         f"no device under key {key!r} was free")
    try:
        return tvm.rpc.connect(host, port, match_key, session_timeout), f"{host}:{port}"
    except Exception as error:  # TVM raises its own error kinds for a refused or dead server
        raise RPCError(f"the device {host}:{port} under key {key!r} refused the session: {error}") from None


class RemoteModule:
    """A module loaded on an RPC device, called like a local one with host arrays, so that a
    :mod:`tpc.runtime` kernel (and its argument checks) runs around it: each call copies the
    arrays to the device and the writable ones back (the outputs), and keeps the device
    arguments of the last call (``last_arguments``), which a timing reuses."""

    remote = True
    """Kernels around this module run on the device, whatever this machine is."""

    def __init__(self, module: Any, device: Any) -> None:
        self.module, self.device = module, device
        self.last_arguments: list[Any] = []

    def __getitem__(self, name: str) -> Any:
        import tvm

        function = self.module[name]

        def call(*arguments: Any) -> None:
            sent = [tvm.runtime.tensor(np.ascontiguousarray(value), self.device) if isinstance(value, np.ndarray)
                    else value for value in arguments]
            function(*sent)
            for value, tensor in zip(arguments, sent):
                if isinstance(value, np.ndarray) and value.flags.writeable:
                    value[...] = tensor.numpy()
            self.last_arguments = sent

        return call


def upload(session: Any, library: Path, name: str) -> Any:
    """Upload a built library as ``name`` and load it on the device (its constant tables go as
    arguments of each call)."""
    session.upload(str(library), name)
    return session.load_module(name)
