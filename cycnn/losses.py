"""Losses in plain NumPy: softmax + cross-entropy and mean squared error.

Each loss returns ``(loss, dpred)``: the loss as a Python float and its gradient with
respect to the prediction, ready to feed the backward pass of the layer below.

Softmax followed by cross-entropy has the famously simple gradient ``Y_hat - Y`` per
sample; averaged over a batch of N samples the loss is ``-(1/N) sum_n sum_k Y[n,k] *
log Y_hat[n,k]`` and its gradient ``(Y_hat - Y) / N``.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, check_ndim, float_dtype
from .activations import log_softmax

__all__ = ["softmax_cross_entropy", "mse_loss"]

#: The reductions :func:`mse_loss` accepts.
MSE_REDUCTIONS = ("mean", "sum", "half_sum")


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` against ``labels``, and its gradient.

    ``loss = -(1/N) sum_n sum_k Y[n, k] * log_softmax(logits)[n, k]`` where ``Y`` is the
    one-hot matrix of integer labels, or the given probability rows.

    Parameters
    ----------
    logits : array_like, shape (N, K)
        Unnormalised scores, one row per sample.
    labels : array_like of int, shape (N,), or array_like, shape (N, K)
        Either class indices in ``[0, K)`` (an integer dtype), or one target
        distribution per row (one-hot or soft labels).

    Returns
    -------
    loss : float
        The batch mean, as a Python float (PyTorch's ``cross_entropy`` with its default
        ``reduction='mean'``).
    dlogits : ndarray, shape (N, K)
        ``(softmax(logits) - Y) / N`` for rows of ``Y`` that sum to 1 (one-hot or
        probabilities); in general ``(softmax(logits) * Y.sum(1, keepdims=True) - Y) / N``.
        float32 for float32 logits, float64 otherwise (targets are cast to it).

    Raises
    ------
    ValueError
        ``logits`` not 2-D or empty; labels of the wrong length or shape; class indices
        outside ``[0, K)``; a NaN or infinite target probability (PyTorch returns a NaN
        loss instead; cycnn names the entry, since a NaN target is a bug upstream).
    TypeError
        Non-numeric arrays; labels given as ``(N,)`` that are not integers (floats or
        booleans: pass class indices as ints, or distributions as ``(N, K)``).

    Notes
    -----
    The loss is computed from :func:`cycnn.log_softmax`, so logits of any size give a
    finite loss and a gradient without NaN. A NaN logit is not refused: it makes its row's
    loss and gradient NaN, as in PyTorch.

    Examples
    --------
    >>> loss, dlogits = softmax_cross_entropy([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    >>> round(loss, 6)
    0.693147
    >>> dlogits
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    """
    func = "softmax_cross_entropy"
    logits = as_array(func, "logits", logits)
    labels = as_array(func, "labels", labels)
    check_ndim(func, "logits", logits, 2, "(N, K)")
    N, K = logits.shape
    if N == 0 or K == 0:
        raise ValueError(f"{func}: logits is empty (logits.shape={logits.shape})")
    dt = float_dtype(logits)
    logits = np.ascontiguousarray(logits, dtype=dt)
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise TypeError(
                f"{func}: labels of shape (N,) = {labels.shape} must be integer class "
                f"indices, got dtype {labels.dtype}; pass target distributions as (N, K) "
                f"= ({N}, {K})"
            )
        if labels.shape[0] != N:
            raise ValueError(
                f"{func}: labels has {labels.shape[0]} entries but logits has N={N} rows "
                f"(labels.shape={labels.shape}, logits.shape={logits.shape})"
            )
        bad = (labels < 0) | (labels >= K)
        if bad.any():
            raise ValueError(
                f"{func}: labels must lie in [0, K) = [0, {K}) for logits.shape="
                f"{logits.shape}; got {labels[bad][0]} at index {int(np.argmax(bad))}"
            )
        target = np.zeros((N, K), dt)
        target[np.arange(N), labels] = 1
    elif labels.ndim == 2:
        if labels.shape != (N, K):
            raise ValueError(
                f"{func}: target distributions must have the shape of logits (N, K) = "
                f"{(N, K)}, got labels.shape={labels.shape}"
            )
        target = np.ascontiguousarray(labels, dtype=dt)
        bad = ~np.isfinite(target)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{func}: labels must be finite probabilities; found {target[at]} at {at} "
                f"(labels.shape={labels.shape})"
            )
    else:
        raise ValueError(
            f"{func}: labels must be (N,) class indices or (N, K) distributions with "
            f"(N, K) = {(N, K)}, got labels.shape={labels.shape}"
        )
    logp = log_softmax(logits, axis=1)
    loss = -float(np.sum(target * logp, dtype=np.float64)) / N
    dlogits = (np.exp(logp) * target.sum(axis=1, keepdims=True) - target) / dt.type(N)
    return loss, dlogits


def mse_loss(pred, target, reduction="mean"):
    """Squared-error loss and its gradient, with a choice of reduction.

    Parameters
    ----------
    pred : array_like, any shape
        Predictions ``y``.
    target : array_like, shape of pred
        Targets ``t``.
    reduction : {'mean', 'sum', 'half_sum'}, default 'mean'
        * ``'mean'``: ``E = mean((y - t)^2)`` over every element, gradient
          ``2 (y - t) / y.size``; PyTorch's ``mse_loss`` default, and the default here
          so that the loss, like :func:`softmax_cross_entropy`, does not grow with the
          batch.
        * ``'sum'``: ``E = sum((y - t)^2)``, gradient ``2 (y - t)``.
        * ``'half_sum'``: ``E = 1/2 sum (t - y)^2``, gradient ``y - t``: the convention
          of the worked single-channel example in the docs, where the 1/2 cancels the
          2 of the derivative.

    Returns
    -------
    loss : float
        Python float.
    dpred : ndarray, shape of pred
        ``dE/dy``; float32 when both arrays are float32, float64 otherwise.

    Raises
    ------
    ValueError
        ``pred`` and ``target`` differ in shape, either is empty, or an unknown
        reduction.
    TypeError
        Non-numeric arrays.

    Examples
    --------
    >>> loss, dpred = mse_loss([1.0, 2.0], [0.0, 0.0], reduction="half_sum")
    >>> loss, dpred
    (2.5, array([1., 2.]))
    >>> mse_loss([1.0, 2.0], [0.0, 0.0])[0]
    2.5
    """
    func = "mse_loss"
    if reduction not in MSE_REDUCTIONS:
        raise ValueError(
            f"{func}: unknown reduction {reduction!r}; use one of {MSE_REDUCTIONS}"
        )
    pred, target = as_array(func, "pred", pred), as_array(func, "target", target)
    dt = float_dtype(pred, target)
    pred, target = np.asarray(pred, dtype=dt), np.asarray(target, dtype=dt)
    if pred.shape != target.shape:
        raise ValueError(
            f"{func}: pred and target must have the same shape; got pred.shape="
            f"{pred.shape}, target.shape={target.shape}"
        )
    if pred.size == 0:
        raise ValueError(f"{func}: pred is empty (pred.shape={pred.shape})")
    diff = pred - target
    sq = float(np.sum(diff * diff, dtype=np.float64))
    if reduction == "mean":
        return sq / diff.size, diff * diff.dtype.type(2.0 / diff.size)
    if reduction == "sum":
        return sq, 2 * diff
    return 0.5 * sq, diff
