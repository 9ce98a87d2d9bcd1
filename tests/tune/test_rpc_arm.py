"""Tuning for ARM through TVM's RPC: kernels cross-compiled here, checked and timed by an aarch64
TVM RPC server under qemu-user (scripts/aarch64_rpc_server.py), registered at a real tracker."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rpc_cluster import free_port, measurements_served, start, start_tracker, stop, wait_for_servers

import tpc
from tpc.records import read_records
from tpc.runtime import kernel_for
from tpc.tune.remote import RemoteModule, request_session, upload
from tpc.verify import check

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "aarch64_rpc_server.py"
TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "debootstrap", "dpkg-deb")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: "
                                                      "sh scripts/install-system-deps.sh installs them")
KEY = "aarch64-qemu"


@pytest.fixture
def arm_device(tmp_path):
    """A tracker and one aarch64 server under KEY (its root made once, then cached)."""
    subprocess.run([sys.executable, str(SCRIPT), "--setup"], check=True, timeout=1800, capture_output=True)
    tracker, tracker_process = start_tracker(tmp_path)
    log = tmp_path / "aarch64-server.log"
    server = start([sys.executable, str(SCRIPT), "--tracker", tracker, "--key", KEY, "--port", str(free_port())], log)
    try:
        wait_for_servers(tracker, KEY, 1, timeout=600)
        yield tracker, log
    finally:
        stop(server)
        stop(tracker_process)


def test_tunes_for_arm_on_an_emulated_device_and_the_best_kernel_is_right_there(arm_device, tmp_path, monkeypatch):
    tracker, server_log = arm_device
    log = tmp_path / "mace-l1-arm.jsonl"
    environment = {**os.environ, "TPC_CACHE": str(tmp_path / "cache"), "TPC_KERNEL_CACHE": str(tmp_path / "kernels")}
    done = subprocess.run([sys.executable, "-m", "tpc.cli", "tune", "--preset", "mace-l1", "--target", "arm",
                           "--batch", "64", "--trials", "8", "--log", str(log), "--rpc", tracker, "--rpc-key", KEY],
                          env=environment, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_records(log)
    assert len(records) == 8 and sum(r.ok for r in records) >= 6, [r.error for r in records]
    assert {r.device for r in records} == {f"rpc:{KEY}"}
    assert all(r.target["mtriple"] == "aarch64-linux-gnu" for r in records)
    assert measurements_served(server_log) >= sum(r.ok for r in records)

    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    tp = tpc.presets.get("mace-l1").tp
    kernel = tpc.compile(tp, batch=64, target="arm")
    best = min((r for r in records if r.ok), key=lambda r: r.seconds)
    assert kernel.schedule.source == "user cache" and kernel.schedule.config == best.config
    library = tmp_path / "best.so"
    library.write_bytes(kernel.library_bytes())
    session, _ = request_session(tracker, KEY, timeout=300, session_timeout=600)
    on_device = kernel_for(kernel.op, RemoteModule(upload(session, library, "best.so"), session.cpu()),
                           kernel.target, kernel.dtype, kernel.schedule, tables=kernel.tables)
    assert check(tpc.Product(tp), on_device, batch=29, dtype="float32")
