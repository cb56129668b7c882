"""Benchmark the conv2d layer: cycnn against PyTorch and the NumPy reference route.

One process, one table. For every shape x dtype x thread count, the three implementations
run on the same arrays; each is warmed up, then timed as the median of several calls.

* forward:  ``cycnn.conv2d_forward`` / ``torch.nn.functional.conv2d`` (no autograd) /
  ``cycnn.reference.conv2d_forward`` (sliding windows + einsum);
* backward: ``cycnn.conv2d_backward`` (dx, dw, db) / ``torch.ops.aten.convolution_backward``
  with all three gradients asked for (only the backward is timed) /
  ``cycnn.reference.conv2d_backward`` (dilation, padding, rotation).

Ratios above 1 mean cycnn is slower. The reference route is slow on purpose (it teaches);
its repeats are capped.

Usage::

    python benchmarks/bench_conv.py                       # everything (a few minutes)
    python benchmarks/bench_conv.py --quick --shapes A,B --dtypes float32 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _bench import fmt_ms, fmt_ratio, header, median_time, print_table, threads  # noqa: E402

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


def time_row(name, dtype, nthreads, repeat, ref_repeat, torch, min_time=0.0):
    x, w, b, dy, args = make_inputs(name, dtype)
    s, p, d, g = args
    t = {}
    timed = dict(repeat=repeat, min_time=min_time)
    with threads(nthreads):
        t["cy_f"] = median_time(lambda: cycnn.conv2d_forward(x, w, b, *args), **timed)
        t["cy_b"] = median_time(lambda: cycnn.conv2d_backward(dy, x, w, *args), **timed)
        t["np_f"] = median_time(lambda: reference.conv2d_forward(x, w, b, *args),
                                repeat=ref_repeat, warmup=1)
        t["np_b"] = median_time(lambda: reference.conv2d_backward(dy, x, w, *args),
                                repeat=ref_repeat, warmup=1)
        if torch is not None:
            F = torch.nn.functional
            xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
            with torch.no_grad():
                y_t = F.conv2d(xt, wt, bt, s, p, d, g)
                # the timed computation must be the one cycnn does
                y_c = cycnn.conv2d_forward(x, w, b, *args)
                tol = 1e-3 if dtype == np.float32 else 1e-9
                assert np.allclose(y_c, y_t.numpy(), rtol=tol, atol=tol), name
                t["th_f"] = median_time(lambda: F.conv2d(xt, wt, bt, s, p, d, g), **timed)
                bargs = ([b.shape[0]], [s, s], [p, p], [d, d], False, [0, 0], g,
                         [True, True, True])
                bwd = torch.ops.aten.convolution_backward
                grads = cycnn.conv2d_backward(dy, x, w, *args)
                for got, want in zip(grads, bwd(dyt, xt, wt, *bargs)):
                    scale = max(1.0, float(want.abs().max()))
                    assert np.allclose(got, want.numpy(), rtol=tol, atol=tol * scale), name
                t["th_b"] = median_time(lambda: bwd(dyt, xt, wt, *bargs), **timed)
        else:
            t["th_f"] = t["th_b"] = None
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--shapes", default=",".join(SHAPES),
                    help=f"comma-separated, from {','.join(SHAPES)} (E: dilated, F: grouped, "
                    "G: depthwise)")
    ap.add_argument("--dtypes", default="float32,float64", help="float32,float64")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
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
    # at least `repeat` calls and, for the fast ones, at least min_time seconds of them
    repeat, ref_repeat, min_time = (5, 1, 0.0) if args.quick else (15, 3, 0.25)

    try:
        import torch
    except ImportError:
        torch = None

    print(header())
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at start: {load} (other work on the machine skews times)")
    print(f"medians of >= {repeat} calls over >= {min_time} s (NumPy reference: {ref_repeat} "
          "calls); ratios > 1: cycnn slower")
    print()
    headers = ["shape", "dtype", "threads", "cycnn fwd ms", "torch fwd ms", "numpy fwd ms",
               "cycnn bwd ms", "torch bwd ms", "numpy bwd ms", "fwd cy/torch",
               "bwd cy/torch", "fwd+bwd cy/torch", "fwd+bwd cy/numpy"]
    rows = []
    for name in shapes:
        for dtype in dtypes:
            for n in thread_counts:
                t = time_row(name, dtype, n, repeat, ref_repeat, torch, min_time)
                th_fb = None if t["th_f"] is None else t["th_f"] + t["th_b"]
                cy_fb = t["cy_f"] + t["cy_b"]
                rows.append([
                    describe(name), np.dtype(dtype).name, n,
                    fmt_ms(t["cy_f"]), fmt_ms(t["th_f"]), fmt_ms(t["np_f"]),
                    fmt_ms(t["cy_b"]), fmt_ms(t["th_b"]), fmt_ms(t["np_b"]),
                    fmt_ratio(t["cy_f"], t["th_f"]), fmt_ratio(t["cy_b"], t["th_b"]),
                    fmt_ratio(cy_fb, th_fb), fmt_ratio(cy_fb, t["np_f"] + t["np_b"]),
                ])
                print(f"  done {describe(name)} {np.dtype(dtype).name} threads={n}",
                      file=sys.stderr, flush=True)
    print_table(headers, rows)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
