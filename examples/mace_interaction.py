"""A whole MACE interaction block compiled as a tensor-product graph, against e3nn.

The block (edge vectors with periodic shifts, harmonics, a radial MLP on Bessel functions,
the channelwise product, scatter-sum onto the receivers, a gated linear down and a skip) runs
on a random periodic system: compiled by ``tpc.compile_graph`` and written with e3nn modules.
The compiled float32 outputs are checked against e3nn in float64, then both are timed in
float32 (median of several calls after a warm-up).

Run: python examples/mace_interaction.py [--atoms 2000] [--channels 32] [--neighbours 30]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import tpc
from tpc.graph.presets import mace_interaction
from tpc.targets import host_cores
from tpc.testing import E3nnInteraction, interaction_inputs, machine, median_seconds, random_system
from tpc.verify import relative_error, tolerance

CUTOFF = 5.0
RADIAL, RADIAL_HIDDEN = 8, 32
TOLERANCE = tolerance("float32")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=2000, help="atoms in the periodic box (default 2000)")
    parser.add_argument("--channels", type=int, default=32, help="channels per irrep of the node features (default 32)")
    parser.add_argument("--neighbours", type=float, default=30.0,
                        help=f"mean neighbours within the {CUTOFF} cutoff (default 30)")
    args = parser.parse_args()
    torch.set_num_threads(host_cores())

    graph, tp = mace_interaction(channels=args.channels, radial=RADIAL, radial_hidden=RADIAL_HIDDEN, cutoff=CUTOFF)
    system = random_system(args.atoms, args.neighbours, seed=0, cutoff=CUTOFF)
    inputs = interaction_inputs(graph, system, seed=1, dtype="float32")
    edges = len(system["senders"])
    print(f"block: {tp.irreps_in1} node features, harmonics {tp.irreps_in2}, {len(graph.nodes())} graph nodes")
    print(f"system: {args.atoms} atoms, {edges} edges ({edges / args.atoms:.1f} neighbours within {CUTOFF})")

    compiled = tpc.compile_graph(graph, target="host", dtype="float32")
    e3nn_block = E3nnInteraction(tp, RADIAL, RADIAL_HIDDEN, CUTOFF, dtype="float32")
    oracle = E3nnInteraction(tp, RADIAL, RADIAL_HIDDEN, CUTOFF, dtype="float64")
    expected = oracle(oracle.tensors(inputs))
    got = compiled(**inputs)
    error = max(relative_error(got[name], expected[name].numpy()) for name in expected)
    print(f"max relative error of the compiled float32 block against e3nn in float64: {error:.2e} "
          f"(tolerance {TOLERANCE:.0e})")
    if not error < TOLERANCE:
        print("FAILED: the compiled block disagrees with e3nn", file=sys.stderr)
        return 1

    tensors = e3nn_block.tensors(inputs)
    seconds = {"tpc.compile_graph": median_seconds(lambda: compiled(**inputs)),
               "e3nn": median_seconds(lambda: e3nn_block(tensors))}
    print(f"\nmachine: {machine()}")
    print(f"threads: TVM {os.environ.get('TVM_NUM_THREADS')}, torch {torch.get_num_threads()}; float32, "
          "median of calls after a warm-up")
    print(f"{'':<20}{'ms':>10}{'speed-up':>10}")
    for name, value in seconds.items():
        print(f"{name:<20}{value * 1e3:>10.2f}{seconds['e3nn'] / value:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
