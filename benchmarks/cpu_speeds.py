"""Is every CPU of this machine as fast as the others, from one moment to the next?

A training step cut into one shard per CPU (cycnn/_sharding.py) ends when its slowest
shard does, so two threads gain what the slower of two CPUs allows. On a virtual machine
a CPU can slow down for a while without any steal time showing: the host may run another
guest on the same physical core (its other hyperthread) or lower its clock. This script
times the same work, a forward and backward pass of LeNet-5 on 32 samples on one thread,
pinned to each CPU in turn, in short windows one after the other, and prints every
window's median per CPU and the ratio of the slower to the faster.

    python benchmarks/cpu_speeds.py                     # 12 windows of 100 passes
    python benchmarks/cpu_speeds.py --windows 40 --passes 50

Linux only (it pins itself with ``os.sched_setaffinity``).
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

import cycnn  # noqa: E402
from cycnn import _threads  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=12, help="windows per CPU")
    ap.add_argument("--passes", type=int, default=100, help="passes per window")
    args = ap.parse_args(argv)
    if args.windows < 1 or args.passes < 1:
        ap.error("--windows and --passes must be at least 1")
    if not hasattr(os, "sched_setaffinity"):
        sys.exit("cpu_speeds.py: this OS cannot pin a process to a CPU")
    cpus = sorted(os.sched_getaffinity(0))
    header()
    cycnn.set_num_threads(1)
    model = cycnn.lenet5(0)
    model.train()
    loss = cycnn.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)

    def window():
        times = []
        for _ in range(args.passes):
            t0 = time.perf_counter()
            logits = model.forward(x)
            loss.forward(logits, y)
            model.backward(loss.backward(), need_dx=False)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    rows, ratios = [], []
    try:
        with _threads.blas_threads(1):
            window()  # warm up
            for k in range(args.windows):
                ms = []
                for cpu in cpus:
                    os.sched_setaffinity(0, {cpu})
                    ms.append(window())
                ratios.append(max(ms) / min(ms))
                rows.append([str(k + 1), *(f"{m:.3f}" for m in ms), f"{ratios[-1]:.2f}"])
    finally:
        os.sched_setaffinity(0, cpus)
    print(f"LeNet-5 forward + backward of 32 samples on one thread, median ms of "
          f"{args.passes} passes per window, pinned to each CPU in turn")
    print_table(["window", *(f"CPU {c}" for c in cpus), "slower / faster"], rows)
    slow = sum(r >= 1.2 for r in ratios)
    print(f"\nslower / faster: median {statistics.median(ratios):.2f}, max {max(ratios):.2f}; "
          f"{slow} of {len(ratios)} windows 1.2 or more (a two-shard step then waits "
          "for the slower CPU)")


if __name__ == "__main__":
    main()
