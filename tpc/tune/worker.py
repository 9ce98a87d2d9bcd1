"""Builds and runs one tuning candidate in its own process.

``python -m tpc.tune.worker build|run FOLDER`` reads ``FOLDER/job.json`` and writes
``FOLDER/answer.json``. Running candidates here keeps a crashing or hanging kernel from
taking the tuner with it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = {"float32": 1e-4, "float64": 1e-9}


def tables_path(library: str | Path) -> Path:
    """Where the build of a candidate leaves its constant tables, next to its library."""
    return Path(str(library) + ".tables.npz")


def build_job(job: dict[str, Any]) -> dict[str, Any]:
    """Compile the candidate and write its shared library to ``job["library"]``."""
    from tpc.build import BuildRequest, build
    from tpc.ops import TensorProduct
    from tpc.runtime import ScheduleChoice
    from tpc.targets import resolve_target

    start = time.perf_counter()
    request = BuildRequest(TensorProduct.from_dict(job["spec"]), resolve_target(job["target"]), job["dtype"],
                           ScheduleChoice(job["algorithm"], job["config"], "tuning"))
    kernel = build(request)
    Path(job["library"]).write_bytes(kernel.library_bytes())
    if kernel.tables:
        tables_path(job["library"]).write_bytes(kernel.tables_bytes())
    return {"build_seconds": time.perf_counter() - start}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Check the library's output on a small batch against the reference, then time it."""
    import tvm

    from tpc.ops import TensorProduct
    from tpc.testing import random_inputs, relative_error

    tp = TensorProduct.from_dict(job["spec"])
    dtype = job["dtype"]
    module = tvm.runtime.load_module(job["library"])
    function = module["main"]
    tables = _load_tables(tables_path(job["library"]))
    rng = np.random.default_rng(0)
    x1, x2, weight = random_inputs(tp, job["check_batch"], rng, dtype)
    out = np.zeros((job["check_batch"], tp.irreps_out.dim), dtype)
    function(*[a for a in (x1, x2, weight) if a is not None], out, *tables)
    error = relative_error(out, tp.reference(x1, x2, weight))
    if not error < TOLERANCE[dtype]:
        return {"error": f"wrong result: relative error {error:.2e} against the reference"}
    device = tvm.cpu()
    x1, x2, weight = random_inputs(tp, job["batch"], rng, dtype)
    args = [tvm.runtime.tensor(a, device) for a in (x1, x2, weight) if a is not None]
    args.append(tvm.runtime.tensor(np.zeros((job["batch"], tp.irreps_out.dim), dtype), device))
    args += [tvm.runtime.tensor(table, device) for table in tables]
    evaluator = module.time_evaluator("main", device, number=1, repeat=job["repeat"],
                                      min_repeat_ms=job["min_repeat_ms"])
    results = evaluator(*args).results
    return {"seconds": float(np.median(results)), "samples": [float(r) for r in results]}


def _load_tables(path: Path) -> list[np.ndarray]:
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"table{i}"] for i in range(len(archive.files))]


def main() -> None:
    command, folder = sys.argv[1], Path(sys.argv[2])
    job = json.loads((folder / "job.json").read_text())
    try:
        answer = {"build": build_job, "run": run_job}[command](job)
    except Exception as error:  # any failure of a candidate is its error record, not a crash
        message = str(error).strip().splitlines()
        answer = {"error": f"{type(error).__name__}: {message[-1] if message else ''}"[:500]}
    (folder / "answer.json").write_text(json.dumps(answer))


if __name__ == "__main__":
    main()
