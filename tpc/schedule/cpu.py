"""CPU schedules (x86 and ARM): parallel over batch tiles, per-path work under the tile.

The output loop over the batch is split into tiles; tiles run in parallel; every path's
stages are computed at the tile (or per sample inside it) so intermediates stay in cache;
the output components k are unrolled so the coefficient selection folds into constants.
With ``in_place``, each output block is its own stage writing its columns of the output;
their loops over the batch are merged into one, and the paths that sum over no channel are
inlined into them: no per-path buffer, no copy into the output.
"""

from __future__ import annotations

from typing import Any, Mapping

from tvm import s_tir

from tpc.lower import Lowered, PathStages
from tpc.schedule.in_place import IN_PLACE, inlined_paths
from tpc.schedule.space import Knob, SearchSpace, with_defaults

BATCH_TILE = Knob("batch_tile", (1, 2, 4, 8, 16, 32, 64), 8, "samples per parallel task")
UNROLL_COMPONENTS = Knob("unroll_components", (True, False), True, "unroll the loop over output components k")
KNOBS = (
    BATCH_TILE,
    Knob("materialize", ("reused", "all"), "reused",
         "keep the coupling stage z in memory only where it is reused across output channels, or always"),
    UNROLL_COMPONENTS,
    Knob("channel_unroll", (1, 2, 4, 8), 1, "unroll this many channels of each path stage together"),
    Knob("reduction_order", ("outer", "inner"), "outer",
         "loops of a path's channel sum (uvw: u, v) outside its output loops, so weights are read contiguously"),
    Knob("coupling", ("direct", "x2_first"), "direct",
         "couple x1 and x2 term by term, or contract x2 with the coefficients once per sample first"),
    IN_PLACE,
)

MAX_FACTORED_TILE = 16


def _factored_tile_rule(config: Mapping[str, Any]) -> str | None:
    """Why a configuration is invalid: x2-first coupling over a large batch tile takes minutes to build."""
    if config["coupling"] == "x2_first" and config["batch_tile"] > MAX_FACTORED_TILE:
        return f"coupling 'x2_first' needs batch_tile <= {MAX_FACTORED_TILE} (larger tiles take minutes to build)"
    return None


SPACE = SearchSpace("cpu", with_defaults(KNOBS, in_place=True), version=4, rules=(_factored_tile_rule,))
GRADIENT_SPACE = SearchSpace("cpu", KNOBS, version=4, rules=(_factored_tile_rule,))
"""The x1 and x2 gradients' knobs: the product's, with ``in_place`` off by default (in place they ran
0.5 to 0.83x as fast as assembled; the products 1.01 to 1.39x)."""
JOINT_GRADIENT_SPACE = SearchSpace("cpu-joint-gradient", tuple(knob for knob in KNOBS if knob is not IN_PLACE),
                                   version=1, rules=(_factored_tile_rule,))
"""The knobs of a gradient with respect to several arguments: the x1 and x2 gradients' without
``in_place`` (its outputs are one buffer per argument)."""
WEIGHT_GRADIENT_SPACE = SearchSpace("cpu-weight-gradient", (
    BATCH_TILE,
    Knob("inline_z", (False, True), False,
         "compute each path's coupling z per sample in memory, or inline it into the weight-gradient sums "
         "(recomputed for every output channel where the mode reuses it: uvw, weighted uuw)"),
    UNROLL_COMPONENTS,
), version=1)


def default_config() -> dict[str, Any]:
    """The default CPU knob values."""
    return SPACE.default()


