"""2-D convolution: forward pass, backward pass and the teaching helpers.

The public functions check their arguments (with :mod:`cycnn.geometry`), settle the dtype,
pad the input and allocate the outputs; the loops themselves are in ``cycnn/_conv.pyx``.
As in every CNN library, the "convolution" computed here is a cross-correlation (the
kernel is not flipped):

    y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x[n, c, i*sh + p - pt, j*sw + q - pl]

Layout is NCHW with weights ``(F, C, KH, KW)`` and bias ``(F,)``, as in PyTorch.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float
from .geometry import check_conv_args, zero_pad

_conv = _dispatch.load("_conv")

__all__ = ["conv2d_forward", "conv2d_backward", "clear_workspace"]


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
        See :func:`cycnn.resolve_padding`. ``'same'`` needs stride 1; an even kernel is allowed
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
    (sh, sw), pads, yshape = check_conv_args(func, x, w, b, stride, padding)
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

    ``dx[n, c, h, w] = sum_{f, p, q} w[f, c, p, q] * dy[n, f, (h+pt-p) / sh, (w+pl-q) / sw]``
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
    dx : ndarray, shape (N, C, H, W), or None when need_dx is False
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
    (sh, sw), pads, yshape = check_conv_args(func, x, w, None, stride, padding)
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
