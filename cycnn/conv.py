"""2-D convolution: forward pass, backward pass and the teaching helpers.

The public functions check their arguments, settle the dtype, pad the input and allocate
the outputs; the loops themselves are in ``cycnn/_conv.pyx``. As in every CNN library, the
"convolution" computed here is a cross-correlation (the kernel is not flipped):

    y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x[n, c, i*sh + p - pt, j*sw + q - pl]

Layout is NCHW with weights ``(F, C, KH, KW)`` and bias ``(F,)``, as in PyTorch.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float, as_int, as_pair, check_ndim

_conv = _dispatch.load("_conv")

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv_output_size",
    "resolve_padding",
    "zero_pad",
    "dilate",
    "rotate180",
]


# --------------------------------------------------------------------------- helpers

def conv_output_size(n, k, stride=1, pad=0):
    """Size of a convolution's output along one axis.

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

    Returns
    -------
    ((int, int), (int, int))
        ``((pt, pb), (pl, pr))``.

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
                    f"{func}: padding='same' needs stride 1, got stride=({sh}, {sw}); with a "
                    "larger stride no padding makes the output as large as the input "
                    "(PyTorch refuses it too). Pass the padding explicitly."
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

    Examples
    --------
    >>> zero_pad(np.ones((1, 2)), 1)
    array([[0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 0., 0., 0.]])
    """
    x = as_array("zero_pad", "x", x)
    if x.ndim < 2:
        raise ValueError(f"zero_pad: x must be at least 2-D, got shape {x.shape}")
    if isinstance(pad, str):
        raise ValueError(f"zero_pad: pad must be an int or a tuple of ints, got {pad!r}")
    (pt, pb), (pl, pr) = resolve_padding(pad, func="zero_pad")
    out = np.zeros(x.shape[:-2] + (x.shape[-2] + pt + pb, x.shape[-1] + pl + pr), x.dtype)
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
        ``(dh, dw)``, each at least 1; 1 leaves the axis unchanged.

    Returns
    -------
    ndarray, shape (..., (H - 1) * dh + 1, (W - 1) * dw + 1)
        Same dtype as ``x``.

    Examples
    --------
    >>> dilate(np.array([[1, 2], [3, 4]]), (2, 3))
    array([[1, 0, 0, 2],
           [0, 0, 0, 0],
           [3, 0, 0, 4]])
    """
    x = as_array("dilate", "x", x)
    if x.ndim < 2 or x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"dilate: x must be at least 2-D and non-empty, got shape {x.shape}")
    dh, dw = as_pair("dilate", "rate", rate, 1)
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + ((h - 1) * dh + 1, (w - 1) * dw + 1), x.dtype)
    out[..., ::dh, ::dw] = x
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


# --------------------------------------------------------------------------- checks

def _check_conv_args(func, x, w, b, stride, padding):
    """Validate and normalise the arguments shared by the forward and backward passes."""
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
    OH = (H + pt + pb - KH) // sh + 1
    OW = (W + pl + pr - KW) // sw + 1
    return (sh, sw), pads, (N, F, OH, OW)


# --------------------------------------------------------------------------- passes

