"""The local runner: real builds and runs in worker processes, failures become errors."""

import gc
import json
import os
import subprocess
import sys
from dataclasses import replace

import psutil
import pytest
import tvm
from tvm import te

import tpc
from tpc.schedule import search_space
from tpc.tune import measure
from tpc.tune.measure import KEEP_TORCH_OUT, WORKER_MAIN, Anchor, LocalRunner, MeasureInput
from tpc.tune.worker import relative_timing

TP = tpc.TensorProduct("2x0e+2x1o", "1x0e+1x1o", "2x0e+2x1o",
                       [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True), (0, 1, 1, "uvu", True), (1, 0, 1, "uvu", True)],
                       shared_weights=False)


def _op(wrt=None):
    return tpc.ops.make_op(TP, wrt)


def _candidate(config=None, target="host", wrt=None):
    return MeasureInput(_op(wrt).to_dict(), tpc.resolve_target(target).tvm_dict, "float32", 64, "cg",
                        {**search_space("cpu", "cg", wrt).default(), **(config or {})})


def _library(tmp_path, name, body, wrt=None):
    """A real kernel library with the signature of the product (with ``wrt``: of its gradient)
    whose output is ``body(x1, b, c)``."""
    batch = te.var("batch")
    x1 = te.placeholder((batch, TP.irreps_in1.dim), "float32", name="x1")
    x2 = te.placeholder((batch, TP.irreps_in2.dim), "float32", name="x2")
    weight = te.placeholder((batch, TP.weight_numel), "float32", name="weight")
    grad = [te.placeholder((batch, TP.irreps_out.dim), "float32", name="grad")] if wrt else []
    out = te.compute((batch, _op(wrt).output_width), lambda b, c: body(x1, b, c), name="out")
    path = tmp_path / f"{name}.so"
    tvm.compile(te.create_prim_func([x1, x2, weight, *grad, out]), target="llvm").export_library(str(path))
    return path


def test_measures_valid_candidates_alone_then_against_an_anchor(tmp_path):
    runner = LocalRunner(repeat=2, min_repeat_ms=5)
    results = runner.measure([_candidate(), _candidate({"batch_tile": 2})])
    assert all(r.error is None and 0 < r.seconds < 1 and r.build_seconds > 0 and r.ratio is None for r in results)
    anchor = Anchor(_candidate(), 1.0)
    (result,) = runner.measure([_candidate({"batch_tile": 4})], anchor)
    assert result.error is None and 0 < result.ratio and result.seconds == result.ratio * anchor.seconds


def test_relative_timing_holds_the_ratio_while_the_machine_drifts():
    speed = iter([1.0, 1.0, 1.4, 1.4, 0.8, 0.8])  # the machine's slowness in each timing, in turn
    ratio, anchor_seconds = relative_timing(lambda: [3e-3 * next(speed)], lambda: [2e-3 * next(speed)])
    assert ratio == pytest.approx(1.5) and anchor_seconds == pytest.approx(2e-3)


def test_a_wrong_gradient_kernel_is_an_error(tmp_path):
    """The check compares against the gradient's reference, with the gradient's arguments."""
    runner = LocalRunner(repeat=2, min_repeat_ms=5)
    for wrt in ("x2", "weight"):
        wrong = _library(tmp_path, f"wrong-{wrt}", lambda x1, b, c: x1[b, 0] * 0.0 + 1.0, wrt=wrt)
        assert "wrong result" in runner.run_library(wrong, _candidate(wrt=wrt)).error


def test_wrong_crashing_and_hanging_kernels_become_errors(tmp_path):
    runner = LocalRunner(run_timeout=20, repeat=2, min_repeat_ms=5)
    wrong = _library(tmp_path, "wrong", lambda x1, b, c: x1[b, 0] * 0.0)
    crash = _library(tmp_path, "crash", lambda x1, b, c: x1[(b + 1) << 28, c % 8])
    steps = [te.reduce_axis((0, 1 << 24), name) for name in ("k", "m")]  # 2^48 dependent adds: days per call
    hang = _library(tmp_path, "hang", lambda x1, b, c: te.sum(x1[b, 0] * x1[b, 1], axis=steps))
    assert "wrong result" in runner.run_library(wrong, _candidate()).error
    assert "run crashed (killed by signal SIGSEGV)" in runner.run_library(crash, _candidate()).error
    assert runner.run_library(hang, _candidate()).error == "run timed out after 20 s"
    missing = runner.run_library(tmp_path / "missing.so", _candidate())
    assert missing.seconds is None and "missing.so" in missing.error


