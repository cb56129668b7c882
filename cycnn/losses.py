"""Losses in plain NumPy: softmax + cross-entropy and mean squared error.

Each loss returns ``(loss, dpred)``: the loss (a Python float, or an array with
``reduction='none'``) and its gradient with respect to the prediction, ready to feed the
backward pass of the layer below.

Softmax followed by cross-entropy has the famously simple gradient ``Y_hat - Y`` per
sample; averaged over a batch of N samples the loss is ``-(1/N) sum_n sum_k Y[n,k] *
log Y_hat[n,k]`` and its gradient ``(Y_hat - Y) / N``.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_array, as_choice, as_int, as_real, float_dtype
from .activations import log_softmax

__all__ = ["softmax_cross_entropy", "mse_loss"]

#: The reductions :func:`softmax_cross_entropy` accepts (PyTorch's).
CE_REDUCTIONS = ("mean", "sum", "none")

#: The reductions :func:`mse_loss` accepts.
MSE_REDUCTIONS = ("mean", "sum", "half_sum", "none")


def _classes_last(a, class_axis):
    """a with its class axis moved last and every other axis merged: one row per position."""
    if class_axis != a.ndim - 1:
        a = np.moveaxis(a, class_axis, -1)
    return a.reshape(-1, a.shape[-1])


def softmax_cross_entropy(logits, labels, weight=None, ignore_index=-100, label_smoothing=0.0,
                          reduction="mean"):
    """Cross-entropy of ``softmax(logits)`` against ``labels``, and its gradient.

    For one position (a sample, or a pixel of a spatial output) with logits ``z``, class
    weights ``w`` (all 1 by default) and ``s = softmax(z)``:

    * class index ``t``: ``l = -(1 - eps) w[t] log s[t] - (eps / K) sum_k w[k] log s[k]``,
      gradient ``dl/dz = (1 - eps) w[t] (s - onehot(t)) + (eps / K) (s sum_k w[k] - w)``;
    * target distribution ``Y`` (smoothed to ``Y' = (1 - eps) Y + eps / K``):
      ``l = -sum_k w[k] Y'[k] log s[k]``, gradient ``s sum_k w[k] Y'[k] - w Y'``.

    Each gradient is the sum over every path from ``z_j`` to ``l``: through ``log s[k]``
    for every ``k``, since ``d log s[k] / d z_j = delta_kj - s[j]``.

    Parameters
    ----------
    logits : array_like, shape (N, K), (N, K, d1, ...) or (K,)
        Unnormalised scores: one row per sample, the classes on axis 1 (PyTorch's layout
        for spatial outputs, e.g. ``(N, K, H, W)``), or one sample ``(K,)``.
    labels : array_like
        Either class indices (an integer dtype) of the logits' shape without the class
        axis (``(N,)``, ``(N, d1, ...)`` or ``()``), each in ``[0, K)`` or equal to
        ``ignore_index``; or target distributions of the logits' own shape (one-hot or
        soft labels).
    weight : array_like, shape (K,), optional
        A weight per class (PyTorch's ``weight``), e.g. to count rare classes more.
    ignore_index : int, default -100
        A class-index label with this value contributes nothing, to the loss or to the
        mean's denominator (ignored for target distributions, as in PyTorch).
    label_smoothing : float, default 0.0
        ``eps`` in ``[0, 1]``: mix the target with the uniform distribution.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'sum'`` adds the per-position losses; ``'none'`` returns them;
        ``'mean'`` divides the sum by the number of positions (target distributions), or
        for class indices by the total weight ``sum w[t]`` of the positions not ignored
        (their count without ``weight``), as PyTorch does.

    Returns
    -------
    loss : float, or ndarray of the labels' positions for ``reduction='none'``
    dlogits : ndarray, shape of ``logits``
        The gradient of ``loss`` (for ``'none'``: of each position's loss with respect to
        its own logits, so multiply by the upstream gradient of that position).
        ``(softmax(logits) - Y) / N`` for the default arguments and rows of ``Y`` that sum
        to 1. float32 for float32 logits, float64 otherwise (targets are cast to it).

    Raises
    ------
    ValueError
        ``logits`` 0-d or empty; labels of the wrong shape; class indices outside
        ``[0, K)`` (other than ``ignore_index``); a NaN or infinite target probability
        (PyTorch returns a NaN loss instead; cycnn names the entry, since a NaN target is
        a bug upstream); a weight not of shape (K,); label_smoothing outside [0, 1]; an
        unknown reduction.
    TypeError
        Non-numeric arrays; labels without a class axis that are not integers (floats or
        booleans: pass class indices as ints, or distributions with the logits' shape).

    Notes
    -----
    The loss is computed from :func:`cycnn.log_softmax`, so logits of any size give a
    finite loss and a gradient without NaN. A NaN logit is not refused: it makes its
    position's loss and gradient NaN, as in PyTorch. If every label is ``ignore_index``,
    the mean is 0/0: NaN, as in PyTorch, and the gradient is zero (no position takes part).

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
    reduction = as_choice(func, "reduction", reduction, CE_REDUCTIONS)
    eps = as_real(func, "label_smoothing", label_smoothing, 0.0, 1.0)
    ignore_index = as_int(func, "ignore_index", ignore_index, None, None)
    if logits.ndim == 0 or logits.size == 0:
        raise ValueError(f"{func}: logits is empty or 0-d (logits.shape={logits.shape}); "
                         "expected (N, K), (N, K, d1, ...) or (K,)")
    class_axis = 0 if logits.ndim == 1 else 1
    K = logits.shape[class_axis]
    dt = float_dtype(logits)
    logits = np.ascontiguousarray(logits, dtype=dt)
    if weight is not None:
        w = np.asarray(as_array(func, "weight", weight), dt)
        if w.shape != (K,):
            raise ValueError(f"{func}: weight must have shape (K,) = ({K},) for "
                             f"logits.shape={logits.shape}, got weight.shape={w.shape}")
    z = _classes_last(logits, class_axis)  # (M, K): one row per position
    logp = log_softmax(z, axis=1)
    s = np.exp(logp)
    index_shape = logits.shape[:class_axis] + logits.shape[class_axis + 1:]
    if labels.shape == logits.shape:  # target distributions
        target = np.asarray(labels, dt)
        bad = ~np.isfinite(target)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{func}: labels must be finite probabilities; found {target[at]} at {at} "
                f"(labels.shape={labels.shape})"
            )
        Y = _classes_last(target, class_axis)
        Y = (1 - eps) * Y + eps / K if eps else Y
        wY = Y if weight is None else w * Y
        loss = -np.sum(wY * logp, axis=1, dtype=np.float64)
        grad = s * wY.sum(axis=1, keepdims=True) - wY
        denominator = float(z.shape[0])
    elif labels.shape == index_shape:
        t, keep = _class_indices(func, labels, K, ignore_index, logits.shape)
        rows = np.arange(len(t))
        if weight is None and not eps and keep.all():
            # the common case, (s - onehot(t)) / M: the general formula below with every
            # weight 1 and nothing ignored or smoothed, without its products by 1 and 0
            loss = -logp[rows, t].astype(np.float64)
            grad = s.copy()
            grad[rows, t] -= 1
            denominator = float(len(t))
        else:
            w = np.ones(K, dt) if weight is None else w
            tt = np.where(keep, t, 0)        # an ignored position reads class 0 ...
            wt = np.where(keep, w[tt], 0)    # ... with weight 0: w[t] per position
            onehot = np.zeros_like(z)
            onehot[rows, tt] = 1
            loss = -(wt * logp[rows, tt]).astype(np.float64)
            if eps:  # the smoothing terms (0 * log s would make a -inf logit's loss NaN)
                smooth = -(logp @ w) * keep
                loss = (1 - eps) * loss + (eps / K) * smooth.astype(np.float64)
                grad = (1 - eps) * wt[:, None] * (s - onehot) + \
                    (eps / K) * keep[:, None] * (s * w.sum() - w)
            else:
                grad = wt[:, None] * (s - onehot)
            denominator = float(np.sum(wt, dtype=np.float64))
    else:
        raise ValueError(
            f"{func}: labels must be class indices of shape {index_shape} (the logits' "
            f"shape without the class axis) or distributions of the logits' shape "
            f"{logits.shape}; got labels.shape={labels.shape}"
        )
    grad = grad.astype(dt, copy=False)
    if reduction == "none":
        out_loss = loss.astype(dt).reshape(index_shape)
    else:
        total = float(np.sum(loss))
        if reduction == "sum":
            out_loss = total
        else:
            # every label ignored: 0/0, NaN, with the zero gradient of the ignored
            # positions (PyTorch's result)
            out_loss = total / denominator if denominator else float("nan")
            grad = grad / dt.type(denominator) if denominator else grad
    # back to the logits' layout: classes on their own axis again
    if class_axis == logits.ndim - 1:
        return out_loss, grad.reshape(logits.shape)
    moved = np.moveaxis(logits, class_axis, -1).shape
    dlogits = np.ascontiguousarray(np.moveaxis(grad.reshape(moved), -1, class_axis))
    return out_loss, dlogits


def _class_indices(func, labels, K, ignore_index, logits_shape):
    """``(t, keep)``: integer ``labels`` as a flat int64 array, and where they are not
    ``ignore_index``; a TypeError or ValueError for other dtypes or classes outside
    ``[0, K)``."""
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"{func}: labels of shape {labels.shape} (the logits' shape without the "
            f"class axis) must be integer class indices, got dtype {labels.dtype}; pass "
            f"target distributions with the logits' shape {logits_shape}"
        )
    t = labels.reshape(-1).astype(np.int64, copy=False)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= K))
    if bad.any():
        at = int(np.argmax(bad))
        raise ValueError(
            f"{func}: labels must lie in [0, K) = [0, {K}) (or equal ignore_index="
            f"{ignore_index}) for logits.shape={logits_shape}; got {t[at]} at flat "
            f"index {at}"
        )
    return t, keep


