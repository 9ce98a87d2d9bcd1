import json
import os
import shutil
import subprocess
import sys

import pytest

import tpc
from tpc import cli
from tpc.cli import main
from tpc.records import Record
from tpc.schedule import search_space


def test_info_on_a_preset(capsys):
    assert main(["info", "--preset", "mace-l2"]) == 0
    out = capsys.readouterr().out
    tp = tpc.presets.get("mace-l2").tp
    assert "128x0e+128x1o+128x2e" in out
    assert f"weight_numel {tp.weight_numel}" in out
    assert f"FLOPs per sample {tp.flops():,}" in out
    assert tp.fingerprint in out
    assert out.count(" uvu ") == len(tp.instructions)


def test_info_json_round_trips_through_a_spec_file(capsys, tmp_path):
    assert main(["info", "--preset", "fc-small", "--json"]) == 0
    spec = tmp_path / "fc.json"
    spec.write_text(capsys.readouterr().out)
    assert tpc.TensorProduct.from_dict(json.loads(spec.read_text())) == tpc.presets.get("fc-small").tp
    assert main(["info", str(spec), "--batch", "10"]) == 0
    assert "at batch 10:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "--preset", "nope"], "unknown preset"),
        (["info"], "either a SPEC file or --preset"),
        (["info", "/nonexistent.json"], "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_corrupt_spec_file(tmp_path, capsys):
    spec = tmp_path / "bad.json"
    spec.write_text('{"format": "tpc.TensorProduct/1", "irreps_in1": "1x"}')
    assert main(["info", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tpc: error: spec file {str(spec)!r}: ") and "irreps_in2" in err and err.count("\n") == 1


def test_presets_listing(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "gaunt-L10" in out and "mace-product-0e1o2e nodes    243" in out


def test_console_script_is_installed():
    executable = shutil.which("tpc")
    assert executable, "the tpc console script is not on PATH; install with pip install -e ."
    result = subprocess.run([executable, "info", "--preset", "gaunt-L2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "gaunt-L2" in result.stdout
    result = subprocess.run([sys.executable, "-m", "tpc.cli", "info", "--preset", "x"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "unknown preset" in result.stderr


def test_compile_writes_a_loadable_kernel(tmp_path, capsys):
    path = tmp_path / "fc.tpc"
    assert main(["compile", "--preset", "fc-small", "--target", "host", "--dtype", "float64", "-o", str(path)]) == 0
    assert "schedule from default" in capsys.readouterr().out
    kernel = tpc.load(path)
    assert kernel.dtype == "float64" and kernel.spec == tpc.presets.get("fc-small").tp


def test_compile_reports_bad_targets(tmp_path, capsys):
    assert main(["compile", "--preset", "fc-small", "--target", "tpu", "-o", str(tmp_path / "k.tpc")]) == 2
    assert "valid targets" in capsys.readouterr().err


def test_tune_and_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "log.jsonl"
    assert main(["tune", "--preset", "fc-small", "--batch", "32", "--trials", "2", "--strategy", "random",
                 "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "best" in out and "2 trials (0 errors)" in out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "fc-small" in listing and "user cache" in listing


def test_tune_and_list_a_product_basis(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path / "cache"))
    assert main(["tune", "--preset", "mace-product-0e", "--batch", "8", "--trials", "1", "--log",
                 str(tmp_path / "log.jsonl")]) == 0
    assert "1 trials (0 errors)" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "mace-product-0e forward" in capsys.readouterr().out
    assert main(["tune", "--preset", "mace-product-0e", "--gradient", "x1"]) == 2
    assert "its gradients are x and weight, not x1" in capsys.readouterr().err
    assert main(["tune", "--preset", "fc-small", "--gradient", "x"]) == 2
    assert "--gradient x is a product basis's" in capsys.readouterr().err


def _tpc(*argv, env=None):
    """Run the tpc command in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "tpc.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _one_line_error(result):
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tpc")]
    assert len(errors) == 1 and "error:" in errors[0], result.stderr
    return errors[0]


@pytest.mark.parametrize("batch", ["-5", "0", "ten"])
def test_batch_must_be_a_positive_integer(batch):
    result = _tpc("tune", "--preset", "fc-small", "--batch", batch, "--trials", "1")
    assert result.returncode == 2
    assert "argument --batch: must be a positive integer" in _one_line_error(result)
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("trials", ["-1", "0"])
def test_trials_must_be_a_positive_integer(trials):
    result = _tpc("tune", "--preset", "fc-small", "--batch", "8", "--trials", trials)
    assert result.returncode == 2
    assert "argument --trials: must be a positive integer" in _one_line_error(result)


def test_compile_into_a_missing_folder_is_one_line(tmp_path):
    result = _tpc("compile", "--preset", "fc-small", "-o", tmp_path / "missing" / "dir" / "k.tpc")
    assert result.returncode != 0
    assert "missing/dir/k.tpc" in _one_line_error(result)


def test_tune_log_that_is_a_folder_is_one_line(tmp_path):
    result = _tpc("tune", "--preset", "fc-small", "--batch", "8", "--trials", "1", "--strategy", "random",
                  "--log", tmp_path, env={"TPC_CACHE": str(tmp_path / "cache")})
    assert result.returncode != 0
    assert str(tmp_path) in _one_line_error(result)


@pytest.mark.parametrize("text,message", [
    ('{"format": ', "JSON"),
    ("[1, 2]", "spec"),
    ('{"format": "tpc.TensorProduct/1", "irreps_in1": "1x", "irreps_in2": "1x0e"}', "irreps"),
])
def test_a_malformed_spec_file_is_one_line_naming_it(tmp_path, text, message):
    spec = tmp_path / "bad.json"
    spec.write_text(text)
    result = _tpc("info", spec)
    assert result.returncode == 2
    line = _one_line_error(result)
    assert line.startswith(f"tpc: error: spec file {str(spec)!r}: ") and message in line
    debug = _tpc("info", spec, env={"TPC_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_list_skips_bad_cache_records_with_one_line_warnings(tmp_path):
    spec = tpc.resolve_target("host")
    space = search_space("cpu")
    good = Record(tpc.presets.get("fc-small").tp.fingerprint, 1000, "float32", spec.tvm_dict, spec.fingerprint,
                  space.version, "cg", {**space.default(), "batch_tile": 16}, 0.002)
    fields = json.loads(good.to_json())
    bad = [{"config": {**good.config, "batch_tile": 7777}}, {"config": "batch_tile=4"}, {"batch": "1000"},
           {"batch": -5}]
    cache_file = tmp_path / "cache" / "schedules.jsonl"
    cache_file.parent.mkdir()
    cache_file.write_text("".join(json.dumps({**fields, **change, "seconds": 0.001}) + "\n" for change in bad)
                          + good.to_json() + "\n")
    result = _tpc("list", env={"TPC_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    warnings = {int(line.split(":")[3]): line for line in result.stderr.splitlines()}
    assert sorted(warnings) == list(range(1, len(bad) + 1))
    assert all(line.startswith(f"tpc: warning: {cache_file}:{number}: skipping cached schedule record")
               for number, line in warnings.items())
    assert "'batch_tile' = 7777" in warnings[1] and "batch must be a positive integer" in warnings[4]
    rows = [line for line in result.stdout.splitlines() if "user cache" in line]
    assert len(rows) == 1 and rows[0].startswith("fc-small") and "'batch_tile': 16" in rows[0]


def test_errors_while_running_exit_1_with_one_line(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(cli, "_presets", denied)
    assert main(["presets"]) == 1
    assert capsys.readouterr().err == "tpc: error: [Errno 13] Permission denied: '/some/file'\n"
    monkeypatch.setattr(cli, "_presets", lambda args: None.attribute)
    assert main(["presets"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tpc: error: AttributeError: ") and err.count("\n") == 1


def test_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit status: 0 done; 1 failed while running" in " ".join(capsys.readouterr().out.split())


def test_tune_exit_status_says_how_the_run_ended():
    from types import SimpleNamespace

    from tpc.cli import _tune_status

    assert _tune_status(SimpleNamespace(error=None, interrupted=False)) == 0
    assert _tune_status(SimpleNamespace(error=None, interrupted=True)) == 130
    assert _tune_status(SimpleNamespace(error="stopped: cannot write log", interrupted=True)) == 1
