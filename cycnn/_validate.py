"""Argument checks shared by the public functions.

Every compiled kernel in cycnn trusts its caller: shapes, dtypes and C-contiguity are
checked here, in Python, before any ``nogil`` loop runs. Errors name the function, the
argument and the shapes involved.
"""

from __future__ import annotations

import numbers

import numpy as np


def float_dtype(*arrays) -> np.dtype:
    """The dtype cycnn computes in for ``arrays``.

    float32 when every floating argument is float32 (or narrower) and no argument needs
    more; float64 otherwise. Integer and boolean arrays are converted to float64, and
    mixing float32 with float64 promotes to float64, as NumPy's own arithmetic does.
    """
    dt = np.result_type(*arrays)
    if dt in (np.float16, np.float32):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_array(func: str, name: str, a) -> np.ndarray:
    """``a`` as an ndarray, or a TypeError if it does not hold real numbers."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:  # ragged nested lists and the like
        raise ValueError(f"{func}: {name} is not a rectangular array of numbers ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{func}: {name} must hold real numbers, got dtype {arr.dtype}"
            + (f" (shape {arr.shape})" if arr.ndim else "")
        )
    return arr


def as_float(func: str, **named) -> list[np.ndarray]:
    """Convert the named arrays to one common float dtype, C-contiguous.

    ``None`` values pass through unchanged. Returns the arrays in argument order.
    """
    arrays = {k: (None if v is None else as_array(func, k, v)) for k, v in named.items()}
    present = [v for v in arrays.values() if v is not None]
    dt = float_dtype(*present)
    return [None if v is None else np.ascontiguousarray(v, dtype=dt) for v in arrays.values()]


def check_ndim(func: str, name: str, a: np.ndarray, ndim: int, layout: str) -> None:
    """Raise ValueError unless ``a`` has ``ndim`` dimensions (``layout`` names them)."""
    if a.ndim != ndim:
        raise ValueError(
            f"{func}: {name} must be {ndim}-D {layout}, got shape {a.shape} ({a.ndim}-D)"
        )


def as_int(func: str, name: str, v, minimum: int | None = None) -> int:
    """``v`` as a Python int, with a TypeError/ValueError naming ``name``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{func}: {name} must be an integer, got {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {v}")
    return v


def as_pair(func: str, name: str, v, minimum: int | None = None) -> tuple[int, int]:
    """An int or a pair of ints as ``(along H, along W)``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{func}: {name} must be an int or a pair of ints, got {v!r}")
        return (as_int(func, name, v[0], minimum), as_int(func, name, v[1], minimum))
    n = as_int(func, name, v, minimum)
    return (n, n)
