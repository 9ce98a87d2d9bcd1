"""The tensor products models use, built as e3nn and MACE build them."""

from __future__ import annotations

from tpc.irreps import Irrep, Irreps, IrrepsLike
from tpc.ops.tensor_product import TensorProduct
from tpc.so3 import gaunt_factor


def FullyConnectedTensorProduct(
    irreps_in1: IrrepsLike,
    irreps_in2: IrrepsLike,
    irreps_out: IrrepsLike,
    irrep_normalization: str = "component",
    path_normalization: str = "element",
    shared_weights: bool = True,
) -> TensorProduct:
    """Every allowed path ``in1[i] x in2[j] -> out[k]`` in mode uvw, in e3nn's order.

    Equal to ``e3nn.o3.FullyConnectedTensorProduct(irreps_in1, irreps_in2, irreps_out)``,
    weights included.
    """
    in1, in2, out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    instructions = [
        (i1, i2, i_out, "uvw", True, 1.0)
        for i1, (_, ir1) in enumerate(in1)
        for i2, (_, ir2) in enumerate(in2)
        for i_out, (_, ir_out) in enumerate(out)
        if ir_out in ir1 * ir2
    ]
    return TensorProduct(in1, in2, out, instructions, irrep_normalization=irrep_normalization,
                         path_normalization=path_normalization, shared_weights=shared_weights)


def ChannelwiseTensorProduct(
    irreps_in1: IrrepsLike,
    irreps_in2: IrrepsLike,
    lmax: int,
    filter_ir_out: IrrepsLike | None = None,
    irrep_normalization: str = "component",
    path_normalization: str = "element",
    shared_weights: bool = False,
) -> TensorProduct:
    """The MACE/NequIP convolution product: mode uvu, one output block per path.

    For every block pair ``(in1[i], in2[j])`` and every ``ir_out`` in their product with
    ``l <= lmax`` (and in ``filter_ir_out`` if given), one output block of multiplicity
    ``mul_in1`` and one weighted uvu path. Output blocks are then stably sorted by (l, p),
    odd before even, and the instructions follow the sorted order, exactly as MACE's
    ``tp_out_irreps_with_instructions``; weights are per sample by default (they come from a
    radial network per edge).
    """
    in1, in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
        raise ValueError(f"lmax must be an integer >= 0, got {lmax!r}")
    allowed = None if filter_ir_out is None else {ir for _, ir in Irreps(filter_ir_out)}
    blocks, paths = [], []
    for i1, (mul, ir1) in enumerate(in1):
        for i2, (_, ir2) in enumerate(in2):
            for ir_out in ir1 * ir2:
                if ir_out.l <= lmax and (allowed is None or ir_out in allowed):
                    paths.append((i1, i2, len(blocks)))
                    blocks.append((mul, ir_out))
    if not paths:
        raise ValueError(f"{in1} x {in2} has no path with l <= {lmax} in the allowed outputs")
    out, permutation, _ = Irreps(blocks).sort()
    instructions = sorted(((i1, i2, permutation[k], "uvu", True) for i1, i2, k in paths), key=lambda ins: ins[2])
    return TensorProduct(in1, in2, out, instructions, irrep_normalization=irrep_normalization,
                         path_normalization=path_normalization, shared_weights=shared_weights)


def GauntTensorProduct(irreps_in1: IrrepsLike, irreps_in2: IrrepsLike, lmax: int) -> TensorProduct:
    """The Gaunt product of signals on the sphere, channel by channel.

    Each input is ``C`` channels of a signal with one block per degree, ``Cx0e + Cx1o + Cx2e
    + ...`` (parity (-1)**l, degrees may be skipped), in orthonormal real harmonics. The
    output is ``Cx0e + Cx1o + ... + Cx(lmax)``: the degree <= lmax part of the pointwise
    product of the two signals on the sphere. Only paths with l1+l2+l3 even exist (no cross
    product), each with the Gaunt coefficients ``gaunt_factor(l1, l2, l3) * wigner_3j``.

    It is exactly ``e3nn.o3.TensorProduct(irreps_in1, irreps_in2, irreps_out,
    [(i1, i2, l3, "uuu", False, gaunt_factor(l1, l2, l3) ** 2) ...],
    irrep_normalization="none", path_normalization="none")`` with the instructions in the
    order i1, i2, l3; that is how it is built here.
    """
    in1, in2 = _signal_irreps("irreps_in1", irreps_in1), _signal_irreps("irreps_in2", irreps_in2)
    channels = {mul for mul, _ in in1} | {mul for mul, _ in in2}
    if len(channels) != 1:
        raise ValueError(f"a Gaunt product needs the same number of channels in every block, got {in1} and {in2}")
    if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
        raise ValueError(f"lmax must be an integer >= 0, got {lmax!r}")
    (mul,) = channels
    out = Irreps([(mul, Irrep(l, (-1) ** l)) for l in range(lmax + 1)])
    instructions = [
        (i1, i2, l3, "uuu", False, gaunt_factor(ir1.l, ir2.l, l3) ** 2)
        for i1, (_, ir1) in enumerate(in1)
        for i2, (_, ir2) in enumerate(in2)
        for l3 in range(abs(ir1.l - ir2.l), min(ir1.l + ir2.l, lmax) + 1)
        if (ir1.l + ir2.l + l3) % 2 == 0
    ]
    return TensorProduct(in1, in2, out, instructions, irrep_normalization="none", path_normalization="none")


