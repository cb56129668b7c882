"""Batch normalisation: forward (training and inference) and backward.

For a batch ``x`` with channels on axis 1 (``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``),
every channel ``c`` is normalised over the ``M`` values it has in the batch (all axes
but the channel axis: ``M = N`` for ``(N, C)``, ``M = N*H*W`` for ``(N, C, H, W)``)::

    mean[c] = (1/M) sum x[., c, .]            var[c] = (1/M) sum (x[., c, .] - mean[c])**2
    xhat    = (x - mean[c]) / sqrt(var[c] + eps)
    y       = w[c] * xhat + b[c]

In inference the running estimates take the place of ``mean`` and ``var``. The backward
pass (derived on the docs page "More layers")::

    dxhat = dy * w[c]
    dx    = (1/M) / sqrt(var[c] + eps) * (M dxhat - sum dxhat - xhat * sum(dxhat * xhat))
    dw[c] = sum dy * xhat                     db[c] = sum dy

where each ``sum`` runs over the ``M`` values of channel ``c``. The running estimates
follow PyTorch's convention: ``running <- (1 - momentum) * running + momentum * batch``,
with the *unbiased* batch variance ``var * M / (M - 1)`` going into ``running_var``.

The public functions check their arguments and allocate the outputs; the loops are in
``cycnn/_norm.pyx`` (one channel per thread, sums in double precision).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _dispatch
from ._threads import resolve_threads
from ._validate import as_array, as_float, as_real

_norm = _dispatch.load("_norm")

#: below this many values the kernels run on one thread (starting threads costs more)
PARALLEL_MIN_ELEMENTS = 1 << 15

__all__ = ["batch_norm_forward", "batch_norm_backward", "BatchNormCache"]


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs from the forward pass.

    Attributes
    ----------
    xhat : ndarray, shape of x
        The normalised input ``(x - mean) / sqrt(var + eps)``.
    inv_std : ndarray of float64, shape (C,)
        ``1 / sqrt(var + eps)`` (batch variance in training, running in inference).
    weight : ndarray, shape (C,)
        The scale ``w`` used.
    training : bool
        Whether batch statistics were used (then ``mean`` and ``var`` depend on ``x``
        too, and the backward pass has the two extra sums).
    """

    xhat: np.ndarray
    inv_std: np.ndarray
    weight: np.ndarray
    training: bool


def _per_channel(a, x):
    """``a`` of shape (C,) shaped to broadcast against ``x`` along axis 1."""
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))


def _ncl(a):
    """An (N, C, ...) array as the C-contiguous (N, C, L) view the kernels take."""
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


def _threads_for(elements, threads):
    return 1 if elements < PARALLEL_MIN_ELEMENTS else threads


def _check(func, x, **vectors):
    if x.ndim < 2:
        raise ValueError(f"{func}: x must be (N, C), (N, C, L) or (N, C, H, W) with channels "
                         f"on axis 1, got shape {x.shape}")
    C = x.shape[1]
    for name, v in vectors.items():
        if name.startswith("running") and v is not None and not (
                isinstance(v, np.ndarray) and v.dtype.kind == "f"):
            raise TypeError(f"{func}: {name} must be a float ndarray (it is updated in "
                            f"place), got {type(v).__name__}")
        if v is not None and v.shape != (C,):
            raise ValueError(f"{func}: {name} must have shape (C,) = ({C},) for x.shape="
                             f"{x.shape}, got {name}.shape={v.shape}")


