"""The Gaunt-form guard: which specs the grid and 2D Fourier algorithms compute exactly."""

import pytest

from tpc import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    Irreps,
    TensorProduct,
)
from tpc.ops import gaunt_form_problem
from tpc.ops.gaunt_form import require_gaunt_form
from tpc.so3 import gaunt_factor


def gaunt_instructions(in1, in2, out) -> list[tuple]:
    """The complete Gaunt set for these irreps, written out by hand (any order)."""
    in1, in2, out = Irreps(in1), Irreps(in2), Irreps(out)
    return [
        (i1, i2, k, "uuu", False, gaunt_factor(a.l, b.l, c.l) ** 2)
        for k, (_, c) in enumerate(out)
        for i1, (_, a) in enumerate(in1)
        for i2, (_, b) in enumerate(in2)
        if abs(a.l - b.l) <= c.l <= a.l + b.l and (a.l + b.l + c.l) % 2 == 0
    ]


def by_hand(in1, in2, out, instructions=None, **options) -> TensorProduct:
    options = {"irrep_normalization": "none", "path_normalization": "none"} | options
    instructions = gaunt_instructions(in1, in2, out) if instructions is None else instructions
    return TensorProduct(in1, in2, out, instructions, **options)


def small() -> TensorProduct:
    return GauntTensorProduct("2x0e + 2x1o", "2x0e + 2x1o", 2)


def edited(tp: TensorProduct, index: int, **changes) -> TensorProduct:
    """``tp`` with instruction ``index`` changed (fields by e3nn's names)."""
    rows = [[ins.i_in1, ins.i_in2, ins.i_out, ins.connection_mode, ins.has_weight, ins.path_weight]
            for ins in tp.instructions]
    fields = ("i_in1", "i_in2", "i_out", "mode", "has_weight", "path_weight")
    for name, value in changes.items():
        rows[index][fields.index(name)] = value
    return TensorProduct(tp.irreps_in1, tp.irreps_in2, tp.irreps_out, [tuple(row) for row in rows],
                         irrep_normalization=tp.irrep_normalization, path_normalization=tp.path_normalization,
                         out_var=list(tp.out_var))


GAUNT_FORM = {
    "gaunt-L0": lambda: GauntTensorProduct("1x0e", "1x0e", 0),
    "gaunt-L2": lambda: GauntTensorProduct(Irreps.spherical_harmonics(2), Irreps.spherical_harmonics(2), 2),
    "gaunt-L5-3-channels": lambda: GauntTensorProduct(
        "+".join(f"3x{l}{'eo'[l % 2]}" for l in range(6)), "+".join(f"3x{l}{'eo'[l % 2]}" for l in range(6)), 5),
    "gaunt-skipped-degrees": lambda: GauntTensorProduct("2x0e + 2x2e + 2x3o", "2x1o + 2x4e", 3),
    "gaunt-unequal-degrees": lambda: GauntTensorProduct("1x1o + 1x4e", "1x0e + 1x1o", 6),
    "gaunt-32-channels": lambda: GauntTensorProduct("32x0e + 32x1o", "32x0e + 32x1o + 32x2e", 3),
    "gaunt-lmax-out-0": lambda: GauntTensorProduct("1x2e + 1x3o", "1x2e", 0),
    "by-hand-reordered-paths": lambda: by_hand("1x0e + 1x1o + 1x2e", "1x1o + 1x2e", "1x0e + 1x1o + 1x2e + 1x3o"),
    "by-hand-output-skips-degrees": lambda: by_hand("2x1o + 2x2e", "2x1o + 2x2e", "2x0e + 2x4e"),
    "by-hand-output-out-of-order": lambda: by_hand("1x0e + 1x1o", "1x0e + 1x1o", "1x2e + 1x0e + 1x1o"),
    "by-hand-repeated-degree": lambda: by_hand("1x1o + 1x1o", "1x1o", "1x0e + 1x2e"),
    "by-hand-component-normalization-compensated": lambda: by_hand(
        "1x1o", "1x1o", "1x0e + 1x2e", irrep_normalization="component",
        instructions=[(0, 0, k, "uuu", False, gaunt_factor(1, 1, l) ** 2 / (2 * l + 1)) for k, l in ((0, 0), (1, 2))]),
}


@pytest.mark.parametrize("name", sorted(GAUNT_FORM))
def test_gaunt_form_specs_pass(name):
    tp = GAUNT_FORM[name]()
    assert gaunt_form_problem(tp) is None
    require_gaunt_form(tp, "grid")


