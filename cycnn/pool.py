"""2-D max and average pooling: forward pass, backward pass and the teaching helpers.

The public functions check their arguments, settle the dtype and allocate the outputs;
the loops themselves are in ``cycnn/_pool.pyx``. A pooling layer has no parameters: its
backward pass only decides how each output's gradient is shared among the inputs of its
window.

* Max pooling, ``y[n, c, i, j] = max_{p, q} x[n, c, i*sh + p, j*sw + q]``: the whole
  gradient goes to the one input that won the window. When several inputs tie for the
  maximum, the first in row-major order wins (PyTorch's rule), so the gradient is never
  duplicated.
* Average pooling, ``y[n, c, i, j] = mean_{p, q} x[n, c, i*sh + p, j*sw + q]``: every
  input of the window gets ``1 / (KH*KW)`` of the gradient.

Windows may overlap (stride smaller than the window); an input that belongs to several
windows adds up the gradients it receives from each. Rows and columns that no full
window reaches are dropped, as PyTorch does by default (``ceil_mode=False``, no padding).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _dispatch
from ._threads import resolve_threads, threads_for
from ._validate import as_array, as_float, as_int, as_pair, check_ndim, float_dtype, param_dtype
from .geometry import check_pool_args, pool_output_shape

_pool = _dispatch.load("_pool")

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
    x_shape : (int, int, int, int)
        ``(N, C, H, W)`` of the forward input.
    size : (int, int)
        Window ``(KH, KW)``.
    stride : (int, int)
        ``(sh, sw)``.
    argmax : ndarray of int64, shape (N, C, OH, OW)
        For each output, the flat index ``h * W + w`` of its window's winner inside the
        ``H x W`` plane of its own sample and channel.
    dtype : numpy.dtype
        dtype of the forward input (float32 or float64).
    """

    x_shape: tuple
    size: tuple
    stride: tuple
    argmax: np.ndarray
    dtype: np.dtype

    def win_counts(self):
        """How many windows each input won, shape ``(N, C, H, W)``, int64.

        0 for an input that won no window. With non-overlapping windows the counts are
        0 or 1; with overlapping windows one input can win several.
        """
        N, C, H, W = self.x_shape
        planes = np.arange(N * C, dtype=np.int64).reshape(N, C, 1, 1) * (H * W)
        counts = np.bincount((planes + self.argmax).ravel(), minlength=N * C * H * W)
        return counts.reshape(N, C, H, W)

    def mask(self):
        """Boolean ``(N, C, H, W)`` mask: True where an input won at least one window.

        This is the mask that routes the gradient in :func:`max_pool2d_backward`;
        :meth:`win_counts` says how many windows each input won.
        """
        return self.win_counts() > 0


class AvgPoolCache(NamedTuple):
    """What :func:`avg_pool2d_backward` needs from the forward pass.

    Attributes
    ----------
    x_shape : (int, int, int, int)
        ``(N, C, H, W)`` of the forward input.
    size : (int, int)
        Window ``(KH, KW)``.
    stride : (int, int)
        ``(sh, sw)``.
    dtype : numpy.dtype
        dtype of the forward input (float32 or float64).
    """

    x_shape: tuple
    size: tuple
    stride: tuple
    dtype: np.dtype


# --------------------------------------------------------------------------- checks

def _check_cache(func, dy, cache, kind):
    """Check ``cache`` (a ``kind`` from the forward pass) and that ``dy`` fits it.

    The cache is read again as if it were user input: it is a plain tuple that may have
    been edited or built by hand, and the kernels index with its numbers.
    """
    if not isinstance(cache, kind):
        raise TypeError(
            f"{func}: cache must be the {kind.__name__} returned by the forward pass, "
            f"got {type(cache).__name__}"
        )
    where = f"{func} (cache)"
    if not isinstance(cache.x_shape, (tuple, list)) or len(cache.x_shape) != 4:
        raise ValueError(f"{where}: x_shape must be (N, C, H, W), got {cache.x_shape!r}")
    x_shape = tuple(as_int(where, "x_shape", s, 1) for s in cache.x_shape)
    size = as_pair(where, "size", cache.size, 1)
    stride = as_pair(where, "stride", cache.stride, 1)
    dtype = param_dtype(where, cache.dtype)
    if size[0] > x_shape[2] or size[1] > x_shape[3]:
        raise ValueError(f"{where}: window {size} is larger than the input plane "
                         f"{x_shape[2:]} (was the cache edited?)")
    yshape = pool_output_shape(x_shape, size, stride)
    if dy.shape != yshape:
        (KH, KW), (sh, sw) = size, stride
        raise ValueError(
            f"{func}: dy must have the forward output's shape {yshape} for "
            f"x.shape={x_shape}, size=({KH}, {KW}), stride=({sh}, {sw}); "
            f"got dy.shape={dy.shape}"
        )
    return x_shape, size, stride, dtype, yshape


