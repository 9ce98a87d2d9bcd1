"""Measurement: build candidates in parallel, run each in a worker process with a time-out.

A :class:`Runner` turns measure inputs into results. :class:`LocalRunner` measures on this
machine; :class:`tpc.tune.rpc.RPCRunner` builds here like it and runs on the devices behind a
TVM RPC tracker. A candidate that fails to build, crashes, hangs or computes a wrong result
gets an error result; it never stops the measurement of the others.

Given an :class:`Anchor` (the tuner passes the run's reference record, see
:func:`tpc.tune.tuner.reference_record`), each candidate is timed in turns with the anchor
and its seconds are its ratio to the anchor times the anchor's recorded seconds: measurements
taken minutes apart stay comparable on a machine whose speed drifts.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from tpc.targets import host_cores
from tpc.tune.worker import tables_path


@dataclass(frozen=True)
class MeasureInput:
    """One candidate: the op (as :meth:`tpc.ops.Op.to_dict` gives it), target dict, dtype,
    batch (edges for a fused op), algorithm and knobs."""

    op: dict
    target: dict
    dtype: str
    batch: int
    algorithm: str
    config: dict


@dataclass(frozen=True)
class MeasureResult:
    """Median seconds per call, or the error that prevented a measurement; ``ratio``: the
    candidate's seconds over its anchor's, where it was timed against one; ``device``: what ran
    it ("local", or "rpc:KEY" for a device behind a tracker)."""

    seconds: Optional[float]
    error: Optional[str] = None
    build_seconds: Optional[float] = None
    ratio: Optional[float] = None
    device: str = "local"


@dataclass(frozen=True)
class Anchor:
    """A candidate measured before (of the same op, shape, dtype and target) and its seconds:
    later candidates are timed in turns with it and reported relative to these seconds."""

    candidate: MeasureInput
    seconds: float


class Runner(Protocol):
    """Measures candidates, against ``anchor`` where given; results come back in the order of the inputs."""

    def measure(self, inputs: Sequence[MeasureInput], anchor: Optional[Anchor] = None) -> list[MeasureResult]:
        ...


@dataclass
class LocalRunner:
    """Builds up to ``parallel_builds`` candidates at once, then runs them one by one.

    Builds and runs happen in worker processes (:data:`WORKER_MAIN`) kept for many jobs, one
    per parallel build and one for runs, since starting one (importing TVM) costs seconds. A
    job over its time limit has its worker killed with its process group; a worker that
    crashes or times out is replaced for the next job, and each is replaced after
    :data:`JOBS_PER_WORKER` jobs; ``close`` stops them (so does the runner's end). A run checks
    the output against the float64 reference of the op, then times it with TVM's
    time_evaluator (median); against an anchor, :data:`tpc.tune.worker.ANCHOR_ROUNDS` such
    timings of each, in turns. The library of each call's fastest candidate, the likeliest
    next anchor, is kept; so is the anchor's while it is in use.

    Attributes:
        build_timeout: seconds a build may take, counted from when it was handed over (a fresh
            worker's start included); once :data:`BUILDS_TO_ADAPT` builds of an op (the
            candidate less its knobs) have finished, ``slow_build_factor`` times their median,
            never under ``min_build_timeout``, since a schedule that LLVM takes many times longer
            over than its siblings would cost every ``tpc.compile`` of it as much.
        run_timeout: seconds a run may take, counted the same way.
        parallel_builds: builds at once; 0 for one per usable core.
        check_batch: samples the output is checked on before it is timed.
        repeat: timed repetitions, each at least ``min_repeat_ms`` long.
    """

    build_timeout: float = 300.0
    run_timeout: float = 120.0
    slow_build_factor: float = 8.0
    min_build_timeout: float = 60.0
    parallel_builds: int = 0
    check_batch: int = 13
    repeat: int = 5
    min_repeat_ms: int = 40
    _kept: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    _store: Optional[tempfile.TemporaryDirectory] = field(default=None, init=False, repr=False)
    _builders: list["_Worker"] = field(default_factory=list, init=False, repr=False)
    _runners: list["_Worker"] = field(default_factory=list, init=False, repr=False)
    _build_seconds: dict[str, list[float]] = field(default_factory=dict, init=False, repr=False)

    @property
    def device(self) -> str:
        """What runs the candidates, as records name it."""
        return "local"

    def measure(self, inputs: Sequence[MeasureInput], anchor: Optional[Anchor] = None) -> list[MeasureResult]:
        anchor_library = self._anchor_library(anchor)
        with tempfile.TemporaryDirectory(prefix="tpc-measure-") as folder:
            libraries = [Path(folder) / f"candidate{i}.so" for i in range(len(inputs))]
            builds = self.build(inputs, libraries)
            jobs = {}
            for index, (candidate, library, built) in enumerate(zip(inputs, libraries, builds)):
                if "error" not in built:
                    jobs[index] = self.run_job(library, candidate)
                    if anchor_library is not None:
                        jobs[index]["anchor"] = {"library": str(anchor_library),
                                                 "algorithm": anchor.candidate.algorithm,
                                                 "config": anchor.candidate.config}
            answers = self.run_jobs(jobs)
            results = []
            for index, built in enumerate(builds):
                if "error" in built:
                    results.append(MeasureResult(None, f"build failed: {built['error']}"))
                    continue
                answer = answers[index]
                ratio = answer.get("ratio")
                seconds = ratio * anchor.seconds if ratio is not None and anchor is not None \
                    else answer.get("seconds")
                results.append(MeasureResult(seconds, answer.get("error"), built.get("build_seconds"), ratio,
                                             self.device))
            self._keep_fastest(inputs, libraries, results)
            return results

    def run_library(self, library: Path, candidate: MeasureInput) -> MeasureResult:
        """Check and time one built library in the run worker."""
        (answer,) = self.run_jobs({0: self.run_job(library, candidate)}).values()
        return MeasureResult(answer.get("seconds"), answer.get("error"), device=self.device)

    def run_jobs(self, jobs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """The run workers' answers to run jobs, :meth:`run_width` of them at a time."""
        width = self.run_width() if jobs else 0
        while len(self._runners) < width:
            self._runners.append(_Worker(self._folder() / f"run-worker{len(self._runners)}.txt"))
        return _dispatch(self._runners[:width], jobs, "run", lambda index: (self.run_timeout, ""))

    def run_width(self) -> int:
        """How many candidates run at once: here one, so that no two share the machine while timed."""
        return 1

    def close(self) -> None:
        """Stop the worker processes; later calls start new ones."""
        for worker in self._builders + self._runners:
            worker.stop()
        self._builders, self._runners = [], []

    def run_job(self, library: Path, candidate: MeasureInput) -> dict[str, Any]:
        """The worker's job that checks and times ``library``, built for ``candidate``."""
        return {**asdict(candidate), "library": str(library), "check_batch": self.check_batch,
                "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms}

    def _folder(self) -> Path:
        """The runner's store, which lives as long as the runner: kept libraries, worker output."""
        if self._store is None:
            self._store = tempfile.TemporaryDirectory(prefix="tpc-runner-")
        return Path(self._store.name)

    def _new_library(self) -> Path:
        """A fresh library path in the runner's store."""
        return Path(tempfile.mkdtemp(dir=self._folder())) / "candidate.so"

    def _anchor_library(self, anchor: Optional[Anchor]) -> Optional[Path]:
        """The anchor's library, built now unless kept (every other kept library is dropped);
        None (time without an anchor) without one or if it fails to build."""
        key = _key(anchor.candidate) if anchor is not None else None
        for other in [k for k in self._kept if k != key]:
            shutil.rmtree(self._kept.pop(other).parent, ignore_errors=True)
        if anchor is None:
            return None
        if key not in self._kept:
            library = self._new_library()
            (built,) = self.build([anchor.candidate], [library])
            if "error" in built:
                return None
            self._kept[key] = library
        return self._kept[key]

    def _keep_fastest(self, inputs: Sequence[MeasureInput], libraries: list[Path],
                      results: list[MeasureResult]) -> None:
        """Move the library of the call's fastest candidate into the store: the next anchor, most likely."""
        timed = [i for i, result in enumerate(results) if result.seconds is not None]
        if not timed:
            return
        fastest = min(timed, key=lambda i: results[i].seconds)
        kept = self._new_library()
        for source, destination in ((libraries[fastest], kept),
                                    (tables_path(libraries[fastest]), tables_path(kept))):
            if source.exists():
                os.replace(source, destination)
        self._kept[_key(inputs[fastest])] = kept

    def build(self, inputs: Sequence[MeasureInput], libraries: list[Path]) -> list[dict[str, Any]]:
        """Build each input into its library, up to ``parallel_builds`` at once; per input the
        worker's answer (``build_seconds``, or ``error``)."""
        width = self.parallel_builds or host_cores()
        while len(self._builders) < width:
            self._builders.append(_Worker(self._folder() / f"build-worker{len(self._builders)}.txt"))
        jobs = {index: {**asdict(candidate), "library": str(library)}
                for index, (candidate, library) in enumerate(zip(inputs, libraries))}

        def finished(index: int, answer: dict[str, Any]) -> None:
            if "build_seconds" in answer:
                self._build_seconds.setdefault(_op_key(inputs[index]), []).append(answer["build_seconds"])

        answers = _dispatch(self._builders[:width], jobs, "build", lambda index: self._build_limit(inputs[index]),
                            finished)
        return [answers.get(index) or {"error": "not built"} for index in range(len(inputs))]

    def _build_limit(self, candidate: MeasureInput) -> tuple[float, str]:
        """The seconds the candidate's build may take, and why, when that is not ``build_timeout``."""
        finished = self._build_seconds.get(_op_key(candidate), [])
        if len(finished) >= BUILDS_TO_ADAPT:
            median = float(np.median(finished))
            limit = round(max(self.slow_build_factor * median, self.min_build_timeout), 1)
            if limit < self.build_timeout:
                return limit, f" ({self.slow_build_factor:g}x the median of this op's {len(finished)} " \
                              f"builds, {median:.1f} s)"
        return self.build_timeout, ""


BUILDS_TO_ADAPT = 3
"""Finished builds of an op after which its builds get a time-out of their own (see :class:`LocalRunner`)."""


JOBS_PER_WORKER = 100
"""Jobs a worker process does before it is replaced: what a long tuning run's builds leave
behind in one process (loaded libraries, TVM's caches) stays bounded."""

KEEP_TORCH_OUT = """
import sys

class KeepTorchOut:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            raise ModuleNotFoundError("a tpc worker keeps torch out", name=name)

sys.meta_path.insert(0, KeepTorchOut())
"""
"""Code that makes importing torch fail as if it were not installed. A worker needs no torch,
and TVM's FFI imports it whenever it is installed, a large share of a worker's start.
``sys.modules`` gets no ``torch`` entry: packages that look torch up there (SciPy's array
API support) would take a ``None`` entry for the module."""

WORKER_MAIN = KEEP_TORCH_OUT + "from tpc.tune.worker import serve\nserve(int(sys.argv[1]))\n"
"""How a worker process starts: :func:`tpc.tune.worker.serve`, with torch kept out."""


class _Worker:
    """One worker process (:data:`WORKER_MAIN`), doing one job at a time; started on
    the first job and again after it was stopped (a crash, a time-out, enough jobs done).
    Its stderr goes to ``output``."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.process: Optional[subprocess.Popen] = None
        self.jobs = 0
        self.handed_over: Optional[float] = None
        self.output_start = 0

    def fileno(self) -> int:
        """The worker's answer pipe, for ``select``."""
        return self.process.stdout.fileno()

    def submit(self, command: str, job: dict[str, Any], folder: Path) -> None:
        """Hand over a job; its job, answer and output live in files in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "job.json").write_text(json.dumps(job))
        if self.process is None or self.jobs >= JOBS_PER_WORKER or self.process.poll() is not None:
            self.stop()
            with open(self.output, "a") as output:
                self.process = subprocess.Popen([sys.executable, "-c", WORKER_MAIN, str(os.getpid())],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=output,
                                                text=True, start_new_session=True)
            self._finalizer = weakref.finalize(self, _kill, self.process)  # a dropped runner leaves no worker
        self.folder, self.jobs, self.handed_over = folder, self.jobs + 1, time.monotonic()
        self.output_start = self.output.stat().st_size
        try:
            self.process.stdin.write(json.dumps({"command": command, "folder": str(folder)}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker has just died: its answer reports the crash

    def answer(self, limit: float, what: str, why_limit: str = "") -> dict[str, Any]:
        """Wait for the job's answer until ``limit`` seconds after it was handed over; stop
        the worker when it timed out (the error names the limit, and ``why_limit`` after it)
        or crashed (the error ends with the last line the worker wrote)."""
        ready, _, _ = select.select([self], [], [], max(limit - (time.monotonic() - self.handed_over), 0.0))
        if not ready:
            self.stop()
            return {"error": f"{what} timed out after {limit:g} s{why_limit}"}
        self.handed_over = None
        if not self.process.stdout.readline():
            code = self.process.wait()
            self.stop()
            reason = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            last_words = _last_line(self.output, self.output_start)
            return {"error": f"{what} crashed ({reason})" + (f": {last_words}" if last_words else "")}
        try:
            return json.loads((self.folder / "answer.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {"error": f"{what} gave no answer"}

    def stop_if_busy(self) -> None:
        """Stop the worker if it is still doing a job (its answer was not taken)."""
        if self.handed_over is not None:
            self.stop()

    def stop(self) -> None:
        """Kill the worker and everything it started."""
        if self.process is not None:
            self._finalizer()
        self.process, self.jobs, self.handed_over = None, 0, None


def _dispatch(workers: list[_Worker], jobs: dict[int, dict[str, Any]], command: str,
              limit_of: Callable[[int], tuple[float, str]],
              finished: Optional[Callable[[int, dict[str, Any]], None]] = None) -> dict[int, dict[str, Any]]:
    """Do ``jobs`` (by index) on ``workers``, one job per worker at a time, each within the
    limit ``limit_of(index)`` gives when it is handed over (the seconds, and why, for the error);
    ``finished`` sees each answer as it comes. On Ctrl-C no job is left running."""
    answers: dict[int, dict[str, Any]] = {}
    pending = list(jobs)
    running: dict[_Worker, int] = {}
    limits: dict[_Worker, tuple[float, str]] = {}
    try:
        while pending or running:
            for worker in workers:
                if pending and worker not in running:
                    index = pending.pop(0)
                    worker.submit(command, jobs[index], Path(jobs[index]["library"] + f".{command}"))
                    running[worker], limits[worker] = index, limit_of(index)
            for worker in _answering(list(running), {w: limit for w, (limit, _) in limits.items()}):
                index = running.pop(worker)
                limit, why_limit = limits.pop(worker)
                answers[index] = worker.answer(limit, command, why_limit)
                if finished is not None:
                    finished(index, answers[index])
    finally:
        for worker in running:
            worker.stop_if_busy()
    return answers


def _last_line(output: Path, start: int, limit: int = 300) -> str:
    """The last non-empty line a worker wrote to ``output`` after byte ``start`` (its
    exception, as a rule), so that a crash's error says why."""
    with open(output, "rb") as text:
        text.seek(start)
        lines = text.read().decode(errors="replace").strip().splitlines()
    return lines[-1].strip()[:limit] if lines else ""


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    process.stdin.close()
    process.stdout.close()


def _answering(workers: list[_Worker], limits: dict[_Worker, float]) -> list[_Worker]:
    """The workers whose answer is ready or whose time (their limit) is up, waiting until there is one."""
    now = time.monotonic()
    wait = max(min(limits[w] - (now - w.handed_over) for w in workers), 0.0)
    ready, _, _ = select.select(workers, [], [], wait)
    now = time.monotonic()
    return list(dict.fromkeys(ready + [w for w in workers if now - w.handed_over >= limits[w]]))


def _key(candidate: MeasureInput) -> str:
    return json.dumps(asdict(candidate), sort_keys=True)


def _op_key(candidate: MeasureInput) -> str:
    """The candidate less its knobs: builds of one op, whose times are comparable."""
    return _key(replace(candidate, config={}))
