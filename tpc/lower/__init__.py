"""Lowering: a spec (and an algorithm) to TVM tensor-expression IR, one module per algorithm."""

from tpc.lower.cg import DTYPES, Lowered, PathStages, lower_cg

__all__ = ["DTYPES", "Lowered", "PathStages", "lower_cg"]
