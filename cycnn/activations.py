"""Activations: ReLU, softmax and log-softmax, in NumPy (ReLU's two passes are one
compiled loop each, cycnn/_act.pyx).

``relu(x) = max(x, 0)`` passes the gradient where ``x > 0`` and blocks it elsewhere; the
derivative at exactly 0 is taken to be 0 (PyTorch does the same). Softmax turns a row of
scores into probabilities; it is computed after subtracting the row maximum, which leaves
the result unchanged (``e^(z-m) / sum e^(z-m) = e^z / sum e^z``) but keeps every exponent
at or below zero, so large logits cannot overflow.
"""

from __future__ import annotations

import numpy as np

from . import _dispatch
from ._threads import get_num_threads, threads_for
from ._validate import as_array, as_real, float_dtype, param_dtype

_act = _dispatch.load("_act")

#: fewest elements for which ReLU's loops are split across threads
PARALLEL_MIN_ELEMENTS = 1 << 17

__all__ = ["relu_forward", "relu_backward", "softmax", "log_softmax", "softmax_backward",
           "log_softmax_backward", "leaky_relu_forward", "leaky_relu_backward", "tanh_forward",
           "tanh_backward", "sigmoid_forward", "sigmoid_backward"]


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
    y = np.empty(x.shape, x.dtype)
    flat = np.ascontiguousarray(x).reshape(-1)
    _act.relu(flat, flat, y.reshape(-1), False,
              threads_for(y.size, get_num_threads(), PARALLEL_MIN_ELEMENTS))
    return y


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
    # dx = dy where x > 0, else exactly 0 (also where dy is inf or NaN, as PyTorch does;
    # a NaN in x compares False -> 0): one compiled pass, cycnn/_act.pyx.
    dx = np.empty(dy.shape, dy.dtype)
    _act.relu(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(dy).reshape(-1),
              dx.reshape(-1), True,
              threads_for(dx.size, get_num_threads(), PARALLEL_MIN_ELEMENTS))
    return dx


def _check_axis(func, z, axis):
    """``axis`` as a valid index of ``z``'s axes; a 0-d ``z`` has one implicit axis, so
    0 and -1 are valid for it (PyTorch's rule)."""
    ndim = max(z.ndim, 1)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not (
        -ndim <= axis < ndim
    ):
        raise ValueError(f"{func}: axis={axis!r} is out of range for z.shape={z.shape}")
    return int(axis)


def _prepare(func, z, axis, dtype):
    """z as a float array of at least one axis (0-d reads as one entry), in ``dtype`` if
    given, the checked axis, and z's own shape."""
    z = _as_float(func, "z", z)
    if dtype is not None:
        z = z.astype(param_dtype(func, dtype), copy=False)
    axis = _check_axis(func, z, axis)
    return z.reshape(z.shape or (1,)), axis, z.shape


def softmax(z, axis=-1, dtype=None):
    """Softmax along ``axis``: ``softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m)``.

    ``m`` is the maximum along ``axis``; subtracting it changes nothing mathematically
    and keeps ``exp`` from overflowing (logits of 1e4 are fine).

    Parameters
    ----------
    z : array_like, any shape
        Scores (logits), for example ``(N, K)`` with one row per sample. A 0-d ``z`` is
        one score (its softmax is 1), as in PyTorch.
    axis : int, default -1
        The axis holding the classes (0 or -1 for a 0-d ``z``).
    dtype : float32 or float64, optional
        Compute in this dtype (PyTorch's ``dtype=``: the input is cast first).

    Returns
    -------
    ndarray, shape of z
        Non-negative, summing to 1 along ``axis``; in ``dtype`` if given, else float32 for
        float32 ``z`` and float64 otherwise. An empty ``z`` (an empty class axis included)
        gives an empty result, as in PyTorch.

    Raises
    ------
    ValueError
        ``axis`` out of range, or a dtype other than float32/float64.
    TypeError
        Non-numeric ``z``.

    Examples
    --------
    >>> softmax([1e4, 1e4])
    array([0.5, 0.5])
    """
    func = "softmax"
    z, axis, shape = _prepare(func, z, axis, dtype)
    if z.size == 0:
        return np.empty(shape, z.dtype)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).reshape(shape)


