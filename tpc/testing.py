"""Correctness harness shared by the tests and the benchmarks.

``foundation_cases()`` is a fixed, seeded set of random tensor products covering every mode,
both path normalizations, every irrep normalization, shared and per-sample weights, path
weights and input variances. ``e3nn_forward`` runs the same product through e3nn itself,
the numerical oracle, and ``e3nn_gradients`` differentiates it with autograd (they need
the ``test`` extra: torch and e3nn).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from tpc.irreps import Irrep, Irreps
from tpc.ops import MODES, TensorProduct

LMAX = 4


@dataclass(frozen=True)
class Case:
    """A named tensor product for parity tests."""

    name: str
    tp: TensorProduct


def _random_block_irreps(rng: np.random.Generator, mul: int, count: int) -> Irreps:
    irreps = {Irrep(int(rng.integers(0, LMAX + 1)), int(rng.choice([-1, 1]))) for _ in range(count)}
    return Irreps([(mul, ir) for ir in sorted(irreps)])


def random_tensor_product(rng: np.random.Generator, mode: str) -> TensorProduct:
    """A random valid tensor product whose paths use ``mode`` ("mixed" mixes five modes).

    Irreps have degrees up to 4 and small multiplicities; several paths may write the same
    output block, some output blocks may receive no path, and the options are drawn at random.
    """
    uniform = mode in ("uuu", "uuw", "mixed")
    mul1 = int(rng.integers(1, 5))
    mul2 = mul1 if uniform else int(rng.integers(1, 5))
    in1 = _random_block_irreps(rng, mul1, int(rng.integers(1, 4)))
    in2 = _random_block_irreps(rng, mul2, int(rng.integers(1, 4)))
    reachable = sorted({ir for _, a in in1 for _, b in in2 for ir in a * b if ir.l <= LMAX})
    chosen = [reachable[i] for i in rng.permutation(len(reachable))[: int(rng.integers(1, len(reachable) + 1))]]
    if rng.random() < 0.3:
        chosen.append(Irrep(int(rng.integers(0, LMAX + 1)), int(rng.choice([-1, 1]))))
    weighted_uuw = mode != "uuw" or rng.random() < 0.6
    mul_out = {
        "uvu": mul1, "uvv": mul2, "uuu": mul1, "mixed": mul1, "uvuv": mul1 * mul2,
        "uuw": int(rng.integers(1, 5)) if weighted_uuw else 1,
    }
    out = Irreps([(mul_out.get(mode, int(rng.integers(1, 5))), ir) for ir in chosen])
    instructions = []
    for i1, (_, a) in enumerate(in1):
        for i2, (_, b) in enumerate(in2):
            for i_out, (_, c) in enumerate(out):
                if c not in a * b or (instructions and rng.random() < 0.2):
                    continue
                path_mode = str(rng.choice(["uvw", "uvu", "uvv", "uuw", "uuu"])) if mode == "mixed" else mode
                has_weight = {"uvw": True, "uuw": weighted_uuw}.get(path_mode, bool(rng.random() < 0.7))
                entry = (i1, i2, i_out, path_mode, has_weight)
                if rng.random() < 0.3:
                    entry += (float(rng.uniform(0.5, 2.0)),)
                instructions.append(entry)
    variances = {}
    if rng.random() < 0.3:
        variances = {name: [float(v) for v in rng.uniform(0.5, 2.0, len(irreps))]
                     for name, irreps in (("in1_var", in1), ("in2_var", in2), ("out_var", out))}
    return TensorProduct(
        in1, in2, out, instructions,
        irrep_normalization=str(rng.choice(["component", "norm", "none"])),
        path_normalization=str(rng.choice(["element", "path", "none"])),
        shared_weights=bool(rng.random() < 0.5),
        **variances,
    )


def foundation_cases(per_mode: int = 6, mixed: int = 4, seed: int = 2024) -> list[Case]:
    """The fixed parity set: ``per_mode`` random products for every mode, plus mixed-mode ones.

    Each mode cycles through both main path normalizations and the two main irrep
    normalizations so that every combination appears.
    """
    cases = []
    for mode in MODES + ("mixed",):
        for index in range(mixed if mode == "mixed" else per_mode):
            rng = np.random.default_rng([seed, MODES.index(mode) if mode in MODES else len(MODES), index])
            tp = random_tensor_product(rng, mode)
            irrep_norm = ("component", "norm")[index % 2]
            path_norm = ("element", "path")[(index // 2) % 2]
            data = tp.to_dict() | {"irrep_normalization": irrep_norm, "path_normalization": path_norm}
            cases.append(Case(f"{mode}-{index}-{irrep_norm}-{path_norm}", TensorProduct.from_dict(data)))
    return cases


def random_inputs(tp: TensorProduct, batch: int, rng: np.random.Generator,
                  dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Standard-normal ``x1, x2, weight`` of the right shapes (weight None when there are none)."""
    x1 = rng.standard_normal((batch, tp.irreps_in1.dim)).astype(dtype)
    x2 = rng.standard_normal((batch, tp.irreps_in2.dim)).astype(dtype)
    if tp.weight_numel == 0:
        return x1, x2, None
    shape = (tp.weight_numel,) if tp.shared_weights else (batch, tp.weight_numel)
    return x1, x2, rng.standard_normal(shape).astype(dtype)


