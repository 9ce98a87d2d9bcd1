"""Irreducible representations of O(3) and their direct sums, in e3nn's notation.

``Irrep("1o")`` is the degree-1, odd-parity irrep; ``Irreps("32x0e+32x1o")`` is a direct sum
with multiplicities. The grammar, the ordering and the flat "mul_ir" layout are e3nn's, so a
string written for e3nn means the same thing here.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, NamedTuple, Union

_PARITY_LETTERS = {"e": 1, "o": -1}
_IRREP_PATTERN = re.compile(r"^([0-9]+)([eoy])$")
_MUL_PATTERN = re.compile(r"^[0-9]+$")


class Irrep(tuple):
    """One irrep of O(3): degree ``l >= 0`` and parity ``p`` in (+1, -1).

    Accepts ``Irrep(l, p)``, ``Irrep("2e")``, ``Irrep((2, 1))`` or another Irrep. The parity
    letter ``y`` means the parity of the spherical harmonics, ``(-1)**l``.
    """

    def __new__(cls, l: Union[int, str, tuple, "Irrep"], p: int | None = None) -> "Irrep":
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, str):
                l, p = _parse_irrep(l)
            elif isinstance(l, tuple) and len(l) == 2:
                l, p = l
            else:
                raise TypeError(f"cannot make an Irrep from {l!r}: expected '1o', (l, p) or Irrep")
        if isinstance(l, bool) or not isinstance(l, int) or l < 0:
            raise ValueError(f"irrep degree l must be an integer >= 0, got {l!r}")
        if isinstance(p, bool) or p not in (1, -1):
            raise ValueError(f"irrep parity p must be +1 or -1, got {p!r}")
        return super().__new__(cls, (int(l), int(p)))

    @property
    def l(self) -> int:  # noqa: E743 - the standard name of the degree
        """Degree of the irrep."""
        return self[0]

    @property
    def p(self) -> int:
        """Parity of the irrep: +1 (even) or -1 (odd)."""
        return self[1]

    @property
    def dim(self) -> int:
        """Dimension ``2l + 1``."""
        return 2 * self.l + 1

    @property
    def is_scalar(self) -> bool:
        """True for 0e."""
        return self.l == 0 and self.p == 1

    def __mul__(self, other: "Irrep") -> Iterator["Irrep"]:
        """The irreps in the tensor product of two irreps, by increasing l."""
        other = Irrep(other)
        p = self.p * other.p
        for l in range(abs(self.l - other.l), self.l + other.l + 1):
            yield Irrep(l, p)

    def __str__(self) -> str:
        return f"{self.l}{'e' if self.p == 1 else 'o'}"

    def __repr__(self) -> str:
        return f"Irrep('{self}')"

    def __getnewargs__(self) -> tuple:
        return (self.l, self.p)


class MulIr(NamedTuple):
    """One block of an Irreps: ``mul`` copies of the irrep ``ir``."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        """Dimension ``mul * (2l + 1)``."""
        return self.mul * self.ir.dim

    def __str__(self) -> str:
        return f"{self.mul}x{self.ir}"


class SortedIrreps(NamedTuple):
    """Result of :meth:`Irreps.sort`: the sorted irreps, the permutation and its inverse.

    ``p[i]`` is the new position of block ``i``; ``inv[j]`` is the old position of block ``j``.
    """

    irreps: "Irreps"
    p: tuple[int, ...]
    inv: tuple[int, ...]


IrrepsLike = Union[str, "Irreps", Irrep, Iterable]


class Irreps(tuple):
    """A direct sum of irreps with multiplicities, e.g. ``Irreps("32x0e + 32x1o + 2x2e")``.

    Accepts a string in e3nn's grammar, an Irrep, another Irreps, or an iterable of
    ``(mul, ir)`` pairs, Irreps or irrep strings. Bad input raises ValueError naming the
    offending token.
    """

    def __new__(cls, irreps: IrrepsLike | None = None) -> "Irreps":
        if isinstance(irreps, Irreps):
            return irreps
        if irreps is None:
            blocks: list[MulIr] = []
        elif isinstance(irreps, str):
            blocks = _parse_irreps(irreps)
        elif isinstance(irreps, Irrep):
            blocks = [MulIr(1, irreps)]
        elif isinstance(irreps, (list, tuple)):
            blocks = [_to_mul_ir(item) for item in irreps]
        else:
            raise TypeError(
                f"cannot make Irreps from {type(irreps).__name__} {irreps!r}: expected a string "
                "like '16x0e+8x1o', an Irrep, or a list of (mul, irrep) pairs"
            )
        return super().__new__(cls, blocks)

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> "Irreps":
        """Irreps of the spherical harmonics up to ``lmax``: ``0e + 1o + 2e + ...`` for p=-1."""
        return Irreps([(1, Irrep(l, p**l)) for l in range(lmax + 1)])

    @property
    def dim(self) -> int:
        """Total dimension of the flat layout."""
        return sum(block.dim for block in self)

    @property
    def num_irreps(self) -> int:
        """Number of irreps counted with multiplicity."""
        return sum(block.mul for block in self)

    @property
    def ls(self) -> list[int]:
        """The degree of every irrep, repeated by multiplicity."""
        return [block.ir.l for block in self for _ in range(block.mul)]

    @property
    def lmax(self) -> int:
        """Largest degree present."""
        if len(self) == 0:
            raise ValueError("an empty Irreps has no lmax")
        return max(block.ir.l for block in self)

    def slices(self) -> list[slice]:
        """Slice of each block in the flat layout."""
        out, start = [], 0
        for block in self:
            out.append(slice(start, start + block.dim))
            start += block.dim
        return out

    def simplify(self) -> "Irreps":
        """Merge neighbouring blocks of the same irrep and drop empty blocks (no sorting)."""
        out: list[tuple[int, Irrep]] = []
        for mul, ir in self:
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            elif mul > 0:
                out.append((mul, ir))
        return Irreps(out)

    def remove_zero_multiplicities(self) -> "Irreps":
        """Drop blocks of multiplicity 0."""
        return Irreps([block for block in self if block.mul > 0])

    def sort(self) -> SortedIrreps:
        """Stable sort of the blocks by (l, p), odd before even, as e3nn does."""
        order = sorted(range(len(self)), key=lambda i: (self[i].ir, i))
        inv = tuple(order)
        p = [0] * len(inv)
        for new, old in enumerate(inv):
            p[old] = new
        return SortedIrreps(Irreps([self[i] for i in inv]), tuple(p), inv)

    def regroup(self) -> "Irreps":
        """Sort, then simplify."""
        return self.sort().irreps.simplify()

    def count(self, ir: Union[Irrep, str]) -> int:  # type: ignore[override]
        """Multiplicity of ``ir`` summed over all blocks."""
        ir = Irrep(ir)
        return sum(block.mul for block in self if block.ir == ir)

    def __contains__(self, ir: object) -> bool:
        try:
            ir = Irrep(ir)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return any(block.ir == ir for block in self)

    def __getitem__(self, index):  # type: ignore[override]
        item = super().__getitem__(index)
        return Irreps(item) if isinstance(index, slice) else item

    def __add__(self, other: IrrepsLike) -> "Irreps":  # type: ignore[override]
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other: IrrepsLike) -> "Irreps":
        return Irreps(other) + self

    def __mul__(self, times: int) -> "Irreps":  # type: ignore[override]
        if isinstance(times, bool) or not isinstance(times, int):
            raise TypeError(f"Irreps can only be repeated an integer number of times, got {times!r}")
        return Irreps(tuple(self) * times)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Irreps) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __str__(self) -> str:
        return "+".join(str(block) for block in self)

    def __repr__(self) -> str:
        return f"Irreps('{self}')"

    def __getnewargs__(self) -> tuple:
        return (str(self),)


def _parse_irrep(text: str) -> tuple[int, int]:
    token = text.strip()
    match = _IRREP_PATTERN.match(token)
    if match is None:
        raise ValueError(
            f"bad irrep {text!r}: expected a degree and a parity letter, e.g. '0e', '1o' or '2y'"
        )
    l = int(match.group(1))
    letter = match.group(2)
    return l, (-1) ** l if letter == "y" else _PARITY_LETTERS[letter]


def _parse_irreps(text: str) -> list[MulIr]:
    if text.strip() == "":
        return []
    blocks = []
    for position, raw in enumerate(text.split("+")):
        token = raw.strip()
        if token == "":
            raise ValueError(f"bad irreps {text!r}: empty term at position {position} (stray '+')")
        if "x" in token:
            mul_text, _, ir_text = token.partition("x")
            mul_text = mul_text.strip()
            if not _MUL_PATTERN.match(mul_text):
                raise ValueError(
                    f"bad irreps {text!r}: term {token!r} has multiplicity {mul_text!r}, "
                    "expected a non-negative integer"
                )
            mul = int(mul_text)
        else:
            mul, ir_text = 1, token
        try:
            ir = Irrep(*_parse_irrep(ir_text))
        except ValueError as error:
            raise ValueError(f"bad irreps {text!r}: term {token!r}: {error}") from None
        blocks.append(MulIr(mul, ir))
    return blocks


def _to_mul_ir(item: object) -> MulIr:
    if isinstance(item, MulIr):
        return item
    if isinstance(item, Irrep):
        return MulIr(1, item)
    if isinstance(item, str):
        return MulIr(1, Irrep(item))
    if isinstance(item, tuple) and len(item) == 2:
        mul, ir = item
        if isinstance(mul, bool) or not isinstance(mul, int) or mul < 0:
            raise ValueError(f"bad irreps term {item!r}: multiplicity must be an integer >= 0")
        return MulIr(mul, Irrep(ir))
    raise ValueError(f"bad irreps term {item!r}: expected (mul, irrep), an Irrep or a string")
