"""2D Fourier lowering of a Gaunt product (Luo et al. 2024): convolve on the torus.

With the colatitude theta and azimuth phi as torus angles, a signal of degree <= L is the
trigonometric polynomial ``sum_{|u|,|v| <= L} F[u, v] exp(i (u theta + v phi))``
(:func:`tpc.so3.sh_to_fourier`). The product of two signals is the 2D convolution of their
coefficients, and the sphere integral against the output harmonics is exact
(:func:`tpc.so3.fourier_to_sh`). Complex numbers are pairs of real stages ``_re``/``_im``.
The product is real, so only azimuthal frequencies V >= 0 of it are formed; the projection
takes the rest from Hermitian symmetry.

Stages, per sample and channel (names are the module constants):

* ``pack1``, ``pack2`` — the inputs as ``[b, c, degree, m]`` (see :mod:`tpc.lower._signal`).
* ``fourier{s}_re``, ``fourier{s}_im`` — ``F[b, c, u, v]`` of input s. Harmonic (l, m) has
  frequencies v = +-m only, so each coefficient is a sum over degrees of two table terms.
  With "dft" only u >= 0 is formed (``F[-u, -v] = conj(F[u, v])``).
* convolution "direct": ``padded_re``, ``padded_im`` — the coefficients of the input of larger
  degree, zero-padded so the sum below has fixed bounds; ``conv_re``, ``conv_im`` —
  ``P[b, c, U, V] = sum_{u,v} F_a[u, v] F_b[U - u, V - v]`` for |U| <= lmax1 + lmax2 and
  0 <= V <= lmax_out, summed over the input of smaller degree.
* convolution "dft": both inputs to values on an ``(2D + 1) x (D + lmax_out + 1)`` torus grid
  (D = lmax1 + lmax2) with two DFT matrix products each — ``torus{s}_re``, ``torus{s}_im``
  (``[b, c, u, phi] = sum_v F[u, v] exp(i v phi)``, u >= 0) and ``values{s}``
  (``[b, c, theta, phi]``) — then ``dft_re``, ``dft_im`` (``[b, c, theta, V] = sum_phi values1
  values2 cos/sin(V phi)``, the pointwise product and the azimuthal transform back). The grid
  resolves every frequency of the product in theta and, without aliasing, every |V| <= lmax_out
  in phi. The theta transform back is folded into the projection table.
* ``lanes``: the V axes (and the torus azimuth count: a finer torus is still exact) are padded
  for whole vectors, the padding zeros in the tables.
* ``sh`` — ``[b, c, degree, sign, |m|]`` (sign 0 for m < 0, 1 for m >= 0): the projection
  onto the output harmonics; order m reads azimuthal frequency V = |m| only, so this layout
  keeps every read contiguous in |m|.
* ``out`` — the flat output, block by block.

Tables (PrimFunc parameters after ``out``, in this order), each laid out with the axis a
schedule vectorizes last:
"direct": ``to_fourier1``, ``to_fourier2``, ``projection``;
"dft": ``to_fourier1``, ``to_fourier2``, ``phi``, ``theta``, ``phi_out``, ``projection``.
``to_fourier{s}[part, degree, u, v]`` holds the real and imaginary parts of the coefficient of
harmonic (l, m = v) (parts 0, 1) and (l, m = -v) (parts 2, 3) at frequency (u, v).
``phi[part, v + lmax, j]`` is cos/sin(v phi_j) (lmax the largest of the three degrees),
``theta[part, u, i]`` cos/sin(u theta_i) for u = 0..lmax_in (the larger input degree), doubled
for u > 0,
``phi_out[part, j, V]`` cos/sin(V phi_j) for V = 0..lmax_out (zero beyond).
``projection[part, sign, degree, n, |m|]``: the factors of P_re and P_im (direct, n = U + D)
or of the two azimuthal sums (dft, n = theta index).
"""

from __future__ import annotations

from math import pi

import numpy as np
from tvm import te, tirx

from tpc.dtypes import check_dtype
from tpc.lower._signal import SignalLayout, assemble, pack, signal_layout, vector_padded
from tpc.lower.lowered import Lowered
from tpc.lower.tir_edits import element_aligned
from tpc.ops import Product, TensorProduct
from tpc.so3 import fourier_to_sh, sh_to_fourier

ALGORITHM = "fourier"
CONVOLUTIONS = ("direct", "dft")
PACK1, PACK2 = "pack1", "pack2"
FOURIER1 = ("fourier1_re", "fourier1_im")
FOURIER2 = ("fourier2_re", "fourier2_im")
PADDED = ("padded_re", "padded_im")
CONV = ("conv_re", "conv_im")
TORUS1 = ("torus1_re", "torus1_im")
TORUS2 = ("torus2_re", "torus2_im")
VALUES1, VALUES2 = "values1", "values2"
DFT = ("dft_re", "dft_im")
SH = "sh"
OUT = "out"
TABLES = {"direct": ("to_fourier1", "to_fourier2", "projection"),
          "dft": ("to_fourier1", "to_fourier2", "phi", "theta", "phi_out", "projection")}