@contextmanager
def float64_torch() -> Iterator[None]:
    """Make torch's default dtype float64 inside the block, so e3nn builds float64 buffers."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def e3nn_module(tp: TensorProduct):
    """The ``e3nn.o3.TensorProduct`` with the same arguments as ``tp`` (float64 buffers)."""
    from e3nn import o3

    with float64_torch():
        return o3.TensorProduct(
            str(tp.irreps_in1), str(tp.irreps_in2), str(tp.irreps_out),
            [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight, i.path_weight) for i in tp.instructions],
            in1_var=list(tp.in1_var), in2_var=list(tp.in2_var), out_var=list(tp.out_var),
            irrep_normalization=tp.irrep_normalization, path_normalization=tp.path_normalization,
            internal_weights=False, shared_weights=tp.shared_weights,
        )


def e3nn_forward(tp: TensorProduct, x1: np.ndarray, x2: np.ndarray, weight: np.ndarray | None,
                 module: Any = None) -> np.ndarray:
    """e3nn's output for the same spec and arguments, in float64."""
    import torch

    module = e3nn_module(tp) if module is None else module
    args = [torch.as_tensor(np.asarray(x, np.float64)) for x in (x1, x2)]
    if weight is not None:
        args.append(torch.as_tensor(np.asarray(weight, np.float64)))
    with torch.no_grad():
        return module(*args).numpy()


def gradient_problem(tp: TensorProduct, batch: int, seed: int) -> tuple[tuple, dict[str, np.ndarray]]:
    """Random float64 ``(x1, x2, weight, grad)`` and e3nn's gradients for them (the oracle)."""
    rng = np.random.default_rng(seed)
    x1, x2, weight = random_inputs(tp, batch, rng)
    grad = rng.standard_normal((batch, tp.irreps_out.dim))
    return (x1, x2, weight, grad), e3nn_gradients(tp, x1, x2, weight, grad)


def e3nn_gradients(tp: TensorProduct, x1: np.ndarray, x2: np.ndarray, weight: np.ndarray | None,
                   grad: np.ndarray) -> dict[str, np.ndarray]:
    """``d<grad, e3nn(x1, x2, weight)>/d`` each argument by torch autograd, in float64."""
    import torch

    arguments = {name: torch.tensor(np.asarray(value, np.float64), requires_grad=True)
                 for name, value in (("x1", x1), ("x2", x2), ("weight", weight)) if value is not None}
    output = e3nn_module(tp)(*arguments.values())
    (output * torch.as_tensor(np.asarray(grad, np.float64))).sum().backward()
    return {name: tensor.grad.numpy() for name, tensor in arguments.items()}


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max(max |expected|, tiny): 0 when both are zero."""
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-300)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max(initial=0.0)) / scale
