"""The spherical-grid lowering: exact against the reference, its resolutions, stages and tables.

Its float64 check at every degree 1..10 is in test_algorithms (every route against Gaunt
coefficients), with the same kernels.
"""

import numpy as np
import pytest
from tvm import s_tir

import tpc
from tpc.lower import grid_resolutions, lower_grid
from tpc.lower.grid import (
    AZIMUTHAL,
    COLATITUDE1,
    COLATITUDE2,
    GRID1,
    GRID2,
    OUT,
    PACK1,
    PACK2,
    SH,
    TABLES,
    grid_degree,
    grid_resolution,
)
from tpc.schedule.gaunt import GRID_KNOBS, GRID_SPACE, apply_grid, lowering_options
from tpc.so3 import s2_grid

from .gaunt_kernels import assert_exact, compile_schedule, gaunt


def build(tp, dtype="float64", config=None, **lowering):
    config = GRID_SPACE.validate(config)
    options = lowering or lowering_options(config)
    lowered = lower_grid(tp, dtype, **options)
    return compile_schedule(apply_grid(lowered, config)), lowered


@pytest.mark.parametrize("degree, channels", [(1, 1), (4, 3), (10, 1)])
def test_equals_the_reference_in_float32(degree, channels):
    tp = gaunt(degree, channels)
    executable, lowered = build(tp, "float32")
    assert_exact(executable, lowered, tp, "float32", batches=(1, 7, 1000))


@pytest.mark.parametrize("channels", [1, 32])
def test_channel_counts(channels):
    tp = gaunt(2, channels)
    executable, lowered = build(tp)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 1000))


@pytest.mark.parametrize("degree", [2, 4, 7])
def test_every_offered_resolution_is_exact(degree):
    tp = gaunt(degree, 3)
    for resolution in grid_resolutions(tp):
        for m_lanes in (1, 16):
            executable, lowered = build(tp, resolution=resolution, m_lanes=m_lanes)
            assert_exact(executable, lowered, tp, "float64")


@pytest.mark.parametrize("in1, in2, lmax", [
    ("2x0e + 2x2e + 2x3o", "2x1o + 2x4e", 3),  # skipped degrees, different inputs
    ("1x1o + 1x4e", "1x0e + 1x1o", 6),  # output degrees beyond the product's
    ("3x2e + 3x3o", "3x2e", 0),  # a scalar output only
])
def test_signals_with_skipped_degrees(in1, in2, lmax):
    tp = tpc.GauntTensorProduct(in1, in2, lmax)
    executable, lowered = build(tp)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 13))


def test_a_repeated_degree_and_an_output_in_any_order():
    in1, in2, out = tpc.Irreps("1x1o + 1x1o"), tpc.Irreps("1x1o + 1x0e"), tpc.Irreps("1x2e + 1x0e + 1x1o")
    instructions = [(i1, i2, k, "uuu", False, tpc.so3.gaunt_factor(a.l, b.l, c.l) ** 2)
                    for i1, (_, a) in enumerate(in1) for i2, (_, b) in enumerate(in2) for k, (_, c) in enumerate(out)
                    if abs(a.l - b.l) <= c.l <= a.l + b.l and (a.l + b.l + c.l) % 2 == 0]
    tp = tpc.TensorProduct(in1, in2, out, instructions, irrep_normalization="none", path_normalization="none")
    executable, lowered = build(tp)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7))


def test_resolutions_are_exact_and_the_smallest_comes_first():
    tp = gaunt(4, 1)
    degree = grid_degree(tp)
    assert degree == 12
    smallest = s2_grid(degree)
    offered = grid_resolutions(tp)
    assert offered[0] == (smallest.res_beta, smallest.res_alpha) == (7, 13)
    assert offered == [(7, 13), (7, 16)]  # 13 padded for 8 lanes is 16 as well: offered once
    assert grid_resolutions(gaunt(7, 1)) == [(11, 22), (11, 24), (11, 32)]
    assert grid_resolution(gaunt(2, 1), 16) == (4, 8)  # shorter than a vector: a power of two


def test_an_inexact_resolution_is_refused():
    tp = gaunt(3, 1)
    with pytest.raises(ValueError, match="not exact for degree 9"):
        lower_grid(tp, resolution=(4, 10))
    with pytest.raises(ValueError, match="either resolution or alpha_lanes"):
        lower_grid(tp, resolution=(5, 10), alpha_lanes=8)


def test_other_specs_are_refused():
    tp = tpc.FullyConnectedTensorProduct("2x0e + 2x1o", "2x0e + 2x1o", "2x0e + 2x1o")
    with pytest.raises(ValueError, match=r"grid algorithm computes Gaunt products only.*mode 'uvw'"):
        lower_grid(tp)
    with pytest.raises(ValueError, match="dtype must be one of"):
        lower_grid(gaunt(1, 1), "float16")


def test_parameters_tables_and_stage_names():
    tp = gaunt(3, 2)
    lowered = lower_grid(tp, "float32", m_lanes=8)
    assert lowered.algorithm == "grid" and lowered.out == OUT and lowered.paths == ()
    names = [param.name for param in lowered.func.params]
    assert names == ["x1", "x2", "out", *TABLES]
    assert all(table.dtype == np.float32 and table.flags.c_contiguous for table in lowered.tables)
    shapes = [tuple(int(n) for n in param.shape) for param in lowered.func.params[3:]]
    assert shapes == [table.shape for table in lowered.tables]
    assert lowered.tables[3].shape[-1] == 8 and not lowered.tables[3][:, 7:].any()  # m padded with zeros
    schedule = s_tir.Schedule(lowered.func)
    for name in (PACK1, PACK2, COLATITUDE1, COLATITUDE2, GRID1, GRID2, AZIMUTHAL, SH, OUT):
        schedule.get_sblock(name)


def test_symbolic_batch_unless_given():
    for batch, expected in ((None, "batch"), (5, "5")):
        func = lower_grid(gaunt(2, 1), batch=batch).func
        assert str(func.params[0].shape[0]) == expected


@pytest.mark.parametrize("change", [{knob.name: value} for knob in GRID_KNOBS for value in knob.values
                                    if value != knob.default])
def test_every_schedule_knob_value_is_exact(change):
    tp = gaunt(3, 3)
    executable, lowered = build(tp, config=change)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 13))


def test_a_static_batch_compiles_with_a_ragged_tile():
    tp = gaunt(3, 3)
    config = GRID_SPACE.default()
    lowered = lower_grid(tp, "float64", batch=13, **lowering_options(config))
    executable = compile_schedule(apply_grid(lowered, config))
    assert_exact(executable, lowered, tp, "float64", batches=(13,))
