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
threads taking turns on the same cores cost more than the second core gives. And
:class:`StepThreads` checks now and then that its steps gain from the threads at all,
and runs them on one thread while they do not.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
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

    Notes
    -----
    A training step (``fit``, ``train_step``) on ``n > 1`` threads of a model made of
    cycnn's per-sample layers cuts its batch into ``n`` shards, all but the first run by
    worker processes (``CYCNN_SHARD_STEPS=0`` in the environment turns this off). The
    thread count then sets which sums a step adds, so the weights of a fit are the same
    bits for the same seed and thread count, and agree to rounding across counts.
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
    return _pins.n or _num_threads


class _Pins(threading.local):
    """Per-thread override of the default: a shard of a training step
    (cycnn/_sharding.py) runs its loops on its own thread, whatever the process-wide
    default says. ``n`` is None on a thread that has none (a class attribute: reading
    it costs no failed lookup, and every kernel call reads it)."""

    n = None


_pins = _Pins()


def pin_this_thread(n: int) -> None:
    """From now on, calls made on this thread default to ``n`` threads."""
    _pins.n = n


@contextmanager
def held(local, name, value, default=None):
    """Inside the block, ``local.name`` (an attribute of a ``threading.local``) is
    ``value`` on this thread; its old value (or ``default``) comes back on exit."""
    old = getattr(local, name, default)
    setattr(local, name, value)
    try:
        yield
    finally:
        setattr(local, name, old)


def pinned(n: int):
    """Inside the block, calls made on this thread default to ``n`` threads."""
    return held(_pins, "n", n)


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


#: whether a training loop on several threads checks, now and then, that they pay
#: (``CYCNN_ADAPTIVE_THREADS=0`` in the environment keeps every step on all of them)
ADAPTIVE = os.environ.get("CYCNN_ADAPTIVE_THREADS", "1") not in ("", "0")


class StepThreads:
    """The thread count for each step of a training loop: ``n``, or 1 while one thread is
    faster on this machine.

    A second thread pays only when its CPU is there when a parallel loop needs it. On a
    machine loaded with other work, or on a virtual machine whose host hands an idle
    virtual CPU to other guests, waking it can cost more than it does: measured on a
    2-CPU VM, an epoch took 2.5x longer on two threads than on one. So every ``period``
    steps the loop times ``probes`` steps on ``n`` threads, then as many on one, and runs
    the rest of the period on the faster (per sample, median of the probes: the first
    step after a switch, which may wake a sleeping CPU, does not decide alone).

    This changes no result: the kernels a training step runs give the same bits on any
    thread count (each output is summed by one thread, in an order fixed by the shapes;
    tests/test_threads.py checks a whole fit), so the timings decide the speed alone.
    A step cut into shards (cycnn/_sharding.py) runs "on one thread" by taking every
    shard in the calling process: ``one`` makes the context for that (by default
    :func:`pinned` to 1). ``adaptive=False`` keeps every step on ``n``; ``clock`` is the
    timer (a test passes its own).
    """

    def __init__(self, n, period=200, probes=3, adaptive=True, clock=time.perf_counter,
                 one=None):
        self.n, self.period, self.probes, self.clock = n, period, probes, clock
        self.one = one or (lambda: pinned(1))
        self.adaptive = adaptive and ADAPTIVE and n > 1
        self.count = 0  # steps begun
        self.choice = n
        self._seconds = {}  # thread count -> seconds per sample of this period's probes

    def _probing(self):
        k = self.count % self.period
        return 1 <= k <= 2 * self.probes  # step 0 of a fit warms up and is not timed

    @contextmanager
    def step(self, samples):
        """Run one step of ``samples`` samples inside the block on the chosen count."""
        if not self.adaptive:
            yield
            return
        probing = self._probing()
        if probing:  # a block of probes on n threads, then one on a single thread
            threads = self.n if self.count % self.period <= self.probes else 1
        else:
            threads = self.choice
        t0 = self.clock()
        with pinned(threads) if threads != 1 else self.one():
            yield
        self.count += 1
        if probing:
            self._seconds.setdefault(threads, []).append((self.clock() - t0) / samples)
            if not self._probing():  # that was the last probe: choose
                one, many = (statistics.median(self._seconds[k]) for k in (1, self.n))
                self.choice = self.n if many <= one else 1
                self._seconds = {}
