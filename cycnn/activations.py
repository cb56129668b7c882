"""Activations: ReLU, softmax and log-softmax, in plain NumPy.

``relu(x) = max(x, 0)`` passes the gradient where ``x > 0`` and blocks it elsewhere; the
derivative at exactly 0 is taken to be 0 (PyTorch does the same). Softmax turns a row of
scores into probabilities; it is computed after subtracting the row maximum, which leaves
the result unchanged (``e^(z-m) / sum e^(z-m) = e^z / sum e^z``) but keeps every exponent
at or below zero, so large logits cannot overflow.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_real, float_dtype

__all__ = ["relu_forward", "relu_backward", "softmax", "log_softmax",
           "leaky_relu_forward", "leaky_relu_backward", "tanh_forward", "tanh_backward",
           "sigmoid_forward", "sigmoid_backward"]


def _as_float(func, name, a, *others):
    """``a`` in the common float dtype of ``a`` and ``others``, keeping its shape (0-d too)."""
    a = as_array(func, name, a)
    return np.asarray(a, dtype=float_dtype(a, *others))


def relu_forward(x):
    """Forward pass of ReLU: ``y = max(x, 0)`` elementwise.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    y : ndarray, shape of x
        float32 for a float32 input, float64 otherwise. NaN stays NaN.

    Raises
    ------
    TypeError
        Non-numeric ``x``.

    Examples
    --------
    >>> relu_forward([-2.0, 0.0, 3.0])
    array([0., 0., 3.])
    """
    x = _as_float("relu_forward", "x", x)
    return np.maximum(x, 0, dtype=x.dtype)


def relu_backward(dy, x):
    """Backward pass of ReLU: ``dx = dy`` where ``x > 0`` and 0 elsewhere.

    Parameters
    ----------
    dy : array_like
        Gradient of the loss with respect to the forward output.
    x : array_like, shape of dy
        The forward input.

    Returns
    -------
    dx : ndarray, shape of x
        float32 when both arguments are float32, float64 otherwise. The derivative at
        exactly ``x = 0`` is 0 (a subgradient; PyTorch makes the same choice). Where
        ``x`` is NaN, ``dx`` is 0.

    Raises
    ------
    ValueError
        ``dy`` and ``x`` differ in shape.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> relu_backward([5.0, 5.0, 5.0], [-1.0, 0.0, 2.0])
    array([0., 0., 5.])
    """
    func = "relu_backward"
    dy, x = as_array(func, "dy", dy), as_array(func, "x", x)
    dy, x = _as_float(func, "dy", dy, x), _as_float(func, "x", x, dy)
    if dy.shape != x.shape:
        raise ValueError(
            f"{func}: dy must have the shape of x; got dy.shape={dy.shape}, x.shape={x.shape}"
        )
    # dx = dy where x > 0, else exactly 0 (also where dy is inf or NaN, as PyTorch does).
    # Done as a bitwise AND of dy's bits with an all-ones/all-zeros mask: the same result
    # as np.where(x > 0, dy, 0) at a sixth of the time. NaN in x compares False -> 0.
    # (Flattened first: NumPy returns a scalar, which has no .view, for 0-d arrays.)
    bits = np.int32 if dy.dtype == np.float32 else np.int64
    keep = (x.reshape(-1) > 0).astype(bits)
    np.negative(keep, out=keep)  # 1 -> all bits set, 0 -> no bits
    dx = np.bitwise_and(dy.reshape(-1).view(bits), keep)
    return dx.view(dy.dtype).reshape(dy.shape)


def _check_axis(func, z, axis):
    if z.ndim == 0:
        raise ValueError(f"{func}: z must be at least 1-D, got a 0-d array")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not (
        -z.ndim <= axis < z.ndim
    ):
        raise ValueError(f"{func}: axis={axis!r} is out of range for z.shape={z.shape}")
    if z.shape[axis] == 0:
        raise ValueError(f"{func}: z has no entries along axis {axis} (z.shape={z.shape})")


def softmax(z, axis=-1):
    """Softmax along ``axis``: ``softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m)``.

    ``m`` is the maximum along ``axis``; subtracting it changes nothing mathematically
    and keeps ``exp`` from overflowing (logits of 1e4 are fine).

    Parameters
    ----------
    z : array_like, at least 1-D
        Scores (logits), for example ``(N, K)`` with one row per sample.
    axis : int, default -1
        The axis holding the classes.

    Returns
    -------
    ndarray, shape of z
        Non-negative, summing to 1 along ``axis``; float32 for float32 ``z``, else
        float64.

    Raises
    ------
    ValueError
        0-d ``z``, an empty class axis, or ``axis`` out of range.
    TypeError
        Non-numeric ``z``.

    Examples
    --------
    >>> softmax([1e4, 1e4])
    array([0.5, 0.5])
    """
    func = "softmax"
    z = _as_float(func, "z", z)
    _check_axis(func, z, axis)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    """Logarithm of :func:`softmax`, computed without forming the softmax.

    ``log_softmax(z)_k = (z_k - m) - log(sum_j exp(z_j - m))`` with ``m`` the maximum
    along ``axis``; stable for large logits and never ``log(0)``.

    Parameters
    ----------
    z : array_like, at least 1-D
    axis : int, default -1

    Returns
    -------
    ndarray, shape of z
        float32 for float32 ``z``, else float64.

    Raises
    ------
    ValueError
        0-d ``z``, an empty class axis, or ``axis`` out of range.
    TypeError
        Non-numeric ``z``.

    Examples
    --------
    >>> log_softmax([0.0, 1e4])
    array([-10000.,      0.])
    """
    func = "log_softmax"
    z = _as_float(func, "z", z)
    _check_axis(func, z, axis)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# --------------------------------------------------------------------------- more activations
# Leaky ReLU, tanh and the logistic sigmoid (docs/more-layers.md derives each backward).
# Tanh and sigmoid have derivatives that are functions of their own output, so their
# backward passes take y, not x: nothing else needs to be kept.

def _same_shape(func, dy, other, name):
    dy, other = as_array(func, "dy", dy), as_array(func, name, other)
    dy, other = _as_float(func, "dy", dy, other), _as_float(func, name, other, dy)
    if dy.shape != other.shape:
        raise ValueError(f"{func}: dy must have the shape of {name}; got dy.shape={dy.shape}, "
                         f"{name}.shape={other.shape}")
    return dy, other


def _slope(func, negative_slope):
    return as_real(func, "negative_slope", negative_slope)


def leaky_relu_forward(x, negative_slope=0.01):
    """Forward pass of leaky ReLU: ``y = x`` where ``x > 0``, ``negative_slope * x`` elsewhere.

    Parameters
    ----------
    x : array_like, any shape
    negative_slope : float, default 0.01
        The slope for ``x <= 0`` (PyTorch's default).

    Returns
    -------
    y : ndarray, shape of ``x``
        float32 for a float32 input, float64 otherwise.

    Raises
    ------
    TypeError
        Non-numeric ``x`` or ``negative_slope``.
    ValueError
        A non-finite ``negative_slope``.

    Examples
    --------
    >>> leaky_relu_forward([-2.0, 0.0, 3.0], negative_slope=0.1)
    array([-0.2,  0. ,  3. ])
    """
    func = "leaky_relu_forward"
    a = _slope(func, negative_slope)
    x = _as_float(func, "x", x)
    return np.where(x > 0, x, x * x.dtype.type(a))


def leaky_relu_backward(dy, x, negative_slope=0.01):
    """Backward pass of leaky ReLU: ``dx = dy`` where ``x > 0``, ``negative_slope * dy``
    elsewhere (the slope at exactly 0 is ``negative_slope``, as in PyTorch).

    Parameters
    ----------
    dy : array_like
        Gradient of the loss with respect to the forward output.
    x : array_like, shape of ``dy``
        The forward input.
    negative_slope : float, default 0.01

    Returns
    -------
    dx : ndarray, shape of ``x``

    Raises
    ------
    ValueError
        ``dy`` and ``x`` differ in shape.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> leaky_relu_backward([5.0, 5.0], [-1.0, 2.0], negative_slope=0.1)
    array([0.5, 5. ])
    """
    func = "leaky_relu_backward"
    a = _slope(func, negative_slope)
    dy, x = _same_shape(func, dy, x, "x")
    return np.where(x > 0, dy, dy * dy.dtype.type(a))


def tanh_forward(x):
    """Forward pass of the hyperbolic tangent, ``y = tanh(x)``, elementwise.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    y : ndarray, shape of ``x``, values in [-1, 1]

    Examples
    --------
    >>> tanh_forward([0.0, 100.0])
    array([0., 1.])
    """
    return np.tanh(_as_float("tanh_forward", "x", x))


def tanh_backward(dy, y):
    """Backward pass of tanh from its *output*: ``dx = dy * (1 - y**2)``.

    Parameters
    ----------
    dy : array_like
    y : array_like, shape of ``dy``
        The forward output ``tanh(x)``.

    Returns
    -------
    dx : ndarray, shape of ``y``

    Raises
    ------
    ValueError
        ``dy`` and ``y`` differ in shape.

    Examples
    --------
    >>> tanh_backward([2.0, 2.0], [0.0, 0.5])
    array([2. , 1.5])
    """
    dy, y = _same_shape("tanh_backward", dy, y, "y")
    return dy * (1 - y * y)


def sigmoid_forward(x):
    """Forward pass of the logistic sigmoid, ``y = 1 / (1 + exp(-x))``, elementwise.

    Computed as ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0`` with
    ``e = exp(-|x|) <= 1``, so no exponent overflows.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    y : ndarray, shape of ``x``, values in [0, 1]

    Examples
    --------
    >>> sigmoid_forward([-1000.0, 0.0, 1000.0])
    array([0. , 0.5, 1. ])
    """
    x = _as_float("sigmoid_forward", "x", x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dy, y):
    """Backward pass of the sigmoid from its *output*: ``dx = dy * y * (1 - y)``.

    Parameters
    ----------
    dy : array_like
    y : array_like, shape of ``dy``
        The forward output ``sigmoid(x)``.

    Returns
    -------
    dx : ndarray, shape of ``y``

    Raises
    ------
    ValueError
        ``dy`` and ``y`` differ in shape.

    Examples
    --------
    >>> sigmoid_backward([4.0], [0.5])
    array([1.])
    """
    dy, y = _same_shape("sigmoid_backward", dy, y, "y")
    return dy * (y * (1 - y))
