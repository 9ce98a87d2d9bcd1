"""A training step on energies and forces with a compiled tensor product in PyTorch.

A toy interatomic potential: every atom sends a message to every other along the edge's
spherical harmonics (l <= 1), the channelwise product couples them with per-edge weights
from a radial network, and the energy reads the scalars. Forces are -dE/dpositions, so a
loss on forces needs the derivative of a gradient: both run on tpc's compiled kernels.

Run: python examples/torch_forces.py   (needs the torch extra: pip install -e ".[torch]")
"""

import time

import torch

import tpc
import tpc.torch

torch.manual_seed(0)
channels, atoms = 16, 24
tp = tpc.ChannelwiseTensorProduct(f"{channels}x0e", "0e+1o", 1, filter_ir_out="0e+1o")


class ToyPotential(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Parameter(torch.randn(atoms, channels))
        self.radial = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.SiLU(), torch.nn.Linear(32, tp.weight_numel))
        self.product = tpc.torch.TensorProduct(tp)  # per-edge weights: passed in, not a parameter
        self.readout = torch.nn.Linear(channels, 1)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        senders, receivers = torch.triu_indices(atoms, atoms, offset=1)
        vectors = positions[receivers] - positions[senders]
        lengths = vectors.norm(dim=1, keepdim=True)
        # e3nn's harmonics with "component" normalization: 1 for l=0, sqrt(3) * unit vector for l=1.
        harmonics = torch.cat([torch.ones_like(lengths), 3 ** 0.5 * vectors / lengths], dim=1)
        bessel = torch.sin(torch.arange(1, 9) * torch.pi * lengths / 4.0) / lengths
        messages = self.product(self.embedding[senders], harmonics, self.radial(bessel))
        scalars = messages[:, :channels]  # the 16x0e block comes first
        per_atom = torch.zeros(atoms, channels).index_add(0, receivers, scalars)
        return self.readout(per_atom).sum()


model = ToyPotential()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
positions = (torch.rand(atoms, 3) * 6.0).requires_grad_()
target_energy, target_forces = torch.tensor(-3.0), torch.zeros(atoms, 3)

for step in range(5):
    start = time.perf_counter()
    energy = model(positions)
    forces = -torch.autograd.grad(energy, positions, create_graph=True)[0]
    loss = (energy - target_energy) ** 2 + forces.pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: energy {energy.item():9.4f}  force rms {forces.pow(2).mean().sqrt().item():8.4f}  "
          f"loss {loss.item():9.4f}  ({(time.perf_counter() - start) * 1e3:.1f} ms)")
