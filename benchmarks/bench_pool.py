"""Benchmark max and average pooling: cycnn against PyTorch and a vectorised NumPy route.

One process, one table. For every pool x window x shape x dtype x thread count x pass,
the three implementations run on the same arrays; each is warmed up, then they are
called in turn, round after round, and each time is the median over the rounds (a change
in the machine's load then hits all three alike). The last lines check issue 15's goal:
pooling at most 1.0 x PyTorch (forward + backward).

* forward:  ``cycnn.max_pool2d_forward`` / ``torch.nn.functional.max_pool2d`` with
  ``return_indices=True`` (cycnn also records the winners) / NumPy: a strided window view
  (``sliding_window_view``) reduced with ``max``+``argmax`` or ``mean``; likewise for
  average pooling.
* backward: ``cycnn.max_pool2d_backward`` / ``torch.ops.aten.max_pool2d_with_indices_backward``
  (only the backward kernel is timed, no autograd) / NumPy: one strided ``+=`` per window
  offset ``(p, q)``, which handles overlapping windows; likewise
  ``aten.avg_pool2d_backward``.

Ratios above 1 mean cycnn is slower than PyTorch. Both OpenMP runtimes run with
``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise (see below).

Usage::

    python benchmarks/bench_pool.py                 # the full table (about a minute)
    python benchmarks/bench_pool.py --quick --pools max --dtypes float32 --threads 1
    python benchmarks/bench_pool.py --busy 1        # with one busy-looping process
"""

from __future__ import annotations

import argparse
import os
import sys

# cycnn's libgomp and the copy bundled with PyTorch keep separate thread pools whose idle
# workers spin after each parallel region; on 2 cores the spinning pool steals the core
# the other one needs, and 2-thread timings jumped to 8-24 ms (23 of 32 rows above 5 ms
# in one run, 1 of 32 with this setting). Idle workers that sleep at once keep the
# comparison about the loops. Must be set before either runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bench  # noqa: E402,F401  (sets OPENBLAS_THREAD_TIMEOUT before NumPy loads)
import numpy as np  # noqa: E402
from _bench import (  # noqa: E402
    busy_cores,
    fmt_ms,
    fmt_ratio,
    header,
    interleaved,
    load_average,
    print_table,
    threads,
)
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import cycnn  # noqa: E402

SHAPES = {"A": (64, 16, 24, 24), "B": (32, 32, 32, 32)}
WINDOWS = {"2x2/s2": (2, 2), "3x3/s2": (3, 2)}  # name -> (size, stride)
DTYPES = {"float32": np.float32, "float64": np.float64}


# --------------------------------------------------------------------------- NumPy route

def _windows(x, k, s):
    """View of shape (N, C, OH, OW, k, k): window (i, j) of every plane, no copy."""
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]


def numpy_max_forward(x, k, s):
    win = _windows(x, k, s)
    flat = win.reshape(win.shape[:4] + (k * k,))  # copies: the view is not contiguous
    arg = flat.argmax(axis=-1)
    return np.take_along_axis(flat, arg[..., None], -1)[..., 0], arg


def numpy_max_backward(dy, arg, x_shape, k, s):
    dx = np.zeros(x_shape, dy.dtype)
    OH, OW = dy.shape[2:]
    for p in range(k):
        for q in range(k):
            dx[:, :, p:p + s * OH:s, q:q + s * OW:s] += np.where(arg == p * k + q, dy, 0)
    return dx


def numpy_avg_forward(x, k, s):
    return _windows(x, k, s).mean(axis=(-2, -1))


def numpy_avg_backward(dy, x_shape, k, s):
    dx = np.zeros(x_shape, dy.dtype)
    OH, OW = dy.shape[2:]
    share = dy / dy.dtype.type(k * k)
    for p in range(k):
        for q in range(k):
            dx[:, :, p:p + s * OH:s, q:q + s * OW:s] += share
    return dx


# --------------------------------------------------------------------------- one row pair

