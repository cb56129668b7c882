"""Fully-connected (dense) layer in plain NumPy, in PyTorch's ``Linear`` layout.

    y[n, o] = b[o] + sum_d x[n, d] * w[o, d]        (y = x w^T + b)

with ``x`` of shape ``(N, D_in)``, ``w`` of ``(D_out, D_in)`` and ``b`` of ``(D_out,)``. As in
PyTorch, ``x`` may also be one sample ``(D_in,)`` or carry more leading axes
``(..., D_in)``: every leading position is a row of its own.
The backward pass follows from the chain rule one index at a time:

    dx[n, d] = sum_o dy[n, o] * w[o, d]   (dx = dy w)
    dw[o, d] = sum_n dy[n, o] * x[n, d]   (dw = dy^T x)
    db[o]    = sum_n dy[n, o]

The gradients are sums over the batch; averaging belongs to the loss, as in PyTorch.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_float, check_ndim, check_size

__all__ = ["dense_forward", "dense_backward"]


def _check_dense_args(func, x, w):
    if x.ndim == 0:
        raise ValueError(f"{func}: x must be at least 1-D (..., D_in), got a 0-d array")
    check_ndim(func, "w", w, 2, "(D_out, D_in)")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"{func}: x has D_in={x.shape[-1]} features but w expects D_in={w.shape[1]} "
            f"(x.shape={x.shape}, w.shape={w.shape}; w is (D_out, D_in) as in PyTorch)"
        )


def dense_forward(x, w, b=None):
    """Forward pass of a fully-connected layer: ``y = x w^T + b``.

    Parameters
    ----------
    x : array_like, shape (N, D_in), (D_in,) or (..., D_in)
        One row per sample (flatten an ``(N, C, H, W)`` batch with ``x.reshape(N, -1)``);
        one sample, or any number of leading axes, as PyTorch accepts. N may be 0.
    w : array_like, shape (D_out, D_in)
        Weights, PyTorch's ``Linear.weight`` layout.
    b : array_like, shape (D_out,), optional
        Bias; ``None`` for none.

    Returns
    -------
    y : ndarray, shape (N, D_out), or x's leading axes and D_out
        float32 when every argument is float32, float64 otherwise.

    Raises
    ------
    ValueError
        ``x`` 0-d, ``w`` not 2-D, feature counts that do not chain, bias of the wrong
        length.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> dense_forward([[1.0, 2.0]], [[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]], [0.0, 0.5, 1.0])
    array([[ 1. ,  3.5, -1. ]])
    """
    func = "dense_forward"
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    b = None if b is None else as_array(func, "b", b)
    _check_dense_args(func, x, w)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(
            f"{func}: b must have shape (D_out,) = ({w.shape[0]},) to match "
            f"w.shape={w.shape}, got b.shape={b.shape}"
        )
    check_size(func, "y (N, D_out)", (x.shape[0], w.shape[0]), np.float32)
    x, w, b = as_float(func, x=x, w=w, b=b)
    y = x @ w.T
    if b is not None:
        y += b
    return y


def dense_backward(dy, x, w):
    """Backward pass of :func:`dense_forward`.

    Parameters
    ----------
    dy : array_like, shape (N, D_out), or x's leading axes and D_out
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, D_in), (D_in,) or (..., D_in)
        The forward input.
    w : array_like, shape (D_out, D_in)
        The forward weights.

    Returns
    -------
    dx : ndarray, shape of x
        ``dy w``.
    dw : ndarray, shape (D_out, D_in)
        ``dy^T x`` (summed over the batch and every other leading axis).
    db : ndarray, shape (D_out,)
        ``dy`` summed over the batch (returned whether or not the forward pass had a
        bias).

    Raises
    ------
    ValueError
        Shapes that do not chain: ``dy`` must be ``(..., D_out)`` for ``x`` of
        ``(..., D_in)`` and ``w`` of ``(D_out, D_in)``.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> dx, dw, db = dense_backward([[1.0, 2.0]], [[3.0, 4.0, 5.0]], [[1, 0, 0], [0, 1, 0]])
    >>> dx, dw, db
    (array([[1., 2., 0.]]), array([[ 3.,  4.,  5.],
           [ 6.,  8., 10.]]), array([1., 2.]))
    """
    func = "dense_backward"
    dy = as_array(func, "dy", dy)
    x = as_array(func, "x", x)
    w = as_array(func, "w", w)
    _check_dense_args(func, x, w)
    yshape = x.shape[:-1] + (w.shape[0],)
    if dy.shape != yshape:
        raise ValueError(
            f"{func}: dy must have the forward output's shape (N, D_out) = {yshape} for "
            f"x.shape={x.shape}, w.shape={w.shape}; got dy.shape={dy.shape}"
        )
    dy, x, w = as_float(func, dy=dy, x=x, w=w)
    shape = x.shape
    dy, x = dy.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])  # one row per position
    dx, dw, db = dy @ w, dy.T @ x, dy.sum(axis=0)
    return dx.reshape(shape), dw, db
