"""Shapes, padding and the array surgery of the backward pass: no compiled kernel here.

Everything a convolution or pooling layer needs to know before it touches a number lives
in this module: the output size (written once, in :func:`conv_output_size`), how a
padding argument is read (:func:`resolve_padding`), and the checks of every argument.
The helpers the derivations use, :func:`zero_pad`, :func:`dilate` and
:func:`rotate180`, and the non-zero padding modes with their backward fold
(:func:`pad_input`, :func:`fold_padding`) are here too. The compiled routes (:mod:`cycnn.conv`,
:mod:`cycnn.pool`) and the NumPy reference (:mod:`cycnn.reference`) both build on it,
and it imports nothing but NumPy and the argument checks, so the reference stays
independent of the kernels it is compared with.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ._validate import as_array, as_choice, as_int, as_pair, check_ndim, check_size

__all__ = ["conv_output_size", "conv_transpose_output_size", "resolve_padding", "zero_pad",
           "dilate", "rotate180", "pad_input", "fold_padding"]

#: the padding modes of a convolution, with PyTorch's names (``Conv2d.padding_mode``)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def conv_output_size(n, k, stride=1, pad=0, dilation=1, ceil_mode=False):
    """Size of a convolution's (or pooling window's) output along one axis.

    Parameters
    ----------
    n : int
        Input size along the axis (H or W), at least 1.
    k : int
        Kernel size along the axis (KH or KW), at least 1.
    stride : int, default 1
        Step between windows, at least 1.
    pad : int or (int, int), default 0
        Padding added on each side, or ``(before, after)``; each at least 0.
    dilation : int, default 1
        Step between the taps of one window, at least 1: a window then spans
        ``dilation * (k - 1) + 1`` input positions.
    ceil_mode : bool, default False
        Pooling's ``ceil_mode``: also keep a last, partial window that runs past the end
        of the padded input, provided it starts inside the input or the padding before it
        (PyTorch's rule; a window that would start in the padding after the input is
        dropped). Such a window may then be larger than the padded input itself.

    Returns
    -------
    int
        ``(n + before + after - span) // stride + 1`` with ``span = dilation * (k - 1) + 1``
        (the division rounded up under ``ceil_mode``). With ``dilation=1`` and equal
        padding P on both sides this is the familiar ``(W1 - F + 2P) / S + 1``.

    Raises
    ------
    ValueError
        If the window spans more than the padded input, or a size is out of range.

    Examples
    --------
    >>> conv_output_size(32, 5)
    28
    >>> conv_output_size(28, 5, stride=2, pad=2)
    14
    >>> conv_output_size(7, 3, dilation=2)
    3
    >>> conv_output_size(6, 3, stride=2), conv_output_size(6, 3, stride=2, ceil_mode=True)
    (2, 3)
    """
    func = "conv_output_size"
    n = as_int(func, "n", n, 1)
    k = as_int(func, "k", k, 1)
    stride = as_int(func, "stride", stride, 1)
    dilation = as_int(func, "dilation", dilation, 1)
    before, after = as_pair(func, "pad", pad, 0)
    span = dilation * (k - 1) + 1
    room = n + before + after - span  # how far the window can move
    if not ceil_mode:
        out = room // stride + 1
    else:  # room / stride rounded up: a partial last window (it may hang past the end)
        out = (room + stride - 1) // stride + 1
        if out >= 1 and (out - 1) * stride >= n + before:  # it would start after the input
            out -= 1
    if out < 1:
        what = f"kernel size k={k}" if dilation == 1 else \
            f"dilated kernel span dilation * (k - 1) + 1 = {dilation} * {k - 1} + 1 = {span}"
        raise ValueError(
            f"{func}: {what} is larger than the padded input "
            f"n + pad = {n} + {before} + {after} = {n + before + after}"
        )
    return out


def conv_transpose_output_size(n, k, stride=1, pad=0, dilation=1, output_padding=0):
    """Size of a transposed convolution's output along one axis.

    A transposed convolution scatters every input element onto a window of the output,
    so its output is the input size a convolution with the same ``k``, ``stride``,
    ``pad`` and ``dilation`` would need to give ``n`` outputs (the
    :func:`conv_output_size` formula turned round), plus ``output_padding`` extra rows
    or columns at the end, which pick the size when several inputs give ``n``.

    Parameters
    ----------
    n : int
        Input size along the axis, at least 1.
    k, stride, dilation : int
        As for :func:`conv_output_size`, each at least 1.
    pad : int or (int, int), default 0
        Rows or columns cropped from each side of the full scatter, or ``(before, after)``.
    output_padding : int, default 0
        At least 0; smaller than ``stride`` or than ``dilation`` (PyTorch's rule).

    Returns
    -------
    int
        ``(n - 1) * stride - before - after + dilation * (k - 1) + 1 + output_padding``.

    Raises
    ------
    ValueError
        ``output_padding`` too large, a result below 1, or a size out of range.

    Examples
    --------
    >>> conv_transpose_output_size(3, 3, stride=2, pad=1)
    5
    >>> conv_output_size(5, 3, stride=2, pad=1)
    3
    >>> conv_transpose_output_size(3, 3, stride=2, pad=1, output_padding=1)
    6
    """
    func = "conv_transpose_output_size"
    n = as_int(func, "n", n, 1)
    k = as_int(func, "k", k, 1)
    stride = as_int(func, "stride", stride, 1)
    dilation = as_int(func, "dilation", dilation, 1)
    before, after = as_pair(func, "pad", pad, 0)
    op = as_int(func, "output_padding", output_padding, 0)
    if op >= stride and op >= dilation:
        raise ValueError(
            f"{func}: output_padding={op} must be smaller than stride={stride} or "
            f"dilation={dilation} (PyTorch's rule: otherwise the extra rows would not change "
            "which inputs the windows read)"
        )
    out = (n - 1) * stride - before - after + dilation * (k - 1) + 1 + op
    if out < 1:
        raise ValueError(
            f"{func}: the output would have {out} rows/columns: (n - 1) * stride - pad + "
            f"dilation * (k - 1) + 1 + output_padding = ({n} - 1) * {stride} - {before} - "
            f"{after} + {dilation} * ({k} - 1) + 1 + {op}; use less padding"
        )
    return out


def resolve_padding(padding, kernel_size=None, stride=1, func="resolve_padding", dilation=1):
    """Turn any accepted padding argument into ``((pt, pb), (pl, pr))``.

    Parameters
    ----------
    padding : int, (int, int), ((int, int), (int, int)), 'valid' or 'same'
        ``p``: p zeros on every side. ``(ph, pw)``: ph above and below, pw left and right
        (PyTorch's meaning). ``((pt, pb), (pl, pr))``: every side explicitly.
        ``'valid'``: no padding. ``'same'``: the output keeps the input's H x W; this needs
        stride 1, and when the total padding ``dilation * (K - 1)`` is odd (an even kernel,
        undilated) the extra row goes to the bottom and the extra column to the right, as
        in PyTorch.
    kernel_size : (int, int), optional
        ``(KH, KW)``; needed for ``'same'``.
    stride : int or (int, int), default 1
        Needed to refuse ``'same'`` with a stride above 1.
    func : str, optional
        Name used in error messages.
    dilation : int or (int, int), default 1
        The kernel's dilation ``(rh, rw)``; ``'same'`` pads ``rh * (KH - 1)`` rows in all.

    Returns
    -------
    ((int, int), (int, int))
        ``((pt, pb), (pl, pr))``.

    Raises
    ------
    ValueError
        An unknown string, negative or wrongly nested numbers, or ``'same'`` with a
        stride above 1.
    TypeError
        Non-integer numbers, or ``'same'`` without ``kernel_size``.

    Examples
    --------
    >>> resolve_padding(1)
    ((1, 1), (1, 1))
    >>> resolve_padding("same", kernel_size=(4, 3))
    ((1, 2), (1, 1))
    >>> resolve_padding("same", kernel_size=(2, 3), dilation=3)
    ((1, 2), (3, 3))
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            sh, sw = as_pair(func, "stride", stride, 1)
            if (sh, sw) != (1, 1):
                raise ValueError(
                    f"{func}: padding='same' needs stride 1, got stride=({sh}, {sw}): with "
                    "a larger stride the padding that keeps H x W depends on the input size "
                    "((sh - 1) * H + KH - sh rows and (sw - 1) * W + KW - sw columns in "
                    "all), so it cannot be read from the layer alone (PyTorch refuses it "
                    "too). Pass that padding explicitly."
                )
            if kernel_size is None:
                raise TypeError(
                    f"{func}: padding='same' depends on the kernel: pass kernel_size=(KH, KW)"
                )
            kh, kw = as_pair(func, "kernel_size", kernel_size, 1)
            rh, rw = as_pair(func, "dilation", dilation, 1)
            th, tw = rh * (kh - 1), rw * (kw - 1)
            return ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        raise ValueError(
            f"{func}: unknown padding {padding!r}; use 'valid', 'same', an int, "
            "(ph, pw) or ((top, bottom), (left, right))"
        )
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
        isinstance(side, (tuple, list)) for side in padding
    ):
        (pt, pb), (pl, pr) = (as_pair(func, "padding", side, 0) for side in padding)
        return ((pt, pb), (pl, pr))
    try:
        ph, pw = as_pair(func, "padding", padding, 0)
    except ValueError as err:
        raise ValueError(
            f"{err}; padding must be 'valid', 'same', an int, (ph, pw) or "
            "((top, bottom), (left, right)) of non-negative ints"
        ) from None
    return ((ph, ph), (pw, pw))


def zero_pad(x, pad):
    """Surround the last two axes of ``x`` with zeros.

    Parameters
    ----------
    x : array_like, shape (..., H, W)
        At least 2-D.
    pad : int, (int, int) or ((int, int), (int, int))
        As for ``padding`` in :func:`conv2d_forward` (strings excluded).

    Returns
    -------
    ndarray, shape (..., H + pt + pb, W + pl + pr)
        Same dtype as ``x``.

    Raises
    ------
    ValueError
        ``x`` below 2-D, or a bad ``pad``.
    MemoryError
        A padded array too large for this machine.

    Examples
    --------
    >>> zero_pad(np.ones((1, 2)), 1)
    array([[0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 0., 0., 0.]])
    """
    func = "zero_pad"
    x = as_array(func, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{func}: x must be at least 2-D, got shape {x.shape}")
    if isinstance(pad, str):
        raise ValueError(f"{func}: pad must be an int or a tuple of ints, got {pad!r}")
    (pt, pb), (pl, pr) = resolve_padding(pad, func=func)
    shape = x.shape[:-2] + (x.shape[-2] + pt + pb, x.shape[-1] + pl + pr)
    check_size(func, "the padded x", shape, x.dtype)
    out = np.zeros(shape, x.dtype)
    out[..., pt:pt + x.shape[-2], pl:pl + x.shape[-1]] = x
    return out


def dilate(x, rate):
    """Insert ``rate - 1`` zeros between neighbouring elements of the last two axes.

    This is how a strided convolution's output gradient is spread back onto the grid of
    positions its windows started from.

    Parameters
    ----------
    x : array_like, shape (..., H, W)
    rate : int or (int, int)
        ``(sh, sw)``, each at least 1; 1 leaves the axis unchanged.

    Returns
    -------
    ndarray, shape (..., (H - 1) * sh + 1, (W - 1) * sw + 1)
        Same dtype as ``x``.

    Raises
    ------
    ValueError
        ``x`` below 2-D or empty, or a rate below 1.

    Examples
    --------
    >>> dilate(np.array([[1, 2], [3, 4]]), (2, 3))
    array([[1, 0, 0, 2],
           [0, 0, 0, 0],
           [3, 0, 0, 4]])
    """
    func = "dilate"
    x = as_array(func, "x", x)
    if x.ndim < 2 or x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{func}: x must be at least 2-D and non-empty, got shape {x.shape}")
    sh, sw = as_pair(func, "rate", rate, 1)
    h, w = x.shape[-2:]
    shape = x.shape[:-2] + ((h - 1) * sh + 1, (w - 1) * sw + 1)
    check_size(func, "the dilated x", shape, x.dtype)
    out = np.zeros(shape, x.dtype)
    out[..., ::sh, ::sw] = x
    return out


def rotate180(w):
    """Rotate the last two axes by 180 degrees (flip rows and columns).

    Parameters
    ----------
    w : array_like, shape (..., KH, KW)

    Returns
    -------
    ndarray, shape (..., KH, KW)
        A new array: ``w[..., ::-1, ::-1]``.

    Raises
    ------
    ValueError
        ``w`` below 2-D.

    Examples
    --------
    >>> rotate180(np.arange(1, 10).reshape(3, 3))
    array([[9, 8, 7],
           [6, 5, 4],
           [3, 2, 1]])
    """
    w = as_array("rotate180", "w", w)
    if w.ndim < 2:
        raise ValueError(f"rotate180: w must be at least 2-D, got shape {w.shape}")
    return w[..., ::-1, ::-1].copy()


def pad_index(n, before, after, mode):
    """For each position of a padded axis, the input position it holds (-1 for a zero).

    Position ``t`` of the padded axis (``0 <= t < before + n + after``) sits at input
    position ``u = t - before``; inside the input it holds ``u`` itself, outside:

    * ``'zeros'``: nothing (-1);
    * ``'reflect'``: the mirror image of ``u`` about the edge, the edge itself not
      repeated: ``-u`` before the input, ``2 (n - 1) - u`` after it;
    * ``'replicate'``: the nearest edge, ``0`` or ``n - 1``;
    * ``'circular'``: ``u mod n``, as if the input repeated.

    ``before`` and ``after`` must be below ``n`` for ``'reflect'`` and at most ``n`` for
    ``'circular'`` (PyTorch's limits); :func:`pad_input` checks them.
    """
    u = np.arange(-before, n + after)
    if mode == "zeros":
        return np.where((u >= 0) & (u < n), u, -1)
    if mode == "reflect":
        return (n - 1) - np.abs((n - 1) - np.abs(u))
    if mode == "replicate":
        return np.clip(u, 0, n - 1)
    return u % n  # circular


def _check_padding_mode(func, mode, pads, size):
    """``mode`` as one of PADDING_MODES, with the padding within PyTorch's limits for it."""
    mode = as_choice(func, "padding_mode", mode, PADDING_MODES)
    limit = {"reflect": ("smaller than", 1), "circular": ("at most", 0)}.get(mode)
    if limit is not None:
        words, less = limit
        for (a, b), n, axis in zip(pads, size, "HW"):
            if max(a, b) > n - less:
                raise ValueError(
                    f"{func}: padding_mode={mode!r} needs padding {words} the input size "
                    f"along each axis; got padding {(a, b)} for {axis}={n} "
                    f"(padding={pads}, input {size[0]}x{size[1]})"
                )
    return mode


def pad_input(x, pads, mode="zeros"):
    """Pad the last two axes of ``x`` the way a convolution's ``padding_mode`` says.

    Parameters
    ----------
    x : array_like, shape (..., H, W)
        At least 2-D.
    pads : int, (int, int) or ((int, int), (int, int))
        As for ``padding`` in :func:`conv2d_forward` (strings excluded).
    mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        What the border holds (PyTorch's ``padding_mode``): zeros, the input mirrored
        about its edge (the edge not repeated), the edge repeated, or the input wrapped
        round from the other side. See :func:`cycnn.geometry.pad_index`.

    Returns
    -------
    ndarray, shape (..., H + pt + pb, W + pl + pr)
        A new array of ``x``'s dtype: every padded position a copy of one input element
        (or a zero).

    Raises
    ------
    ValueError
        ``x`` below 2-D, a bad ``pads``, an unknown ``mode``, or padding beyond the mode's
        limit (``'reflect'``: smaller than the input size; ``'circular'``: at most it).

    Examples
    --------
    >>> pad_input(np.array([[1, 2, 3]]), ((0, 0), (2, 2)), "reflect")
    array([[3, 2, 1, 2, 3, 2, 1]])
    >>> pad_input(np.array([[1, 2, 3]]), ((0, 0), (2, 2)), "circular")
    array([[2, 3, 1, 2, 3, 1, 2]])
    """
    func = "pad_input"
    x = as_array(func, "x", x)
    if x.ndim < 2:
        raise ValueError(f"{func}: x must be at least 2-D, got shape {x.shape}")
    if isinstance(pads, str):
        raise ValueError(f"{func}: pads must be an int or a tuple of ints, got {pads!r}")
    pads = resolve_padding(pads, func=func)
    mode = _check_padding_mode(func, mode, pads, x.shape[-2:])
    if mode == "zeros":
        return zero_pad(x, pads)
    (pt, pb), (pl, pr) = pads
    shape = x.shape[:-2] + (x.shape[-2] + pt + pb, x.shape[-1] + pl + pr)
    check_size(func, "the padded x", shape, x.dtype)
    rows = pad_index(x.shape[-2], pt, pb, mode)
    cols = pad_index(x.shape[-1], pl, pr, mode)
    return np.ascontiguousarray(x[..., rows[:, None], cols[None, :]])


def fold_padding(dxp, pads, mode="zeros"):
    """The backward pass of :func:`pad_input`: the gradient of ``x`` from that of ``xp``.

    Every padded position is a copy of one input element, so by the chain rule each input
    element collects the gradient of every copy of itself:
    ``dx[..., h, w] = sum of dxp[..., t, s] over the positions (t, s) holding (h, w)``.
    The positions inside hold themselves; the border rows and columns are added back onto
    the rows and columns they copied (for ``'zeros'`` they copied nothing, and the fold is
    a crop). Rows are folded first, then columns, since the padding acts on each axis on
    its own.

    Parameters
    ----------
    dxp : array_like, shape (..., H + pt + pb, W + pl + pr)
        Gradient with respect to the padded array.
    pads, mode
        Exactly as given to :func:`pad_input`.

    Returns
    -------
    dx : ndarray, shape (..., H, W)
        A new array of ``dxp``'s dtype.

    Raises
    ------
    ValueError
        ``dxp`` below 2-D or smaller than the padding, a bad ``pads`` or ``mode``.

    Examples
    --------
    >>> fold_padding(np.array([[10, 20, 1, 2, 3, 30, 40]]), ((0, 0), (2, 2)), "reflect")
    array([[41, 52, 13]])
    """
    func = "fold_padding"
    dxp = as_array(func, "dxp", dxp)
    if isinstance(pads, str):
        raise ValueError(f"{func}: pads must be an int or a tuple of ints, got {pads!r}")
    (pt, pb), (pl, pr) = pads = resolve_padding(pads, func=func)
    if dxp.ndim < 2 or dxp.shape[-2] <= pt + pb or dxp.shape[-1] <= pl + pr:
        raise ValueError(f"{func}: dxp must be at least 2-D and larger than the padding "
                         f"{pads}, got shape {dxp.shape}")
    size = (dxp.shape[-2] - pt - pb, dxp.shape[-1] - pl - pr)
    mode = _check_padding_mode(func, mode, pads, size)
    if mode == "zeros":  # the border held constants: its gradient goes nowhere
        return dxp[..., pt:pt + size[0], pl:pl + size[1]].copy()
    rows = pad_index(size[0], pt, pb, mode)
    cols = pad_index(size[1], pl, pr, mode)
    # along H: the middle rows hold themselves; add each border row onto the row it copied
    dxr = dxp[..., pt:pt + size[0], :].copy()
    for t in [*range(pt), *range(pt + size[0], len(rows))]:
        if rows[t] >= 0:
            dxr[..., rows[t], :] += dxp[..., t, :]
    # then along W, the same on the row-folded array
    dx = dxr[..., pl:pl + size[1]].copy()
    for s in [*range(pl), *range(pl + size[1], len(cols))]:
        if cols[s] >= 0:
            dx[..., cols[s]] += dxr[..., s]
    return dx


# --------------------------------------------------------------------------- argument checks

#: the dimensions an image input may have: one sample (C, H, W) or a batch (N, C, H, W)
IMAGE = ((3, 4), "(C, H, W) or (N, C, H, W)")


def as_batch(x):
    """``(x4, batched)``: ``x`` with a batch axis (a view), and whether it had one."""
    return (x, True) if x.ndim == 4 else (x[None], False)


#: stands for "an array of this shape" in the keys of :func:`_remembered`
_ARRAY = object()


def _token(v):
    """A hashable stand-in for an argument of a shape check, with every type in it (so
    ``True`` and ``1``, or ``1`` and ``np.int64(1)``, which the checks treat differently,
    never share one), or None for an argument it cannot stand for."""
    t = type(v)
    if t in _PLAIN:
        return (t, v)
    if t is np.ndarray:
        return (_ARRAY, v.shape)
    if t is tuple:
        parts = []
        for e in v:
            te = type(e)
            if te is int:  # the usual sizes, strides and paddings, without a call each
                parts.append(e)
                continue
            part = _token(e)
            if part is None:
                return None
            parts.append(part)
        return (tuple, tuple(parts))
    return None


_PLAIN = frozenset((int, bool, str, type(None)))


def _remembered(check):
    """``check`` that keeps its answers, for checks that depend on their arguments' values
    and on arrays' shapes alone.

    A layer asks the same question of every batch (tens of microseconds of Python each
    time, a few percent of a LeNet step); a question seen before gets its first answer
    back. Only answers are kept, never errors, so bad input is checked every time, and
    arguments of any other type (lists, NumPy scalars, keywords) are checked every time.
    """
    seen = {}

    @functools.wraps(check)
    def remembered(func, *args, **kwargs):
        key = None if kwargs else _token((func, *args))
        if key is None:
            return check(func, *args, **kwargs)
        answer = seen.get(key)
        if answer is None:
            answer = check(func, *args)
            if len(seen) >= 256:
                seen.clear()
            seen[key] = answer
        return answer

    return remembered


class ConvGeometry(NamedTuple):
    """What :func:`check_conv_args` read from a convolution's arguments."""

    stride: tuple          #: (sh, sw)
    pads: tuple            #: ((pt, pb), (pl, pr))
    dilation: tuple        #: (rh, rw)
    groups: int            #: G
    padding_mode: str      #: one of PADDING_MODES
    yshape: tuple          #: (N, F, OH, OW), or (F, OH, OW) for an unbatched x
    batched: bool          #: whether x had a batch axis


def _check_groups(func, groups, C, F, x, w, f_name="F", f_what="filters"):
    """groups as an int dividing both channel counts (C of x, and F)."""
    g = as_int(func, "groups", groups, 1)
    if C % g or F % g:
        bad = f"C={C} input channels (x.shape={x.shape})" if C % g else \
            f"{f_name}={F} {f_what} (w.shape={w.shape})"
        raise ValueError(f"{func}: groups={g} must divide both the input channels and the "
                         f"{f_what}, but it does not divide {bad}")
    return g


@_remembered
def check_conv_args(func, x, w, b, stride, padding, dilation=1, groups=1,
                    padding_mode="zeros"):
    """Check the arguments shared by a convolution's forward and backward passes.

    ``x``, ``w`` and ``b`` are arrays (``b`` may be None); ``x`` is ``(N, C, H, W)`` or one
    sample ``(C, H, W)``, ``w`` is ``(F, C / groups, KH, KW)``. Returns a
    :class:`ConvGeometry`. Valid ranges (what a random test may draw): stride and
    dilation >= 1; padding >= 0 (for ``'reflect'`` below the input size, for
    ``'circular'`` at most it); groups >= 1 dividing C and F; a dilated kernel
    ``rh * (KH - 1) + 1`` no taller than the padded input, likewise for the width;
    N >= 0 and every other size >= 1.
    """
    check_ndim(func, "x", x, *IMAGE)
    check_ndim(func, "w", w, 4, "(F, C / groups, KH, KW)")
    x4, batched = as_batch(x)
    N, C, H, W = x4.shape
    F, Cg, KH, KW = w.shape
    if 0 in x4.shape[1:] or 0 in w.shape:
        raise ValueError(f"{func}: empty array (x.shape={x.shape}, w.shape={w.shape})")
    g = _check_groups(func, groups, C, F, x, w)
    if C != g * Cg:
        expects = f"C={Cg}" if g == 1 else f"C = groups * w.shape[1] = {g} * {Cg} = {g * Cg}"
        raise ValueError(
            f"{func}: x has C={C} channels but w expects {expects} (x.shape={x.shape}, "
            f"w.shape={w.shape})"
        )
    if b is not None and b.shape != (F,):
        raise ValueError(
            f"{func}: b must have shape (F,) = ({F},) to match w.shape={w.shape}, "
            f"got b.shape={b.shape}"
        )
    sh, sw = as_pair(func, "stride", stride, 1)
    rh, rw = as_pair(func, "dilation", dilation, 1)
    pads = resolve_padding(padding, (KH, KW), (sh, sw), func=func, dilation=(rh, rw))
    mode = _check_padding_mode(func, padding_mode, pads, (H, W))
    (pt, pb), (pl, pr) = pads
    EH, EW = rh * (KH - 1) + 1, rw * (KW - 1) + 1
    if EH > H + pt + pb or EW > W + pl + pr:
        kernel = f"kernel {KH}x{KW} (w.shape={w.shape})"
        if (rh, rw) != (1, 1):
            kernel += f", dilated by ({rh}, {rw}) to span {EH}x{EW},"
        raise ValueError(
            f"{func}: {kernel} is larger than the padded input "
            f"{H + pt + pb}x{W + pl + pr} (x.shape={x.shape}, padding={pads})"
        )
    OH = conv_output_size(H, KH, sh, (pt, pb), rh)
    OW = conv_output_size(W, KW, sw, (pl, pr), rw)
    yshape = (N, F, OH, OW)
    for what, shape in (("x, padded and contiguous,", (N, C, H + pt + pb, W + pl + pr)),
                        ("y (N, F, OH, OW)", yshape)):
        check_size(func, what, shape, np.float32)
    return ConvGeometry((sh, sw), pads, (rh, rw), g, mode,
                        yshape if batched else yshape[1:], batched)


def check_conv_transpose_args(func, x, w, b, stride, padding, output_padding, groups,
                              dilation):
    """Check a transposed convolution's arguments (forward and backward).

    ``x`` is ``(N, C_in, H, W)`` or ``(C_in, H, W)``, ``w`` is
    ``(C_in, C_out / groups, KH, KW)`` (PyTorch's ``ConvTranspose2d.weight``), ``b`` is
    ``(C_out,)`` or None. Returns a :class:`ConvGeometry` whose ``pads`` are the rows and
    columns cropped from the full scatter and whose ``yshape`` is ``(N, C_out, OH, OW)``
    with ``OH`` from :func:`conv_transpose_output_size`; the output padding is returned
    beside it as ``(oph, opw)``. Valid ranges: stride and dilation >= 1; padding >= 0;
    output_padding >= 0 and below stride or dilation on each axis; groups >= 1 dividing
    C_in and C_out; N >= 0, every other size >= 1, and an output of at least 1x1.
    """
    check_ndim(func, "x", x, (3, 4), "(C_in, H, W) or (N, C_in, H, W)")
    check_ndim(func, "w", w, 4, "(C_in, C_out / groups, KH, KW)")
    x4, batched = as_batch(x)
    N, C, H, W = x4.shape
    Cw, Fg, KH, KW = w.shape
    if 0 in x4.shape[1:] or 0 in w.shape:
        raise ValueError(f"{func}: empty array (x.shape={x.shape}, w.shape={w.shape})")
    if C != Cw:
        raise ValueError(
            f"{func}: x has C_in={C} channels but w expects C_in={Cw} (x.shape={x.shape}, "
            f"w.shape={w.shape}; w is (C_in, C_out / groups, KH, KW) as in PyTorch's "
            "ConvTranspose2d)"
        )
    g = as_int(func, "groups", groups, 1)
    if C % g:
        raise ValueError(f"{func}: groups={g} must divide the C_in={C} input channels "
                         f"(x.shape={x.shape}, w.shape={w.shape})")
    F = g * Fg
    if b is not None and b.shape != (F,):
        raise ValueError(
            f"{func}: b must have shape (C_out,) = ({F},) = (groups * w.shape[1],) for "
            f"w.shape={w.shape} and groups={g}, got b.shape={b.shape}"
        )
    sh, sw = as_pair(func, "stride", stride, 1)
    rh, rw = as_pair(func, "dilation", dilation, 1)
    if isinstance(padding, str):
        raise ValueError(f"{func}: padding must be an int, (ph, pw) or ((pt, pb), (pl, pr)); "
                         f"got {padding!r} (string paddings are not defined for a "
                         "transposed convolution, as in PyTorch)")
    pads = resolve_padding(padding, func=func)
    oph, opw = as_pair(func, "output_padding", output_padding, 0)
    for op, s, r, axis in ((oph, sh, rh, "H"), (opw, sw, rw, "W")):
        if op >= s and op >= r:
            raise ValueError(
                f"{func}: output_padding={(oph, opw)} must be smaller than the stride "
                f"{(sh, sw)} or the dilation {(rh, rw)} along each axis (PyTorch's rule); "
                f"along {axis} it is {op}"
            )
    sizes = []
    for n, k, s, pad, r, op in ((H, KH, sh, pads[0], rh, oph), (W, KW, sw, pads[1], rw, opw)):
        full = (n - 1) * s + r * (k - 1) + 1 + op
        if full - pad[0] - pad[1] < 1:
            raise ValueError(
                f"{func}: padding={pads} crops the whole output: the full scatter is "
                f"{full} rows/columns ((n - 1) * stride + dilation * (k - 1) + 1 + "
                f"output_padding for x.shape={x.shape}, w.shape={w.shape})"
            )
        sizes.append(conv_transpose_output_size(n, k, s, pad, r, op))
    yshape = (N, F, sizes[0], sizes[1])
    check_size(func, "y (N, C_out, OH, OW)", yshape, np.float32)
    geo = ConvGeometry((sh, sw), pads, (rh, rw), g, "zeros",
                       yshape if batched else yshape[1:], batched)
    return geo, (oph, opw)


class PoolGeometry(NamedTuple):
    """What :func:`check_pool_args` read from a pooling layer's arguments."""

    size: tuple            #: (KH, KW)
    stride: tuple          #: (sh, sw)
    padding: tuple         #: (ph, pw), the same on both sides
    dilation: tuple        #: (rh, rw)
    ceil_mode: bool
    yshape: tuple          #: (N, C, OH, OW), or (C, OH, OW) for an unbatched x
    taps: tuple            #: (plo, phi, qlo, qhi) of :func:`window_taps`, read-only
    inside: bool           #: every window lies inside x (no padding, dilation or partial
                           #: ceil_mode window): the plain kernels apply


def check_pool_args(func, x, size, stride, padding=0, dilation=1, ceil_mode=False):
    """Check a pooling layer's forward arguments.

    ``x`` is ``(N, C, H, W)`` or ``(C, H, W)``; ``stride=None`` means the window size.
    Returns a :class:`PoolGeometry`. Valid ranges (PyTorch's): N >= 0, C, H, W >= 1;
    size, stride and dilation >= 1; ``0 <= padding <= size // 2`` on each axis; the dilated
    window ``rh * (KH - 1) + 1`` no taller than the padded input (likewise the width;
    under ``ceil_mode`` it may exceed it by up to ``sh - 1``); every window holding at
    least one input position.
    """
    check_ndim(func, "x", x, *IMAGE)
    return pool_geometry(func, x.shape, size, stride, padding, dilation, ceil_mode)


def check_avg_pool_options(func, count_include_pad, divisor_override):
    """Check average pooling's ``count_include_pad`` (a bool) and ``divisor_override``
    (None or a nonzero int, PyTorch's range); returns them as ``(bool, int or None)``."""
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{func}: count_include_pad must be True or False, got "
                        f"{count_include_pad!r}")
    if divisor_override is not None:
        divisor_override = as_int(func, "divisor_override", divisor_override,
                                  -(2**31 - 1))
        if divisor_override == 0:
            raise ValueError(f"{func}: divisor_override must not be 0 (None divides by the "
                             "window's size)")
    return bool(count_include_pad), divisor_override


@_remembered
def pool_geometry(func, x_shape, size, stride, padding=0, dilation=1, ceil_mode=False):
    """:func:`check_pool_args` for an input of shape ``x_shape`` (3 or 4 axes)."""
    if 0 in x_shape[-3:]:
        raise ValueError(f"{func}: empty array (x.shape={x_shape})")
    KH, KW = as_pair(func, "size", size, 1)
    sh, sw = (KH, KW) if stride is None else as_pair(func, "stride", stride, 1)
    ph, pw = as_pair(func, "padding", padding, 0)
    rh, rw = as_pair(func, "dilation", dilation, 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{func}: ceil_mode must be True or False, got {ceil_mode!r}")
    if ph > KH // 2 or pw > KW // 2:
        raise ValueError(
            f"{func}: padding=({ph}, {pw}) must be at most half the window "
            f"({KH}, {KW}) // 2 = ({KH // 2}, {KW // 2}) (PyTorch's rule: otherwise a window "
            "could hold padding only)"
        )
    H, W = x_shape[-2:]
    plan = _pool_plan(H, W, KH, KW, sh, sw, ph, pw, rh, rw, bool(ceil_mode))
    if plan is None:
        window = f"window {KH}x{KW} (size={size!r})"
        if (rh, rw) != (1, 1):
            window += f", dilated by ({rh}, {rw}) to span {rh * (KH - 1) + 1}x" \
                      f"{rw * (KW - 1) + 1},"
        raise ValueError(
            f"{func}: {window} is larger than the "
            + (f"padded input plane {H + 2 * ph}x{W + 2 * pw}" if ph or pw else
               f"input plane {H}x{W}")
            + f" (x.shape={x_shape})" + (" even with ceil_mode" if ceil_mode else "")
        )
    (OH, OW), taps, empty, inside = plan
    if empty is not None:
        axis, k = empty
        raise ValueError(
            f"{func}: window {k} along the {axis} holds no input position "
            f"(size={(KH, KW)}, stride={(sh, sw)}, padding={(ph, pw)}, "
            f"dilation={(rh, rw)}, input {H}x{W}): its taps all fall in the padding"
        )
    return PoolGeometry((KH, KW), (sh, sw), (ph, pw), (rh, rw), bool(ceil_mode),
                        (*x_shape[:-2], OH, OW), taps, inside)


@_remembered
def pool_cache_geometry(where, x_shape, size, stride, padding, dilation, ceil_mode):
    """``(x_shape, geometry)`` of a pooling cache: its input shape as a tuple of ints, and
    the forward pass's checks of its arguments again (an answer is kept for arguments seen
    before, as the forward pass keeps its own: see :func:`_remembered`)."""
    if not isinstance(x_shape, (tuple, list)) or len(x_shape) not in (3, 4):
        raise ValueError(f"{where}: x_shape must be (N, C, H, W) or (C, H, W), got "
                         f"{x_shape!r}")
    x_shape = tuple(as_int(where, "x_shape", s, 0 if k == 0 and len(x_shape) == 4 else 1)
                    for k, s in enumerate(x_shape))
    try:
        geo = pool_geometry(where, x_shape, size, stride, padding, dilation, ceil_mode)
    except ValueError as err:
        raise ValueError(f"{err} (was the cache edited?)") from None
    return x_shape, geo


@functools.lru_cache(maxsize=256)
def _pool_plan(H, W, KH, KW, sh, sw, ph, pw, rh, rw, ceil_mode):
    """Output size and window taps of a pooling layer: None if the window does not fit,
    else ((OH, OW), (plo, phi, qlo, qhi), None or (axis, window) of a window without taps,
    whether every window lies inside the input).

    Cached: a training loop pools the same shapes over and over, and these few small
    array operations would cost more than pooling a small batch.
    """
    try:
        OH = conv_output_size(H, KH, sh, ph, rh, ceil_mode)
        OW = conv_output_size(W, KW, sw, pw, rw, ceil_mode)
    except ValueError:
        return None
    taps = (*window_taps(H, KH, sh, ph, rh, OH), *window_taps(W, KW, sw, pw, rw, OW))
    for a in taps:
        a.flags.writeable = False
    empty = None
    for axis, lo, hi in (("rows", taps[0], taps[1]), ("columns", taps[2], taps[3])):
        bad = np.flatnonzero(lo >= hi)
        if bad.size and empty is None:
            empty = (axis, int(bad[0]))
    inside = (ph, pw, rh, rw) == (0, 0, 1, 1) and bool(
        (taps[0] == 0).all() and (taps[1] == KH).all() and (taps[2] == 0).all()
        and (taps[3] == KW).all())
    return (OH, OW), taps, empty, inside


def pool_output_shape(x_shape, size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """``(N, C, OH, OW)`` (or ``(C, OH, OW)``) of a pooling layer on ``x_shape``."""
    *lead, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw), (rh, rw) = size, stride, padding, dilation
    return (*lead, conv_output_size(H, KH, sh, ph, rh, ceil_mode),
            conv_output_size(W, KW, sw, pw, rw, ceil_mode))


def window_taps(n, k, stride, pad, dilation, out):
    """The taps of each window that land inside the input, along one axis.

    Window ``i`` starts at input position ``i * stride - pad`` and its tap ``p`` reads
    position ``i * stride - pad + p * dilation``. Returns ``(lo, hi)``, two int arrays of
    length ``out``: window ``i``'s taps inside ``[0, n)`` are ``p = lo[i], ..., hi[i] - 1``
    (the rest fall in the padding, or past the input under ``ceil_mode``).
    """
    start = np.arange(out, dtype=np.int64) * stride - pad
    lo = (np.maximum(-start, 0) + dilation - 1) // dilation  # first p with start + p*r >= 0
    hi = np.minimum(k, np.maximum((n - 1 - start) // dilation + 1, 0))  # last p + 1 below n
    return lo, hi
