"""Named problem sets shared by the CLI, the tests and the benchmarks: tensor products
(:func:`get`), MACE product bases (:func:`get_contraction`) and whole message-passing blocks
as graphs (:func:`get_graph`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from tpc.irreps import Irrep, Irreps
from tpc.ops import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    SymmetricContraction,
    TensorProduct,
    mace_convolution,
    mace_product,
)

if TYPE_CHECKING:
    from tpc.graph import Graph


@dataclass(frozen=True)
class Preset:
    """A tensor product with the batch size it is usually run at."""

    name: str
    tp: TensorProduct
    batch: int
    description: str


def _gaunt(lmax: int) -> TensorProduct:
    signal = Irreps.spherical_harmonics(lmax)
    return GauntTensorProduct(signal, signal, lmax)


REFERENCE_EDGES = 7598
"""Edges of the MACE reference system (``tpc.torch.mace.example_atoms()``: 27 acetamide molecules,
243 atoms) at mace's r_max of 5 Angstrom, counted by mace's own ``AtomicData.from_config`` (and
by ``ase.neighborlist.neighbor_list``): the batch of the ``mace-conv-*`` presets."""

REFERENCE_NODES = 243
"""Atoms of the MACE reference system: the node count of the ``mace-product-*`` presets."""

_MACE_MODEL = "mace-torch 0.3.16 ScaleShiftMACE, residual interactions, max_ell 3"


def nequip_convolutions(num_features: int = 32, l_max: int = 1, parity: bool = True,
                        num_layers: int = 4) -> list[TensorProduct]:
    """The convolution of each interaction layer of NequIP's ``NequIPGNNModel``, first layer first.

    The defaults are the model's own defaults (nequip 0.19, ``nequip/model/nequip_models.py``),
    which ``configs/tutorial.yaml`` of github.com/mir-group/nequip also sets: 4 layers, l_max 1,
    parity true, 32 features. As nequip builds it: the node features start as the type
    embedding ``num_features x 0e``; every layer but the last has the hidden irreps
    ``num_features x (0e, 0o, 1e, 1o, ...)`` (l outer, even first; one parity per l without
    ``parity``), the last only ``num_features x 0e``; a layer keeps the hidden irreps some path
    of (its input x the harmonics ``0e+1o+...`` up to l_max) reaches (``ConvNetLayer``), its
    convolution outputs the gate's input (scalars, one gate scalar per gated block, gated
    blocks) and the ``InteractionBlock``'s product is MACE's construction (mace's is based on
    nequip's): uvu, one output block per path, sorted, per-edge weights. (``configs/example.yaml``
    left the repository in April 2025, commit 3328d06e; its last release, v0.6.2, set l_max 2.)

    Args:
        num_features: multiplicity of every hidden irrep.
        l_max: the highest degree of the features and of the edge harmonics.
        parity: features of both parities (else parity (-1)**l only).
        num_layers: interaction layers.

    Returns:
        One spec per layer, each equal to that layer's ``InteractionBlock`` product as nequip builds it.
    """
    harmonics = Irreps.spherical_harmonics(l_max)
    parities = (lambda l: (1, -1)) if parity else (lambda l: ((-1) ** l,))
    hidden = Irreps([(num_features, Irrep(l, p)) for l in range(l_max + 1) for p in parities(l)])
    features = Irreps([(num_features, Irrep("0e"))])
    products = []
    for layer in range(num_layers):
        layer_hidden = hidden if layer < num_layers - 1 else Irreps([(num_features, Irrep("0e"))])
        reachable = {ir for _, ir1 in features for _, ir2 in harmonics for ir in ir1 * ir2}
        scalars = Irreps([(mul, ir) for mul, ir in layer_hidden if ir.l == 0 and ir in reachable])
        gated = Irreps([(mul, ir) for mul, ir in layer_hidden if ir.l > 0 and ir in reachable])
        gate = Irrep("0e") if Irrep("0e") in reachable else Irrep("0o")
        conv_out = scalars + Irreps([(mul, gate) for mul, _ in gated]) + gated
        products.append(mace_convolution(features, l_max, target_irreps=conv_out))
        features = scalars + gated
    return products


_BUILDERS: dict[str, tuple[Callable[[], TensorProduct], int, str]] = {
    **{
        f"mace-l{L}": (lambda L=L: mace_product(128, L, 3), 10000,
                       f"MACE convolution: 128x(0e..{L}) node features x harmonics 0e..3o -> l <= {L}, uvu")
        for L in (1, 2, 3)
    },
    "mace-conv-0e": (lambda: mace_convolution("128x0e", 3), REFERENCE_EDGES,
                     f"MACE conv_tp ({_MACE_MODEL}), input 128x0e: layer 0 of every model, both layers of hidden "
                     "128x0e; x harmonics 0e+1o+2e+3o, 4 uvu paths"),
    "mace-conv-0e1o": (lambda: mace_convolution("128x0e+128x1o", 3), REFERENCE_EDGES,
                       f"MACE conv_tp ({_MACE_MODEL}), hidden 128x0e+128x1o, layer 1: input 128x0e+128x1o x "
                       "harmonics 0e+1o+2e+3o, 10 uvu paths"),
    "mace-conv-0e1o2e": (lambda: mace_convolution("128x0e+128x1o+128x2e", 3), REFERENCE_EDGES,
                         f"MACE conv_tp ({_MACE_MODEL}), hidden 128x0e+128x1o+128x2e, layer 1: input "
                         "128x0e+128x1o+128x2e x harmonics 0e+1o+2e+3o, 17 uvu paths"),
    "mace-small-l2": (lambda: mace_product(64, 2, 2), 10000,
                      "MACE convolution: 64x(0e+1o+2e) x harmonics 0e+1o+2e -> l <= 2, uvu"),
    "nequip": (
        lambda: ChannelwiseTensorProduct("64x0e+64x0o+64x1o+64x1e+64x2e+64x2o", Irreps.spherical_harmonics(2), 2),
        10000,
        "NequIP convolution: 64 channels of both parities up to l=2 x harmonics 0e+1o+2e -> l <= 2, uvu",
    ),
    "nequip-default": (
        lambda: nequip_convolutions()[2],
        10000,
        "NequIP default model (NequIPGNNModel's defaults, set also by configs/tutorial.yaml of mir-group/nequip "
        "0.19: 32 features, l_max 1, parity, 4 layers), layer 2 of 0-3, its largest convolution: "
        "32x0e+32x1e+32x1o x harmonics 0e+1o, 8 uvu paths",
    ),
    "fc-small": (
        lambda: FullyConnectedTensorProduct("16x0e+16x1o+16x2e", "16x0e+16x1o", "32x0e+32x1o+32x2e"),
        1000,
        "fully connected (uvw): 16x(0e+1o+2e) x 16x(0e+1o) -> 32x(0e+1o+2e), shared weights",
    ),
    **{
        f"gaunt-L{L}": (lambda L=L: _gaunt(L), 10000,
                        f"Gaunt product of two single-channel signals of degree <= {L}, output degree <= {L}")
        for L in range(2, 11)
    },
}


def names() -> list[str]:
    """Names of all presets."""
    return list(_BUILDERS)


def get(name: str) -> Preset:
    """The preset called ``name``; unknown names raise ValueError listing the valid ones."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(_BUILDERS)}")
    build, batch, description = _BUILDERS[name]
    return Preset(name, build(), batch, description)


