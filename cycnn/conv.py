"""2-D convolution and transposed convolution: forward and backward passes.

The public functions check their arguments (with :mod:`cycnn.geometry`), settle the dtype,
pad the input and allocate the outputs; the loops themselves are in ``cycnn/_conv.pyx``.
As in every CNN library, the "convolution" computed here is a cross-correlation (the
kernel is not flipped):

    y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c0 + c, i*sh + p*rh, j*sw + q*rw]

where ``xp`` is the padded input, ``(rh, rw)`` the dilation and ``c0`` the first input
channel of filter f's group (0 without groups). Layout is NCHW with weights
``(F, C / groups, KH, KW)`` and bias ``(F,)``, as in PyTorch; a transposed convolution
takes PyTorch's ``ConvTranspose2d`` layout ``(C_in, C_out / groups, KH, KW)``.
"""

from __future__ import annotations

import threading

import numpy as np

from . import _caches, _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float
from .geometry import (
    as_batch,
    check_conv_args,
    check_conv_transpose_args,
    fold_padding,
    pad_input,
    zero_pad,
)

_conv = _dispatch.load("_conv")
_fastconv = _dispatch.load("_fastconv")

__all__ = ["conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
           "conv_transpose2d_backward", "clear_workspace"]


# --------------------------------------------------------------------------- passes

