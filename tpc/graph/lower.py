"""A graph's operations other than tensor products as TVM tensor expressions, one function each.

``lower_<kind>(operation, inputs, sizes)`` takes the operation, its input ``te.Tensor`` s (in
the operation's argument order) and ``sizes`` (symbolic dim name -> ``te.Var``) and returns
the output ``te.Tensor``. Nothing here schedules or builds, so the functions compose: a
PrimFunc may hold one node or several. Float tensors are computed in the dtype of their
inputs; index tensors are int64. A lowering may add inner stages (a linear
map's paths); the returned tensor is the node's output. :func:`lower_node` makes a node's
placeholders and output, what :mod:`tpc.graph.compiler` schedules and builds.

Scatter-sum is a deterministic segment sum without atomics: it reads the index as a CSR
(``perm``, the rows of ``x`` sorted by index, stably, and ``offsets``, where each output row's
segment starts), so every output row sums its own rows in a fixed order and rows can run in
parallel. The runtime (:mod:`tpc.graph.runtime`) builds the CSR in numpy at call time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from math import factorial, pi, sqrt
from typing import Any

import numpy as np
from tvm import te, tirx

from tpc.graph.operations import Elementwise, Gather, Linear, RadialBasis, ScatterSum, SphericalHarmonics
from tpc.graph.tensors import Dim, Node
from tpc.irreps import Irreps
from tpc.lower.lowered import select_component
from tpc.so3.spherical_harmonics import degree_scale

Sizes = Mapping[str, tirx.Var]
Polynomial = dict[tuple[int, int, int], float]


def dim_extent(dim: Dim, sizes: Sizes):
    """A shape entry as a TE extent: the integer, or the symbolic variable of the named dim."""
    return dim if isinstance(dim, int) else sizes[dim]


def _index(index: te.Tensor, row) -> tirx.PrimExpr:
    """Entry ``row`` of an int64 index tensor as a 32-bit loop index."""
    return index[row].astype("int32")


def lower_gather(operation: Gather, inputs: Sequence[te.Tensor], sizes: Sizes) -> te.Tensor:
    """``out[e, c] = x[index[e], c]``; the caller guarantees ``0 <= index < rows of x``."""
    x, index = inputs
    return te.compute((index.shape[0], x.shape[1]), lambda e, c: x[_index(index, e), c], name="gather")


def lower_scatter_sum(operation: ScatterSum, inputs: Sequence[te.Tensor], sizes: Sizes) -> te.Tensor:
    """``out[n, c] = sum_{e: index[e] = n} x[e, c]`` from ``(x, perm, offsets)``, the index's CSR.

    Row n sums ``x[perm[j]]`` for ``j`` in ``offsets[n] .. offsets[n + 1]``, in that order. The
    sum is a stage of its own and rows with an empty segment read zero instead: TIR initializes
    a reduction in its first iteration, which an empty data-dependent range never runs.
    """
    x, perm, offsets = inputs
    rows = dim_extent(operation.size, sizes)

    def segment(n, c):
        start = _index(offsets, n)
        j = te.reduce_axis((0, _index(offsets, n + 1) - start), name="j")
        return te.sum(x[_index(perm, start + j), c], axis=j)

    sums = te.compute((rows, x.shape[1]), segment, name="segment_sum")
    zero = tirx.const(0.0, str(x.dtype))
    return te.compute((rows, x.shape[1]), lambda n, c: tirx.if_then_else(offsets[n + 1] > offsets[n], sums[n, c], zero),
                      name="scatter_sum")


# -- spherical harmonics --------------------------------------------------------------------


def _poly_mul(a: Polynomial, b: Polynomial) -> Polynomial:
    """The product of two polynomials."""
    out: Polynomial = {}
    for ea, ca in a.items():
        for eb, cb in b.items():
            key = (ea[0] + eb[0], ea[1] + eb[1], ea[2] + eb[2])
            out[key] = out.get(key, 0.0) + ca * cb
    return out


def _poly_add(a: Polynomial, b: Polynomial, scale_a: float = 1.0, scale_b: float = 1.0) -> Polynomial:
    """``scale_a * a + scale_b * b`` without zero terms."""
    out = {key: scale_a * value for key, value in a.items()}
    for key, value in b.items():
        out[key] = out.get(key, 0.0) + scale_b * value
    return {key: value for key, value in out.items() if value != 0.0}


def harmonic_polynomials(lmax: int, normalization: str) -> list[Polynomial]:
    """e3nn's harmonics 0..lmax as homogeneous polynomials in the vector's (x, y, z).

    Each polynomial maps exponents (a, b, c) to the coefficient of ``x**a y**b z**c``; they are
    the recurrence of :mod:`tpc.so3.spherical_harmonics` done on polynomials (textbook axes
    x' = z, y' = x, z' = y), scaled to ``normalization``.
    """
    one: Polynomial = {(0, 0, 0): 1.0}
    xp, yp, zp = {(0, 0, 1): 1.0}, {(1, 0, 0): 1.0}, {(0, 1, 0): 1.0}
    r2 = {(2, 0, 0): 1.0, (0, 2, 0): 1.0, (0, 0, 2): 1.0}
    out: list[Polynomial] = [{} for _ in range((lmax + 1) ** 2)]
    cos_part, sin_part = one, {}
    diagonal = 1.0
    for m in range(lmax + 1):
        if m > 0:
            cos_part, sin_part = (_poly_add(_poly_mul(cos_part, xp), _poly_mul(sin_part, yp), 1.0, -1.0),
                                  _poly_add(_poly_mul(cos_part, yp), _poly_mul(sin_part, xp)))
            diagonal *= 2 * m - 1
        previous, current = {}, {(0, 0, 0): diagonal}
        for l in range(m, lmax + 1):
            if l > m:
                previous, current = current, _poly_add(_poly_mul(zp, current), _poly_mul(r2, previous),
                                                       (2 * l - 1) / (l - m), -(l + m - 1) / (l - m))
            norm = sqrt((2 * l + 1) / (4 * pi) * factorial(l - m) / factorial(l + m)) * degree_scale(l, normalization)
            if m == 0:
                out[l * l + l] = _poly_add(current, {}, norm)
            else:
                out[l * l + l + m] = _poly_add(_poly_mul(current, cos_part), {}, sqrt(2) * norm)
                out[l * l + l - m] = _poly_add(_poly_mul(current, sin_part), {}, sqrt(2) * norm)
    return out


def _evaluate_polynomial(polynomial: Polynomial, xyz: Sequence, dtype: str) -> tirx.PrimExpr:
    """The polynomial at the coordinates ``xyz`` (TE expressions), term by term."""
    value = tirx.const(0.0, dtype)
    for exponents, coefficient in sorted(polynomial.items()):
        term = tirx.const(coefficient, dtype)
        for axis, power in zip(xyz, exponents):
            for _ in range(power):
                term = term * axis
        value = value + term
    return value


def lower_spherical_harmonics(operation: SphericalHarmonics, inputs: Sequence[te.Tensor], sizes: Sizes) -> te.Tensor:
    """e3nn's harmonics of the rows of ``vectors`` (rows, 3) as polynomials, any lmax.

    With ``normalize`` the vectors are first divided by their norm (zero vectors stay zero,
    as in the reference). A row with a NaN or infinite coordinate reads NaN coordinates, so its
    degrees >= 1 are NaN, as in the reference. Component c is selected from a chain that folds
    to one polynomial once the component loop is unrolled.
    """
    (vectors,) = inputs
    dtype = str(vectors.dtype)
    zero, nan = tirx.const(0.0, dtype), tirx.const(float("nan"), dtype)
    rows = vectors.shape[0]

    def finite_value(e, i):
        finite = tirx.all(*(tirx.isfinite(vectors[e, j]) for j in range(3)))
        if operation.normalize:
            r2 = vectors[e, 0] * vectors[e, 0] + vectors[e, 1] * vectors[e, 1] + vectors[e, 2] * vectors[e, 2]
            value = tirx.if_then_else(r2 > zero, vectors[e, i] / te.sqrt(r2), zero)
        else:
            value = vectors[e, i]
        return tirx.if_then_else(finite, value, nan)

    vectors = te.compute((rows, 3), finite_value, name="unit_vectors" if operation.normalize else "finite_vectors")
    polynomials = harmonic_polynomials(operation.lmax, operation.normalization)

    def harmonic(e, c):
        xyz = [vectors[e, 0], vectors[e, 1], vectors[e, 2]]
        return select_component(c, [_evaluate_polynomial(polynomial, xyz, dtype) for polynomial in polynomials], zero)

    return te.compute((rows, len(polynomials)), harmonic, name="spherical_harmonics")


def lower_radial_basis(operation: RadialBasis, inputs: Sequence[te.Tensor], sizes: Sizes) -> te.Tensor:
    """The Bessel basis of the row lengths of ``vectors`` (rows, 3): column k is
    ``sqrt(number * 2 / cutoff) * sin((k + 1) pi r / cutoff) / r`` inside ``0 < r < cutoff``, else 0.

    The lengths are a stage of their own; outside the interval the division reads 1 instead
    of r, so a zero vector never computes 0/0. A NaN or infinite length gives a NaN row (the
    comparisons alone would read it as outside the cutoff and give 0).
    """
    (vectors,) = inputs
    dtype = str(vectors.dtype)
    zero, one = tirx.const(0.0, dtype), tirx.const(1.0, dtype)
    rows = vectors.shape[0]
    lengths = te.compute((rows,), lambda e: te.sqrt(vectors[e, 0] * vectors[e, 0] + vectors[e, 1] * vectors[e, 1]
                                                    + vectors[e, 2] * vectors[e, 2]), name="lengths")
    scale = tirx.const(sqrt(operation.number * 2 / operation.cutoff), dtype)
    cutoff = tirx.const(operation.cutoff, dtype)

    def basis(e, k):
        r = lengths[e]
        inside = tirx.all(r > zero, r < cutoff)
        safe = tirx.if_then_else(inside, r, one)
        frequency = (k + 1).astype(dtype) * tirx.const(pi / operation.cutoff, dtype)
        value = tirx.if_then_else(inside, scale * te.sin(frequency * safe) / safe, zero)
        return tirx.if_then_else(tirx.isfinite(r), value, tirx.const(float("nan"), dtype))

    return te.compute((rows, operation.number), basis, name="radial_basis")


# -- linear and elementwise -----------------------------------------------------------------


def _by_block(irreps: Irreps, c, value: Callable[[int, object], tirx.PrimExpr], zero) -> tirx.PrimExpr:
    """``value(block, c - start)`` for the block of ``irreps`` that column ``c`` falls in."""
    out = zero
    for block, block_slice in reversed(list(enumerate(irreps.slices()))):
        if block_slice.stop > block_slice.start:
            out = tirx.if_then_else(tirx.likely(c < block_slice.stop), value(block, c - block_slice.start), out)
    return out


def lower_linear(operation: Linear, inputs: Sequence[te.Tensor], sizes: Sizes) -> te.Tensor:
    """e3nn's equivariant linear map: one stage per weight block (path),
    ``y[r, w, m] = sum_u W[u, w] x[r, u, m]``, then each output block the scaled sum of its paths."""
    x = inputs[0]
    dtype = str(x.dtype)
    zero = tirx.const(0.0, dtype)
    rows = x.shape[0]
    slices_in = operation.irreps_in.slices()
    weight = inputs[1] if len(inputs) > 1 else None
    by_output: dict[int, list[tuple[float, te.Tensor]]] = {}
    for p, path in enumerate(operation.paths()):
        mul_in, ir = operation.irreps_in[path.i_in]
        mul_out = operation.irreps_out[path.i_out].mul
        if mul_in * mul_out == 0:
            continue
        stage = _linear_path(x, weight, operation.shared_weights, (mul_in, mul_out, ir.dim),
                             path.weights.start, slices_in[path.i_in].start, f"linear_path{p}")
        by_output.setdefault(path.i_out, []).append((path.coefficient, stage))

    def assemble(r, c):
        def block_value(block, local):
            dim = operation.irreps_out[block].ir.dim
            terms = [tirx.const(coefficient, dtype) * stage[r, local // dim, local % dim]
                     for coefficient, stage in by_output.get(block, [])]
            return sum(terms[1:], terms[0]) if terms else zero

        return _by_block(operation.irreps_out, c, block_value, zero)

    return te.compute((rows, operation.irreps_out.dim), assemble, name="linear")


def _linear_path(x: te.Tensor, weight: te.Tensor | None, shared: bool, extents: tuple[int, int, int], start: int,
                 offset: int, name: str) -> te.Tensor:
    """``y[r, w, m] = sum_u weight[start + u * mul_out + w] x[r, offset + u * dim + m]``."""
    mul_in, mul_out, dim = extents

    def value(r, w, m):
        u = te.reduce_axis((0, mul_in), name="u")
        flat = start + u * mul_out + w
        return te.sum((weight[flat] if shared else weight[r, flat]) * x[r, offset + u * dim + m], axis=u)

    return te.compute((x.shape[0], mul_out, dim), value, name=name)


def lower_elementwise(operation: Elementwise, inputs: Sequence[te.Tensor], sizes: Sizes,
                      irreps: Irreps | None = None) -> te.Tensor:
    """``add``, ``sub``, ``silu`` (``a * sigmoid(a)``) entry by entry; ``mul`` scales each irrep
    copy of ``a`` (whose irreps are ``irreps``) by its scalar in ``b``, or the whole row by
    ``b``'s single one."""
    a = inputs[0]
    if operation.function == "silu":
        return te.compute(a.shape, lambda *i: a(*i) * te.sigmoid(a(*i)), name="silu")
    b = inputs[1]
    if operation.function == "add":
        return te.compute(a.shape, lambda *i: a(*i) + b(*i), name="add")
    if operation.function == "sub":
        return te.compute(a.shape, lambda *i: a(*i) - b(*i), name="sub")
    if operation.function != "mul":
        raise ValueError(f"unknown elementwise function {operation.function!r}")
    if int(b.shape[1]) == 1:
        return te.compute(a.shape, lambda r, c: a[r, c] * b[r, 0], name="mul")
    if irreps is None:
        raise ValueError("mul by one scalar per irrep copy needs the irreps of a")
    first_copy = np.concatenate([[0], np.cumsum([mul for mul, _ in irreps])]).tolist()
    zero_index = tirx.const(0, "int32")

    def copy_of(block, local):
        return first_copy[block] + local // irreps[block].ir.dim

    return te.compute(a.shape, lambda r, c: a[r, c] * b[r, _by_block(irreps, c, copy_of, zero_index)], name="mul")


LOWERINGS: dict[type, Callable[..., te.Tensor]] = {
    Gather: lower_gather, SphericalHarmonics: lower_spherical_harmonics, Linear: lower_linear,
    ScatterSum: lower_scatter_sum, Elementwise: lower_elementwise, RadialBasis: lower_radial_basis,
}
"""The lowering of each operation class other than a tensor product or graph input."""


def lower_node(node: Node, dtype: str) -> tuple[list[te.Tensor], te.Tensor]:
    """The placeholders and output of a node other than a tensor product or graph input.

    Args:
        node: a validated node of a graph.
        dtype: the dtype of its float tensors.

    Returns:
        The placeholders (the function's arguments, in order) and the output; a scatter-sum
        takes ``(x, perm, offsets)``, its index as a CSR.
    """
    sizes: dict[str, Any] = {}
    for tensor in (*node.inputs, node.output):
        for dim in tensor.shape:
            if isinstance(dim, str) and dim not in sizes:
                sizes[dim] = te.var(dim)
    placeholders = [te.placeholder([dim_extent(dim, sizes) for dim in tensor.shape],
                                   "int64" if tensor.dtype == "int64" else dtype, name=tensor.name)
                    for tensor in node.inputs]
    options = {}
    if isinstance(node.op, ScatterSum):
        x, index = placeholders
        rows = dim_extent(node.op.size, sizes)
        placeholders = [x, te.placeholder(index.shape, "int64", name="perm"),
                        te.placeholder((rows + 1,), "int64", name="offsets")]
    elif isinstance(node.op, Elementwise):
        options["irreps"] = node.inputs[0].irreps
    return placeholders, LOWERINGS[type(node.op)](node.op, placeholders, sizes, **options)

