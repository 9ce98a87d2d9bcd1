"""CPU schedules of a tensor product fused with its gather and/or scatter-sum.

With the scatter-sum fused (:func:`apply_scatter`), tiles of receivers run in parallel; for
each receiver every path's sums are computed over its run of edges, the edge loop outermost
by default, so each edge's operands are read once per path while they are in cache. A
product fused with its gather only is an ordinary product over the edges and takes the
product's schedule and knobs (:func:`apply_gather`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import tvm
from tvm import s_tir, tirx

from tpc.lower import Lowered, PathStages
from tpc.lower.convolution import GATHER_STAGE, GRAD_GATHER_STAGE, TRANSPOSED_STAGE
from tpc.schedule import cpu
from tpc.schedule.space import Knob, SearchSpace

SCATTER_KNOBS = (
    Knob("receiver_tile", (1, 2, 4, 8, 16, 32), 8, "receivers per parallel task"),
    Knob("edge_loop", ("outer", "inner"), "outer",
         "a path's loop over the receiver's edges outside its channel and component loops, or innermost"),
    cpu.UNROLL_COMPONENTS,
    Knob("channel_unroll", (1, 2, 4, 8), 1, "unroll this many channels of each path sum together"),
    Knob("merge_paths", (False, True), False, "one loop over the edges for all paths instead of one per path"),
)


def _merge_rule(config: Mapping[str, Any]) -> str | None:
    return "merge_paths needs edge_loop 'outer'" if config["merge_paths"] and config["edge_loop"] != "outer" else None


def _vector_rule(config: Mapping[str, Any]) -> str | None:
    if config["x1_layout"] == "ir_mul" and (config["edge_loop"] != "outer" or config["channel_unroll"] > 1):
        return "x1_layout 'ir_mul' vectorizes the channel loop: it needs edge_loop 'outer' and channel_unroll 1"
    return None


SCATTER_SPACE = SearchSpace("cpu-convolution", SCATTER_KNOBS, version=1, rules=(_merge_rule,))
# With the gather fused, the default reads transposed features with vectorized channel loops
# and one edge loop for all paths: the tuned winner on the 32-channel MACE block (see
# docs/measurements.md).
GATHER_SCATTER_SPACE = SearchSpace("cpu-convolution-gather", tuple(
    replace(knob, default={"receiver_tile": 4, "unroll_components": False, "merge_paths": True}.get(knob.name,
                                                                                                  knob.default))
    for knob in SCATTER_KNOBS) + (
    Knob("x1_layout", ("mul_ir", "ir_mul"), "ir_mul",
         "read the gathered features as e3nn stores them, or transposed once per call to component-major "
         "blocks, with each path's channel loop vectorized"),
), version=2, rules=(_merge_rule, _vector_rule))


def apply_gather(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """A product reading x1 through the senders: the gather inlined, then the product's CPU schedule."""
    sch = s_tir.Schedule(lowered.func)
    sch.compute_inline(sch.get_sblock(GATHER_STAGE))
    return cpu.apply(replace(lowered, func=sch.mod["main"]), config)


