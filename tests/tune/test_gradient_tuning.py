"""Gradients tuned as ops of their own: records under the gradient's fingerprint, and
``compile_gradient`` in a later process builds the tuned schedule."""

import json
import subprocess
import sys

import tpc
from tpc.cli import main
from tpc.ops import Gradient
from tpc.records import read_records
from tpc.tune.measure import LocalRunner
from tpc.verify import tolerance

TP = tpc.ChannelwiseTensorProduct("3x0e+3x1o", "0e+1o", 1)

CHECK = """
import json, sys
import numpy as np
import tpc
from tpc.verify import random_inputs, relative_error

tp = tpc.TensorProduct.from_json(sys.argv[1])
rng = np.random.default_rng(1)
x1, x2, weight = random_inputs(tp, 37, rng, np.float32)
grad = rng.standard_normal((37, tp.irreps_out.dim)).astype(np.float32)
answer = {}
for wrt in ("x1", "x2", "weight"):
    kernel = tpc.compile_gradient(tp, wrt, batch=64)
    error = relative_error(kernel(x1, x2, weight, grad), tp.reference_gradient(x1, x2, weight, grad, wrt))
    answer[wrt] = [kernel.schedule.source, kernel.schedule.config, error]
answer["product"] = tpc.compile(tp, batch=64).schedule.source
print(json.dumps(answer))
"""


def test_tuned_gradients_are_cached_apart_and_used_by_compile_gradient(isolated, capsys):
    spec = isolated / "spec.json"
    spec.write_text(TP.to_json())
    x2_log, weight_log = isolated / "x2.jsonl", isolated / "weight.jsonl"
    assert main(["tune", str(spec), "--gradient", "x2", "--batch", "64", "--trials", "3", "--log", str(x2_log)]) == 0
    assert "3 trials (0 errors)" in capsys.readouterr().out
    weight = tpc.tune(TP, batch=64, trials=3, log=weight_log, round_size=2, progress=False, wrt="weight",
                      runner=LocalRunner(repeat=2, min_repeat_ms=5))
    for wrt, log in (("x2", x2_log), ("weight", weight_log)):
        records = read_records(log)
        space = tpc.schedule.search_space("cpu", "cg", wrt)
        assert len(records) == 3 and records[0].strategy == "default" and all(r.ok for r in records)
        assert {r.op for r in records} == {Gradient(TP, wrt).fingerprint} != {TP.fingerprint}
        assert all(r.space_version == space.version and space.validate(r.config) == r.config for r in records)
    x2_best = min(read_records(x2_log), key=lambda r: r.seconds)
    assert weight.best.config.keys() == {"batch_tile", "inline_z", "unroll_components"}
    result = subprocess.run([sys.executable, "-c", CHECK, TP.to_json()], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["x2"][:2] == ["user cache", x2_best.config]
    assert answer["weight"][:2] == ["user cache", weight.best.config]
    assert answer["x1"][:2] == ["default", tpc.schedule.default_config("cpu", "cg", "x1")]
    assert answer["product"] == "default"
    assert all(answer[wrt][2] < tolerance("float32", "gradient") for wrt in ("x1", "x2", "weight")), answer
