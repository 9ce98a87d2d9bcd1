"""Tuning runs end to end: real builds, real measurements, logs, cache, kill and resume."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import tpc
from tpc.records import Record, read_records
from tpc.tune.measure import LocalRunner
from tpc.tune.tuner import reference_record

TP = tpc.presets.get("mace-small-l2").tp


class AnchorNotingRunner(LocalRunner):
    """The local runner, noting the anchor of each call."""

    def __init__(self, **options):
        super().__init__(**options)
        self.anchors = []

    def measure(self, inputs, anchor=None):
        self.anchors.append(anchor)
        return super().measure(inputs, anchor)


def test_tuning_run_logs_caches_and_feeds_compile(isolated):
    log = isolated / "run.jsonl"
    runner = AnchorNotingRunner(repeat=2, min_repeat_ms=5)
    result = tpc.tune(TP, batch=256, trials=5, log=log, round_size=2, progress=False, runner=runner)
    records = read_records(log)
    # The default alone, then each round timed against the reference of the records before it.
    first, second, third = runner.anchors
    assert first is None and (second.candidate.config, second.seconds) == (records[0].config, records[0].seconds)
    reference = reference_record(records[:3])
    assert (third.candidate.config, third.seconds) == (reference.config, reference.seconds)
    assert len(records) == 5 and records[0].strategy == "default" and all(r.ok for r in records)
    assert len({tpc.schedule.search_space("cpu").key(r.config) for r in records}) == 5
    assert result.best.seconds == min(r.seconds for r in records) and result.speedup >= 1.0
    assert "speed-up" in tpc.tune.summary(result, TP.flops(256))
    kernel = tpc.compile(TP, batch=256)
    assert kernel.schedule.source == "user cache" and kernel.schedule.config == result.best.config
    assert (isolated / "cache" / "models").is_dir()


def test_the_reference_moves_only_to_a_record_clearly_faster_than_it():
    """Not to the fastest so far, whose lead within timing noise is as likely luck."""
    def record(seconds, tile):
        config = {**tpc.schedule.default_config("cpu"), "batch_tile": tile}
        return Record("op", 64, "float32", {"kind": "llvm"}, "t", 4, "cg", config, seconds, None, "xgb", tile)

    error = Record("op", 64, "float32", {"kind": "llvm"}, "t", 4, "cg", {}, None, "build failed", "default", 0)
    assert reference_record([]) is None and reference_record([error]) is None
    records = [error, record(10e-3, 1), record(9e-3, 2), record(8.8e-3, 4), record(5e-3, 8), record(4.5e-3, 16),
               record(4.4e-3, 32), record(4.2e-3, 64)]
    assert reference_record(records[:4]) is records[1]  # 9 and 8.8 ms: within 15% of 10 ms
    assert reference_record(records[:7]) is records[4]  # 5 ms, then 4.5 and 4.4 ms: within 15% of 5 ms
    assert reference_record(records) is records[7]


def test_a_gaunt_product_is_tuned_over_every_exact_algorithm(isolated):
    tp = tpc.GauntTensorProduct("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 2)
    result = tpc.tune(tp, batch=64, trials=5, log=isolated / "gaunt.jsonl", round_size=3, progress=False,
                      runner=LocalRunner(repeat=2, min_repeat_ms=5))
    records = read_records(isolated / "gaunt.jsonl")
    assert [r.algorithm for r in records[:3]] == ["cg", "fourier", "grid"]
    assert all(r.strategy == "default" for r in records[:3]) and all(r.ok for r in records)
    for record in records:
        space = tpc.schedule.search_space("cpu", record.algorithm)
        assert record.space_version == space.version and space.validate(record.config) == record.config
    assert result.default.algorithm == "cg"
    kernel = tpc.compile(tp, batch=64)
    assert (kernel.schedule.algorithm, kernel.schedule.config) == (result.best.algorithm, result.best.config)
    assert tpc.compile(tp, batch=64, algorithm="grid").schedule.algorithm == "grid"
    assert tpc.compile(TP, batch=64).schedule.algorithm == "cg"


def test_the_first_searched_candidates_move_the_knobs_other_ops_gained_from(isolated):
    """Three other ops in the cache, each faster with unroll_components off and with materialize
    all: the search's first candidates are the larger gain alone, then both together."""
    spec = tpc.resolve_target("host")
    space = tpc.schedule.search_space("cpu")
    default = space.default()
    moves = {"unroll_components": False, "materialize": "all"}
    tpc.cache.add_records(
        Record(f"other-op-{i}", 64, "float32", spec.tvm_dict, spec.fingerprint, space.version, "cg",
               {**default, **config}, seconds)
        for i in range(3)
        for config, seconds in (({}, 10e-3), ({"unroll_components": False}, 6e-3), ({"materialize": "all"}, 8e-3)))
    tpc.tune(TP, batch=64, trials=3, log=isolated / "run.jsonl", round_size=2, progress=False,
             runner=LocalRunner(repeat=2, min_repeat_ms=5))
    records = read_records(isolated / "run.jsonl")
    assert [r.config for r in records] == [default, {**default, "unroll_components": False}, {**default, **moves}]


def test_candidates_that_hang_become_error_records_and_tuning_goes_on(isolated):
    result = tpc.tune(TP, batch=64, trials=2, log=isolated / "slow.jsonl", progress=False, strategy="random",
                      runner=LocalRunner(run_timeout=0.5))
    assert len(result.records) == 2 and result.best is None
    assert all(r.error == "run timed out after 0.5 s" for r in result.records)
    assert "no successful measurement" in tpc.tune.summary(result, TP.flops(64))


def test_sigkill_mid_run_then_resume_keeps_every_finished_record(isolated):
    log = isolated / "killed.jsonl"
    command = [sys.executable, "-m", "tpc.cli", "tune", "--preset", "fc-small", "--batch", "64", "--trials", "5",
               "--strategy", "random", "--log", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not read_records(log) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # the next round is building
    workers = psutil.Process(process.pid).children()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # The worker processes (in sessions of their own) die with the tuner.
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert workers and not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    before = read_records(log)
    assert 1 <= len(before) < 5 and before[0].strategy == "default"
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = read_records(log)
    assert after[: len(before)] == before and len(after) == 5
    assert len({tpc.schedule.search_space("cpu").key(r.config) for r in after}) == 5
    assert "speed-up" in resumed.stdout


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown strategy"):
        tpc.tune(TP, strategy="grid")
    with pytest.raises(ValueError, match="trials"):
        tpc.tune(TP, trials=0)


def test_ctrl_c_stops_cleanly_and_keeps_the_records(isolated):
    log = isolated / "interrupted.jsonl"
    command = [sys.executable, "-m", "tpc.cli", "tune", "--preset", "fc-small", "--batch", "64", "--trials", "9",
               "--strategy", "random", "--log", str(log)]
    # A shell starts background jobs with SIGINT ignored, and Python keeps it ignored; a
    # terminal's Ctrl-C reaches a tuner whose SIGINT has its default action.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not read_records(log) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stdout, stdout
    records = read_records(log)
    assert 1 <= len(records) < 9 and records[0].strategy == "default"
    assert f"{len(records)} trials" in stdout
