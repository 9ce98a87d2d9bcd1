"""tpc.torch.Convolution against e3nn's conv_tp + scatter_sum: values, first and second
derivatives (float64), the same bits for any thread count, TorchScript, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

import tpc
import tpc.torch
from tpc.testing import e3nn_module
from tpc.verify import relative_error

TOLERANCE = 1e-10
SHAPES = {"mace-small": tpc.mace_convolution("6x0e+6x1o+6x2e", 3),
          "mace-conv-0e1o": tpc.presets.get("mace-conv-0e1o").tp}


def _graph(tp, nodes: int, edges: int, seed: int, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    node_feats = torch.tensor(rng.standard_normal((nodes, tp.irreps_in1.dim)), dtype=dtype, requires_grad=True)
    edge_attrs = torch.tensor(rng.standard_normal((edges, tp.irreps_in2.dim)), dtype=dtype, requires_grad=True)
    edge_weights = torch.tensor(rng.standard_normal((edges, tp.weight_numel)), dtype=dtype, requires_grad=True)
    senders = np.sort(rng.integers(0, nodes, edges))  # sorted by sender, as mace's neighbour lists
    edge_index = torch.tensor(np.stack([senders, rng.integers(0, nodes, edges)]))
    return [node_feats, edge_attrs, edge_weights], edge_index


def _e3nn_convolution(tp, edge_index, nodes):
    module = e3nn_module(tp)

    def convolution(node_feats, edge_attrs, edge_weights):
        messages = module(node_feats[edge_index[0]], edge_attrs, edge_weights)
        return torch.zeros((nodes, messages.shape[1]), dtype=messages.dtype).index_add(0, edge_index[1], messages)

    return convolution


def _derivatives(function, arguments, upstream, directions):
    """Values, gradients of <upstream, out>, and gradients of sum <direction, gradient> with
    respect to every input and the upstream."""
    out = function(*arguments)
    first = torch.autograd.grad(out, arguments, grad_outputs=upstream, create_graph=True)
    mixed = sum((derivative * direction).sum() for derivative, direction in zip(first, directions))
    second = torch.autograd.grad(mixed, [*arguments, upstream], allow_unused=True, materialize_grads=True)
    return [value.detach() for value in (out, *first, *second)]


@pytest.mark.parametrize("name", SHAPES)
def test_values_first_and_second_derivatives_equal_e3nn(name):
    tp, nodes = SHAPES[name], 9
    arguments, edge_index = _graph(tp, nodes, 60, 1)
    rng = np.random.default_rng(2)
    upstream = torch.tensor(rng.standard_normal((nodes, tp.irreps_out.dim)), requires_grad=True)
    directions = [torch.tensor(rng.standard_normal(a.shape)) for a in arguments]
    module = tpc.torch.Convolution(tp)
    ours = _derivatives(lambda *a: module(*a, edge_index), arguments, upstream, directions)
    theirs = _derivatives(_e3nn_convolution(tp, edge_index, nodes), arguments, upstream, directions)
    labels = ["out", "d/dnode_feats", "d/dedge_attrs", "d/dedge_weights", "d2/dnode_feats", "d2/dedge_attrs",
              "d2/dedge_weights", "d2/dupstream"]
    for label, a, b in zip(labels, ours, theirs):
        assert relative_error(a.numpy(), b.numpy()) < TOLERANCE, label


THREADS_RUNNER = """
import sys
import torch
sys.path.insert(0, sys.argv[1])
import test_convolution as case
torch.set_num_threads(int(sys.argv[2]))
torch.save(case.all_results(), sys.argv[3])
"""


def all_results():
    """Every value and derivative of a float32 convolution (900 edges, 40 nodes, fixed seeds)."""
    tp = tpc.presets.get("mace-conv-0e1o").tp
    arguments, edge_index = _graph(tp, 40, 900, 3, torch.float32)
    rng = np.random.default_rng(4)
    upstream = torch.tensor(rng.standard_normal((40, tp.irreps_out.dim)), dtype=torch.float32, requires_grad=True)
    directions = [torch.tensor(rng.standard_normal(a.shape), dtype=torch.float32) for a in arguments]
    module = tpc.torch.Convolution(tp)
    return _derivatives(lambda *a: module(*a, edge_index), arguments, upstream, directions)


def test_the_same_bits_twice_and_for_one_or_two_threads(tmp_path):
    """Each run in a fresh process whose TVM and torch thread pools have 1 or 2 threads."""
    import os
    import subprocess
    import sys

    runs = []
    for index, threads in enumerate((1, 2, 2)):
        path = tmp_path / f"run{index}.pt"
        env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", THREADS_RUNNER, str(Path(__file__).parent), str(threads), str(path)],
                       check=True, timeout=600, env=env)
        runs.append(torch.load(path))
    for other in runs[1:]:
        assert len(other) == 8 and all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_scripted_and_bad_input():
    tp = SHAPES["mace-small"]
    module = tpc.torch.Convolution(tp)
    (node_feats, edge_attrs, edge_weights), edge_index = _graph(tp, 5, 12, 5)
    scripted = torch.jit.script(module)
    assert torch.equal(scripted(node_feats, edge_attrs, edge_weights, edge_index),
                       module(node_feats, edge_attrs, edge_weights, edge_index))
    with pytest.raises(ValueError, match=r"receivers has values outside \[0, 5\)"):
        module(node_feats, edge_attrs, edge_weights, edge_index + torch.tensor([[0], [5]]))
    with pytest.raises(ValueError, match="senders must be an int64 tensor"):
        module(node_feats, edge_attrs, edge_weights, edge_index.int())
    with pytest.raises(ValueError, match="edge_weights must be"):
        module(node_feats, edge_attrs, edge_weights[:, :3], edge_index)
    with pytest.raises(ValueError, match="per-edge weights"):
        tpc.torch.Convolution(tpc.ChannelwiseTensorProduct("2x0e", "0e", 0, shared_weights=True))