def test_a_crashed_worker_error_ends_with_the_last_line_it_wrote(tmp_path, monkeypatch):
    """A worker that dies at start (a package missing on the machine, say) names its reason."""
    monkeypatch.setattr(measure, "WORKER_MAIN", "raise ImportError('no module named nvrtc_helper')")
    runner = LocalRunner(repeat=2, min_repeat_ms=5)
    error = runner.run_library(tmp_path / "any.so", _candidate()).error
    assert error == "run crashed (exit status 1): ImportError: no module named nvrtc_helper"


def test_a_worker_keeps_torch_out_as_if_it_were_not_installed():
    probe = KEEP_TORCH_OUT + """
try:
    import torch.nn
except ModuleNotFoundError:
    print("torch" in sys.modules)
"""
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout == "False\n"


def _workers() -> dict[int, str]:
    """This process's live worker processes: pid -> command line."""
    children = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    command_lines = {p.pid: " ".join(p.cmdline()) for p in children}
    return {pid: line for pid, line in command_lines.items() if "tpc.tune.worker" in line}


def test_workers_serve_many_jobs_are_replaced_after_a_crash_and_end_with_the_runner(tmp_path):
    runner = LocalRunner(parallel_builds=2, repeat=2, min_repeat_ms=5)
    candidates = [_candidate(), _candidate({"batch_tile": 2}), _candidate({"batch_tile": 4})]
    libraries = [tmp_path / f"candidate{i}.so" for i in range(3)]
    assert all("build_seconds" in answer for answer in runner.build(candidates, libraries))
    builders = _workers()
    assert len(builders) == 2  # three builds, two workers
    assert runner.run_library(libraries[0], candidates[0]).error is None
    (run_worker,) = set(_workers()) - set(builders)
    assert runner.run_library(libraries[1], candidates[1]).error is None and run_worker in _workers()
    crash = _library(tmp_path, "crash", lambda x1, b, c: x1[(b + 1) << 28, c % 8])
    assert "run crashed" in runner.run_library(crash, _candidate()).error and run_worker not in _workers()
    assert runner.run_library(libraries[2], candidates[2]).error is None and len(_workers()) == 3
    del runner
    gc.collect()
    assert not _workers()


def test_a_worker_started_by_a_tuner_that_has_died_does_no_job(tmp_path):
    """Linux kills a worker with its tuner only once the worker has asked for it; when the tuner
    died before that, the job already in the worker's stdin must not run."""
    request = json.dumps({"command": "build", "folder": str(tmp_path)}) + "\n"
    (tmp_path / "job.json").write_text("{}")  # an empty job: answered with an error record
    for parent, answered in ((os.getpid(), True), (os.getpid() + 1_000_000, False)):
        worker = subprocess.run([sys.executable, "-c", WORKER_MAIN, str(parent)], input=request,
                                capture_output=True, text=True, timeout=120)
        assert worker.returncode == 0 and (worker.stdout == request) is answered
        assert (tmp_path / "answer.json").exists() is answered
        (tmp_path / "answer.json").unlink(missing_ok=True)


def test_build_failures_become_errors():
    bad = MeasureInput(_op().to_dict(), {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}, "float32", 64, "cg",
                       {**search_space("cpu").default(), "batch_tile": 3})
    (result,) = LocalRunner().measure([bad])
    assert result.seconds is None and result.error.startswith("build failed: ValueError")


def test_a_build_over_its_time_limit_is_killed_and_named():
    (result,) = LocalRunner(build_timeout=0.5).measure([_candidate()])
    assert result.seconds is None and result.error == "build failed: build timed out after 0.5 s"


def test_a_build_many_times_slower_than_the_ops_earlier_builds_is_stopped_sooner():
    runner = LocalRunner(slow_build_factor=0.01, min_build_timeout=0.1, repeat=2, min_repeat_ms=5)
    first = runner.measure([_candidate({"batch_tile": tile}) for tile in (1, 2, 4)])
    assert all(result.error is None for result in first)  # the third started before two had finished
    (late,) = runner.measure([_candidate({"batch_tile": 16})])
    assert late.seconds is None
    assert late.error.startswith("build failed: build timed out after 0.1 s (0.01x the median of this op's 3 builds, ")
    (other_op,) = runner.measure([replace(_candidate(), dtype="float64")])
    assert other_op.error is None
