"""Lowering: a spec (and an algorithm) to TVM tensor-expression IR, one module per algorithm."""

from tpc.lower.cg import lower_cg
from tpc.lower.fourier import lower_fourier
from tpc.lower.gradients import lower_gradient
from tpc.lower.grid import grid_resolutions, lower_grid
from tpc.lower.lowered import Lowered, PathStages
from tpc.ops.gaunt_form import gaunt_form_problem

__all__ = ["Lowered", "PathStages", "gaunt_form_problem", "grid_resolutions", "lower_cg", "lower_fourier",
           "lower_gradient", "lower_grid"]
