"""Tune the presets, product-basis presets and graph presets here; write their records to ``tpc/schedules/``.

The package ships these records (``tpc/schedules/*.jsonl``, package data) so that
``tpc.compile`` (and ``tpc.compile_graph``) starts from a tuned schedule before its user has
tuned anything: on a machine of the same kind, and on kindred CPUs (same vector instruction
set, then same architecture; see ``tpc/cache.py``). A graph preset is tuned both unfused and
with its gathers and scatter-sums fused, as ``tpc tune --graph-preset`` can cut it; a product
basis in its forward, x gradient and weight gradient (CPU targets only). The records
of ops it did not tune that the file already holds are kept, so a subset can be tuned again on
its own. Run from a checkout (``pip install -e .``): the file it writes,
``tpc/schedules/x86-<cpu>.jsonl`` (``aarch64-<cpu>.jsonl``, ``cuda-<arch>.jsonl``), is used by
that checkout at once and is the file to share (a pull request adding it).
Usage: ``python scripts/tune_shipped_schedules.py [--target host|cuda] [--trials 12]
[--presets NAME ...] [--contraction-presets NAME ...] [--contraction-kinds forward x weight]
[--graph-presets NAME ...] [--output FILE]``;
a CUDA target is tuned on this machine's GPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import tpc
from tpc.records import Record, append_records, read_records
from tpc.targets import TargetSpec
from tpc.tune.graph import UNFUSED_AND_FUSED

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "tpc" / "schedules"
GRAPH_PRESETS = ["mace-interaction-l2"]
CONTRACTION_KINDS = {"forward": "", "x": "x", "weight": "weight"}
"""What is tuned of a product basis: its forward, x gradient (forces) and weight gradient
(training), by name, each with the ``wrt`` of its op."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per product (per graph and cut)")
    parser.add_argument("--presets", nargs="*", default=tpc.presets.names(), choices=tpc.presets.names())
    parser.add_argument("--contraction-presets", nargs="*", default=None, choices=tpc.presets.contraction_names(),
                        help="product-basis presets (default: all for a CPU target, none for CUDA)")
    parser.add_argument("--contraction-kinds", nargs="+", default=list(CONTRACTION_KINDS), choices=CONTRACTION_KINDS,
                        help="which of a product basis's ops to tune (default: all)")
    parser.add_argument("--graph-presets", nargs="*", default=GRAPH_PRESETS, choices=tpc.presets.graph_names())
    parser.add_argument("--target", default="host", choices=("host", "cuda"))
    parser.add_argument("--output", type=Path,
                        help="records file; default tpc/schedules/x86-<cpu>.jsonl (aarch64-<cpu>.jsonl, "
                             "cuda-<arch>.jsonl) of this checkout")
    args = parser.parse_args()
    target = tpc.resolve_target(args.target)
    output = args.output or SHIPPED / shipped_file_name(target)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TPC_CACHE"] = folder
        written = 0
        for name in args.presets:
            preset = tpc.presets.get(name)
            log = Path(folder) / f"{name}.jsonl"
            result = tpc.tune(preset.tp, batch=preset.batch, target=target, trials=args.trials, log=log,
                              progress=False)
            print(f"{name}: {_outcome(result)}", flush=True)
            written += merge_records(output, read_records(log))
        contractions = args.contraction_presets
        if contractions is None:
            contractions = tpc.presets.contraction_names() if target.family == "cpu" else []
        for name in contractions:
            preset = tpc.presets.get_contraction(name)
            for kind in args.contraction_kinds:
                wrt = CONTRACTION_KINDS[kind]
                log = Path(folder) / f"{name}-{kind}.jsonl"
                result = tpc.tune(tpc.Contraction(preset.spec, wrt), batch=preset.nodes, target=target,
                                  trials=args.trials, log=log, progress=False)
                print(f"{name} {kind}: {_outcome(result)}", flush=True)
                written += merge_records(output, read_records(log))
        for name in args.graph_presets:
            graph = tpc.presets.get_graph(name)
            for cut in UNFUSED_AND_FUSED:
                log_dir = Path(folder) / f"{name}-{cut}"
                result = tpc.tune.tune_graph(graph.graph, graph.sizes, target=target, trials=args.trials,
                                             fusion=cut, log_dir=log_dir, progress=False)
                print(tpc.tune.graph_summary(result), flush=True)
                written += merge_records(output, [record for log in sorted(log_dir.glob("*.jsonl"))
                                                  for record in read_records(log)])
    print(f"wrote {written} new records to {output}")


def merge_records(output: Path, tuned: list[Record]) -> int:
    """Replace the records of the ops in ``tuned`` in ``output`` by the successful ones among
    ``tuned``, atomically; every other op's records stay. Called after each tuning run, so an
    interrupted run of the script keeps what it finished. Returns how many records were added."""
    successes = [record for record in tuned if record.ok]
    ops = {record.op for record in successes}
    if not ops:
        return 0
    kept = [record for record in read_records(output) if record.op not in ops] if output.exists() else []
    partial = output.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    append_records(partial, kept + successes)
    partial.replace(output)
    return len(successes)


def _outcome(result: tpc.tune.TuneResult) -> str:
    """The best latency and speed-up of a tuning run, or that no candidate succeeded (the run's
    records are then error records only, and none is shipped)."""
    if result.best is None:
        errors = sorted({record.error.splitlines()[0][:120] for record in result.records if record.error})
        return f"no candidate built and ran ({'; '.join(errors) or 'no trials'})"
    return f"best {result.best.seconds * 1e3:.3f} ms, speed-up {result.speedup:.2f}x"


def shipped_file_name(target: TargetSpec) -> str:
    """``x86-<cpu>.jsonl`` or ``aarch64-<cpu>.jsonl`` for a CPU, ``cuda-<arch>.jsonl`` for a GPU."""
    if target.family == "cuda":
        return f"cuda-{target.tvm_dict['arch']}.jsonl"
    arch = str(target.triple).split("-")[0]
    return f"{'x86' if arch == 'x86_64' else arch}-{target.tvm_dict.get('mcpu', 'generic')}.jsonl"


if __name__ == "__main__":
    main()
