"""Features of a candidate for the cost model: knob encoding, op descriptors, scheduled TIR.

The op descriptors (degrees, channels, nonzeros, FLOPs, batch, dtype, which gradient) let one
model, trained on the measurements of several ops, rank candidates of an op it has not seen
(transfer).
The TIR features describe what the schedule actually produced (loop nests, memory traffic,
parallel and unrolled loops), computed by MetaSchedule's per-store feature extractor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import tvm
from tvm import s_tir, tirx
from tvm.s_tir.meta_schedule import _ffi_api as _ms_api
from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature
from tvm.s_tir.meta_schedule.search_strategy import MeasureCandidate
from tvm.s_tir.meta_schedule.tune_context import TuneContext

from tpc.build import scheduled
from tpc.ops import FUSIONS, WRT, Contraction, Op
from tpc.schedule.space import AlgorithmSpace, Space
from tpc.targets import TargetSpec

_EXTRACTOR = PerStoreFeature()
PER_STORE_LENGTH: int = _EXTRACTOR.feature_vector_length
"""Features per buffer store (164 with the extractor's defaults)."""
TIR_FEATURE_LENGTH: int = 2 * PER_STORE_LENGTH + 1
"""Length of :func:`tir_features`: total and maximum over stores, then the store count."""


FEATURES_VERSION = 3
"""Changes whenever the candidate features change, so saved training sets of another layout are not mixed in."""


def op_descriptors(op: Op, batch: int, dtype: str) -> list[float]:
    """Shape of the work, independent of the schedule: the product's, then which gradient
    (one-hot over WRT) and which fusion (one-hot over FUSIONS)."""
    if isinstance(op, Contraction):
        return _contraction_descriptors(op, batch, dtype)
    tp, key = op.tp, op.schedule_key
    muls = [mul for mul, _ in tp.irreps_out] or [0]
    ls = [ir.l for _, ir in tp.irreps_in1 + tp.irreps_in2 + tp.irreps_out] or [0]
    modes = [ins.connection_mode for ins in tp.instructions]
    return [
        math.log2(max(batch, 1)),
        math.log2(1 + len(tp.instructions)),
        math.log2(1 + tp.nnz),
        math.log2(1 + tp.flops()),
        math.log2(1 + tp.weight_numel),
        math.log2(1 + tp.irreps_out.dim),
        float(max(ls)),
        math.log2(1 + float(np.mean(muls))),
        float(tp.shared_weights),
        float(dtype == "float64"),
        sum(mode == "uvw" for mode in modes) / max(len(modes), 1),
        *[float(key == name) for name in WRT],
        *[float(key == name) for name in FUSIONS],
    ]


def _contraction_descriptors(op: Contraction, batch: int, dtype: str) -> list[float]:
    """:func:`op_descriptors` of a symmetric contraction, in the same slots: its paths, coupling
    nonzeros, FLOPs, weights, output width, degrees and channels; the connection-mode slot says
    whether it is a tangent op."""
    spec = op.spec
    paths = sum(shape[1] for _, _, shape in spec.weight_shapes())
    weights = sum(int(np.prod(shape)) for _, _, shape in spec.weight_shapes())
    ls = [ir.l for _, ir in spec.irreps_in + spec.irreps_out]
    return [math.log2(max(batch, 1)), math.log2(1 + paths), math.log2(1 + spec.nonzeros()),
            math.log2(1 + spec.flops()), math.log2(1 + weights), math.log2(1 + spec.irreps_out.dim), float(max(ls)),
            math.log2(1 + spec.channels), 1.0, float(dtype == "float64"), float(op.tangent),
            *[float(op.wrt == name) for name in WRT], *[0.0 for _ in FUSIONS]]


def candidate_features(space: Space, config: Mapping[str, Any], descriptors: list[float]) -> list[float]:
    """Knob encoding followed by the op descriptors."""
    return space.encode(config) + descriptors


def tir_features(sch: s_tir.Schedule, target: tvm.target.Target, batch: int | None = None) -> list[float]:
    """Fixed-length summary of the per-store features of a scheduled function.

    MetaSchedule's ``PerStoreFeature`` gives one row per buffer store; most columns are
    counts on TVM's ``log2(1 + x)`` scale, the rest are 0/1 flags. Rows are aggregated so
    any number of stores gives :data:`TIR_FEATURE_LENGTH` values:

    * total: each column is mapped back to linear scale, summed over stores and put on the
      log scale again, so it reads as the whole kernel's FLOPs, bytes, loop work (for flags:
      how many stores have them); a plain sum of logs would be the log of a product;
    * maximum over stores: the heaviest loop nest, and whether any store has a flag;
    * ``log2(1 + number of stores)``.

    The extractor counts a loop of symbolic extent as one iteration, so for a function with
    a symbolic batch the features describe one iteration of the outer batch loop, and
    larger batch tiles look like more work. Pass ``batch`` to bind the symbolic shape
    variables of the arguments to it first, so all tilings describe the same total work.
    """
    if batch is not None:
        sch = s_tir.Schedule(_bind_batch(sch.mod["main"], batch))
    rows = _EXTRACTOR.extract_from(_context(target), [MeasureCandidate(sch, [])])[0].numpy()
    if rows.shape[0] == 0:
        return [0.0] * TIR_FEATURE_LENGTH
    linear = np.sign(rows) * np.expm1(np.abs(rows) * math.log(2.0))
    total = linear.sum(axis=0)
    total = np.sign(total) * np.log2(1.0 + np.abs(total))
    return [*total.tolist(), *rows.max(axis=0).tolist(), math.log2(1 + rows.shape[0])]


class TirFeaturizer:
    """TIR features of an op's candidate configurations, each computed once.

    Lowering and scheduling a configuration costs far more than scoring it, so the search asks
    for these only for its short list of candidates, not for every configuration it scores.
    """

    def __init__(self, op: Op, target: TargetSpec, dtype: str, batch: int, space: AlgorithmSpace) -> None:
        self.op, self.target, self.dtype, self.batch, self.space = op, target, dtype, batch, space
        self._known: dict[str, list[float]] = {}

    def __call__(self, config: Mapping[str, Any]) -> list[float]:
        key = self.space.key(config)
        if key not in self._known:
            algorithm, knobs = self.space.split(config)
            sch, _ = scheduled(self.op, self.dtype, self.target.family, algorithm, knobs)
            self._known[key] = tir_features(sch, self.target.tvm_target(), batch=self.batch)
        return self._known[key]


def _bind_batch(func: tirx.PrimFunc, batch: int) -> tirx.PrimFunc:
    """``func`` with every symbolic dimension of its buffer arguments set to ``batch`` (dims that
    are expressions of others, such as a fused kernel's receiver count, follow them)."""
    specialized = {}
    for param in func.params:
        shape = getattr(param, "shape", None)
        if shape is None or all(isinstance(dim, tirx.IntImm) for dim in shape) or \
                not all(isinstance(dim, (tirx.IntImm, tirx.Var)) for dim in shape):
            continue
        static = [dim if isinstance(dim, tirx.IntImm) else batch for dim in shape]
        specialized[param] = tirx.decl_buffer(
            static, param.dtype, param.name, elem_offset=param.elem_offset,
            data_alignment=param.data_alignment, offset_factor=param.offset_factor)
    return func.specialize(specialized) if specialized else func


def _context(target: tvm.target.Target) -> TuneContext:
    """A tuning context holding only the target, which is all the extractor reads.

    It is built through the FFI constructor because ``TuneContext.__init__`` imports
    ``tvm.s_tir.tensor_intrin``, which is slow.
    """
    context = TuneContext.__new__(TuneContext)
    context.__init_handle_by_constructor__(_ms_api.TuneContext, None, target, None, None, "main", 1, -1, None)
    return context
