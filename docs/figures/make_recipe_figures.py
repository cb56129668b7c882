"""Draw the figures of docs/training-recipes.md; the PNGs are checked in beside this file.

    python docs/figures/make_recipe_figures.py                 # the full digits recipe
    python docs/figures/make_recipe_figures.py --epochs 3      # quicker, for a try

The docs build and the tests do not run this script: they use the PNGs as committed.
It writes

* ``recipe_augmented.png``: eight training digits and three random affine variants of
  each, drawn with the digits recipe's RandomAffine;
* ``recipe_curves.png``: the loss and accuracy curves of the digits recipe (seed 0),
  training and test after every epoch, as ``cycnn train --plot`` draws them;
* ``recipe_confusion.png``: its confusion matrix on the 1,000 test digits, as
  ``cycnn evaluate --plot`` draws it;

and prints the numbers it drew.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cycnn  # noqa: E402
from cycnn.plots import plot_confusion, plot_history  # noqa: E402
from cycnn.recipes import RECIPES, build, make_augment  # noqa: E402

HERE = Path(__file__).resolve().parent


def augmented(x, out):
    aug = make_augment(RECIPES["digits"])
    rng = np.random.default_rng(0)
    rows = [x[:8]] + [aug(x[:8], rng) for _ in range(3)]
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.3), dpi=100)
    for r, batch in enumerate(rows):
        for k in range(8):
            ax = axes[r, k]
            ax.imshow(batch[k, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel("original" if r == 0 else f"variant {r}", fontsize=11)
    fig.suptitle("RandomAffine of the digits recipe: rotation, scale, shear, shift", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=200)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=RECIPES["digits"]["epochs"])
    args = parser.parse_args()
    (x, y), (xt, yt) = cycnn.datasets.load_digits()
    augmented(x, HERE / "recipe_augmented.png")
    recipe = dict(RECIPES["digits"], epochs=args.epochs)
    model, opt, sched, aug = build(recipe, len(x), seed=0)
    history = model.fit(x, y, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                        optimizer=opt, seed=0, scheduler=sched, augment=aug,
                        validation_data=(xt, yt), verbose=1)
    plot_history(history, HERE / "recipe_curves.png",
                 title=f"{recipe['model']} on the bundled digits, seed 0")
    pred = model.predict(xt).argmax(1)
    m = cycnn.confusion_matrix(yt, pred, 10)
    acc = np.trace(m) / len(yt)
    plot_confusion(m, cycnn.datasets.CLASS_NAMES["digits"], HERE / "recipe_confusion.png",
                   title=f"digits recipe, seed 0: {100 * acc:.1f}% of 1,000 test digits")
    for e in range(len(history["loss"])):
        print(f"epoch {e + 1}: loss {history['loss'][e]:.4f} acc "
              f"{100 * history['accuracy'][e]:.2f}% | test loss {history['val_loss'][e]:.4f} "
              f"acc {100 * history['val_accuracy'][e]:.2f}%")
    wrong = [(int(t), int(p)) for t, p in zip(yt, pred) if t != p]
    print(f"test accuracy {100 * acc:.2f}%; mistakes (true, predicted): {wrong}")


if __name__ == "__main__":
    main()
