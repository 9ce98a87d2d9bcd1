"""Tuning curves: the best latency found so far against trial number, from tuning logs.

A curve shows how quickly a search strategy finds a good schedule, so strategies can be
compared and a sensible trial budget chosen. Each tuning run (one op, batch, dtype, target
and search-space version) of each log gives one line per search strategy. The tuner
measures the default schedule first in every run and records it with the strategy
"default"; that measurement counts as a trial of the search that follows it in the log.
A failed measurement counts as a trial but never improves the best.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tpc.records import Record, read_records

Point = tuple[int, float | None]
"""A trial number and the best seconds up to and including it (None before any success)."""

DEFAULT = "default"


def read_logs(paths: Iterable[str | os.PathLike]) -> dict[Path, list[Record]]:
    """The records of each log; a missing, unreadable or empty log is a ValueError naming it."""
    logs = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"tuning log {str(path)!r} does not exist")
        try:
            records = read_records(path)
        except OSError as error:
            raise ValueError(f"cannot read tuning log {str(path)!r}: {error.strerror}") from None
        if not records:
            raise ValueError(f"tuning log {str(path)!r} holds no tuning records")
        logs[path] = records
    return logs


def _run_key(record: Record) -> tuple:
    return record.op, record.batch, record.dtype, record.target_fingerprint, record.space_version


def _search_strategies(records: Sequence[Record]) -> list[str]:
    """Each record's search strategy, a default measurement taking that of the record after it."""
    strategies, following = [], DEFAULT
    for record in reversed(records):
        if record.strategy != DEFAULT:
            following = record.strategy
        strategies.append(following)
    return strategies[::-1]


def _best_so_far(records: Iterable[Record]) -> list[Point]:
    points, best = [], None
    for record in sorted(records, key=lambda r: r.trial):
        if record.ok and (best is None or record.seconds < best):
            best = record.seconds
        points.append((record.trial, best))
    return points


def _labels(keys: Sequence[tuple], log_names: Mapping[Path, str]) -> list[str]:
    """Short labels: the strategy, with each part of the run key that differs between lines,
    and the log's name in front where lines of different logs would otherwise look alike."""
    formats = (lambda op: op[:12], lambda batch: f"b{batch}", str, lambda target: f"target {target}",
               lambda version: f"space v{version}")
    varying = [i for i in range(len(formats)) if len({key[1][i] for key in keys}) > 1]
    labels = [" ".join([formats[i](run[i]) for i in varying] + [strategy]) for _, run, strategy in keys]
    if len(set(labels)) < len(labels):
        labels = [f"{log_names[path]}: {label}" for (path, _, _), label in zip(keys, labels)]
    return labels


def tuning_curves(logs: Mapping[Path, Sequence[Record]]) -> dict[str, list[Point]]:
    """One curve per (log, tuning run, search strategy): the best seconds after each trial.

    Points are ordered by trial number. Logs are named by file stem, or by path where two
    stems are the same.
    """
    stems = [path.stem for path in logs]
    log_names = {path: path.stem if stems.count(path.stem) == 1 else str(path) for path in logs}
    lines: dict[tuple, list[Record]] = {}
    for path, records in logs.items():
        runs: dict[tuple, list[Record]] = {}
        for record in records:
            runs.setdefault(_run_key(record), []).append(record)
        for run, run_records in runs.items():
            for record, strategy in zip(run_records, _search_strategies(run_records)):
                lines.setdefault((path, run, strategy), []).append(record)
    keys = list(lines)
    return {label: _best_so_far(lines[key]) for label, key in zip(_labels(keys, log_names), keys)}


def settled_trial(points: Sequence[Point], fraction: float = 0.95) -> int | None:
    """The first trial whose best so far is within ``1 - fraction`` of the curve's final best
    (best / latency >= fraction): where more trials stopped paying off."""
    final = points[-1][1] if points else None
    if final is None:
        return None
    return next(trial for trial, best in points if best is not None and final / best >= fraction)


def summary(curves: Mapping[str, Sequence[Point]]) -> str:
    """A text table: per line its trials, best milliseconds and the trial it came within 5% of that."""
    width = max([len("line")] + [len(label) for label in curves])
    rows = [f"{'line':<{width}}  {'trials':>6}  {'best ms':>9}  {'within 5% at trial':>18}"]
    for label, points in curves.items():
        best, settled = (points[-1][1] if points else None), settled_trial(points)
        rows.append(f"{label:<{width}}  {len(points):>6}  {'-' if best is None else f'{best * 1e3:.3f}':>9}  "
                    f"{'-' if settled is None else settled:>18}")
    return "\n".join(rows)


def plot_curves(curves: Mapping[str, Sequence[Point]], path: str | os.PathLike) -> None:
    """Draw the curves (best milliseconds on a log axis against trial) into an image file.

    The format follows the file's suffix (PNG, SVG, PDF, ...). matplotlib is an optional
    dependency, imported here so the rest of tpc works without it.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogFormatter, MaxNLocator
    except ImportError:
        raise RuntimeError('drawing tuning curves needs matplotlib: pip install "tpc[plot]"') from None
    drawn = {label: [(trial, best * 1e3) for trial, best in points if best is not None]
             for label, points in curves.items()}
    if not any(drawn.values()):
        raise ValueError("no successful measurement in the tuning logs, nothing to draw")
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, points in drawn.items():
        if points:
            trials, milliseconds = zip(*points)
            axes.plot(trials, milliseconds, drawstyle="steps-post", marker=".", markersize=3, label=label)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(LogFormatter())
    axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel("best latency (ms)")
    axes.set_title("Tuning curves")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise ValueError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