def mace_product(channels: int, lmax: int, sh_lmax: int) -> TensorProduct:
    """MACE's channelwise convolution product.

    Args:
        channels: copies of each irrep of the node features.
        lmax: the node features are ``channels x (0e+1o+2e+...)`` up to ``lmax``, and so are the outputs.
        sh_lmax: the edge harmonics go up to ``sh_lmax``.

    Returns:
        The product of node features and harmonics, mode uvu with weights per edge.
    """
    node = Irreps([(channels, ir) for _, ir in Irreps.spherical_harmonics(lmax)])
    return ChannelwiseTensorProduct(node, Irreps.spherical_harmonics(sh_lmax), lmax,
                                    filter_ir_out=Irreps.spherical_harmonics(lmax))


def mace_convolution(irreps_in: IrrepsLike, sh_lmax: int = 3, target_irreps: IrrepsLike | None = None) -> TensorProduct:
    """MACE's interaction convolution ``conv_tp`` exactly as mace-torch 0.3.16 builds it.

    The product of the node features (after the interaction's first linear) and the edge
    harmonics ``0e+1o+2e+...`` up to ``sh_lmax``, built as mace's
    ``tp_out_irreps_with_instructions`` (``mace/modules/irreps_tools.py``) builds it: for every
    block pair ``(irreps_in[i], harmonics[j])`` and every ``ir_out`` of their product that is in
    ``target_irreps``, one output block of multiplicity ``mul_in`` and one weighted uvu path;
    the output blocks are then stably sorted (odd before even at equal l) and the instructions
    follow the sorted order. The output is not simplified (one block per instruction), the
    weights are per edge (``shared_weights=False``: they come from the radial MLP), the
    normalization is e3nn's default (component, element). The same construction is NequIP's
    ``InteractionBlock`` convolution, with NequIP's harmonics and output irreps.

    Args:
        irreps_in: the node features the convolution takes: ``128x0e`` in a model's first
            interaction, the hidden irreps (e.g. ``128x0e+128x1o``) in the later ones.
        sh_lmax: the degree of the edge harmonics (mace's ``max_ell``).
        target_irreps: the interaction's target irreps; only which irreps it holds matters.
            By default, as ``ScaleShiftMACE`` computes it: the harmonics repeated once per
            channel (the multiplicity of 0e in ``irreps_in``), sorted and simplified; when
            ``irreps_in`` holds odd scalars (0o), the harmonics of both parities up to
            ``sh_lmax``, as mace does for hidden irreps with 0o.

    Returns:
        The convolution spec, mode uvu with weights per edge, equal to the interaction's
        ``conv_tp`` (an ``e3nn.o3.TensorProduct``).

    >>> tp = mace_convolution("128x0e+128x1o")
    >>> len(tp.instructions), tp.weight_numel
    (10, 1280)
    >>> str(tp.irreps_out)
    '128x0e+128x0e+128x1o+128x1o+128x1o+128x2e+128x2e+128x2e+128x3o+128x3o'
    """
    in1 = Irreps(irreps_in)
    if isinstance(sh_lmax, bool) or not isinstance(sh_lmax, int) or sh_lmax < 0:
        raise ValueError(f"sh_lmax must be an integer >= 0, got {sh_lmax!r}")
    harmonics = Irreps.spherical_harmonics(sh_lmax)
    if target_irreps is None:
        if Irrep("0o") in in1:
            both = Irreps([(1, Irrep(l, p)) for l in range(sh_lmax + 1) for p in (1, -1)])
        else:
            both = harmonics
        target = (both * max(in1.count("0e"), 1)).regroup()
    else:
        target = Irreps(target_irreps)
    if len(target) == 0:
        raise ValueError("target_irreps is empty")
    return ChannelwiseTensorProduct(in1, harmonics, target.lmax, filter_ir_out=target)


def _signal_irreps(name: str, irreps: IrrepsLike) -> Irreps:
    irreps = Irreps(irreps)
    if len(irreps) == 0:
        raise ValueError(f"{name} is empty")
    degrees = [ir.l for _, ir in irreps]
    for _, ir in irreps:
        if ir.p != (-1) ** ir.l:
            raise ValueError(f"{name}: {ir} is not the parity of a spherical harmonic of degree {ir.l} "
                             f"(expected {Irrep(ir.l, (-1) ** ir.l)})")
    if degrees != sorted(set(degrees)):
        raise ValueError(f"{name}: a signal needs each degree at most once, in increasing order, got {irreps}")
    return irreps