NOT_GAUNT_FORM = {
    "odd-path": (
        lambda: by_hand("1x1o", "1x1o", "1x0e + 1x1e + 1x2e",
                        gaunt_instructions("1x1o", "1x1o", "1x0e + 1x1e + 1x2e") + [(0, 0, 1, "uuu", False, 1.0)]),
        ["path 2", "in1[0] (1x1o) x in2[0] (1x1o) -> out[1] (1x1e)", "l1+l2+l3 = 3 is odd"]),
    "free-path-weight": (
        lambda: edited(small(), 1, path_weight=2.0),
        ["path 1", "-> out[1] (2x1o)", "path_weight 2.0 is free", "gaunt_factor(0, 1, 1)**2"]),
    "slightly-off-path-weight": (
        lambda: edited(small(), 0, path_weight=gaunt_factor(0, 0, 0) ** 2 * (1 + 1e-6)),
        ["path 0", "is free"]),
    "uvw": (
        lambda: FullyConnectedTensorProduct("2x0e + 2x1o", "2x0e + 2x1o", "2x0e + 2x1o"),
        ["path 0", "mode 'uvw' is not 'uuu'"]),
    "uvu-channelwise": (
        lambda: ChannelwiseTensorProduct("2x0e + 2x1o", "2x0e + 2x1o", 2),
        ["path 0", "mode 'uvu' is not 'uuu'"]),
    "weighted-uuu": (
        lambda: edited(small(), 3, has_weight=True),
        ["path 3", "in1[1] (2x1o) x in2[1] (2x1o) -> out[0] (2x0e)", "has weights"]),
    "missing-path": (
        lambda: by_hand("1x0e + 1x1o", "1x0e + 1x1o", "1x0e + 1x1o + 1x2e",
                        gaunt_instructions("1x0e + 1x1o", "1x0e + 1x1o", "1x0e + 1x1o + 1x2e")[:-1]),
        ["missing path in1[1] (1x1o) x in2[1] (1x1o) -> out[2] (1x2e)", "the Gaunt product has it"]),
    "missing-path-parity-forbids": (
        lambda: by_hand("1x1e", "1x1o", "1x0e + 1x2e", []),
        ["missing path in1[0] (1x1e) x in2[0] (1x1o) -> out[0] (1x0e)", "parity rule forbids it"]),
    "repeated-path": (
        lambda: by_hand("1x0e", "1x0e", "1x0e", gaunt_instructions("1x0e", "1x0e", "1x0e") * 2),
        ["path 1", "repeats path 0"]),
    "component-normalization": (
        lambda: by_hand("1x0e + 1x1o", "1x0e + 1x1o", "1x0e + 1x1o + 1x2e", irrep_normalization="component"),
        ["path 2", "-> out[1] (1x1o)", "irrep_normalization 'component'", "not the Gaunt factor"]),
    "element-path-normalization": (
        lambda: by_hand("1x0e + 1x1o", "1x0e + 1x1o", "1x0e + 1x1o + 1x2e", path_normalization="element"),
        ["path 0", "path_normalization 'element'"]),
    "out-var": (
        lambda: by_hand("1x0e + 1x1o", "1x0e + 1x1o", "1x0e + 1x1o + 1x2e", out_var=[1.0, 1.0, 3.0]),
        ["path 4", "-> out[2] (1x2e)", "out_var 3.0"]),
    "unequal-channels": (
        lambda: by_hand("2x0e + 3x1o", "2x0e + 3x1o", "2x0e", [(0, 0, 0, "uuu", False, gaunt_factor(0, 0, 0) ** 2)]),
        ["irreps_in1 block 1 (3x1o)", "channel count"]),
    "unequal-channels-between-inputs": (
        lambda: TensorProduct("2x0e", "1x0e", "2x0e", [(0, 0, 0, "uvu", False)]),
        ["irreps_in2 block 0 (1x0e)", "channel count"]),
}


@pytest.mark.parametrize("name", sorted(NOT_GAUNT_FORM))
def test_other_specs_are_refused_naming_path_and_reason(name):
    build, expected = NOT_GAUNT_FORM[name]
    tp = build()
    problem = gaunt_form_problem(tp)
    assert problem is not None
    for fragment in expected:
        assert fragment in problem
    with pytest.raises(ValueError, match="the fourier algorithm computes Gaunt products only") as error:
        require_gaunt_form(tp, "fourier")
    assert problem in str(error.value)


def test_the_first_offending_path_is_named():
    tp = edited(edited(small(), 2, path_weight=1.0), 4, mode="uvu")
    assert gaunt_form_problem(tp).startswith("path 2 ")
