"""The e3nn and scipy side of the correctness harness, built on :mod:`tpc.verify`.

``foundation_cases()`` is a fixed, seeded set of random tensor products covering every mode,
both path normalizations, every irrep normalization, shared and per-sample weights, path
weights and input variances. ``e3nn_forward`` runs the same product through e3nn itself,
the numerical oracle, and ``e3nn_gradients`` differentiates it with autograd (they need
the ``test`` extra: torch and e3nn).

For whole blocks: ``random_system`` draws atoms in a periodic box with their radius graph,
``interaction_inputs`` adds random features and weights for a graph's other inputs, and
``E3nnInteraction`` is :func:`tpc.graph.presets.mace_interaction` written with e3nn modules.
``machine`` and ``median_seconds`` are what the benchmarks report and time with.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

from tpc.irreps import Irrep, Irreps
from tpc.ops import MODES, Fused, TensorProduct
from tpc.verify import random_arguments, random_inputs

if TYPE_CHECKING:
    import torch

    from tpc.graph import Graph

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


# -- periodic systems and interaction blocks --------------------------------------------------


def box_side(atoms: int, neighbours: float, cutoff: float) -> float:
    """Side of the cubic box in which ``atoms`` uniformly placed atoms have on average
    ``neighbours`` others within ``cutoff`` (periodic images included)."""
    if isinstance(atoms, bool) or not isinstance(atoms, (int, np.integer)) or atoms < 2:
        raise ValueError(f"atoms must be an integer >= 2, got {atoms!r}")
    if not neighbours > 0:
        raise ValueError(f"neighbours must be > 0, got {neighbours!r}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
    return ((atoms - 1) * 4 / 3 * math.pi * cutoff**3 / neighbours) ** (1 / 3)


def random_system(atoms: int, neighbours: float = 30.0, seed: int = 0, cutoff: float = 5.0) -> dict[str, np.ndarray]:
    """Uniform random atoms in a periodic cubic box sized by :func:`box_side`, with their
    radius graph: every ordered pair closer than ``cutoff`` (minimum image), both directions.

    Returns float64 ``pos`` (atoms, 3) and ``shifts`` (edges, 3), with ``pos[receivers] -
    pos[senders] + shifts`` the minimum-image edge vector, and int64 ``senders`` and
    ``receivers``. Edges are not sorted by receiver. The box side must exceed twice the
    cutoff, so that no pair is within the cutoff through two images.
    """
    from scipy.spatial import cKDTree

    side = box_side(atoms, neighbours, cutoff)
    if side <= 2 * cutoff:
        densest = (atoms - 1) * math.pi / 6
        raise ValueError(f"{atoms} atoms with {neighbours} neighbours within {cutoff} need a periodic box of side "
                         f"{side:.3g}, but it must exceed twice the cutoff ({2 * cutoff:.3g}) so that no atom sees "
                         f"another twice; use more atoms or fewer neighbours (below {densest:.3g} for {atoms} atoms)")
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, side, (atoms, 3))
    pairs = cKDTree(pos, boxsize=side).query_pairs(cutoff, output_type="ndarray")
    senders = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(np.int64)
    receivers = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(np.int64)
    difference = pos[receivers] - pos[senders]
    shifts = -side * np.round(difference / side)
    within = np.linalg.norm(difference + shifts, axis=1) < cutoff
    return {"pos": pos, "shifts": shifts[within], "senders": senders[within], "receivers": receivers[within]}


def interaction_inputs(graph: "Graph", system: Mapping[str, np.ndarray], seed: int = 0,
                       dtype: str = "float32") -> dict[str, np.ndarray]:
    """All inputs of ``graph``: the arrays of ``system`` (e.g. from :func:`random_system`), and
    standard-normal values for every other float input (features, weights), their symbolic
    dims sized by the system's arrays. Float arrays are in ``dtype``, index arrays int64."""
    from tpc.graph import Input

    types = {node.name: node.output.type for node in graph.nodes() if isinstance(node.op, Input)}
    unknown = sorted(system.keys() - types.keys())
    if unknown:
        raise ValueError(f"the system has arrays that are not graph inputs: {unknown}; inputs are {sorted(types)}")
    sizes: dict[str, int] = {}
    for name, value in system.items():
        for dim, size in zip(types[name].shape, np.shape(value)):
            if isinstance(dim, str):
                sizes.setdefault(dim, size)
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, tensor_type in types.items():
        if name in system:
            value = np.asarray(system[name])
            inputs[name] = value if tensor_type.dtype == "int64" else value.astype(dtype)
            continue
        if tensor_type.dtype == "int64":
            raise ValueError(f"index input {name!r} must come from the system; it cannot be drawn at random")
        missing = [dim for dim in tensor_type.shape if isinstance(dim, str) and dim not in sizes]
        if missing:
            raise ValueError(f"input {name!r} has dims {missing} that no array of the system fixes")
        shape = tuple(sizes[dim] if isinstance(dim, str) else dim for dim in tensor_type.shape)
        inputs[name] = rng.standard_normal(shape).astype(dtype)
    return inputs