def apply(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a lowered product for a CPU with the given knob values.

    ``lowered`` must have been lowered with ``in_place`` as the configuration says
    (:func:`tpc.schedule.lowering_options`).
    """
    config = (GRADIENT_SPACE if lowered.schedule_key in ("x1", "x2") else SPACE).validate(config)
    inlined = inlined_paths(lowered, config)
    sch = s_tir.Schedule(lowered.func)
    materialized = [path for path in lowered.paths if path.reuses_z or config["materialize"] == "all"]
    for path in lowered.paths:
        if path not in materialized:
            sch.compute_inline(sch.get_sblock(path.z))
    for path in inlined:
        sch.compute_inline(sch.get_sblock(path.y))
    # Always parallel: on a single core that costs nothing, and TVM 0.27 kernels whose path
    # stages sit under a serial batch loop crashed at run time.
    # Path stages run per sample inside the tile. (Computing them per whole tile makes TVM
    # 0.27's lowering fail on the ragged last tile of a symbolic batch.)
    anchor = _blocks_per_sample(sch, lowered, config) if lowered.blocks else _output_per_sample(sch, lowered, config)
    _paths_per_sample(sch, lowered, config, anchor, inlined, materialized)
    return sch


def _paths_per_sample(sch: s_tir.Schedule, lowered: Lowered, config: Mapping[str, Any], anchor,
                      inlined: list[PathStages], materialized: list[PathStages]) -> None:
    """Every path stage not inlined computed at ``anchor`` (the loop over one sample), its
    components unrolled and channels unrolled or its channel sum outermost, as ``config`` says."""
    depth = 2
    stages = [(path, path.y) for path in lowered.paths if path not in inlined]
    stages += [(path, path.z) for path in materialized]
    for path, name in stages:  # consumers (y) first, so each z lands before its y
        block = sch.get_sblock(name)
        sch.compute_at(block, anchor)
        axes = path.loop_extents(name)
        if name == path.y and config["reduction_order"] == "outer" and path.sums_channels:
            _reduction_outside(sch, block, depth, axes, config["unroll_components"])
            continue
        _unroll(sch, _loop_named(sch, block, depth, axes, "k"), _loop_named(sch, block, depth, axes, "c"),
                axes[0][1], config)
    for path in lowered.paths:
        if path.factor is not None:
            factor = sch.get_sblock(path.factor)
            sch.compute_at(factor, anchor)
            sch.unroll(sch.get_loops(factor)[-1])


def apply_joint(lowered: Lowered, config: Mapping[str, Any] | None = None,
                inlined: tuple[str, ...] = ()) -> s_tir.Schedule:
    """Schedule a gradient with respect to several arguments (knobs of :data:`JOINT_GRADIENT_SPACE`).

    One parallel loop over batch tiles and one loop over a tile's samples hold every output:
    per sample, each path's stages, then the rows of every gradient. A path's ``z`` that a
    weight-gradient sum reads is kept per sample, so the sum and the path output share it.
    The stages named in ``inlined`` (reads through an index) are inlined first.
    """
    config = JOINT_GRADIENT_SPACE.validate(config)
    sch = s_tir.Schedule(lowered.func)
    for name in inlined:
        sch.compute_inline(sch.get_sblock(name))
    shared = {sch.get(producer).name_hint for name in lowered.sums
              for producer in sch.get_producers(sch.get_sblock(name))}
    materialized = [path for path in lowered.paths
                    if path.reuses_z or config["materialize"] == "all" or path.z in shared]
    for path in lowered.paths:
        if path not in materialized:
            sch.compute_inline(sch.get_sblock(path.z))
    tiles, samples = [], []
    for name in lowered.outputs:
        rows = sch.get_loops(sch.get_sblock(name))[0]
        tile, sample = sch.split(rows, [None, config["batch_tile"]])
        tiles.append(tile)
        samples.append(sample)
    sch.parallel(sch.merge(*tiles) if len(tiles) > 1 else tiles[0])
    anchor = sch.merge(*samples) if len(samples) > 1 else samples[0]
    for name in lowered.sums:
        block = sch.get_sblock(name)
        sch.compute_at(block, anchor)
        if config["unroll_components"] and int(sch.get(block).iter_vars[-1].dom.extent) > 1:
            sch.unroll(sch.get_loops(block)[-1])
    for name in lowered.channel_sums:  # [b, 1, pairs] summed over channels: the channels outermost
        block = sch.get_sblock(name)
        sch.compute_at(block, anchor)
        extents = [int(var.dom.extent) for var in sch.get(block).iter_vars[1:]]
        axes = [("c", extents[0]), ("k", extents[1])] + [("r", n) for n in extents[2:]]
        _reduction_outside(sch, block, 2, axes, config["unroll_components"])
    _paths_per_sample(sch, lowered, config, anchor, [], materialized)
    return sch


def _output_per_sample(sch: s_tir.Schedule, lowered: Lowered, config: Mapping[str, Any]):
    """Tiles of the assembling ``out`` stage in parallel; the loop over a tile's samples."""
    batch_loop, _ = sch.get_loops(sch.get_sblock(lowered.out))
    tile_loop, sample_loop = sch.split(batch_loop, [None, config["batch_tile"]])
    sch.parallel(tile_loop)
    return sample_loop


def _blocks_per_sample(sch: s_tir.Schedule, lowered: Lowered, config: Mapping[str, Any]):
    """The output blocks under one parallel loop over tiles and one loop over a tile's samples,
    each block's columns split into channels and (unrolled) components; the sample loop."""
    tiles = []
    for block in lowered.blocks:
        rows, columns = sch.get_loops(sch.get_sblock(block.stage))
        tile, _ = sch.split(rows, [None, config["batch_tile"]])
        tiles.append(tile)
        component = None
        if block.components > 1:
            columns, component = sch.split(columns, [None, block.components])
        _unroll(sch, component, columns, int(sch.get(columns).extent), config)
    tile = sch.merge(*tiles) if len(tiles) > 1 else tiles[0]
    sch.parallel(tile)
    samples = [sch.get_loops(sch.get_sblock(block.stage))[1] for block in lowered.blocks]
    return sch.merge(*samples) if len(samples) > 1 else samples[0]


def _unroll(sch: s_tir.Schedule, component, channel, channels: int, config: Mapping[str, Any]) -> None:
    """Unroll a stage's loop over components (knob unroll_components) and ``channel_unroll``
    channels together, where that factor divides the stage's ``channels``."""
    if config["unroll_components"] and component is not None:
        sch.unroll(component)
    factor = config["channel_unroll"]
    if factor > 1 and channel is not None and channels % factor == 0:
        _, inner = sch.split(channel, [None, factor])
        sch.unroll(inner)


def _reduction_outside(sch: s_tir.Schedule, block, depth: int, axes: list[tuple[str, int]], unroll: bool) -> None:
    """Run a path's channel sum outermost: ``for u, v: for k: for w: y[k, w] += W[u, v, w] z[u, v, k]``.

    The stage's buffer is laid out (k, channel) so the innermost loop walks weights and
    outputs contiguously; the initialisation becomes its own loop nest.
    """
    by_axis = _loops_by_axis(sch, block, depth, axes)
    sch.transform_layout(block, ("write", 0), lambda b, c, k: (b, k, c))
    sch.decompose_reduction(block, sch.get_loops(block)[depth])
    sch.reorder(*(by_axis["r"] + by_axis["k"] + by_axis["c"]))
    if unroll and by_axis["k"]:
        sch.unroll(by_axis["k"][0])


def _loop_named(sch: s_tir.Schedule, block, depth: int, axes: list[tuple[str, int]], name: str):
    """The (first) loop of axis ``name`` below the first ``depth`` loops, or None if it has extent 1."""
    loops = _loops_by_axis(sch, block, depth, axes)[name]
    return loops[0] if loops else None


def _loops_by_axis(sch: s_tir.Schedule, block, depth: int, axes: list[tuple[str, int]]) -> dict[str, list]:
    """The loops below the first ``depth``, grouped by axis kind ("c", "k", "r") in loop order.

    compute_at creates one loop per block axis in order and drops axes of extent 1.
    """
    loops = sch.get_loops(block)[depth:]
    kept = [axis for axis, extent in axes if extent > 1]
    if len(kept) != len(loops):
        raise RuntimeError(f"unexpected loop nest: axes {axes}, {len(loops)} loops")
    return {kind: [loop for axis, loop in zip(kept, loops) if axis == kind] for kind in ("c", "k", "r")}


def apply_per_sample(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a lowered weight gradient (knobs of :data:`WEIGHT_GRADIENT_SPACE`): batch tiles
    in parallel, every stage computed for one sample at a time inside the tile."""
    config = WEIGHT_GRADIENT_SPACE.validate(config)
    sch = s_tir.Schedule(lowered.func)
    batch_loop = sch.get_loops(sch.get_sblock(lowered.out))[0]
    tile_loop, sample_loop = sch.split(batch_loop, [None, config["batch_tile"]])
    sch.parallel(tile_loop)
    if config["inline_z"]:  # the stages out does not read: each path's z, read by its sum
        for block in _stages(sch, lowered):
            if all(sch.get(consumer).name_hint != lowered.out for consumer in sch.get_consumers(block)):
                sch.compute_inline(block)
    for block in reversed(_stages(sch, lowered)):  # consumers first, so each producer lands before its consumer
        sch.compute_at(block, sample_loop)
        # Every stage's last axis is the output components k (a spatial axis of z, the sum's
        # innermost reduction); compute_at drops it when its extent is 1.
        if config["unroll_components"] and int(sch.get(block).iter_vars[-1].dom.extent) > 1:
            sch.unroll(sch.get_loops(block)[-1])
    return sch


def _stages(sch: s_tir.Schedule, lowered: Lowered) -> list:
    """The blocks before ``out``, producers first."""
    return [block for block in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(block).name_hint != lowered.out]
