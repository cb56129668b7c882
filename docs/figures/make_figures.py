"""Make every figure of the docs site; the images are checked in beside this file.

    pip install -e ".[docs]" scikit-image    # scikit-image only for conv_filters.png
    python docs/figures/make_figures.py       # all figures (the training ones train for ~10 s)
    python docs/figures/make_figures.py gradcheck_error.png im2col.png   # some
    python docs/figures/make_figures.py --list

Each figure is a pair of functions: ``data()`` computes the numbers the figure shows (with
cycnn, where cycnn computes them) and ``draw(data, path)`` draws them. The script writes
``figures.json`` beside the images: for every figure, a hash of its inputs (the data,
rounded to 6 significant digits, its two functions and the shared drawing kit) and a hash
of the image written from them.
tests/test_figures.py recomputes the inputs' hash (cheap: no drawing) and fails when it no
longer matches (the numbers or the drawing code changed since the image was made: rerun
this script), when an image is missing, or when an image is not the one recorded. It never
compares pixels, so a different matplotlib version cannot make it fail.

Figures are drawn at twice their display size on a white background (in the dark palette
the site shows them on a light card), with text at least as large as the page's, and the
Okabe-Ito colours, which stay distinct for colour-blind readers.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

import numpy as np

import cycnn

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "figures.json"

#: Okabe-Ito colours
ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
WINDOW_COLOURS = [ORANGE, SKY, GREEN, PURPLE]
INK = "#1a1a1a"
RED_INK = "#c0392b"
DPI = 200  # twice the display size: images are shown at half their pixel width


# --------------------------------------------------------------------------- drawing kit

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 12,
        "xtick.labelsize": 12, "ytick.labelsize": 12, "figure.facecolor": "white",
        "axes.facecolor": "white", "savefig.facecolor": "white", "text.color": INK,
        "axes.edgecolor": INK, "axes.labelcolor": INK, "xtick.color": INK,
        "ytick.color": INK, "mathtext.fontset": "dejavusans",
    })
    return plt


def _tint(colour, alpha):
    import matplotlib.colors as mcolors

    r, g, b = mcolors.to_rgb(colour)
    return (1 - alpha + alpha * r, 1 - alpha + alpha * g, 1 - alpha + alpha * b)


def grid(ax, values, x0=0.0, y0=0.0, fill=None, text=None, size=13, bold=None, lw=1.2):
    """Draw a matrix as square cells, row 0 on top, its top-left corner at (x0, y0) in data
    units (y grows upwards). ``fill(r, c)`` gives a cell's colour, ``text(r, c, v)`` its
    label, ``bold(r, c)`` whether the label is bold."""
    import matplotlib.patches as mpatches

    values = np.asarray(values)
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            colour = fill(r, c) if fill else "white"
            ax.add_patch(mpatches.Rectangle((x0 + c, y0 - r - 1), 1, 1, facecolor=colour,
                                            edgecolor=INK, linewidth=lw))
            label = text(r, c, values[r, c]) if text else f"{values[r, c]:g}"
            if label:
                ax.text(x0 + c + 0.5, y0 - r - 0.5, label, ha="center", va="center",
                        fontsize=size, color=INK,
                        fontweight="bold" if bold and bold(r, c) else "normal")


def outline(ax, r0, c0, h, w, x0=0.0, y0=0.0, colour=INK, lw=3.5, inset=0.06):
    import matplotlib.patches as mpatches

    ax.add_patch(mpatches.Rectangle((x0 + c0 + inset, y0 - r0 - h + inset), w - 2 * inset,
                                    h - 2 * inset, fill=False, edgecolor=colour, linewidth=lw))


def canvas(plt, width, height, xlim, ylim):
    """A figure whose one axes shows exactly ``xlim`` x ``ylim`` in square units: the
    height follows from the width (``height`` is ignored; kept for readability)."""
    (x0, x1), (y0, y1) = xlim, ylim
    fig = plt.figure(figsize=(width, width * (y1 - y0) / (x1 - x0)))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")
    return fig, ax


# --------------------------------------------------------------------------- the figures
# The 3x3 input, 2x2 filter and dy of the convolution pages.

X3 = np.arange(1.0, 10.0).reshape(3, 3)
W2 = np.array([[1.0, 2.0], [3.0, 4.0]])
DY2 = np.array([[0.1, -0.2], [0.3, 0.4]])
CORNERS = [(0, 0), (0, 1), (1, 0), (1, 1)]


def sliding_window_data():
    y = cycnn.conv2d_forward(X3.reshape(1, 1, 3, 3), W2.reshape(1, 1, 2, 2), b=np.array([0.5]))
    return {"x": X3, "w": W2, "b": 0.5, "y": y[0, 0]}


def sliding_window_draw(d, path):
    plt = _plt()
    from matplotlib.animation import PillowWriter

    fig, ax = canvas(plt, 5.6, 2.9, (-0.6, 9.0), (-4.0, 0.9))
    writer = PillowWriter(fps=1)
    with writer.saving(fig, str(path), dpi=DPI):
        for step in range(5):
            ax.clear()
            ax.set_xlim(-0.6, 9.0)
            ax.set_ylim(-4.0, 0.9)
            ax.axis("off")
            k = min(step, 3)
            i, j = CORNERS[k]
            active = step < 4

            def fill_x(r, c, i=i, j=j, k=k, active=active):
                inside = i <= r < i + 2 and j <= c < j + 2
                return _tint(WINDOW_COLOURS[k], 0.55) if (inside and active) else "white"

            grid(ax, d["x"], 0, 0, fill=fill_x)
            if active:
                outline(ax, i, j, 2, 2, colour=WINDOW_COLOURS[k])
                ax.text(4.2, -3.55, f"y[{i}, {j}]: window times w, summed, plus b = 0.5",
                        ha="center", fontsize=13)
            ax.text(1.5, 0.35, "input x (3x3)", ha="center", fontsize=13)
            grid(ax, d["w"], 3.6, -0.5, fill=lambda r, c: "#eeeeee")
            ax.text(4.6, 0.35, "filter w", ha="center", fontsize=13)

            def fill_y(r, c, k=k):
                n = CORNERS.index((r, c))
                return _tint(WINDOW_COLOURS[n], 0.55) if n <= k else "white"

            grid(ax, d["y"], 6.2, -0.5, fill=fill_y,
                 text=lambda r, c, v, k=k: f"{v:g}" if CORNERS.index((r, c)) <= k else "")
            ax.text(7.2, 0.35, "output y", ha="center", fontsize=13)
            writer.grab_frame()
    plt.close(fig)


def channels_filters_data():
    return {"C": 3, "F": 2, "H": 4, "W": 4, "K": 3, "OH": 2, "OW": 2}


def channels_filters_draw(d, path):
    plt = _plt()
    import matplotlib.patches as mpatches

    fig, ax = canvas(plt, 7.2, 4.4, (-0.5, 15.2), (-9.9, 1.0))
    channel_colours = [VERMILLION, GREEN, BLUE]
    names = ["R", "G", "B"]

    def stack(x0, y0, n, size, colours, label, offset=0.55):
        for c in reversed(range(n)):
            ax.add_patch(mpatches.Rectangle((x0 + c * offset, y0 - size - c * offset), size,
                                            size, facecolor=_tint(colours[c], 0.35),
                                            edgecolor=INK, linewidth=1.2))
        ax.text(x0 + (size + (n - 1) * offset) / 2, y0 + 0.25, label, ha="center", fontsize=13)

    stack(0, -0.3, d["C"], 4, channel_colours, "x: C = 3 channels")
    for c in range(d["C"]):  # each channel's name on the part of it that shows
        ax.text(c * 0.55 + 4.0 - 0.05, -0.3 - 4.0 - c * 0.55 + 0.27, names[c], fontsize=11,
                ha="right", va="center")
    for f in range(d["F"]):
        y0 = -0.3 - f * 3.7
        stack(6.3, y0, d["C"], 2, channel_colours, f"filter w[{f}]: 3 slices", offset=0.45)
        ax.annotate("", xy=(11.0, y0 - 1.6), xytext=(9.4, y0 - 1.6),
                    arrowprops={"arrowstyle": "->", "lw": 2, "color": INK})
        ax.add_patch(mpatches.Rectangle((11.3, y0 - 2.6), 2, 2,
                                        facecolor=_tint([ORANGE, PURPLE][f], 0.5),
                                        edgecolor=INK, linewidth=1.2))
        ax.text(12.3, y0 - 1.6, f"y[{f}]", ha="center", va="center", fontsize=13)
    ax.text(12.3, -0.05, "y: F = 2 channels", ha="center", fontsize=13)
    ax.text(7.3, -8.3, "each filter correlates every channel with its own slice and adds them "
            "up:", ha="center", fontsize=12)
    ax.text(7.3, -9.2, r"$y[f] = b[f] + \sum_c \operatorname{corr}(x[c],\, w[f, c])$",
            ha="center", fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def weight_gradient_data():
    _, dw, _ = cycnn.conv2d_backward(DY2.reshape(1, 1, 2, 2), X3.reshape(1, 1, 3, 3),
                                     W2.reshape(1, 1, 2, 2))
    return {"x": X3, "dy": DY2, "dw": dw[0, 0]}


def weight_gradient_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.6, 3.6, (-0.6, 14.6), (-6.0, 1.2))
    for n, (i, j) in enumerate([(0, 0), (0, 1)]):
        x0 = n * 5.2
        colour = WINDOW_COLOURS[n]

        def fill(r, c, i=i, j=j, colour=colour):
            return _tint(colour, 0.5) if (i <= r < i + 2 and j <= c < j + 2) else "white"

        def label(r, c, v, i=i, j=j):
            if i <= r < i + 2 and j <= c < j + 2:
                return f"{v:g}\n×{d['dy'][r - i, c - j]:g}"
            return f"{v:g}"

        grid(ax, d["x"], x0, 0, fill=fill, text=label, size=12)
        outline(ax, i, j, 2, 2, x0=x0, colour=colour)
        products = [f"{d['dy'][p, q]:g}·{d['x'][i + p, j + q]:g}" for p in range(2)
                    for q in range(2)]
        ax.text(x0 + 1.5, 0.45, f"dw[{i}, {j}]: dy at ({i}, {j})", ha="center", fontsize=13)
        ax.text(x0 + 1.5, -3.7, " + ".join(products[:2]) + " +", ha="center", fontsize=12)
        ax.text(x0 + 1.5, -4.5, " + ".join(products[2:]), ha="center", fontsize=12)
        ax.text(x0 + 1.5, -5.5, f"= {d['dw'][i, j]:g}", ha="center", fontsize=14,
                fontweight="bold")
    grid(ax, d["dy"], 11.6, -0.5, fill=lambda r, c: "#eeeeee")
    ax.text(12.6, 0.45, "dy", ha="center", fontsize=13)
    ax.text(12.6, -3.5, "slid over x\nlike a filter", ha="center", va="top", fontsize=12)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def input_gradient_scatter_data():
    stamps = np.zeros((2, 2, 3, 3))
    for i, j in CORNERS:
        stamps[i, j, i:i + 2, j:j + 2] = DY2[i, j] * W2
    dx, _, _ = cycnn.conv2d_backward(DY2.reshape(1, 1, 2, 2), X3.reshape(1, 1, 3, 3),
                                     W2.reshape(1, 1, 2, 2))
    return {"w": W2, "dy": DY2, "stamps": stamps, "dx": dx[0, 0]}


def input_gradient_scatter_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.6, 3.3, (-0.3, 20.6), (-6.6, 2.2))
    names = {(0, 0): "w11", (0, 1): "w12", (1, 0): "w21", (1, 1): "w22"}
    for n, (i, j) in enumerate(CORNERS):
        x0 = n * 4.1
        colour = WINDOW_COLOURS[n]

        def fill(r, c, i=i, j=j, colour=colour):
            return _tint(colour, 0.5) if (i <= r < i + 2 and j <= c < j + 2) else "white"

        def label(r, c, v, i=i, j=j):
            if not (i <= r < i + 2 and j <= c < j + 2):
                return ""
            return f"{v:.1f}" if (r, c) != (1, 1) else names[r - i, c - j]

        grid(ax, d["stamps"][i, j], x0, 0, fill=fill, text=label, size=11,
             bold=lambda r, c: (r, c) == (1, 1))
        outline(ax, 1, 1, 1, 1, x0=x0, colour=INK, lw=2.0, inset=0.03)
        ax.text(x0 + 1.5, 0.45, f"dy[{i},{j}] = {d['dy'][i, j]:g}", ha="center", fontsize=12)
        ax.text(x0 + 1.5, 1.3, f"stamps {d['dy'][i, j]:g}·w", ha="center", fontsize=12)
        ax.text(x0 + 3.55, -1.5, "+" if n < 3 else "=", ha="center", va="center", fontsize=18)
    grid(ax, d["dx"], 16.6, 0, fill=lambda r, c: "#fff3c4" if (r, c) == (1, 1) else "white",
         text=lambda r, c, v: f"{v:.1f}", size=12)
    outline(ax, 1, 1, 1, 1, x0=16.6, colour=INK, lw=2.5)
    ax.text(18.1, 0.45, "dx", ha="center", fontsize=13)
    ax.text(10.3, -4.3, "the centre pixel receives w22, w21, w12, w11 as dy runs forward:",
            ha="center", fontsize=13)
    ax.text(10.3, -5.3, "the filter rotated by 180 degrees", ha="center", fontsize=13,
            fontweight="bold")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def stride_dilation_data():
    dy = np.array([[1.0, -1.0], [0.5, 2.0]])
    return {"H": 5, "K": 3, "s": 2, "dy": dy, "dy_dil": cycnn.dilate(dy, (2, 2))}


def stride_dilation_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.2, 3.9, (-0.6, 16.3), (-7.4, 1.2))
    H, K, s = d["H"], d["K"], d["s"]
    starts = [(i * s, j * s) for i in range(2) for j in range(2)]

    def fill(r, c):
        for n, (i, j) in enumerate(starts):
            if (r, c) == (i, j):
                return _tint(WINDOW_COLOURS[n], 0.7)
        return "white"

    grid(ax, np.zeros((H, H)), 0, 0, fill=fill, text=lambda r, c, v: "")
    for n, (i, j) in enumerate(starts):
        outline(ax, i, j, K, K, colour=WINDOW_COLOURS[n], lw=3, inset=0.08 + 0.07 * n)
    ax.text(2.5, 0.5, "input: 3x3 windows, stride 2", ha="center", fontsize=13)
    grid(ax, d["dy"], 6.6, -1.5, fill=lambda r, c: _tint(WINDOW_COLOURS[2 * r + c], 0.7))
    ax.text(7.6, 0.5, "dy (2x2)", ha="center", fontsize=13)
    ax.annotate("", xy=(10.3, -2.5), xytext=(9.0, -2.5),
                arrowprops={"arrowstyle": "->", "lw": 2, "color": INK})
    dil = d["dy_dil"]

    def fill_dil(r, c):
        if r % s == 0 and c % s == 0:
            return _tint(WINDOW_COLOURS[(r // s) * 2 + c // s], 0.7)
        return "white"

    grid(ax, dil, 10.8, -1.0, fill=fill_dil, text=lambda r, c, v: f"{v:g}")
    ax.text(12.3, 0.5, "dilated dy", ha="center", fontsize=13)
    ax.text(8.0, -6.0, "each dy entry goes where its window starts;", ha="center", fontsize=13)
    ax.text(8.0, -6.9, "the zeros stand for the windows the stride skipped", ha="center",
            fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


POOL_X = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
POOL_DY = np.array([[0.1, 0.2], [0.3, 0.4]])


def max_pool_routing_data():
    y, cache = cycnn.max_pool2d_forward(POOL_X.reshape(1, 1, 4, 4), size=2)
    dx = cycnn.max_pool2d_backward(POOL_DY.reshape(1, 1, 2, 2), cache)
    return {"x": POOL_X, "y": y[0, 0], "dy": POOL_DY, "dx": dx[0, 0],
            "winners": cache.mask()[0, 0].astype(int)}


def _pool_panels(plt, d, right, right_title, path, fmt_right, right_size=12):
    fig, ax = canvas(plt, 7.2, 3.1, (-0.6, 14.8), (-4.6, 1.2))

    def window_fill(r, c, strong=False):
        return _tint(WINDOW_COLOURS[(r // 2) * 2 + c // 2], 0.75 if strong else 0.35)

    win = d.get("winners")
    grid(ax, d["x"], 0, 0, fill=lambda r, c: window_fill(r, c, win is not None and win[r, c]),
         bold=(lambda r, c: bool(win[r, c])) if win is not None else None)
    ax.text(2, 0.5, "x" + (", winners in bold" if win is not None else " (4x4)"),
            ha="center", fontsize=13)
    grid(ax, d["dy"], 5.3, -1.0, fill=lambda r, c: _tint(WINDOW_COLOURS[2 * r + c], 0.75))
    ax.text(6.3, 0.5, "dy (2x2)", ha="center", fontsize=13)
    ax.annotate("", xy=(9.6, -2.0), xytext=(7.8, -2.0),
                arrowprops={"arrowstyle": "->", "lw": 2, "color": INK})
    grid(ax, right, 10.2, 0,
         fill=lambda r, c: window_fill(r, c, win is None or bool(win[r, c])),
         text=fmt_right, size=right_size,
         bold=(lambda r, c: bool(win[r, c])) if win is not None else None)
    ax.text(12.2, 0.5, right_title, ha="center", fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def max_pool_routing_draw(d, path):
    _pool_panels(_plt(), d, d["dx"], "dx: all to the winner", path,
                 lambda r, c, v: f"{v:g}")


def avg_pool_shares_data():
    _, cache = cycnn.avg_pool2d_forward(POOL_X.reshape(1, 1, 4, 4), size=2)
    dx = cycnn.avg_pool2d_backward(POOL_DY.reshape(1, 1, 2, 2), cache)
    return {"x": POOL_X, "dy": POOL_DY, "dx": dx[0, 0]}


def avg_pool_shares_draw(d, path):
    _pool_panels(_plt(), d, d["dx"], "dx: dy / 4 to each cell", path,
                 lambda r, c, v: f"{v:g}", right_size=10.5)


def softmax_gradient_data():
    z = np.array([2.0, 1.0, 0.1])
    t = np.array([1.0, 0.0, 0.0])
    p = cycnn.softmax(z)
    _, dz = cycnn.softmax_cross_entropy(z.reshape(1, 3), np.array([0]))
    return {"z": z, "t": t, "p": p, "dz": dz[0]}


def softmax_gradient_draw(d, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    k = np.arange(3)
    width = 0.26
    bars = [(d["p"], r"$\hat{y}$ = softmax(z)", SKY), (d["t"], "t (one-hot target)", ORANGE),
            (d["dz"], r"$dz = \hat{y} - t$", BLUE)]
    for n, (values, label, colour) in enumerate(bars):
        rects = ax.bar(k + (n - 1) * width, values, width, label=label, color=colour,
                       edgecolor=INK, linewidth=0.8)
        for rect, v in zip(rects, values):
            ax.text(rect.get_x() + rect.get_width() / 2, v + (0.03 if v >= 0 else -0.09),
                    f"{v:.3f}".rstrip("0").rstrip(".") if v else "0", ha="center", fontsize=11)
    ax.axhline(0, color=INK, linewidth=1)
    ax.set_xticks(k, [f"class {c}\nz = {z:g}" for c, z in enumerate(d["z"])])
    ax.set_ylim(-0.55, 1.15)
    ax.set_ylabel("value")
    ax.legend(loc="upper right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def gradcheck_error_data():
    eps = 10.0 ** -np.arange(1, 13, 0.5)

    def f(x):
        return x * x * x

    forward = np.abs((f(2 + eps) - f(2)) / eps - 12)
    central = np.abs((f(2 + eps) - f(2 - eps)) / (2 * eps) - 12)
    return {"eps": eps, "forward": forward, "central": central}


def gradcheck_error_draw(d, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    floor = 1e-13
    ax.loglog(d["eps"], np.maximum(d["forward"], floor), "o-", color=ORANGE,
              label="forward difference")
    ax.loglog(d["eps"], np.maximum(d["central"], floor), "s-", color=BLUE,
              label="central difference")
    ax.axvspan(1e-6, 1e-5, color=_tint(GREEN, 0.25), zorder=0)
    ax.text(3.2e-6, 2e-1, "sweet\nspot", ha="center", va="top", fontsize=12, color=INK)
    ax.invert_xaxis()
    ax.set_xlabel("step ε (smaller to the right)")
    ax.set_ylabel("error in the derivative")
    ax.set_title("derivative of x³ at x = 2, float64")
    ax.legend(frameon=False, loc="lower left")
    ax.grid(alpha=0.3, which="major")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def im2col_data():
    from numpy.lib.stride_tricks import sliding_window_view

    cols = sliding_window_view(X3, (2, 2)).reshape(4, 4).T
    y = W2.reshape(1, 4) @ cols
    return {"x": X3, "w": W2, "cols": cols, "y": y}


def im2col_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.6, 3.3, (-1.0, 18.0), (-6.0, 1.2))

    def fill_x(r, c):
        inside = [n for n, (i, j) in enumerate(CORNERS) if i <= r < i + 2 and j <= c < j + 2]
        return _tint(WINDOW_COLOURS[inside[0]], 0.25) if len(inside) == 1 else "#f3f3f3"

    grid(ax, d["x"], 0, -0.5, fill=fill_x)
    for n, (i, j) in enumerate(CORNERS):
        outline(ax, i, j, 2, 2, y0=-0.5, colour=WINDOW_COLOURS[n], lw=3, inset=0.07 + 0.06 * n)
    ax.text(1.5, 0.5, "x: four 2x2 windows", ha="center", fontsize=13)
    ax.annotate("", xy=(5.0, -2.0), xytext=(3.5, -2.0),
                arrowprops={"arrowstyle": "->", "lw": 2, "color": INK})
    grid(ax, d["cols"], 5.4, 0, fill=lambda r, c: _tint(WINDOW_COLOURS[c], 0.5))
    ax.text(7.4, 0.5, "cols: one window per column", ha="center", fontsize=13)
    grid(ax, d["w"].reshape(1, 4), 11.0, -1.5, fill=lambda r, c: "#eeeeee")
    ax.text(13.0, -0.9, "w as one row", ha="center", fontsize=13)
    ax.text(13.0, -3.2, "w · cols =", ha="center", fontsize=13)
    grid(ax, d["y"], 11.0, -3.6, fill=lambda r, c: _tint(WINDOW_COLOURS[c], 0.5))
    ax.text(13.0, -5.3, "y, one output per window", ha="center", fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def conv_matrix_data():
    C = np.zeros((4, 9))
    for k, (i, j) in enumerate(CORNERS):
        for p in range(2):
            for q in range(2):
                C[k, (i + p) * 3 + (j + q)] = W2[p, q]
    return {"C": C, "w": W2}


def conv_matrix_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.6, 3.8, (-2.6, 11.6), (-6.9, 1.3))
    names = {1.0: "w11", 2.0: "w12", 3.0: "w21", 4.0: "w22"}
    C = d["C"]
    grid(ax, C, 0, 0, fill=lambda r, c: _tint(WINDOW_COLOURS[r], 0.45) if C[r, c] else "white",
         text=lambda r, c, v: names.get(v, ""), size=11)
    outline(ax, 0, 4, 4, 1, colour=INK, lw=3)
    for c in range(9):
        ax.text(c + 0.5, 0.35, f"x{c // 3 + 1}{c % 3 + 1}", ha="center", fontsize=11)
    for r, (i, j) in enumerate(CORNERS):
        ax.text(-0.2, -r - 0.5, f"y{i + 1}{j + 1}", ha="right", va="center", fontsize=12)
    ax.text(4.5, -4.7, "C: row = an output's window;  y = C x", ha="center", fontsize=13)
    ax.text(4.5, -5.6, "column x22 (boxed), read downwards: w22, w21, w12, w11:", ha="center",
            fontsize=12)
    ax.text(4.5, -6.4, "dx = Cᵀ dy meets the rotated filter", ha="center", fontsize=12)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def lenet_shapes_data():
    model = cycnn.lenet5(seed=0, dtype=np.float64)
    shape = (1, 28, 28)
    rows = [("input image", "", shape)]
    for layer in model:
        shape = layer.output_shape(shape)
        rows.append((repr(layer), "", shape))
    return {"rows": [[name, note, list(s)] for name, note, s in rows]}


def lenet_shapes_draw(d, path):
    plt = _plt()
    import matplotlib.patches as mpatches

    rows = d["rows"] + [["loss (cross-entropy)", "", []]]
    n = len(rows)
    fig, ax = canvas(plt, 7.6, 0.56 * n + 0.9, (0, 15.2), (-n * 1.1 - 0.3, 1.4))
    ax.set_aspect("auto")
    ax.text(3.2, 0.7, "forward: y", ha="center", fontsize=14, fontweight="bold", color=BLUE)
    ax.text(7.6, 0.7, "layer", ha="center", fontsize=14, fontweight="bold")
    ax.text(12.0, 0.7, "backward: dy, same shape", ha="center", fontsize=14,
            fontweight="bold", color=VERMILLION)
    for k, (name, _note, shape) in enumerate(rows):
        y = -k * 1.1
        kind = name.split("(")[0]
        colour = {"Conv2D": ORANGE, "MaxPool2D": SKY, "ReLU": "#dddddd", "Flatten": YELLOW,
                  "Dense": GREEN}.get(kind, "#f0f0f0")
        ax.add_patch(mpatches.FancyBboxPatch((5.0, y - 0.38), 5.2, 0.76,
                                             boxstyle="round,pad=0.02,rounding_size=0.15",
                                             facecolor=_tint(colour, 0.6), edgecolor=INK))
        ax.text(7.6, y, name, ha="center", va="center", fontsize=12)
        label = "(N, " + ", ".join(map(str, shape)) + ")" if shape else "L, one number"
        ax.text(3.2, y, label, ha="center", va="center", fontsize=12, color=BLUE)
        back = label if shape else "starts: (ŷ − t) / N"
        if k == 0:
            back = "dx (not needed)"
        ax.text(12.0, y, back, ha="center", va="center", fontsize=12, color=VERMILLION)
        if k < n - 1:
            ax.annotate("", xy=(3.2, y - 0.72), xytext=(3.2, y - 0.36),
                        arrowprops={"arrowstyle": "->", "lw": 1.5, "color": BLUE})
            ax.annotate("", xy=(12.0, y - 0.36), xytext=(12.0, y - 0.72),
                        arrowprops={"arrowstyle": "->", "lw": 1.5, "color": VERMILLION})
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def conv_filters_data():
    # the photo is scikit-image's astronaut() (public domain, NASA); the data that drive
    # the figure are the two filters of docs/conv-forward.md and the photo's name
    w = np.zeros((2, 3, 3, 3))
    w[0, 0, 1, 1], w[0, 1, 1, 1], w[0, 2, 1, 1] = 0.3, 0.6, 0.1
    w[1, 2] = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    return {"w": w, "photo": "skimage.data.astronaut, every second pixel"}


def conv_filters_draw(d, path):
    plt = _plt()
    from skimage import data as skdata  # only this figure needs scikit-image

    photo = skdata.astronaut()[::2, ::2].astype(np.float64) / 255.0  # (256, 256, 3)
    x = photo.transpose(2, 0, 1)[None]
    y = cycnn.conv2d_forward(x, d["w"], padding=1)
    grey, edges = y[0, 0], y[0, 1]
    lim = np.percentile(np.abs(edges), 99)
    fig, axes = plt.subplots(1, 3, figsize=(7.6, 2.9))
    axes[0].imshow(photo)
    axes[0].set_title("x: astronaut, 3 channels", fontsize=12)
    axes[1].imshow(grey, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("filter 0: 0.3R + 0.6G + 0.1B", fontsize=12)
    axes[2].imshow(edges, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_title("filter 1: edges in blue", fontsize=12)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def padding_conventions_data():
    x = np.ones((1, 1, 3, 3))
    book = ((1, 1), (0, 1))                              # the tuple (2, 1) as totals
    per_side = cycnn.resolve_padding((2, 1))             # the tuple (2, 1) per side
    return {"x": x, "book": book, "per_side": per_side,
            "book_padded": cycnn.zero_pad(x, book)[0, 0],
            "cycnn_padded": cycnn.zero_pad(x, per_side)[0, 0]}


def padding_conventions_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.2, 3.6, (-0.6, 15.6), (-8.4, 1.6))
    panels = [(1.3, d["book_padded"], d["book"], "padding (2, 1) as totals",
               "(the book chapter)"),
              (7.8, d["cycnn_padded"], d["per_side"], "padding (2, 1) per side",
               "(cycnn, PyTorch)")]
    for x0, padded, ((pt, _pb), (pl, _pr)), title, who in panels:
        rows, cols = padded.shape

        def fill(r, c, pt=pt, pl=pl):
            inside = pt <= r < pt + 3 and pl <= c < pl + 3
            return _tint(BLUE, 0.45) if inside else "#f2f2f2"

        grid(ax, padded, x0, 0, fill=fill,
             text=lambda r, c, v: "x" if v else "0", size=12)
        ax.text(x0 + cols / 2, 1.05, title, ha="center", fontsize=13)
        ax.text(x0 + cols / 2, 0.35, who, ha="center", fontsize=12)
        sides = cycnn.resolve_padding(((pt, _pb), (pl, _pr)))
        ax.text(x0 + cols / 2, -rows - 0.7, f"((pt, pb), (pl, pr)) = {sides}", ha="center",
                fontsize=12)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --------------------------------------------------------------------------- training

def training_data():
    import make_training_figures as training

    digits = Path(cycnn.__file__).parent / "data"
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(digits.glob("*.npz"))}
    return {"config": training.CONFIG, "data_files": files,
            "script": inspect.getsource(training)}


def training_draw(d, paths):
    import make_training_figures as training

    training.make(HERE, **d["config"])


# The convolution family: dilation, groups, the transposed convolution.

def conv_dilation_data():
    w = np.arange(1.0, 10.0).reshape(3, 3)
    return {"w": w, "w_dilated": cycnn.dilate(w, (2, 2)), "H": 7}


def conv_dilation_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.2, 3.9, (-0.4, 15.4), (-8.6, 1.2))
    H = d["H"]
    for x0, kernel, title in ((0.0, d["w"], "dilation 1: spans 3x3"),
                              (8.0, d["w_dilated"], "dilation 2: spans 5x5")):
        K = kernel.shape[0]

        def fill(r, c, kernel=kernel, K=K):
            return _tint(BLUE, 0.55) if r < K and c < K and kernel[r, c] else "white"

        def text(r, c, v, kernel=kernel, K=K):
            return f"{kernel[r, c]:g}" if r < K and c < K and kernel[r, c] else ""

        grid(ax, np.zeros((H, H)), x0, 0, fill=fill, text=text)
        outline(ax, 0, 0, K, K, x0=x0, colour=ORANGE, lw=3.5)
        ax.text(x0 + H / 2, 0.45, title, ha="center", fontsize=13)
    ax.text(7.5, -8.2, "the same nine weights; each reads the input cell it covers",
            ha="center", fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def conv_groups_data():
    return {"C": 4, "F": 4, "groups": 2}


def conv_groups_draw(d, path):
    import matplotlib.patches as mpatches

    plt = _plt()
    fig, ax = canvas(plt, 7.2, 3.6, (-0.2, 9.4), (-1.3, 4.3))
    C, F, G = d["C"], d["F"], d["groups"]
    colours = [BLUE, VERMILLION]
    for k in range(C):
        g = k // (C // G)
        for x0, label in ((0.0, f"channel c={k}"), (7.0, f"filter f={k}")):
            ax.add_patch(mpatches.Rectangle((x0, 3 - k - 0.35), 2.2, 0.7,
                                            facecolor=_tint(colours[g], 0.35),
                                            edgecolor=colours[g], linewidth=2))
            ax.text(x0 + 1.1, 3 - k, label, ha="center", va="center", fontsize=13)
    for c in range(C):
        for f in range(F):
            if c // (C // G) == f // (F // G):
                ax.annotate("", xy=(7, 3 - f), xytext=(2.2, 3 - c),
                            arrowprops={"arrowstyle": "-|>", "lw": 2,
                                        "color": colours[c // (C // G)]})
    ax.text(4.6, 3.8, "group 0: filters 0, 1 read channels 0, 1", ha="center",
            fontsize=13, color=BLUE)
    ax.text(4.6, -0.95, "group 1: filters 2, 3 read channels 2, 3", ha="center",
            fontsize=13, color=VERMILLION)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def conv_transpose_scatter_data():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.ones((3, 3))
    y = cycnn.conv_transpose2d_forward(x.reshape(1, 1, 2, 2), w.reshape(1, 1, 3, 3), stride=2)
    return {"x": x, "w": w, "stride": 2, "y": y[0, 0]}


def conv_transpose_scatter_draw(d, path):
    plt = _plt()
    fig, ax = canvas(plt, 7.2, 3.9, (-0.4, 10.6), (-6.6, 1.4))
    s, K = d["stride"], d["w"].shape[0]
    grid(ax, d["x"], 0, -1.5, fill=lambda r, c: _tint(WINDOW_COLOURS[2 * r + c], 0.7),
         text=lambda r, c, v: f"x={v:g}")
    ax.text(1.0, 0.45, "x (2x2)", ha="center", fontsize=13)
    ax.annotate("", xy=(4.4, -2.5), xytext=(2.6, -2.5),
                arrowprops={"arrowstyle": "->", "lw": 2, "color": INK})
    y = d["y"]

    def owners(r, c):
        return [2 * i + j for i in range(2) for j in range(2)
                if 0 <= r - s * i < K and 0 <= c - s * j < K]

    def fill(r, c):
        own = owners(r, c)
        return _tint(WINDOW_COLOURS[own[0]], 0.7) if len(own) == 1 else _tint(INK, 0.18)

    grid(ax, y, 5.0, 0, fill=fill, bold=lambda r, c: len(owners(r, c)) > 1)
    for i in range(2):
        for j in range(2):
            outline(ax, s * i, s * j, K, K, x0=5.0, colour=WINDOW_COLOURS[2 * i + j], lw=3,
                    inset=0.08 + 0.07 * (2 * i + j))
    ax.text(7.5, 0.45, "y (5x5), stride 2", ha="center", fontsize=13)
    ax.text(1.0, -4.6, "each x adds x * w", ha="center", fontsize=13)
    ax.text(1.0, -5.4, "(w: 3x3 of ones)", ha="center", fontsize=13)
    ax.text(7.5, -6.1, "grey: copies overlap and add", ha="center", fontsize=13)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --------------------------------------------------------------------------- more layers

def batch_norm_backward_data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 1)) * 2 + 5            # one channel, M = 16 values
    w, b = np.array([1.5]), np.array([0.0])
    _y, cache = cycnn.batch_norm_forward(x, w, b, eps=0.0)
    xhat = cache.xhat.ravel()
    dxhat = 0.3 + 0.8 * xhat + 0.3 * rng.standard_normal(16)   # a trend in xhat, and the rest
    dx, _dw, _db = cycnn.batch_norm_backward((dxhat / w[0]).reshape(16, 1), cache)
    s = 1 / x.std()
    return {"xhat": xhat, "dxhat": dxhat, "mean": dxhat.mean(), "slope": (dxhat * xhat).mean(),
            "rest": dx.ravel() / s}


def batch_norm_backward_draw(d, path):
    plt = _plt()
    xhat, dxhat = d["xhat"], d["dxhat"]
    line = d["mean"] + d["slope"] * xhat
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 3.5), sharey=True)
    for k in range(len(xhat)):
        left.plot([xhat[k], xhat[k]], [line[k], dxhat[k]], color=VERMILLION, lw=1.5)
    span = np.array([xhat.min() - 0.2, xhat.max() + 0.2])
    left.plot(span, d["mean"] + d["slope"] * span, color=BLUE, lw=2.5,
              label=r"mean + slope $\cdot\,\hat{x}$")
    left.plot(xhat, dxhat, "o", color=INK, ms=6, label=r"$d\hat{x}$")
    left.set_title(r"$d\hat{x}$ of one channel")
    left.legend(loc="upper left", frameon=False)
    right.axhline(0, color=BLUE, lw=2.5)
    for k in range(len(xhat)):
        right.plot([xhat[k], xhat[k]], [0, d["rest"][k]], color=VERMILLION, lw=1.5)
    right.plot(xhat, d["rest"], "o", color=VERMILLION, ms=6)
    right.set_title(r"$dx\,/\,s$: what the line leaves")
    for ax in (left, right):
        ax.set_xlabel(r"$\hat{x}$")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# --------------------------------------------------------------------------- training recipes

def recipe_augmented_data():
    from cycnn.recipes import RECIPES, make_augment

    (x, y), _ = cycnn.datasets.load_digits()
    aug = make_augment(RECIPES["digits"])
    rng = np.random.default_rng(0)
    rows = [x[:8, 0]] + [aug(x[:8], rng)[:, 0] for _ in range(3)]
    return {"rows": np.stack(rows), "labels": y[:8]}


def recipe_augmented_draw(d, path):
    plt = _plt()
    rows = d["rows"]
    fig, axes = plt.subplots(len(rows), rows.shape[1], figsize=(7.6, 4.2))
    for r in range(len(rows)):
        for k in range(rows.shape[1]):
            ax = axes[r, k]
            ax.imshow(rows[r, k], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(str(int(d["labels"][k])))
        axes[r, 0].set_ylabel("original" if r == 0 else f"draw {r}", fontsize=12)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


#: name -> (data, draw, the images it writes)
FIGURES = {
    "sliding_window": (sliding_window_data, sliding_window_draw, ["sliding_window.gif"]),
    "channels_filters": (channels_filters_data, channels_filters_draw, ["channels_filters.png"]),
    "conv_filters": (conv_filters_data, conv_filters_draw, ["conv_filters.png"]),
    "weight_gradient": (weight_gradient_data, weight_gradient_draw, ["weight_gradient.png"]),
    "input_gradient_scatter": (input_gradient_scatter_data, input_gradient_scatter_draw,
                               ["input_gradient_scatter.png"]),
    "stride_dilation": (stride_dilation_data, stride_dilation_draw, ["stride_dilation.png"]),
    "im2col": (im2col_data, im2col_draw, ["im2col.png"]),
    "conv_matrix": (conv_matrix_data, conv_matrix_draw, ["conv_matrix.png"]),
    "conv_dilation": (conv_dilation_data, conv_dilation_draw, ["conv_dilation.png"]),
    "conv_groups": (conv_groups_data, conv_groups_draw, ["conv_groups.png"]),
    "conv_transpose_scatter": (conv_transpose_scatter_data, conv_transpose_scatter_draw,
                               ["conv_transpose_scatter.png"]),
    "max_pool_routing": (max_pool_routing_data, max_pool_routing_draw, ["max_pool_routing.png"]),
    "avg_pool_shares": (avg_pool_shares_data, avg_pool_shares_draw, ["avg_pool_shares.png"]),
    "softmax_gradient": (softmax_gradient_data, softmax_gradient_draw, ["softmax_gradient.png"]),
    "gradcheck_error": (gradcheck_error_data, gradcheck_error_draw, ["gradcheck_error.png"]),
    "lenet_shapes": (lenet_shapes_data, lenet_shapes_draw, ["lenet_shapes.png"]),
    "padding_conventions": (padding_conventions_data, padding_conventions_draw,
                            ["padding_conventions.png"]),
    "training": (training_data, training_draw,
                 ["training_curves.png", "training_predictions.png", "training_filters.png",
                  "training_feature_maps.png"]),
    "batch_norm_backward": (batch_norm_backward_data, batch_norm_backward_draw,
                            ["batch_norm_backward.png"]),
    "recipe_augmented": (recipe_augmented_data, recipe_augmented_draw, ["recipe_augmented.png"]),
}


# --------------------------------------------------------------------------- freshness

def _canonical(value):
    """Data as JSON-able values, floats rounded to 6 significant digits (-0.0 made 0.0),
    so that the hash does not move with the last bits of a sum on another CPU."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return {"shape": list(value.shape),
                    "values": [_digits(v) for v in value.ravel()]}
        return {"shape": list(value.shape), "values": value.ravel().tolist()}
    if isinstance(value, (float, np.floating)):
        return _digits(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


#: what every figure's look depends on besides its own two functions
KIT = (_plt, _tint, grid, outline, canvas, _pool_panels)


def _digits(v) -> float:
    return float(f"{float(v):.6g}") + 0.0


def inputs_hash(name: str, values: dict | None = None) -> str:
    """Hash of what figure ``name`` is made from: its data (``values``, by default
    computed now), the source of its ``data`` and ``draw`` functions, and the shared
    drawing kit (colours, sizes, helpers). Editing one figure's code makes only that
    figure stale; editing the kit makes all of them."""
    data, draw, images = FIGURES[name]
    values = data() if values is None else values
    kit = [inspect.getsource(f) for f in KIT]
    kit.append(repr((WINDOW_COLOURS, INK, RED_INK, DPI)))
    payload = json.dumps({"figure": name, "images": images, "data": _canonical(values),
                          "code": [inspect.getsource(data), inspect.getsource(draw)],
                          "kit": kit}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def image_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest() -> dict:
    if MANIFEST.is_file():
        return json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {}


def make(names, out: Path = HERE) -> None:
    manifest = load_manifest() if out == HERE else {}
    for name in names:
        data, draw, images = FIGURES[name]
        d = data()
        paths = [out / image for image in images]
        draw(d, paths[0] if len(paths) == 1 else paths)
        manifest[name] = {"inputs": inputs_hash(name),
                          "images": {p.name: image_hash(p) for p in paths}}
        for p in paths:
            print(f"wrote {p}")
    (out / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                     encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="figures to make, by name or image file (default: all)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="directory to write to (default: beside this script)")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_data, _draw, images) in FIGURES.items():
            print(f"{name}: {', '.join(images)}")
        return
    by_image = {image: name for name, (_d, _dr, images) in FIGURES.items() for image in images}
    names = []
    for n in args.names or FIGURES:
        name = by_image.get(n, n)
        if name not in FIGURES:
            parser.error(f"unknown figure {n!r}; --list shows them")
        if name not in names:
            names.append(name)
    args.out.mkdir(parents=True, exist_ok=True)
    make(names, args.out.resolve())


sys.path.insert(0, str(HERE))  # make_training_figures.py sits beside this script

if __name__ == "__main__":
    main()
