"""Benchmark the conv2d layer: cycnn against PyTorch and the NumPy reference route.

One process, one table. For every shape x dtype x thread count, the three implementations
run on the same arrays; each is warmed up, then timed as the median of several calls.

* forward:  ``cycnn.conv2d_forward`` / ``torch.nn.functional.conv2d`` (no autograd) /
  ``cycnn.reference.conv2d_forward`` (sliding windows + einsum);
* backward: ``cycnn.conv2d_backward`` (dx, dw, db) / ``torch.ops.aten.convolution_backward``
  with all three gradients asked for (only the backward is timed) /
  ``cycnn.reference.conv2d_backward`` (dilation, padding, rotation).

cycnn and PyTorch, each on every thread count asked for, are called in turn, round after
round, and each time is the median over the rounds, so that a change in the machine's
load or speed hits them all alike (the 2-thread speed-up too: 1 and 2 threads alternate
round by round). Ratios above 1 mean cycnn is slower. The reference route is slow on
purpose (it teaches); its repeats are capped.

Three tables: every time and ratio; the speed-up of two threads over one; and the
goals of issue 15 (forward + backward at most 1.0 x PyTorch on layers A and B and 1.3 on C
and D, the forward pass alone at most 1.3, two threads at least 1.7 x faster than one on
C and D), each marked met or not.

Usage::

    python benchmarks/bench_conv.py                       # everything (a few minutes)
    python benchmarks/bench_conv.py --quick --shapes A,B --dtypes float32 --threads 1
    python benchmarks/bench_conv.py --busy 1              # with one busy-looping process
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _bench import (  # noqa: E402
    busy_cores,
    fmt_ms,
    fmt_ratio,
    header,
    interleaved,
    load_average,
    median_time,
    print_table,
    threads,
    use_threads,
)

import cycnn  # noqa: E402
from cycnn import reference  # noqa: E402

#: name -> (N, C, H, W, F, K, stride, pad, dilation, groups)
SHAPES = {
    "A": (64, 1, 28, 28, 6, 5, 1, 0, 1, 1),
    "B": (64, 6, 12, 12, 16, 5, 1, 0, 1, 1),
    "C": (32, 16, 32, 32, 32, 3, 1, 1, 1, 1),
    "D": (16, 3, 64, 64, 16, 7, 2, 3, 1, 1),
    "E": (32, 16, 32, 32, 32, 3, 1, 2, 2, 1),    # C, dilated: a 3x3 kernel spanning 5x5
    "F": (32, 32, 32, 32, 32, 3, 1, 1, 1, 4),    # grouped: 4 groups of 8 channels
    "G": (32, 32, 32, 32, 32, 3, 1, 1, 1, 32),   # depthwise: one filter per channel
}
DTYPES = {"float32": np.float32, "float64": np.float64, "f32": np.float32, "f64": np.float64}


def describe(name):
    N, C, H, W, F, K, s, p, d, g = SHAPES[name]
    text = f"{name} N={N} C={C} {H}x{W} F={F} K={K}"
    if s != 1:
        text += f" stride={s}"
    if p:
        text += f" pad={p}"
    if d != 1:
        text += f" dilation={d}"
    if g != 1:
        text += f" groups={g}"
    return text


def make_inputs(name, dtype, seed=0):
    N, C, H, W, F, K, s, p, d, g = SHAPES[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = (rng.standard_normal((F, C // g, K, K)) / np.sqrt(C // g * K * K)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    OH = cycnn.conv_output_size(H, K, s, p, d)
    OW = cycnn.conv_output_size(W, K, s, p, d)
    dy = rng.standard_normal((N, F, OH, OW)).astype(dtype)
    return x, w, b, dy, (s, p, d, g)


def time_rows(name, dtype, thread_counts, repeat, ref_repeat, torch, min_time=0.0):
    """``{n: times}`` for every thread count n: median seconds of cycnn's and PyTorch's
    forward and backward passes, all of them (every library on every thread count)
    timed in the same rounds, and of the NumPy reference (``ref_repeat`` calls; 0 skips
    it). Calling 1 and 2 threads in turn, rather than one row after the other, keeps the
    drift of a shared machine out of the 2-thread speed-up."""
    x, w, b, dy, args = make_inputs(name, dtype)
    s, p, d, g = args
    fns, setup = {}, {}
    with threads(max(thread_counts)):
        if torch is not None:
            F = torch.nn.functional
            xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
            bargs = ([b.shape[0]], [s, s], [p, p], [d, d], False, [0, 0], g,
                     [True, True, True])
            bwd = torch.ops.aten.convolution_backward
            with torch.no_grad():
                # the timed computation must be the one cycnn does
                tol = 1e-3 if dtype == np.float32 else 1e-9
                y_c = cycnn.conv2d_forward(x, w, b, *args)
                assert np.allclose(y_c, F.conv2d(xt, wt, bt, s, p, d, g).numpy(), rtol=tol,
                                   atol=tol), name
                for got, want in zip(cycnn.conv2d_backward(dy, x, w, *args),
                                     bwd(dyt, xt, wt, *bargs)):
                    scale = max(1.0, float(want.abs().max()))
                    assert np.allclose(got, want.numpy(), rtol=tol, atol=tol * scale), name
        for n in thread_counts:  # grouped by thread count, one setup each (see interleaved)
            on_n = functools.partial(use_threads, n)
            fns[f"cy_f/{n}"] = lambda: cycnn.conv2d_forward(x, w, b, *args)
            fns[f"cy_b/{n}"] = lambda: cycnn.conv2d_backward(dy, x, w, *args)
            if torch is not None:
                fns[f"th_f/{n}"] = lambda: F.conv2d(xt, wt, bt, s, p, d, g)
                fns[f"th_b/{n}"] = lambda: bwd(dyt, xt, wt, *bargs)
            setup.update((k, on_n) for k in fns if k.endswith(f"/{n}"))
        with torch.no_grad() if torch is not None else contextlib.nullcontext():
            med = interleaved(fns, repeat=repeat, min_time=min_time, setup=setup)
    out = {}
    for n in thread_counts:
        t = {k: med.get(f"{k}/{n}") for k in ("cy_f", "cy_b", "th_f", "th_b")}
        t["np_f"] = t["np_b"] = None
        if ref_repeat:
            with threads(n):
                t["np_f"] = median_time(lambda: reference.conv2d_forward(x, w, b, *args),
                                        repeat=ref_repeat, warmup=1)
                t["np_b"] = median_time(lambda: reference.conv2d_backward(dy, x, w, *args),
                                        repeat=ref_repeat, warmup=1)
        out[n] = t
    return out


#: issue 15's goals: (layers, largest fwd+bwd ratio, largest fwd ratio, least 2-thread
#: speed-up of cycnn's fwd+bwd over 1 thread)
GOALS = {"A": (1.0, 1.3, None), "B": (1.0, 1.3, None), "C": (1.3, 1.3, 1.7),
         "D": (1.3, 1.3, 1.7)}


def _sum(*ts):
    return None if any(t is None for t in ts) else sum(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"comma-separated, from {','.join(SHAPES)} (E: dilated, F: grouped, "
                    "G: depthwise)")
    ap.add_argument("--dtypes", default="float32,float64", help="float32,float64")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="run with N busy-looping processes (a loaded machine)")
    args = ap.parse_args(argv)

    shapes = [s.strip().upper() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {','.join(SHAPES)}")
    dtypes = []
    for d in args.dtypes.split(","):
        if d.strip() not in DTYPES:
            ap.error(f"unknown dtype {d!r}; use float32 or float64")
        dtypes.append(DTYPES[d.strip()])
    thread_counts = [int(n) for n in args.threads.split(",")]
    # at least `repeat` rounds and, for the fast ones, at least min_time seconds of them
    repeat, ref_repeat, min_time = (5, 1, 0.0) if args.quick else (15, 3, 0.5)
    if args.no_numpy:
        ref_repeat = 0

    try:
        import torch
    except ImportError:
        torch = None

    print(header())
    if args.busy:
        print(f"with {args.busy} busy-looping process(es) running beside the benchmark")
    print(f"medians of >= {repeat} interleaved rounds over >= {min_time} s, every library "
          f"on every thread count in turn (NumPy reference: {ref_repeat} calls); ratios > 1: "
          f"cycnn slower")
    print()
    results = {}
    with busy_cores(args.busy):
        for name in shapes:
            for dtype in dtypes:
                rows = time_rows(name, dtype, thread_counts, repeat, ref_repeat, torch,
                                 min_time)
                for n, t in rows.items():
                    results[name, dtype, n] = t
                print(f"  done {describe(name)} {np.dtype(dtype).name} threads="
                      f"{','.join(map(str, thread_counts))} (load {load_average()})",
                      file=sys.stderr, flush=True)
    headers = ["shape", "dtype", "threads", "cycnn fwd ms", "torch fwd ms", "numpy fwd ms",
               "cycnn bwd ms", "torch bwd ms", "numpy bwd ms", "fwd cy/torch",
               "bwd cy/torch", "fwd+bwd cy/torch", "fwd+bwd cy/numpy"]
    rows = []
    for (name, dtype, n), t in results.items():
        th_fb, cy_fb = _sum(t["th_f"], t["th_b"]), t["cy_f"] + t["cy_b"]
        rows.append([
            describe(name), np.dtype(dtype).name, n,
            fmt_ms(t["cy_f"]), fmt_ms(t["th_f"]), fmt_ms(t["np_f"]),
            fmt_ms(t["cy_b"]), fmt_ms(t["th_b"]), fmt_ms(t["np_b"]),
            fmt_ratio(t["cy_f"], t["th_f"]), fmt_ratio(t["cy_b"], t["th_b"]),
            fmt_ratio(cy_fb, th_fb), fmt_ratio(cy_fb, _sum(t["np_f"], t["np_b"])),
        ])
    print_table(headers, rows)

    if len(thread_counts) > 1:
        one, more = thread_counts[0], thread_counts[1:]
        print(f"\nspeed-up of more threads over {one} (time on {one} / time on n)")
        rows = []
        for name in shapes:
            for dtype in dtypes:
                base = results[name, dtype, one]
                for n in more:
                    t = results[name, dtype, n]
                    rows.append([describe(name), np.dtype(dtype).name, n,
                                 fmt_ratio(base["cy_f"], t["cy_f"]),
                                 fmt_ratio(base["cy_f"] + base["cy_b"], t["cy_f"] + t["cy_b"]),
                                 fmt_ratio(base["th_f"], t["th_f"]),
                                 fmt_ratio(_sum(base["th_f"], base["th_b"]),
                                           _sum(t["th_f"], t["th_b"]))])
        print_table(["shape", "dtype", "threads", "cycnn fwd", "cycnn fwd+bwd", "torch fwd",
                     "torch fwd+bwd"], rows)

    if torch is not None:
        print("\ngoals (issue 15)")
        rows = []
        for (name, dtype, n), t in results.items():
            if name not in GOALS:  # the dilated and grouped rows (issue 14) have no goal
                continue
            fb_max, f_max, speedup = GOALS[name]
            fb = (t["cy_f"] + t["cy_b"]) / (t["th_f"] + t["th_b"])
            f = t["cy_f"] / t["th_f"]
            cells = [describe(name), np.dtype(dtype).name, n,
                     f"{fb:.2f} <= {fb_max}: {'met' if fb <= fb_max else 'NOT met'}",
                     f"{f:.2f} <= {f_max}: {'met' if f <= f_max else 'NOT met'}"]
            base = results.get((name, dtype, 1))
            if speedup and n == 2 and base is not None:
                up = (base["cy_f"] + base["cy_b"]) / (t["cy_f"] + t["cy_b"])
                cells.append(f"{up:.2f} >= {speedup}: {'met' if up >= speedup else 'NOT met'}")
            else:
                cells.append("-")
            rows.append(cells)
        print_table(["shape", "dtype", "threads", "fwd+bwd cy/torch", "fwd cy/torch",
                     "2 vs 1 thread"], rows)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
