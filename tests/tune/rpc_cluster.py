"""A TVM RPC tracker and servers on 127.0.0.1 for the tests: TVM's own commands, each in a
process group of its own that the tests can kill, their output in log files."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from tpc.tune.remote import RPCError, servers_under


def free_port() -> int:
    """A port nothing listens on now (the tracker and servers search upwards from it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: Sequence[str], log: Path) -> subprocess.Popen:
    """Start ``command`` in a session of its own, its output going to ``log``."""
    with open(log, "w") as output:
        return subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Kill a process started by :func:`start` and everything it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def start_tracker(folder: Path, timeout: float = 120.0) -> tuple[str, subprocess.Popen]:
    """TVM's tracker on 127.0.0.1; its ``HOST:PORT`` once it listens, and its process."""
    port = free_port()
    log = folder / "tracker.log"
    process = start([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                     "--port-end", str(port + 100)], log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bound = re.search(r"bind to 127\.0\.0\.1:(\d+)", log.read_text())
        if bound:
            return f"127.0.0.1:{bound.group(1)}", process
        if process.poll() is not None:
            break
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"the tracker did not start: {log.read_text()[-2000:]}")


def server_command(tracker: str, key: str) -> list[str]:
    """TVM's RPC server on 127.0.0.1 registering under ``key``."""
    port = free_port()
    return [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port),
            "--port-end", str(port + 100), "--tracker", tracker, "--key", key]


def wait_for_servers(tracker: str, key: str, count: int, timeout: float = 180.0) -> list[str]:
    """The servers under ``key`` once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    servers: list[str] = []
    while time.monotonic() < deadline:
        try:
            servers = servers_under(tracker, key)
        except RPCError:
            servers = []
        if len(servers) >= count:
            return servers
        time.sleep(0.5)
    raise RuntimeError(f"{count} servers under {key!r} expected at {tracker}, {len(servers)} registered")


def measurements_served(log: Path) -> int:
    """How many modules a server loaded: one per candidate checked and timed (anchors too)."""
    return log.read_text().count("load_module") if log.exists() else 0
