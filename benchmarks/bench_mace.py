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

``--basis`` picks mace's product basis (``use_reduced_cg``): "reduced" is cuequivariance's (mace's
default where cuequivariance is installed), "wigner" mace's Wigner 3j route; the header names it.

PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless the environment
sets it): spinning after each PyTorch op, they hold the cores that tpc's kernels, which run
on TVM's own thread pool, need next (docs/measurements.md). Both sides run under the setting.

    python benchmarks/bench_mace.py [--hidden-irreps 128x0e+128x1o] [--copies 3] [--repeats 10]
                                    [--dtypes float32,float64] [--basis reduced|wigner]
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


def measure(hidden_irreps: str, copies: int, repeats: int, dtype: str, basis: str) -> dict:
    """Medians and differences for one dtype: the original model and its conversion on one batch."""
    original = example_model(hidden_irreps, dtype=DTYPES[dtype], use_reduced_cg=basis == "reduced")
    converted = tpc.torch.convert(original)
    batch = batch_for(original, example_atoms(copies))
    sides = {"mace": lambda: evaluate(original, batch, stress=False),
             "tpc": lambda: evaluate(converted, batch, stress=False)}
    reference, ours = sides["mace"](), sides["tpc"]()  # the converted side compiles its kernels here
    medians = interleaved_medians(sides, repeats)
    report = converted.tpc_conversion
    return {"mace": medians["mace"], "tpc": medians["tpc"],
            "energy": (ours["energy"] - reference["energy"]).abs().max().item(),
            "forces": (ours["forces"] - reference["forces"]).abs().max().item(),
            "force scale": reference["forces"].abs().max().item(),
            "atoms": batch["positions"].shape[0], "edges": batch["edge_index"].shape[1],
            "converted": len(report.converted), "left": len(report.left),
            "bases": sorted({module.spec.basis for module in converted.modules()
                             if isinstance(module, tpc.torch.SymmetricContraction)})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-irreps", default="128x0e+128x1o")
    parser.add_argument("--copies", type=int, default=3, help="acetamide molecules along each side of the box")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
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
    results = {dtype: measure(args.hidden_irreps, args.copies, args.repeats, dtype, args.basis) for dtype in dtypes}
    first = next(iter(results.values()))
    print(f"machine: {machine()}; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"mace-torch ScaleShiftMACE, hidden {args.hidden_irreps}, correlation 3, 2 interactions, max_ell 3, "
          f"random weights; {first['atoms']} atoms ({args.copies}^3 acetamide), {first['edges']} edges at r_max 5; "
          f"product basis {args.basis} (as converted: {', '.join(first['bases'])})")
    print(f"converted: {first['converted']} modules compiled, {first['left']} left to mace; "
          f"energy + forces (compute_force=True, training=False), median of {args.repeats} after a warm-up, "
          "sides interleaved")
    print(f"\n{'dtype':<10}{'mace ms':>10}{'tpc ms':>10}{'speed-up':>10}{'max |dE| eV':>14}{'max |dF| eV/A':>15}"
          f"{'max |F| eV/A':>14}")
    for dtype, result in results.items():
        print(f"{dtype:<10}{result['mace'] * 1e3:>10.1f}{result['tpc'] * 1e3:>10.1f}"
              f"{result['mace'] / result['tpc']:>9.2f}x{result['energy']:>14.2e}{result['forces']:>15.2e}"
              f"{result['force scale']:>14.2e}")


if __name__ == "__main__":
    main()
