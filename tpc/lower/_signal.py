"""What the Gaunt algorithms share: signals on the sphere in and out of the flat e3nn layout.

A Gaunt-form spec (see :mod:`tpc.ops.gaunt_form`) is C channels of one signal per input.
Its coefficients are read into a dense per-sample array ``[channel, degree, m + lmax]`` (the
``pack`` stages: degrees the input lacks are left out, m outside a degree is zero, blocks of
one degree add up), and the result is written back block by block (the ``out`` stage).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tvm import te, tirx

from tpc.irreps import Irreps
from tpc.ops import TensorProduct
from tpc.ops.gaunt_form import require_gaunt_form


@dataclass(frozen=True)
class SignalLayout:
    """Channels and the distinct degrees (increasing) of the two inputs and the output."""

    channels: int
    degrees1: tuple[int, ...]
    degrees2: tuple[int, ...]
    degrees_out: tuple[int, ...]

    @property
    def lmax1(self) -> int:
        return self.degrees1[-1]

    @property
    def lmax2(self) -> int:
        return self.degrees2[-1]

    @property
    def lmax_out(self) -> int:
        return self.degrees_out[-1]


def vector_padded(size: int, lanes: int) -> int:
    """``size`` padded for vectors of ``lanes`` lanes: rounded up to a multiple of ``lanes``, or,
    when shorter than one vector, to a power of two (a 5-long axis becomes 8, not 16)."""
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
    if size < lanes:
        return min(lanes, 1 << (size - 1).bit_length())
    return -(-size // lanes) * lanes


def signal_layout(tp: TensorProduct, algorithm: str) -> SignalLayout:
    """The layout of a Gaunt-form spec; ValueError naming the problem for any other spec."""
    require_gaunt_form(tp, algorithm)
    return SignalLayout(
        tp.irreps_in1[0].mul,
        *(tuple(sorted({ir.l for _, ir in irreps})) for irreps in (tp.irreps_in1, tp.irreps_in2, tp.irreps_out)),
    )


def pack(x, irreps: Irreps, degrees: tuple[int, ...], channels: int, batch, name: str):
    """``[b, c, k, t]``: the coefficient (degree ``degrees[k]``, m = t - lmax) of channel c, or 0.

    The degree is chosen by a chain of conditions on k, which folds once k is unrolled."""
    lmax = degrees[-1]
    slices = irreps.slices()
    zero = tirx.const(0.0, x.dtype)

    def value(b, c, k, t):
        m = t - lmax
        out = zero
        for index in reversed(range(len(degrees))):
            l = degrees[index]
            reads = [x[b, slices[block].start + c * (2 * l + 1) + m + l]
                     for block, (_, ir) in enumerate(irreps) if ir.l == l]
            inside = sum(reads[1:], reads[0])
            degree_value = inside if l == lmax else tirx.if_then_else(tirx.all(m >= -l, m <= l), inside, zero)
            out = degree_value if index == len(degrees) - 1 else tirx.if_then_else(k == index, degree_value, out)
        return out

    return te.compute((batch, channels, len(degrees), 2 * lmax + 1), value, name=name)


def assemble(read: Callable, dtype: str, irreps_out: Irreps, degrees: tuple[int, ...], batch,
             name: str = "out", padding: Callable | None = None):
    """The flat ``(batch, irreps_out.dim)`` output, ``read(b, c, k, m)`` giving the coefficient
    (degree ``degrees[k]``, order m) of channel c. Block boundaries are ``likely`` conditions,
    so loop partitioning makes one branch-free loop per block.

    ``padding(b)``, if given, reads the last padded entry of the stage that ``read`` reads, in
    the branch no index reaches: a stage computed at the output's loops covers the region its
    consumers read, so this keeps its padding (and whole vectors) when it is computed per sample.
    """
    slices = irreps_out.slices()
    zero = tirx.const(0.0, dtype)
    # Region analysis of the read below combines the divisions by each block's width into their
    # least common multiple, a constant TVM keeps in 32 bits: past that, channels are counted
    # by comparisons instead (one channel needs neither).
    divide = math.lcm(*(2 * ir.l + 1 for _, ir in irreps_out)) < 2 ** 31

    def split(local, mul: int, dim: int):
        """The channel and the index within it of ``local``, an index into a block of ``mul`` x ``dim``."""
        if mul == 1:
            return 0, local
        if divide:
            return local // dim, local % dim
        channel = sum((tirx.Select(local >= j * dim, 1, 0) for j in range(2, mul)), tirx.Select(local >= dim, 1, 0))
        return channel, local - channel * dim

    def value(b, q):
        out = zero if padding is None else padding(b)
        for block in reversed(range(len(irreps_out))):
            (mul, ir), block_slice = irreps_out[block], slices[block]
            if block_slice.stop == block_slice.start:
                continue
            channel, index = split(q - block_slice.start, mul, 2 * ir.l + 1)
            value_here = read(b, channel, degrees.index(ir.l), index - ir.l)
            out = tirx.if_then_else(tirx.likely(q < block_slice.stop), value_here, out)
        return out

    return te.compute((batch, irreps_out.dim), value, name=name)