def conv2d_forward(x, w, b=None, stride=1, padding=0, *, threads=None, algorithm="auto"):
    """Forward pass of a 2-D convolution layer (a cross-correlation, as in PyTorch).

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q]``
    where ``xp`` is ``x`` zero-padded.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Input batch.
    w : array_like, shape (F, C, KH, KW)
        Filters (PyTorch's ``Conv2d.weight`` layout).
    b : array_like, shape (F,), optional
        One bias per filter; ``None`` for no bias.
    stride : int or (int, int), default 1
        ``(sh, sw)``, each at least 1.
    padding : int, (int, int), ((int, int), (int, int)), 'valid' or 'same', default 0
        See :func:`resolve_padding`. ``'same'`` needs stride 1; an even kernel is allowed
        and puts the extra row/column at the bottom/right.
    threads : int, optional
        Threads for this call's compiled loops; defaults to
        :func:`cycnn.get_num_threads`.
    algorithm : {'auto', 'direct', 'im2col'}, default 'auto'
        ``'direct'`` runs the loops of the equation above; ``'im2col'`` copies every
        window into a column and lets one BLAS matrix product do the sums (faster for
        most layers, and done in chunks of the batch so the copy stays bounded);
        ``'auto'`` picks by shape. All give the same result to rounding.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW)
        ``OH = (H + pt + pb - KH) // sh + 1`` and likewise ``OW``. float32 when every
        argument is float32, float64 otherwise (mixed float32/float64 and integer
        arguments are computed in float64).

    Raises
    ------
    ValueError
        Wrong number of dimensions, channel mismatch, bias of the wrong length, kernel
        larger than the padded input, stride < 1, bad padding.
    TypeError
        Non-numeric arrays, non-integer stride or padding.

    Notes
    -----
    Output size per axis: ``(W1 - F + 2P) // S + 1``. A 32x32x3 image with six 5x5x3
    filters gives 28x28x6.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.ones((1, 1, 2, 2))
    >>> conv2d_forward(x, w, b=np.array([0.5]))
    array([[[[ 8.5, 12.5],
             [20.5, 24.5]]]])
    """
    func = "conv2d_forward"
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    (sh, sw), pads, yshape = _check_conv_args(func, x, w, b, stride, padding)
    nt = resolve_threads(func, threads)
    x, w, b = as_float(func, x=x, w=w, b=b)
    if b is None:
        b = np.zeros(w.shape[0], x.dtype)
    xp = zero_pad(x, pads) if any(sum(pads, ())) else x
    y = np.empty(yshape, x.dtype)
    if _choose(func, algorithm, w.shape, yshape) == "direct":
        _conv.conv2d_forward(xp, w, b, y, sh, sw, nt)
    else:
        _forward_im2col(xp, w, b, y, sh, sw, nt)
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, *, threads=None, algorithm="auto",
                    need_dx=True):
    """Backward pass of :func:`conv2d_forward`.

    Given ``dy = dL/dy``, returns the gradients of the loss with respect to the input,
    the filters and the bias. The gradients are plain sums over the batch: averaging
    belongs to the loss, as in PyTorch.

    ``dx[n, c, h, w]   = sum_{f, p, q} w[f, c, p, q] * dy[n, f, (h + pt - p) / sh, (w + pl - q) / sw]``
    (terms with a non-integer or out-of-range index are zero: a full convolution of the
    dilated ``dy`` with the 180-degree-rotated filter),
    ``dw[f, c, p, q]  = sum_{n, i, j} dy[n, f, i, j] * xp[n, c, i*sh + p, j*sw + q]``,
    ``db[f]           = sum_{n, i, j} dy[n, f, i, j]``.

    Parameters
    ----------
    dy : array_like, shape (N, F, OH, OW)
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, C, H, W)
        The forward input.
    w : array_like, shape (F, C, KH, KW)
        The forward filters.
    stride, padding
        Exactly as given to the forward pass.
    threads : int, optional
        Threads for this call's compiled loops; defaults to
        :func:`cycnn.get_num_threads`.
    algorithm : {'auto', 'direct', 'im2col'}, default 'auto'
        As for :func:`conv2d_forward`.
    need_dx : bool, default True
        ``False`` skips the input gradient (returned as ``None``): a network's first
        layer has no layer below it to pass it to, and dx costs as much as dw.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None when ``need_dx`` is False
    dw : ndarray, shape (F, C, KH, KW)
    db : ndarray, shape (F,)
        All in the common dtype of the arguments (see :func:`conv2d_forward`).

    Raises
    ------
    ValueError
        As for the forward pass, and when ``dy`` does not have the forward output's shape.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.ones((1, 1, 2, 2))
    >>> dx, dw, db = conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> dw[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    func = "conv2d_backward"
    dy = as_array(func, "dy", dy)
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    (sh, sw), pads, yshape = _check_conv_args(func, x, w, None, stride, padding)
    if dy.shape != yshape:
        raise ValueError(
            f"{func}: dy must have the forward output's shape {yshape} for x.shape={x.shape}, "
            f"w.shape={w.shape}, stride=({sh}, {sw}), padding={pads}; got dy.shape={dy.shape}"
        )
    nt = resolve_threads(func, threads)
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    (pt, pb), (pl, pr) = pads
    N, C, H, W = x.shape
    xp = zero_pad(x, pads) if any(sum(pads, ())) else x
    dxp = np.zeros(xp.shape, x.dtype) if need_dx else None
    if _choose(func, algorithm, w.shape, yshape) == "direct":
        dw = np.empty(w.shape, x.dtype)
        _conv.conv2d_backward_weight(dy, xp, dw, sh, sw, nt)
        if need_dx:
            _conv.conv2d_backward_input(dy, w, dxp, sh, sw, nt)
    else:
        dw = _backward_im2col(dy, xp, w, dxp, sh, sw, nt)
    dx = None
    if need_dx:
        # backward through padding: drop the border (a copy only when there is one)
        dx = np.ascontiguousarray(dxp[:, :, pt:pt + H, pl:pl + W])
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db


# --------------------------------------------------------------------------- im2col route

#: most elements the im2col route's column buffer may hold at once (32 MiB of float32);
#: larger batches are processed in chunks of samples.
IM2COL_MAX_ELEMENTS = 1 << 23

_ALGORITHMS = ("auto", "direct", "im2col")

# Column buffers are kept between calls (one set per Python thread): a fresh multi-MB
# array page-faults on first touch, which cost more than the copy itself.
_local = threading.local()


def _workspace(name, size, dtype):
    """A reusable flat buffer of at least ``size`` elements, private to this thread."""
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get((name, dtype))
    if buf is None or buf.size < size:
        buf = bufs[(name, dtype)] = np.empty(size, dtype)
    return buf[:size]


def clear_workspace():
    """Free the column buffers the im2col route keeps for the calling thread.

    The im2col route keeps its column buffers (at most a few times
    ``IM2COL_MAX_ELEMENTS`` elements per dtype) between calls, because a fresh buffer
    page-faults on every call. Call this after training to hand that memory back; the
    next convolution allocates again.
    """
    _local.__dict__.pop("bufs", None)


def _choose(func, algorithm, wshape, yshape):
    """The route to take: the user's choice, or by shape for ``'auto'``."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"{func}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    if algorithm != "auto":
        return algorithm
    F, C, KH, KW = wshape
    # A matrix product only pays for its copy when each copied element is reused by
    # several filters; with one or two filters the direct loops win.
    return "im2col" if F >= 3 else "direct"