# --------------------------------------------------------------------------- max pooling

#: below this many input elements a pooling loop runs on one thread: waking a sleeping
#: OpenMP thread costs about as much as pooling a hundred thousand values on one core.
PARALLEL_MIN_ELEMENTS = 1 << 17


def _threads_for(elements, nt):
    return threads_for(elements, nt, PARALLEL_MIN_ELEMENTS)


def max_pool2d_forward(x, size=2, stride=None, *, threads=None):
    """Forward pass of 2-D max pooling.

    ``y[n, c, i, j] = max_{p, q} x[n, c, i*sh + p, j*sw + q]`` for ``0 <= p < KH`` and
    ``0 <= q < KW``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Input batch.
    size : int or (int, int), default 2
        Window ``(KH, KW)``, each at least 1 and at most the input's ``H`` and ``W``.
    stride : int or (int, int), optional
        ``(sh, sw)``, each at least 1; ``None`` (the default) means ``stride = size``
        (non-overlapping windows). A stride smaller than the window makes windows overlap.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
        ``OH = (H - KH) // sh + 1`` and ``OW = (W - KW) // sw + 1``. float32 for a
        float32 input, float64 otherwise (integers are computed in float64).
    cache : MaxPoolCache
        The input shape, window, stride and the ``argmax`` of every window, for
        :func:`max_pool2d_backward`. ``cache.mask()`` shows the winners.

    Raises
    ------
    ValueError
        ``x`` not 4-D or empty, size or stride below 1, window larger than the input.
    TypeError
        Non-numeric ``x``, non-integer size or stride.

    Notes
    -----
    When ``H - KH`` is not a multiple of ``sh`` the last rows, which no full window
    reaches, are dropped (likewise for columns), as PyTorch's ``max_pool2d`` does by
    default. Ties go to the first maximum in row-major order within the window, as in
    PyTorch. A NaN counts as larger than every number: a window holding a NaN outputs
    NaN (as in PyTorch) and its first NaN is the winner (PyTorch picks the last NaN;
    either way the gradient through a NaN carries no information).

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
    """
    func = "max_pool2d_forward"
    x = as_array(func, "x", x)
    (KH, KW), (sh, sw), yshape = check_pool_args(func, x, size, stride)
    nt = resolve_threads(func, threads)
    (x,) = as_float(func, x=x)
    N, C, H, W = x.shape
    y = np.empty(yshape, x.dtype)
    argmax = np.empty(yshape, np.int64)
    NC, OH, OW = N * C, yshape[2], yshape[3]
    _pool.max_pool2d_forward(x.reshape(NC, H, W), y.reshape(NC, OH, OW),
                             argmax.reshape(NC, OH, OW), KH, KW, sh, sw,
                             _threads_for(N * C * H * W, nt))
    return y, MaxPoolCache(x.shape, (KH, KW), (sh, sw), argmax, x.dtype)


