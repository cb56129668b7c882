"""Training speed and memory: cycnn vs PyTorch, seconds per epoch of LeNet-5.

    python benchmarks/bench_train.py                # 1 and 2 threads, one timed epoch
    python benchmarks/bench_train.py --threads 2 --epochs 2
    python benchmarks/bench_train.py --busy 1       # with one busy-looping process

Same network (conv 1->6 5x5, ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2, flatten,
dense 256->120->84->10), same initial weights (cycnn's, copied into PyTorch through
``state_dict``), same batch order (``cycnn.model.epoch_order``), float32, SGD (lr 0.01,
momentum 0.9), batch 64, on the full Fashion-MNIST training set (60,000 images) when
``/usr/share/datasets/fashion-mnist`` exists, else on the 4,000 bundled digits.

On several threads cycnn cuts each training step into one shard of the batch per thread,
the first run by the calling process and the others by worker processes
(cycnn/_sharding.py). The ``cycnn-loops`` rows turn that off (``CYCNN_SHARD_STEPS=0``):
each compiled loop is split across the threads instead, and every 200 steps cycnn checks
that the threads pay, running the next steps on one thread while one is faster
(``cycnn._threads.StepThreads``); the ``cycnn-fixed`` rows split the loops and keep every
step on every thread (``CYCNN_ADAPTIVE_THREADS=0`` as well), so the table shows what each
way of using the threads gives on this machine.

Every (library, threads) pair runs in its own child process, once per round
(``--rounds``, 5 by default: all pairs in turn, then again), and the tables give medians
over the rounds with their range, and the steal time (the share of the machine's CPU that
the hypervisor of a virtual machine gave to other guests meanwhile, from ``/proc/stat``):
two threads cannot beat one while one of them waits for a stolen CPU. The peak resident
memory (``resource.getrusage(...).ru_maxrss``) is that run's alone; each child first
warms up on a few batches (fresh arrays page-fault on first touch) and then times whole
epochs. Memory: the resident set once the data are loaded (current, from /proc), and
the peak (``ru_maxrss``) after the timed epochs and after the test-set evaluation
(batches of 256 in both libraries); the peak includes the transient of decompressing
the data, and for cycnn on several threads the peaks of its shard worker processes
(``VmHWM`` from /proc) added to that of the process itself. PyTorch runs the textbook
loop (``zero_grad``, forward, ``cross_entropy``, ``backward``, ``step``). Both
libraries' idle threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` and
``OPENBLAS_THREAD_TIMEOUT=4`` unless already set): with busy-waiting pools the 2-thread
rows measure the pools fighting for two cores.

After the epochs, one more child per thread count profiles cycnn's training step
(profile_step.py): every layer's forward and backward, the optimizer step and the rest
(batching, loss, Python) timed over the first ``--phase-batches`` batches, in milliseconds
per step. A table gives the speed-up of each thread count over the first.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BATCH, LR, MOMENTUM, SEED = 64, 0.01, 0.9, 0


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _workers_peak_mb():
    """The peak resident memory of cycnn's shard worker processes (Linux /proc), which
    ``ru_maxrss`` of this process does not count; 0 where there are none."""
    from cycnn import _sharding

    total = 0.0
    for w in _sharding._workers:
        try:
            with open(f"/proc/{w.proc.pid}/status") as fh:
                total += next(int(line.split()[1]) for line in fh
                              if line.startswith("VmHWM:")) / 1024
        except (AttributeError, OSError, StopIteration):
            pass
    return total


def _current_rss_mb():
    """Resident memory now (Linux /proc), or the peak where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()


def _data(name):
    from cycnn import datasets

    if name == "auto":
        name = "fashion-mnist" if datasets.FASHION_MNIST_DIR.is_dir() else "digits"
    return name, datasets.load(name)


