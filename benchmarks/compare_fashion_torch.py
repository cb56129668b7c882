"""Fashion-MNIST: the convnet recipe trained in cycnn and, the same way, in PyTorch.

    python benchmarks/compare_fashion_torch.py                  # seeds 0 1 2, one thread
    python benchmarks/compare_fashion_torch.py --seeds 0 --json out.json

Same network (cycnn.convnet: conv 3x3 32, batch norm, ReLU, max-pool, conv 3x3 64,
batch norm, ReLU, max-pool, dropout 0.25, dense 3136->128, ReLU, dropout 0.25, dense
128->10), same initial weights (cycnn's, copied into PyTorch by ``to_torch``), same
batch order (``cycnn.epoch_order``), same recipe (``cycnn.recipes.RECIPES
["fashion-mnist"]``: SGD with Nesterov momentum and weight decay, OneCycleLR stepped
every batch, 5 epochs of batches of 64), float32. The two libraries' dropout masks come
from different generators, so the runs are the same recipe, not the same numbers.

Each seed trains cycnn, then PyTorch; after every epoch both are scored on the 10,000
test images (eval mode: running statistics, no dropout). The table gives the final test
accuracy of each and their difference; the mean over seeds is the line the docs quote.
Needs the four Fashion-MNIST IDX files (Debian: ``apt-get install
dataset-fashion-mnist``) and PyTorch.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def train_cycnn(recipe, data, seed, log):
    import cycnn
    from cycnn.recipes import build

    (x, y), (xt, yt) = data
    model, opt, sched, aug = build(recipe, len(x), seed)
    accs = []

    def score(epoch, history):
        acc = model.evaluate(xt, yt)[1]
        accs.append(acc)
        log(f"  cycnn   seed {seed} epoch {epoch + 1}: test {100 * acc:.2f}%")

    t0 = time.perf_counter()
    model.fit(x, y, epochs=recipe["epochs"], batch_size=recipe["batch_size"], optimizer=opt,
              seed=seed, scheduler=sched, augment=aug, on_epoch_end=score)
    assert cycnn.get_num_threads() >= 1
    return accs, time.perf_counter() - t0


def train_torch(recipe, data, seed, log):
    import torch

    import cycnn
    from cycnn.recipes import build

    (x, y), (xt, yt) = data
    model, _, _, aug = build(recipe, len(x), seed)  # cycnn's initial weights
    assert aug is None, "this comparison runs recipes without augmentation"
    tm = cycnn.to_torch(model).train()
    opt = torch.optim.SGD(tm.parameters(), lr=recipe["lr"], momentum=recipe["momentum"],
                          nesterov=recipe["nesterov"], weight_decay=recipe["weight_decay"])
    steps = math.ceil(len(x) / recipe["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"],
                                                total_steps=recipe["epochs"] * steps)
    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    xts, yts = torch.from_numpy(xt), torch.from_numpy(yt)
    accs = []
    t0 = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        tm.train()
        order = torch.from_numpy(cycnn.epoch_order(len(x), seed, epoch))
        for s in range(0, len(x), recipe["batch_size"]):
            idx = order[s:s + recipe["batch_size"]]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tm(xs[idx]), ys[idx]).backward()
            opt.step()
            sched.step()
        tm.eval()
        with torch.no_grad():
            pred = torch.cat([tm(xts[k:k + 256]).argmax(1) for k in range(0, len(xt), 256)])
        accs.append(float((pred == yts).double().mean()))
        log(f"  pytorch seed {seed} epoch {epoch + 1}: test {100 * accs[-1]:.2f}%")
    return accs, time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import torch

    import cycnn
    from cycnn.recipes import RECIPES

    cycnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    data = cycnn.datasets.load_fashion_mnist(args.data_dir)
    recipe = RECIPES["fashion-mnist"]

    def log(msg):
        print(msg, flush=True)

    log(f"cycnn {cycnn.__version__}, torch {torch.__version__}, {args.threads} thread(s), "
        f"recipe {json.dumps(recipe)}")
    rows = []
    for seed in args.seeds:
        ours, t_ours = train_cycnn(recipe, data, seed, log)
        theirs, t_theirs = train_torch(recipe, data, seed, log)
        rows.append({"seed": seed, "cycnn": ours, "torch": theirs, "cycnn_s": t_ours,
                     "torch_s": t_theirs})
    log("\n| seed | cycnn | PyTorch | difference | cycnn time | PyTorch time |")
    log("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        a, b = 100 * r["cycnn"][-1], 100 * r["torch"][-1]
        log(f"| {r['seed']} | {a:.2f} % | {b:.2f} % | {a - b:+.2f} | {r['cycnn_s']:.0f} s "
            f"| {r['torch_s']:.0f} s |")
    a = np.mean([100 * r["cycnn"][-1] for r in rows])
    b = np.mean([100 * r["torch"][-1] for r in rows])
    log(f"| mean | {a:.2f} % | {b:.2f} % | {a - b:+.2f} | | |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"recipe": recipe, "threads": args.threads, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