def torus_shape(tp: TensorProduct, lanes: int = 1) -> tuple[int, int]:
    """(n_theta, n_phi) of the "dft" torus grid: (2 D + 1, D + lmax_out + 1), D = lmax1 + lmax2,
    n_phi padded for vectors of ``lanes`` (a finer grid is still exact)."""
    return _torus_shape(signal_layout(tp, ALGORITHM), lanes)


def _torus_shape(layout: SignalLayout, lanes: int) -> tuple[int, int]:
    degree = layout.lmax1 + layout.lmax2
    return 2 * degree + 1, vector_padded(degree + layout.lmax_out + 1, lanes)


def lower_fourier(tp: TensorProduct, dtype: str = "float32", batch: int | None = None,
                  convolution: str = "direct", lanes: int = 1) -> Lowered:
    """Lower the Gaunt product ``tp`` through the 2D Fourier basis, the convolution done
    ``convolution`` ("direct" sum or "dft" on a torus grid). The azimuthal frequency axes
    (and the torus azimuth count) are padded for vectors of ``lanes``. ValueError if ``tp``
    is not a Gaunt product."""
    if convolution not in CONVOLUTIONS:
        raise ValueError(f"convolution must be one of {CONVOLUTIONS}, got {convolution!r}")
    check_dtype(dtype)
    layout = signal_layout(tp, ALGORITHM)
    batch = te.var("batch") if batch is None else batch
    x1 = te.placeholder((batch, tp.irreps_in1.dim), dtype, name="x1")
    x2 = te.placeholder((batch, tp.irreps_in2.dim), dtype, name="x2")
    arrays = fourier_tables(layout, convolution, lanes)
    width = vector_padded(layout.lmax_out + 1, lanes)
    tables = [te.placeholder(array.shape, dtype, name=name) for name, array in zip(TABLES[convolution], arrays)]
    channels = layout.channels
    half = convolution == "dft"
    f1 = _to_fourier(x1, tp.irreps_in1, layout.degrees1, channels, batch, tables[0], PACK1, FOURIER1, half)
    f2 = _to_fourier(x2, tp.irreps_in2, layout.degrees2, channels, batch, tables[1], PACK2, FOURIER2, half)
    if convolution == "direct":
        spectrum = _direct_convolution(layout, f1, f2, batch, width)
    else:
        spectrum = _dft_convolution(layout, f1, f2, batch, width, lanes, *tables[2:5])
    sh = _project(layout, spectrum, tables[-1], batch)
    out = assemble(lambda b, c, k, m: sh[b, c, k, tirx.Select(m < 0, 0, 1), tirx.Select(m < 0, -m, m)],
                   dtype, tp.irreps_out, layout.degrees_out, batch, OUT, padding=lambda b: sh[b, 0, 0, 0, width - 1])
    func = element_aligned(te.create_prim_func([x1, x2, out, *tables]), dtype)
    return Lowered(func, (), OUT, algorithm=ALGORITHM, tables=tuple(array.astype(dtype) for array in arrays),
                   op=Product(tp))


def _to_fourier(x, irreps, degrees, channels, batch, table, pack_name: str, names: tuple[str, str], half: bool):
    """``F[b, c, u, v]`` (real and imaginary stages): harmonic (l, +-v) terms summed over degrees.

    ``half``: frequencies u >= 0 only (axis u runs over u, not u + lmax); the rest follow from
    ``F[-u, -v] = conj(F[u, v])``, the spectrum of a real signal.
    """
    lmax = degrees[-1]
    packed = pack(x, irreps, degrees, channels, batch, pack_name)
    first = lmax if half else 0
    shape = (batch, channels, 2 * lmax + 1 - first, 2 * lmax + 1)

    def part(offset: int, name: str):
        k = te.reduce_axis((0, len(degrees)), "k")
        return te.compute(shape, lambda b, c, u, v: te.sum(
            table[offset, k, u + first, v] * packed[b, c, k, v]
            + table[offset + 2, k, u + first, v] * packed[b, c, k, 2 * lmax - v], axis=k), name=name)

    return part(0, names[0]), part(1, names[1]), lmax


