"""Timing and table helpers shared by the benchmark scripts.

Every benchmark runs in one process: cycnn, PyTorch and NumPy are timed side by side on
the same inputs, each warmed up first (fresh arrays page-fault on first touch). The
implementations being compared are called in turn, round after round (``interleaved``),
so that a change in the machine's load hits all of them alike, and the tables report
medians over the rounds plus ratios, because single times on a shared machine are noise.
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS threads spin after each call and steal cores from the OpenMP loops
# that follow; let them sleep almost at once. Must be set before NumPy loads.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
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


def interleaved(fns, repeat=15, warmup=3, min_time=0.0, setup=None):
    """Median wall time of each of ``fns`` (a dict name -> callable), called in turn.

    One round calls every function once; rounds repeat until each has ``repeat`` calls
    and the rounds took ``min_time`` seconds. ``setup`` (name -> callable, optional) puts
    the machine in the state that name is timed in, for instance a thread count: so that
    1 and 2 threads alternate round by round, and a machine whose speed drifts from one
    second to the next (a VM's host taking cores) slows both alike. Names that share one
    setup object should be next to each other in ``fns``; whenever the setup changes, it
    runs, and then the next function once untimed, so that no timed call pays for moving
    the data from another core's cache. Returns ``{name: seconds}``.
    """
    setup = setup or {}
    current = None

    def ready(k, fn):
        nonlocal current
        step = setup.get(k)
        if step is not None and step is not current:
            step()
            current = step
            fn()

    for k, fn in fns.items():
        ready(k, fn)
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    t_end = time.perf_counter() + min_time
    while len(times[next(iter(fns))]) < repeat or time.perf_counter() < t_end:
        for k, fn in fns.items():
            ready(k, fn)
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def use_threads(n):
    """Put cycnn (and through it the BLAS NumPy uses) and PyTorch on ``n`` threads."""
    import cycnn

    cycnn.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


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


_BUSY = "import itertools\nfor _ in itertools.count():\n    pass\n"


@contextmanager
def busy_cores(n):
    """Keep ``n`` extra processes spinning inside the block (a loaded machine): each is
    a Python busy loop, as another user's job would be."""
    procs = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


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


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_ticks():
    """``(steal, total)``: the machine's CPU time so far in clock ticks, from the first line
    of ``/proc/stat``, and how much of it the hypervisor gave to other guests (steal), or
    None where there is no such file. Take two readings around a timed run and pass them
    to :func:`steal_percent`."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_percent(before, after):
    """Share of the machine's CPU time between two :func:`cpu_ticks` readings that the
    hypervisor took away (steal), in percent, or None where it cannot be read. A virtual
    machine's threads stall while their CPU is stolen, and a 2-thread loop waits for the
    slower thread: a run with a few percent of steal says little about threads."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def header():
    """Lines naming the machine (CPU model, features, caches), the libraries, the kernel
    builds chosen and the load average: a figure means nothing without them."""
    import numpy as np

    import cycnn

    info = cycnn.build_info()
    libs = [f"cycnn {cycnn.__version__}", f"numpy {np.__version__}"]
    try:
        import torch

        libs.append(f"torch {torch.__version__}")
    except ImportError:
        libs.append("torch absent")
    caches = info["caches"]
    cache_text = ", ".join(
        f"{k} {caches[k] // 1024} KiB" + (f" shared by {caches['shared_by'][k]} CPUs"
                                          if caches["shared_by"][k] > 1 else "")
        + (f" ({caches['source'][k]})" if caches["source"][k] != "sysfs" else "")
        for k in ("L1d", "L2", "L3"))
    lines = [
        f"cpu: {info['cpu']}, {os.cpu_count()} CPUs; features {' '.join(info['cpu_features'])}",
        f"kernels: {info['kernels']}; openmp {info['openmp']}; {'; '.join(libs)}",
        f"caches: {cache_text}; fast-route buffer per thread "
        f"{info['fast_chunk_bytes'] // 1024} KiB",
        f"load average at start: {load_average()} (1, 5, 15 min; other work skews times)",
    ]
    return "\n".join(lines)
