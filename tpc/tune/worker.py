"""Builds and runs tuning candidates in a process of their own.

:func:`serve` does build and run jobs one after another as its stdin asks (the tuner starts
it as :data:`tpc.tune.measure.WORKER_MAIN` says; ``python -m tpc.tune.worker PARENT_PID``
does the same with torch imported); each job reads ``FOLDER/job.json`` and writes
``FOLDER/answer.json``.
Running candidates here keeps a crashing or hanging kernel from taking the tuner with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from tpc.ops import TensorProduct

PR_SET_PDEATHSIG = 1
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
MEAN_DEGREE = 30
"""Edges per receiver of the random graphs fused kernels are timed on (MACE and NequIP radius
graphs have 20-40 neighbours per atom)."""


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
                           ScheduleChoice(job["algorithm"], job["config"], "tuning"), job.get("wrt"), job.get("fusion"))
    kernel = build(request)
    Path(job["library"]).write_bytes(kernel.library_bytes())
    if kernel.tables:
        tables_path(job["library"]).write_bytes(kernel.tables_bytes())
    return {"build_seconds": time.perf_counter() - start}


class WrongResult(Exception):
    """A candidate's output differs from the reference: an error record, never a winner."""


ANCHOR_ROUNDS = 3
"""Turns in which a candidate and its anchor are timed one after the other."""


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Check the library's output on a small batch against the float64 reference of the
    product (or of its gradient), then time it: alone, or in turns with ``job["anchor"]``
    (the ``library``, ``algorithm`` and ``config`` of an earlier candidate of the same op)."""
    try:
        timing = prepare_timing(job)
        anchor = prepare_timing({**job, **job["anchor"]}) if job.get("anchor") else None
    except WrongResult as error:
        return {"error": str(error)}
    if anchor is None:
        samples = timing()
        return {"seconds": float(np.median(samples)), "samples": samples}
    return {"ratio": relative_timing(timing, anchor)[0]}


def relative_timing(candidate: Callable[[], list[float]], anchor: Callable[[], list[float]],
                    rounds: int = ANCHOR_ROUNDS) -> tuple[float, float]:
    """Time a candidate and an anchor in turns: the median over ``rounds`` of the candidate's
    seconds over the anchor's, and the anchor's median seconds. A shared machine's speed
    can change by 40% from one minute to the next; timed side by side, two similar kernels keep their
    ratio within a few percent, so a search can compare candidates timed minutes apart."""
    ratios, anchor_seconds = [], []
    for _ in range(rounds):
        candidate_median, anchor_median = float(np.median(candidate())), float(np.median(anchor()))
        ratios.append(candidate_median / anchor_median)
        anchor_seconds.append(anchor_median)
    return float(np.median(ratios)), float(np.median(anchor_seconds))


def prepare_timing(job: dict[str, Any]) -> Callable[[], list[float]]:
    """Load the job's library and check it on ``job["check_batch"]`` samples (raising
    :class:`WrongResult` when it is wrong); return a function that times it on ``job["batch"]``
    rows (or edges), ``job["repeat"]`` samples of at least ``job["min_repeat_ms"]`` each, in
    seconds per call. The benchmarks re-time finished candidates with it side by side."""
    import tvm

    from tpc.ops import TensorProduct
    from tpc.runtime import GradientKernel, Kernel, ScheduleChoice
    from tpc.targets import resolve_target
    from tpc.testing import relative_error

    tp = TensorProduct.from_dict(job["spec"])
    dtype, wrt = job["dtype"], job.get("wrt")
    if job.get("fusion"):
        return _prepare_convolution(job, tp)
    module = tvm.runtime.load_module(job["library"])
    tables = _load_tables(tables_path(job["library"]))
    target, choice = resolve_target(job["target"]), ScheduleChoice(job["algorithm"], job["config"], "tuning")
    kernel = Kernel(module, tp, target, dtype, choice, tables=tables) if wrt is None \
        else GradientKernel(module, tp, wrt, target, dtype, choice)
    rng = np.random.default_rng(0)
    arguments = _arguments(tp, wrt, job["check_batch"], rng, dtype)
    expected = tp.reference(*arguments) if wrt is None else tp.reference_gradient(*arguments, wrt)
    on_gpu = target.family == "cuda"
    device = tvm.cuda(0) if on_gpu else tvm.cpu()
    result = kernel(*[None if a is None else tvm.runtime.tensor(a, device) for a in arguments]).numpy() if on_gpu \
        else kernel(*arguments)  # CUDA kernels take tensors that live on the GPU
    _check(relative_error(result, expected), dtype)
    args = [tvm.runtime.tensor(a, device) for a in _arguments(tp, wrt, job["batch"], rng, dtype) if a is not None]
    args.append(tvm.runtime.tensor(np.zeros(output_shape(tp, wrt, job["batch"]), dtype), device))
    args += [tvm.runtime.tensor(table, device) for table in tables]
    evaluator = module.time_evaluator("main", device, number=1, repeat=job["repeat"],
                                      min_repeat_ms=job["min_repeat_ms"])
    return lambda: [float(r) for r in evaluator(*args).results]


def _check(error: float, dtype: str) -> None:
    if not error < TOLERANCE[dtype]:
        raise WrongResult(f"wrong result: relative error {error:.2e} against the reference")


def _prepare_convolution(job: dict[str, Any], tp: TensorProduct) -> Callable[[], list[float]]:
    """Check a fused kernel on a small random graph against the float64 reference; time it on
    a random graph with ``job["batch"]`` edges and :data:`MEAN_DEGREE` edges per receiver."""
    import tvm

    from tpc.runtime import ConvolutionKernel, ScheduleChoice
    from tpc.targets import resolve_target
    from tpc.testing import random_convolution, relative_error

    module = tvm.runtime.load_module(job["library"])
    kernel = ConvolutionKernel(module, tp, job["fusion"], resolve_target(job["target"]), job["dtype"],
                               ScheduleChoice(job["algorithm"], job["config"], "tuning"))
    rng = np.random.default_rng(0)
    arguments, expected = random_convolution(tp, job["fusion"], 8 * job["check_batch"], job["check_batch"], rng,
                                             job["dtype"])
    _check(relative_error(kernel(**arguments), expected), job["dtype"])
    edges = job["batch"]
    arguments, _ = random_convolution(tp, job["fusion"], edges, max(1, edges // MEAN_DEGREE), rng, job["dtype"],
                                      reference=False)
    out = kernel(**arguments)

    def timing() -> list[float]:
        samples = []
        deadline = time.perf_counter() + job["repeat"] * job["min_repeat_ms"] / 1e3
        while len(samples) < job["repeat"] or (time.perf_counter() < deadline and len(samples) < 100):
            start = time.perf_counter()
            kernel(**arguments, out=out)
            samples.append(time.perf_counter() - start)
        return samples

    return timing


def _arguments(tp: TensorProduct, wrt: str | None, batch: int, rng: np.random.Generator, dtype: str) -> list:
    """Random ``x1, x2, weight`` (None when there are none), and ``grad`` for a gradient."""
    from tpc.testing import random_inputs

    arguments = list(random_inputs(tp, batch, rng, dtype))
    if wrt is not None:
        arguments.append(rng.standard_normal((batch, tp.irreps_out.dim)).astype(dtype))
    return arguments


def output_shape(tp: TensorProduct, wrt: str | None, batch: int) -> tuple[int, int]:
    """The shape of the compiled function's ``out``: per sample, also for shared-weight gradients."""
    width = {None: tp.irreps_out.dim, "x1": tp.irreps_in1.dim, "x2": tp.irreps_in2.dim, "weight": tp.weight_numel}
    return batch, width[wrt]


