"""Measurement on devices behind a TVM RPC tracker: ARM boards, other machines.

A device runs ``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`` (TVM's own
server: ``pip install apache-tvm`` is all it needs, no tpc); the tracker
(``python -m tvm.exec.rpc_tracker``) hands each request for a key to one of the servers
registered under it. :class:`RPCRunner` builds candidates here, cross-compiling for the
target, and hands one run job per device to a local worker process, which takes a session
from the tracker, uploads the library, checks the output against the float64 reference on
the device's result and times it there with TVM's ``time_evaluator``, in turns with the
anchor as :class:`~tpc.tune.measure.LocalRunner` does. A device that dies or hangs costs the
candidate it was running an error record; the others go on.

A TVM RPC server runs whatever code it is sent, with its user's rights, and its traffic is
neither authenticated nor encrypted: run trackers and servers on 127.0.0.1 or a trusted
network only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tpc.tune.measure import LocalRunner, MeasureInput
from tpc.tune.remote import RPCError, servers_under, tracker_address


@dataclass(kw_only=True)
class RPCRunner(LocalRunner):
    """Builds here (cross-compiling for the target) and runs each candidate on a device behind
    a TVM RPC tracker: as many candidates at once as servers are registered under ``key``, one
    per device, each checked against the reference and timed there (in turns with the anchor).

    Attributes (beside :class:`~tpc.tune.measure.LocalRunner`'s):
        tracker: the tracker, ``HOST:PORT``.
        key: the key the devices registered under.
        wait_for_devices: seconds to wait for a server under ``key`` before a round, then fail.
        run_timeout: seconds a run may take on a device, the wait for a free one included;
            the server ends the session then too.

    >>> runner = RPCRunner(tracker="127.0.0.1:9190", key="rasp4")
    >>> runner.device
    'rpc:rasp4'
    """

    tracker: str = "127.0.0.1:9190"
    key: str = ""
    wait_for_devices: float = 60.0
    run_timeout: float = 300.0

    def __post_init__(self) -> None:
        tracker_address(self.tracker)
        if not self.key:
            raise ValueError("an RPCRunner needs the key its devices registered under (rpc_server --key KEY)")

    @property
    def device(self) -> str:
        """``rpc:KEY``, as records name what measured them."""
        return f"rpc:{self.key}"

    def devices(self) -> list[str]:
        """The servers under the key, waiting up to ``wait_for_devices`` seconds for one.

        Raises:
            RPCError: no tracker at the address, or no server under the key in time.
        """
        deadline = time.monotonic() + self.wait_for_devices
        while True:
            servers = servers_under(self.tracker, self.key)
            if servers or time.monotonic() >= deadline:
                break
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
        if not servers:
            raise RPCError(f"no RPC server is registered under key {self.key!r} at the tracker {self.tracker} "
                           f"(waited {self.wait_for_devices:g} s); start one on the device with python -m "
                           f"tvm.exec.rpc_server --tracker {self.tracker} --key {self.key}")
        return servers

    def run_job(self, library: Path, candidate: MeasureInput) -> dict[str, Any]:
        return {**super().run_job(library, candidate),
                "rpc": {"tracker": self.tracker, "key": self.key, "timeout": self.run_timeout,
                        "session_timeout": self.run_timeout}}

    def run_width(self) -> int:
        """One candidate per device registered under the key."""
        return len(self.devices())


def as_runner(tracker: Optional[str], key: Optional[str], wait_for_devices: float = 60.0) -> Optional[RPCRunner]:
    """The runner the command line's ``--rpc HOST:PORT --rpc-key KEY`` ask for (None: measure here)."""
    if tracker is None and key is None:
        return None
    if tracker is None or key is None:
        raise ValueError("--rpc HOST:PORT and --rpc-key KEY go together")
    runner = RPCRunner(tracker=tracker, key=key, wait_for_devices=wait_for_devices)
    runner.devices()
    return runner
