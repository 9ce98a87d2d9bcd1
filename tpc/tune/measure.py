"""Measurement: build candidates in parallel, run each in its own process with a time-out.

A :class:`Runner` turns measure inputs into results. :class:`LocalRunner` measures on this
machine; a remote runner (TVM's RPC tracker and servers) implements the same method. A
candidate that fails to build, crashes, hangs or computes a wrong result gets an error
result; it never stops the measurement of the others.

Given an :class:`Anchor` (the tuner passes its best candidate so far), each candidate is
timed in turns with the anchor and its seconds are its ratio to the anchor times the
anchor's recorded seconds: measurements taken minutes apart stay comparable on a machine
whose speed drifts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from tpc.targets import host_cores
from tpc.tune.worker import tables_path


@dataclass(frozen=True)
class MeasureInput:
    """One candidate: the spec (as a dict), target dict, dtype, batch, algorithm and knobs;
    ``wrt`` None measures the product, else its gradient with respect to that argument;
    ``fusion`` measures the product fused with its gather and/or scatter-sum (batch: edges)."""

    spec: dict
    target: dict
    dtype: str
    batch: int
    algorithm: str
    config: dict
    wrt: Optional[str] = None
    fusion: Optional[str] = None


@dataclass(frozen=True)
class MeasureResult:
    """Median seconds per call, or the error that prevented a measurement; ``ratio``: the
    candidate's seconds over its anchor's, where it was timed against one."""

    seconds: Optional[float]
    error: Optional[str] = None
    build_seconds: Optional[float] = None
    ratio: Optional[float] = None


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

    Each build and each run is a fresh ``python -m tpc.tune.worker`` process, killed (with
    its threads) after ``build_timeout`` or ``run_timeout`` seconds. Runs first check the
    output on ``check_batch`` samples against the float64 reference (of the product or of
    its gradient), then time ``repeat``
    repetitions of at least ``min_repeat_ms`` each with TVM's time_evaluator (median); against
    an anchor, :data:`tpc.tune.worker.ANCHOR_ROUNDS` such timings of each, in turns.

    The runner keeps the library of the fastest candidate of its last call, so that an anchor
    is usually not built again; other anchors are built once and kept while they are in use.
    """

    build_timeout: float = 300.0
    run_timeout: float = 120.0
    parallel_builds: int = 0
    check_batch: int = 13
    repeat: int = 5
    min_repeat_ms: int = 40
    _kept: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    _store: Optional[tempfile.TemporaryDirectory] = field(default=None, init=False, repr=False)

    def measure(self, inputs: Sequence[MeasureInput], anchor: Optional[Anchor] = None) -> list[MeasureResult]:
        anchor_library = self._anchor_library(anchor)
        with tempfile.TemporaryDirectory(prefix="tpc-measure-") as folder:
            libraries = [Path(folder) / f"candidate{i}.so" for i in range(len(inputs))]
            builds = self.build(inputs, libraries)
            results = []
            for candidate, library, built in zip(inputs, libraries, builds):
                if "error" in built:
                    results.append(MeasureResult(None, f"build failed: {built['error']}"))
                    continue
                job = self.run_job(library, candidate)
                if anchor_library is not None:
                    job["anchor"] = {"library": str(anchor_library), "algorithm": anchor.candidate.algorithm,
                                     "config": anchor.candidate.config}
                answer = self._run(job)
                ratio = answer.get("ratio")
                seconds = ratio * anchor.seconds if ratio is not None and anchor is not None \
                    else answer.get("seconds")
                results.append(MeasureResult(seconds, answer.get("error"), built.get("build_seconds"), ratio))
            self._keep_fastest(inputs, libraries, results)
            return results

    def run_library(self, library: Path, candidate: MeasureInput) -> MeasureResult:
        """Check and time one built library in its own process."""
        answer = self._run(self.run_job(library, candidate))
        return MeasureResult(answer.get("seconds"), answer.get("error"))

    def _run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer to a run job."""
        return _finish(_start("run", job, Path(job["library"] + ".run")), self.run_timeout, self.run_timeout, "run")

    def run_job(self, library: Path, candidate: MeasureInput) -> dict[str, Any]:
        """The worker's job that checks and times ``library``, built for ``candidate``."""
        return {**asdict(candidate), "library": str(library), "check_batch": self.check_batch,
                "repeat": self.repeat, "min_repeat_ms": self.min_repeat_ms}

    def _new_library(self) -> Path:
        """A fresh library path in the runner's store, which lives as long as the runner."""
        if self._store is None:
            self._store = tempfile.TemporaryDirectory(prefix="tpc-anchors-")
        return Path(tempfile.mkdtemp(dir=self._store.name)) / "candidate.so"

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
        answers: list[Optional[dict[str, Any]]] = [None] * len(inputs)
        pending = list(range(len(inputs)))
        running: dict[int, tuple[subprocess.Popen, float]] = {}
        try:
            while pending or running:
                while pending and len(running) < width:
                    index = pending.pop(0)
                    job = {**asdict(inputs[index]), "library": str(libraries[index])}
                    running[index] = (_start("build", job, Path(str(libraries[index]) + ".build")), time.monotonic())
                for index, (process, started) in list(running.items()):
                    remaining = self.build_timeout - (time.monotonic() - started)
                    if process.poll() is not None or remaining <= 0:
                        answers[index] = _finish(process, max(remaining, 0.0), self.build_timeout, "build")
                        del running[index]
                time.sleep(0.05)
        finally:  # on Ctrl-C, no build is left running
            for process, _ in running.values():
                _kill_group(process)
        return [answer or {"error": "not built"} for answer in answers]


def _key(candidate: MeasureInput) -> str:
    return json.dumps(asdict(candidate), sort_keys=True)


def _start(command: str, job: dict[str, Any], folder: Path) -> subprocess.Popen:
    """Start a worker on a job; its job, answer and output live in files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.json").write_text(json.dumps(job))
    with open(folder / "output.txt", "w") as output:
        return subprocess.Popen([sys.executable, "-m", "tpc.tune.worker", command, str(folder)],
                                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(process: subprocess.Popen, timeout: float, limit: float, what: str) -> dict[str, Any]:
    """Wait up to ``timeout`` more seconds for a worker (whose time limit is ``limit``) and
    read its answer; kill its whole process group on time-out."""
    folder = Path(process.args[-1])
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{what} timed out after {limit:g} s"}
    finally:
        _kill_group(process)
    if process.returncode != 0:
        reason = (f"killed by signal {signal.Signals(-process.returncode).name}" if process.returncode < 0
                  else f"exit status {process.returncode}")
        return {"error": f"{what} crashed ({reason})"}
    try:
        return json.loads((folder / "answer.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"error": f"{what} gave no answer"}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
