"""tpc against PriceofFreedom's JAX Gaunt products on their own problem, and e3nn-jax on MACE's.

The problem of "The Price of Freedom" (Xie et al.): the tensor product of two signals of degree
L (irreps 0e+1o+...+L, one channel) with the full output up to degree 2L, batch 10000, float32.
Sides: tpc's chosen kernel (``tpc.compile``: a tuned schedule if the cache has one, else the
default algorithm), tpc's other exact algorithms, and PriceofFreedom's spherical-grid and
2D-Fourier Gaunt products and its dense and sparse Clebsch-Gordan products, each jitted as its
own benchmark does. Every side is first checked against the float64 Gaunt product
(``tpc.so3.gaunt_product``); the Clebsch-Gordan sides return one block per path, which is
summed into its output degree with the factor that turns Clebsch-Gordan into Gaunt
coefficients, and the Fourier side is held to its quadrature's accuracy only. A side that
disagrees is reported and not timed. Then the sides are timed in turns (medians), with each
side's compile time (tpc: ``tpc.compile`` with an empty kernel cache; JAX: the first jitted
call).

Then MACE-style products (the ``mace-l*`` presets: uvu paths, weights per edge) against
e3nn-jax's ``tensor_product`` with the same weights, checked against the spec's float64
reference, timed in turns.

PriceofFreedom is not a package: give a checkout of github.com/atomicarchitects/PriceofFreedom.
JAX and e3nn-jax are benchmark-only dependencies (``pip install -e ".[peers]"``).

    python benchmarks/bench_peers.py --priceoffreedom DIR [--degrees 4 7 10] [--batch 10000]
        [--repeats 7] [--cg-max-degree 7] [--fourier-max-degree 2] [--fourier-resolution 300]
        [--mace-presets mace-l1 mace-l2 mace-l3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

import tpc
from tpc.so3.gaunt import gaunt_factor, gaunt_product
from tpc.testing import interleaved_medians, machine
from tpc.verify import relative_error, tolerance

FOURIER_TOLERANCE = 1e-2
"""PriceofFreedom's 2D Fourier route changes basis with trapezoid-rule integrals: about 3e-4
from the product at its resolution of 300, so it is held to this, not to float32 rounding."""
FOURIER_SCALE, GRID_SCALE = 2 * np.pi, np.sqrt(4 * np.pi)
"""PriceofFreedom's Fourier and grid products are the Gaunt product times these (their
normalization of the harmonics on the sphere); the check divides them out."""


def cg_paths(degree: int) -> list[tuple[int, int, int]]:
    """The paths of PriceofFreedom's Clebsch-Gordan products into 0e..2L, in their output order:
    l1, l2, l3 in loop order with even l1 + l2 + l3, stably sorted by l3."""
    paths = [(l1, l2, l3) for l1 in range(degree + 1) for l2 in range(degree + 1)
             for l3 in range(abs(l1 - l2), l1 + l2 + 1) if (l1 + l2 + l3) % 2 == 0]
    return sorted(paths, key=lambda path: path[2])


def summed_paths(blocks: np.ndarray, degree: int) -> np.ndarray:
    """A Clebsch-Gordan side's path blocks summed into the Gaunt product (e3nn layout up to 2L)."""
    out = np.zeros((blocks.shape[0], (2 * degree + 1) ** 2))
    start = 0
    for l1, l2, l3 in cg_paths(degree):
        width = 2 * l3 + 1
        factor = gaunt_factor(l1, l2, l3) / np.sqrt((2 * l1 + 1) * (2 * l2 + 1))
        out[:, l3 * l3:(l3 + 1) ** 2] += factor * blocks[:, start:start + width]
        start += width
    return out