#: below this many elements a copy loop runs on one thread: waking a second, sleeping
#: OpenMP thread costs ~70 us here, as long as copying a million floats on one core.
PARALLEL_MIN_ELEMENTS = 1 << 20


def _threads_for(elements, nt):
    return threads_for(elements, nt, PARALLEL_MIN_ELEMENTS)


def _chunks(N, rows, P):
    """Split the batch so that a (rows, chunk*P) column buffer stays bounded."""
    step = max(1, min(N, IM2COL_MAX_ELEMENTS // max(1, rows * P)))
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)], step


def _forward_im2col(xp, w, b, y, sh, sw, nt):
    """y = w @ im2col(xp) + b, a chunk of the batch at a time."""
    N, F, OH, OW = y.shape
    _, C, KH, KW = w.shape
    K, P = C * KH * KW, OH * OW
    w2 = w.reshape(F, K)
    spans, step = _chunks(N, K, P)
    buf = _workspace("cols", K * step * P, xp.dtype)
    out = _workspace("yt", F * step * P, xp.dtype)
    for n0, n1 in spans:
        nb = n1 - n0
        cols = buf[: K * nb * P].reshape(K, nb * P)
        _conv.im2col(xp[n0:n1], cols, KH, KW, OH, OW, sh, sw, _threads_for(cols.size, nt))
        yt = out[: F * nb * P].reshape(F, nb * P)
        np.matmul(w2, cols, out=yt)
        _conv.bias_transpose(yt, b, y[n0:n1].reshape(nb, F, P), _threads_for(yt.size, nt))


def _backward_im2col(dy, xp, w, dxp, sh, sw, nt):
    """dw = dy @ cols^T and dcols = w^T @ dy, then col2im; returns dw, fills dxp.

    ``dxp=None`` skips the input gradient.
    """
    N, F, OH, OW = dy.shape
    _, C, KH, KW = w.shape
    K, P = C * KH * KW, OH * OW
    w2 = w.reshape(F, K)
    dw = np.zeros((F, K), xp.dtype)
    spans, step = _chunks(N, K, P)
    buf = _workspace("cols", K * step * P, xp.dtype)
    dbuf = _workspace("dcols", K * step * P, xp.dtype) if dxp is not None else None
    tbuf = _workspace("yt", F * step * P, xp.dtype)
    part = np.empty((F, K), xp.dtype) if len(spans) > 1 else dw
    for n0, n1 in spans:
        nb = n1 - n0
        cols = buf[: K * nb * P].reshape(K, nb * P)
        _conv.im2col(xp[n0:n1], cols, KH, KW, OH, OW, sh, sw, _threads_for(cols.size, nt))
        dyt = tbuf[: F * nb * P].reshape(F, nb * P)
        _conv.transpose_nf(dy[n0:n1].reshape(nb, F, P), dyt, _threads_for(dyt.size, nt))
        np.matmul(dyt, cols.T, out=part)
        if part is not dw:
            dw += part
        if dxp is not None:
            dcols = dbuf[: K * nb * P].reshape(K, nb * P)
            np.matmul(w2.T, dyt, out=dcols)
            _conv.col2im(dcols, dxp[n0:n1], KH, KW, OH, OW, sh, sw,
                         _threads_for(dcols.size, nt))
    return dw.reshape(w.shape)