def child(lib, threads, epochs, dataset):
    """One run; prints a JSON line with seconds per epoch, loss, accuracy and memory."""
    import numpy as np
    from _bench import cpu_ticks, steal_percent

    import cycnn
    from cycnn import epoch_order, lenet5, to_torch

    name, ((x, y), (xt, yt)) = _data(dataset)
    cycnn.set_num_threads(threads)
    rss_data = _current_rss_mb()
    model = lenet5(SEED)
    warm = slice(0, 10 * BATCH)
    times, losses, steal = [], [], []
    if lib.startswith("cycnn"):
        if lib in ("cycnn-loops", "cycnn-fixed"):  # loops split, as CYCNN_SHARD_STEPS=0
            from cycnn import _sharding

            _sharding.ENABLED = False
        if lib == "cycnn-fixed":  # every step on every thread, as CYCNN_ADAPTIVE_THREADS=0
            from cycnn import _threads

            _threads.ADAPTIVE = False
        lenet5(SEED + 1).fit(x[warm], y[warm], epochs=1, batch_size=BATCH,
                             optimizer=cycnn.SGD(LR, momentum=MOMENTUM))
        opt = cycnn.SGD(LR, momentum=MOMENTUM)
        for e in range(epochs):
            t0, c0 = time.perf_counter(), cpu_ticks()
            h = model.fit(x, y, epochs=e + 1, initial_epoch=e, batch_size=BATCH,
                          optimizer=opt, seed=SEED)
            times.append(time.perf_counter() - t0)
            steal.append(steal_percent(c0, cpu_ticks()))
            losses.append(h["loss"][0])
        rss_train = _rss_mb() + _workers_peak_mb()
        acc = model.evaluate(xt, yt)[1]
    else:
        import torch

        torch.set_num_threads(threads)
        F = torch.nn.functional
        X, Y = torch.from_numpy(x), torch.from_numpy(y)

        def run(tm, opt, order):
            total = 0.0
            for s in range(0, len(order), BATCH):
                idx = torch.from_numpy(order[s:s + BATCH])
                opt.zero_grad()
                loss = F.cross_entropy(tm(X[idx]), Y[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            return total / len(order)

        w = to_torch(lenet5(SEED + 1))
        run(w, torch.optim.SGD(w.parameters(), LR, MOMENTUM), np.arange(warm.stop))
        tm = to_torch(model)
        opt = torch.optim.SGD(tm.parameters(), LR, MOMENTUM)
        for e in range(epochs):
            t0, c0 = time.perf_counter(), cpu_ticks()
            losses.append(run(tm, opt, epoch_order(len(x), SEED, e)))
            times.append(time.perf_counter() - t0)
            steal.append(steal_percent(c0, cpu_ticks()))
        rss_train = _rss_mb()
        with torch.no_grad():  # in batches of 256, as cycnn's evaluate
            pred = np.concatenate([tm(torch.from_numpy(xt[s:s + 256])).argmax(1).numpy()
                                   for s in range(0, len(xt), 256)])
        acc = float((pred == yt).mean())
    print(json.dumps({"lib": lib, "threads": threads, "dataset": name, "n": len(x),
                      "seconds": times, "steal": steal, "loss": losses, "test_accuracy": acc,
                      "rss_data_mb": rss_data, "rss_train_mb": rss_train,
                      "rss_peak_mb": _rss_mb() + (_workers_peak_mb() if lib != "torch" else 0)}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per run")
    ap.add_argument("--rounds", type=int, default=5,
                    help="runs of every (library, threads) pair, taken in turn")
    ap.add_argument("--dataset", choices=("auto", "digits", "fashion-mnist"), default="auto")
    ap.add_argument("--libs", nargs="+", default=["cycnn", "cycnn-loops", "cycnn-fixed", "torch"],
                    help="cycnn-loops: each loop split across the threads, no shards; "
                         "cycnn-fixed: the same on every step (no fallback to one thread)")
    ap.add_argument("--phase-batches", type=int, default=300,
                    help="batches of the per-phase profile (0 skips it)")
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="run with N busy-looping processes (a loaded machine)")
    ap.add_argument("--child", nargs=2, metavar=("LIB", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]), args.epochs, args.dataset)

    from _bench import busy_cores, header, load_average, print_table
    from profile_step import print_profiles, run_child

    # Every pair runs once per round, the rounds one after the other, so that a slow spell
    # of the machine (its speed drifts by a quarter within minutes) hits every pair alike;
    # the tables give medians over all the timed epochs of all rounds.
    results, profiles = {}, {}  # children first: a forked child starts with its parent's RSS
    start_load = load_average()
    with busy_cores(args.busy):
        for k in range(args.rounds):
            for nt in args.threads:
                for lib in args.libs:
                    if lib in ("cycnn-loops", "cycnn-fixed") and nt == 1:  # the same as cycnn
                        continue
                    r = subprocess.run([sys.executable, __file__, "--child", lib, str(nt),
                                        "--epochs", str(args.epochs), "--dataset",
                                        args.dataset], capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"{lib} on {nt} thread(s) failed:\n{r.stderr}", file=sys.stderr)
                        continue
                    one = json.loads(r.stdout.strip().splitlines()[-1])
                    seen = results.setdefault((lib, nt), {**one, "seconds": [], "steal": [],
                                                          "rss_peak_mb": 0.0})
                    seen["seconds"] += one["seconds"]
                    seen["steal"] += one["steal"]
                    seen["rss_peak_mb"] = max(seen["rss_peak_mb"], one["rss_peak_mb"])
                    print(f"  round {k + 1}: {lib} threads={nt} "
                          f"{' '.join(f'{t:.2f}' for t in one['seconds'])} s "
                          f"(load {load_average()})", file=sys.stderr, flush=True)
        for nt in args.threads if args.phase_batches and "cycnn" in args.libs else ():
            p = run_child(nt, args.phase_batches, args.dataset, "after")
            if p is not None:
                profiles["after", nt] = p
    if not results:
        return 1

    print(header().replace(f"load average at start: {load_average()}",
                           f"load average at start: {start_load}"))
    if args.busy:
        print(f"with {args.busy} busy-looping process(es) running beside the benchmark")
    any_r = next(iter(results.values()))
    print(f"LeNet-5, {any_r['dataset']} ({any_r['n']:,} training images), float32, SGD "
          f"lr {LR} momentum {MOMENTUM}, batch {BATCH}, {args.epochs} timed epoch(s) in "
          f"each of {args.rounds} round(s); OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")

    def median(r):
        return statistics.median(r["seconds"])

    def steal(r):
        known = [v for v in r["steal"] if v is not None]
        return f"{statistics.median(known):.1f}" if known else "-"

    rows = []
    for nt in args.threads:
        for lib in args.libs:
            r = results.get((lib, nt))
            if r is None:
                continue
            s = median(r)
            other = results.get(("torch", nt))
            ratio = "-" if other is None or lib == "torch" else f"{s / median(other):.2f}"
            rows.append([lib, nt, f"{s:.2f}", f"{min(r['seconds']):.2f}–{max(r['seconds']):.2f}",
                         f"{r['n'] / s:,.0f}", ratio, steal(r), f"{r['loss'][-1]:.4f}",
                         f"{100 * r['test_accuracy']:.2f}", f"{r['rss_data_mb']:.0f}",
                         f"{r['rss_train_mb']:.0f}", f"{r['rss_peak_mb']:.0f}"])
    print_table(["library", "threads", "s/epoch", "range", "samples/s", "cycnn/torch",
                 "steal %", "epoch loss", "test acc %", "RSS with data (MB)",
                 "peak RSS training (MB)", "peak RSS with test (MB)"], rows)
    print("steal %: the share of the machine's CPU time the hypervisor gave to other guests "
          "during the timed epochs (median); threads that wait on a stolen CPU make the "
          "2-thread rows slower")

    if len(args.threads) > 1:
        one = args.threads[0]
        print(f"\nspeed-up of an epoch over {one} thread(s) (time on {one} / time on n)")
        rows = []
        for lib in args.libs:
            for nt in args.threads[1:]:
                base = results.get((lib, one)) or results.get(("cycnn", one)) \
                    if lib.startswith("cycnn") else results.get((lib, one))
                if base is not None and (lib, nt) in results:
                    up = median(base) / median(results[lib, nt])
                    rows.append([lib, nt, f"{up:.2f}"])
        print_table(["library", "threads", "speed-up"], rows)

    if profiles:
        print()
        print_profiles(profiles)
    print(f"load average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
