"""Tuning that loses or hides nothing: unwritable paths and full disks, targets that cannot run
here, cost-model training sets saved by tuners at once, and SIGKILL with resume."""

import errno
import importlib.util
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

import tpc
import tpc.tune.tuner as tuner
from tpc import cache
from tpc.cli import main
from tpc.graph.presets import mace_interaction
from tpc.records import read_records
from tpc.tune.cost_model import CostModel
from tpc.tune.graph import tune_graph
from tpc.tune.measure import MeasureResult

TP = tpc.presets.get("fc-small").tp
ROOT = Path(__file__).resolve().parents[2]


class FakeRunner:
    """Measures nothing: each candidate takes 1 ms more than the one before."""

    def __init__(self):
        self.calls = 0

    def measure(self, inputs, anchor=None):
        self.calls += 1
        return [MeasureResult(1e-3 * (self.calls + i / 10)) for i in range(len(inputs))]


def _tune(log, **options):
    options = {"batch": 64, "trials": 6, "strategy": "random", "round_size": 2, "progress": False, **options}
    return tpc.tune(TP, log=log, **options)


def _failing_after(real, count):
    """``real`` for ``count`` calls, then a full disk."""
    calls = []

    def write(*args):
        calls.append(args)
        if len(calls) > count:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    return write


def test_a_full_disk_mid_run_keeps_the_written_records_and_ends_with_one_message(isolated, monkeypatch):
    log = isolated / "full.jsonl"
    monkeypatch.setattr(tuner, "append_records", _failing_after(tuner.append_records, 3))
    result = _tune(log, runner=FakeRunner())
    assert result.interrupted and result.error == f"stopped: cannot write {log}: No space left on device"
    assert len(result.records) == 3 and read_records(log) == result.records
    assert result.error in tpc.tune.summary(result, TP.flops(64))
    monkeypatch.undo()
    resumed = _tune(log, runner=FakeRunner(), resume=True)
    assert len(resumed.records) == 6 and resumed.records[:3] == result.records and resumed.error is None


def test_a_full_disk_under_the_schedule_cache_stops_the_run_and_names_the_cache(isolated, monkeypatch):
    log = isolated / "run.jsonl"
    monkeypatch.setattr(cache, "add_records", _failing_after(cache.add_records, 1))
    result = _tune(log, runner=FakeRunner())
    assert result.interrupted and result.error == f"stopped: cannot write {cache.user_cache_file()}: No space left " \
        "on device"
    assert len(result.records) == 3 and read_records(log) == result.records  # the default, then a round of two


def test_an_unwritable_log_or_cache_is_refused_before_the_first_trial(isolated, monkeypatch):
    blocker = isolated / "file"
    blocker.write_text("a file, not a folder")
    runner = FakeRunner()
    message = f"cannot write the tuning log {blocker / 'log.jsonl'}: {blocker} is not a folder"
    with pytest.raises(ValueError, match=message):
        _tune(blocker / "log.jsonl", runner=runner)
    monkeypatch.setenv("TPC_CACHE", str(blocker / "cache"))
    with pytest.raises(ValueError, match=f"cannot write the schedule cache {blocker / 'cache' / 'schedules.jsonl'}"):
        _tune(isolated / "log.jsonl", runner=runner)
    assert runner.calls == 0


def test_the_cli_reports_an_unwritable_log_in_one_line(isolated, capsys):
    blocker = isolated / "file"
    blocker.write_text("")
    code = main(["tune", "--preset", "fc-small", "--trials", "2", "--log", str(blocker / "log.jsonl")])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    assert f"tpc: error: cannot write the tuning log {blocker / 'log.jsonl'}: {blocker} is not a folder" in error


@pytest.mark.parametrize("target", ["arm", "cuda"])
def test_a_target_that_cannot_run_here_is_refused_up_front_unless_a_runner_is_given(isolated, capsys, target):
    spec = tpc.resolve_target(target)
    if spec.runs_here()[0]:
        pytest.skip(f"{target} kernels run on this machine")
    with pytest.raises(ValueError, match=f"cannot tune for target {target!r} on this machine: .*--rpc HOST:PORT"):
        _tune(isolated / "log.jsonl", target=target)
    assert not (isolated / "log.jsonl").exists()
    graph, _ = mace_interaction()
    with pytest.raises(ValueError, match=f"cannot tune for target {target!r}"):
        tune_graph(graph, {"nodes": 8, "edges": 32}, target=target, trials=4, log_dir=isolated, progress=False)
    code = main(["tune", "--preset", "fc-small", "--target", target, "--log", str(isolated / "cli.jsonl")])
    error = capsys.readouterr().err
    assert code == 2 and f"tpc: error: cannot tune for target {target!r}" in error and "Traceback" not in error
    runner = FakeRunner()
    result = tpc.tune(TP, batch=64, target=target, trials=2, strategy="random", log=isolated / "remote.jsonl",
                      progress=False, runner=runner)
    assert runner.calls == 2 and len(result.records) == 2 and all(r.ok for r in result.records)


def _rows(model, group, start):
    model.add(group, [[float(start + i), 1.0] for i in range(4)], [1e-3 * (i + 1) for i in range(4)])


def test_two_tuners_saving_one_training_set_keep_both_runs_rows(tmp_path):
    path = tmp_path / "models" / "set.npz"
    first, second = CostModel.load(path), CostModel.load(path)
    _rows(first, "first run", 0)
    _rows(second, "second run", 10)
    first.save(path)
    second.save(path)
    saved = CostModel.load(path)
    assert sorted(saved.groups) == ["first run"] * 4 + ["second run"] * 4 and saved.trained
    assert [p.name for p in path.parent.iterdir()] == ["set.npz"]


def test_a_planted_link_at_the_old_temporary_name_is_not_followed(tmp_path):
    path = tmp_path / "set.npz"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "set.npz.tmp.npz").symlink_to(victim)
    model = CostModel()
    _rows(model, "g", 0)
    model.save(path)
    assert victim.read_text() == "keep me" and len(CostModel.load(path).features) == 4


def _save_many(path, group):
    for i in range(20):
        model = CostModel.load(path, train=False)
        model.features.append([float(i), 0.0])
        model.scores.append(0.0)
        model.groups.append(group)
        model.save(path)


def test_savers_in_two_processes_never_corrupt_the_file_or_lose_rows(tmp_path):
    path = tmp_path / "set.npz"
    context = multiprocessing.get_context("fork")
    savers = [context.Process(target=_save_many, args=(path, group)) for group in ("a", "b")]
    for saver in savers:
        saver.start()
    for saver in savers:
        saver.join(120)
    assert [saver.exitcode for saver in savers] == [0, 0]
    with np.load(path) as data:
        assert sorted(map(str, data["groups"])) == ["a"] * 20 + ["b"] * 20


def test_kill_and_resume_keeps_every_record_and_repeats_none(tmp_path):
    """A short version of scripts/kill_and_resume.py: three SIGKILLs at random moments, each followed by --resume."""
    spec = importlib.util.spec_from_file_location("kill_and_resume", ROOT / "scripts" / "kill_and_resume.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lines = []
    failures = script.kill_and_resume(tmp_path, kills=3, trials=2, min_delay=1.0, max_delay=6.0, seed=1,
                                      round_size=1, echo=lines.append)
    assert not failures, "\n".join(lines + failures)
    assert len(lines) == 4 and any("killed" in line for line in lines)
