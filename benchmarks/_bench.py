"""Timing and table helpers shared by the benchmark scripts.

Every benchmark runs in one process: cycnn, PyTorch and NumPy are timed side by side on
the same inputs, each warmed up first (fresh arrays page-fault on first touch), and the
table reports medians over repeats plus ratios, because single times on a shared
machine are noise.
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS threads spin after each call and steal cores from the OpenMP loops
# that follow; let them sleep almost at once. Must be set before NumPy loads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import statistics  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402


def median_time(fn, repeat=15, warmup=3, min_time=0.0):
    """Median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < repeat or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def threads(n):
    """Run cycnn, PyTorch and the BLAS NumPy uses on ``n`` threads inside the block."""
    import cycnn

    old = cycnn.get_num_threads()
    cycnn.set_num_threads(n)
    torch_old = None
    try:
        import torch

        torch_old = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    try:
        if threadpool_limits is not None:
            with threadpool_limits(limits=n):
                yield
        else:
            yield
    finally:
        cycnn.set_num_threads(old)
        if torch is not None and torch_old is not None:
            torch.set_num_threads(torch_old)


def fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3f}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def print_table(headers, rows):
    """Print a Markdown table (so it pastes into the docs unchanged)."""
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) for k, h in enumerate(headers)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def header():
    """One line naming the machine, the libraries and the kernel builds chosen."""
    import platform

    import numpy as np

    import cycnn

    parts = [f"cycnn {cycnn.__version__}", f"numpy {np.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch absent")
    info = cycnn.build_info()
    parts.append(f"kernels {info['kernels']}")
    parts.append(f"openmp {info['openmp']}")
    parts.append(f"cpu {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    return "; ".join(parts)
