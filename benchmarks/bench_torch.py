"""tpc.torch against e3nn in PyTorch: forward, forward + backward, and the double backward of training on forces.

For one preset (default mace-l2, batch 2000, float32), on the same inputs in one run:
``tpc.torch.TensorProduct`` and ``e3nn.o3.TensorProduct`` with the same spec, timed for
the forward pass (no autograd), for forward + backward (the vector-Jacobian product with a
given output gradient, to every input), and for the double backward a force-training step
needs (the weights' gradient of ``<v, d<g, y>/dx1>``). The products are called as autograd
calls them, with ``grad_outputs``: a loss such as ``(y * g).sum()`` would time the same
elementwise passes on both sides. Results are checked against e3nn's before timing; the
sides are timed in turns (:func:`tpc.testing.interleaved_medians`).

PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it): spinning after each PyTorch op, they hold the cores that tpc's kernels, which run
on TVM's own thread pool, need next (docs/measurements.md). Both sides run under the setting.

    python benchmarks/bench_torch.py [--preset mace-l2] [--batch 2000] [--repeats 20]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see the docstring

import argparse

import numpy as np
import torch

import tpc
import tpc.torch
from tpc.testing import e3nn_module, interleaved_medians, machine
from tpc.verify import random_inputs, relative_error, tolerance

DIRECTIONS = {"forward": "forward", "forward + backward": "gradient", "double backward (weights)": "second derivative"}
"""The direction of each workload's results, which picks its tolerance (:func:`tpc.verify.tolerance`)."""


def steps(module: torch.nn.Module, arguments: list[torch.Tensor], upstream: torch.Tensor,
          direction: torch.Tensor) -> dict:
    """The three timed workloads of one module, each a function of no arguments."""
    def forward():
        with torch.no_grad():
            return (module(*arguments),)

    def backward():
        return torch.autograd.grad(module(*arguments), arguments, grad_outputs=upstream)

    def double_backward():
        (dx1,) = torch.autograd.grad(module(*arguments), arguments[0], grad_outputs=upstream, create_graph=True)
        return torch.autograd.grad(dx1, arguments[2], grad_outputs=direction)

    return {"forward": forward, "forward + backward": backward, "double backward (weights)": double_backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mace-l2")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tp = tpc.presets.get(args.preset).tp
    generator = torch.Generator().manual_seed(0)
    arguments = [torch.as_tensor(a, dtype=torch.float32).requires_grad_()
                 for a in random_inputs(tp, args.batch, np.random.default_rng(0)) if a is not None]
    upstream = torch.randn(args.batch, tp.irreps_out.dim, generator=generator)
    direction = torch.randn(arguments[0].shape, generator=generator)
    ours = steps(tpc.torch.TensorProduct(tp, internal_weights=False), arguments, upstream, direction)
    theirs = steps(e3nn_module(tp).float(), arguments, upstream, direction)
    for name in ours:
        for a, b in zip(ours[name](), theirs[name]()):
            error = relative_error(a.detach().double().numpy(), b.detach().double().numpy())
            if not error < tolerance("float32", DIRECTIONS[name]):
                raise SystemExit(f"{name}: tpc differs from e3nn by {error:.1e}")
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"{args.preset}, batch {args.batch}, float32; median of {args.repeats} after a warm-up, sides interleaved; "
          "outputs and gradients checked against e3nn")
    print(f"\n{'workload':<28}{'tpc ms':>10}{'e3nn ms':>10}{'speed-up':>10}")
    for name in ours:
        medians = interleaved_medians({"tpc": ours[name], "e3nn": theirs[name]}, args.repeats)
        print(f"{name:<28}{medians['tpc'] * 1e3:>10.1f}{medians['e3nn'] * 1e3:>10.1f}"
              f"{medians['e3nn'] / medians['tpc']:>9.2f}x")


if __name__ == "__main__":
    main()
