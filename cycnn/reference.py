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

The rest of the convolution family reduces to that (docs/conv-dilation-groups.md and
docs/transposed-conv.md):

* a **dilated** kernel is an ordinary kernel with zeros between its taps
  (:func:`cycnn.dilate` applied to ``w``); its gradient is the gradient of that larger
  kernel, read at the real taps;
* **groups** are independent convolutions side by side, one per group, joined along
  the channel axis;
* **padding modes** other than zeros pad with copies of input elements (``np.pad``
  here), and the gradient of each copy is added back onto its original;
* a **transposed** convolution is a full correlation of the stride-dilated input with
  the rotated filters, as ``dx`` above; its input gradient is an ordinary convolution.

The docs teach with it and the tests use it as a second oracle next to PyTorch.
Inputs are used in float64 unless they are all float32.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._validate import as_array, as_float
from .geometry import (
    check_conv_args,
    check_conv_transpose_args,
    dilate,
    rotate180,
    zero_pad,
)

__all__ = ["correlate", "conv2d_forward", "conv2d_backward", "conv_transpose2d_forward",
           "conv_transpose2d_backward"]

#: cycnn's (PyTorch's) padding modes as ``np.pad`` spells them
NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}


def correlate(a, k, spec):
    """Valid, stride-1 cross-correlation of the last two axes, contracted by ``spec``.

    ``a`` is ``(A0, A1, H, W)`` and ``k`` is ``(K0, K1, KH, KW)``; the windows of ``a``
    have shape ``(A0, A1, H-KH+1, W-KW+1, KH, KW)`` and ``spec`` is the einsum that
    contracts them with ``k`` (for instance ``'ncijpq,fcpq->nfij'`` for the forward pass).
    """
    kh, kw = k.shape[-2:]
    windows = sliding_window_view(a, (kh, kw), axis=(-2, -1))
    return np.einsum(spec, windows, k, optimize=True)


def _groups(C, F, G):
    """The channel and filter slices of each of G groups: group g pairs the g-th Cg = C/G
    channels with the g-th Fg = F/G filters."""
    Cg, Fg = C // G, F // G
    return [(slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)) for g in range(G)]


def _pad(x, pads, mode):
    """x padded by NumPy's own ``np.pad`` (the kernels' route pads with cycnn.geometry)."""
    width = ((0, 0), (0, 0), *pads)
    return np.pad(x, width, mode=NP_PAD_MODES[mode])


def _unpad(dxp, pads, mode, H, W):
    """The gradient of x from that of the padded x: every padded position holds a copy of
    one input element (or a zero), so that element collects the gradient of the copy."""
    source = np.arange(H * W).reshape(H, W)  # which element each padded position copies
    held = np.pad(source, pads, constant_values=-1) if mode == "zeros" else \
        np.pad(source, pads, mode=NP_PAD_MODES[mode])
    keep = held >= 0
    dx = np.zeros(dxp.shape[:2] + (H * W,), dxp.dtype)
    np.add.at(dx, (Ellipsis, held[keep]), dxp[..., keep])
    return dx.reshape(dxp.shape[:2] + (H, W))


