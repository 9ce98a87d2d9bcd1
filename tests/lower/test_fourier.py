"""The 2D Fourier lowering: exact against the reference with both convolutions; stages and tables.

Its float64 check at every degree 1..10 is in test_algorithms (every route against Gaunt
coefficients), with the same kernels.
"""

import numpy as np
import pytest
from tvm import s_tir

import tpc
from tpc.lower import lower_fourier
from tpc.lower.fourier import (
    CONV,
    CONVOLUTIONS,
    DFT,
    FOURIER1,
    FOURIER2,
    OUT,
    PACK1,
    PACK2,
    PADDED,
    SH,
    TABLES,
    TORUS1,
    TORUS2,
    VALUES1,
    VALUES2,
    torus_shape,
)
from tpc.schedule.gaunt import (
    FOURIER_KNOBS,
    FOURIER_SPACE,
    apply_fourier,
    lowering_options,
)

from .gaunt_kernels import assert_exact, compile_schedule, gaunt


def build(tp, dtype="float64", **config):
    config = FOURIER_SPACE.validate(config)
    lowered = lower_fourier(tp, dtype, **lowering_options(config))
    return compile_schedule(apply_fourier(lowered, config)), lowered


@pytest.mark.parametrize("convolution", CONVOLUTIONS)
@pytest.mark.parametrize("degree, channels", [(1, 1), (5, 3), (10, 1)])
def test_equals_the_reference_in_float32(degree, channels, convolution):
    tp = gaunt(degree, channels)
    executable, lowered = build(tp, "float32", convolution=convolution)
    assert_exact(executable, lowered, tp, "float32", batches=(1, 7, 1000))


@pytest.mark.parametrize("convolution", CONVOLUTIONS)
@pytest.mark.parametrize("channels", [1, 32])
def test_channel_counts(channels, convolution):
    tp = gaunt(2, channels)
    executable, lowered = build(tp, convolution=convolution)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 1000))


@pytest.mark.parametrize("convolution", CONVOLUTIONS)
@pytest.mark.parametrize("lanes", [1, 8])
def test_unpadded_and_padded_frequency_axes(convolution, lanes):
    tp = gaunt(4, 3)
    executable, lowered = build(tp, convolution=convolution, lanes=lanes)
    assert_exact(executable, lowered, tp, "float64")


@pytest.mark.parametrize("convolution", CONVOLUTIONS)
@pytest.mark.parametrize("in1, in2, lmax", [
    ("2x0e + 2x2e + 2x3o", "2x1o + 2x4e", 3),  # skipped degrees, different inputs
    ("1x1o + 1x4e", "1x0e + 1x1o", 6),  # output degrees beyond the product's
    ("3x2e + 3x3o", "3x2e", 0),  # a scalar output only
])
def test_signals_with_skipped_degrees(in1, in2, lmax, convolution):
    tp = tpc.GauntTensorProduct(in1, in2, lmax)
    executable, lowered = build(tp, convolution=convolution)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 13))


def test_torus_grid_resolves_the_product():
    assert torus_shape(gaunt(3, 1)) == (13, 10)  # D = 6: 2 D + 1 by D + lmax_out + 1
    assert torus_shape(gaunt(3, 1), lanes=16) == (13, 16)
    assert torus_shape(tpc.GauntTensorProduct("1x0e + 1x1o", "1x2e", 0)) == (7, 4)


def test_unknown_convolution_and_other_specs_are_refused():
    with pytest.raises(ValueError, match="convolution must be one of"):
        lower_fourier(gaunt(1, 1), convolution="fft")
    tp = tpc.ChannelwiseTensorProduct("2x0e + 2x1o", "2x0e + 2x1o", 2)
    with pytest.raises(ValueError, match=r"fourier algorithm computes Gaunt products only.*mode 'uvu'"):
        lower_fourier(tp)


@pytest.mark.parametrize("convolution, stages", [
    ("direct", (PACK1, PACK2, *FOURIER1, *FOURIER2, *PADDED, *CONV, SH, OUT)),
    ("dft", (PACK1, PACK2, *FOURIER1, *FOURIER2, *TORUS1, *TORUS2, VALUES1, VALUES2, *DFT, SH, OUT)),
])
def test_parameters_tables_and_stage_names(convolution, stages):
    lowered = lower_fourier(gaunt(3, 2), "float32", convolution=convolution)
    assert lowered.algorithm == "fourier" and lowered.out == OUT and lowered.paths == ()
    assert [param.name for param in lowered.func.params] == ["x1", "x2", "out", *TABLES[convolution]]
    shapes = [tuple(int(n) for n in param.shape) for param in lowered.func.params[3:]]
    assert shapes == [table.shape for table in lowered.tables]
    assert all(table.dtype == np.float32 and table.flags.c_contiguous for table in lowered.tables)
    schedule = s_tir.Schedule(lowered.func)
    for name in stages:
        schedule.get_sblock(name)


@pytest.mark.parametrize("change", [{knob.name: value} for knob in FOURIER_KNOBS for value in knob.values
                                    if value != knob.default])
def test_every_schedule_knob_value_is_exact(change):
    tp = gaunt(3, 3)
    executable, lowered = build(tp, **change)
    assert_exact(executable, lowered, tp, "float64", batches=(1, 7, 13))


def test_a_static_batch_compiles_with_a_ragged_tile():
    tp = gaunt(3, 3)
    config = FOURIER_SPACE.default()
    lowered = lower_fourier(tp, "float64", batch=13, **lowering_options(config))
    executable = compile_schedule(apply_fourier(lowered, config))
    assert_exact(executable, lowered, tp, "float64", batches=(13,))
