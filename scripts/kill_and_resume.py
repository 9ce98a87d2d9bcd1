"""Kill ``tpc tune`` with SIGKILL at random moments, resume it each time, then check its log.

Each round starts a resumed tuning run on a small problem in a fresh session (``tpc tune
--resume``, or ``tpc.tune(..., resume=True)`` with ``--round-size`` for rounds shorter than
the command's 8, so kills land inside and between rounds), waits a random time and kills the
whole session (tuner and workers) with SIGKILL; a last run finishes the trials. Then every
line of the log and of the schedule cache must be valid JSON ending in a newline, the records
seen after each kill must still be there in the same order (nothing lost), trial numbers must
count 0, 1, 2, ... and every (algorithm, config) must be measured once (nothing repeated: a
round cut by a kill is measured again only where it was not logged).
Usage: ``python scripts/kill_and_resume.py [--kills 20] [--trials 24] [--round-size 2] [--max-delay 25]``;
prints one line per kill and a summary, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

from tpc.records import read_records

API_RUN = """
import sys, tpc
log, trials, preset, batch, round_size = sys.argv[1:]
tpc.tune(tpc.presets.get(preset).tp, batch=int(batch), trials=int(trials), strategy="random", log=log, resume=True,
         round_size=int(round_size), progress=False)
"""


def tune_command(log: Path, trials: int, preset: str, batch: int, round_size: Optional[int] = None) -> list[str]:
    """The resumed tuning run of the experiment: ``tpc tune --resume``, or with ``round_size``
    the same run through ``tpc.tune``."""
    if round_size is not None:
        return [sys.executable, "-c", API_RUN, str(log), str(trials), preset, str(batch), str(round_size)]
    return [sys.executable, "-m", "tpc.cli", "tune", "--preset", preset, "--batch", str(batch), "--trials",
            str(trials), "--strategy", "random", "--log", str(log), "--resume"]


def kill_and_resume(folder: Path, kills: int = 20, trials: int = 24, min_delay: float = 2.0, max_delay: float = 25.0,
                    seed: int = 0, preset: str = "fc-small", batch: int = 64, round_size: Optional[int] = None,
                    echo: Callable[[str], None] = print) -> list[str]:
    """Run the experiment in ``folder`` (log and schedule cache) and return the failed checks.

    Args:
        folder: where the log and the private schedule cache go.
        kills: how many times the tuner is killed.
        trials: the tuning run's trials in all.
        min_delay, max_delay: each kill comes this many seconds (uniform) after its run started.
        seed: seeds the kill times.
        preset, batch: the problem tuned.
        round_size: candidates per measurement round, through ``tpc.tune``; None runs ``tpc tune``.
        echo: prints a line of progress.

    Returns:
        One message per failed check; empty when the log survived every kill.
    """
    chooser = random.Random(seed)
    log = folder / "killed.jsonl"
    environment = {**os.environ, "TPC_CACHE": str(folder / "cache")}
    command = tune_command(log, trials, preset, batch, round_size)
    snapshots = []
    for kill in range(1, kills + 1):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, env=environment)
        delay = chooser.uniform(min_delay, max_delay)
        try:
            process.wait(timeout=delay)
            state = f"finished (exit {process.returncode}) before"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            state = "killed"
        snapshots.append(_records(log))
        echo(f"kill {kill:>3}: {state} {delay:5.1f} s, {len(snapshots[-1])} records")
    final = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=1800)
    failures = [] if final.returncode == 0 else [f"the last run exited {final.returncode}: {final.stderr[-2000:]}"]
    records = _records(log)
    echo(f"final run: {len(records)} records")
    failures += _check_lines(log) + _check_lines(folder / "cache" / "schedules.jsonl")
    for kill, snapshot in enumerate(snapshots, start=1):
        if records[:len(snapshot)] != snapshot:
            failures.append(f"records seen after kill {kill} are not all kept, in order")
    if [r.trial for r in records] != list(range(len(records))):
        failures.append(f"trial numbers are not 0..{len(records) - 1}: {[r.trial for r in records]}")
    keys = [(r.algorithm, json.dumps(r.config, sort_keys=True)) for r in records]
    if len(set(keys)) != len(keys):
        failures.append(f"{len(keys) - len(set(keys))} measurements repeated")
    if len(records) != trials:
        failures.append(f"{len(records)} records, expected {trials}")
    return failures


def _records(log: Path) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line cut by the kill is repaired by the next run
        return read_records(log)


def _check_lines(path: Path) -> list[str]:
    """Every line of a JSON-lines file parses and the file ends in a newline."""
    if not path.exists():
        return [f"{path} is missing"]
    data = path.read_bytes()
    failures = [] if data.endswith(b"\n") or not data else [f"{path} does not end in a newline"]
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError as error:
            failures.append(f"{path}:{number}: not JSON ({error})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--min-delay", type=float, default=2.0, help="least seconds from a start to its kill (2)")
    parser.add_argument("--max-delay", type=float, default=25.0, help="most seconds from a start to its kill (25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="fc-small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--round-size", type=int, help="rounds of this many candidates, through tpc.tune "
                        "(default: tpc tune, rounds of 8)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tpc-kill-and-resume-") as folder:
        failures = kill_and_resume(Path(folder), args.kills, args.trials, args.min_delay, args.max_delay, args.seed,
                                   args.preset, args.batch, args.round_size)
    for failure in failures:
        print(f"FAILED: {failure}")
    print(f"{args.kills} kills, {args.trials} trials, {time.monotonic() - started:.0f} s: "
          + ("every check passed" if not failures else f"{len(failures)} checks failed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
