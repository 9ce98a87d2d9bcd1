"""Is a spec a Gaunt product? The guard in front of the grid and 2D Fourier algorithms.

Those algorithms multiply the two inputs as functions on the sphere and project the product
back onto harmonics. That is the spec's function only when every path is the Gaunt coupling
of its degrees, channel by channel, and no path is missing: the spec must be

* every path in mode uuu, without weights, with l1 + l2 + l3 even;
* every path's coefficient (the number multiplying ``wigner_3j``, normalization applied)
  equal to ``gaunt_factor(l1, l2, l3)``; with normalizations "none" and ``out_var`` 1 that
  is a path weight of ``gaunt_factor(l1, l2, l3) ** 2``, as ``GauntTensorProduct`` builds it;
* the complete Gaunt set for its irreps: every block pair (i1, i2) and output block i_out
  whose degrees satisfy the triangle rule with an even sum, each exactly once;
* the same channel count in every block of both inputs and the output.

Parities do not enter: the algorithms see degrees only (a path the parity rule forbids is
reported as missing). Two blocks of the same degree are allowed; the algorithms add inputs of
one degree and give every output block of a degree the same projection, which is what the
complete set of paths computes.
"""

from __future__ import annotations

import math

from tpc.ops.tensor_product import TensorProduct
from tpc.so3 import gaunt_factor

# Relative tolerance when comparing a path's coefficient with its Gaunt factor: the
# coefficient is a square root of the stored path weight, so exact specs agree to an ulp.
COEFFICIENT_RTOL = 1e-12


def gaunt_form_problem(tp: TensorProduct) -> str | None:
    """Why ``tp`` is not a Gaunt product (naming the first offending path or block), or None."""
    problem = _channel_problem(tp)
    if problem is not None:
        return problem
    seen: dict[tuple[int, int, int], int] = {}
    for index, ins in enumerate(tp.instructions):
        problem = _path_problem(tp, index)
        if problem is not None:
            return problem
        key = (ins.i_in1, ins.i_in2, ins.i_out)
        if key in seen:
            return f"{_describe_path(tp, index)}: repeats path {seen[key]} (a Gaunt product has each path once)"
        seen[key] = index
    for key in _gaunt_paths(tp):
        if key not in seen:
            return f"missing path {_describe_blocks(tp, *key)}: {_missing_reason(tp, *key)}"
    return None


def require_gaunt_form(tp: TensorProduct, algorithm: str) -> None:
    """Raise ValueError, saying why, when ``algorithm`` would not compute ``tp``'s function."""
    problem = gaunt_form_problem(tp)
    if problem is not None:
        raise ValueError(f"the {algorithm} algorithm computes Gaunt products only, and this spec is not one: "
                         f"{problem}")


def _channel_problem(tp: TensorProduct) -> str | None:
    named = (("irreps_in1", tp.irreps_in1), ("irreps_in2", tp.irreps_in2), ("irreps_out", tp.irreps_out))
    for name, irreps in named:
        if len(irreps) == 0:
            return f"{name} has no blocks"
    first_name, first = named[0][0], tp.irreps_in1[0]
    if first.mul == 0:
        return f"{first_name} block 0 ({first}) has no channels"
    for name, irreps in named:
        for block, mul_ir in enumerate(irreps):
            if mul_ir.mul != first.mul:
                return (f"{name} block {block} ({mul_ir}) and {first_name} block 0 ({first}) differ in channel "
                        "count: a Gaunt product needs the same channel count in every block")
    return None


def _path_problem(tp: TensorProduct, index: int) -> str | None:
    ins = tp.instructions[index]
    l1, l2, l3 = _degrees(tp, ins.i_in1, ins.i_in2, ins.i_out)
    where = _describe_path(tp, index)
    if ins.connection_mode != "uuu":
        return (f"{where}: mode {ins.connection_mode!r} is not 'uuu' (a Gaunt product multiplies channel u of x1 "
                "by channel u of x2 into channel u)")
    if ins.has_weight:
        return f"{where}: has weights (a Gaunt product has none)"
    if (l1 + l2 + l3) % 2:
        return f"{where}: l1+l2+l3 = {l1 + l2 + l3} is odd (a Gaunt product has no such path)"
    factor = gaunt_factor(l1, l2, l3)
    if math.isclose(ins.coefficient, factor, rel_tol=COEFFICIENT_RTOL):
        return None
    if math.isclose(math.sqrt(ins.path_weight), factor, rel_tol=COEFFICIENT_RTOL):
        causes = [f"{kind}_normalization {value!r}" for kind, value in
                  (("irrep", tp.irrep_normalization), ("path", tp.path_normalization)) if value != "none"]
        if tp.out_var[ins.i_out] != 1.0:
            causes.append(f"out_var {tp.out_var[ins.i_out]!r}")
        return (f"{where}: with {' and '.join(causes) or 'this normalization'} its coefficient is "
                f"{ins.coefficient!r}, not the Gaunt factor {factor!r} (a Gaunt product has normalizations "
                "'none' and out_var 1, or path weights that compensate)")
    return (f"{where}: path_weight {ins.path_weight!r} is free, not gaunt_factor({l1}, {l2}, {l3})**2 = "
            f"{factor ** 2!r} (its coefficient is {ins.coefficient!r}, the Gaunt factor {factor!r})")


def _gaunt_paths(tp: TensorProduct) -> list[tuple[int, int, int]]:
    """Every (i_in1, i_in2, i_out) of the complete Gaunt set for the spec's irreps."""
    return [
        (i1, i2, i_out)
        for i1 in range(len(tp.irreps_in1))
        for i2 in range(len(tp.irreps_in2))
        for i_out in range(len(tp.irreps_out))
        if _is_gaunt_triple(*_degrees(tp, i1, i2, i_out))
    ]


def _is_gaunt_triple(l1: int, l2: int, l3: int) -> bool:
    return abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0


def _missing_reason(tp: TensorProduct, i1: int, i2: int, i_out: int) -> str:
    ir1, ir2, ir_out = tp.irreps_in1[i1].ir, tp.irreps_in2[i2].ir, tp.irreps_out[i_out].ir
    reason = "the Gaunt product has it (its degrees satisfy the triangle rule with an even sum)"
    if ir1.p * ir2.p != ir_out.p:
        reason += f"; the parity rule forbids it here ({ir1} x {ir2} has parity {ir1.p * ir2.p}, {ir_out} {ir_out.p})"
    return reason


def _degrees(tp: TensorProduct, i1: int, i2: int, i_out: int) -> tuple[int, int, int]:
    return tp.irreps_in1[i1].ir.l, tp.irreps_in2[i2].ir.l, tp.irreps_out[i_out].ir.l


def _describe_blocks(tp: TensorProduct, i1: int, i2: int, i_out: int) -> str:
    return (f"in1[{i1}] ({tp.irreps_in1[i1]}) x in2[{i2}] ({tp.irreps_in2[i2]}) -> "
            f"out[{i_out}] ({tp.irreps_out[i_out]})")


def _describe_path(tp: TensorProduct, index: int) -> str:
    ins = tp.instructions[index]
    return f"path {index} {_describe_blocks(tp, ins.i_in1, ins.i_in2, ins.i_out)}"