def peer_sides(degree: int, args: argparse.Namespace) -> dict[str, tuple[Callable, Callable]]:
    """PriceofFreedom's products at ``degree``: name -> (jitted function of two IrrepsArrays,
    its output as the float64 Gaunt product)."""
    import e3nn_jax as e3nn
    import jax
    from freedom.tensor_products import functional

    out_irreps = e3nn.s2_irreps(2 * degree)
    sides = {"pof-grid": (partial(functional.gaunt_tensor_product_s2grid, res_beta=2 * degree + 1,
                                  res_alpha=2 * (2 * degree + 1), quadrature="gausslegendre", p_val1=1, p_val2=1,
                                  s2grid_fft=False, filter_ir_out=out_irreps),
                          lambda out: out / GRID_SCALE)}
    if degree <= args.fourier_max_degree:
        sides["pof-fourier"] = (partial(functional.gaunt_tensor_product_2D_fourier, res_theta=args.fourier_resolution,
                                        res_phi=args.fourier_resolution, convolution_type="direct",
                                        filter_ir_out=out_irreps), lambda out: out / FOURIER_SCALE)
    if degree <= args.cg_max_degree:
        for kind in ("dense", "sparse"):
            function = getattr(functional, f"clebsch_gordan_tensor_product_{kind}")
            sides[f"pof-cg-{kind}"] = (partial(function, filter_ir_out=out_irreps, irrep_normalization="norm"),
                                       partial(summed_paths, degree=degree))
    return {name: (jax.jit(function), as_gaunt) for name, (function, as_gaunt) in sides.items()}


def run_degree(degree: int, args: argparse.Namespace) -> list[tuple[str, str, float, float | None, str]]:
    """Rows (side, algorithm, compile seconds, seconds per call or None, note) for one degree."""
    import e3nn_jax as e3nn

    signal = tpc.Irreps.spherical_harmonics(degree)
    tp = tpc.GauntTensorProduct(signal, signal, 2 * degree)
    rng = np.random.default_rng(degree)
    x1, x2 = (rng.standard_normal((args.batch, tp.irreps_in1.dim)).astype(np.float32) for _ in range(2))
    check = slice(0, 16)
    expected = gaunt_product(x1[check].astype(np.float64), x2[check].astype(np.float64), 2 * degree)
    rows, timed = [], {}
    algorithms: list[str | None] = [None]  # None: tpc's own choice, then its other exact algorithms
    while algorithms:
        algorithm = algorithms.pop(0)
        name = "tpc" if algorithm is None else f"tpc-{algorithm}"
        with tempfile.TemporaryDirectory() as kernels:
            os.environ["TPC_KERNEL_CACHE"] = kernels
            start = time.perf_counter()
            kernel = tpc.compile(tp, batch=args.batch, algorithm=algorithm)
            compile_seconds = time.perf_counter() - start
        out = np.empty((args.batch, tp.irreps_out.dim), np.float32)
        error = relative_error(kernel(x1[check], x2[check]), expected)
        label = f"{kernel.schedule.algorithm} ({kernel.schedule.source if algorithm is None else 'forced'})"
        agrees = error <= tolerance("float32")
        rows.append((name, label, compile_seconds, None,
                     f"error {error:.1e}" if agrees else f"disagrees: error {error:.1e}, not timed"))
        if agrees:
            timed[name] = partial(lambda k, o: k(x1, x2, out=o), kernel, out)
        if algorithm is None:
            algorithms = [a for a in tpc.algorithms_for(tp) if a != kernel.schedule.algorithm
                          and (a != "cg" or degree <= args.tpc_cg_max_degree)]
    irreps = e3nn.Irreps(str(signal))
    inputs = (e3nn.IrrepsArray(irreps, x1), e3nn.IrrepsArray(irreps, x2))
    small = (e3nn.IrrepsArray(irreps, x1[check]), e3nn.IrrepsArray(irreps, x2[check]))
    for name, (function, as_gaunt) in peer_sides(degree, args).items():
        start = time.perf_counter()
        function(*inputs).array.block_until_ready()
        first_call = time.perf_counter() - start
        error = relative_error(as_gaunt(np.asarray(function(*small).array, np.float64)), expected)
        allowed = FOURIER_TOLERANCE if name == "pof-fourier" else tolerance("float32")
        rows.append((name, name.removeprefix("pof-"), first_call, None,
                     f"error {error:.1e}" if error <= allowed else f"disagrees: error {error:.1e}, not timed"))
        if error <= allowed:
            timed[name] = partial(lambda f: f(*inputs).array.block_until_ready(), function)
    medians = interleaved_medians(timed, args.repeats)
    return [(name, algorithm, seconds, medians.get(name), note) for name, algorithm, seconds, _, note in rows]


