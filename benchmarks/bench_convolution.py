"""A MACE interaction's convolution, gather + conv_tp + scatter_sum: tpc.torch.Convolution against e3nn.

The layer-1 convolution of a mace-torch model with hidden irreps 64x0e+64x1o+64x2e (its
``interactions.1.conv_tp``: 17 paths, weights per edge) on the benchmark system of
``tpc.torch.mace`` (243 atoms, 7598 edges at r_max 5, edges in mace's order): e3nn as mace
runs it (``conv_tp(node_feats[senders], edge_attrs, weights)`` then ``scatter_sum`` onto the
receivers) against ``tpc.torch.Convolution`` with the same spec, for the forward pass and for
forward + backward with respect to the node features, the edge attributes and the edge
weights (``grad_outputs`` a fixed random upstream). Results are checked against e3nn before
timing; the sides are timed in turns (:func:`tpc.testing.interleaved_medians`).

PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it): spinning after each PyTorch op, they hold the cores that tpc's kernels, which run
on TVM's own thread pool, need next (docs/measurements.md). Both sides run under the setting.

    python benchmarks/bench_convolution.py [--hidden-irreps 64x0e+64x1o+64x2e] [--layer 1] [--dtype float32]
                                           [--repeats 10]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see the docstring

import argparse

import torch

import tpc
import tpc.torch
from tpc.testing import interleaved_medians, machine
from tpc.torch.mace import batch_for, example_atoms, example_model
from tpc.verify import relative_error, tolerance

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def sides(conv_tp: torch.nn.Module, arguments: list[torch.Tensor], edge_index: torch.Tensor,
          upstream: torch.Tensor) -> dict:
    """For e3nn and tpc: the forward and the forward + backward, functions of no arguments."""
    nodes = arguments[0].shape[0]
    convolution = tpc.torch.Convolution(tpc.TensorProduct.from_e3nn(conv_tp))

    def e3nn(node_feats, edge_attrs, edge_weights):
        messages = conv_tp(node_feats[edge_index[0]], edge_attrs, edge_weights)
        return torch.zeros((nodes, messages.shape[1]), dtype=messages.dtype).index_add(0, edge_index[1], messages)

    def ours(node_feats, edge_attrs, edge_weights):
        return convolution(node_feats, edge_attrs, edge_weights, edge_index)

    result = {}
    for name, function in (("e3nn", e3nn), ("tpc", ours)):
        def forward(function=function):
            with torch.no_grad():
                return (function(*arguments),)

        def backward(function=function):
            return torch.autograd.grad(function(*arguments), arguments, grad_outputs=upstream)

        result[name] = {"forward": forward, "forward + backward": backward}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-irreps", default="64x0e+64x1o+64x2e")
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--copies", type=int, default=3, help="acetamide molecules along each side of the box")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    model = example_model(args.hidden_irreps, dtype=dtype)
    conv_tp = model.interactions[args.layer].conv_tp
    batch = batch_for(model, example_atoms(args.copies))
    edge_index = batch["edge_index"]
    nodes, edges = batch["positions"].shape[0], edge_index.shape[1]
    generator = torch.Generator().manual_seed(0)
    arguments = [torch.randn(shape, generator=generator, dtype=dtype).requires_grad_()
                 for shape in ((nodes, conv_tp.irreps_in1.dim), (edges, conv_tp.irreps_in2.dim),
                               (edges, conv_tp.weight_numel))]
    upstream = torch.randn((nodes, conv_tp.irreps_out.dim), generator=generator, dtype=dtype)
    timed = sides(conv_tp, arguments, edge_index, upstream)
    for workload, direction in (("forward", "forward"), ("forward + backward", "gradient")):
        for a, b in zip(timed["tpc"][workload](), timed["e3nn"][workload]()):
            error = relative_error(a.detach().double().numpy(), b.detach().double().numpy())
            if not error < tolerance(args.dtype, direction):
                raise SystemExit(f"{workload}: tpc differs from e3nn by {error:.1e}")
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"mace interactions.{args.layer}.conv_tp of hidden {args.hidden_irreps}: {conv_tp.irreps_in1} x "
          f"{conv_tp.irreps_in2}, {len(conv_tp.instructions)} paths, weights per edge; {nodes} nodes, {edges} edges, "
          f"{args.dtype}; median of {args.repeats} after a warm-up, sides interleaved; checked against e3nn")
    print(f"\n{'workload':<22}{'tpc ms':>10}{'e3nn ms':>10}{'speed-up':>10}")
    for workload in ("forward", "forward + backward"):
        medians = interleaved_medians({name: timed[name][workload] for name in ("tpc", "e3nn")}, args.repeats)
        print(f"{workload:<22}{medians['tpc'] * 1e3:>10.1f}{medians['e3nn'] * 1e3:>10.1f}"
              f"{medians['e3nn'] / medians['tpc']:>9.2f}x")


if __name__ == "__main__":
    main()