class E3nnInteraction:
    """The block of :func:`tpc.graph.presets.mace_interaction` with e3nn and torch modules:
    the oracle for its graph and compiled kernels, and the baseline they are timed against.

    ``tp`` is the block's channelwise product (its first input irreps are the node irreps, its
    second the harmonics); ``radial``, ``radial_hidden`` and ``cutoff`` are the block's radial
    MLP. The modules are built once, in ``dtype``; calls take the graph inputs as torch tensors
    (:meth:`tensors` converts numpy ones) and return ``{"out", "aggregated"}`` without autograd.
    """

    def __init__(self, tp: TensorProduct, radial: int, radial_hidden: int, cutoff: float,
                 dtype: str = "float64") -> None:
        import torch
        from e3nn import o3

        node = tp.irreps_in1
        degrees = [ir.l for _, ir in tp.irreps_in2]
        if tp.irreps_in2 != Irreps.spherical_harmonics(max(degrees)):
            raise ValueError(f"the product's second input must be spherical harmonics 0e+1o+..., got {tp.irreps_in2}")
        self.dtype = getattr(torch, dtype)
        self.sh_degrees = degrees
        self.radial, self.cutoff = radial, cutoff
        gate_irreps = f"{node.num_irreps}x0e"
        linear_irreps = {
            "w_up": (node, node),
            "w_radial1": (f"{radial}x0e", f"{radial_hidden}x0e"),
            "w_radial2": (f"{radial_hidden}x0e", f"{radial_hidden}x0e"),
            "w_radial3": (f"{radial_hidden}x0e", f"{tp.weight_numel}x0e"),
            "w_out": (tp.irreps_out, node),
            "w_gate": (tp.irreps_out, gate_irreps),
            "w_skip": (node, node),
        }
        with float64_torch():
            self.linears = {name: o3.Linear(str(irreps_in), str(irreps_out), internal_weights=False,
                                            shared_weights=True).to(self.dtype)
                            for name, (irreps_in, irreps_out) in linear_irreps.items()}
            self.gate = o3.ElementwiseTensorProduct(str(node), gate_irreps).to(self.dtype)
        self.product = e3nn_module(tp).to(self.dtype)

    def tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, "torch.Tensor"]:
        """Numpy inputs as torch tensors: float arrays in the block's dtype, index arrays int64."""
        import torch

        tensors = {}
        for name, value in inputs.items():
            array = np.asarray(value)
            tensors[name] = torch.as_tensor(array, dtype=torch.int64 if array.dtype.kind in "iu" else self.dtype)
        return tensors

    def __call__(self, inputs: Mapping[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        import torch
        from e3nn import o3
        from e3nn.math import soft_one_hot_linspace
        from torch.nn.functional import silu

        def linear(weight: str, x: "torch.Tensor") -> "torch.Tensor":
            return self.linears[weight](x, weight=inputs[weight])

        h, senders, receivers = inputs["h"], inputs["senders"], inputs["receivers"]
        with torch.no_grad():
            up = linear("w_up", h)
            vectors = inputs["pos"][receivers] - inputs["pos"][senders] + inputs["shifts"]
            sh = o3.spherical_harmonics(self.sh_degrees, vectors, normalize=True, normalization="component")
            basis = soft_one_hot_linspace(vectors.norm(dim=1), 0.0, self.cutoff, self.radial, basis="bessel",
                                          cutoff=True).mul(self.radial**0.5)
            edge_weights = linear("w_radial3", silu(linear("w_radial2", silu(linear("w_radial1", basis)))))
            messages = self.product(up[senders], sh, edge_weights)
            aggregated = messages.new_zeros(h.shape[0], messages.shape[1]).index_add_(0, receivers, messages)
            gates = silu(linear("w_gate", aggregated))
            out = self.gate(linear("w_out", aggregated), gates) + linear("w_skip", h)
        return {"out": out, "aggregated": aggregated}


# -- reporting ----------------------------------------------------------------------------------


def machine() -> str:
    """One line describing the machine and the library versions, for benchmark reports."""
    import tvm

    import tpc
    from tpc.targets import host_cores

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torch

        torch_version = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_version = "no torch"
    return (f"{model}, {host_cores()} cores usable, LLVM cpu {tvm.target.codegen.llvm_get_system_cpu()}; "
            f"tpc {tpc.__version__}, TVM {tvm.__version__}, {torch_version}, numpy {np.__version__}")


def interleaved_medians(sides: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each side after one warm-up call each, the sides timed in turns and
    their order reversed every repeat, so that a machine that slows down or speeds up during
    the run weighs on all sides alike."""
    for run in sides.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for repeat in range(repeats):
        for name in (order if repeat % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(run: Callable[[], object], min_runs: int = 3, min_seconds: float = 1.0) -> float:
    """Median wall time of ``run`` after one warm-up call: at least ``min_runs`` calls and
    ``min_seconds`` in all, at most 50 calls."""
    run()
    times: list[float] = []
    while len(times) < min_runs or sum(times) < min_seconds:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        if len(times) >= 50:
            break
    return statistics.median(times)


def random_convolution(tp: TensorProduct, fusion: str, edges: int, nodes: int, rng: np.random.Generator,
                       dtype: str = "float32",
                       reference: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Keyword arguments of a fused kernel (:class:`tpc.runtime.ConvolutionKernel`) on a random
    graph of ``edges`` edges between ``nodes`` nodes (see :func:`tpc.verify.random_arguments`),
    and the float64 reference of its result (None without ``reference``)."""
    op = Fused(tp, fusion)
    arguments = random_arguments(op, edges, rng, dtype, nodes)
    return arguments, op.reference(**arguments) if reference else None