def e3nn_jax_product(tp: tpc.TensorProduct) -> Callable:
    """The product ``tp`` (uvu paths, one harmonic channel, weights per sample: MACE's
    convolution) in e3nn-jax: ``e3nn.tensor_product``'s path blocks in the spec's path order,
    each scaled by its weights, jitted."""
    import e3nn_jax as e3nn
    import jax
    import jax.numpy as jnp

    if tp.shared_weights or any(i.connection_mode != "uvu" or tp.irreps_in2[i.i_in2].mul != 1 or i.path_weight != 1
                                for i in tp.instructions):
        raise ValueError(f"{tp} is not a MACE-style product (uvu paths of unit weight, one harmonic channel)")
    irreps1, irreps2 = e3nn.Irreps(str(tp.irreps_in1)), e3nn.Irreps(str(tp.irreps_in2))
    wanted = sorted({ir for _, ir in irreps1 for _, ir2 in irreps2 for ir in ir * ir2})
    paths = [(i1, i2, ir) for i1, (_, ir1) in enumerate(irreps1) for i2, (_, ir2) in enumerate(irreps2)
             for ir in ir1 * ir2]
    paths = sorted(paths, key=lambda path: path[2])  # e3nn-jax's output order (a stable sort)
    order, start = [], 0
    for instruction in tp.instructions:
        ir_out = e3nn.Irrep(str(tp.irreps_out[instruction.i_out].ir))
        mul = tp.irreps_in1[instruction.i_in1].mul
        order.append((paths.index((instruction.i_in1, instruction.i_in2, ir_out)), slice(start, start + mul)))
        start += mul

    def product(x1: jax.Array, x2: jax.Array, weight: jax.Array) -> jax.Array:
        blocks = e3nn.tensor_product(e3nn.IrrepsArray(irreps1, x1), e3nn.IrrepsArray(irreps2, x2),
                                     filter_ir_out=wanted, regroup_output=False).chunks
        return jnp.concatenate([(blocks[index] * weight[:, columns, None]).reshape(x1.shape[0], -1)
                                for index, columns in order], axis=1)

    return jax.jit(product)


