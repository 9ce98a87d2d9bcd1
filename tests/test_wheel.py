"""The wheel carries the shipped schedules: built, installed into a fresh virtual environment (not
editable) and imported from a folder outside the checkout, tpc.compile of a preset reports one."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tpc
from tpc import cache

ROOT = Path(__file__).resolve().parent.parent
ZNVER4 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2}
CHECK = """
import json, sys
import tpc
preset = tpc.presets.get("fc-small")
kernels = {name: tpc.compile(preset.tp, batch=preset.batch, target=target)
           for name, target in (("znver4", json.loads(sys.argv[1])), ("host", "host"))}
print(json.dumps({"file": tpc.__file__, "sources": {name: k.schedule.source for name, k in kernels.items()}}))
"""


def _run(*command, cwd, env=None):
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_an_installed_wheel_finds_its_shipped_schedules(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves the checkout as it is
    shutil.copytree(ROOT / "tpc", source / "tpc", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.tpc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tpc-*.whl")
    shipped = sorted(path.name for path in cache.PACKAGED_SCHEDULES.glob("*.jsonl"))
    assert shipped and set(f"tpc/schedules/{name}" for name in shipped) <= set(zipfile.ZipFile(wheel).namelist())

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TPC_CACHE"] = str(tmp_path / "cache")
    answer = json.loads(_run(python, "-c", CHECK, json.dumps(ZNVER4), cwd=elsewhere, env=env).splitlines()[-1])
    assert Path(answer["file"]).is_relative_to(venv), answer["file"]
    assert answer["sources"]["znver4"] == "shipped"
    if tpc.targets.host_triple() == "x86_64-linux-gnu":  # every x86 CPU is kin to a shipped one
        assert answer["sources"]["host"].startswith("shipped"), answer
