"""SO(3) math in numpy: harmonics, coupling coefficients, Wigner matrices, Gaunt bases.

Nothing here knows about TVM; everything is float64 and cached after first use.
"""

from tpc.so3.fourier import fourier_to_sh, gaunt_product_fourier, sh_to_fourier
from tpc.so3.gaunt import gaunt_coefficients, gaunt_factor, gaunt_product, gaunt_tensor, three_j_zero
from tpc.so3.grid import S2Grid, gaunt_product_grid, grid_to_sh, s2_grid, sh_to_grid
from tpc.so3.rotation import (
    angles_to_matrix,
    irreps_D,
    matrix_to_angles,
    random_rotation,
    wigner_D_from_matrix,
)
from tpc.so3.spherical_harmonics import spherical_harmonics
from tpc.so3.wigner import (
    change_basis_real_to_complex,
    so3_generators,
    su2_clebsch_gordan,
    wigner_3j,
    wigner_D,
)

__all__ = [
    "S2Grid",
    "angles_to_matrix",
    "change_basis_real_to_complex",
    "fourier_to_sh",
    "gaunt_coefficients",
    "gaunt_factor",
    "gaunt_product",
    "gaunt_product_fourier",
    "gaunt_product_grid",
    "gaunt_tensor",
    "grid_to_sh",
    "irreps_D",
    "matrix_to_angles",
    "random_rotation",
    "s2_grid",
    "sh_to_fourier",
    "sh_to_grid",
    "so3_generators",
    "spherical_harmonics",
    "su2_clebsch_gordan",
    "three_j_zero",
    "wigner_3j",
    "wigner_D",
    "wigner_D_from_matrix",
]
