"""Check a backward pass against central differences.

A backward pass is a claim: "this is the derivative of the forward pass". The check is
to nudge each input entry by ``+eps`` and ``-eps``, rerun the forward pass, and compare
``(f(x + eps) - f(x - eps)) / (2 eps)`` with the claimed gradient. The comparison uses
the relative error ``|a - b| / max(|a| + |b|, tiny)``, which is about 1e-10 or smaller
for a correct float64 gradient and of order 1 for a wrong one.

For a layer whose output ``y`` is an array, the scalar that is differentiated is
``L = sum(dy * y)`` for a fixed random ``dy``, so that the backward pass is called with
that same ``dy``. A random ``dy`` (not all ones) exposes transposed or misplaced
gradients that a symmetric ``dy`` would hide.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import as_array

__all__ = [
    "numerical_gradient",
    "relative_error",
    "gradcheck",
    "GradcheckResult",
    "GradcheckError",
]


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with the numbers."""


class GradcheckResult(NamedTuple):
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        True when every checked gradient is within ``rtol``.
    max_error : float
        The largest relative error over all checked inputs.
    errors : tuple of float
        The largest relative error per checked input.
    numerical : tuple of ndarray
        Central-difference gradients, one per checked input.
    analytic : tuple of ndarray
        The gradients the backward pass returned, one per checked input.
    """

    ok: bool
    max_error: float
    errors: tuple
    numerical: tuple
    analytic: tuple


def relative_error(a, b, tiny=1e-12):
    """Elementwise relative error ``|a - b| / max(|a| + |b|, tiny)``.

    Parameters
    ----------
    a, b : array_like
        Arrays of one shape (or broadcastable).
    tiny : float, default 1e-12
        Floor of the denominator, so that two zeros compare as equal (error 0) instead
        of 0/0.

    Returns
    -------
    ndarray of float64
        Between 0 (equal) and 1 (opposite signs, or one of them zero).

    Examples
    --------
    >>> relative_error([1.0, 0.0, 1.0], [1.0, 0.0, -1.0])
    array([0., 0., 1.])
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)


def numerical_gradient(f, x, dy=None, eps=1e-6):
    """Central-difference gradient of ``f`` at ``x``.

    For every entry ``k`` of ``x``: ``g[k] = sum(dy * (f(x + eps e_k) - f(x - eps e_k)))
    / (2 eps)``, where ``e_k`` is 1 at ``k`` and 0 elsewhere. Without ``dy``, ``f`` must
    return a single number and ``g`` is its plain derivative.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a number or an array. It is called ``2 * x.size`` times on a
        float64 copy of ``x`` that is changed in place between calls (``f`` must not keep
        a reference to it).
    x : array_like
        The point; converted to float64 (float32 is too coarse for central
        differences).
    dy : array_like, optional
        Weights for the outputs of ``f``, of ``f(x)``'s shape; required when ``f``
        returns more than one number.
    eps : float, default 1e-6
        The step. The error of the estimate is about ``eps**2`` (truncation) plus
        ``1e-16 / eps`` times the size of the outputs (rounding).

    Returns
    -------
    ndarray of float64, shape of x

    Raises
    ------
    ValueError
        ``f`` returns several numbers and no ``dy`` is given, or ``dy``'s shape differs
        from ``f(x)``'s; ``eps <= 0``.

    Examples
    --------
    >>> g = numerical_gradient(lambda v: np.sum(v ** 3), np.array([1.0, 2.0]))
    >>> np.round(g, 6)
    array([ 3., 12.])
    """
    func = "numerical_gradient"
    if not eps > 0:
        raise ValueError(f"{func}: eps must be > 0, got {eps!r}")
    x = np.array(as_array(func, "x", x), dtype=np.float64)  # a private copy
    y0 = np.asarray(f(x), dtype=np.float64)
    if dy is None:
        if y0.size != 1:
            raise ValueError(
                f"{func}: f returned an array of shape {y0.shape}; pass dy of that shape "
                "to differentiate sum(dy * f(x)), or make f return a single number"
            )
        dy = np.ones(y0.shape)
    else:
        dy = np.asarray(as_array(func, "dy", dy), dtype=np.float64)
        if dy.shape != y0.shape:
            raise ValueError(
                f"{func}: dy must have the shape of f(x) {y0.shape}, got dy.shape={dy.shape}"
            )
    g = np.empty(x.shape)
    flat = x.reshape(-1)  # a view: writing to it moves x
    gflat = g.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + eps
        up = np.asarray(f(x), dtype=np.float64)
        flat[k] = keep - eps
        down = np.asarray(f(x), dtype=np.float64)
        flat[k] = keep
        # Differences first: outputs that do not depend on x[k] cancel exactly.
        gflat[k] = np.sum(dy * (up - down)) / (2 * eps)
    return g


