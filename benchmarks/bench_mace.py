"""A whole mace-torch model against the same model after tpc.torch.convert: energy and forces.

For each dtype, a ``ScaleShiftMACE`` with random weights (``tpc.torch.mace.example_model``,
default hidden 128x0e+128x1o, correlation 3, two interactions, harmonics to l = 3) and its
conversion (``tpc.torch.convert``: the convolutions fused with their gather and scatter-sum,
the skip products and the symmetric contractions compiled) evaluate energy and forces (``compute_force=True``,
``training=False``, as mace's ASE calculator calls them) on a periodic box of acetamide
(``example_atoms``: 3 copies per side, 243 atoms, about 7500 edges). After one warm-up call each
(the converted side compiles its kernels then), the two sides are timed in turns, the order
swapped every repeat; the medians, their ratio and the largest differences between the two
sides' energies and forces are printed per dtype.

``--training`` times a training step instead: energy and forces (``training=True``, so the forces
keep their graph), the loss ``sum E^2 + sum F^2`` and its gradients with respect to every
parameter, which differentiates the forces (second derivatives); the largest difference between
the two sides' parameter gradients, relative to the largest gradient, is printed.

``--basis`` picks mace's product basis (``use_reduced_cg``): "reduced" is cuequivariance's (mace's
default where cuequivariance is installed), "wigner" mace's Wigner 3j route; the header names it.

PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it): spinning after each PyTorch op, they hold the cores that tpc's kernels, which run
on TVM's own thread pool, need next (docs/measurements.md). Both sides run under the setting.

    python benchmarks/bench_mace.py [--hidden-irreps 128x0e+128x1o] [--copies 3] [--repeats 10]
                                    [--dtypes float32,float64] [--basis reduced|wigner] [--training]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see the docstring

import argparse

import torch

import tpc.torch
from tpc.testing import interleaved_medians, machine
from tpc.torch.mace import batch_for, evaluate, example_atoms, example_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def measure(hidden_irreps: str, copies: int, repeats: int, dtype: str, basis: str, training: bool) -> dict:
    """Medians and differences for one dtype: the original model and its conversion on one batch."""
    original = example_model(hidden_irreps, dtype=DTYPES[dtype], use_reduced_cg=basis == "reduced")
    converted = tpc.torch.convert(original)
    batch = batch_for(original, example_atoms(copies))
    run = training_step if training else (lambda model, batch: evaluate(model, batch, stress=False))
    sides = {"mace": lambda: run(original, batch), "tpc": lambda: run(converted, batch)}
    reference, ours = sides["mace"](), sides["tpc"]()  # the converted side compiles its kernels here
    medians = interleaved_medians(sides, repeats)
    report = converted.tpc_conversion
    differences = {key: (ours[key] - reference[key]).abs().max().item() for key in ("energy", "forces")}
    if training:
        pairs = [(theirs, mine) for theirs, mine in zip(reference["gradients"], ours["gradients"])
                 if theirs is not None and mine is not None]
        differences["gradients"] = max((theirs - mine).abs().max().item() for theirs, mine in pairs) / \
            max(theirs.abs().max().item() for theirs, _ in pairs)
    return {"mace": medians["mace"], "tpc": medians["tpc"], **differences,
            "force scale": reference["forces"].abs().max().item(),
            "atoms": batch["positions"].shape[0], "edges": batch["edge_index"].shape[1],
            "converted": len(report.converted), "left": len(report.left),
            "bases": sorted({module.spec.basis for module in converted.modules()
                             if isinstance(module, tpc.torch.SymmetricContraction)})}


def training_step(model: torch.nn.Module, batch: dict) -> dict:
    """Energy, forces and the gradients of ``sum E^2 + sum F^2`` with respect to the parameters."""
    data = dict(batch)
    data["positions"] = batch["positions"].detach().clone()
    out = model(data, training=True, compute_force=True)
    loss = out["energy"].square().sum() + out["forces"].square().sum()
    gradients = torch.autograd.grad(loss, [value for value in model.parameters() if value.requires_grad],
                                    allow_unused=True)
    return {"energy": out["energy"].detach(), "forces": out["forces"].detach(), "gradients": gradients}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-irreps", default="128x0e+128x1o")
    parser.add_argument("--copies", type=int, default=3, help="acetamide molecules along each side of the box")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
    parser.add_argument("--training", action="store_true", help="time a training step on energy and forces")
    parser.add_argument("--basis", choices=("reduced", "wigner"), default="reduced",
                        help="mace's product basis (use_reduced_cg); reduced needs cuequivariance")
    args = parser.parse_args()
    dtypes = [name.strip() for name in args.dtypes.split(",") if name.strip()]
    unknown = sorted(set(dtypes) - set(DTYPES))
    if unknown or not dtypes:
        parser.error(f"--dtypes takes float32 and/or float64, not {','.join(unknown) or repr(args.dtypes)}")
    from mace.modules.wrapper_ops import CUET_AVAILABLE  # mace builds its reduced basis only with both packages

    if args.basis == "reduced" and not CUET_AVAILABLE:
        parser.error("--basis reduced needs cuequivariance (pip install cuequivariance cuequivariance-torch); "
                     "or give --basis wigner")
    results = {dtype: measure(args.hidden_irreps, args.copies, args.repeats, dtype, args.basis,
                               args.training) for dtype in dtypes}
    first = next(iter(results.values()))
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"mace-torch ScaleShiftMACE, hidden {args.hidden_irreps}, correlation 3, 2 interactions, max_ell 3, "
          f"random weights; {first['atoms']} atoms ({args.copies}^3 acetamide), {first['edges']} edges at r_max 5; "
          f"product basis {args.basis} (as converted: {', '.join(first['bases'])})")
    print(f"converted: {first['converted']} modules compiled, {first['left']} left to mace; "
          + ("training step: energy + forces (training=True), sum E^2 + sum F^2, its gradients with respect to "
             "every parameter" if args.training else "energy + forces (compute_force=True, training=False)")
          + f", median of {args.repeats} after a warm-up, sides interleaved")
    print(f"\n{'dtype':<10}{'mace ms':>10}{'tpc ms':>10}{'speed-up':>10}{'max |dE| eV':>14}{'max |dF| eV/A':>15}"
          f"{'max |F| eV/A':>14}" + (f"{'max rel dgrad':>15}" if args.training else ""))
    for dtype, result in results.items():
        print(f"{dtype:<10}{result['mace'] * 1e3:>10.1f}{result['tpc'] * 1e3:>10.1f}"
              f"{result['mace'] / result['tpc']:>9.2f}x{result['energy']:>14.2e}{result['forces']:>15.2e}"
              f"{result['force scale']:>14.2e}" + (f"{result['gradients']:>15.2e}" if args.training else ""))


if __name__ == "__main__":
    main()