def _unbatched(x, dy=None):
    """A batch axis for the arrays of one sample, and whether they came with one."""
    if x.ndim == 3:
        return x[None], None if dy is None else dy[None], False
    return x, dy, True


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros"):
    """Forward convolution through sliding windows and one einsum per group.

    Same arguments, shapes and result as :func:`cycnn.conv2d_forward`. A dilated kernel
    is applied as the kernel :func:`cycnn.dilate` spreads out: zeros between the taps.
    """
    func = "reference.conv2d_forward"
    x, w = as_array(func, "x", x), as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    geo = check_conv_args(func, x, w, b, stride, padding, dilation, groups, padding_mode)
    x, w, b = as_float(func, x=x, w=w, b=b)
    x, _, batched = _unbatched(x)
    (sh, sw), G = geo.stride, geo.groups
    xp = _pad(x, geo.pads, geo.padding_mode)
    wd = dilate(w, geo.dilation)  # zeros between the taps
    y = np.empty((x.shape[0], w.shape[0]) + geo.yshape[-2:], x.dtype)
    for ci, fi in _groups(x.shape[1], w.shape[0], G):
        # stride-1 correlation, then keep every sh-th row and sw-th column
        y[:, fi] = correlate(xp[:, ci], wd[fi], "ncijpq,fcpq->nfij")[:, :, ::sh, ::sw]
    if b is not None:
        y += b[None, :, None, None]
    return y if batched else y[0]


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros"):
    """Gradients of the convolution by dilation, padding and rotation (no kernels).

    Same arguments, shapes and results as :func:`cycnn.conv2d_backward`. A dilated
    kernel is the kernel ``wd = dilate(w, (rh, rw))`` with zeros between its taps; the
    steps below give the gradient of ``wd``, and ``w``'s entries are its taps at every
    ``rh``-th row and ``rw``-th column. Groups are separate convolutions side by side.
    """
    func = "reference.conv2d_backward"
    dy, x, w = (as_array(func, k, v) for k, v in (("dy", dy), ("x", x), ("w", w)))
    geo = check_conv_args(func, x, w, None, stride, padding, dilation, groups, padding_mode)
    if dy.shape != geo.yshape:
        raise ValueError(f"{func}: dy.shape={dy.shape} but the forward output is {geo.yshape}")
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    x, dy, batched = _unbatched(x, dy)
    (sh, sw), (rh, rw) = geo.stride, geo.dilation
    (pt, pb), (pl, pr) = geo.pads
    _, C, H, W = x.shape
    xp = _pad(x, geo.pads, geo.padding_mode)
    HP, WP = xp.shape[-2:]
    wd = dilate(w, (rh, rw))  # EH x EW, zeros between the taps
    EH, EW = wd.shape[-2:]

    # 1. stride -> dilation: put each dy[i, j] where its window started, (i*sh, j*sw)
    dyd = dilate(dy, (sh, sw))
    HD, WD = dyd.shape[-2:]

    # 2. dx: a "full" correlation with the rotated filter. Pad by K-1 before; after, by
    #    K-1 plus the rows/columns of xp that no window reached (HP - (HD + EH - 1)).
    dyd_full = zero_pad(dyd, ((EH - 1, HP - HD), (EW - 1, WP - WD)))
    dxp = np.empty(xp.shape, x.dtype)
    for ci, fi in _groups(C, w.shape[0], geo.groups):
        dxp[:, ci] = correlate(dyd_full[:, fi], rotate180(wd[fi]), "nfijpq,fcpq->ncij")
    if geo.padding_mode == "zeros":
        dx = dxp[:, :, pt:pt + H, pl:pl + W]  # backward through padding
    else:
        dx = _unpad(dxp, geo.pads, geo.padding_mode, H, W)  # each copy's gradient goes home

    # 3. dw: correlate the padded input with the dilated dy, stride 1, keeping the
    #    EH x EW corner (rows past EH would pair dy with inputs no window used) at the
    #    kernel's real taps (every rh-th row, rw-th column). The zeros the dilation of dy
    #    inserted contribute nothing, so skip them: take each HD x WD window of xp at every
    #    sh-th row and sw-th column only. (Multiplying them would also turn a NaN or inf
    #    in x into NaN where no window reads it.)
    windows = sliding_window_view(xp, (HD, WD), axis=(-2, -1))[:, :, :EH:rh, :EW:rw, ::sh, ::sw]
    dw = np.empty(w.shape, x.dtype)
    for ci, fi in _groups(C, w.shape[0], geo.groups):
        dw[fi] = np.einsum("ncpqij,nfij->fcpq", windows[:, ci], dy[:, fi], optimize=True)

    # 4. db: every output of filter f adds b[f] once
    db = dy.sum(axis=(0, 2, 3))
    dx = np.ascontiguousarray(dx)
    return (dx if batched else dx[0]), dw, db


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1):
    """Transposed convolution as a full correlation with the rotated filters (no kernels).

    Same arguments, shapes and result as :func:`cycnn.conv_transpose2d_forward`. Input
    element ``x[i, j]`` scatters the (dilated) filter onto the output at ``(i*sh, j*sw)``.
    Gathered the other way round, output ``(u, v)`` sums the inputs whose windows cover it,
    each times the filter tap that lands there: dilate ``x`` by the stride, pad it by
    ``EH - 1`` rows on each side (``EH = rh * (KH - 1) + 1``, plus ``output_padding`` at
    the bottom) and correlate it, stride 1, with the 180-degree-rotated dilated filter,
    its two channel axes read the other way round; then crop the padding.
    """
    func = "reference.conv_transpose2d_forward"
    x, w = as_array(func, "x", x), as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    geo, (oph, opw) = check_conv_transpose_args(func, x, w, b, stride, padding, output_padding,
                                                groups, dilation)
    x, w, b = as_float(func, x=x, w=w, b=b)
    x, _, batched = _unbatched(x)
    (pt, pb), (pl, pr) = geo.pads
    wd = dilate(w, geo.dilation)
    EH, EW = wd.shape[-2:]
    xd = dilate(x, geo.stride)
    xfull = zero_pad(xd, ((EH - 1, EH - 1 + oph), (EW - 1, EW - 1 + opw)))
    HZ, WZ = xfull.shape[2] - EH + 1, xfull.shape[3] - EW + 1  # the full scatter's size
    F = geo.yshape[-3]
    z = np.empty((x.shape[0], F, HZ, WZ), x.dtype)
    for ci, fi in _groups(x.shape[1], F, geo.groups):
        # w is (C_in, C_out / G, KH, KW): the sum runs over its first axis, c
        z[:, fi] = correlate(xfull[:, ci], rotate180(wd[ci]), "ncijpq,cfpq->nfij")
    y = z[:, :, pt:HZ - pb, pl:WZ - pr]
    if b is not None:
        y = y + b[None, :, None, None]
    y = np.ascontiguousarray(y)
    return y if batched else y[0]


