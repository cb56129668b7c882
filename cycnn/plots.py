"""Figures for the command line: training curves and the confusion matrix (matplotlib).

matplotlib is optional (``pip install 'cycnn[plot]'``): :func:`require_matplotlib` says
so clearly before any work is done, and the figures are drawn with the file-only Agg
backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["require_matplotlib", "plot_history", "plot_confusion"]


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or ImportError with the install hint."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'cycnn[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history, path, title=""):
    """Loss (log scale) and accuracy per epoch, training and, when present, test.

    ``history`` maps ``loss``, ``accuracy`` and optionally ``val_loss`` and
    ``val_accuracy`` to per-epoch lists (a :class:`cycnn.training.History`).
    """
    plt = require_matplotlib()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    ax1.plot(epochs, history["loss"], "o-", label="training")
    ax2.plot(epochs, 100 * np.asarray(history["accuracy"]), "o-", label="training")
    if history.get("val_loss"):
        ax1.plot(epochs, history["val_loss"], "s-", label="test")
        ax2.plot(epochs, 100 * np.asarray(history["val_accuracy"]), "s-", label="test")
    ax1.set_yscale("log")
    ax1.set(xlabel="epoch", ylabel="loss (cross-entropy)", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(Path(path), dpi=150)
    plt.close(fig)


def plot_confusion(matrix, class_names, path, title=""):
    """The confusion matrix as a heat map with its counts written in."""
    plt = require_matplotlib()
    m = np.asarray(matrix)
    k = m.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.6 + 0.5 * k), constrained_layout=True)
    # colour by the fraction of the row, so small classes are as visible as large ones
    rows = np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(m / rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] / rows[i, 0] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0,
                  ha="right" if max(map(len, class_names)) > 2 else "center")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    fig.savefig(Path(path), dpi=150)
    plt.close(fig)
