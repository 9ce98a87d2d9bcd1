import pytest

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
