"""Classification metrics: the confusion matrix and what follows from it."""

from __future__ import annotations

import numpy as np

from ._validate import as_int, as_labels

__all__ = ["confusion_matrix", "per_class_accuracy"]


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : array_like of int, shape (N,)
        Labels and predictions in ``[0, num_classes)``.
    num_classes : int >= 1

    Returns
    -------
    ndarray of int64, shape (num_classes, num_classes)
        ``m[i, j]`` counts the samples of class ``i`` predicted as ``j``; the diagonal
        holds the right answers, each row sums to the number of samples of its class.

    Raises
    ------
    TypeError, ValueError
        Labels that are not integers in range, or lengths that differ.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 0, 1]])
    """
    func = "confusion_matrix"
    k = as_int(func, "num_classes", num_classes, 1)
    y_true = np.asarray(y_true)
    y_true = as_labels(func, y_true, y_true.shape[0] if y_true.ndim else 0, k)
    y_pred = as_labels(func, y_pred, y_true.shape[0], k)
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def per_class_accuracy(matrix):
    """The fraction of each class's samples predicted right: ``diag(m) / m.sum(axis=1)``
    (NaN for a class with no samples).

    Examples
    --------
    >>> per_class_accuracy(np.array([[1, 1], [0, 2]]))
    array([0.5, 1. ])
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"per_class_accuracy: matrix must be square, got shape {m.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(m) / m.sum(axis=1)
