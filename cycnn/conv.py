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

from . import _caches, _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float
from .geometry import check_conv_args, zero_pad

_conv = _dispatch.load("_conv")
_fastconv = _dispatch.load("_fastconv")

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
    algorithm : {'auto', 'direct', 'im2col', 'fast'}, default 'auto'
        ``'direct'`` runs the loops of the equation above; ``'im2col'`` copies every
        window into a column and lets one BLAS matrix product do the sums (done in
        chunks of the batch so the copy stays bounded); ``'fast'`` keeps blocks of
        outputs in vector registers and reads the input through a per-thread, cache-sized
        copy (see the performance page); ``'auto'`` picks by shape (``'fast'`` for three
        or more filters). All give the same result to rounding.

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
    route = _choose(func, algorithm, w.shape, yshape)
    y = np.empty(yshape, x.dtype)
    if route == "fast":
        _forward_fast(x, w, b, y, (sh, sw), pads, nt)
        return y
    xp = zero_pad(x, pads) if any(sum(pads, ())) else x
    if route == "direct":
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
    algorithm : {'auto', 'direct', 'im2col', 'fast'}, default 'auto'
        As for :func:`conv2d_forward`. Where ``x`` or ``w`` holds a NaN or an infinity,
        ``'fast'`` hands over to ``'im2col'``, whose IEEE semantics are exactly those of
        the direct loops.
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
    route = _choose(func, algorithm, w.shape, yshape)
    if route == "fast":
        grads = _backward_fast(dy, x, w, (sh, sw), pads, need_dx, nt)
        if grads is not None:
            return grads
        route = "im2col"  # a NaN or inf that the fast route's spare lanes would spread
    (pt, pb), (pl, pr) = pads
    N, C, H, W = x.shape
    xp = zero_pad(x, pads) if any(sum(pads, ())) else x
    dxp = np.zeros(xp.shape, x.dtype) if need_dx else None
    if route == "direct":
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


def _choose(func, algorithm, wshape, yshape):
    """The route to take: the user's choice, or by shape for ``'auto'``."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"{func}: algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    if algorithm != "auto":
        return algorithm
    F, C, KH, KW = wshape
    # Register tiles (and a matrix product) only pay for their copy when each copied
    # element is reused by several filters; with one or two filters the direct loops win.
    return "fast" if F >= 3 else "direct"


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


# --------------------------------------------------------------------------- fast route
# cycnn/_fastconv.pyx explains the route. This part sizes it: the register tile comes
# from the build variant that was loaded, the size of a thread's buffers from the L2
# cache the CPU reports (cycnn/_caches.py), and conv2d_forward / conv2d_backward call the
# two functions below when _choose says "fast".

#: the share of one core's L2 cache that one thread's buffers (its copy of the input
#: chunk, the outputs and, backward, their gradients) may fill; benchmarks/sweep_tiles.py
#: shows how the time depends on it
FAST_L2_FRACTION = 0.5

#: bytes of per-thread buffer the fast route aims for (read at each call, so a sweep can
#: change it)
FAST_CHUNK_BYTES = int(_caches.per_core("L2") * FAST_L2_FRACTION)

#: the fast route's backward pass sums the weight gradient per group of images (a task
#: for one thread), then the groups in order: at most this many groups, and at most
#: FAST_PARTIAL_ELEMENTS partial sums
FAST_GROUPS = 16
FAST_PARTIAL_ELEMENTS = 1 << 20

#: what one vector of copying costs, in vector multiply-adds, when the planner weighs
#: fewer copies of the input against lanes thrown away (twice this for strides > 1)
FAST_COPY_WEIGHT = 4

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
                per += self.Kdx * ldw + sq
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
        # thrown away). Cost: the vector FMAs of the tiles plus the copy, weighed by what
        # a vector of copy costs in FMAs here (row loops are short).
        best = None
        for nq in sorted({KW} | set(range(sw, KW, sw))):
            Wc = OW + (KW - 1) // nq * (nq // sw)
            gi = images(Wc)
            tiles = _roundup(gi * OH * Wc, nl) / gi
            cost = self.Fp * K * tiles + FAST_COPY_WEIGHT * (1 + (sw > 1)) * \
                nq * C * sh * (OH + (KH - 1) // sh) * Wc
            if FAST_FORCE_COPIES in (nq, "most" if nq == KW else None):
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
    ws = _workspace("fast", plan.workspace(used), dt)
    (sh, sw), ((pt, _), (pl, _)) = stride, pads
    _fastconv.backward(dy, x, w, plan.koff, plan.foff, dx, dw.reshape(F, -1), db, pdw, pdb,
                       bad, ws, need_dx, sh, sw, pt, pl, plan.rows, plan.gi, plan.nq,
                       plan.Wc, plan.mr, plan.mrd, plan.sq, plan.ldw, plan.pw, plan.per, used)
    if bad.any():
        return None
    return (dx if need_dx else None), dw, db
