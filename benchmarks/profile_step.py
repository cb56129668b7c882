"""Where a training step spends its time: LeNet-5, phase by phase, before and after issue 15.

Every layer's forward and backward, the optimizer step and the rest (batching, loss,
Python) are timed over the first ``--batches`` batches of ``fit`` (batch 64, float32, SGD
with momentum, as in bench_train.py), in milliseconds per step, on each thread count.
Three sets of routes are profiled, each in its own child process:

* ``before``: the routes cycnn had before issue 15: every convolution with three or more
  filters through im2col and one BLAS product, max pooling through the general loops,
  whole steps (every loop split across the threads), and BLAS free to use every thread
  during ``fit``;
* ``after-loops``: the routes of today (the fast convolution route, the 2x2 max-pool
  loop, BLAS held to the calling thread during ``fit``) with whole steps, every loop split
  across the threads (``CYCNN_SHARD_STEPS=0``; only on more than one thread);
* ``after``: what cycnn does now: the same routes, and on several threads each step cut
  into one shard of the batch per thread, the first run in this process and the others in
  worker processes (cycnn/_sharding.py).

With shards, the phases are those of the first shard, the one this process runs; the row
``waiting for the shard workers`` is the time it then waited for the others' gradients.

    python benchmarks/profile_step.py                    # 1 and 2 threads, 150 batches
    python benchmarks/profile_step.py --threads 2 --batches 40 --routes after

bench_train.py prints the ``after`` profile under its epoch table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BATCH, LR, MOMENTUM, SEED = 64, 0.01, 0.9, 0
ROUTES = ("before", "after-loops", "after")


def _use_routes_before_issue_15():
    """Put back the routes of cycnn before issue 15 (in this process only)."""
    from cycnn import _sharding, conv, pool, training

    choose = conv._choose

    def im2col_for_auto(func, algorithm, wshape, yshape, groups=1, plain=False):
        if algorithm == "auto":
            return "im2col" if yshape[1] // groups >= 3 else "direct"
        return choose(func, algorithm, wshape, yshape, groups, plain)

    conv._choose = im2col_for_auto
    pool.FAST_2X2 = False
    _sharding.ENABLED = False
    training.blas_threads = lambda n: contextlib.nullcontext()


def _data(name):
    from cycnn import datasets

    if name == "auto":
        name = "fashion-mnist" if datasets.FASHION_MNIST_DIR.is_dir() else "digits"
    return name, datasets.load(name)


def phases(threads, batches, dataset, routes="after"):
    """cycnn's training step phase by phase: a dict of ms per step (and what was run)."""
    import cycnn
    from cycnn import _sharding

    if routes == "before":
        _use_routes_before_issue_15()
    _sharding.ENABLED = routes == "after"
    name, ((x, y), _) = _data(dataset)
    cycnn.set_num_threads(threads)
    model = cycnn.lenet5(SEED)
    n = min(len(x), batches * BATCH)
    spent = {}

    lock = threading.Lock()

    def timed(key, fn):
        def call(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            with lock:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
            return out
        return call

    # the passes are timed through their classes, each layer under the name it carries
    def timed_pass(fn, name):
        def call(self, *a, **k):
            return timed(f"{self._profile_name} {name}", fn.__get__(self))(*a, **k)
        return call

    for i, layer in enumerate(model.layers):
        layer._profile_name = f"{i} {layer!r}"
    for cls in {type(layer) for layer in model.layers}:
        cls.forward = timed_pass(cls.forward, "forward")
        cls.backward = timed_pass(cls.backward, "backward")
    opt = cycnn.SGD(LR, momentum=MOMENTUM)
    opt.step = timed("optimizer step", opt.step)
    _sharding._Worker.result = timed("waiting for the shard workers", _sharding._Worker.result)
    model.fit(x[:10 * BATCH], y[:10 * BATCH], batch_size=BATCH, optimizer=cycnn.SGD(LR))
    spent.clear()
    t0 = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=BATCH, optimizer=opt, seed=SEED)
    total = time.perf_counter() - t0
    steps = -(-n // BATCH)
    order = [k for k in spent if k.endswith("forward")]
    order += [k for k in reversed(list(spent)) if k.endswith("backward")] + ["optimizer step"]
    order += [k for k in spent if k.startswith("waiting")]
    out = {k: 1e3 * spent[k] / steps for k in order}
    out["batching, loss, Python"] = 1e3 * (total - sum(spent.values())) / steps
    out["total"] = 1e3 * total / steps
    return {"threads": threads, "routes": routes, "steps": steps, "dataset": name,
            "load": os.getloadavg()[0], "ms": out}


def run_child(threads, batches, dataset, routes):
    """:func:`phases` in a fresh process (its own OpenMP and BLAS state); None on failure."""
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", routes,
                        str(threads), "--batches", str(batches), "--dataset", dataset],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"profile ({routes}, {threads} thread(s)) failed:\n{r.stderr}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def print_profiles(profiles):
    """One table: a column per (routes, threads) profile, a row per phase."""
    from _bench import print_table

    cols = sorted(profiles, key=lambda k: (k[1], ROUTES.index(k[0])))
    first = profiles[cols[0]]
    print(f"LeNet-5 training step phase by phase, ms per step ({first['dataset']}, first "
          f"{first['steps']} batches of {BATCH}, float32)")
    keys = list(first["ms"])
    for c in cols[1:]:
        keys += [k for k in profiles[c]["ms"] if k not in keys]
    keys = [k for k in keys if k != "total"] + ["total"]  # a row only some columns have
    rows = []
    for k in keys:
        cells = []
        for c in cols:
            ms = profiles[c]["ms"]
            if k not in ms:
                cells.append("-")
            elif k == "total" or "batching, loss, Python" not in ms:
                cells.append(f"{ms[k]:.3f}")
            else:
                cells.append(f"{ms[k]:.3f} ({100 * ms[k] / ms['total']:.0f} %)")
        rows.append([k] + cells)
    print_table(["phase"] + [f"{r}, {nt} thread(s)" for r, nt in cols], rows)
    print("Where a column has shards (after, on several threads), the phases are those of "
          "the shard this process ran, and the others ran meanwhile in worker processes.")
    print("load average during the profiles: "
          + ", ".join(f"{r} {nt}: {profiles[r, nt]['load']:.2f}" for r, nt in cols))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, default=150, help="batches profiled per run")
    ap.add_argument("--dataset", choices=("auto", "digits", "fashion-mnist"), default="auto")
    ap.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    ap.add_argument("--child", nargs=2, metavar=("ROUTES", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(phases(int(args.child[1]), args.batches, args.dataset,
                                args.child[0])))
        return 0

    from _bench import header

    profiles = {}
    for nt in args.threads:
        for routes in args.routes:
            if routes == "after-loops" and nt == 1:  # one thread: the same as "after"
                continue
            p = run_child(nt, args.batches, args.dataset, routes)
            if p is not None:
                profiles[routes, nt] = p
    if not profiles:
        return 1
    print(header())
    print_profiles(profiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
