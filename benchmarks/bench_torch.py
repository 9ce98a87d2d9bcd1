"""tpc.torch against e3nn in PyTorch: forward, forward + backward, and forces with training on them.

For one preset (default mace-l2, batch 2000, float32), on the same inputs in one run:
``tpc.torch.TensorProduct`` and ``e3nn.o3.TensorProduct`` with the same spec, timed for
the forward pass (no autograd), for forward + backward to every input, and for the double
backward a force-training step needs (the gradient of ``<g, dy/dx1>`` with respect to the
weights). Gradients are checked against e3nn's before timing.

    python benchmarks/bench_torch.py [--preset mace-l2] [--batch 2000] [--repeats 10]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import tpc
import tpc.torch
from tpc.testing import e3nn_module, machine, median_seconds
from tpc.verify import random_inputs, relative_error, tolerance

DIRECTIONS = {"forward": "forward", "forward + backward": "gradient", "double backward (weights)": "second derivative"}
"""The direction of each workload's results, which picks its tolerance (:func:`tpc.verify.tolerance`)."""


def steps(module: torch.nn.Module, arguments: list[torch.Tensor], upstream: torch.Tensor) -> dict:
    """The three timed workloads of one module, each a function of no arguments."""
    def forward():
        with torch.no_grad():
            return module(*arguments)

    def backward():
        return torch.autograd.grad((module(*arguments) * upstream).sum(), arguments)

    def double_backward():
        x1 = arguments[0]
        (dx1,) = torch.autograd.grad((module(*arguments) * upstream).sum(), x1, create_graph=True)
        return torch.autograd.grad(dx1.pow(2).sum(), arguments[2])

    return {"forward": forward, "forward + backward": backward, "double backward (weights)": double_backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mace-l2")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    tp = tpc.presets.get(args.preset).tp
    generator = torch.Generator().manual_seed(0)
    arguments = [torch.as_tensor(a, dtype=torch.float32).requires_grad_()
                 for a in random_inputs(tp, args.batch, np.random.default_rng(0)) if a is not None]
    upstream = torch.randn(args.batch, tp.irreps_out.dim, generator=generator)
    ours = steps(tpc.torch.TensorProduct(tp, internal_weights=False), arguments, upstream)
    theirs = steps(e3nn_module(tp).float(), arguments, upstream)
    for name in ours:
        for a, b in zip(ours[name](), theirs[name]()):
            error = relative_error(a.detach().double().numpy(), b.detach().double().numpy())
            if not error < tolerance("float32", DIRECTIONS[name]):
                raise SystemExit(f"{name}: tpc differs from e3nn by {error:.1e}")
    print(f"machine: {machine()}")
    print(f"{args.preset}, batch {args.batch}, float32; median of {args.repeats} after a warm-up; "
          "outputs and gradients checked against e3nn")
    print(f"\n{'workload':<28}{'tpc ms':>10}{'e3nn ms':>10}{'speed-up':>10}")
    for name in ours:
        mine = median_seconds(ours[name], min_runs=args.repeats, min_seconds=0)
        reference = median_seconds(theirs[name], min_runs=args.repeats, min_seconds=0)
        print(f"{name:<28}{mine * 1e3:>10.1f}{reference * 1e3:>10.1f}{reference / mine:>9.2f}x")


if __name__ == "__main__":
    main()