def log_softmax(z, axis=-1, dtype=None):
    """Logarithm of :func:`softmax`, computed without forming the softmax.

    ``log_softmax(z)_k = (z_k - m) - log(sum_j exp(z_j - m))`` with ``m`` the maximum
    along ``axis``; stable for large logits and never ``log(0)``.

    Parameters
    ----------
    z : array_like, any shape
        A 0-d ``z`` is one score (its log-softmax is 0).
    axis : int, default -1
    dtype : float32 or float64, optional
        Compute in this dtype, as for :func:`softmax`.

    Returns
    -------
    ndarray, shape of z
        In ``dtype`` if given, else float32 for float32 ``z`` and float64 otherwise.

    Raises
    ------
    ValueError
        ``axis`` out of range, or a dtype other than float32/float64.
    TypeError
        Non-numeric ``z``.

    Examples
    --------
    >>> log_softmax([0.0, 1e4])
    array([-10000.,      0.])
    """
    func = "log_softmax"
    z, axis, shape = _prepare(func, z, axis, dtype)
    if z.size == 0:
        return np.empty(shape, z.dtype)
    shifted = z - z.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).reshape(shape)


def _check_backward(func, dy, y, axis):
    dy, y = as_array(func, "dy", dy), as_array(func, "y", y)
    dy, y = _as_float(func, "dy", dy, y), _as_float(func, "y", y, dy)
    if dy.shape != y.shape:
        raise ValueError(
            f"{func}: dy must have the shape of y; got dy.shape={dy.shape}, y.shape={y.shape}"
        )
    axis = _check_axis(func, y, axis)
    return dy.reshape(dy.shape or (1,)), y.reshape(y.shape or (1,)), axis, y.shape


def softmax_backward(dy, y, axis=-1):
    """Backward pass of :func:`softmax`, from its output ``y``.

    ``y_k`` depends on every ``z_j`` of its row: ``dy_k/dz_j = y_k (delta_kj - y_j)``, so
    adding up every path, ``dz_j = sum_k dy_k y_k (delta_kj - y_j) = y_j (dy_j - sum_k dy_k y_k)``.

    Parameters
    ----------
    dy : array_like
        Gradient of the loss with respect to ``y``.
    y : array_like, shape of dy
        The forward output ``softmax(z, axis)``.
    axis : int, default -1
        As given to the forward pass.

    Returns
    -------
    dz : ndarray, shape of y
        float32 when both arguments are float32, float64 otherwise (after a forward pass
        with ``dtype=``, cast it to the input's dtype, as PyTorch does).

    Raises
    ------
    ValueError
        Shapes differ, or ``axis`` out of range.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> softmax_backward([1.0, 0.0], [0.5, 0.5])
    array([ 0.25, -0.25])
    """
    func = "softmax_backward"
    dy, y, axis, shape = _check_backward(func, dy, y, axis)
    return (y * (dy - (dy * y).sum(axis=axis, keepdims=True))).reshape(shape)


def log_softmax_backward(dy, y, axis=-1):
    """Backward pass of :func:`log_softmax`, from its output ``y``.

    ``y_k = z_k - log sum_j exp(z_j)`` gives ``dy_k/dz_j = delta_kj - softmax(z)_j``, so
    ``dz_j = dy_j - exp(y_j) * sum_k dy_k``.

    Parameters
    ----------
    dy : array_like
        Gradient of the loss with respect to ``y``.
    y : array_like, shape of dy
        The forward output ``log_softmax(z, axis)``.
    axis : int, default -1

    Returns
    -------
    dz : ndarray, shape of y
        float32 when both arguments are float32, float64 otherwise.

    Raises
    ------
    ValueError
        Shapes differ, or ``axis`` out of range.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> log_softmax_backward([1.0, 0.0], np.log([0.5, 0.5]))
    array([ 0.5, -0.5])
    """
    func = "log_softmax_backward"
    dy, y, axis, shape = _check_backward(func, dy, y, axis)
    return (dy - np.exp(y) * dy.sum(axis=axis, keepdims=True)).reshape(shape)


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
