"""Run every benchmark of issue 15 and write the tables to docs/performance-results.md.

    nice -n 0 python benchmarks/run_all.py            # the full run, on a quiet machine
    python benchmarks/run_all.py --quick --out /tmp/results.md   # a short trial run

One script after the other, each in its own process, in this order:

1. ``bench_conv.py``: conv2d layers A-D and the dilated, grouped and depthwise rows E-G,
   float32 and float64, forward and forward + backward, 1 and 2 threads, against PyTorch;
2. ``bench_pool.py``: max and average pooling against PyTorch;
3. ``bench_train.py``: one LeNet-5 epoch on Fashion-MNIST, 1 and 2 threads, with peak
   memory, against PyTorch, and the per-phase profile of a step;
4. ``bench_train.py --busy 1``: the same epoch with one busy-looping process beside it
   (a loaded machine: two threads must not stall);
5. ``profile_step.py``: a training step phase by phase, before and after issue 15;
6. ``sweep_tiles.py``: the fast route's chunk size and copy layout against the chosen
   ones, on 1 and 2 threads;
7. ``region_cost.py``: what one parallel region costs on two threads against one.

The page starts with the machine (``build_info()``: CPU, features, kernels chosen, cache
sizes) and ``uptime`` before and after, so a reader can tell a quiet run from a loaded
one; each section gives the exact command and how long it took. Nothing else should run
on the machine meanwhile: the medians resist noise, not a second job on the same cores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

#: (title, script and arguments, arguments added by --quick)
RUNS = [
    ("Convolution layers A-D, and E-G (dilated, grouped, depthwise), forward and "
     "forward + backward", ["bench_conv.py"],
     ["--quick", "--no-numpy"]),
    ("Pooling", ["bench_pool.py"], ["--quick"]),
    ("A LeNet-5 training epoch, 1 and 2 threads, peak memory", ["bench_train.py"],
     ["--dataset", "digits", "--phase-batches", "20"]),
    ("The same epoch on a loaded machine (one busy-looping process)",
     ["bench_train.py", "--busy", "1", "--phase-batches", "0"], ["--dataset", "digits"]),
    ("A training step phase by phase, before and after issue 15", ["profile_step.py"],
     ["--batches", "20"]),
    ("Chunk size and copy layout of the fast route, 1 thread", ["sweep_tiles.py"],
     ["--rounds", "3", "--min-time", "0.1", "--layers", "A,C"]),
    ("Chunk size and copy layout of the fast route, 2 threads",
     ["sweep_tiles.py", "--threads", "2"],
     ["--rounds", "3", "--min-time", "0.1", "--layers", "A,C"]),
    ("What waking the second thread costs, per parallel region", ["region_cost.py"],
     ["--calls", "200"]),
]

INTRO = """\
# Performance results

These tables are written by one command, `{command}`, which runs every benchmark
script in `benchmarks/` one after the other ({seconds:.0f} s in all this time). What the
numbers mean, how they are measured and what differs from one CPU to another is on
[Performance](performance.md). Ratios are cycnn / PyTorch (below 1: cycnn is faster),
medians of interleaved rounds, same dtype and thread count for both libraries.
"""


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


#: lines every script prints about the machine, given once at the top of the page
MACHINE_LINES = ("cpu: ", "kernels: ", "caches: ")


def _markdown(output, machine=False):
    """A script's printed lines as Markdown: tables stay, other lines keep their breaks
    (the machine's description is dropped unless ``machine``)."""
    out, in_table = [], False
    for line in output.splitlines():
        if not machine and line.startswith(MACHINE_LINES):
            continue
        table = line.startswith("|")
        if table != in_table and out and out[-1] != "":
            out.append("")
        in_table = table
        if not line.strip():
            if out and out[-1] != "":
                out.append("")
        elif table:
            out.append(line)
        else:
            out.append(line.strip().replace("*", r"\*") + "  ")
    return "\n".join(out).strip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a short trial run: fewer repeats, the small digits set")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance-results.md")
    ap.add_argument("--only", help="comma-separated section numbers to run (1-7)")
    args = ap.parse_args(argv)

    from _bench import header

    chosen = range(1, len(RUNS) + 1) if not args.only else \
        [int(k) for k in args.only.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    up_before = _uptime()
    t_all = time.perf_counter()
    sections = []
    for k in chosen:
        title, cmd, quick = RUNS[k - 1]
        cmd = cmd + (quick if args.quick else [])
        shown = "python benchmarks/" + " ".join(cmd)
        print(f"[{k}/{len(RUNS)}] {shown}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=ROOT,
                           capture_output=True, text=True)
        took = time.perf_counter() - t0
        body = _markdown(r.stdout) if r.stdout.strip() else ""
        if r.returncode != 0:
            body += f"\n**failed** (exit status {r.returncode}):\n\n```\n{r.stderr[-2000:]}\n```\n"
        sections.append(f"## {k}. {title}\n\n`{shown}` ({took:.0f} s)\n\n{body}")
        print(f"      {took:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t_all
    command = "python benchmarks/run_all.py" + (" --quick" if args.quick else "") + \
        (f" --only {args.only}" if args.only else "")
    page = [INTRO.format(command=command, seconds=seconds), "## The machine\n",
            _markdown(header(), machine=True),
            f"Run {started:%Y-%m-%d %H:%M} UTC.  \n`uptime` before: {up_before}  \n"
            f"`uptime` after: {_uptime()}\n"] + sections
    args.out.write_text("\n".join(page))
    print(f"wrote {args.out} ({seconds:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
