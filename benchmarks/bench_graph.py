"""The MACE-style interaction block as a graph: fused against unfused, tuned against default,
and against the same block written with e3nn, measured side by side in one run.

For each cut of the graph (``none``: one kernel per node; ``gather+scatter``: the product
fused with the gather of its sender features and the scatter-sum onto the receivers) the
graph's products are tuned with ``tpc.tune_graph`` at the system's sizes (``--trials``
measurements per cut, resumed from the logs of earlier runs), then four compiled graphs
(each cut with default and with tuned schedules) and the e3nn block are checked against e3nn
in float64 and timed in rounds, each round calling every variant once, so load changes hit
all alike. The table gives the median of the rounds.

Run: python benchmarks/bench_graph.py [--atoms 2000] [--channels 32] [--trials 32] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import tpc
from tpc.graph.presets import mace_interaction
from tpc.targets import host_cores
from tpc.testing import E3nnInteraction, interaction_inputs, machine, random_system
from tpc.tune import graph_summary
from tpc.tune.graph import UNFUSED_AND_FUSED
from tpc.verify import relative_error, tolerance

CUTOFF, NEIGHBOURS = 5.0, 30.0
RADIAL, RADIAL_HIDDEN = 8, 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--trials", type=int, default=32, help="tuning measurements per cut (0: no tuning)")
    parser.add_argument("--rounds", type=int, default=15, help="timing rounds (each calls every variant once)")
    parser.add_argument("--log-dir", default="tuning_logs")
    args = parser.parse_args()
    torch.set_num_threads(host_cores())

    graph, tp = mace_interaction(channels=args.channels, radial=RADIAL, radial_hidden=RADIAL_HIDDEN, cutoff=CUTOFF)
    system = random_system(args.atoms, NEIGHBOURS, seed=0, cutoff=CUTOFF)
    inputs = interaction_inputs(graph, system, seed=1, dtype="float32")
    sizes = {"nodes": args.atoms, "edges": len(system["senders"])}
    print(f"machine: {machine()}")
    print(f"block: {tp.irreps_in1} node features, harmonics {tp.irreps_in2}; {args.atoms} atoms, "
          f"{sizes['edges']} edges ({sizes['edges'] / args.atoms:.1f} neighbours within {CUTOFF}); float32, "
          f"TVM threads {os.environ.get('TVM_NUM_THREADS')}, torch threads {torch.get_num_threads()}")

    for cut in UNFUSED_AND_FUSED if args.trials else ():
        started = time.perf_counter()
        result = tpc.tune_graph(graph, sizes, trials=args.trials, fusion=cut, log_dir=args.log_dir, progress=False)
        print(f"\ntuning, cut {cut!r} ({time.perf_counter() - started:.0f} s):\n{graph_summary(result)}")

    variants = {}
    for cut in UNFUSED_AND_FUSED:
        for tuned in (False, True):
            name = f"tpc {'fused' if cut != 'none' else 'unfused'}, {'tuned' if tuned else 'default'}"
            variants[name] = tpc.compile_graph(graph, dtype="float32", fusion=cut, tuned=tuned, sizes=sizes)
    e3nn_block = E3nnInteraction(tp, RADIAL, RADIAL_HIDDEN, CUTOFF, dtype="float32")
    tensors = e3nn_block.tensors(inputs)
    oracle = E3nnInteraction(tp, RADIAL, RADIAL_HIDDEN, CUTOFF, dtype="float64")
    expected = {name: value.numpy() for name, value in oracle(oracle.tensors(inputs)).items()}

    calls = {name: (lambda compiled=compiled: compiled(**inputs)) for name, compiled in variants.items()}
    calls["e3nn"] = lambda: {name: value.numpy() for name, value in e3nn_block(tensors).items()}
    errors = {name: max(relative_error(call()[key], expected[key]) for key in expected) for name, call in calls.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    schedules = {name: [f"{step.kind} (schedule from {step.schedule.source})" for step in compiled.steps
                        if step.schedule is not None] for name, compiled in variants.items()}

    print(f"\nmedian of {args.rounds} rounds; error: max relative error against e3nn in float64")
    print(f"{'variant':<26} {'ms':>9} {'vs e3nn':>8} {'vs unfused tuned':>17} {'error':>9}  product kernels")
    for name, seconds in median.items():
        print(f"{name:<26} {seconds * 1e3:>9.2f} {median['e3nn'] / seconds:>7.2f}x "
              f"{median['tpc unfused, tuned'] / seconds:>16.2f}x {errors[name]:>9.1e}  "
              f"{', '.join(schedules.get(name, []))}")
    failed = [name for name, error in errors.items() if not error < tolerance("float32")]
    if failed:
        print(f"FAILED: {failed} disagree with e3nn", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