def run_mace_preset(name: str, args: argparse.Namespace) -> tuple[float, float, float, float, float, float]:
    """tpc's kernel and e3nn-jax on a MACE-style preset: tpc's compile seconds, e3nn-jax's first
    call's, both relative errors, then both median seconds per call (NaN when one disagrees)."""
    preset = tpc.presets.get(name)
    tp, batch = preset.tp, args.batch
    rng = np.random.default_rng(0)
    x1, x2, weight = (rng.standard_normal((batch, width)).astype(np.float32)
                      for width in (tp.irreps_in1.dim, tp.irreps_in2.dim, tp.weight_numel))
    check = slice(0, 16)
    expected = tp.reference(*(a[check].astype(np.float64) for a in (x1, x2, weight)))
    with tempfile.TemporaryDirectory() as kernels:
        os.environ["TPC_KERNEL_CACHE"] = kernels
        start = time.perf_counter()
        kernel = tpc.compile(tp, batch=batch)
        ours_compile = time.perf_counter() - start
    function = e3nn_jax_product(tp)
    start = time.perf_counter()
    function(x1, x2, weight).block_until_ready()
    theirs_compile = time.perf_counter() - start
    errors = (relative_error(kernel(x1[check], x2[check], weight[check]), expected),
              relative_error(np.asarray(function(x1[check], x2[check], weight[check]), np.float64), expected))
    if max(errors) > tolerance("float32"):
        return ours_compile, theirs_compile, *errors, float("nan"), float("nan")
    out = np.empty((batch, tp.irreps_out.dim), np.float32)
    medians = interleaved_medians({"tpc": lambda: kernel(x1, x2, weight, out=out),
                                   "e3nn-jax": lambda: function(x1, x2, weight).block_until_ready()}, args.repeats)
    return ours_compile, theirs_compile, *errors, medians["tpc"], medians["e3nn-jax"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priceoffreedom", type=Path, required=True, help="a checkout of PriceofFreedom")
    parser.add_argument("--degrees", type=int, nargs="+", default=[4, 7, 10])
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per side, in turns")
    parser.add_argument("--cg-max-degree", type=int, default=7,
                        help="time PriceofFreedom's Clebsch-Gordan products up to this degree (their jit grows fast)")
    parser.add_argument("--fourier-max-degree", type=int, default=2,
                        help="time PriceofFreedom's 2D Fourier product up to this degree (default 2: it "
                             "integrates its change of basis entry by entry when first traced, over a minute at "
                             "degree 2 and growing as L^4)")
    parser.add_argument("--fourier-resolution", type=int, default=300, help="its res_theta = res_phi (theirs: 300)")
    parser.add_argument("--tpc-cg-max-degree", type=int, default=4,
                        help="also time tpc's Clebsch-Gordan kernel up to this degree (its build takes a minute "
                             "from degree 7); tpc's other exact algorithms are timed at every degree")
    parser.add_argument("--mace-presets", nargs="*", default=["mace-l1", "mace-l2", "mace-l3"],
                        help="MACE-style presets to time against e3nn-jax (none: leave that part out)")
    args = parser.parse_args()
    if not (args.priceoffreedom / "freedom" / "tensor_products" / "functional.py").exists():
        parser.error(f"{args.priceoffreedom} is not a PriceofFreedom checkout "
                     "(it has no freedom/tensor_products/functional.py)")
    sys.path.insert(0, str(args.priceoffreedom))  # not a package: imported from the checkout
    import jax

    print(machine())
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; batch {args.batch}, float32, output up to 2L")
    print(f"{'L':>3} {'side':<15} {'algorithm':<28} {'compile s':>9} {'ms/call':>9} {'tpc faster':>10}  check")
    for degree in args.degrees:
        rows = run_degree(degree, args)
        ours = rows[0][3]
        for name, algorithm, compile_seconds, seconds, note in rows:
            ms = f"{seconds * 1e3:9.3f}" if seconds is not None else f"{'-':>9}"
            ratio = f"{seconds / ours:9.2f}x" if seconds is not None and ours is not None else f"{'-':>10}"
            print(f"{degree:>3} {name:<15} {algorithm:<28} {compile_seconds:9.1f} {ms} {ratio}  {note}", flush=True)
        peers = [seconds for name, _, _, seconds, _ in rows if name.startswith("pof") and seconds is not None]
        if peers and ours is not None:
            print(f"{degree:>3} tpc against PriceofFreedom's fastest: {min(peers) / ours:.2f}x", flush=True)
    if args.mace_presets:
        print(f"\nMACE-style products against e3nn-jax (batch {args.batch}, float32, weights per sample)")
        print(f"{'preset':<14} {'compile s tpc/e3nn-jax':>22} {'error tpc/e3nn-jax':>20} {'tpc ms':>9} "
              f"{'e3nn-jax ms':>11} {'tpc faster':>10}")
        for name in args.mace_presets:
            compiled, traced, ours_error, theirs_error, ours, theirs = run_mace_preset(name, args)
            print(f"{name:<14} {compiled:10.1f} / {traced:9.1f} {ours_error:9.1e} / {theirs_error:8.1e} "
                  f"{ours * 1e3:9.3f} {theirs * 1e3:11.3f} {theirs / ours:9.2f}x", flush=True)


if __name__ == "__main__":
    main()
