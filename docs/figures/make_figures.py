"""Make the docs figures that do not need training; the PNGs are checked in beside this file.

    pip install scikit-image matplotlib      # scikit-image only for this script
    python docs/figures/make_figures.py       # writes conv_filters.png and max_pool_routing.png

The docs build and the tests do not run this script and do not need scikit-image: they use
the PNGs as committed. Rerun it after changing a figure and commit the new PNGs.

* ``conv_filters.png``: the two hand-made filters of docs/conv-forward.md (grey and
  horizontal edges of the blue channel) applied with ``cycnn.conv2d_forward`` to
  scikit-image's ``astronaut()`` photo (public domain, from NASA).
* ``max_pool_routing.png``: the 4x4 max-pooling example of docs/pooling.md; colours
  match each output to its window and show where its gradient goes on the backward pass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cycnn  # noqa: E402

HERE = Path(__file__).resolve().parent


def hand_made_filters():
    """The two 3x3 filters of docs/conv-forward.md, shape (F=2, C=3, KH=3, KW=3)."""
    w = np.zeros((2, 3, 3, 3))
    w[0, 0, 1, 1], w[0, 1, 1, 1], w[0, 2, 1, 1] = 0.3, 0.6, 0.1
    w[1, 2] = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    return w


def conv_filters(out: Path) -> None:
    from skimage import data  # only this figure needs scikit-image

    photo = data.astronaut().astype(np.float64) / 255.0  # (H, W, 3) in [0, 1]
    x = photo.transpose(2, 0, 1)[None]  # (N=1, C=3, H, W)
    y = cycnn.conv2d_forward(x, hand_made_filters(), padding=1)  # (1, 2, H, W)
    grey, edges = y[0, 0], y[0, 1]
    lim = np.percentile(np.abs(edges), 99)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), dpi=90)
    axes[0].imshow(photo)
    axes[0].set_title("input x: astronaut(), 3 channels")
    axes[1].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("y[0, 0]: filter 0 (0.3 R + 0.6 G + 0.1 B)")
    im = axes[2].imshow(edges, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_title("y[0, 1]: filter 1 (horizontal edges, blue)")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def max_pool_routing(out: Path) -> None:
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    dy = np.array([[0.1, 0.2], [0.3, 0.4]])
    # the winner of each 2x2 window (first maximum in row-major order)
    dx = np.zeros_like(x)
    winners = {}
    for i in range(2):
        for j in range(2):
            window = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            p, q = np.unravel_index(np.argmax(window), window.shape)
            winners[i, j] = (2 * i + p, 2 * j + q)
            dx[winners[i, j]] = dy[i, j]

    colours = {(0, 0): "#e45756", (0, 1): "#54a24b", (1, 0): "#eeca3b", (1, 1): "#4c78a8"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), dpi=90,
                             gridspec_kw={"width_ratios": [4, 2.4, 4]})

    def grid(ax, values, title, shade, fmt):
        rows, cols = values.shape
        for r in range(rows):
            for c in range(cols):
                ax.add_patch(plt.Rectangle((c, rows - 1 - r), 1, 1, facecolor=shade(r, c),
                                           edgecolor="black", linewidth=1))
                ax.text(c + 0.5, rows - 0.5 - r, fmt(r, c, values[r, c]), ha="center",
                        va="center", fontsize=15)
        ax.set_xlim(-0.1, cols + 0.1)
        ax.set_ylim(-0.1, rows + 0.1)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title, fontsize=12)

    def window_colour(r, c, light=True):
        colour = colours[r // 2, c // 2]
        return matplotlib.colors.to_rgba(colour, 0.35 if light else 0.9)

    grid(axes[0], x, "forward input x (4x4)\nwinners in bold",
         lambda r, c: window_colour(r, c, (r, c) not in winners.values()),
         lambda r, c, v: f"{v:g}")
    grid(axes[1], dy, "dy at the outputs\n(maxima 6, 8, 3, 4)",
         lambda r, c: matplotlib.colors.to_rgba(colours[r, c], 0.9),
         lambda r, c, v: f"{v:g}")
    grid(axes[2], dx, "dx: each dy goes to its winner,\nzero elsewhere",
         lambda r, c: window_colour(r, c, (r, c) not in winners.values()),
         lambda r, c, v: f"{v:g}")
    for (i, j), (r, c) in winners.items():
        axes[0].texts[4 * r + c].set_fontweight("bold")
        axes[2].texts[4 * r + c].set_fontweight("bold")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


FIGURES = {"conv_filters": conv_filters, "max_pool_routing": max_pool_routing}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"figures to make, among {', '.join(FIGURES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    for name in args.names or FIGURES:
        path = HERE / f"{name}.png"
        FIGURES[name](path)
        print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
