"""Train variants of the digits recipe over a few seeds and print their test accuracy.

This made the table "What each change bought" on the docs page Training recipes. Each
variant is the digits recipe of cycnn 0.1's first recipe (``BEFORE``) with some entries
replaced; every run trains on the 4,000 bundled training digits and scores the 1,000
held-out ones. Runs are independent processes, ``--jobs`` at a time, each on one thread
(so two jobs fill two cores and the same seed gives the same bits every time).

Usage::

    python scripts/recipe_ablation.py                     # every variant, seeds 0 1 2
    python scripts/recipe_ablation.py --variants now --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

#: the digits recipe before label smoothing, the wider head and the larger batches
BEFORE = {"model": "convnet", "model_options": {}, "epochs": 20, "batch_size": 64,
          "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
          "weight_decay": 5e-4, "schedule": "onecycle",
          "augment": {"degrees": 15.0, "translate": 3.0, "scale": [0.85, 1.15], "shear": 10.0},
          "label_smoothing": 0.0}
MILD = {"degrees": 10.0, "translate": 2.0, "scale": [0.9, 1.1], "shear": 5.0}

#: name -> the entries that differ from BEFORE
VARIANTS = {
    "before": {},
    "smoothing": {"label_smoothing": 0.1},
    "mild-augment": {"augment": MILD},
    "mild+smoothing": {"augment": MILD, "label_smoothing": 0.1},
    "+hidden-256": {"augment": MILD, "label_smoothing": 0.1, "model_options": {"hidden": 256}},
    "+decay-1e-3": {"augment": MILD, "label_smoothing": 0.1, "model_options": {"hidden": 256},
                    "weight_decay": 1e-3},
    "now": {"augment": MILD, "label_smoothing": 0.1, "model_options": {"hidden": 256},
            "weight_decay": 1e-3, "batch_size": 128, "lr": 0.2, "epochs": 25},
}

CHILD = """
import json, sys, time
import cycnn
from cycnn.recipes import build, make_loss
recipe, seed = json.loads(sys.argv[1]), int(sys.argv[2])
(x, y), (xt, yt) = cycnn.datasets.load_digits()
model, opt, sched, aug = build(recipe, len(x), seed)
t = time.perf_counter()
model.fit(x, y, epochs=recipe["epochs"], batch_size=recipe["batch_size"], optimizer=opt,
          seed=seed, scheduler=sched, augment=aug, loss=make_loss(recipe))
t = time.perf_counter() - t
print(json.dumps({"accuracy": model.evaluate(xt, yt)[1], "seconds": t}))
"""


def run(recipe, seed):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(recipe), str(seed)],
                         capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    jobs = [(v, s) for v in args.variants for s in args.seeds]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(dict(BEFORE, **VARIANTS[job[0]]), job[1]), jobs))
    print(f"{len(jobs)} runs, {args.jobs} at a time, {time.perf_counter() - start:.0f} s\n")
    print("| variant | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | s/run |")
    print("|---|" + "---:|" * (len(args.seeds) + 2))
    for v in args.variants:
        rs = [r for (name, _), r in zip(jobs, results) if name == v]
        accs = [100 * r["accuracy"] for r in rs]
        cells = " | ".join(f"{a:.1f}" for a in accs)
        mean_s = sum(r["seconds"] for r in rs) / len(rs)
        print(f"| {v} | {cells} | {sum(accs) / len(accs):.2f} | {mean_s:.0f} |")


if __name__ == "__main__":
    main()
