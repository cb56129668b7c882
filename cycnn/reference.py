"""The slow, obvious route: convolution and its gradients in vectorised NumPy.

This module is independent of the compiled kernels: it imports only NumPy and
:mod:`cycnn.geometry` (shapes and argument checks). It computes the backward pass the
way the docs derive it, with whole-array operations and no Python loops over pixels:

* ``dx``: dilate ``dy`` by the stride, pad it by ``K - 1`` on each side (plus any rows
  or columns the forward pass never reached), and cross-correlate it with stride 1 with
  the 180-degree-rotated filters; then drop the forward padding;
* ``dw``: cross-correlate the padded input with the dilated ``dy``, stride 1 (skipping
  the zeros the dilation inserted);
* ``db``: sum ``dy`` over the batch and both spatial axes.

The docs teach with it and the tests use it as a second oracle next to PyTorch.
Inputs are used in float64 unless they are all float32.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._validate import as_array, as_float
from .geometry import check_conv_args, dilate, rotate180, zero_pad

__all__ = ["correlate", "conv2d_forward", "conv2d_backward"]


def correlate(a, k, spec):
    """Valid, stride-1 cross-correlation of the last two axes, contracted by ``spec``.

    ``a`` is ``(A0, A1, H, W)`` and ``k`` is ``(K0, K1, KH, KW)``; the windows of ``a``
    have shape ``(A0, A1, H-KH+1, W-KW+1, KH, KW)`` and ``spec`` is the einsum that
    contracts them with ``k`` (for instance ``'ncijpq,fcpq->nfij'`` for the forward pass).
    """
    kh, kw = k.shape[-2:]
    windows = sliding_window_view(a, (kh, kw), axis=(-2, -1))
    return np.einsum(spec, windows, k, optimize=True)


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """Forward convolution through sliding windows and one einsum.

    Same arguments, shapes and result as :func:`cycnn.conv2d_forward`.
    """
    func = "reference.conv2d_forward"
    x, w = as_array(func, "x", x), as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    (sh, sw), pads, _ = check_conv_args(func, x, w, b, stride, padding)
    x, w, b = as_float(func, x=x, w=w, b=b)
    xp = zero_pad(x, pads)
    # stride-1 correlation, then keep every sh-th row and sw-th column
    y = correlate(xp, w, "ncijpq,fcpq->nfij")[:, :, ::sh, ::sw]
    if b is not None:
        y = y + b[None, :, None, None]
    return np.ascontiguousarray(y)


def conv2d_backward(dy, x, w, stride=1, padding=0):
    """Gradients of the convolution by dilation, padding and rotation (no kernels).

    Same arguments, shapes and results as :func:`cycnn.conv2d_backward`.
    """
    func = "reference.conv2d_backward"
    dy, x, w = (as_array(func, k, v) for k, v in (("dy", dy), ("x", x), ("w", w)))
    (sh, sw), pads, yshape = check_conv_args(func, x, w, None, stride, padding)
    if dy.shape != yshape:
        raise ValueError(f"{func}: dy.shape={dy.shape} but the forward output is {yshape}")
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    (pt, pb), (pl, pr) = pads
    _, _, H, W = x.shape
    _, _, KH, KW = w.shape
    xp = zero_pad(x, pads)
    HP, WP = xp.shape[-2:]

    # 1. stride -> dilation: put each dy[i, j] where its window started, (i*sh, j*sw)
    dyd = dilate(dy, (sh, sw))
    HD, WD = dyd.shape[-2:]

    # 2. dx: a "full" correlation with the rotated filter. Pad by K-1 before; after, by
    #    K-1 plus the rows/columns of xp that no window reached (HP - (HD + KH - 1)).
    dyd_full = zero_pad(dyd, ((KH - 1, HP - HD), (KW - 1, WP - WD)))
    dxp = correlate(dyd_full, rotate180(w), "nfijpq,fcpq->ncij")
    dx = dxp[:, :, pt:pt + H, pl:pl + W]  # backward through padding

    # 3. dw: correlate the padded input with the dilated dy, stride 1, keeping the
    #    KH x KW corner (rows past KH would pair dy with inputs no window used). The
    #    zeros the dilation inserted contribute nothing, so skip them: take each
    #    HD x WD window of xp at every sh-th row and sw-th column only. (Multiplying
    #    them would also turn a NaN or inf in x into NaN where no window reads it.)
    windows = sliding_window_view(xp, (HD, WD), axis=(-2, -1))[:, :, :KH, :KW, ::sh, ::sw]
    dw = np.einsum("ncpqij,nfij->fcpq", windows, dy, optimize=True)

    # 4. db: every output of filter f adds b[f] once
    db = dy.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(dx), np.ascontiguousarray(dw), db
