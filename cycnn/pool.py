"""2-D max and average pooling: forward pass, backward pass and the teaching helpers.

The public functions check their arguments, settle the dtype and allocate the outputs;
the loops themselves are in ``cycnn/_pool.pyx``. A pooling layer has no parameters: its
backward pass only decides how each output's gradient is shared among the inputs of its
window.

* Max pooling, ``y[n, c, i, j] = max_{p, q} x[n, c, i*sh - ph + p*rh, j*sw - pw + q*rw]``:
  the whole gradient goes to the one input that won the window. When several inputs tie
  for the maximum, the first in row-major order wins (PyTorch's rule), so the gradient is
  never duplicated.
* Average pooling, ``y[n, c, i, j] = sum_{p, q} x[n, c, i*sh - ph + p, j*sw - pw + q] / d``:
  every input of the window gets ``1 / d`` of the gradient, where ``d`` is the window's
  area ``KH*KW`` unless padding or ``divisor_override`` say otherwise.

Windows may overlap (stride smaller than the window); an input that belongs to several
windows adds up the gradients it receives from each. Padding follows PyTorch: at most half
the window on each side, never read (max pooling treats it as -inf, average pooling as
zeros that count towards the area only with ``count_include_pad``). Rows and columns that
no full window reaches are dropped, unless ``ceil_mode`` adds a last, partial window, which
PyTorch keeps only if it starts inside the input or the padding before it.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from . import _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float, as_int, as_pair, check_ndim, float_dtype, param_dtype
from .geometry import (
    as_batch,
    check_avg_pool_options,
    check_pool_args,
    pool_cache_geometry,
)

_pool = _dispatch.load("_pool")
_fastpool = _dispatch.load("_fastpool")

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "max_pool_mask",
    "distribute_value",
    "MaxPoolCache",
    "AvgPoolCache",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
]


# --------------------------------------------------------------------------- caches

class MaxPoolCache(NamedTuple):
    """What :func:`max_pool2d_backward` needs from the forward pass.

    Attributes
    ----------
    x_shape : tuple of int
        ``(N, C, H, W)`` of the forward input, or ``(C, H, W)`` for an unbatched one.
    size : (int, int)
        Window ``(KH, KW)``.
    stride : (int, int)
        ``(sh, sw)``.
    argmax : ndarray of int64, shape (N, C, OH, OW) or (C, OH, OW)
        For each output, the flat index ``h * W + w`` of its window's winner inside the
        ``H x W`` plane of its own sample and channel: the ``indices`` PyTorch's
        ``max_pool2d(..., return_indices=True)`` returns.
    dtype : numpy.dtype
        dtype of the forward input (float32 or float64).
    padding : (int, int), default (0, 0)
        ``(ph, pw)`` on each side.
    dilation : (int, int), default (1, 1)
        ``(rh, rw)``.
    ceil_mode : bool, default False
    """

    x_shape: tuple
    size: tuple
    stride: tuple
    argmax: np.ndarray
    dtype: np.dtype
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    ceil_mode: bool = False

    def win_counts(self):
        """How many windows each input won, shape ``x_shape``, int64.

        0 for an input that won no window. With non-overlapping windows the counts are
        0 or 1; with overlapping windows one input can win several.
        """
        *lead, H, W = self.x_shape
        planes = int(np.prod(lead, dtype=np.int64))
        base = np.arange(planes, dtype=np.int64).reshape(*lead, 1, 1) * (H * W)
        counts = np.bincount((base + self.argmax).ravel(), minlength=planes * H * W)
        return counts.reshape(self.x_shape)

    def mask(self):
        """Boolean mask of ``x_shape``: True where an input won at least one window.

        This is the mask that routes the gradient in :func:`max_pool2d_backward`;
        :meth:`win_counts` says how many windows each input won.
        """
        return self.win_counts() > 0


class AvgPoolCache(NamedTuple):
    """What :func:`avg_pool2d_backward` needs from the forward pass.

    Attributes
    ----------
    x_shape : tuple of int
        ``(N, C, H, W)`` of the forward input, or ``(C, H, W)``.
    size : (int, int)
        Window ``(KH, KW)``.
    stride : (int, int)
        ``(sh, sw)``.
    dtype : numpy.dtype
        dtype of the forward input (float32 or float64).
    padding : (int, int), default (0, 0)
    ceil_mode : bool, default False
    count_include_pad : bool, default True
    divisor_override : int or None, default None
    """

    x_shape: tuple
    size: tuple
    stride: tuple
    dtype: np.dtype
    padding: tuple = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None


# --------------------------------------------------------------------------- checks

def _check_cache(func, dy, cache, kind):
    """Check ``cache`` (a ``kind`` from the forward pass) and that ``dy`` fits it.

    The cache is read again as if it were user input: it is a plain tuple that may have
    been edited or built by hand, and the kernels index with its numbers. Returns the
    cache's dtype and its :class:`cycnn.geometry.PoolGeometry`.
    """
    if not isinstance(cache, kind):
        raise TypeError(
            f"{func}: cache must be the {kind.__name__} returned by the forward pass, "
            f"got {type(cache).__name__}"
        )
    where = f"{func} (cache)"
    x_shape, geo = pool_cache_geometry(where, cache.x_shape, cache.size, cache.stride,
                                       cache.padding, getattr(cache, "dilation", 1),
                                       cache.ceil_mode)
    dtype = param_dtype(where, cache.dtype)
    if dy.shape != geo.yshape:
        (KH, KW), (sh, sw) = geo.size, geo.stride
        extra = "" if geo.padding == (0, 0) else f", padding={geo.padding}"
        extra += "" if geo.dilation == (1, 1) else f", dilation={geo.dilation}"
        extra += ", ceil_mode=True" if geo.ceil_mode else ""
        raise ValueError(
            f"{func}: dy must have the forward output's shape {geo.yshape} for "
            f"x.shape={x_shape}, size=({KH}, {KW}), stride=({sh}, {sw}){extra}; "
            f"got dy.shape={dy.shape}"
        )
    return x_shape, dtype, geo


# --------------------------------------------------------------------------- max pooling

#: below this many input elements a pooling loop runs on one thread: waking a sleeping
#: OpenMP thread costs about as much as pooling a hundred thousand values on one core.
PARALLEL_MIN_ELEMENTS = 1 << 17


def _threads_for(elements, nt):
    return threads_for(elements, nt, PARALLEL_MIN_ELEMENTS)


#: the forward pass of 2x2 windows with stride 2 whose windows all lie inside x takes the
#: vectorised loop of _fastpool.pyx (the same maxima and winners as the general loops of
#: _pool.pyx, which the tests compare it with); False sends every window to the general loops
FAST_2X2 = True


def max_pool2d_forward(x, size=2, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                       threads=None):
    """Forward pass of 2-D max pooling.

    ``y[n, c, i, j] = max_{p, q} x[n, c, i*sh - ph + p*rh, j*sw - pw + q*rw]`` for
    ``0 <= p < KH`` and ``0 <= q < KW``, over the taps that land inside ``x``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
        Input batch, or one sample without the batch axis (as PyTorch accepts).
    size : int or (int, int), default 2
        Window ``(KH, KW)`` (PyTorch's ``kernel_size``), each at least 1.
    stride : int or (int, int), optional
        ``(sh, sw)``, each at least 1; ``None`` (the default) means ``stride = size``
        (non-overlapping windows). A stride smaller than the window makes windows overlap.
    padding : int or (int, int), default 0
        ``(ph, pw)``, added on both sides, at most half the window (``KH // 2``): the
        padding is never a winner (it acts as -inf).
    dilation : int or (int, int), default 1
        ``(rh, rw)``, at least 1: the step between the taps of a window.
    ceil_mode : bool, default False
        Round the output size up: a last, partial window is kept if it starts inside the
        input or the padding before it (PyTorch's rule).
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        ``OH = (H + 2*ph - rh*(KH - 1) - 1) // sh + 1`` (rounded up under ``ceil_mode``,
        see :func:`cycnn.conv_output_size`) and likewise ``OW``. float32 for a float32
        input, float64 otherwise (integers are computed in float64).
    cache : MaxPoolCache
        The input shape, the arguments and the ``argmax`` of every window (PyTorch's
        ``return_indices``), for :func:`max_pool2d_backward`. ``cache.mask()`` shows the
        winners.

    Raises
    ------
    ValueError
        ``x`` not 3-D or 4-D or empty, size, stride or dilation below 1, padding above half
        the window, window larger than the padded input, a window with no tap inside the
        input (possible only with dilation).
    TypeError
        Non-numeric ``x``, non-integer size, stride, padding or dilation.

    Notes
    -----
    Without ``ceil_mode``, when ``H + 2*ph - rh*(KH - 1) - 1`` is not a multiple of ``sh``
    the last rows, which no full window reaches, are dropped (likewise for columns), as
    PyTorch's ``max_pool2d`` does. Ties go to the first maximum in row-major order within
    the window, as in PyTorch. A NaN counts as larger than every number: a window holding a
    NaN outputs NaN (as in PyTorch) and its first NaN is the winner (PyTorch picks the last
    NaN; either way the gradient through a NaN carries no information).

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> y, cache = max_pool2d_forward(x.reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[6., 8.],
           [3., 4.]])
    >>> cache.mask()[0, 0].astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 0, 1],
           [1, 0, 0, 0],
           [0, 0, 0, 1]])
    >>> max_pool2d_forward(x.reshape(1, 1, 4, 4), 3, stride=2, padding=1)[0][0, 0]
    array([[6., 8.],
           [6., 8.]])
    """
    func = "max_pool2d_forward"
    x = as_array(func, "x", x)
    geo = check_pool_args(func, x, size, stride, padding, dilation, ceil_mode)
    nt = resolve_threads(func, threads)
    (x,) = as_float(func, x=x)
    x4, _ = as_batch(x)
    N, C, H, W = x4.shape
    y = np.empty(geo.yshape, x.dtype)
    argmax = np.empty(geo.yshape, np.int64)
    NC, (OH, OW) = N * C, geo.yshape[-2:]
    (sh, sw), (ph, pw), (rh, rw) = geo.stride, geo.padding, geo.dilation
    xs, ys, args = x4.reshape(NC, H, W), y.reshape(NC, OH, OW), argmax.reshape(NC, OH, OW)
    if FAST_2X2 and geo.inside and geo.size == geo.stride == (2, 2) and geo.dilation == (1, 1):
        # no padding, no dilation, no partial ceil_mode window: the 2x2 loop of _fastpool
        _fastpool.max_pool2x2_forward(xs, ys, args, _threads_for(x4.size, nt))
    elif geo.inside:  # every window inside x: the loops of docs/pooling.md
        _pool.max_pool2d_forward(xs, ys, args, *geo.size, sh, sw, _threads_for(x4.size, nt))
    else:
        _pool.max_pool2d_forward_clipped(xs, ys, args, sh, sw, ph, pw, rh, rw, *geo.taps,
                                         _threads_for(x4.size, nt))
    return y, MaxPoolCache(x.shape, geo.size, geo.stride, argmax, x.dtype, geo.padding,
                           geo.dilation, geo.ceil_mode)


def max_pool2d_backward(dy, cache, *, threads=None):
    """Backward pass of :func:`max_pool2d_forward`.

    ``dx[n, c, h, w] = sum of dy[n, c, i, j] over the windows (i, j) that (h, w) won``:
    every output's gradient goes to exactly one input, the winner recorded in
    ``cache.argmax``; every other input gets zero. With overlapping windows an input
    that won several windows receives the sum of their gradients.

    Parameters
    ----------
    dy : array_like, shape (N, C, OH, OW) or (C, OH, OW)
        Gradient of the loss with respect to the forward output.
    cache : MaxPoolCache
        The second value returned by :func:`max_pool2d_forward`.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    dx : ndarray, shape ``cache.x_shape``
        float32 when ``dy`` and the forward input are float32, float64 otherwise.

    Raises
    ------
    ValueError
        ``dy`` does not have the forward output's shape, or the cache was edited into
        something the forward pass could not have produced.
    TypeError
        ``cache`` is not a :class:`MaxPoolCache`, or ``dy`` is not numeric.

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> y, cache = max_pool2d_forward(x.reshape(1, 1, 4, 4))
    >>> max_pool2d_backward(np.array([[[[10, 20], [30, 40]]]]), cache)[0, 0]
    array([[ 0.,  0.,  0.,  0.],
           [ 0., 10.,  0., 20.],
           [30.,  0.,  0.,  0.],
           [ 0.,  0.,  0., 40.]])
    """
    func = "max_pool2d_backward"
    dy = as_array(func, "dy", dy)
    x_shape, cdt, geo = _check_cache(func, dy, cache, MaxPoolCache)
    nt = resolve_threads(func, threads)
    dt = float_dtype(dy, np.empty(0, cdt))
    dy = np.ascontiguousarray(dy, dtype=dt)
    *lead, H, W = x_shape
    NC, OHW = math.prod(lead), geo.yshape[-2] * geo.yshape[-1]
    argmax = np.asarray(cache.argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{func}: cache.argmax must hold integer indices, got dtype "
                        f"{argmax.dtype} (was the cache edited?)")
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    # one pass over the indices: read as unsigned, a negative one is at least 2**63
    if argmax.shape != geo.yshape or (argmax.size and
                                      int(argmax.view(np.uint64).max()) >= H * W):
        raise ValueError(
            f"{func}: cache.argmax must hold indices in [0, H*W) = [0, {H * W}) with shape "
            f"{geo.yshape}; got shape {argmax.shape} (was the cache edited?)"
        )
    dx = np.empty(x_shape, dt)
    _pool.max_pool2d_backward(dy.reshape(NC, OHW), argmax.reshape(NC, OHW),
                              dx.reshape(NC, H * W), _threads_for(NC * H * W, nt))
    return dx


# --------------------------------------------------------------------------- average pooling

def _divisors(geo, H, W, count_include_pad, divisor_override, dtype):
    """(ah, aw): window (i, j) of the average pool is divided by ah[i] * aw[j]."""
    return _divisors_cached(H, W, geo.size, geo.stride, geo.padding, geo.yshape[-2:],
                            count_include_pad, divisor_override, np.dtype(dtype))


@functools.lru_cache(maxsize=256)
def _divisors_cached(H, W, size, stride, padding, out, count_include_pad, divisor_override,
                     dtype):
    """PyTorch's rule: ``divisor_override`` if given; else with ``count_include_pad`` the
    window's area clipped to the padded input (a ``ceil_mode`` window hanging past the
    padding counts only what lies inside it); else the number of its taps inside x.
    Cached, like the window taps (geometry._pool_plan); the arrays are read-only."""
    (OH, OW), (KH, KW), (sh, sw), (ph, pw) = out, size, stride, padding
    if divisor_override is not None:
        ah, aw = np.full(OH, divisor_override, dtype), np.ones(OW, dtype)
    else:
        top, left = np.arange(OH) * sh - ph, np.arange(OW) * sw - pw
        if count_include_pad:
            ah, aw = np.minimum(top + KH, H + ph) - top, np.minimum(left + KW, W + pw) - left
        else:  # the taps inside x: the window clipped to [0, H) and [0, W)
            ah = np.minimum(top + KH, H) - np.maximum(top, 0)
            aw = np.minimum(left + KW, W) - np.maximum(left, 0)
        ah, aw = ah.astype(dtype), aw.astype(dtype)
    ah.flags.writeable = aw.flags.writeable = False
    return ah, aw


def avg_pool2d_forward(x, size=2, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, *, threads=None):
    """Forward pass of 2-D average pooling.

    ``y[n, c, i, j] = (1 / d) * sum_{p, q} x[n, c, i*sh - ph + p, j*sw - pw + q]`` over the
    taps inside ``x``, with ``d = KH*KW`` when the window lies inside the input.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
        Input batch, or one sample without the batch axis.
    size : int or (int, int), default 2
        Window ``(KH, KW)`` (PyTorch's ``kernel_size``), each at least 1.
    stride : int or (int, int), optional
        ``(sh, sw)``, each at least 1; ``None`` (the default) means ``stride = size``.
    padding : int or (int, int), default 0
        Zeros added on both sides, at most half the window (``KH // 2``).
    ceil_mode : bool, default False
        Round the output size up, as for :func:`max_pool2d_forward`.
    count_include_pad : bool, default True
        Whether the padding zeros count towards ``d``: True divides by the window's area
        (clipped to the padded input for a ``ceil_mode`` window that runs past it), False
        by the number of the window's inputs.
    divisor_override : int, optional
        A fixed ``d`` for every window (any non-zero integer), as in PyTorch.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW) or (C, OH, OW)
        ``OH = (H + 2*ph - KH) // sh + 1`` (rounded up under ``ceil_mode``) and likewise
        ``OW``; float32 for a float32 input, float64 otherwise.
    cache : AvgPoolCache
        Input shape and arguments, for :func:`avg_pool2d_backward`.

    Raises
    ------
    ValueError
        ``x`` not 3-D or 4-D or empty, size or stride below 1, padding above half the
        window, window larger than the padded input, divisor_override of 0.
    TypeError
        Non-numeric ``x``, non-integer size, stride, padding or divisor_override, a
        non-boolean ceil_mode or count_include_pad.

    Notes
    -----
    Without padding and ``ceil_mode`` every window has ``KH*KW`` inputs, and rows and
    columns that no full window reaches are dropped, as PyTorch's ``avg_pool2d`` does.

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> y, cache = avg_pool2d_forward(x.reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]])
    >>> avg_pool2d_forward(np.ones((1, 3, 3)), 2, padding=1, count_include_pad=False)[0]
    array([[[1., 1.],
            [1., 1.]]])
    """
    func = "avg_pool2d_forward"
    x = as_array(func, "x", x)
    geo = check_pool_args(func, x, size, stride, padding, 1, ceil_mode)
    include, override = check_avg_pool_options(func, count_include_pad, divisor_override)
    nt = resolve_threads(func, threads)
    (x,) = as_float(func, x=x)
    x4, _ = as_batch(x)
    N, C, H, W = x4.shape
    y = np.empty(geo.yshape, x.dtype)
    NC, (OH, OW) = N * C, geo.yshape[-2:]
    (sh, sw), (ph, pw) = geo.stride, geo.padding
    xs, ys = x4.reshape(NC, H, W), y.reshape(NC, OH, OW)
    if geo.inside and override is None:  # every window of KH*KW inputs
        _pool.avg_pool2d_forward(xs, ys, *geo.size, sh, sw, _threads_for(x4.size, nt))
    else:
        ah, aw = _divisors(geo, H, W, include, override, x.dtype)
        _pool.avg_pool2d_forward_clipped(xs, ys, sh, sw, ph, pw, *geo.taps, ah, aw,
                                         _threads_for(x4.size, nt))
    return y, AvgPoolCache(x.shape, geo.size, geo.stride, x.dtype, geo.padding,
                           geo.ceil_mode, include, override)


def avg_pool2d_backward(dy, cache, *, threads=None):
    """Backward pass of :func:`avg_pool2d_forward`.

    ``dx[n, c, h, w] = sum over the windows (i, j) containing (h, w) of
    dy[n, c, i, j] / d``: each output's gradient is shared equally by the inputs of its
    window (a quarter each for 2x2, a ninth for 3x3); the share of the padding goes
    nowhere.

    Parameters
    ----------
    dy : array_like, shape (N, C, OH, OW) or (C, OH, OW)
        Gradient of the loss with respect to the forward output.
    cache : AvgPoolCache
        The second value returned by :func:`avg_pool2d_forward`.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    dx : ndarray, shape ``cache.x_shape``
        float32 when ``dy`` and the forward input are float32, float64 otherwise. Inputs
        in dropped rows or columns get zero.

    Raises
    ------
    ValueError
        ``dy`` does not have the forward output's shape, or an edited cache.
    TypeError
        ``cache`` is not an :class:`AvgPoolCache`, or ``dy`` is not numeric.

    Examples
    --------
    >>> y, cache = avg_pool2d_forward(np.zeros((1, 1, 2, 2)))
    >>> avg_pool2d_backward(np.array([[[[1.0]]]]), cache)[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    func = "avg_pool2d_backward"
    dy = as_array(func, "dy", dy)
    x_shape, cdt, geo = _check_cache(func, dy, cache, AvgPoolCache)
    include, override = check_avg_pool_options(f"{func} (cache)", cache.count_include_pad,
                                           cache.divisor_override)
    nt = resolve_threads(func, threads)
    dt = float_dtype(dy, np.empty(0, cdt))
    dy = np.ascontiguousarray(dy, dtype=dt)
    *lead, H, W = x_shape
    NC, (OH, OW) = math.prod(lead), geo.yshape[-2:]
    (sh, sw), (ph, pw) = geo.stride, geo.padding
    dx = np.empty(x_shape, dt)
    dys, dxs = dy.reshape(NC, OH, OW), dx.reshape(NC, H, W)
    if geo.inside and override is None:
        _pool.avg_pool2d_backward(dys, dxs, *geo.size, sh, sw, _threads_for(dx.size, nt))
    else:
        ah, aw = _divisors(geo, H, W, include, override, dt)
        _pool.avg_pool2d_backward_clipped(dys, dxs, sh, sw, ph, pw, *geo.taps, ah, aw,
                                          _threads_for(dx.size, nt))
    return dx


# --------------------------------------------------------------------------- teaching helpers

def max_pool_mask(window):
    """Boolean mask of a window's single winner: the first maximum in row-major order.

    Parameters
    ----------
    window : array_like, shape (KH, KW)
        One pooling window (any non-empty shape works; row-major order is C order).

    Returns
    -------
    ndarray of bool, same shape as window
        True at exactly one position. With ties, only the first maximum is marked, so
        multiplying a gradient by the mask never duplicates it (a mask built with
        ``window == window.max()`` or ``np.isclose`` would mark every tied cell). A NaN
        counts as the maximum, as in :func:`max_pool2d_forward`.

    Raises
    ------
    ValueError
        An empty window.
    TypeError
        A non-numeric window.

    Examples
    --------
    >>> max_pool_mask([[1, 5], [5, 2]])
    array([[False,  True],
           [False, False]])
    """
    func = "max_pool_mask"
    window = as_array(func, "window", window)
    if window.size == 0 or window.ndim == 0:
        raise ValueError(f"{func}: window must be a non-empty array, got shape {window.shape}")
    mask = np.zeros(window.shape, bool)
    mask.flat[np.argmax(window)] = True  # np.argmax: first maximum, first NaN
    return mask


def distribute_value(dz, shape):
    """Share one average-pooling gradient equally over its window.

    Parameters
    ----------
    dz : float
        The gradient arriving at one output of the average pool.
    shape : int or (int, int)
        Window ``(KH, KW)``.

    Returns
    -------
    ndarray, shape (KH, KW)
        Every cell holds ``dz / (KH*KW)``. float32 for a float32 ``dz``, else float64.

    Raises
    ------
    ValueError
        ``dz`` is not a single number, or a window side is below 1.
    TypeError
        Non-numeric ``dz`` or non-integer ``shape``.

    Examples
    --------
    >>> distribute_value(2.0, (2, 2))
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    func = "distribute_value"
    dz = as_array(func, "dz", dz)
    if dz.size != 1:
        raise ValueError(f"{func}: dz must be a single number, got shape {dz.shape}")
    KH, KW = as_pair(func, "shape", shape, 1)
    dt = float_dtype(dz)
    return np.full((KH, KW), dz.astype(dt).reshape(()) / dt.type(KH * KW), dt)


# --------------------------------------------------------------------------- global average

def global_avg_pool2d_forward(x):
    """Global average pooling: the mean of each channel's whole ``H x W`` plane.

    ``y[n, c, 0, 0] = (1 / (H*W)) * sum_{h, w} x[n, c, h, w]``, PyTorch's
    ``AdaptiveAvgPool2d(1)``: average pooling with one window as large as the input.
    Plain NumPy (one reduction).

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)

    Returns
    -------
    y : ndarray, shape (N, C, 1, 1)
        float32 for a float32 input, float64 otherwise.

    Raises
    ------
    ValueError
        ``x`` not 4-D or with an empty plane.

    Examples
    --------
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> global_avg_pool2d_forward(x).ravel()
    array([1.5, 5.5])
    """
    func = "global_avg_pool2d_forward"
    (x,) = as_float(func, x=x)
    check_ndim(func, "x", x, 4, "(N, C, H, W)")
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"{func}: x has an empty H x W plane (x.shape={x.shape})")
    return x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)


def global_avg_pool2d_backward(dy, x_shape):
    """Backward pass of global average pooling: each input gets ``dy / (H*W)``.

    Parameters
    ----------
    dy : array_like, shape (N, C, 1, 1)
    x_shape : (int, int, int, int)
        ``(N, C, H, W)`` of the forward input.

    Returns
    -------
    dx : ndarray, shape ``x_shape``
        ``dx[n, c, h, w] = dy[n, c, 0, 0] / (H*W)``.

    Raises
    ------
    ValueError
        ``dy`` is not ``(N, C, 1, 1)`` for the given ``x_shape``.

    Examples
    --------
    >>> global_avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2, 2))[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    func = "global_avg_pool2d_backward"
    (dy,) = as_float(func, dy=dy)
    if len(x_shape) != 4:
        raise ValueError(f"{func}: x_shape must be (N, C, H, W), got {tuple(x_shape)}")
    N, C, H, W = (as_int(func, "x_shape", s, 0) for s in x_shape)
    if dy.shape != (N, C, 1, 1) or H * W == 0:
        raise ValueError(f"{func}: dy must have shape (N, C, 1, 1) = {(N, C, 1, 1)} for "
                         f"x_shape={(N, C, H, W)} (a non-empty plane), got dy.shape={dy.shape}")
    return np.broadcast_to(dy / (H * W), (N, C, H, W)).copy()
