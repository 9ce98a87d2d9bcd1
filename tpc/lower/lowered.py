"""What a lowering returns and the path plans the Clebsch-Gordan family of lowerings is written in.

:class:`Lowered` (with :class:`PathStages` and :class:`OutputBlock`) is what every lowering
hands to the schedules. :class:`PathPlan`, :class:`Operand`, :class:`Inputs` and
:class:`Runs` describe a product, gradient or fused convolution path by path, the form
:func:`tpc.lower.paths.lower_plans` turns into stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from tpc.ops import Op, TensorProduct


@dataclass(frozen=True)
class PathStages:
    """Names of one path's stages and whether ``z`` is worth keeping in memory.

    ``z`` is reused across output channels in modes uvw and weighted uuw (the output channel
    w is not one of z's channels); elsewhere inlining it into ``y`` costs nothing extra.
    """

    z: str
    y: str
    reuses_z: bool
    z_channels: tuple[int, ...]
    y_channels: int
    reductions: tuple[int, ...]
    components: int
    factor: str | None = None

    @property
    def sums_channels(self) -> bool:
        """Whether ``y`` sums over channels (a reduction of extent above 1); without one it is a
        plain expression that a schedule may inline."""
        return any(n > 1 for n in self.reductions)

    def loop_extents(self, stage: str) -> list[tuple[str, int]]:
        """The stage's axes after the batch, with their extents: ("c", n) channels,
        ("k", n) output components, ("r", n) reductions, in loop order."""
        if stage == self.z:
            return [("c", n) for n in self.z_channels] + [("k", self.components)]
        return [("c", self.y_channels), ("k", self.components)] + [("r", n) for n in self.reductions]


@dataclass(frozen=True)
class OutputBlock:
    """A stage that writes one output block in place: its name and the components per channel
    (its columns are ``channels * components``, channel-major)."""

    stage: str
    components: int


@dataclass(frozen=True)
class Lowered:
    """A lowered product or gradient: its PrimFunc, the algorithm and stage names.

    The PrimFunc's parameters are x1, x2[, weight], out, then one per entry of ``tables``:
    constant arrays (basis changes too large to fold into the code) that every call passes
    after ``out``. ``paths`` names the stages of each path (the Clebsch-Gordan algorithm).
    ``op`` is the op it computes (a gradient's function takes ``grad`` before ``out``; a fused
    product's, see :mod:`tpc.lower.convolution`), None for a part of one. ``blocks`` are the
    stages that write the output's blocks in place (see :func:`tpc.lower.paths.lower_plans`); empty when one
    stage named ``out`` assembles the output. A function with several outputs (a gradient with
    respect to several arguments) names the stage writing each in ``outputs`` (``out`` is the
    first), ``sums`` names its per-sample stages outside the paths' own (a weight gradient's
    contraction of a path's ``z`` with an input; a path output from channel sums), and
    ``channel_sums`` the stages that sum over channels, ``[b, 1, pairs]``, read by them.
    """

    func: object
    paths: tuple[PathStages, ...]
    out: str
    algorithm: str = "cg"
    tables: tuple[np.ndarray, ...] = ()
    op: Op | None = None
    blocks: tuple[OutputBlock, ...] = ()
    outputs: tuple[str, ...] = ()
    sums: tuple[str, ...] = ()
    channel_sums: tuple[str, ...] = ()

    @property
    def schedule_key(self) -> str | None:
        """The schedule registry's name of the op (None: a product)."""
        return None if self.op is None else self.op.schedule_key


@dataclass(frozen=True)
class Operand:
    """The block of an input that one path reads: first column, components per channel, and
    the channel letters whose values (row-major) give the channel; no letters: channel 0.

    The block is stored as e3nn stores it, channel-major ("mul_ir"), unless ``channels`` is
    set: then it is component-major ("ir_mul") over that many channels, so that consecutive
    channels of one component are adjacent (vector loads across channels).
    """

    tensor: te.Tensor
    start: int
    dim: int
    letters: tuple[str, ...]
    channels: int = 0

    def column(self, channel, component):
        """The tensor column of one component of one channel of the block."""
        if self.channels:
            return self.start + int(component) * self.channels + channel
        return self.start + channel * self.dim + int(component)


@dataclass(frozen=True)
class PathPlan:
    """One path written with channel letters, the form every product and gradient lowers from.

    ``z[letters of a and b, k] = sum_{i,j} coupling[i, j, k] a[.., i] b[.., j]`` and
    ``y[out_letters, k] = sum over the other letters of weight[weight_letters] z``, added into
    block ``out_block`` of the result. ``extents`` gives each letter's range.
    """

    index: int
    a: Operand
    b: Operand
    coupling: np.ndarray
    extents: dict[str, int]
    out_letters: tuple[str, ...]
    weight_letters: tuple[str, ...] | None
    weight_offset: int
    out_block: int

    @property
    def z_letters(self) -> tuple[str, ...]:
        """The letters of the coupling stage, a's first."""
        return tuple(dict.fromkeys(self.a.letters + self.b.letters))

    @property
    def reduce_letters(self) -> tuple[str, ...]:
        """The letters summed over in the path output."""
        used = self.z_letters + (self.weight_letters or ())
        return tuple(letter for letter in dict.fromkeys(used) if letter not in self.out_letters)

    def extent(self, letters: tuple[str, ...]) -> int:
        """Number of channels the letters index together."""
        return int(np.prod([self.extents[letter] for letter in letters], dtype=np.int64))


@dataclass(frozen=True)
class Runs:
    """Consecutive samples summed into one output row: run n is the samples
    ``offsets[n] <= s < offsets[n + 1]`` (int64, runs + 1 entries), and ``longest`` (a scalar
    parameter) bounds the length of every run.

    The sum over a run is a reduction of static extent ``longest`` whose steps past the run's
    end add nothing; TVM 0.27 cannot schedule a reduction whose extent is read from memory.
    """

    offsets: te.Tensor
    longest: tirx.Var

    @property
    def count(self):
        """The number of runs."""
        return self.offsets.shape[0] - 1


@dataclass(frozen=True)
class Inputs:
    """The placeholders of a lowered function: x1, x2, the weights (or None) and any more."""

    x1: te.Tensor
    x2: te.Tensor
    weight: te.Tensor | None
    shared_weights: bool

    @classmethod
    def of(cls, tp: TensorProduct, dtype: str, batch) -> "Inputs":
        """Placeholders for ``tp``'s arguments."""
        weight = None
        if tp.weight_numel:
            shape = (tp.weight_numel,) if tp.shared_weights else (batch, tp.weight_numel)
            weight = te.placeholder(shape, dtype, name="weight")
        return cls(te.placeholder((batch, tp.irreps_in1.dim), dtype, name="x1"),
                   te.placeholder((batch, tp.irreps_in2.dim), dtype, name="x2"), weight, tp.shared_weights)

    def weight_at(self, b, flat):
        """The weight at flat index ``flat`` for sample ``b``."""
        return self.weight[flat] if self.shared_weights else self.weight[b, flat]

    def params(self) -> list[te.Tensor]:
        """x1, x2 and the weights when there are any, in call order."""
        return [self.x1, self.x2] + ([self.weight] if self.weight is not None else [])


def select_component(k, values: list, zero):
    """``values[k]`` for a loop variable k, as a Select chain that folds when k is constant."""
    out = zero
    for component in reversed(range(len(values))):
        out = tirx.Select(k == component, values[component], out)
    return out

