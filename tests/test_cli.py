import json
import shutil
import subprocess
import sys

import pytest

import tpc
from tpc.cli import main


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
    assert "missing the field" in capsys.readouterr().err


def test_presets_listing(capsys):
    assert main(["presets"]) == 0
    assert "gaunt-L10" in capsys.readouterr().out


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
