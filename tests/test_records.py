import errno
import fcntl
import json
import threading

import pytest

import tpc.records as records_module
from tpc.records import Record, append_records, read_records


def _record(seconds=0.01, error=None, trial=0):
    return Record("op", 64, "float32", {"kind": "llvm"}, "fp", 1, "cg", {"batch_tile": 8}, seconds, error,
                  "random", trial)


def test_round_trip_and_append(tmp_path):
    log = tmp_path / "deep" / "log.jsonl"
    append_records(log, [_record(trial=0), _record(None, "build failed: x", trial=1)])
    append_records(log, [_record(0.02, trial=2)])
    records = read_records(log)
    assert [r.trial for r in records] == [0, 1, 2]
    assert (records[0].config, records[0].seconds, records[1].error) == ({"batch_tile": 8}, 0.01, "build failed: x")
    assert [r.ok for r in records] == [True, False, True]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    log = tmp_path / "log.jsonl"
    append_records(log, [_record(trial=0), _record(trial=1)])
    text = log.read_text()
    log.write_text(text[: len(text) - 25])
    with pytest.warns(UserWarning, match="log.jsonl:2: skipping unreadable"):
        records = read_records(log)
    assert [r.trial for r in records] == [0]


def test_foreign_lines_are_skipped(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"format": "other"}\nnot json\n' + _record().to_json() + "\n")
    with pytest.warns(UserWarning):
        assert len(read_records(log)) == 1


def test_an_append_after_a_cut_last_line_drops_the_fragment_instead_of_gluing_onto_it(tmp_path):
    log = tmp_path / "log.jsonl"
    append_records(log, [_record(trial=0), _record(trial=1)])
    text = log.read_text()
    log.write_text(text[: len(text) - 25])  # a writer killed mid-line
    with pytest.warns(UserWarning, match="dropping a cut last line"):
        append_records(log, [_record(trial=2)])
    lines = log.read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") for line in lines) and [json.loads(line)["trial"] for line in lines] == [0, 2]
    assert [r.trial for r in read_records(log)] == [0, 2]


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(_record(trial=0).to_json())
    append_records(log, [_record(trial=1)])
    assert [r.trial for r in read_records(log)] == [0, 1] and log.read_text().count("\n") == 2


def test_a_failed_write_leaves_no_part_of_its_record(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    append_records(log, [_record(trial=0)])
    real = records_module._write_all

    def half_then_full(handle, data):
        real(handle, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records_module, "_write_all", half_then_full)
    with pytest.raises(OSError, match=f"cannot append to {log}: No space left") as raised:
        append_records(log, [_record(trial=1)])
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert log.read_text() == _record(trial=0).to_json() + "\n"


def test_appends_wait_for_the_exclusive_lock(tmp_path):
    """Tuners sharing a log or the schedule cache take turns: an append waits while another holds the lock."""
    log = tmp_path / "log.jsonl"
    log.touch()
    with open(log, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        writer = threading.Thread(target=append_records, args=(log, [_record(trial=0)]))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and log.read_text() == ""
        fcntl.flock(holder, fcntl.LOCK_UN)
    writer.join()
    assert [r.trial for r in read_records(log)] == [0]
