"""CPU schedule of MACE's symmetric contraction (:mod:`tpc.lower.contraction`): tiles of nodes in
parallel, per node the features transposed once, then every output with its components
unrolled and its channels innermost, vectorized."""

from __future__ import annotations

from typing import Any, Mapping

from tvm import s_tir

from tpc.lower import Lowered
from tpc.lower.contraction import COMPONENT_STAGE, TANGENT_STAGE, TRANSPOSED_STAGE
from tpc.schedule.space import Knob, SearchSpace

SPACE = SearchSpace("cpu-contraction", (
    Knob("node_tile", (1, 2, 4, 8, 16), 4, "nodes per parallel task"),
    Knob("channel_lanes", (4, 8, 16, 32), 16, "channels per vector operation"),
), version=1)


def apply(lowered: Lowered, config: Mapping[str, Any] | None = None) -> s_tir.Schedule:
    """Schedule a lowered contraction, one of its gradients or a tangent op (knobs of :data:`SPACE`)."""
    config = SPACE.validate(config)
    sch = s_tir.Schedule(lowered.func)
    tiles, samples = [], []
    for name in lowered.outputs:
        block = sch.get_sblock(name)
        node, channel, component = sch.get_loops(block)
        sch.reorder(node, component, channel)
        sch.unroll(component)
        _vectorize(sch, channel, config["channel_lanes"])
        tile, sample = sch.split(node, [None, config["node_tile"]])
        tiles.append(tile)
        samples.append(sample)
    sch.parallel(sch.merge(*tiles) if len(tiles) > 1 else tiles[0])
    anchor = sch.merge(*samples) if len(samples) > 1 else samples[0]
    stages = {sch.get(block).name_hint: block for block in sch.get_child_blocks(sch.get_sblock("root"))}
    for block in reversed([block for name, block in stages.items() if name.startswith(COMPONENT_STAGE)]):
        sch.compute_at(block, anchor)
        _vectorize(sch, sch.get_loops(block)[-1], config["channel_lanes"])
    for name in (TANGENT_STAGE, TRANSPOSED_STAGE):
        if name in stages:
            sch.compute_at(stages[name], anchor)
    return sch


def _vectorize(sch: s_tir.Schedule, channel, lanes: int) -> None:
    """Vectorize a channel loop by ``lanes`` (the whole loop when it is that short)."""
    extent = int(sch.get(channel).extent)
    if extent % lanes == 0 and extent > lanes:
        _, inner = sch.split(channel, [None, lanes])
        sch.vectorize(inner)
    elif extent <= lanes:
        sch.vectorize(channel)
