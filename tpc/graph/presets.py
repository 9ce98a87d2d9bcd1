"""Whole message-passing blocks as tensor-product graphs, for :func:`tpc.presets.get_graph`.

Kept apart from :mod:`tpc.presets` because graphs import networkx, which ``import tpc`` must not;
:mod:`tpc.presets` imports this module only when a graph preset is asked for.
"""

from __future__ import annotations

from tpc.graph.graph import Graph
from tpc.graph.operations import Linear
from tpc.ops import TensorProduct, mace_product


def mace_interaction(channels: int = 32, lmax: int = 2, sh_lmax: int = 2, radial: int = 8, radial_hidden: int = 32,
                     cutoff: float = 5.0, dtype: str = "float32") -> tuple[Graph, TensorProduct]:
    """A MACE interaction block and its channelwise product.

    Node features ``h`` are ``channels x (0e+1o+2e+...)`` up to ``lmax``. Each edge's vector is
    ``pos[receiver] - pos[sender] + shift`` (``shifts`` are the periodic-image offsets); its
    harmonics up to ``sh_lmax`` and a radial MLP on ``radial`` Bessel functions (two hidden
    silu layers of ``radial_hidden``) feed the channelwise product of the sender's linearly
    mixed features. Messages are summed onto the receivers ("aggregated"), mapped back to the
    node irreps, gated by silu'd scalars (one per irrep copy) and added to a linear skip of
    ``h`` ("out"). Every linear has shared weights, a graph input ``w_*``.
    """
    tp = mace_product(channels, lmax, sh_lmax)
    node_irreps = tp.irreps_in1
    radial_irreps, hidden_irreps = f"{radial}x0e", f"{radial_hidden}x0e"
    weight_irreps = f"{tp.weight_numel}x0e"
    gate_irreps = f"{node_irreps.num_irreps}x0e"

    g = Graph()
    pos = g.input("pos", ("nodes", 3), dtype)
    shifts = g.input("shifts", ("edges", 3), dtype)
    h = g.input("h", ("nodes", node_irreps), dtype)
    senders = g.input("senders", ("edges",), "int64")
    receivers = g.input("receivers", ("edges",), "int64")
    linears = {
        "w_up": Linear(node_irreps, node_irreps),
        "w_radial1": Linear(radial_irreps, hidden_irreps),
        "w_radial2": Linear(hidden_irreps, hidden_irreps),
        "w_radial3": Linear(hidden_irreps, weight_irreps),
        "w_out": Linear(tp.irreps_out, node_irreps),
        "w_gate": Linear(tp.irreps_out, gate_irreps),
        "w_skip": Linear(node_irreps, node_irreps),
    }
    w = {name: g.input(name, (linear.weight_numel,), dtype) for name, linear in linears.items()}

    up = g.linear(h, node_irreps, w["w_up"], name="up")
    difference = g.elementwise("sub", g.gather(pos, receivers, name="receiver_pos"),
                               g.gather(pos, senders, name="sender_pos"), name="difference")
    vectors = g.elementwise("add", difference, shifts, name="vectors")
    sh = g.spherical_harmonics(vectors, sh_lmax, normalize=True, normalization="component", name="sh")

    basis = g.radial_basis(vectors, radial, cutoff, name="radial_basis")
    hidden1 = g.elementwise("silu", g.linear(basis, hidden_irreps, w["w_radial1"], name="radial_linear1"),
                            name="radial_hidden1")
    hidden2 = g.elementwise("silu", g.linear(hidden1, hidden_irreps, w["w_radial2"], name="radial_linear2"),
                            name="radial_hidden2")
    edge_weights = g.linear(hidden2, weight_irreps, w["w_radial3"], name="edge_weights")

    sender_features = g.gather(up, senders, name="sender_features")
    messages = g.tensor_product(sender_features, sh, edge_weights, tp, name="messages")
    aggregated = g.scatter_sum(messages, receivers, "nodes", name="aggregated")

    down = g.linear(aggregated, node_irreps, w["w_out"], name="down")
    gates = g.elementwise("silu", g.linear(aggregated, gate_irreps, w["w_gate"], name="gate_scalars"), name="gates")
    gated = g.elementwise("mul", down, gates, name="gated")
    skip = g.linear(h, node_irreps, w["w_skip"], name="skip")
    g.output("out", g.elementwise("add", gated, skip, name="out"))
    g.output("aggregated", aggregated)
    return g, tp
