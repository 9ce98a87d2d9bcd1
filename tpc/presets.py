"""Named problem sets shared by the CLI, the tests and the benchmarks: tensor products
(:func:`get`) and whole message-passing blocks as graphs (:func:`get_graph`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from tpc.irreps import Irreps
from tpc.ops import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    TensorProduct,
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


_BUILDERS: dict[str, tuple[Callable[[], TensorProduct], int, str]] = {
    **{
        f"mace-l{L}": (lambda L=L: mace_product(128, L, 3), 10000,
                       f"MACE convolution: 128x(0e..{L}) node features x harmonics 0e..3o -> l <= {L}, uvu")
        for L in (1, 2, 3)
    },
    "mace-small-l2": (lambda: mace_product(64, 2, 2), 10000,
                      "MACE convolution: 64x(0e+1o+2e) x harmonics 0e+1o+2e -> l <= 2, uvu"),
    "nequip": (
        lambda: ChannelwiseTensorProduct("64x0e+64x0o+64x1o+64x1e+64x2e+64x2o", Irreps.spherical_harmonics(2), 2),
        10000,
        "NequIP convolution: 64 channels of both parities up to l=2 x harmonics 0e+1o+2e -> l <= 2, uvu",
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