def time_case(pool, k, s, x, dy, repeat, torch):
    """Median seconds for (forward, backward) x (cycnn, torch, numpy), interleaved."""
    fns = {}
    if pool == "max":
        _, cache = cycnn.max_pool2d_forward(x, k, s)
        _, arg = numpy_max_forward(x, k, s)
        fns["cy_f"] = lambda: cycnn.max_pool2d_forward(x, k, s)
        fns["cy_b"] = lambda: cycnn.max_pool2d_backward(dy, cache)
        fns["np_f"] = lambda: numpy_max_forward(x, k, s)
        fns["np_b"] = lambda: numpy_max_backward(dy, arg, x.shape, k, s)
    else:
        _, cache = cycnn.avg_pool2d_forward(x, k, s)
        fns["cy_f"] = lambda: cycnn.avg_pool2d_forward(x, k, s)
        fns["cy_b"] = lambda: cycnn.avg_pool2d_backward(dy, cache)
        fns["np_f"] = lambda: numpy_avg_forward(x, k, s)
        fns["np_b"] = lambda: numpy_avg_backward(dy, x.shape, k, s)
    out = {"t_f": None, "t_b": None}
    if torch is None:
        out.update(interleaved(fns, repeat))
        return out
    aten = torch.ops.aten
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    with torch.no_grad():
        if pool == "max":
            _, idx = torch.nn.functional.max_pool2d(xt, k, s, return_indices=True)
            fns["t_f"] = lambda: torch.nn.functional.max_pool2d(xt, k, s, return_indices=True)
            fns["t_b"] = lambda: aten.max_pool2d_with_indices_backward(
                dyt, xt, [k, k], [s, s], [0, 0], [1, 1], False, idx)
        else:
            fns["t_f"] = lambda: torch.nn.functional.avg_pool2d(xt, k, s)
            fns["t_b"] = lambda: aten.avg_pool2d_backward(dyt, xt, [k, k], [s, s], [0, 0],
                                                          False, True, None)
        out.update(interleaved(fns, repeat))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pools", default="max,avg")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="run with N busy-looping processes (a loaded machine)")
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else 15
    try:
        import torch
    except ImportError:
        torch = None

    print(header())
    if args.busy:
        print(f"with {args.busy} busy-looping process(es) running beside the benchmark")
    for name, shape in SHAPES.items():
        print(f"shape {name}: (N, C, H, W) = {shape}")
    print()
    rows, worst = [], []
    with busy_cores(args.busy):
        _run(args, repeat, torch, rows, worst)
    print_table(["pool", "window", "shape", "dtype", "threads", "pass", "cycnn ms",
                 "PyTorch ms", "NumPy ms", "cycnn/PyTorch"], rows)
    if worst:
        ratio, case = max(worst)
        print(f"\ngoal (issue 15): pooling fwd+bwd <= 1.0 x PyTorch: "
              f"{'met' if ratio <= 1.0 else 'NOT met'}; largest ratio {ratio:.2f} ({case})")
    print(f"load average at end: {load_average()}")


def _run(args, repeat, torch, rows, worst):
    for pool in args.pools.split(","):
        for wname, (k, s) in WINDOWS.items():
            for sname in args.shapes.split(","):
                for dname in args.dtypes.split(","):
                    dtype = DTYPES[dname]
                    rng = np.random.default_rng(0)
                    x = rng.standard_normal(SHAPES[sname]).astype(dtype)
                    y, _ = cycnn.max_pool2d_forward(x, k, s)
                    dy = rng.standard_normal(y.shape).astype(dtype)
                    for nt in (int(t) for t in args.threads.split(",")):
                        with threads(nt):
                            t = time_case(pool, k, s, x, dy, repeat, torch)
                        for pas, key in (("fwd", "f"), ("bwd", "b")):
                            cy, th, nv = t[f"cy_{key}"], t[f"t_{key}"], t[f"np_{key}"]
                            rows.append([pool, wname, sname, dname, nt, pas, fmt_ms(cy),
                                         fmt_ms(th), fmt_ms(nv), fmt_ratio(cy, th)])
                        if t["t_f"] is not None:
                            worst.append(((t["cy_f"] + t["cy_b"]) / (t["t_f"] + t["t_b"]),
                                          f"{pool} {wname} {sname} {dname} {nt} thread(s)"))
                        print(f"  done {pool} {wname} {sname} {dname} threads={nt} "
                              f"(load {load_average()})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