def gradcheck(f, inputs, backward, *, wrt=None, dy=None, eps=1e-6, rtol=1e-6, tiny=1e-9,
              seed=0, raise_exception=True):
    """Compare a backward pass with central differences of its forward pass.

    Parameters
    ----------
    f : callable
        The forward pass, ``f(*inputs)``, returning a number or an array ``y``.
    inputs : array_like or sequence of array_like
        The point to check at. Every input is converted to a float64 copy; ``f`` and
        ``backward`` receive those copies.
    backward : callable
        ``backward(dy, *inputs)`` returns the gradient of ``sum(dy * f(*inputs))`` with
        respect to each checked input: one array when one input is checked, else a
        sequence in the order of ``wrt``. Wrap your layer's backward in a lambda when its
        signature differs, e.g. ``lambda dy, x, w, b: dense_backward(dy, x, w)``.
    wrt : sequence of int, optional
        Which inputs to check (positions in ``inputs``); default all.
    dy : array_like, optional
        The output gradient to contract with; default a seeded standard-normal array
        of ``f``'s output shape (a random number for a scalar output).
    eps : float, default 1e-6
        Central-difference step.
    rtol : float, default 1e-6
        Largest accepted relative error.
    tiny : float, default 1e-9
        Floor of the relative error's denominator ``max(|a| + |b|, tiny)``. Below it the
        numbers are rounding noise of the central difference (about ``1e-16 / eps``
        times the output size), so a true zero gradient still passes.
    seed : int, default 0
        Seed of the random ``dy``.
    raise_exception : bool, default True
        Raise :class:`GradcheckError` on failure; with False, only return the result.

    Returns
    -------
    GradcheckResult
        ``ok``, the largest relative error and the gradients compared.

    Raises
    ------
    GradcheckError
        If ``raise_exception`` and some gradient entry has relative error above ``rtol``;
        the message names the input, the entry and both values.
    ValueError
        ``backward`` returns the wrong number of gradients or a gradient of the wrong
        shape.

    Notes
    -----
    Choose a point where ``f`` is smooth: no ReLU input within ``eps`` of 0, no two
    entries of a max-pool window within ``eps`` of each other.

    Examples
    --------
    >>> import cycnn
    >>> x = np.array([[0.5, -1.0], [2.0, 0.25]])
    >>> result = gradcheck(cycnn.relu_forward, x, cycnn.relu_backward)
    >>> result.ok, result.max_error < 1e-8
    (True, True)
    >>> wrong = lambda dy, x: 2 * cycnn.relu_backward(dy, x)
    >>> gradcheck(cycnn.relu_forward, x, wrong, raise_exception=False).ok
    False
    """
    func = "gradcheck"
    if isinstance(inputs, (tuple, list)):
        inputs = [np.array(as_array(func, "inputs", a), dtype=np.float64) for a in inputs]
    else:
        inputs = [np.array(as_array(func, "inputs", inputs), dtype=np.float64)]
    wrt = tuple(range(len(inputs))) if wrt is None else tuple(wrt)
    y = np.asarray(f(*inputs), dtype=np.float64)
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(y.shape)
        dy = float(dy) if y.ndim == 0 else dy
    analytic = backward(dy, *[a.copy() for a in inputs])
    if len(wrt) == 1 and not isinstance(analytic, (tuple, list)):
        analytic = (analytic,)
    if not isinstance(analytic, (tuple, list)) or len(analytic) != len(wrt):
        raise ValueError(
            f"{func}: backward must return {len(wrt)} gradient(s) (one per input in "
            f"wrt={wrt}), got {type(analytic).__name__}"
            + (f" of length {len(analytic)}" if isinstance(analytic, (tuple, list)) else "")
        )
    analytic = tuple(np.asarray(a, dtype=np.float64) for a in analytic)
    numerical, errors, worst = [], [], None
    for k, a in zip(wrt, analytic):
        x = inputs[k]
        if a.shape != x.shape:
            raise ValueError(
                f"{func}: backward's gradient for input {k} has shape {a.shape}, but the "
                f"input has shape {x.shape}"
            )

        def f_k(v, k=k):
            args = list(inputs)
            args[k] = v
            return f(*args)

        num = numerical_gradient(f_k, x, dy=dy, eps=eps)
        err = relative_error(a, num, tiny)
        numerical.append(num)
        errors.append(float(err.max()) if err.size else 0.0)
        if err.size and errors[-1] > rtol and worst is None:
            at = np.unravel_index(int(np.argmax(err)), err.shape)
            worst = (
                f"{func}: gradient of input {k} (shape {x.shape}) is wrong: relative error "
                f"{errors[-1]:.3g} > rtol={rtol:g} at index {tuple(int(i) for i in at)}: "
                f"backward gave {a[at]:.10g}, central differences give {num[at]:.10g}"
            )
    max_error = max(errors, default=0.0)
    result = GradcheckResult(max_error <= rtol, max_error, tuple(errors), tuple(numerical),
                             analytic)
    if raise_exception and not result.ok:
        raise GradcheckError(worst)
    return result
