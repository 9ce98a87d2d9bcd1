"""MACE's symmetric contraction (:class:`tpc.ops.SymmetricContraction`) as tensor expressions.

The coupling tensors are summed over the orderings of their input indices (the features of
one channel are multiplied with themselves, so ``U[.., i, j, ..]`` and ``U[.., j, i, ..]``
multiply the same monomial), which leaves one term per monomial, output component and path.
Every stage is computed per node with the channels innermost: the node's features are first
transposed to ``xt[node, i, channel]`` so that consecutive channels are adjacent and each
term is a vector operation across channels. The coefficients are constants in the code.

* forward ``out[b, c, m] = sum_k W[e_b, k, c] sum_q U[m, q, k] x_q``;
* x gradient ``gx[b, c, i] = sum_{m, k} g[b, c, m] W[e_b, k, c] sum_q U[m, q, k] d x_q / d x_i``;
* weight gradient per node ``gw[b, c, k] = sum_m g[b, c, m] sum_q U[m, q, k] x_q`` (the caller
  sums the nodes of each element);

where ``x_q`` is a monomial of the channel's features and ``e_b`` the node's element. A tangent
op (``op.tangent``) replaces each monomial by its derivative along a tangent ``v``
(``d x_q = sum_i v_i d x_q / d x_i``); its tangent is transposed like x.
"""

from __future__ import annotations

import functools

import numpy as np
from tvm import te, tirx

from tpc.lower.lowered import Lowered, select_component
from tpc.lower.tir_edits import element_aligned
from tpc.ops import Contraction

TRANSPOSED_STAGE = "xt"
TANGENT_STAGE = "vt"
COMPONENT_STAGE = "part"
"""The prefix of a gradient's per-component stages, ``[node, channel]`` each, that its output gathers."""


@functools.lru_cache(maxsize=None)
def symmetrized_terms(coupling: bytes, shape: tuple[int, ...]) -> tuple[tuple[int, tuple[int, ...], int, float], ...]:
    """``(m, sorted monomial indices, path, coefficient)`` of a coupling tensor ``(M, D, ..., D, K)``
    (given as bytes and shape, to be cached), summed over the orderings of the indices."""
    tensor = np.frombuffer(coupling, dtype=np.float64).reshape(shape)
    summed: dict[tuple[int, tuple[int, ...], int], float] = {}
    for index in zip(*np.nonzero(tensor)):
        m, *factors, k = (int(i) for i in index)
        key = (m, tuple(sorted(factors)), k)
        summed[key] = summed.get(key, 0.0) + float(tensor[index])
    return tuple((m, q, k, value) for (m, q, k), value in summed.items() if abs(value) > 1e-14)


def _terms(op: Contraction, ir, nu: int) -> tuple:
    coupling = np.ascontiguousarray(op.spec.coupling(ir, nu), dtype=np.float64)
    if ir.dim == 1:
        coupling = coupling[None]
    return symmetrized_terms(coupling.tobytes(), coupling.shape)


