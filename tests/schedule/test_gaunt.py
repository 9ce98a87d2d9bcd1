"""CPU schedules of the grid and 2D Fourier algorithms: knob spaces, lowering options, loop
structure. (That every knob value gives an exact kernel is tested with the lowerings.)"""

import pytest

import tpc
from tpc.lower import lower_cg, lower_fourier, lower_grid
from tpc.schedule.gaunt import (
    FOURIER_SPACE,
    GRID_SPACE,
    apply_fourier,
    apply_grid,
    lowering_options,
)

ALGORITHMS = {"grid": (GRID_SPACE, lower_grid, apply_grid), "fourier": (FOURIER_SPACE, lower_fourier, apply_fourier)}


def gaunt(degree: int) -> tpc.TensorProduct:
    signal = tpc.Irreps.spherical_harmonics(degree)
    return tpc.GauntTensorProduct(signal, signal, degree)


def test_defaults_and_lowering_options():
    assert lowering_options(GRID_SPACE.default()) == {"alpha_lanes": 16, "m_lanes": 16}
    assert lowering_options(FOURIER_SPACE.default()) == {"convolution": "dft", "lanes": 16}
    with pytest.raises(ValueError, match="not a grid or Fourier configuration"):
        lowering_options(tpc.schedule.default_config("cpu"))
    with pytest.raises(ValueError, match="unknown cpu-grid schedule knob"):
        GRID_SPACE.validate({"convolution": "dft"})


def test_a_schedule_takes_only_its_algorithm():
    tp = gaunt(1)
    with pytest.raises(ValueError, match="apply_grid schedules the grid algorithm"):
        apply_grid(lower_fourier(tp))
    with pytest.raises(ValueError, match="apply_fourier schedules the fourier algorithm"):
        apply_fourier(lower_cg(tp))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_default_schedule_is_parallel_and_vectorized(algorithm):
    space, lower, apply = ALGORITHMS[algorithm]
    lowered = lower(gaunt(4), "float32", **lowering_options(space.default()))
    text = apply(lowered, space.default()).mod.script()
    assert "T.parallel" in text and "T.vectorized(16)" in text
