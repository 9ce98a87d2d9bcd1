"""The spec of an existing ``e3nn.o3.TensorProduct`` module, checked path by path.

e3nn keeps the irreps, the instructions (with their normalized coefficients under the name
``path_weight``) and the weight sharing on the module, but not the normalization names or the
variances that produced the coefficients. The spec is rebuilt with the normalizations that
reproduce every coefficient (e3nn's defaults first, so the fingerprint, and with it the tuned
schedules, is the one the same product built in tpc has); when none does, the coefficients
are carried as path weights. Works by reading attributes, so it needs neither torch nor e3nn.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from tpc.so3 import wigner_3j

if TYPE_CHECKING:
    from tpc.ops.tensor_product import TensorProduct

E3NN_NORMALIZATIONS = (("component", "norm", "none"), ("element", "path", "none"))
"""e3nn's ``irrep_normalization`` and ``path_normalization`` values, its defaults first."""

COEFFICIENT_TOLERANCE = 1e-12
"""Relative agreement asked of every path coefficient (they are computed in float64 on both sides)."""

COUPLING_TOLERANCE = 1e-6
"""Agreement asked of the module's own Wigner 3j buffers (float32 or float64) with tpc's."""

_W3J_BUFFER = re.compile(r"(?:^|\.)_w3j_(\d+)_(\d+)_(\d+)$")


def spec_from_e3nn(spec_class: type["TensorProduct"], module: Any) -> "TensorProduct":
    """The tpc spec of an ``e3nn.o3.TensorProduct`` (or subclass) module, of e3nn 0.4 to 0.6.

    Args:
        spec_class: :class:`tpc.TensorProduct` (passed in: this module does not import it).
        module: the e3nn module.

    Returns:
        A spec computing the module's function with its weight layout: irreps, paths,
        connection modes, path shapes and every normalized coefficient checked.

    Raises:
        TypeError: ``module`` is not an e3nn tensor product.
        ValueError: it has something tpc does not compute (the message names the module, the
            path and what differs).
    """
    kind = type(module).__name__
    for attribute in ("irreps_in1", "irreps_in2", "irreps_out", "instructions", "shared_weights"):
        if not hasattr(module, attribute):
            raise TypeError(f"{kind} is not an e3nn.o3.TensorProduct: it has no attribute {attribute!r}")
    paths = list(module.instructions)
    irreps = [str(module.irreps_in1), str(module.irreps_in2), str(module.irreps_out)]
    raw = [(ins.i_in1, ins.i_in2, ins.i_out, ins.connection_mode, bool(ins.has_weight)) for ins in paths]
    coefficients = [float(ins.path_weight) for ins in paths]
    try:
        candidates = [spec_class(*irreps, raw, irrep_normalization=irrep, path_normalization=path,
                                 shared_weights=bool(module.shared_weights))
                      for irrep in E3NN_NORMALIZATIONS[0] for path in E3NN_NORMALIZATIONS[1]]
    except ValueError as error:
        raise ValueError(f"{kind}: {error}") from None
    spec = next((c for c in candidates if _same_coefficients(c, coefficients)), None)
    if spec is None:
        spec = spec_class(*irreps, [(*path, c * c) for path, c in zip(raw, coefficients)],
                          irrep_normalization="none", path_normalization="none",
                          shared_weights=bool(module.shared_weights))
        if not _same_coefficients(spec, coefficients):
            raise ValueError(f"{kind}: its path coefficients {coefficients} cannot be reproduced")
    for position, (ins, ours) in enumerate(zip(paths, spec.instructions)):
        shape = tuple(int(n) for n in ins.path_shape)
        if ins.has_weight and shape != ours.path_shape:
            raise ValueError(f"{kind} path {position}: weight shape {shape}, tpc's layout is {ours.path_shape}")
    numel = getattr(module, "weight_numel", spec.weight_numel)
    if numel != spec.weight_numel:
        raise ValueError(f"{kind}: {numel} weights, tpc's layout has {spec.weight_numel}")
    _check_couplings(kind, module)
    return spec


def _same_coefficients(spec: "TensorProduct", coefficients: list[float]) -> bool:
    return all(math.isclose(ins.coefficient, c, rel_tol=COEFFICIENT_TOLERANCE, abs_tol=1e-300)
               for ins, c in zip(spec.instructions, coefficients))


def _check_couplings(kind: str, module: Any) -> None:
    """The module's own Wigner 3j tables (e3nn's generated code keeps them as buffers
    ``_w3j_<l1>_<l2>_<l3>``), where it has them, against tpc's."""
    named_buffers = getattr(module, "named_buffers", None)
    if named_buffers is None:
        return
    for name, buffer in named_buffers():
        match = _W3J_BUFFER.search(name)
        if match is None:
            continue
        l1, l2, l3 = (int(group) for group in match.groups())
        theirs = np.asarray(buffer.detach().cpu().double().numpy()).reshape(-1)
        ours = wigner_3j(l1, l2, l3).reshape(-1)
        if theirs.shape != ours.shape or np.max(np.abs(theirs - ours)) > COUPLING_TOLERANCE:
            raise ValueError(f"{kind}: its coupling table {name} differs from tpc's wigner_3j({l1}, {l2}, {l3})")