def mse_loss(pred, target, reduction="mean"):
    """Squared-error loss and its gradient, with a choice of reduction.

    Parameters
    ----------
    pred : array_like, any shape
        Predictions ``y``.
    target : array_like, shape of pred
        Targets ``t``.
    reduction : {'mean', 'sum', 'half_sum', 'none'}, default 'mean'
        * ``'mean'``: ``E = mean((y - t)^2)`` over every element, gradient
          ``2 (y - t) / y.size``; PyTorch's ``mse_loss`` default, and the default here
          so that the loss, like :func:`softmax_cross_entropy`, does not grow with the
          batch.
        * ``'sum'``: ``E = sum((y - t)^2)``, gradient ``2 (y - t)``.
        * ``'half_sum'``: ``E = 1/2 sum (t - y)^2``, gradient ``y - t``: the convention
          of the worked single-channel example in the docs, where the 1/2 cancels the
          2 of the derivative.
        * ``'none'``: the elementwise ``E = (y - t)^2`` (PyTorch's), with the derivative
          of each element with respect to its own prediction, ``2 (y - t)``: multiply it
          by the upstream gradient.

    Returns
    -------
    loss : float, or ndarray of pred's shape for ``reduction='none'``
        Python float, or an array of the common dtype.
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
    if reduction == "none":
        return diff * diff, 2 * diff
    sq = float(np.sum(diff * diff, dtype=np.float64))
    if reduction == "mean":
        return sq / diff.size, diff * diff.dtype.type(2.0 / diff.size)
    if reduction == "sum":
        return sq, 2 * diff
    return 0.5 * sq, diff