def batch_norm_forward(x, weight, bias, running_mean=None, running_var=None, *,
                       training=True, momentum=0.1, eps=1e-5, threads=None):
    """Forward pass of batch normalisation (PyTorch's ``F.batch_norm``).

    Parameters
    ----------
    x : array_like, shape (N, C, ...)
        Channels on axis 1.
    weight, bias : array_like, shape (C,)
        Scale ``w`` and shift ``b`` (PyTorch's ``weight`` and ``bias``).
    running_mean, running_var : ndarray, shape (C,), optional
        Running estimates. In training they are updated **in place** (when given) as
        ``r <- (1 - momentum) * r + momentum * batch_stat``, with the unbiased variance;
        in inference they are the statistics used and are required.
    training : bool, default True
        Normalise with the batch's own statistics (True) or the running ones (False).
    momentum : float in [0, 1], default 0.1
        Weight of the new batch in the running estimates (PyTorch's convention, the
        opposite of Keras').
    eps : float > 0, default 1e-5
        Added to the variance before the square root.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    y : ndarray, shape of ``x``
        float32 when every argument is float32, float64 otherwise.
    cache : BatchNormCache
        For :func:`batch_norm_backward`.

    Raises
    ------
    ValueError
        ``x`` with fewer than 2 axes, vectors not of shape ``(C,)``, a training batch
        with a single value per channel (its variance is undefined), inference without
        running statistics.

    Examples
    --------
    >>> x = np.array([[1.0], [3.0]])                    # N=2 samples, C=1 channel
    >>> rm, rv = np.zeros(1), np.ones(1)
    >>> y, cache = batch_norm_forward(x, np.ones(1), np.zeros(1), rm, rv, eps=0.0)
    >>> y.ravel(), rm, rv                               # batch mean 2, unbiased var 2
    (array([-1.,  1.]), array([0.2]), array([1.1]))
    """
    func = "batch_norm_forward"
    x = as_array(func, "x", x)
    x, weight, bias = as_float(func, x=x, weight=weight, bias=bias)
    momentum = as_real(func, "momentum", momentum, 0.0, 1.0)
    eps = as_real(func, "eps", eps, 0.0)
    _check(func, x, weight=weight, bias=bias, running_mean=running_mean,
           running_var=running_var)
    nt = resolve_threads(func, threads)
    M = x.size // x.shape[1] if x.shape[1] else 0
    x3 = _ncl(x)
    if training:
        if M <= 1:
            raise ValueError(f"{func}: training needs more than one value per channel, got "
                             f"x.shape={x.shape} (the batch variance of one value is "
                             "undefined; PyTorch refuses it too)")
        mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
        _norm.batch_stats(x3, mean, var, _threads_for(x.size, nt))
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * (var * (M / (M - 1)))).astype(running_var.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{func}: inference (training=False) needs running_mean and "
                             "running_var")
        mean = np.asarray(running_mean, np.float64)
        var = np.asarray(running_var, np.float64)
    inv_std = 1 / np.sqrt(var + eps)
    xhat, y = np.empty_like(x3), np.empty_like(x3)
    _norm.batch_norm_forward(x3, mean, inv_std, np.ascontiguousarray(weight),
                             np.ascontiguousarray(bias), xhat, y, _threads_for(x.size, nt))
    return (y.reshape(x.shape),
            BatchNormCache(xhat.reshape(x.shape), inv_std, weight, bool(training)))


def batch_norm_backward(dy, cache, *, threads=None):
    """Backward pass of batch normalisation.

    Parameters
    ----------
    dy : array_like, shape of the forward input
    cache : BatchNormCache
        From :func:`batch_norm_forward`.
    threads : int, optional
        Threads for this call; defaults to :func:`cycnn.get_num_threads`.

    Returns
    -------
    dx : ndarray, shape of ``dy``
        With batch statistics, ``(1/M) inv_std (M dxhat - sum dxhat - xhat sum(dxhat
        xhat))`` for ``dxhat = dy * w``; with running statistics, ``dxhat * inv_std``.
    dw, db : ndarray, shape (C,)
        ``sum(dy * xhat)`` and ``sum(dy)`` over every axis but the channel axis.

    Raises
    ------
    ValueError
        ``dy`` does not have the shape of the forward input.
    TypeError
        ``cache`` is not a :class:`BatchNormCache`.

    Examples
    --------
    >>> y, cache = batch_norm_forward(np.array([[1.0], [3.0]]), np.ones(1), np.zeros(1),
    ...                               eps=0.0)
    >>> dx, dw, db = batch_norm_backward(np.array([[1.0], [1.0]]), cache)
    >>> dx.ravel(), dw, db          # a constant dy moves nothing: the mean is removed
    (array([0., 0.]), array([0.]), array([2.]))
    """
    func = "batch_norm_backward"
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"{func}: cache must be the BatchNormCache from batch_norm_forward, "
                        f"got {type(cache).__name__}")
    xhat, inv_std, weight, training = cache
    dy = as_array(func, "dy", dy)
    if dy.shape != xhat.shape:
        raise ValueError(f"{func}: dy must have the shape of the forward input "
                         f"{xhat.shape}, got dy.shape={dy.shape}")
    nt = resolve_threads(func, threads)
    dt = xhat.dtype
    dy3 = _ncl(np.asarray(dy, dtype=dt))
    dx = np.empty_like(dy3)
    dw, db = np.empty(dy3.shape[1]), np.empty(dy3.shape[1])
    _norm.batch_norm_backward(dy3, _ncl(xhat), np.asarray(inv_std, np.float64),
                              np.ascontiguousarray(weight, dt), dx, dw, db, bool(training),
                              _threads_for(dy3.size, nt))
    return dx.reshape(xhat.shape), dw.astype(dt), db.astype(dt)