@dataclass(frozen=True)
class ContractionPreset:
    """A MACE product basis with the node count it is usually run at."""

    name: str
    spec: SymmetricContraction
    nodes: int
    description: str


def _mace_product_basis(irreps_out: str) -> SymmetricContraction:
    """The product basis of a 128-channel mace model with max_ell 3 and 4 elements (the reference
    system's H, C, N, O), in mace's basis without cuequivariance."""
    return SymmetricContraction("128x0e+128x1o+128x2e+128x3o", irreps_out, 3, 4)


_CONTRACTION_BUILDERS: dict[str, tuple[Callable[[], SymmetricContraction], int, str]] = {
    "mace-product-0e": (lambda: _mace_product_basis("128x0e"), REFERENCE_NODES,
                        f"MACE product basis ({_MACE_MODEL}, correlation 3, 4 elements): 128x(0e+1o+2e+3o) -> "
                        "128x0e, the last layer of every model and both layers of hidden 128x0e"),
    "mace-product-0e1o": (lambda: _mace_product_basis("128x0e+128x1o"), REFERENCE_NODES,
                          f"MACE product basis ({_MACE_MODEL}, correlation 3, 4 elements): 128x(0e+1o+2e+3o) -> "
                          "128x0e+128x1o, layer 0 of hidden 128x0e+128x1o"),
    "mace-product-0e1o2e": (lambda: _mace_product_basis("128x0e+128x1o+128x2e"), REFERENCE_NODES,
                            f"MACE product basis ({_MACE_MODEL}, correlation 3, 4 elements): 128x(0e+1o+2e+3o) "
                            "-> 128x0e+128x1o+128x2e, layer 0 of hidden 128x0e+128x1o+128x2e"),
}


def contraction_names() -> list[str]:
    """Names of all product-basis presets."""
    return list(_CONTRACTION_BUILDERS)


def get_contraction(name: str) -> ContractionPreset:
    """The product-basis preset called ``name``; unknown names raise ValueError listing the valid ones.

    >>> get_contraction("mace-product-0e1o").spec.correlation
    3
    """
    if name not in _CONTRACTION_BUILDERS:
        raise ValueError(f"unknown product-basis preset {name!r}; valid ones: {', '.join(_CONTRACTION_BUILDERS)}")
    build, nodes, description = _CONTRACTION_BUILDERS[name]
    return ContractionPreset(name, build(), nodes, description)


@dataclass(frozen=True)
class GraphPreset:
    """A tensor-product graph with typical sizes of its symbolic dims (e.g. nodes, edges)."""

    name: str
    graph: "Graph"
    sizes: dict[str, int]
    description: str


def _mace_interaction(channels: int, lmax: int) -> "Graph":
    """The MACE interaction graph, harmonics up to ``lmax`` too (imported here: networkx)."""
    from tpc.graph.presets import mace_interaction

    return mace_interaction(channels=channels, lmax=lmax, sh_lmax=lmax)[0]


_GRAPH_BUILDERS: dict[str, tuple[Callable[[], "Graph"], dict[str, int], str]] = {
    "mace-interaction-l2": (
        lambda: _mace_interaction(32, 2),
        {"nodes": 2000, "edges": 60000},
        "MACE interaction block: 32x(0e+1o+2e) node features, harmonics 0e+1o+2e, radial MLP on 8 Bessel "
        "functions, channelwise product, scatter-sum, gated linear down, linear skip",
    ),
}


def graph_names() -> list[str]:
    """Names of all graph presets."""
    return list(_GRAPH_BUILDERS)


def get_graph(name: str) -> GraphPreset:
    """The graph preset called ``name``; unknown names raise ValueError listing the valid ones.

    Graphs (and so networkx) are imported on this call, not by ``import tpc``.
    """
    if name not in _GRAPH_BUILDERS:
        raise ValueError(f"unknown graph preset {name!r}; valid graph presets: {', '.join(_GRAPH_BUILDERS)}")
    build, sizes, description = _GRAPH_BUILDERS[name]
    return GraphPreset(name, build(), dict(sizes), description)