def _direct_convolution(layout: SignalLayout, f1, f2, batch, width: int):
    """``P[b, c, U + D, V]`` for V in 0..width - 1, summed over the smaller input's frequencies."""
    (small_re, small_im, ls), (large_re, large_im, ll) = sorted((f1, f2), key=lambda f: f[2])
    degree = layout.lmax1 + layout.lmax2
    zero = tirx.const(0.0, small_re.dtype)
    # padded[a, e] = F_large[a - D - ls, e - ls]: every U - u and V - v of the sum lands inside.
    padded_shape = (batch, layout.channels, 2 * degree + 2 * ls + 1, width + 2 * ls)

    def padded(large, name: str):
        def value(b, c, a, e):
            u, v = a - degree - ls, e - ls
            inside = tirx.all(u >= -ll, u <= ll, v >= -ll, v <= ll)
            return tirx.if_then_else(inside, large[b, c, u + ll, v + ll], zero)
        return te.compute(padded_shape, value, name=name)

    pad_re, pad_im = padded(large_re, PADDED[0]), padded(large_im, PADDED[1])
    shape = (batch, layout.channels, 2 * degree + 1, width)

    def convolve(name: str, real: bool):
        u, v = te.reduce_axis((0, 2 * ls + 1), "u"), te.reduce_axis((0, 2 * ls + 1), "v")

        def value(b, c, U, V):
            a, e = U - u + 2 * ls, V - v + 2 * ls
            if real:
                term = small_re[b, c, u, v] * pad_re[b, c, a, e] - small_im[b, c, u, v] * pad_im[b, c, a, e]
            else:
                term = small_re[b, c, u, v] * pad_im[b, c, a, e] + small_im[b, c, u, v] * pad_re[b, c, a, e]
            return te.sum(term, axis=[u, v])
        return te.compute(shape, value, name=name)

    return convolve(CONV[0], True), convolve(CONV[1], False)


def _dft_convolution(layout: SignalLayout, f1, f2, batch, width: int, lanes: int, phi, theta, phi_out):
    """The two azimuthal sums ``[b, c, i, V]`` (V < width) of the pointwise product on the torus grid."""
    n_theta, n_phi = _torus_shape(layout, lanes)
    lmax_all = max(layout.lmax1, layout.lmax2, layout.lmax_out)
    channels = layout.channels

    def to_values(f, torus_names: tuple[str, str], name: str):
        f_re, f_im, lmax = f
        size = 2 * lmax + 1
        # torus[u, j] = sum_v F[u, v] exp(i v phi_j), for u >= 0
        v = te.reduce_axis((0, size), "v")
        torus_re = te.compute((batch, channels, lmax + 1, n_phi), lambda b, c, u, j: te.sum(
            f_re[b, c, u, v] * phi[0, v + lmax_all - lmax, j] - f_im[b, c, u, v] * phi[1, v + lmax_all - lmax, j],
            axis=v), name=torus_names[0])
        v = te.reduce_axis((0, size), "v")
        torus_im = te.compute((batch, channels, lmax + 1, n_phi), lambda b, c, u, j: te.sum(
            f_re[b, c, u, v] * phi[1, v + lmax_all - lmax, j] + f_im[b, c, u, v] * phi[0, v + lmax_all - lmax, j],
            axis=v), name=torus_names[1])
        # values[i, j] = Re sum_u torus[u, j] exp(i u theta_i): torus[-u] = conj(torus[u]), so
        # the terms u > 0 count twice (folded into the theta table).
        u = te.reduce_axis((0, lmax + 1), "u")
        return te.compute((batch, channels, n_theta, n_phi), lambda b, c, i, j: te.sum(
            torus_re[b, c, u, j] * theta[0, u, i] - torus_im[b, c, u, j] * theta[1, u, i], axis=u), name=name)

    values1, values2 = to_values(f1, TORUS1, VALUES1), to_values(f2, TORUS2, VALUES2)
    shape = (batch, channels, n_theta, width)

    def azimuthal(part: int, name: str):
        j = te.reduce_axis((0, n_phi), "j")
        return te.compute(shape, lambda b, c, i, V: te.sum(
            values1[b, c, i, j] * values2[b, c, i, j] * phi_out[part, j, V], axis=j), name=name)

    return azimuthal(0, DFT[0]), azimuthal(1, DFT[1])


def _project(layout: SignalLayout, spectrum, projection, batch):
    """``sh[b, c, k, sign, V]``: the two spectrum parts at frequency V = |m| against the projection table."""
    spectrum_re, spectrum_im = spectrum
    n = te.reduce_axis((0, int(spectrum_re.shape[2])), "n")

    def value(b, c, k, sign, V):
        return te.sum(projection[0, sign, k, n, V] * spectrum_re[b, c, n, V]
                      + projection[1, sign, k, n, V] * spectrum_im[b, c, n, V], axis=n)

    shape = (batch, layout.channels, len(layout.degrees_out), 2, int(spectrum_re.shape[3]))
    return te.compute(shape, value, name=SH)