def _load_tables(path: Path) -> list[np.ndarray]:
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"table{i}"] for i in range(len(archive.files))]


def answer_job(command: str, folder: Path) -> None:
    """Do the ``build`` or ``run`` job in ``folder/job.json`` and write ``folder/answer.json``."""
    job = json.loads((folder / "job.json").read_text())
    try:
        answer = {"build": build_job, "run": run_job}[command](job)
    except Exception as error:  # any failure of a candidate is its error record, not a crash
        message = str(error).strip().splitlines()
        answer = {"error": f"{type(error).__name__}: {message[-1] if message else ''}"[:500]}
    (folder / "answer.json").write_text(json.dumps(answer))


def serve(parent: int) -> None:
    """Answer requests read from stdin, one JSON line ``{"command", "folder"}`` each, until
    stdin closes; echo each request on stdout once its answer is written.

    One process answers many jobs, so that importing TVM (seconds) is paid once. Anything
    else written to stdout (TVM's native code may print) goes to stderr, and the process
    dies with its parent (the process ``parent``), so a killed tuner leaves no worker behind.
    """
    if not _dies_with_parent(parent):
        return
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        request = json.loads(line)
        answer_job(request["command"], Path(request["folder"]))
        protocol.write(line)
        protocol.flush()


def _dies_with_parent(parent: int) -> bool:
    """Ask Linux to kill this process when its parent exits (elsewhere, stdin's end stops it);
    False when ``parent`` is no longer this process's parent, that is when the tuner died
    before the request was made, and the jobs it already handed over must not run."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    return os.getppid() == parent


if __name__ == "__main__":
    serve(int(sys.argv[1]))
