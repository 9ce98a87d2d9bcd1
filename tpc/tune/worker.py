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
from typing import Any, Callable

import numpy as np

PR_SET_PDEATHSIG = 1


def tables_path(library: str | Path) -> Path:
    """Where the build of a candidate leaves its constant tables, next to its library."""
    return Path(str(library) + ".tables.npz")


def build_job(job: dict[str, Any]) -> dict[str, Any]:
    """Compile the candidate and write its shared library to ``job["library"]``."""
    from tpc.build import BuildRequest, build
    from tpc.ops import op_from_dict
    from tpc.runtime import ScheduleChoice
    from tpc.targets import resolve_target

    start = time.perf_counter()
    request = BuildRequest(op_from_dict(job["op"]), resolve_target(job["target"]), job["dtype"],
                           ScheduleChoice(job["algorithm"], job["config"], "tuning"))
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
    (the ``library``, ``algorithm`` and ``config`` of an earlier candidate of the same op).
    With ``job["rpc"]`` (tracker, key, time-outs) both run on one device behind the tracker."""
    if not job.get("rpc"):
        return _check_and_time(job, None)
    from tpc.tune.remote import request_session

    rpc = job["rpc"]
    session, address = request_session(rpc["tracker"], rpc["key"], rpc["timeout"], rpc["session_timeout"])
    try:
        return _check_and_time(job, session)
    except Exception as error:  # a device that fails mid-run: the error names it
        lines = str(error).strip().splitlines()
        raise RuntimeError(f"on the device {address}: {lines[-1] if lines else type(error).__name__}") from error


def _check_and_time(job: dict[str, Any], session: Any) -> dict[str, Any]:
    """:func:`run_job` here (``session`` None) or on the device of an RPC session."""
    try:
        timing = prepare_timing(job, session)
        anchor = prepare_timing({**job, **job["anchor"], "name": "anchor.so"}, session) \
            if job.get("anchor") else None
    except WrongResult as error:
        return {"error": str(error)}
    if anchor is None:
        samples = timing()
        return {"seconds": float(np.median(samples)), "samples": samples}
    return {"ratio": relative_timing(timing, anchor)[0]}


def relative_timing(candidate: Callable[[], list[float]], anchor: Callable[[], list[float]],
                    rounds: int = ANCHOR_ROUNDS) -> tuple[float, float]:
    """Time a candidate and an anchor in turns, so that a search can compare candidates timed
    minutes apart on a machine whose speed drifts: two kernels timed side by side keep their ratio.

    Args:
        candidate, anchor: functions that time one kernel, returning samples of its seconds per call.
        rounds: turns, each timing the candidate, then the anchor.

    Returns:
        The median over the rounds of the candidate's seconds over the anchor's, and the
        anchor's median seconds.
    """
    ratios, anchor_seconds = [], []
    for _ in range(rounds):
        candidate_median, anchor_median = float(np.median(candidate())), float(np.median(anchor()))
        ratios.append(candidate_median / anchor_median)
        anchor_seconds.append(anchor_median)
    return float(np.median(ratios)), float(np.median(anchor_seconds))


def prepare_timing(job: dict[str, Any], session: Any = None) -> Callable[[], list[float]]:
    """Load the job's library and check it on ``job["check_batch"]`` samples (raising
    :class:`WrongResult` when it is wrong); return a function that times it on ``job["batch"]``
    rows (or edges), ``job["repeat"]`` samples of at least ``job["min_repeat_ms"]`` each, in
    seconds per call. With an RPC ``session`` the library is uploaded (as ``job["name"]``), run
    and timed on that device. The benchmarks re-time finished candidates with it side by side."""
    import tvm

    from tpc.ops import Gradient, op_from_dict
    from tpc.runtime import ScheduleChoice, kernel_for
    from tpc.targets import resolve_target
    from tpc.verify import check, random_arguments

    op, dtype = op_from_dict(job["op"]), job["dtype"]
    tables = _load_tables(tables_path(job["library"]))
    target = resolve_target(job["target"])
    remote = None
    if session is None:
        module = tvm.runtime.load_module(job["library"])
        device = tvm.cuda(0) if target.family == "cuda" else tvm.cpu()
    else:
        from tpc.tune.remote import RemoteModule, upload

        if target.family != "cpu":
            raise ValueError("measuring through RPC is for CPU targets (x86, ARM) so far")
        module, device = upload(session, Path(job["library"]), job.get("name", "candidate.so")), session.cpu()
        remote = RemoteModule(module, device)
    kernel = kernel_for(op, remote or module, target, dtype,
                        ScheduleChoice(job["algorithm"], job["config"], "tuning"), tables=tuple(tables))
    if target.family == "cuda":  # CUDA kernels take tensors that live on the GPU
        def function(**arguments: Any) -> np.ndarray:
            return kernel(**{name: None if value is None else tvm.runtime.tensor(value, device)
                             for name, value in arguments.items()}).numpy()
    else:
        function = kernel
    indexed = op.indexed
    result = check(op, function, batch=(8 if indexed else 1) * job["check_batch"], dtype=dtype,
                   nodes=job["check_batch"] if indexed else None)
    if not result:
        raise WrongResult(f"wrong result: {result}")
    arguments = random_arguments(op, job["batch"], np.random.default_rng(1), dtype)
    if indexed and remote is None:
        return _timing_of_calls(kernel, arguments, job)
    if indexed:  # the kernel prepares its indices per call: time its call's device function
        kernel(**arguments)
        args = remote.last_arguments
    else:
        args = [tvm.runtime.tensor(value, device) for value in arguments.values() if value is not None]
        widths = op.output_widths if isinstance(op, Gradient) else (op.output_width,)
        args += [tvm.runtime.tensor(np.zeros((job["batch"], width), dtype), device) for width in widths]
        args += [tvm.runtime.tensor(table, device) for table in tables]
    evaluator = module.time_evaluator("main", device, number=1, repeat=job["repeat"],
                                      min_repeat_ms=job["min_repeat_ms"])
    return lambda: [float(r) for r in evaluator(*args).results]


def _timing_of_calls(kernel: Callable[..., Any], arguments: dict[str, Any],
                     job: dict[str, Any]) -> Callable[[], list[float]]:
    """Time whole calls of a kernel (fused kernels check their indices and pick their entry per call)."""
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
