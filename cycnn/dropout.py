"""Inverted dropout in plain NumPy.

In training, every entry of ``x`` is kept with probability ``1 - p`` and zeroed otherwise,
and the kept entries are scaled by ``1 / (1 - p)``::

    y = x * keep / (1 - p)        keep[k] ~ Bernoulli(1 - p), drawn afresh for every batch

so that the expected value of ``y`` is ``x``: at inference dropout is simply the
identity, with no rescaling (this is what "inverted" means). The backward pass routes
the gradient through the same mask: ``dx = dy * keep / (1 - p)``.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_float, as_real

__all__ = ["dropout_forward", "dropout_backward"]


def dropout_forward(x, p=0.5, rng=None):
    """Forward pass of inverted dropout (training mode).

    Parameters
    ----------
    x : array_like, any shape
    p : float in [0, 1), default 0.5
        Probability of zeroing an entry.
    rng : numpy.random.Generator or int or None
        Source of the mask: a generator (used and advanced), a seed, or None for fresh
        entropy. The same seed gives the same mask.

    Returns
    -------
    y : ndarray, shape of ``x``
        ``x * keep / (1 - p)``; float32 for a float32 input, float64 otherwise.
    keep : ndarray of bool, shape of ``x``
        The mask, for :func:`dropout_backward`.

    Raises
    ------
    ValueError
        ``p`` outside [0, 1).

    Examples
    --------
    >>> y, keep = dropout_forward(np.ones(8), p=0.5, rng=0)
    >>> y                            # kept entries are doubled, the rest are zero
    array([2., 2., 2., 0., 0., 0., 0., 0.])
    """
    func = "dropout_forward"
    p = as_real(func, "p", p, 0.0, 1.0, hi_open=True)
    (x,) = as_float(func, x=as_array(func, "x", x))
    rng = np.random.default_rng(rng)
    keep = rng.random(x.shape, dtype=np.float32) >= np.float32(p)
    return x * keep * x.dtype.type(1 / (1 - p)), keep


def dropout_backward(dy, keep, p=0.5):
    """Backward pass of inverted dropout: ``dx = dy * keep / (1 - p)``.

    Parameters
    ----------
    dy : array_like
    keep : ndarray of bool, shape of ``dy``
        The mask :func:`dropout_forward` returned.
    p : float in [0, 1), default 0.5
        The same ``p`` as in the forward pass.

    Returns
    -------
    dx : ndarray, shape of ``dy``

    Raises
    ------
    ValueError
        ``keep`` not of the shape of ``dy``, ``p`` outside [0, 1).

    Examples
    --------
    >>> dropout_backward(np.array([3.0, 3.0]), np.array([True, False]), p=0.25)
    array([4., 0.])
    """
    func = "dropout_backward"
    p = as_real(func, "p", p, 0.0, 1.0, hi_open=True)
    (dy,) = as_float(func, dy=as_array(func, "dy", dy))
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.shape != dy.shape:
        raise ValueError(f"{func}: keep must be the boolean mask of dy's shape {dy.shape}, "
                         f"got dtype {keep.dtype} and shape {keep.shape}")
    return dy * keep * dy.dtype.type(1 / (1 - p))
