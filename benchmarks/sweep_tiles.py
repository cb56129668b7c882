"""Is the fast route's chunk size near the best on this machine? A sweep.

The fast convolution route (cycnn/_fastconv.pyx) gives each thread buffers of about
``conv.FAST_CHUNK_BYTES`` bytes: a share (``FAST_L2_FRACTION``) of one core's L2 cache as
the CPU reports it. This script times the route's forward + backward pass with that budget
multiplied by 1/16 ... 8, the settings called in turn round after round (so that a change
in the machine's load hits them alike), and prints the time of each relative to the best.
The chosen budget is marked; on a machine whose L2 differs from the one the fraction was
picked on, the same fraction should still land near the best.

It also times every layout of the input copy the planner weighs (one copy per kernel
column, or per multiple of the stride) and marks the planner's choice.

    python benchmarks/sweep_tiles.py                  # LeNet's layers A-D and a wide layer W
    python benchmarks/sweep_tiles.py --layers C,W --dtypes float32 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _bench import header, load_average, print_table, threads  # noqa: E402
from bench_conv import SHAPES  # noqa: E402

import cycnn  # noqa: E402
from cycnn import conv  # noqa: E402

#: the layers of bench_conv that the fast route takes (no dilation, one group), and W: a
#: wide early layer of a ResNet (its input copy is larger than any L2, so the chunk size
#: decides how much of it stays in cache); (N, C, H, W, F, K, stride, padding)
LAYERS = {name: shape[:8] for name, shape in SHAPES.items() if shape[8:] == (1, 1)}
LAYERS["W"] = (8, 64, 56, 56, 64, 3, 1, 1)
FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)


def _inputs(name, dtype):
    N, C, H, W, F, K, s, p = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C, K, K)) / np.sqrt(C * K * K)).astype(dtype)
    OH, OW = cycnn.conv_output_size(H, K, s, p), cycnn.conv_output_size(W, K, s, p)
    dy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, w, dy, s, p


def _rounds(settings, call, rounds, min_time):
    """Median seconds of ``call()`` under each setting (a function applying it)."""
    times = {k: [] for k in settings}
    for apply in settings.values():
        apply()
        call()
    t_end = time.perf_counter() + min_time
    while len(times[next(iter(settings))]) < rounds or time.perf_counter() < t_end:
        for k, apply in settings.items():
            apply()
            t0 = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def sweep_budget(name, dtype, nt, rounds, min_time):
    x, w, dy, s, p = _inputs(name, dtype)
    default = conv.FAST_CHUNK_BYTES
    budgets = {f: max(1, int(default * f)) for f in FACTORS}

    def call():
        cycnn.conv2d_forward(x, w, None, s, p, algorithm="fast")
        cycnn.conv2d_backward(dy, x, w, s, p, algorithm="fast")

    def setter(b):
        return lambda: setattr(conv, "FAST_CHUNK_BYTES", b)

    try:
        with threads(nt):
            t = _rounds({f: setter(b) for f, b in budgets.items()}, call, rounds, min_time)
    finally:
        conv.FAST_CHUNK_BYTES = default
    best = min(t.values())
    rows = []
    pads = ((p, p), (p, p))
    for f, b in budgets.items():
        conv.FAST_CHUNK_BYTES = b
        plan = conv._fast_plan(x.shape, w.shape, (s, s), pads, x.dtype, True, True, nt)
        rows.append([name, np.dtype(dtype).name, nt, f"{b // 1024} KiB" + (" (chosen)" if
                     f == 1 else ""), f"{f:g}", plan.rows, plan.gi,
                     f"{plan.bytes_per_thread // 1024} KiB", f"{t[f] * 1e3:.3f}",
                     f"{t[f] / best:.2f}"])
    conv.FAST_CHUNK_BYTES = default
    return rows, t[1] / best


def sweep_layout(name, dtype, nt, rounds, min_time):
    x, w, dy, s, p = _inputs(name, dtype)
    KW = w.shape[3]
    options = ["most"] + list(range(s, KW, s))

    def call():
        cycnn.conv2d_forward(x, w, None, s, p, algorithm="fast")
        cycnn.conv2d_backward(dy, x, w, s, p, algorithm="fast")

    def setter(o):
        return lambda: setattr(conv, "FAST_FORCE_COPIES", o)

    try:
        with threads(nt):
            t = _rounds({o: setter(o) for o in options}, call, rounds, min_time)
    finally:
        conv.FAST_FORCE_COPIES = None
    chosen = conv._fast_plan(x.shape, w.shape, (s, s), ((p, p), (p, p)), x.dtype, False,
                             False, nt).nq
    best = min(t.values())
    rows = []
    for o in options:
        nq = KW if o == "most" else o
        rows.append([name, np.dtype(dtype).name, nt, nq, " (chosen)" if nq == chosen else "",
                     f"{t[o] * 1e3:.3f}", f"{t[o] / best:.2f}"])
    return rows, t["most" if chosen == KW else chosen] / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per layer at least")
    args = ap.parse_args(argv)
    layers = [s.strip().upper() for s in args.layers.split(",")]
    dtypes = [np.dtype(d.strip()).type for d in args.dtypes.split(",")]

    print(header())
    print(f"default budget: {conv.FAST_L2_FRACTION} x the L2 of one core = "
          f"{conv.FAST_CHUNK_BYTES // 1024} KiB per thread; medians of >= {args.rounds} "
          f"interleaved rounds of forward + backward, {args.threads} thread(s)")
    print()
    rows, worst = [], {}
    for name in layers:
        for dtype in dtypes:
            r, rel = sweep_budget(name, dtype, args.threads, args.rounds, args.min_time)
            rows += r
            worst[name, np.dtype(dtype).name] = rel
            print(f"  budget sweep {name} {np.dtype(dtype).name} done (load {load_average()})",
                  file=sys.stderr, flush=True)
    print_table(["layer", "dtype", "threads", "budget", "x default", "rows/chunk",
                 "images/chunk", "buffers/thread", "fwd+bwd ms", "/ best"], rows)
    print("\nchosen budget relative to the best: "
          + ", ".join(f"{k[0]} {k[1]} {v:.2f}" for k, v in worst.items()))
    print()
    rows, worst = [], {}
    for name in layers:
        for dtype in dtypes:
            r, rel = sweep_layout(name, dtype, args.threads, args.rounds, args.min_time)
            rows += r
            worst[name, np.dtype(dtype).name] = rel
    print_table(["layer", "dtype", "threads", "copies of x", "", "fwd+bwd ms", "/ best"], rows)
    print("\nchosen layout relative to the best: "
          + ", ".join(f"{k[0]} {k[1]} {v:.2f}" for k, v in worst.items()))
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
