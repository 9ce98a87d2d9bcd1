"""The output workspace of tpc.torch: memory reused only once nothing holds it."""

import numpy as np
import torch

import tpc
import tpc.torch
from tpc.torch.workspace import MIN_BYTES, Workspace
from tpc.verify import random_inputs

SHAPE = (MIN_BYTES // 4 // 256, 256)


def test_a_buffer_is_reused_only_when_no_tensor_or_view_holds_it():
    workspace = Workspace()
    first = workspace.empty(SHAPE, "float32")
    view = first[3:]
    second = workspace.empty(SHAPE, "float32")
    assert second.data_ptr() != first.data_ptr()
    del first
    assert workspace.empty(SHAPE, "float32").data_ptr() != view.data_ptr() - 3 * SHAPE[1] * 4  # the view holds it
    pointer = second.data_ptr()
    del second
    assert workspace.empty(SHAPE, "float32").data_ptr() == pointer
    assert workspace.empty(SHAPE, "float64").dtype == torch.float64
    small = workspace.empty((4, 4), "float32")
    assert workspace.kept_bytes == 3 * SHAPE[0] * SHAPE[1] * 4 + SHAPE[0] * SHAPE[1] * 8 and small.shape == (4, 4)


def test_outputs_alive_in_autograd_keep_their_values_through_later_calls():
    """A forward output saved for backward (here by the square) is not handed out again."""
    tp = tpc.ChannelwiseTensorProduct("64x0e+64x1o", "0e+1o", 1, shared_weights=True)
    module = tpc.torch.TensorProduct(tp).double()
    rng = np.random.default_rng(0)
    x1, x2, _ = (None if a is None else torch.tensor(a) for a in random_inputs(tp, 2000, rng))
    x1.requires_grad_(True)
    y = module(x1, x2)
    kept = y.detach().clone()
    loss = y.square().sum()
    for _ in range(3):
        other = module(torch.randn_like(x1), x2)
        assert other.data_ptr() != y.data_ptr()
    assert torch.equal(y.detach(), kept)
    (grad,) = torch.autograd.grad(loss, x1)
    (expected,) = torch.autograd.grad(module(x1, x2).square().sum(), x1)
    assert torch.equal(grad, expected)