def apply_scatter(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """A product summed over each receiver's edges, with the knobs of :data:`SCATTER_SPACE`
    (and with the gather fused, :data:`GATHER_SCATTER_SPACE`)."""
    config = (GATHER_SCATTER_SPACE if lowered.schedule_key == "gather+scatter" else SCATTER_SPACE).validate(config)
    vectorized = config.get("x1_layout") == "ir_mul"
    sch = s_tir.Schedule(lowered.func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        name = sch.get(block).name_hint
        if name == GATHER_STAGE:
            sch.compute_inline(block)
        elif name == TRANSPOSED_STAGE:  # one pass over the nodes, before the receivers
            sch.parallel(sch.split(sch.get_loops(block)[0], [None, 16])[0])
    for path in lowered.paths:  # no per-edge stage stays in memory
        sch.compute_inline(sch.get_sblock(path.z))
    row_loop, _ = sch.get_loops(sch.get_sblock(lowered.out))
    tile, row = sch.split(row_loop, [None, config["receiver_tile"]])
    sch.parallel(tile)
    edge_loops = []
    for path in lowered.paths:
        block = sch.get_sblock(path.y)
        sch.compute_at(block, row)
        init = sch.decompose_reduction(block, sch.get_loops(block)[2])
        loops = _loops_by_axis(sch, block, path)
        if config["unroll_components"] and loops["k"]:
            sch.unroll(loops["k"][0])
            sch.unroll(_loops_by_axis(sch, init, path, reduction=False)["k"][0])
        if vectorized and loops["c"]:
            # sums laid out (component, channel): the channel loop runs innermost over adjacent memory
            sch.transform_layout(block, ("write", 0), lambda row, c, k: (row, k, c))
            # (TVM's vectorize refuses a reduction's update block; LLVM vectorizes the plain loop.)
            sch.reorder(*(loops["s"] + loops["r"] + loops["k"] + loops["c"]))
            sch.reorder(*_loops_by_axis(sch, init, path, reduction=False)["k"],
                        *_loops_by_axis(sch, init, path, reduction=False)["c"])
            edge_loops.append(loops["s"][0])
        elif config["edge_loop"] == "outer":
            sch.reorder(*(loops["s"] + loops["c"] + loops["k"] + loops["r"]))
            edge_loops.append(loops["s"][0])
        factor = config["channel_unroll"]
        if factor > 1 and loops["c"] and path.y_channels % factor == 0:
            _, inner = sch.split(loops["c"][0], [None, factor])
            sch.unroll(inner)
    if config["merge_paths"] and len(edge_loops) > 1:
        sch.merge(*edge_loops)
    return exact_runs(sch)


def exact_runs(sch: s_tir.Schedule) -> s_tir.Schedule:
    """The schedule's function with every loop over a run of edges cut to the run's length.

    The lowering bounds runs by ``longest_run`` and masks the steps past a run's end, which
    still cost a full step each (a third of the time at Poisson degrees). With the edge loop
    outermost it sits directly under the loop over receivers; its extent becomes that
    receiver's run length. (With ``edge_loop`` "inner" the run loops sit deeper and keep the
    mask.)

    The stages of a row run under one guard that the row exists. Every block there has that
    predicate already, but a loop over the edges merged across paths (``merge_paths``) sits
    outside the blocks: without the guard, loop partitioning splits it on the mask, on the
    rows past the end of a ragged last tile, into loops whose extents read ``offsets`` past
    its end (garbage extents that can run for seconds).
    """
    func = sch.mod["main"]
    offsets = next(param for param in func.params if param.name == "offsets")
    root_realize = func.body
    root = root_realize.block
    before = list(root.body.seq[:-1]) if isinstance(root.body, tirx.SeqStmt) else []
    tile_loop = root.body.seq[-1] if before else root.body  # the receivers' loop nest comes last
    row_loop = tile_loop.body
    rows = offsets.shape[0] - 1
    row = tile_loop.loop_var * row_loop.extent + row_loop.loop_var
    length = (offsets[row + 1] - offsets[row]).astype("int32")
    stages = list(row_loop.body.seq) if isinstance(row_loop.body, tirx.SeqStmt) else [row_loop.body]
    cut = [tirx.For(stage.loop_var, stage.min, length, stage.kind, stage.body, annotations=stage.annotations)
           if isinstance(stage, tirx.For) and getattr(stage.extent, "name", None) == "longest_run" else stage
           for stage in stages]
    body = tirx.For(row_loop.loop_var, row_loop.min, row_loop.extent, row_loop.kind,
                    tirx.IfThenElse(row < rows, tirx.SeqStmt(cut), None), annotations=row_loop.annotations)
    body = tirx.For(tile_loop.loop_var, tile_loop.min, tile_loop.extent, tile_loop.kind, body,
                    annotations=tile_loop.annotations)
    if before:
        body = tirx.SeqStmt(before + [body])
    block = s_tir.SBlock(root.iter_vars, root.reads, root.writes, root.name_hint, body, root.init,
                         root.alloc_buffers, root.match_buffers, root.annotations)
    realize = s_tir.SBlockRealize(root_realize.iter_values, root_realize.predicate, block)
    return s_tir.Schedule(tvm.IRModule({"main": func.with_body(realize)}))


def _loops_by_axis(sch: s_tir.Schedule, block, path: PathStages, reduction: bool = True) -> dict[str, list]:
    """A path sum's loops under the receiver, before any reorder, by axis: "c" channels, "k"
    components, "s" edges of the run, "r" channel reductions (a reduction's init,
    ``reduction=False``, has only "c" and "k"). compute_at drops the axes of extent 1."""
    axes = [("c", path.y_channels), ("k", path.components)]
    if reduction:
        axes += [("s", None)] + [("r", extent) for extent in path.reductions]
    kept = [axis for axis, extent in axes if extent is None or extent > 1]
    loops = sch.get_loops(block)[2:]
    if len(kept) != len(loops):
        raise RuntimeError(f"unexpected loop nest: axes {axes}, {len(loops)} loops")
    return {kind: [loop for axis, loop in zip(kept, loops) if axis == kind] for kind in ("c", "k", "s", "r")}


def apply_gradient(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """A convolution's per-edge gradients: both gathers inlined, then the schedule of a gradient
    with respect to several arguments over the edges (:func:`tpc.schedule.cpu.apply_joint`)."""
    return cpu.apply_joint(lowered, config, inlined=(GATHER_STAGE, GRAD_GATHER_STAGE))