def fourier_tables(layout: SignalLayout, convolution: str, lanes: int = 1) -> tuple[np.ndarray, ...]:
    """The float64 tables of ``TABLES[convolution]`` for ``layout``, azimuthal frequency axes
    zero-padded for vectors of ``lanes``."""
    degree = layout.lmax1 + layout.lmax2
    lmax_out = layout.lmax_out
    width = vector_padded(lmax_out + 1, lanes)
    projection = _projection(layout, degree, width)
    to_fourier = (_to_fourier_table(layout.degrees1), _to_fourier_table(layout.degrees2))
    if convolution == "direct":
        return (*to_fourier, projection)
    n_theta, n_phi = _torus_shape(layout, lanes)
    lmax_all = max(layout.lmax1, layout.lmax2, layout.lmax_out)
    lmax_in = max(layout.lmax1, layout.lmax2)
    phis = 2 * pi * np.arange(n_phi) / n_phi
    thetas = 2 * pi * np.arange(n_theta) / n_theta
    phi = _cos_sin(np.arange(-lmax_all, lmax_all + 1), phis)
    theta = _cos_sin(np.arange(lmax_in + 1), thetas) * np.where(np.arange(lmax_in + 1) == 0, 1.0, 2.0)[:, None]
    phi_out = _cos_sin(np.arange(width), phis).transpose(0, 2, 1)
    phi_out[:, :, lmax_out + 1:] = 0.0
    # Fold the theta transform back, 1/(n_theta n_phi) and the sign of the phi sine into the
    # projection: P[U] = (1/N) sum_i (C - i S)[i] exp(-i U theta_i) for C, S the two sums.
    frequencies = _cos_sin(np.arange(-degree, degree + 1), thetas)  # [part, U, i]
    a, b = projection
    scale = 1.0 / (n_theta * n_phi)

    def theta_sum(table: np.ndarray, part: int) -> np.ndarray:
        return np.einsum("skuv,ui->skiv", table, frequencies[part])

    folded = np.stack([scale * (theta_sum(a, 0) - theta_sum(b, 1)), -scale * (theta_sum(a, 1) + theta_sum(b, 0))])
    return tuple(np.ascontiguousarray(table) for table in (*to_fourier, phi, theta, phi_out, folded))


def _cos_sin(frequencies: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``[part, frequency, angle]``: cos and sin of frequency * angle."""
    arguments = frequencies[:, None] * angles[None, :]
    return np.stack([np.cos(arguments), np.sin(arguments)])


def _to_fourier_table(degrees: tuple[int, ...]) -> np.ndarray:
    """``[part, k, u, v]``: Re/Im of T[(l, v), u, v] (parts 0, 1) and of T[(l, -v), u, v] (2, 3).

    Checked: a harmonic of order m has azimuthal frequencies +-m only, so these hold every
    nonzero of :func:`tpc.so3.sh_to_fourier`.
    """
    lmax = degrees[-1]
    harmonics = sh_to_fourier(lmax)  # [lm, u + lmax, v + lmax]
    table = np.zeros((4, len(degrees), 2 * lmax + 1, 2 * lmax + 1))
    for k, l in enumerate(degrees):
        for m in range(-l, l + 1):
            coefficients = harmonics[l * l + l + m]
            outside = np.delete(coefficients, [lmax + m, lmax - m], axis=1)
            if np.abs(outside).max(initial=0.0) > 1e-12:
                raise RuntimeError(f"harmonic ({l}, {m}) has azimuthal frequencies other than +-{abs(m)}")
            table[0, k, :, lmax + m] = coefficients[:, lmax + m].real
            table[1, k, :, lmax + m] = coefficients[:, lmax + m].imag
            if m != 0:
                table[2, k, :, lmax - m] = coefficients[:, lmax - m].real
                table[3, k, :, lmax - m] = coefficients[:, lmax - m].imag
    return table


def _projection(layout: SignalLayout, degree: int, width: int) -> np.ndarray:
    """``[part, sign, k, U + degree, |m|]``: c_lm = sum_U (part0 P_re + part1 P_im)[U, |m|],
    sign 0 for m < 0 and 1 for m >= 0; |m| zero-padded to ``width``.

    The full sum over V = +-|m| of ``fourier_to_sh`` is twice the real part of its V = |m|
    term (once for m = 0), as the product's spectrum is Hermitian.
    """
    lmax_out = layout.lmax_out
    back = fourier_to_sh(lmax_out, degree)  # [lm, U + degree, V + degree]
    table = np.zeros((2, 2, len(layout.degrees_out), 2 * degree + 1, width))
    for k, l in enumerate(layout.degrees_out):
        for m in range(-l, l + 1):
            if abs(m) > degree:
                continue
            column = back[l * l + l + m, :, degree + abs(m)] * (1.0 if m == 0 else 2.0)
            table[0, int(m >= 0), k, :, abs(m)] = column.real
            table[1, int(m >= 0), k, :, abs(m)] = -column.imag
    return table
