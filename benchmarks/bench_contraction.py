"""MACE's product basis: mace-torch's SymmetricContraction against tpc.torch.SymmetricContraction.

1000 nodes, 128 channels, features 0e+1o+2e+3o, outputs 0e+1o, correlation 3, 10 elements,
float32 (the defaults): both modules with the same weights, timed for the forward pass and for
forward + backward with respect to the features and the weights (``grad_outputs`` a fixed
random upstream). Results are checked against mace's before timing; the sides are timed in
turns (:func:`tpc.testing.interleaved_medians`). PyTorch's OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it; see bench_mace.py).

    python benchmarks/bench_contraction.py [--nodes 1000] [--channels 128] [--correlation 3] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse

import torch

import tpc
import tpc.torch
from tpc.testing import interleaved_medians, machine
from tpc.verify import relative_error, tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--elements", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    channels = args.channels
    irreps_in = f"{channels}x0e+{channels}x1o+{channels}x2e+{channels}x3o"
    irreps_out = f"{channels}x0e+{channels}x1o"
    torch.manual_seed(0)
    theirs = SymmetricContraction(o3.Irreps(irreps_in), o3.Irreps(irreps_out), args.correlation,
                                  num_elements=args.elements)
    ours = tpc.torch.SymmetricContraction(tpc.SymmetricContraction(irreps_in, irreps_out, args.correlation,
                                                                   args.elements))
    ours.load_state_dict({name: value for name, value in theirs.state_dict().items()
                          if name in dict(ours.named_parameters())})
    x = torch.randn(args.nodes, channels, 16, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.randint(0, args.elements, (args.nodes,)), args.elements).float()
    upstream = torch.randn(args.nodes, ours.spec.irreps_out.dim)

    def workloads(module):
        def forward():
            with torch.no_grad():
                return (module(x, y),)

        def backward():
            return torch.autograd.grad(module(x, y), [x, *module.parameters()], grad_outputs=upstream)

        return {"forward": forward, "forward + backward": backward}

    sides = {"tpc": workloads(ours), "mace": workloads(theirs)}
    for workload, direction in (("forward", "forward"), ("forward + backward", "gradient")):
        for a, b in zip(sides["tpc"][workload](), sides["mace"][workload]()):
            error = relative_error(a.detach().double().numpy(), b.detach().double().numpy())
            if not error < tolerance("float32", direction):
                raise SystemExit(f"{workload}: tpc differs from mace by {error:.1e}")
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"SymmetricContraction {irreps_in} -> {irreps_out}, correlation {args.correlation}, {args.elements} "
          f"elements, {args.nodes} nodes, float32; median of {args.repeats} after a warm-up, sides interleaved; "
          "checked against mace")
    print(f"\n{'workload':<22}{'tpc ms':>10}{'mace ms':>10}{'speed-up':>10}")
    for workload in ("forward", "forward + backward"):
        medians = interleaved_medians({name: sides[name][workload] for name in sides}, args.repeats)
        print(f"{workload:<22}{medians['tpc'] * 1e3:>10.1f}{medians['mace'] * 1e3:>10.1f}"
              f"{medians['mace'] / medians['tpc']:>9.1f}x")


if __name__ == "__main__":
    main()
