"""Train the LeNet-5-style network on the bundled digits and draw the figures of
docs/training.md; the PNGs are checked in beside this file.

    python docs/figures/make_figures.py training               # as the site has them
    python docs/figures/make_training_figures.py --epochs 3    # quicker, for a try

``make_figures.py`` (the one command for every figure) calls :func:`make` with
:data:`CONFIG` and records the result in figures.json. The docs build and the tests do not
train: they use the PNGs as committed. It writes

* ``training_curves.png``: training loss and accuracy per epoch, with the held-out test
  loss and accuracy after each epoch;
* ``training_predictions.png``: the first 16 test digits with the predicted class, and
  the first 8 test digits the network gets wrong (in red);
* ``training_filters.png``: the six learned 5x5 filters of the first convolution;
* ``training_feature_maps.png``: one test digit and the six feature maps the first
  convolution + ReLU makes of it.

and prints the numbers it drew, so the page's prose can quote them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from make_figures import DPI, RED_INK, _plt

import cycnn

HERE = Path(__file__).resolve().parent

#: the run the site shows (docs/training.md quotes its numbers)
CONFIG = {"epochs": 15, "lr": 0.01, "batch_size": 32, "seed": 0}


def train(epochs, lr, batch_size, seed):
    (x_train, y_train), (x_test, y_test) = cycnn.datasets.load_digits()
    model = cycnn.lenet5(seed=seed)
    t0 = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size,
                        optimizer=cycnn.SGD(lr=lr, momentum=0.9), validation_data=(x_test, y_test),
                        seed=seed, verbose=1)
    seconds = time.perf_counter() - t0
    return model, history, (x_test, y_test), seconds


def curves(history, out):
    plt = _plt()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(7.6, 3.5))
    ax_loss.plot(epochs, history["loss"], "o-", label="training (mean over the epoch)")
    ax_loss.plot(epochs, history["val_loss"], "s--", label="test (after the epoch)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, 100 * np.array(history["accuracy"]), "o-", label="training")
    ax_acc.plot(epochs, 100 * np.array(history["val_accuracy"]), "s--", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    fig.suptitle("4,000 training digits, SGD with momentum", fontsize=13)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def predictions(model, x_test, y_test, out):
    plt = _plt()
    predicted = model.predict(x_test).argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_test)
    shown = list(range(16)) + list(wrong[:8])
    fig, axes = plt.subplots(3, 8, figsize=(7.6, 3.9))
    for ax, k in zip(axes.flat, shown):
        ax.imshow(x_test[k, 0], cmap="gray_r")
        miss = predicted[k] != y_test[k]
        ax.set_title(f"{predicted[k]}" + (f" (is {y_test[k]})" if miss else ""),
                     color=RED_INK if miss else "black", fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("first 16 test digits (rows 1-2); 8 it gets wrong (row 3, red)",
                 fontsize=13)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return int((predicted[:16] == y_test[:16]).sum()), int(wrong.size)


def filters(model, out):
    plt = _plt()
    w = model[0].params["weight"]  # (6, 1, 5, 5)
    lim = float(np.abs(w).max())
    fig, axes = plt.subplots(1, w.shape[0], figsize=(7.6, 1.9))
    for f, ax in enumerate(axes):
        im = ax.imshow(w[f, 0], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"w[{f}, 0]", fontsize=12)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.01)
    fig.suptitle("first layer's 5x5 filters (red > 0, blue < 0)", fontsize=13)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def feature_maps(model, x_test, out, index=0):
    plt = _plt()
    x = x_test[index:index + 1]
    conv, relu = model[0], model[1]
    maps = relu.forward(conv.forward(x))[0]  # (6, 24, 24)
    fig, axes = plt.subplots(1, 1 + maps.shape[0], figsize=(7.6, 1.7))
    axes[0].imshow(x[0, 0], cmap="gray_r")
    axes[0].set_title("x", fontsize=12)
    for f in range(maps.shape[0]):
        axes[f + 1].imshow(maps[f], cmap="magma")
        axes[f + 1].set_title(f"map {f}", fontsize=12)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("a test digit and its six maps after conv 1 and ReLU", fontsize=13)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)


def make(out, epochs, lr, batch_size, seed):
    """Train and write the four figures into ``out``; prints the numbers they show."""
    model, history, (x_test, y_test), seconds = train(epochs, lr, batch_size, seed)
    model.eval()
    curves(history, out / "training_curves.png")
    right, wrong = predictions(model, x_test, y_test, out / "training_predictions.png")
    filters(model, out / "training_filters.png")
    feature_maps(model, x_test, out / "training_feature_maps.png")
    print(f"cycnn {cycnn.__version__}, {cycnn.build_info()['kernels']}, "
          f"{cycnn.get_num_threads()} threads, {seconds:.0f} s for {epochs} epochs")
    for e, (l, a, vl, va) in enumerate(zip(history["loss"], history["accuracy"],
                                           history["val_loss"], history["val_accuracy"])):
        print(f"epoch {e + 1}: loss {l:.4f} acc {100 * a:.2f}% | test loss {vl:.4f} "
              f"acc {100 * va:.2f}%")
    print(f"first 16 test digits: {right} right; {wrong} of {len(y_test)} test digits wrong")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--lr", type=float, default=CONFIG["lr"])
    ap.add_argument("--batch-size", type=int, default=CONFIG["batch_size"])
    ap.add_argument("--seed", type=int, default=CONFIG["seed"])
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for the kernels (default: cycnn's default, all cores)")
    args = ap.parse_args(argv)
    if args.threads:
        cycnn.set_num_threads(args.threads)
    make(HERE, args.epochs, args.lr, args.batch_size, args.seed)


if __name__ == "__main__":
    main()
