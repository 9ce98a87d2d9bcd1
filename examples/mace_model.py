"""A mace-torch model converted to tpc, running molecular dynamics in ASE next to the original.

A ``ScaleShiftMACE`` with random weights (no download; correlation 2 rather than mace's usual 3,
which only makes the construction and compilation of its product basis quicker) is converted
with ``tpc.torch.convert``: its convolutions (fused with their gather and scatter-sum), skip
products and symmetric contractions become compiled kernels. The converted model is saved
with ``torch.save`` and loaded back, as a ``.model`` file would be, then drives a few steps of
velocity Verlet on a periodic box of acetamide through mace's own ``MACECalculator``; at every
step the original model evaluates the same atoms, and energies, forces and stress must agree
to 1e-10 (relative, float64).

Run: python examples/mace_model.py   (needs torch, e3nn, ase and mace-torch: pip install -e ".[test]"
     and pip install --no-deps mace-torch==0.3.16)
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from mace.calculators import MACECalculator

import tpc.torch
from tpc.torch.mace import example_atoms, example_model, load_model

STEPS, TOLERANCE = 5, 1e-10

start = time.perf_counter()
original = example_model("16x0e+16x1o", correlation=2, dtype=torch.float64)
print(f"mace-torch {type(original).__name__}, hidden 16x0e+16x1o, correlation 2, "
      f"built in {time.perf_counter() - start:.1f} s\n")
converted = tpc.torch.convert(original, verbose=True)

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "converted.model"
    torch.save(converted, path)
    converted = load_model(path)
ours = MACECalculator(models=[converted], device="cpu", default_dtype="float64")
reference = MACECalculator(models=[original], device="cpu", default_dtype="float64")

atoms = example_atoms(1)
atoms.calc = ours
thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def compare() -> None:
    """The original model on the atoms the converted one just moved."""
    same = atoms.copy()
    same.calc = reference
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    errors = {"energy": relative(np.array(energy), np.array(same.get_potential_energy())),
              "forces": relative(forces, same.get_forces()), "stress": relative(stress, same.get_stress())}
    print(f"step {dynamics.nsteps}: energy {energy:12.6f} eV  max |force| {np.abs(forces).max():8.4f} eV/A  "
          f"relative difference to the original: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert all(error < TOLERANCE for error in errors.values()), errors


print(f"\n{len(atoms)} atoms (acetamide, periodic), velocity Verlet, 0.5 fs steps, converted model vs original:")
dynamics.attach(compare, interval=1)
start = time.perf_counter()
dynamics.run(STEPS)
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s (both models); agreement within {TOLERANCE:g}")
