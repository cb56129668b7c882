"""Shapes, padding and the array surgery of the backward pass: no compiled kernel here.

Everything a convolution or pooling layer needs to know before it touches a number lives
in this module: the output size (written once, in :func:`conv_output_size`), how a
padding argument is read (:func:`resolve_padding`), and the checks of every argument.
The three helpers the derivations use, :func:`zero_pad`, :func:`dilate` and
:func:`rotate180`, are here too. The compiled routes (:mod:`cycnn.conv`,
:mod:`cycnn.pool`) and the NumPy reference (:mod:`cycnn.reference`) both build on it,
and it imports nothing but NumPy and the argument checks, so the reference stays
independent of the kernels it is compared with.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_int, as_pair, check_ndim, check_size

__all__ = ["conv_output_size", "resolve_padding", "zero_pad", "dilate", "rotate180"]


def conv_output_size(n, k, stride=1, pad=0):
    """Size of a convolution's (or pooling window's) output along one axis.

    Parameters
    ----------
    n : int
        Input size along the axis (H or W).
    k : int
        Kernel size along the axis (KH or KW).
    stride : int, default 1
        Step between windows.
    pad : int or (int, int), default 0
        Zeros added on each side, or ``(before, after)``.

    Returns
    -------
    int
        ``(n + before + after - k) // stride + 1``; with equal padding P on both sides
        this is the familiar ``(W1 - F + 2P) / S + 1``.

    Raises
    ------
    ValueError
        If the kernel is larger than the padded input, or a size is out of range.

    Examples
    --------
    >>> conv_output_size(32, 5)
    28
    >>> conv_output_size(28, 5, stride=2, pad=2)
    14
    """
    func = "conv_output_size"
    n = as_int(func, "n", n, 1)
    k = as_int(func, "k", k, 1)
    stride = as_int(func, "stride", stride, 1)
    before, after = as_pair(func, "pad", pad, 0)
    if k > n + before + after:
        raise ValueError(
            f"{func}: kernel size k={k} is larger than the padded input "
            f"n + pad = {n} + {before} + {after} = {n + before + after}"
        )
    return (n + before + after - k) // stride + 1


def resolve_padding(padding, kernel_size=None, stride=1, func="resolve_padding"):
    """Turn any accepted padding argument into ``((pt, pb), (pl, pr))``.

    Parameters
    ----------
    padding : int, (int, int), ((int, int), (int, int)), 'valid' or 'same'
        ``p``: p zeros on every side. ``(ph, pw)``: ph above and below, pw left and right
        (PyTorch's meaning). ``((pt, pb), (pl, pr))``: every side explicitly.
        ``'valid'``: no padding. ``'same'``: the output keeps the input's H x W; this needs
        stride 1, and when the total padding ``K - 1`` is odd (an even kernel) the extra
        row goes to the bottom and the extra column to the right, as in PyTorch.
    kernel_size : (int, int), optional
        ``(KH, KW)``; needed for ``'same'``.
    stride : int or (int, int), default 1
        Needed to refuse ``'same'`` with a stride above 1.
    func : str, optional
        Name used in error messages.

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
            th, tw = kh - 1, kw - 1
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


# --------------------------------------------------------------------------- argument checks

def check_conv_args(func, x, w, b, stride, padding):
    """Check the arguments shared by a convolution's forward and backward passes.

    ``x``, ``w`` and ``b`` are arrays (``b`` may be None). Returns ``(sh, sw)``,
    ``((pt, pb), (pl, pr))`` and the output shape ``(N, F, OH, OW)``.
    """
    check_ndim(func, "x", x, 4, "(N, C, H, W)")
    check_ndim(func, "w", w, 4, "(F, C, KH, KW)")
    N, C, H, W = x.shape
    F, Cw, KH, KW = w.shape
    if C != Cw:
        raise ValueError(
            f"{func}: x has C={C} channels but w expects C={Cw} (x.shape={x.shape}, "
            f"w.shape={w.shape})"
        )
    if 0 in x.shape or 0 in w.shape:
        raise ValueError(f"{func}: empty array (x.shape={x.shape}, w.shape={w.shape})")
    if b is not None and b.shape != (F,):
        raise ValueError(
            f"{func}: b must have shape (F,) = ({F},) to match w.shape={w.shape}, "
            f"got b.shape={b.shape}"
        )
    sh, sw = as_pair(func, "stride", stride, 1)
    pads = resolve_padding(padding, (KH, KW), (sh, sw), func=func)
    (pt, pb), (pl, pr) = pads
    if KH > H + pt + pb or KW > W + pl + pr:
        raise ValueError(
            f"{func}: kernel {KH}x{KW} (w.shape={w.shape}) is larger than the padded input "
            f"{H + pt + pb}x{W + pl + pr} (x.shape={x.shape}, padding={pads})"
        )
    yshape = (N, F, conv_output_size(H, KH, sh, (pt, pb)), conv_output_size(W, KW, sw, (pl, pr)))
    for what, shape in (("x, padded and contiguous,", (N, C, H + pt + pb, W + pl + pr)),
                        ("y (N, F, OH, OW)", yshape)):
        check_size(func, what, shape, np.float32)
    return (sh, sw), pads, yshape


def check_pool_args(func, x, size, stride):
    """Check a pooling layer's forward arguments.

    ``stride=None`` means the window size. Returns ``(KH, KW)``, ``(sh, sw)`` and the
    output shape ``(N, C, OH, OW)``.
    """
    check_ndim(func, "x", x, 4, "(N, C, H, W)")
    if 0 in x.shape:
        raise ValueError(f"{func}: empty array (x.shape={x.shape})")
    KH, KW = as_pair(func, "size", size, 1)
    sh, sw = (KH, KW) if stride is None else as_pair(func, "stride", stride, 1)
    N, C, H, W = x.shape
    if KH > H or KW > W:
        raise ValueError(
            f"{func}: window {KH}x{KW} (size={size!r}) is larger than the input plane "
            f"{H}x{W} (x.shape={x.shape})"
        )
    return (KH, KW), (sh, sw), pool_output_shape(x.shape, (KH, KW), (sh, sw))


def pool_output_shape(x_shape, size, stride):
    """``(N, C, OH, OW)`` of a pooling layer with windows ``size`` and ``stride``."""
    N, C, H, W = x_shape
    (KH, KW), (sh, sw) = size, stride
    return (N, C, conv_output_size(H, KH, sh), conv_output_size(W, KW, sw))
