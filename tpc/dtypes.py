"""The floating-point dtypes tpc compiles for, named as numpy names them."""

from __future__ import annotations

DTYPES = ("float32", "float64")
"""Every kernel, reference comparison and export is for one of these."""


def check_dtype(dtype: str, what: str = "dtype") -> str:
    """Return ``dtype`` if it is one of :data:`DTYPES`, else raise ValueError naming ``what``.

    >>> check_dtype("float64")
    'float64'
    """
    if dtype not in DTYPES:
        raise ValueError(f"{what} must be one of {DTYPES}, got {dtype!r}")
    return dtype
