"""Fused kernels (a product with its gather and/or scatter-sum) against the float64 reference,
for every fusion, several modes and every knob of the fused schedule."""

import numpy as np
import pytest

import tpc
from tpc.build import compile_convolution
from tpc.lower.convolution import lower_convolution
from tpc.ops import FUSIONS, Fused
from tpc.schedule.convolution import GATHER_SCATTER_SPACE
from tpc.testing import random_convolution
from tpc.verify import relative_error, tolerance

UVU = tpc.ChannelwiseTensorProduct("3x0e+2x1o+2x2e", "0e+1o+2e", 2)
UVW_SHARED = tpc.FullyConnectedTensorProduct("2x0e+2x1o", "0e+1o", "3x0e+2x1o+1x1e")
MIXED = tpc.TensorProduct("2x0e+2x1o", "2x0e+1x1o", "2x0e+2x1o+2x1e",
                          [(0, 1, 1, "uvu", True), (1, 1, 0, "uvu", False), (1, 0, 1, "uuu", False),
                           (1, 1, 2, "uvu", True)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("tp", [UVU, UVW_SHARED, MIXED], ids=["uvu", "uvw-shared", "mixed"])
def test_fused_kernels_match_the_reference(rng, tp, fusion, dtype):
    kernel = compile_convolution(tp, fusion, dtype=dtype)
    for edges, nodes in ((200, 17), (5, 40)):  # busy receivers; mostly empty ones
        arguments, expected = random_convolution(tp, fusion, edges, nodes, rng, dtype)
        got = kernel(**arguments)
        assert got.dtype == np.dtype(dtype)
        assert relative_error(got, expected) < tolerance(dtype)


@pytest.mark.parametrize("config", [
    {"edge_loop": "inner", "merge_paths": False, "x1_layout": "mul_ir"}, {"merge_paths": False},
    {"channel_unroll": 2, "x1_layout": "mul_ir"}, {"receiver_tile": 1},
    {"unroll_components": True, "receiver_tile": 32},
    {"x1_layout": "mul_ir", "unroll_components": True, "merge_paths": False},
])
def test_every_knob_of_the_fused_schedule_computes_the_same(rng, config):
    kernel = compile_convolution(UVU, "gather+scatter", dtype="float64", schedule=config)
    assert kernel.schedule.source == "explicit" and kernel.schedule.config == GATHER_SCATTER_SPACE.validate(config)
    arguments, expected = random_convolution(UVU, "gather+scatter", 300, 29, rng, "float64")
    assert relative_error(kernel(**arguments), expected) < tolerance("float64")


@pytest.mark.parametrize("tp", [UVU, UVW_SHARED, MIXED], ids=["uvu", "uvw-shared", "mixed"])
def test_gathered_products_write_their_output_blocks_in_place(rng, tp):
    kernel = compile_convolution(tp, "gather", dtype="float64", schedule={"in_place": True, "batch_tile": 16})
    arguments, expected = random_convolution(tp, "gather", 45, 11, rng, "float64")
    assert relative_error(kernel(**arguments), expected) < tolerance("float64")
    with pytest.raises(ValueError, match="in_place writes one output row per sample"):
        lower_convolution(tp, "gather+scatter", in_place=True)


def test_zero_edges_give_zero_sums_and_bad_arguments_are_named(rng):
    kernel = compile_convolution(UVU, "gather+scatter", dtype="float64")
    arguments, _ = random_convolution(UVU, "gather+scatter", 0, 6, rng, "float64")
    np.testing.assert_array_equal(kernel(**arguments), np.zeros((6, UVU.irreps_out.dim)))
    arguments, _ = random_convolution(UVU, "gather+scatter", 20, 6, rng, "float64")
    with pytest.raises(ValueError, match="needs offsets"):
        kernel(arguments["x1"], arguments["x2"], arguments["weight"], senders=arguments["senders"])
    with pytest.raises(ValueError, match="senders must be a one-dimensional int64 array"):
        kernel(**{**arguments, "senders": arguments["senders"].astype(np.int32)})
    with pytest.raises(ValueError, match="x1 must have shape"):
        kernel(**{**arguments, "x1": arguments["x1"][:, :3].copy()})
    with pytest.raises(TypeError, match="compiled for float64"):
        kernel(**{**arguments, "x2": arguments["x2"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"senders has values outside \[0, 6\)"):
        kernel(**{**arguments, "senders": arguments["senders"] + 6})
    for offsets in (arguments["offsets"][::-1].copy(), arguments["offsets"] + 1, arguments["offsets"][:-1].copy()):
        with pytest.raises(ValueError, match="offsets must be a one-dimensional int64 array rising from 0"):
            kernel(**{**arguments, "offsets": offsets})
    gather_only = compile_convolution(UVU, "gather", dtype="float64")
    with pytest.raises(ValueError, match="takes no offsets"):
        gather_only(**arguments)
    with pytest.raises(ValueError, match="unknown fusion"):
        compile_convolution(UVU, "scatter+gather")
    with pytest.raises(ValueError, match="x1_layout 'ir_mul' vectorizes the channel loop"):
        compile_convolution(UVU, "gather+scatter", schedule={"edge_loop": "inner", "merge_paths": False})
    with pytest.raises(ValueError, match="needs the gather fused"):
        lower_convolution(UVU, "scatter", x1_layout="ir_mul")
    with pytest.raises(ValueError, match=r"fused with its gather is computed with \['cg'\] only, not 'grid'"):
        tpc.build.choose_schedule(tpc.build.CacheKey(Fused(UVU, "gather"), None, "float32", tpc.resolve_target("host")),
                                  None, "grid")
