"""Argument checks, in one place, for every public function, layer, optimizer and command.

Every compiled kernel in cycnn trusts its caller: shapes, dtypes, C-contiguity and integer
ranges are checked here, in Python, before any ``nogil`` loop runs. Errors name the
function, the argument and the shapes or values involved, and say what was expected.
"""

from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np

#: the largest size, stride, padding or count any argument may take: kernels index with
#: 64-bit ``Py_ssize_t`` but thread counts and some products are C ints, and nothing this
#: large could be allocated anyway
MAX_INT = 2**31 - 1


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(*arrays) -> np.dtype:
    """The dtype cycnn computes in for ``arrays``.

    float32 when every floating argument is float32 (or narrower) and no argument needs
    more; float64 otherwise. Integer and boolean arrays are converted to float64, and
    mixing float32 with float64 promotes to float64, as NumPy's own arithmetic does.
    """
    if arrays:  # the common case first: arrays that all hold float32, or all float64
        try:
            dt = arrays[0].dtype
            for canonical in _FLOATS:
                if dt == canonical:
                    if all(a.dtype == dt for a in arrays[1:]):
                        return canonical
                    break
        except AttributeError:  # a Python number: NumPy's promotion rules below
            pass
    dt = np.result_type(*arrays)
    if dt in (np.float16, np.float32):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def param_dtype(func: str, dtype) -> np.dtype:
    """``dtype`` as float32 or float64 (the dtypes parameters and data may have)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{func}: dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"{func}: dtype must be float32 or float64, got {dt}")
    return dt


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


def check_ndim(func: str, name: str, a: np.ndarray, ndim, layout: str) -> None:
    """Raise ValueError unless ``a`` has ``ndim`` dimensions (``layout`` names them).

    ``ndim`` may be a tuple of the accepted counts, for instance ``(3, 4)`` with
    ``layout="(C, H, W) or (N, C, H, W)"`` for an input that may come without its batch axis.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in allowed:
        want = " or ".join(f"{k}-D" for k in allowed)
        raise ValueError(
            f"{func}: {name} must be {want} {layout}, got shape {a.shape} ({a.ndim}-D)"
        )


def as_choice(func: str, name: str, v, choices: tuple) -> str:
    """``v`` if it is one of the strings ``choices``, else a ValueError listing them."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{func}: {name} must be one of {choices}, got {v!r}")
    return v


def as_int(func: str, name: str, v, minimum: int | None = None,
           maximum: int | None = MAX_INT) -> int:
    """``v`` as a Python int in ``[minimum, maximum]``, with a TypeError/ValueError naming
    ``name``. ``maximum=None`` removes the upper limit (seeds, epoch counts)."""
    if type(v) is not int:  # (bool is not int: True is refused below, as it must be)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{func}: {name} must be an integer, got {v!r}")
        v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{func}: {name} must be <= {maximum}, got {v}")
    return v


def as_pair(func: str, name: str, v, minimum: int | None = None,
            maximum: int | None = MAX_INT) -> tuple[int, int]:
    """An int or a pair of ints as ``(along H, along W)``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{func}: {name} must be an int or a pair of ints, got {v!r}")
        return (as_int(func, name, v[0], minimum, maximum),
                as_int(func, name, v[1], minimum, maximum))
    n = as_int(func, name, v, minimum, maximum)
    return (n, n)


def as_real(func: str, name: str, v, lo: float = -math.inf, hi: float = math.inf, *,
            lo_open: bool = False, hi_open: bool = False) -> float:
    """``v`` as a finite Python float in the interval from ``lo`` to ``hi``.

    ``lo_open``/``hi_open`` exclude the end points; the message writes the interval in
    the usual bracket notation, e.g. ``[0, 1)``.
    """
    if type(v) is not float and (isinstance(v, (bool, np.bool_))
                                 or not isinstance(v, numbers.Real)):
        raise TypeError(f"{func}: {name} must be a number{_interval(lo, hi, lo_open, hi_open)}, "
                        f"got {v!r}")
    f = float(v)
    inside = (lo < f if lo_open else lo <= f) and (f < hi if hi_open else f <= hi)
    if not math.isfinite(f) or not inside:
        raise ValueError(f"{func}: {name} must be a finite number"
                         f"{_interval(lo, hi, lo_open, hi_open)}, got {v!r}")
    return f


def _interval(lo, hi, lo_open, hi_open):
    """The interval of :func:`as_real` as the words of its error messages."""
    if math.isinf(hi) and math.isinf(lo):
        return ""
    if math.isinf(hi):
        return f" {'>' if lo_open else '>='} {lo:g}"
    if math.isinf(lo):
        return f" {'<' if hi_open else '<='} {hi:g}"
    return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def as_labels(func: str, y, n: int, k: int | None = None) -> np.ndarray:
    """Class labels: 1-D integers, ``n`` of them, in ``[0, k)`` when ``k`` is given."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{func}: labels y must be a 1-D array of integer class indices, "
                        f"got dtype {y.dtype} and shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{func}: x has {n} samples but y has {y.shape[0]} labels "
                         f"(they must have the same length)")
    if k is not None and y.size and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)][0]
        raise ValueError(f"{func}: labels must lie in [0, {k}) for a model with {k} "
                         f"outputs; found {bad}")
    return y.astype(np.int64, copy=False)


@functools.cache
def _memory_bytes() -> int:
    """Physical memory of this machine, or 2**40 when the OS does not say (asked once:
    every dense pass checks its output's size against it)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 1 << 40


def check_size(func: str, what: str, shape: tuple, dtype) -> None:
    """Refuse an array of ``shape`` that could not fit in this machine's memory.

    Raises MemoryError naming ``what`` (e.g. ``"y (N, F, OH, OW)"``) and the shape,
    before NumPy is asked for it (NumPy's own "array is too big" names neither).
    """
    count = math.prod(int(s) for s in shape)
    need = count * np.dtype(dtype).itemsize
    have = _memory_bytes()
    if need > have:
        raise MemoryError(
            f"{func}: {what} of shape {tuple(int(s) for s in shape)} would need "
            f"{need / 2**30:,.1f} GiB, more than this machine's {have / 2**30:,.1f} GiB of memory"
        )
