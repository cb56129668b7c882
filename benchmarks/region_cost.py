"""What one parallel region costs: the same tiny loop on one thread and on two.

A LeNet-5 training step on two threads opens some twenty OpenMP parallel regions, and
with ``OMP_WAIT_POLICY=PASSIVE`` (cycnn's default) the second thread sleeps between
them: each region first wakes it, and then waits for it at the end. This script times
that price alone. It calls cycnn's compiled ReLU on 2,048 float32 values (a few
microseconds of work) over and over, on one thread and on two (the private kernel
``cycnn._act.relu``, which splits whatever it is given; the public ``relu_forward`` keeps
arrays this small on one thread), with a busy wait of ``gap`` microseconds between calls
standing for the rest of a training step, and prints the median and the 90th percentile
of each. The difference between the columns is what waking the second thread costs
after that long asleep; a step pays it once per region.

    python benchmarks/region_cost.py
    OMP_WAIT_POLICY=ACTIVE python benchmarks/region_cost.py   # threads that never sleep
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _bench import header, print_table  # noqa: E402

from cycnn import _act, _threads  # noqa: E402

#: microseconds of other work between two calls
GAPS = (0, 20, 100, 300, 1000)


def time_calls(x, y, threads, gap_us, calls):
    """Microseconds per call of the ReLU on ``threads`` threads: (median, 90th percentile)."""
    times = []
    for _ in range(calls):
        end = time.perf_counter() + gap_us * 1e-6
        while time.perf_counter() < end:  # the rest of the step, on this thread
            pass
        t0 = time.perf_counter_ns()
        _act.relu(x, x, y, False, threads)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return statistics.median(times) / 1000, times[int(0.9 * calls)] / 1000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls per cell")
    ap.add_argument("--threads", type=int, default=2, help="the thread count set against 1")
    args = ap.parse_args(argv)
    if args.calls < 1:
        ap.error(f"--calls must be at least 1, got {args.calls}")
    if not 1 <= args.threads <= _threads.MAX_THREADS:  # the kernel splits by this count
        ap.error(f"--threads must be from 1 to {_threads.MAX_THREADS}, got {args.threads}")
    x = np.random.default_rng(0).standard_normal(2048).astype(np.float32)
    y = np.empty_like(x)
    print(header())
    print(f"ReLU of {x.size:,} float32 values, {args.calls} calls per cell, µs per call "
          f"(median / 90th percentile); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    rows = []
    for gap in GAPS:
        one = time_calls(x, y, 1, gap, args.calls)
        more = time_calls(x, y, args.threads, gap, args.calls)
        rows.append([gap, f"{one[0]:.1f} / {one[1]:.1f}", f"{more[0]:.1f} / {more[1]:.1f}",
                     f"{more[0] - one[0]:.1f}"])
    print_table(["µs between calls", "1 thread", f"{args.threads} threads",
                 "extra per call (median)"], rows)


if __name__ == "__main__":
    main()
