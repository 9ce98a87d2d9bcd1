import sys

import pytest

from tpc.cli import main
from tpc.records import Record, append_records
from tpc.report import plot_curves, read_logs, settled_trial, summary, tuning_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OP_A, OP_B = "a1" * 32, "b2" * 32


def _record(trial, seconds, strategy="xgb", error=None, op=OP_A, batch=64):
    return Record(op, batch, "float32", {"kind": "llvm"}, "fp", 2, "cg", {"batch_tile": 8}, seconds, error,
                  strategy, trial)


def _run(strategy, seconds, op=OP_A, batch=64):
    """One tuning run as the tuner logs it: the default schedule first, then the search."""
    return [_record(0, seconds[0], "default", op=op, batch=batch)] + [
        _record(trial, value, strategy, op=op, batch=batch) for trial, value in enumerate(seconds[1:], start=1)]


def _curves(tmp_path, *logs):
    paths = []
    for name, records in logs:
        paths.append(tmp_path / name)
        append_records(paths[-1], records)
    return tuning_curves(read_logs(paths))


def test_best_so_far_is_monotone_and_failures_never_improve_it(tmp_path):
    records = _run("xgb", [0.010, None, 0.012, 0.008, None, 0.009])
    records[1] = _record(1, None, error="build failed: x")
    records[4] = _record(4, 0.001, error="wrong result")  # an error with a time is still a failure
    records[2], records[5] = records[5], records[2]  # the log's order is not the trial order
    curves = _curves(tmp_path, ("log.jsonl", records))
    assert curves == {"xgb": [(0, 0.010), (1, 0.010), (2, 0.010), (3, 0.008), (4, 0.008), (5, 0.008)]}


def test_no_best_before_the_first_success(tmp_path):
    records = [_record(0, None, "default", error="timeout"), _record(1, None, error="timeout"), _record(2, 0.02)]
    curves = _curves(tmp_path, ("log.jsonl", records))
    assert curves == {"xgb": [(0, None), (1, None), (2, 0.02)]}
    assert settled_trial(curves["xgb"]) == 2
    assert settled_trial([(0, None), (1, None)]) is None
    assert settled_trial([]) is None


def test_each_strategy_is_a_line_and_takes_the_default_measured_before_it(tmp_path):
    records = _run("xgb", [0.010, 0.009, 0.004]) + _run("random", [0.011, 0.012, 0.005, 0.003])
    curves = _curves(tmp_path, ("log.jsonl", records))
    assert curves == {"xgb": [(0, 0.010), (1, 0.009), (2, 0.004)],
                      "random": [(0, 0.011), (1, 0.011), (2, 0.005), (3, 0.003)]}


def test_a_run_of_only_the_default_is_its_own_line(tmp_path):
    assert _curves(tmp_path, ("log.jsonl", [_record(0, 0.01, "default")])) == {"default": [(0, 0.01)]}


def test_several_ops_and_batches_in_one_log(tmp_path):
    records = _run("xgb", [0.02, 0.01], op=OP_A) + _run("xgb", [0.03, 0.04], op=OP_B) + \
        _run("xgb", [0.5, 0.4], op=OP_B, batch=1024)
    curves = _curves(tmp_path, ("log.jsonl", records))
    assert curves == {f"{OP_A[:12]} b64 xgb": [(0, 0.02), (1, 0.01)],
                      f"{OP_B[:12]} b64 xgb": [(0, 0.03), (1, 0.03)],
                      f"{OP_B[:12]} b1024 xgb": [(0, 0.5), (1, 0.4)]}


def test_lines_of_several_logs_are_named_by_file_only_where_needed(tmp_path):
    same = _curves(tmp_path, ("first.jsonl", _run("xgb", [0.02, 0.01])), ("second.jsonl", _run("xgb", [0.03, 0.04])))
    assert same == {"first: xgb": [(0, 0.02), (1, 0.01)], "second: xgb": [(0, 0.03), (1, 0.03)]}
    distinct = _curves(tmp_path, ("third.jsonl", _run("xgb", [0.02, 0.01])),
                       ("fourth.jsonl", _run("random", [0.03, 0.01])))
    assert list(distinct) == ["xgb", "random"]
    clash = _curves(tmp_path, ("a/log.jsonl", _run("xgb", [0.04, 0.03])), ("b/log.jsonl", _run("xgb", [0.05, 0.06])))
    assert clash == {f"{tmp_path / 'a' / 'log.jsonl'}: xgb": [(0, 0.04), (1, 0.03)],
                     f"{tmp_path / 'b' / 'log.jsonl'}: xgb": [(0, 0.05), (1, 0.05)]}


def test_settled_trial_is_the_first_within_five_percent_of_the_final_best():
    points = [(0, 1.0), (1, 0.5), (2, 0.48), (3, 0.47)]  # 0.47 / 0.5 = 0.94, 0.47 / 0.48 = 0.979
    assert settled_trial(points) == 2
    assert settled_trial(points, fraction=0.9) == 1
    assert settled_trial([(0, 1.0), (7, 0.95)]) == 0  # exactly 95%


def test_summary_table():
    table = summary({"xgb": [(0, 0.010), (1, 0.004), (2, 0.0039)], "random": [(0, None)]})
    assert table.splitlines() == [
        "line    trials    best ms  within 5% at trial",
        "xgb          3      3.900                   1",
        "random       1          -                   -",
    ]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "plots" / "curve.png"
    plot_curves({"xgb": [(0, None), (1, 0.02), (2, 0.01)], "failed": [(0, None)]}, path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_without_any_success_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_curves({"xgb": [(0, None)]}, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r'pip install "tpc\[plot\]"'):
        plot_curves({"xgb": [(0, 0.01)]}, tmp_path / "curve.png")
    log = tmp_path / "log.jsonl"
    append_records(log, _run("xgb", [0.01]))
    assert main(["report", str(log), "-o", str(tmp_path / "curve.png")]) == 2
    assert 'pip install "tpc[plot]"' in capsys.readouterr().err


def test_cli_report(tmp_path, capsys):
    log, image = tmp_path / "log.jsonl", tmp_path / "curve.png"
    append_records(log, _run("xgb", [0.010, None, 0.004]))
    assert main(["report", str(log), "-o", str(image)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "line  trials    best ms  within 5% at trial",
        "xgb        3      4.000                   2",
        f"wrote {image}",
    ]
    assert image.read_bytes()[:8] == PNG_MAGIC


def test_cli_report_of_a_missing_log(tmp_path, capsys):
    log = tmp_path / "present.jsonl"
    append_records(log, _run("xgb", [0.01]))
    missing = tmp_path / "missing.jsonl"
    assert main(["report", str(log), str(missing), "-o", str(tmp_path / "curve.png")]) == 2
    assert f"tuning log {str(missing)!r} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "curve.png").exists()


def test_cli_report_of_a_log_without_records(tmp_path, capsys):
    empty, corrupt = tmp_path / "empty.jsonl", tmp_path / "corrupt.jsonl"
    empty.write_text("")
    corrupt.write_text('{"format": "other"}\nnot json\n')
    assert main(["report", str(empty), "-o", str(tmp_path / "curve.png")]) == 2
    assert f"tuning log {str(empty)!r} holds no tuning records" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipping unreadable"):
        assert main(["report", str(corrupt), "-o", str(tmp_path / "curve.png")]) == 2
    assert f"tuning log {str(corrupt)!r} holds no tuning records" in capsys.readouterr().err


def test_cli_report_needs_a_log_and_an_output(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "-o", "curve.png"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["report", "log.jsonl"])
    assert "-o/--output" in capsys.readouterr().err