def lower_contraction(op: Contraction, dtype: str = "float32") -> Lowered:
    """Lower a symmetric contraction's forward, x gradient or per-node weight gradient, or one
    of these along a tangent.

    Parameters, in order: ``x`` (nodes, channels, D), ``elements`` (int64, one per node), the
    weights ``(num_elements, paths, channels)`` of every output irrep and order (irreps in
    order, orders 1..correlation), for a gradient ``grad`` (nodes, irreps_out.dim), for a
    tangent op ``tangent`` (nodes, channels, D), then the outputs: the forward one per output
    irrep ``(nodes, channels, ir.dim)``; the x gradient one ``(nodes, channels, D)``; the
    weight gradient one per output irrep and order ``(nodes, channels, paths)``. The node count
    is symbolic.
    """
    spec = op.spec
    zero = tirx.const(0.0, dtype)
    nodes = te.var("nodes")
    channels, dim = spec.channels, spec.coupling_irreps.dim
    x = te.placeholder((nodes, channels, dim), dtype, name="x")
    elements = te.placeholder((nodes,), "int64", name="elements")
    xt = te.compute((nodes, dim, channels), lambda b, i, c: x[b, c, i], name=TRANSPOSED_STAGE)
    weights, blocks = {}, []
    for _, ir in spec.irreps_out:
        for nu in range(1, spec.correlation + 1):
            weights[(str(ir), nu)] = te.placeholder((spec.num_elements, _paths(op, ir, nu), channels), dtype,
                                                    name=f"w_{ir}_{nu}")
    grad = te.placeholder((nodes, spec.irreps_out.dim), dtype, name="grad") if op.wrt else None
    tangent = te.placeholder((nodes, channels, dim), dtype, name="tangent") if op.tangent else None
    vt = te.compute((nodes, dim, channels), lambda b, i, c: tangent[b, c, i], name=TANGENT_STAGE) \
        if op.tangent else None
    starts = dict(zip((str(ir) for _, ir in spec.irreps_out), (block.start for block in spec.irreps_out.slices())))

    def product(b, c, factors):
        value = None
        for i in factors:
            value = xt[b, i, c] if value is None else value * xt[b, i, c]
        return value

    def monomial(b, c, factors):
        """The monomial of ``factors`` (sorted indices), or for a tangent op its derivative along
        the tangent (None where that is zero: no factors)."""
        if not op.tangent:
            return product(b, c, factors) if factors else tirx.const(1.0, dtype)
        terms = []
        for position, factor in enumerate(factors):
            if factors.index(factor) == position:
                rest = factors[:position] + factors[position + 1:]
                term = vt[b, factor, c] * product(b, c, rest) if rest else vt[b, factor, c]
                count = factors.count(factor)
                terms.append(tirx.const(float(count), dtype) * term if count > 1 else term)
        return _sum(terms) if terms else None

    def weight_of(ir, nu, b, k, c):
        return weights[(str(ir), nu)][elements[b].astype("int32"), k, c]

    def grad_of(ir, b, c, m):
        return grad[b, starts[str(ir)] + c * ir.dim + m]

    if op.wrt == "":
        def forward_of(ir):
            def forward(b, c, m):
                per_m = [[] for _ in range(ir.dim)]
                for nu in range(1, spec.correlation + 1):
                    by_path: dict[tuple[int, int], list] = {}
                    for m_, factors, k, value in _terms(op, ir, nu):
                        by_path.setdefault((m_, k), []).append(tirx.const(value, dtype) * monomial(b, c, factors))
                    for (m_, k), terms in by_path.items():
                        per_m[m_].append(weight_of(ir, nu, b, k, c) * _sum(terms))
                return select_component(m, [_sum(terms) if terms else zero for terms in per_m], zero)
            return forward

        for _, ir in spec.irreps_out:
            blocks.append(te.compute((nodes, channels, ir.dim), forward_of(ir), name=f"out_{ir}"))
    elif op.wrt == "x":
        per_i: list[list] = [[] for _ in range(dim)]  # per component: (ir, nu, m, path, coefficient, other factors)
        for _, ir in spec.irreps_out:
            for nu in range(1, spec.correlation + 1):
                for m, factors, k, value in _terms(op, ir, nu):
                    for position, factor in enumerate(factors):
                        if factors.index(factor) == position:  # a repeated factor: once, times its power
                            rest = factors[:position] + factors[position + 1:]
                            per_i[factor].append((ir, nu, m, k, value * factors.count(factor), rest))

        def x_component(terms):
            def component(b, c):
                values = [tirx.const(value, dtype) * grad_of(ir, b, c, m) * weight_of(ir, nu, b, k, c) * factor
                          for ir, nu, m, k, value, rest in terms
                          if (factor := monomial(b, c, rest)) is not None]
                return _sum(values) if values else zero
            return component

        parts = [te.compute((nodes, channels), x_component(terms), name=f"{COMPONENT_STAGE}{i}")
                 for i, terms in enumerate(per_i)]
        blocks.append(te.compute((nodes, channels, dim), _gathered(parts, zero), name="out_x"))
    else:
        def path_of(ir, terms):
            def path(b, c):
                values = [tirx.const(value, dtype) * grad_of(ir, b, c, m) * monomial(b, c, factors)
                          for m, factors, value in terms]
                return _sum(values) if values else zero
            return path

        for _, ir in spec.irreps_out:
            for nu in range(1, spec.correlation + 1):
                per_k: list[list] = [[] for _ in range(_paths(op, ir, nu))]
                for m, factors, k, value in _terms(op, ir, nu):
                    per_k[k].append((m, factors, value))
                parts = [te.compute((nodes, channels), path_of(ir, terms), name=f"{COMPONENT_STAGE}{ir}_{nu}_{k}")
                         for k, terms in enumerate(per_k)]
                blocks.append(te.compute((nodes, channels, len(parts)), _gathered(parts, zero), name=f"gw_{ir}_{nu}"))
    params = [x, elements, *weights.values()] + [extra for extra in (grad, tangent) if extra is not None] + blocks
    func = element_aligned(te.create_prim_func(params), dtype)
    names = tuple(block.op.name for block in blocks)
    return Lowered(func, (), names[0], op=op, outputs=names)


def _gathered(parts: list[te.Tensor], zero):
    """``(b, c, n) -> parts[n][b, c]``: per-component stages gathered into one output."""
    return lambda b, c, n: select_component(n, [part[b, c] for part in parts], zero)


def _paths(op: Contraction, ir, nu: int) -> int:
    return int(op.spec.coupling(ir, nu).shape[-1])


def _sum(terms: list):
    """The sum of ``terms`` as a balanced tree: a chain of thousands of additions (an x gradient
    at l <= 3, correlation 3) is deeper than TVM's and LLVM's recursive passes can take."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]
