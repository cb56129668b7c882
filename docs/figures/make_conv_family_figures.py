"""Make the figures of docs/conv-dilation-groups.md and docs/conv-transpose.md.

    pip install matplotlib                                # in the docs extras already
    python docs/figures/make_conv_family_figures.py       # writes the three PNGs below

The PNGs are checked in beside this file; the docs build and the tests use them as
committed. Each is drawn at twice its display size, on an opaque white card (legible in
the site's light and dark themes), with text as large as the body text.

* ``conv_dilation.png``: the taps of one window of a 3x3 kernel, without dilation and
  with dilation 2: the same nine weights, spread over 5x5 inputs.
* ``conv_groups.png``: which input channels each filter reads with ``groups=2``; the
  gradient flows back along the same lines and no others.
* ``conv_transpose_scatter.png``: a 2x2 input scattering copies of a 3x3 filter onto a
  5x5 output with stride 2; where copies overlap, they add. The numbers are computed by
  ``cycnn.conv_transpose2d_forward``.
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
#: display width in CSS pixels of a figure on the page; the PNG has twice as many
WIDTH_PX = 760
DPI = 200
#: colours that keep their contrast against white and read as distinct hues
BLUE, ORANGE, GREEN, GREY = "#1f5fa8", "#c8561d", "#2e7d32", "#6b6b6b"
TEXT = 13  # points; at WIDTH_PX the figure's text is about the body text's size


def _figure(width_in, height_in):
    fig = plt.figure(figsize=(width_in, height_in), dpi=DPI, facecolor="white")
    return fig


def _save(fig, out):
    fig.savefig(out, dpi=DPI, facecolor="white")
    plt.close(fig)


def _grid(ax, rows, cols, fill, label=None, edge="#444444"):
    """A rows x cols grid of cells, row 0 at the top; fill(r, c) -> colour or None."""
    for r in range(rows):
        for c in range(cols):
            colour = fill(r, c)
            ax.add_patch(plt.Rectangle((c, rows - 1 - r), 1, 1,
                                       facecolor=colour or "white", edgecolor=edge,
                                       linewidth=1.0))
            text = label(r, c) if label else None
            if text:
                ax.text(c + 0.5, rows - 0.5 - r, text, ha="center", va="center",
                        fontsize=TEXT, color="white" if colour else "black")
    ax.set_xlim(-0.2, cols + 0.2)
    ax.set_ylim(-0.2, rows + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")


def conv_dilation(out: Path) -> None:
    fig = _figure(WIDTH_PX * 2 / DPI, 3.9)
    axes = fig.subplots(1, 2)
    for ax, rate in zip(axes, (1, 2)):
        taps = {(p * rate, q * rate): (p, q) for p in range(3) for q in range(3)}

        def fill(r, c, taps=taps):
            return BLUE if (r, c) in taps else None

        def label(r, c, taps=taps):
            return "{},{}".format(*taps[r, c]) if (r, c) in taps else None

        _grid(ax, 7, 7, fill, label)
        span = 2 * rate + 1
        ax.add_patch(plt.Rectangle((0, 7 - span), span, span, fill=False, edgecolor=ORANGE,
                                   linewidth=3))
        ax.set_title(f"dilation {rate}: the kernel spans {span}x{span}", fontsize=TEXT)
    fig.suptitle("One window of a 3x3 kernel on a 7x7 input: the cell marked p,q is read by "
                 "w[p, q]", fontsize=TEXT)
    fig.tight_layout()
    _save(fig, out)


def conv_groups(out: Path) -> None:
    fig = _figure(WIDTH_PX * 2 / DPI, 3.6)
    ax = fig.add_subplot()
    colours = [BLUE, ORANGE]
    for k in range(4):
        g = k // 2
        y = 3 - k
        ax.add_patch(plt.Rectangle((0, y - 0.35), 2.2, 0.7, facecolor=colours[g], alpha=0.9))
        ax.text(1.1, y, f"channel c={k}", ha="center", va="center", color="white",
                fontsize=TEXT)
        ax.add_patch(plt.Rectangle((7, y - 0.35), 2.2, 0.7, facecolor=colours[g], alpha=0.9))
        ax.text(8.1, y, f"filter f={k}", ha="center", va="center", color="white",
                fontsize=TEXT)
    for c in range(4):
        for f in range(4):
            if c // 2 == f // 2:
                ax.annotate("", xy=(7, 3 - f), xytext=(2.2, 3 - c),
                            arrowprops=dict(arrowstyle="-|>", color=colours[c // 2], lw=2))
    ax.text(4.6, 3.75, "group 0: w[0:2] is (2, 2, KH, KW)", ha="center", fontsize=TEXT,
            color=BLUE)
    ax.text(4.6, -0.85, "group 1: w[2:4] reads channels 2, 3 only", ha="center",
            fontsize=TEXT, color=ORANGE)
    ax.set_xlim(-0.2, 9.4)
    ax.set_ylim(-1.2, 4.1)
    ax.axis("off")
    ax.set_title("groups=2, C=4, F=4: every arrow is a path; the backward pass uses no other",
                 fontsize=TEXT)
    fig.tight_layout()
    _save(fig, out)


def conv_transpose_scatter(out: Path) -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.ones((3, 3))
    y = cycnn.conv_transpose2d_forward(x[None, None], w[None, None], stride=2)[0, 0]  # 5x5
    colours = {(0, 0): BLUE, (0, 1): ORANGE, (1, 0): GREEN, (1, 1): GREY}
    fig = _figure(WIDTH_PX * 2 / DPI, 4.0)
    ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 5]})
    _grid(ax_in, 2, 2, lambda r, c: colours[r, c], lambda r, c: f"x={x[r, c]:g}")
    ax_in.set_title("input x (2x2)", fontsize=TEXT)

    def owners(r, c):
        return [(i, j) for i in range(2) for j in range(2)
                if 0 <= r - 2 * i < 3 and 0 <= c - 2 * j < 3]

    def fill(r, c):
        own = owners(r, c)
        return colours[own[0]] if len(own) == 1 else "#8e44ad"

    _grid(ax_out, 5, 5, fill, lambda r, c: f"{y[r, c]:g}")
    ax_out.set_title("y (5x5): each x adds x * w (w = ones, 3x3) at (2i, 2j);\n"
                     "purple cells are in two or four copies: the copies add",
                     fontsize=TEXT)
    fig.tight_layout()
    _save(fig, out)


FIGURES = {"conv_dilation": conv_dilation, "conv_groups": conv_groups,
           "conv_transpose_scatter": conv_transpose_scatter}


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