def conv_transpose2d_backward(dy, x, w, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    """Gradients of the transposed convolution (no kernels).

    Same arguments, shapes and results as :func:`cycnn.conv_transpose2d_backward`. Put
    ``dy`` back on the full scatter (zeros where the forward crop threw rows away): then
    ``dx`` is the ordinary convolution of it with the same filters, stride, dilation and
    groups (:func:`conv2d_forward` here, keeping the first H x W outputs), and
    ``dw[c, f]`` correlates it with ``x[c]`` read at the stride: the windows of the full
    ``dy`` at every ``sh``-th row, at the taps ``p * rh``.
    """
    func = "reference.conv_transpose2d_backward"
    dy, x, w = (as_array(func, k, v) for k, v in (("dy", dy), ("x", x), ("w", w)))
    geo, _ = check_conv_transpose_args(func, x, w, None, stride, padding, output_padding,
                                       groups, dilation)
    if dy.shape != geo.yshape:
        raise ValueError(f"{func}: dy.shape={dy.shape} but the forward output is {geo.yshape}")
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    x, dy, batched = _unbatched(x, dy)
    (sh, sw), (rh, rw), G = geo.stride, geo.dilation, geo.groups
    _, _, H, W = x.shape
    _, _, KH, KW = w.shape
    dyf = zero_pad(dy, geo.pads)
    # dx: the convolution this one transposes, with w read as (F, C / G) = (C_in, C_out / G)
    dx = conv2d_forward(dyf, w, None, (sh, sw), 0, (rh, rw), G)[:, :, :H, :W]
    # dw[c, f, p, q] = sum_{n, i, j} x[n, c, i, j] * dyf[n, g*Fg + f, i*sh + p*rh, j*sw + q*rw]
    HD, WD = (H - 1) * sh + 1, (W - 1) * sw + 1
    windows = sliding_window_view(dyf, (HD, WD), axis=(-2, -1))
    windows = windows[:, :, :(KH - 1) * rh + 1:rh, :(KW - 1) * rw + 1:rw, ::sh, ::sw]
    dw = np.empty(w.shape, x.dtype)
    for ci, fi in _groups(x.shape[1], dy.shape[1], G):
        dw[ci] = np.einsum("nfpqij,ncij->cfpq", windows[:, fi], x[:, ci], optimize=True)
    db = dy.sum(axis=(0, 2, 3))
    dx = np.ascontiguousarray(dx)
    return (dx if batched else dx[0]), dw, db
