"""The Gaunt product of two signals on the sphere, computed four ways that must agree.

Run: python examples/gaunt_three_ways.py [L]
"""

import sys

import numpy as np

import tpc
from tpc.so3 import gaunt_product, gaunt_product_fourier, gaunt_product_grid

L = int(sys.argv[1]) if len(sys.argv) > 1 else 6
rng = np.random.default_rng(0)
tp = tpc.presets.get(f"gaunt-L{L}").tp if 2 <= L <= 10 else tpc.GauntTensorProduct(
    tpc.Irreps.spherical_harmonics(L), tpc.Irreps.spherical_harmonics(L), L)
x1 = rng.standard_normal((4, tp.irreps_in1.dim))
x2 = rng.standard_normal((4, tp.irreps_in2.dim))

routes = {
    "spec reference (CG paths)": tp.reference(x1, x2),
    "Gaunt coefficients": gaunt_product(x1, x2, L),
    "2D Fourier basis": gaunt_product_fourier(x1, x2, L),
    "spherical grid": gaunt_product_grid(x1, x2, L),
}
baseline = routes["Gaunt coefficients"]
print(f"Gaunt product, degree {L}: {len(tp.instructions)} paths, {tp.flops():,} FLOPs per sample (CG route)")
for name, value in routes.items():
    print(f"  {name:<28} max |difference| = {np.abs(value - baseline).max():.2e}")
