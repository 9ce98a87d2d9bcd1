"""A MACE-style convolution product on random edges, checked for rotation equivariance.

Run: python examples/mace_convolution.py
"""

import numpy as np

import tpc
from tpc.so3 import irreps_D, random_rotation, spherical_harmonics

rng = np.random.default_rng(0)
tp = tpc.ChannelwiseTensorProduct("16x0e+16x1o+16x2e", "0e+1o+2e+3o", lmax=2, filter_ir_out="0e+1o+2e")
edges = 200
node_features = rng.standard_normal((edges, tp.irreps_in1.dim))
edge_vectors = rng.standard_normal((edges, 3))
edge_harmonics = spherical_harmonics(list(range(4)), edge_vectors, normalize=True, normalization="component")
radial_weights = rng.standard_normal((edges, tp.weight_numel))

messages = tp.reference(node_features, edge_harmonics, radial_weights)
print(tp)
print(f"messages: {messages.shape}, {tp.flops(edges):,} FLOPs")

rotation = random_rotation(rng)
rotated = tp.reference(
    node_features @ irreps_D(tp.irreps_in1, rotation).T,
    spherical_harmonics(list(range(4)), edge_vectors @ rotation.T, normalize=True, normalization="component"),
    radial_weights,
)
error = np.abs(rotated - messages @ irreps_D(tp.irreps_out, rotation).T).max()
print(f"equivariance error after a random rotation: {error:.2e}")