def max_pool2d_backward(dy, cache, *, threads=None):
    """Backward pass of :func:`max_pool2d_forward`.

    ``dx[n, c, h, w] = sum of dy[n, c, i, j] over the windows (i, j) that (h, w) won``:
    every output's gradient goes to exactly one input, the winner recorded in
    ``cache.argmax``; every other input gets zero. With overlapping windows an input
    that won several windows receives the sum of their gradients.

    Parameters
    ----------
    dy : array_like, shape (N, C, OH, OW)
        Gradient of the loss with respect to the forward output.
    cache : MaxPoolCache
        The second value returned by :func:`max_pool2d_forward`.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        float32 when ``dy`` and the forward input are float32, float64 otherwise.

    Raises
    ------
    ValueError
        ``dy`` does not have the forward output's shape.
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
    x_shape, _, _, cdt, yshape = _check_cache(func, dy, cache, MaxPoolCache)
    nt = resolve_threads(func, threads)
    dt = float_dtype(dy, np.empty(0, cdt))
    dy = np.ascontiguousarray(dy, dtype=dt)
    N, C, H, W = x_shape
    NC, OHW = N * C, yshape[2] * yshape[3]
    argmax = np.asarray(cache.argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{func}: cache.argmax must hold integer indices, got dtype "
                        f"{argmax.dtype} (was the cache edited?)")
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    if argmax.shape != yshape or (argmax.size and (argmax.min() < 0 or argmax.max() >= H * W)):
        raise ValueError(
            f"{func}: cache.argmax must hold indices in [0, H*W) = [0, {H * W}) with shape "
            f"{yshape}; got shape {argmax.shape} (was the cache edited?)"
        )
    dx = np.empty(x_shape, dt)
    _pool.max_pool2d_backward(dy.reshape(NC, OHW), argmax.reshape(NC, OHW),
                              dx.reshape(NC, H * W), _threads_for(N * C * H * W, nt))
    return dx


# --------------------------------------------------------------------------- average pooling

def avg_pool2d_forward(x, size=2, stride=None, *, threads=None):
    """Forward pass of 2-D average pooling.

    ``y[n, c, i, j] = (1 / (KH*KW)) * sum_{p, q} x[n, c, i*sh + p, j*sw + q]``.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W)
        Input batch.
    size : int or (int, int), default 2
        Window ``(KH, KW)``, each at least 1 and at most the input's ``H`` and ``W``.
    stride : int or (int, int), optional
        ``(sh, sw)``, each at least 1; ``None`` (the default) means ``stride = size``.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
        ``OH = (H - KH) // sh + 1`` and ``OW = (W - KW) // sw + 1``; float32 for a
        float32 input, float64 otherwise.
    cache : AvgPoolCache
        Input shape, window and stride, for :func:`avg_pool2d_backward`.

    Raises
    ------
    ValueError
        ``x`` not 4-D or empty, size or stride below 1, window larger than the input.
    TypeError
        Non-numeric ``x``, non-integer size or stride.

    Notes
    -----
    Rows and columns that no full window reaches are dropped, as PyTorch's
    ``avg_pool2d`` does by default; no padding, so every window has ``KH*KW`` inputs.

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> y, cache = avg_pool2d_forward(x.reshape(1, 1, 4, 4))
    >>> y[0, 0]
    array([[3.25, 5.25],
           [2.  , 2.  ]])
    """
    func = "avg_pool2d_forward"
    x = as_array(func, "x", x)
    (KH, KW), (sh, sw), yshape = check_pool_args(func, x, size, stride)
    nt = resolve_threads(func, threads)
    (x,) = as_float(func, x=x)
    N, C, H, W = x.shape
    y = np.empty(yshape, x.dtype)
    NC, OH, OW = N * C, yshape[2], yshape[3]
    _pool.avg_pool2d_forward(x.reshape(NC, H, W), y.reshape(NC, OH, OW), KH, KW, sh, sw,
                             _threads_for(N * C * H * W, nt))
    return y, AvgPoolCache(x.shape, (KH, KW), (sh, sw), x.dtype)


def avg_pool2d_backward(dy, cache, *, threads=None):
    """Backward pass of :func:`avg_pool2d_forward`.

    ``dx[n, c, h, w] = sum over the windows (i, j) containing (h, w) of
    dy[n, c, i, j] / (KH*KW)``: each output's gradient is shared equally by the
    ``KH*KW`` inputs of its window (a quarter each for 2x2, a ninth for 3x3).

    Parameters
    ----------
    dy : array_like, shape (N, C, OH, OW)
        Gradient of the loss with respect to the forward output.
    cache : AvgPoolCache
        The second value returned by :func:`avg_pool2d_forward`.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        float32 when ``dy`` and the forward input are float32, float64 otherwise. Inputs
        in dropped rows or columns get zero.

    Raises
    ------
    ValueError
        ``dy`` does not have the forward output's shape.
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
    x_shape, (KH, KW), (sh, sw), cdt, yshape = _check_cache(func, dy, cache, AvgPoolCache)
    nt = resolve_threads(func, threads)
    dt = float_dtype(dy, np.empty(0, cdt))
    dy = np.ascontiguousarray(dy, dtype=dt)
    N, C, H, W = x_shape
    NC, OH, OW = N * C, yshape[2], yshape[3]
    dx = np.empty(x_shape, dt)
    _pool.avg_pool2d_backward(dy.reshape(NC, OH, OW), dx.reshape(NC, H, W),
                              KH, KW, sh, sw, _threads_for(N * C * H * W, nt))
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
