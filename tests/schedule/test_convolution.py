"""The fused scatter schedule's loops over each receiver's run of edges."""

import pytest
from tvm import s_tir, tirx

import tpc
from tpc.lower.convolution import lower_convolution
from tpc.schedule import apply_schedule

UVU = tpc.ChannelwiseTensorProduct("3x0e+2x1o+2x2e", "0e+1o+2e", 2)


def run_loops(stmt, guarded: bool = False) -> list[bool]:
    """For every loop whose extent reads ``offsets``: whether it runs under an if-guard."""
    if isinstance(stmt, tirx.IfThenElse):
        return run_loops(stmt.then_case, True) + (run_loops(stmt.else_case, True) if stmt.else_case else [])
    if isinstance(stmt, tirx.SeqStmt):
        return [found for part in stmt.seq for found in run_loops(part, guarded)]
    if isinstance(stmt, s_tir.SBlockRealize):
        return run_loops(stmt.block.body, guarded)
    found = [guarded] if isinstance(stmt, tirx.For) and "offsets" in str(stmt.extent) else []
    body = getattr(stmt, "body", None)
    return found + (run_loops(body, guarded) if body is not None else [])


@pytest.mark.parametrize("config", [{"merge_paths": True}, {"merge_paths": False}, {"receiver_tile": 32},
                                    {"edge_loop": "outer", "merge_paths": False, "x1_layout": "mul_ir"}])
def test_run_loops_read_offsets_only_for_rows_that_exist(config):
    # A ragged last tile has rows past the end, where a run loop's extent would read offsets
    # out of bounds (a merged loop runs for seconds on such garbage extents).
    lowered = lower_convolution(UVU, "gather+scatter", "float32", x1_layout=config.get("x1_layout", "ir_mul"))
    guarded = run_loops(apply_schedule(lowered, "cpu", config).mod["main"].body)
    assert guarded, "the schedule cuts every run loop to its receiver's run length"
    assert all(guarded)