def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros", *, threads=None, algorithm="auto"):
    """Forward pass of a 2-D convolution layer (a cross-correlation, as in PyTorch).

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c0 + c, i*sh + p*rh, j*sw + q*rw]``
    where ``xp`` is ``x`` padded, ``(rh, rw)`` the dilation and ``c0 = (f // (F / G)) * C / G``
    the first input channel of filter f's group.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
        Input batch, or one sample without the batch axis (as PyTorch accepts). N may be 0.
    w : array_like, shape (F, C / groups, KH, KW)
        Filters (PyTorch's ``Conv2d.weight`` layout).
    b : array_like, shape (F,), optional
        One bias per filter; ``None`` for no bias.
    stride : int or (int, int), default 1
        ``(sh, sw)``, each at least 1.
    padding : int, (int, int), ((int, int), (int, int)), 'valid' or 'same', default 0
        See :func:`cycnn.resolve_padding`. ``'same'`` needs stride 1; an odd total padding
        ``rh * (KH - 1)`` puts the extra row/column at the bottom/right.
    dilation : int or (int, int), default 1
        ``(rh, rw)``, each at least 1: tap ``(p, q)`` of a window reads ``(p * rh, q * rw)``
        from its corner, so the kernel spans ``rh * (KH - 1) + 1`` rows.
    groups : int, default 1
        G, at least 1, dividing C and F: the channels and the filters split into G groups
        and filter group g sees only channel group g (G = C is a depthwise convolution).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        What the padding holds (PyTorch's ``Conv2d.padding_mode``); see
        :func:`cycnn.pad_input`. 'reflect' needs padding below the input size, 'circular'
        at most it.
    threads : int, optional
        Threads for this call's compiled loops; defaults to
        :func:`cycnn.get_num_threads`.
    algorithm : {'auto', 'direct', 'im2col', 'fast'}, default 'auto'
        ``'direct'`` runs the loops of the equation above; ``'im2col'`` copies every
        window into a column and lets one BLAS matrix product per group do the sums
        (done in chunks of the batch so the copy stays bounded); ``'fast'`` keeps blocks
        of outputs in vector registers and reads the input through a per-thread,
        cache-sized copy (see the performance page), for zeros padding without dilation
        or groups (other convolutions asked for ``'fast'`` take ``'im2col'``); ``'auto'``
        picks by shape (``'fast'`` where it applies, for three or more filters). All give
        the same result to rounding.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW), or (F, OH, OW) for an unbatched x
        ``OH = (H + pt + pb - rh * (KH - 1) - 1) // sh + 1`` and likewise ``OW``. float32
        when every argument is float32, float64 otherwise (mixed float32/float64 and
        integer arguments are computed in float64).

    Raises
    ------
    ValueError
        Wrong number of dimensions, channel mismatch, groups not dividing C or F, bias of
        the wrong length, (dilated) kernel larger than the padded input, stride or
        dilation < 1, bad padding, unknown padding_mode or padding beyond its limit.
    TypeError
        Non-numeric arrays, non-integer stride, dilation, groups or padding.

    Notes
    -----
    Output size per axis: ``(W1 - F + 2P) // S + 1`` for an undilated kernel. A 32x32x3
    image with six 5x5x3 filters gives 28x28x6.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.ones((1, 1, 2, 2))
    >>> conv2d_forward(x, w, b=np.array([0.5]))
    array([[[[ 8.5, 12.5],
             [20.5, 24.5]]]])
    >>> conv2d_forward(x, w, dilation=2)  # the four corners
    array([[[[16.]]]])
    """
    func = "conv2d_forward"
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    geo = check_conv_args(func, x, w, b, stride, padding, dilation, groups, padding_mode)
    nt = resolve_threads(func, threads)
    x, w, b = as_float(func, x=x, w=w, b=b)
    if b is None:
        b = np.zeros(w.shape[0], x.dtype)
    x4, _ = as_batch(x)
    y = np.empty(geo.yshape, x.dtype)
    y4, _ = as_batch(y)
    route = _choose(func, algorithm, w.shape, y4.shape, geo.groups, _plain(geo))
    if route == "fast":
        _forward_fast(x4, w, b, y4, geo.stride, geo.pads, nt)
        return y
    xp = _pad(x4, geo)
    _forward(func, route, xp, w, b, y4, geo, nt)
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", *, threads=None, algorithm="auto", need_dx=True):
    """Backward pass of :func:`conv2d_forward`.

    Given ``dy = dL/dy``, returns the gradients of the loss with respect to the input,
    the filters and the bias. The gradients are plain sums over the batch: averaging
    belongs to the loss, as in PyTorch.

    ``dxp[n, c0 + c, i*sh + p*rh, j*sw + q*rw] += w[f, c, p, q] * dy[n, f, i, j]`` summed
    over every path (a full convolution of the stride-dilated ``dy`` with the
    180-degree-rotated, ``(rh, rw)``-dilated filter), then folded back through the
    padding (:func:`cycnn.fold_padding`: a crop for zeros),
    ``dw[f, c, p, q]  = sum_{n, i, j} dy[n, f, i, j] * xp[n, c0 + c, i*sh + p*rh, j*sw + q*rw]``,
    ``db[f]           = sum_{n, i, j} dy[n, f, i, j]``.

    Parameters
    ----------
    dy : array_like, shape (N, F, OH, OW), or (F, OH, OW) for an unbatched x
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, C, H, W) or (C, H, W)
        The forward input.
    w : array_like, shape (F, C / groups, KH, KW)
        The forward filters.
    stride, padding, dilation, groups, padding_mode
        Exactly as given to the forward pass.
    threads : int, optional
        Threads for this call's compiled loops; defaults to
        :func:`cycnn.get_num_threads`.
    algorithm : {'auto', 'direct', 'im2col', 'fast'}, default 'auto'
        As for :func:`conv2d_forward`. Where ``x`` or ``w`` holds a NaN or an infinity,
        ``'fast'`` hands over to ``'im2col'``, whose IEEE semantics are exactly those of
        the direct loops.
    need_dx : bool, default True
        ``False`` skips the input gradient (returned as ``None``): a network's first
        layer has no layer below it to pass it to, and dx costs as much as dw.

    Returns
    -------
    dx : ndarray, shape of x, or None when need_dx is False
    dw : ndarray, shape (F, C / groups, KH, KW)
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
    geo = check_conv_args(func, x, w, None, stride, padding, dilation, groups, padding_mode)
    if dy.shape != geo.yshape:
        raise ValueError(
            f"{func}: dy must have the forward output's shape {geo.yshape} for x.shape="
            f"{x.shape}, w.shape={w.shape}, stride={geo.stride}, padding={geo.pads}"
            + ("" if geo.dilation == (1, 1) else f", dilation={geo.dilation}")
            + f"; got dy.shape={dy.shape}"
        )
    nt = resolve_threads(func, threads)
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    (dy4, _), (x4, _) = as_batch(dy), as_batch(x)
    route = _choose(func, algorithm, w.shape, dy4.shape, geo.groups, _plain(geo))
    if route == "fast":
        grads = _backward_fast(dy4, x4, w, geo.stride, geo.pads, need_dx, nt)
        if grads is not None:
            dx, dw, db = grads
            return (dx if dx is None or geo.batched else dx[0]), dw, db
        route = "im2col"  # a NaN or inf that the fast route's spare lanes would spread
    padded = any(sum(geo.pads, ()))
    xp = _pad(x4, geo)
    dxp = np.zeros(xp.shape, x.dtype) if need_dx else None
    dw = np.empty(w.shape, x.dtype)
    _backward(func, route, dy4, xp, w, dxp, dw, geo, nt)
    dx = None
    if need_dx:
        # backward through padding: drop the border, or fold it back onto the rows and
        # columns it copied (a copy only when there is padding)
        dx = fold_padding(dxp, geo.pads, geo.padding_mode) if padded else dxp
        dx = dx if geo.batched else dx[0]
    db = dy4.sum(axis=(0, 2, 3))
    return dx, dw, db


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1, *, threads=None, algorithm="auto"):
    """Forward pass of a 2-D transposed convolution (PyTorch's ``conv_transpose2d``).

    Every input element scatters a copy of its filters, scaled by itself, onto the output:
    ``yf[n, g*Fg + f, i*sh + p*rh, j*sw + q*rw] += x[n, c, i, j] * w[c, f, p, q]`` for the
    channels c of group g, then ``y = yf`` with ``pt`` rows cropped at the top (and so on)
    plus ``b``. This is exactly the input gradient of :func:`conv2d_forward` with the same
    filters, stride, padding, dilation and groups: a transposed convolution maps shapes
    the way a convolution's backward pass does.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input batch, or one sample. N may be 0.
    w : array_like, shape (C_in, C_out / groups, KH, KW)
        Filters in PyTorch's ``ConvTranspose2d.weight`` layout (input channels first).
    b : array_like, shape (C_out,), optional
        One bias per output channel; ``None`` for none.
    stride : int or (int, int), default 1
        ``(sh, sw)``, at least 1: the step, on the output, between the windows that
        neighbouring inputs scatter onto.
    padding : int, (int, int) or ((int, int), (int, int)), default 0
        Rows and columns cropped from the full scatter (``pt, pb, pl, pr``), each at least
        0: the padding of the convolution this one transposes.
    output_padding : int or (int, int), default 0
        Extra rows/columns at the bottom/right of the output (they receive only the
        bias), each at least 0 and smaller than the stride or the dilation on its axis.
    groups : int, default 1
        G, at least 1, dividing C_in: input channel group g scatters onto output group g.
    dilation : int or (int, int), default 1
        ``(rh, rw)``, at least 1: the spacing of the filter taps on the output.
    threads : int, optional
        Threads for this call's compiled loops; defaults to :func:`cycnn.get_num_threads`.
    algorithm : {'auto', 'direct', 'im2col'}, default 'auto'
        As for :func:`conv2d_forward`.

    Returns
    -------
    y : ndarray, shape (N, C_out, OH, OW), or (C_out, OH, OW) for an unbatched x
        ``OH = (H - 1) * sh - pt - pb + rh * (KH - 1) + 1 + oph``
        (:func:`cycnn.conv_transpose_output_size`), likewise ``OW``; dtype as for
        :func:`conv2d_forward`.

    Raises
    ------
    ValueError
        Wrong dimensions, channel mismatch, groups not dividing C_in, bias of the wrong
        length, stride or dilation < 1, output_padding not below the stride or the
        dilation, string padding, or padding that crops the whole output.
    TypeError
        Non-numeric arrays, non-integer arguments.

    Examples
    --------
    >>> x = np.array([[[[1.0, 2.0]]]])           # one 1x2 input
    >>> w = np.array([[[[1.0, 10.0]]]])          # (C_in, C_out, KH, KW) = (1, 1, 1, 2)
    >>> conv_transpose2d_forward(x, w, stride=2)
    array([[[[ 1., 10.,  2., 20.]]]])
    """
    func = "conv_transpose2d_forward"
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    geo, _ = check_conv_transpose_args(func, x, w, b, stride, padding, output_padding,
                                       groups, dilation)
    nt = resolve_threads(func, threads)
    x, w, b = as_float(func, x=x, w=w, b=b)
    x4, _ = as_batch(x)
    N, F, OH, OW = geo.yshape if geo.batched else (1, *geo.yshape)
    (pt, pb), (pl, pr) = geo.pads
    # the full scatter: every window of every input, before the crop
    yf = np.zeros((N, F, OH + pt + pb, OW + pl + pr), x.dtype)
    _backward(func, algorithm, x4, None, w, yf, None, geo, nt)
    y = yf[:, :, pt:pt + OH, pl:pl + OW]
    if b is not None:
        y += b[None, :, None, None]
    y = np.ascontiguousarray(y)
    return y if geo.batched else y[0]


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1, *, threads=None, algorithm="auto", need_dx=True):
    """Backward pass of :func:`conv_transpose2d_forward`.

    Adding up every path from an input to the loss: ``x[n, c, i, j]`` reached the outputs
    its window covers, each through one filter tap, so

    ``dx[n, c, i, j] = sum_{f, p, q} w[c, f, p, q] * dyf[n, g*Fg + f, i*sh + p*rh, j*sw + q*rw]``

    where ``dyf`` is ``dy`` zero-padded back to the full scatter's size: an ordinary
    convolution of ``dy`` with the same filters (read as ``(F, C, KH, KW)`` = ``(C_in,
    C_out / G, KH, KW)``) and the same stride, padding, dilation and groups. Likewise
    ``dw[c, f, p, q] = sum_{n, i, j} x[n, c, i, j] * dyf[n, g*Fg + f, i*sh + p*rh, j*sw + q*rw]``
    and ``db[f] = sum_{n, i, j} dy[n, f, i, j]``.

    Parameters
    ----------
    dy : array_like, shape (N, C_out, OH, OW), or (C_out, OH, OW) for an unbatched x
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        The forward input.
    w : array_like, shape (C_in, C_out / groups, KH, KW)
        The forward filters.
    stride, padding, output_padding, groups, dilation
        Exactly as given to the forward pass.
    threads, algorithm
        As for :func:`conv_transpose2d_forward`.
    need_dx : bool, default True
        ``False`` skips the input gradient (returned as None).

    Returns
    -------
    dx : ndarray, shape of x, or None when need_dx is False
    dw : ndarray, shape (C_in, C_out / groups, KH, KW)
    db : ndarray, shape (C_out,)

    Raises
    ------
    ValueError
        As for the forward pass, and when ``dy`` does not have the forward output's shape.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> x = np.array([[[[1.0, 2.0]]]])
    >>> w = np.array([[[[1.0, 10.0]]]])
    >>> dx, dw, db = conv_transpose2d_backward(np.array([[[[1.0, 0.0, 0.0, 1.0]]]]), x, w,
    ...                                        stride=2)
    >>> dx, dw
    (array([[[[ 1., 10.]]]]), array([[[[1., 2.]]]]))
    """
    func = "conv_transpose2d_backward"
    dy = as_array(func, "dy", dy)
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    geo, op = check_conv_transpose_args(func, x, w, None, stride, padding, output_padding,
                                        groups, dilation)
    if dy.shape != geo.yshape:
        raise ValueError(
            f"{func}: dy must have the forward output's shape {geo.yshape} for x.shape="
            f"{x.shape}, w.shape={w.shape}, stride={geo.stride}, padding={geo.pads}, "
            f"output_padding={op}, dilation={geo.dilation}; got dy.shape={dy.shape}"
        )
    nt = resolve_threads(func, threads)
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    (dy4, _), (x4, _) = as_batch(dy), as_batch(x)
    # the gradient of the full scatter: zero where the crop threw it away
    dyf = zero_pad(dy4, geo.pads) if any(sum(geo.pads, ())) else dy4
    dx = None
    if need_dx:
        dx = np.empty(x4.shape, x.dtype)
        _forward(func, algorithm, dyf, w, np.zeros(w.shape[0], x.dtype), dx, geo, nt)
        dx = dx if geo.batched else dx[0]
    dw = np.empty(w.shape, x.dtype)
    _backward(func, algorithm, x4, dyf, w, None, dw, geo, nt)
    db = dy4.sum(axis=(0, 2, 3))
    return dx, dw, db


def _pad(x, geo):
    """x padded as the geometry says (x itself when there is no padding)."""
    if not any(sum(geo.pads, ())):
        return x
    return zero_pad(x, geo.pads) if geo.padding_mode == "zeros" else \
        pad_input(x, geo.pads, geo.padding_mode)


def _forward(func, algorithm, xp, w, b, y, geo, nt):
    """y = the convolution of xp with w, by the chosen route (y is 4-D, preallocated)."""
    (sh, sw), (rh, rw), G = geo.stride, geo.dilation, geo.groups
    if _choose(func, algorithm, w.shape, y.shape, G) == "direct":
        _conv.conv2d_forward(xp, w, b, y, sh, sw, rh, rw, G, nt)
    else:
        _forward_im2col(xp, w, b, y, sh, sw, rh, rw, G, nt)


def _backward(func, algorithm, dy, xp, w, dxp, dw, geo, nt):
    """Fill dw (the weight gradient, unless xp is None) and dxp (the gradient of the
    padded input, accumulated into zeros, unless dxp is None), by the chosen route."""
    (sh, sw), (rh, rw), G = geo.stride, geo.dilation, geo.groups
    if _choose(func, algorithm, w.shape, dy.shape, G) == "direct":
        if xp is not None:
            _conv.conv2d_backward_weight(dy, xp, dw, sh, sw, rh, rw, G, nt)
        if dxp is not None:
            _conv.conv2d_backward_input(dy, w, dxp, sh, sw, rh, rw, G, nt)
    else:
        part = _backward_im2col(dy, xp, w, dxp, sh, sw, rh, rw, G, nt)
        if xp is not None:
            dw[...] = part


# --------------------------------------------------------------------------- im2col route

#: most elements the im2col route's column buffer may hold at once (32 MiB of float32);
#: larger batches are processed in chunks of samples.
IM2COL_MAX_ELEMENTS = 1 << 23

_ALGORITHMS = ("auto", "direct", "im2col", "fast")

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


def _choose(func, algorithm, wshape, yshape, groups=1, plain=False):
    """The route to take: the user's choice, or by shape for ``'auto'``.

    ``plain`` says the padding is zeros and there is no dilation: with one group and a
    non-empty batch, that is what the fast route takes. Any other convolution asked for
    ``'fast'`` goes to ``'im2col'``.
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"{func}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    fast = plain and groups == 1 and yshape[0] > 0
    if algorithm == "fast":
        return "fast" if fast else "im2col"
    if algorithm != "auto":
        return algorithm
    # Register tiles and a matrix product only pay for their copy when each copied
    # element is reused by several filters; with one or two filters per group the direct
    # loops win.
    if yshape[1] // groups < 3:
        return "direct"
    return "fast" if fast else "im2col"


def _plain(geo):
    """Zeros padding and no dilation (see :func:`_choose`)."""
    return geo.padding_mode == "zeros" and geo.dilation == (1, 1)


#: below this many elements a copy loop runs on one thread: waking a second, sleeping
#: OpenMP thread costs ~70 us here, as long as copying a million floats on one core.
PARALLEL_MIN_ELEMENTS = 1 << 20


def _threads_for(elements, nt):
    return threads_for(elements, nt, PARALLEL_MIN_ELEMENTS)


def _chunks(N, rows, P):
    """Split the batch so that a (rows, chunk*P) column buffer stays bounded."""
    step = max(1, min(N, IM2COL_MAX_ELEMENTS // max(1, rows * P)))
    return [(n0, min(N, n0 + step)) for n0 in range(0, N, step)], step


def _forward_im2col(xp, w, b, y, sh, sw, rh, rw, G, nt):
    """y = w @ im2col(xp) + b, a chunk of the batch at a time (one product per group)."""
    N, F, OH, OW = y.shape
    _, Cg, KH, KW = w.shape
    C, Fg = xp.shape[1], F // G
    K, P = Cg * KH * KW, OH * OW  # rows of one group's block of cols
    w2 = w.reshape(F, K)
    spans, step = _chunks(N, C * KH * KW, P)
    buf = _workspace("cols", C * KH * KW * step * P, xp.dtype)
    out = _workspace("yt", F * step * P, xp.dtype)
    for n0, n1 in spans:
        nb = n1 - n0
        cols = buf[: C * KH * KW * nb * P].reshape(C * KH * KW, nb * P)
        _conv.im2col(xp[n0:n1], cols, KH, KW, OH, OW, sh, sw, rh, rw,
                     _threads_for(cols.size, nt))
        yt = out[: F * nb * P].reshape(F, nb * P)
        for g in range(G):  # filters g*Fg... read the rows of channels g*Cg...
            np.matmul(w2[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K],
                      out=yt[g * Fg:(g + 1) * Fg])
        _conv.bias_transpose(yt, b, y[n0:n1].reshape(nb, F, P), _threads_for(yt.size, nt))


def _backward_im2col(dy, xp, w, dxp, sh, sw, rh, rw, G, nt):
    """dw = dy @ cols^T and dcols = w^T @ dy per group, then col2im; returns dw, fills dxp.

    ``xp=None`` skips the weight gradient (returns None), ``dxp=None`` the input gradient.
    """
    N, F, OH, OW = dy.shape
    _, Cg, KH, KW = w.shape
    Fg = F // G
    CK = G * Cg * KH * KW  # rows of cols: every channel's taps
    K, P = Cg * KH * KW, OH * OW
    w2 = w.reshape(F, K)
    dw = np.zeros((F, K), dy.dtype) if xp is not None else None
    spans, step = _chunks(N, CK, P)
    buf = _workspace("cols", CK * step * P, dy.dtype) if xp is not None else None
    dbuf = _workspace("dcols", CK * step * P, dy.dtype) if dxp is not None else None
    tbuf = _workspace("yt", F * step * P, dy.dtype)
    part = np.empty((F, K), dy.dtype) if len(spans) > 1 and xp is not None else dw
    for n0, n1 in spans:
        nb = n1 - n0
        dyt = tbuf[: F * nb * P].reshape(F, nb * P)
        _conv.transpose_nf(dy[n0:n1].reshape(nb, F, P), dyt, _threads_for(dyt.size, nt))
        if xp is not None:
            cols = buf[: CK * nb * P].reshape(CK, nb * P)
            _conv.im2col(xp[n0:n1], cols, KH, KW, OH, OW, sh, sw, rh, rw,
                         _threads_for(cols.size, nt))
            for g in range(G):
                np.matmul(dyt[g * Fg:(g + 1) * Fg], cols[g * K:(g + 1) * K].T,
                          out=part[g * Fg:(g + 1) * Fg])
            if part is not dw:
                dw += part
        if dxp is not None:
            dcols = dbuf[: CK * nb * P].reshape(CK, nb * P)
            for g in range(G):
                np.matmul(w2[g * Fg:(g + 1) * Fg].T, dyt[g * Fg:(g + 1) * Fg],
                          out=dcols[g * K:(g + 1) * K])
            _conv.col2im(dcols, dxp[n0:n1], KH, KW, OH, OW, sh, sw, rh, rw,
                         _threads_for(dcols.size, nt))
    return None if dw is None else dw.reshape(w.shape)


# --------------------------------------------------------------------------- fast route
# cycnn/_fastconv.pyx explains the route. This part sizes it: the register tile comes
# from the build variant that was loaded, the size of a thread's buffers from the L2
# cache the CPU reports (cycnn/_caches.py), and conv2d_forward / conv2d_backward call the
# two functions below when _choose says "fast".

#: the share of one core's L2 cache that one thread's buffers (its copy of the input
#: chunk, the outputs and, backward, their gradients) may fill: all of it. Each chunk
#: pays fixed costs (the rows a window shares with the next chunk are copied again, and
#: every weight-gradient tile adds its lanes up once per chunk), and on wide layers
#: fewer, larger chunks gained more than a cache-resident chunk saved: on layer W of
#: benchmarks/sweep_tiles.py half the L2 was 1.06 to 1.15 off the best, the whole L2
#: 1.00 to 1.07 (AMD EPYC, 1 MiB of L2, one and two threads), and LeNet's layers, whose
#: chunks hold whole images either way (layer C in float64: 28 rows of 32), ran as fast
FAST_L2_FRACTION = 1.0

#: bytes of per-thread buffer the fast route aims for (read at each call, so a sweep can
#: change it)
FAST_CHUNK_BYTES = int(_caches.per_core("L2") * FAST_L2_FRACTION)

#: the fast route's backward pass sums the weight gradient per group of images (a task
#: for one thread), then the groups in order: at most this many groups, and at most
#: FAST_PARTIAL_ELEMENTS partial sums
FAST_GROUPS = 16
FAST_PARTIAL_ELEMENTS = 1 << 20

#: what copying one element of the input costs, in multiply-adds of one lane, when the
#: planner weighs fewer copies of the input against lanes thrown away (twice this for
#: strides > 1). The rows copied are short (8 to 58 values on the layers of
#: benchmarks/sweep_tiles.py), so a copied value costs more than a multiply-add: any
#: weight from 12 to 32 picks the layout that the sweep measured fastest on all of its
#: layers on the AMD EPYC of docs/performance.md (4 or less took three copies where one
#: was 4 to 33 % faster, 40 or more one copy of LeNet's layer B where five were 7 to 20 %
#: faster)
FAST_COPY_WEIGHT = 16

#: for benchmarks/sweep_tiles.py: force the number of shifted copies (an int), or "most"
#: for one per kernel column; None lets the planner choose
FAST_FORCE_COPIES = None

_plans: dict = {}


def _roundup(n, m):
    return -(-n // m) * m


class _FastPlan:
    """Sizes and offsets for one layer shape, dtype and pass (see _fastconv.pyx)."""

    def __init__(self, xshape, wshape, stride, pads, dtype, backward, need_dx, nt, budget):
        N, C, H, W = xshape
        F, _, KH, KW = wshape
        (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
        tile = _fastconv.TILE
        isz = np.dtype(dtype).itemsize
        nl = tile["nv"] * tile["vector_bytes"] // isz  # lanes of one register tile
        OH = (H + pt + pb - KH) // sh + 1
        OW = (W + pl + pr - KW) // sw + 1
        K = C * KH * KW
        # the tile heights that waste fewest rows on F filters and on K taps (the taller on
        # a tie: more reuse of each load)
        shapes = tile["shapes"]
        mr, kr = min(shapes, key=lambda s: (_roundup(F, s[0]), -s[0]))
        self.mrd = min((s[0] for s in shapes), key=lambda m: (_roundup(K, m), -m))
        self.mr = mr
        self.Fp, self.Kdot, self.Kdx = _roundup(F, mr), _roundup(K, kr), _roundup(K, self.mrd)
        align = max(1, 64 // isz)

        def sizes(rows, gi, nq, Wc):
            Hqc = rows + (KH - 1) // sh
            ldw = _roundup(rows * gi * Wc, nl)
            plane = Hqc * gi * Wc
            # the largest offset a tap reads from (koff below), then the lanes after it
            kmax = ((min(nq, KW) - 1) * C + C - 1) * sh * plane \
                + max(p % sh * plane + p // sh * gi * Wc for p in range(KH)) \
                + (KW - 1) // nq * (nq // sw)
            sq = _roundup(max(nq * C * sh * plane, kmax + ldw), align)
            per = sq + self.Fp * ldw
            if backward and need_dx:
                per += sq
            return Hqc, ldw, sq, _roundup(per, align)

        def images(Wc):
            """Images per chunk: a small image alone leaves most lanes of its last
            register tile empty; take the fewest that fill them to within 3 %. Backward,
            at least enough for 16 vectors of lanes: the weight gradient's partial sums
            are added up once per chunk, which costs as much as 8 vectors of lanes."""
            lanes = OH * Wc
            least = 1 if not backward else max(1, -(-16 * nl // (tile["nv"] * lanes)))
            if lanes * least >= 8 * nl:
                return min(N, least)
            fill = [(g * lanes / _roundup(g * lanes, nl), -g) for g in range(least, least + 8)]
            return min(N, next((-g for f, g in fill if f >= 0.97), -max(fill)[1]))

        # Copies of x per chunk: one per kernel column (nq = KW, every lane an output) or
        # per column phase (nq a multiple of sw, fewer copies, Wc - OW lanes of every row
        # thrown away). Cost per image: the multiply-adds of every lane of its tiles (the
        # lanes thrown away included) plus the values copied, FAST_COPY_WEIGHT each.
        best = None
        for nq in sorted({KW} | set(range(sw, KW, sw))):
            Wc = OW + (KW - 1) // nq * (nq // sw)
            gi = images(Wc)
            lanes = _roundup(gi * OH * Wc, nl) / gi
            cost = self.Fp * K * lanes + FAST_COPY_WEIGHT * (1 + (sw > 1)) * \
                nq * C * sh * (OH + (KH - 1) // sh) * Wc
            if FAST_FORCE_COPIES == nq or (FAST_FORCE_COPIES == "most" and nq == KW):
                cost = -1
            if best is None or cost < best[0]:
                best = (cost, nq, Wc, gi)
        _, nq, Wc, gi = best
        self.nq, self.Wc = nq, Wc
        # the most output rows per chunk whose buffers fit the budget (at least one row);
        # forward, enough chunks that every thread gets work when the batch is small
        rows = OH
        blocks = -(-N // gi)
        if not backward and blocks < 2 * nt:
            rows = max(1, -(-OH // -(-2 * nt // blocks)))
        while rows > 1 and sizes(rows, gi, nq, Wc)[3] * isz > budget:
            rows = max(1, min(rows - 1, rows * budget // (sizes(rows, gi, nq, Wc)[3] * isz)))
        while gi > 1 and sizes(rows, gi, nq, Wc)[3] * isz > budget:
            gi -= 1
        self.rows, self.gi = rows, gi
        self.Hqc, self.ldw, self.sq, self.per = sizes(rows, gi, nq, Wc)
        self.bytes_per_thread = self.per * isz
        c, p, q = np.meshgrid(np.arange(C), np.arange(KH), np.arange(KW), indexing="ij")
        koff = (((q % nq * C + c) * sh + p % sh) * self.Hqc + p // sh) * gi * Wc \
            + q // nq * (nq // sw)
        self.koff = np.zeros(max(self.Kdot, self.Kdx), np.int64)
        self.koff[:K] = koff.ravel()
        self.foff = np.arange(F, dtype=np.int64) * self.ldw
        # the input gradient's taps, the channel varying fastest (the tiles of _dx_tiles
        # then write to different planes of the copy), and the offsets they write to
        self.dtap = np.ascontiguousarray(
            np.arange(K, dtype=np.int64).reshape(C, KH, KW).transpose(2, 1, 0).ravel())
        self.doff = np.ascontiguousarray(self.koff[self.dtap])
        # packed weights at the start of the workspace
        pw = self.Kdx * F if backward else self.Fp * K + self.Fp
        self.pw = _roundup(pw, align)
        # backward: groups of image blocks whose partial sums fit FAST_PARTIAL_ELEMENTS;
        # the count depends on the shapes only, not on the threads, so neither does the sum
        self.groups = max(1, min(-(-N // gi), FAST_GROUPS,
                                 FAST_PARTIAL_ELEMENTS // (self.Fp * self.Kdot)))
        self.tasks = self.groups if backward else -(-N // gi) * -(-OH // rows)
        # the invariants the kernels rely on (see the header of _fastconv.pyx)
        if not (int(self.koff.max()) + self.ldw <= self.sq and 1 <= rows <= OH and gi >= 1):
            raise RuntimeError(f"cycnn: bad fast-route plan for x={xshape}, w={wshape}")

    def workspace(self, threads):
        """Elements of workspace the kernels need on ``threads`` threads."""
        return self.pw + threads * self.per + 64


def _fast_plan(xshape, wshape, stride, pads, dtype, backward, need_dx, nt):
    budget = FAST_CHUNK_BYTES
    key = (xshape, wshape, stride, pads, np.dtype(dtype).char, backward, need_dx,
           nt if not backward else 0, budget, FAST_COPY_WEIGHT, FAST_FORCE_COPIES)
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) > 256:
            _plans.clear()
        plan = _plans[key] = _FastPlan(xshape, wshape, stride, pads, dtype, backward,
                                       need_dx, nt, budget)
    return plan


#: below this many multiply-adds a fast-route pass runs on one thread (waking a second,
#: sleeping thread costs about as much as a million multiply-adds take on one core)
FAST_PARALLEL_MIN_MACS = 1 << 20


def _forward_fast(x, w, b, y, stride, pads, nt):
    """y = conv(x, w) + b by register tiles (_fastconv.forward)."""
    plan = _fast_plan(x.shape, w.shape, stride, pads, x.dtype, False, False, nt)
    used = min(threads_for(y.size * w[0].size, nt, FAST_PARALLEL_MIN_MACS), plan.tasks)
    ws = _workspace("fast", plan.workspace(used), x.dtype)
    (sh, sw), ((pt, _), (pl, _)) = stride, pads
    _fastconv.forward(x, w, b, plan.koff, y, ws, sh, sw, pt, pl, plan.rows, plan.gi,
                      plan.nq, plan.Wc, plan.mr, plan.sq, plan.ldw, plan.pw, plan.per, used)


def _backward_fast(dy, x, w, stride, pads, need_dx, nt):
    """(dx, dw, db) by register tiles (_fastconv.backward), or None where a NaN or an
    infinity in x or w would meet the spare lanes (the caller then takes another route)."""
    if need_dx and not np.isfinite(w).all():
        return None
    plan = _fast_plan(x.shape, w.shape, stride, pads, x.dtype, True, need_dx, nt)
    dt, F, G = x.dtype, w.shape[0], plan.groups
    dx = np.empty(x.shape, dt) if need_dx else np.zeros((1, 1, 1, 1), dt)
    dw = np.empty(w.shape, dt)
    db = np.empty(F, dt)
    pdw = _workspace("fast_pdw", G * plan.Fp * plan.Kdot, dt).reshape(G, plan.Fp, plan.Kdot)
    pdb = _workspace("fast_pdb", G * plan.Fp, dt).reshape(G, plan.Fp)
    bad = np.empty(G, np.int8)
    macs = dy.size * w[0].size * (2 if need_dx else 1)
    used = min(threads_for(macs, nt, FAST_PARALLEL_MIN_MACS), plan.tasks)
    # adding up the groups' partial sums (one add each) pays for a second thread only
    # when there are about as many of them as multiply-adds in a parallel pass
    summing = min(threads_for(pdw.size, nt, FAST_PARALLEL_MIN_MACS), F)
    ws = _workspace("fast", plan.workspace(used), dt)
    (sh, sw), ((pt, _), (pl, _)) = stride, pads
    _fastconv.backward(dy, x, w, plan.koff, plan.foff, plan.dtap, plan.doff, dx,
                       dw.reshape(F, -1), db, pdw, pdb, bad, ws, need_dx, sh, sw, pt, pl,
                       plan.rows, plan.gi, plan.nq, plan.Wc, plan.mr, plan.mrd, plan.sq,
                       plan.ldw, plan.pw, plan.per, used, summing)
    if bad.any():
        return None
    return (dx if need_dx else None), dw, db
