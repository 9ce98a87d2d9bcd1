"""Tuning through TVM's RPC tracker: a real tracker and real x86 servers on 127.0.0.1."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rpc_cluster import free_port, measurements_served, server_command, start, start_tracker, stop, wait_for_servers

import tpc
from tpc.records import Record, read_records
from tpc.tune.remote import RPCError, servers_under, tracker_address
from tpc.tune.rpc import RPCRunner, as_runner
from tpc.verify import check

KEY = "x86-test"


@pytest.fixture
def cluster(tmp_path):
    """A tracker and two servers under KEY; yields (tracker, {log: process})."""
    tracker, tracker_process = start_tracker(tmp_path)
    servers = {}
    for index in range(2):
        log = tmp_path / f"server{index}.log"
        servers[log] = start(server_command(tracker, KEY), log)
    try:
        wait_for_servers(tracker, KEY, 2)
        yield tracker, servers
    finally:
        for process in [*servers.values(), tracker_process]:
            stop(process)


def _tune(tracker, log, *extra, key=KEY, trials=16, wait=None):
    """``tpc tune --preset mace-l1`` through the tracker, as a user runs it."""
    command = [sys.executable, "-m", "tpc.cli", "tune", "--preset", "mace-l1", "--batch", "2000", "--trials",
               str(trials), "--log", str(log), "--rpc", tracker, "--rpc-key", key, *extra]
    if wait is not None:
        command += ["--rpc-wait", str(wait)]
    return command


def _environment(tmp_path):
    return {**os.environ, "TPC_CACHE": str(tmp_path / "cache"), "TPC_KERNEL_CACHE": str(tmp_path / "kernels")}


def test_both_servers_measure_and_the_records_are_like_local_ones(cluster, tmp_path, monkeypatch):
    tracker, servers = cluster
    log = tmp_path / "mace-l1.jsonl"
    done = subprocess.run(_tune(tracker, log), env=_environment(tmp_path), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    served = [measurements_served(server_log) for server_log in servers]
    assert all(count > 0 for count in served), served
    records = read_records(log)
    assert len(records) == 16 and sum(r.ok for r in records) >= 12
    assert {r.device for r in records} == {f"rpc:{KEY}"}
    fields = {field.name for field in dataclasses.fields(Record)} | {"format"}
    assert all(set(json.loads(line)) == fields for line in log.read_text().splitlines())
    # the tuned schedule is in the user cache and computes the product
    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    tp = tpc.presets.get("mace-l1").tp
    kernel = tpc.compile(tp, batch=2000)
    assert kernel.schedule.source == "user cache"
    assert kernel.schedule.config == min((r for r in records if r.ok), key=lambda r: r.seconds).config
    assert check(tpc.Product(tp), kernel, dtype="float32")


def test_a_server_killed_mid_run_leaves_the_run_to_the_other(cluster, tmp_path):
    tracker, servers = cluster
    log = tmp_path / "mace-l1.jsonl"
    run = subprocess.Popen(_tune(tracker, log), env=_environment(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (log.exists() and len(read_records(log)) >= 8) and time.monotonic() < deadline:
            assert run.poll() is None, run.stderr.read()[-3000:]
            time.sleep(0.5)
        (killed_log, killed), (survivor_log, _) = servers.items()
        stop(killed)
        served_before = measurements_served(survivor_log)
        assert run.wait(timeout=900) == 0, run.stderr.read()[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
    records = read_records(log)
    assert len(records) == 16
    assert sum(r.ok for r in records[8:]) >= 6  # at most the candidate in flight on the killed one failed
    assert measurements_served(survivor_log) > served_before


def test_no_server_under_the_key_fails_in_bounded_time_naming_key_and_tracker(cluster, tmp_path):
    tracker, _ = cluster
    started = time.monotonic()
    done = subprocess.run(_tune(tracker, tmp_path / "log.jsonl", key="nobody", wait=3), env=_environment(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "'nobody'" in done.stderr and tracker in done.stderr, done.stderr
    assert time.monotonic() - started < 120
    assert not (tmp_path / "log.jsonl").exists()


def test_no_tracker_is_a_clear_error():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(RPCError, match=f"no RPC tracker at {address}"):
        as_runner(address, KEY, wait_for_devices=1)
    with pytest.raises(RPCError, match=f"no RPC tracker at {address}"):
        servers_under(address, KEY)


@pytest.mark.parametrize("bad", ["9190", "host:", ":9190", "host:port", "host:70000"])
def test_tracker_addresses_are_checked(bad):
    with pytest.raises(ValueError, match="HOST:PORT"):
        tracker_address(bad)


def test_a_runner_needs_a_key_and_rpc_options_go_together():
    with pytest.raises(ValueError, match="key"):
        RPCRunner(tracker="127.0.0.1:9190")
    with pytest.raises(ValueError, match="go together"):
        as_runner("127.0.0.1:9190", None)
    assert as_runner(None, None) is None


def test_a_hanging_server_costs_one_candidate_and_the_other_measures_the_rest(cluster, tmp_path):
    tracker, servers = cluster
    (hanging_log, hanging), (working_log, _) = servers.items()
    os.killpg(hanging.pid, signal.SIGSTOP)  # registered, never answering
    runner = RPCRunner(tracker=tracker, key=KEY, run_timeout=30, repeat=2, min_repeat_ms=5)
    result = tpc.tune(tpc.presets.get("fc-small").tp, batch=256, trials=8, log=tmp_path / "log.jsonl",
                      runner=runner, progress=False)
    runner.close()
    errors = [r.error for r in result.records if not r.ok]
    assert len(result.records) == 8 and len(errors) <= 1, errors
    assert all("timed out after 30 s" in error for error in errors)
    assert measurements_served(working_log) >= 7 and measurements_served(hanging_log) == 0


def test_a_graph_with_fused_kernels_tunes_through_the_tracker(cluster, tmp_path):
    tracker, servers = cluster
    preset = tpc.presets.get_graph("mace-interaction-l2")
    runner = RPCRunner(tracker=tracker, key=KEY, repeat=2, min_repeat_ms=5)
    result = tpc.tune_graph(preset.graph, {"nodes": 40, "edges": 600}, trials=4, log_dir=tmp_path, runner=runner,
                            round_size=2, progress=False)
    runner.close()
    records = [record for progress in result.tasks for record in progress.result.records]
    indexed = [task.op.indexed for task in (progress.task for progress in result.tasks)]
    assert any(indexed)  # a fused gather and scatter-sum kernel: its call picks and prepares its indices
    assert records and all(record.ok and record.device == f"rpc:{KEY}" for record in records), \
        [record.error for record in records]
    assert sum(measurements_served(log) for log in servers) >= len(records)
