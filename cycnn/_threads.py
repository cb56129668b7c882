"""How many threads the compiled kernels use.

The kernels run their ``prange`` loops on ``get_num_threads()`` threads unless a call
passes ``threads=``. The default is the number of cores this process may use; the most
any call may ask for is :data:`MAX_THREADS`, four per CPU of the machine (more threads
than that only wait for each other, and an OpenMP runtime asked for tens of thousands
fails or crashes the interpreter).
``set_num_threads`` also caps the BLAS library NumPy calls for the im2col route (through
threadpoolctl), so that cycnn's OpenMP loops and BLAS never ask for more threads than
the caller allowed. Both run one after the other, never nested, so they do not
oversubscribe the cores. While a model trains (``fit``), BLAS runs on the calling thread
alone (:func:`blas_threads`): the dense layers' products are small, and two pools of
threads taking turns on the same cores cost more than the second core gives.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

from ._validate import as_int

__all__ = ["set_num_threads", "get_num_threads"]


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _cores()

#: the largest thread count accepted: 4 x the machine's CPUs, and at least 4
MAX_THREADS = max(4, 4 * (os.cpu_count() or 1))


def _check(func: str, name: str, n) -> int:
    n = as_int(func, name, n, 1, None)
    if n > MAX_THREADS:
        raise ValueError(f"{func}: {name} must be <= {MAX_THREADS} (4 per CPU of this "
                         f"machine), got {n}")
    return n


def set_num_threads(n: int) -> None:
    """Set the number of threads the compiled kernels use by default.

    Parameters
    ----------
    n : int
        Number of threads, from 1 to :data:`MAX_THREADS` (4 per CPU of the machine).

    Raises
    ------
    ValueError
        ``n`` out of range.
    TypeError
        ``n`` is not an integer.
    """
    global _num_threads
    _num_threads = _check("set_num_threads", "n", n)
    _limit_blas(_num_threads)


_controller = None


def _limit_blas(n: int) -> None:
    """Cap the BLAS thread pools NumPy loaded at ``n`` threads (kept until changed)."""
    global _controller, _blas_held
    _blas_held = None  # whatever a blas_threads block set is overridden
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return
    if _controller is None:
        _controller = ThreadpoolController()
    _controller.limit(limits=n, user_api="blas")


#: the limit the innermost blas_threads block set (None outside every block)
_blas_held = None


@contextmanager
def blas_threads(n: int):
    """Inside the block, the BLAS library NumPy loaded uses at most ``n`` threads; the
    previous limits come back on exit. Inside a block that already set ``n`` it does
    nothing (setting the limit costs tens of microseconds)."""
    global _controller, _blas_held
    if _blas_held == n:
        yield
        return
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    if _controller is None:
        _controller = ThreadpoolController()
    outer, _blas_held = _blas_held, n
    try:
        with _controller.limit(limits=n, user_api="blas"):
            yield
    finally:
        _blas_held = outer


def get_num_threads() -> int:
    """Return the number of threads the compiled kernels use by default."""
    return getattr(_pins, "n", None) or _num_threads


#: per-thread override of the default: a shard of a training step (cycnn/_sharding.py)
#: runs its loops on its own thread, whatever the process-wide default says
_pins = threading.local()


def pin_this_thread(n: int) -> None:
    """From now on, calls made on this thread default to ``n`` threads."""
    _pins.n = n


@contextmanager
def pinned(n: int):
    """Inside the block, calls made on this thread default to ``n`` threads."""
    old = getattr(_pins, "n", None)
    _pins.n = n
    try:
        yield
    finally:
        _pins.n = old


def resolve_threads(func: str, threads) -> int:
    """``threads`` if given (checked), else this thread's default."""
    if threads is None:
        return get_num_threads()
    return _check(func, "threads", threads)


def threads_for(elements: int, nt: int, minimum: int) -> int:
    """``nt`` threads for a loop over ``elements`` elements, or 1 below ``minimum``.

    Waking a sleeping OpenMP thread costs tens of microseconds, so short loops run
    faster on the calling thread alone.
    """
    return nt if elements >= minimum else 1
