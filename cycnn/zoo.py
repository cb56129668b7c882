"""Ready-made networks, by name in :data:`MODELS` (``cycnn train --model NAME``)."""

from __future__ import annotations

import numpy as np

from ._validate import as_int, as_real
from .layers import AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from .model import Sequential

__all__ = ["lenet5", "convnet", "MODELS"]


def lenet5(seed=0, dtype=np.float32, pool="max"):
    """A LeNet-5-style network for 1x28x28 images and 10 classes.

    conv 1->6 5x5, ReLU, pool 2, conv 6->16 5x5, ReLU, pool 2, flatten,
    dense 256->120, ReLU, dense 120->84, ReLU, dense 84->10 (44,426 parameters).
    Weights are He-normal from ``np.random.default_rng(seed)``, layer by layer.

    Parameters
    ----------
    seed : int, default 0
    dtype : float32 (default) or float64
    pool : {'max', 'avg'}, default 'max'

    Returns
    -------
    Sequential
    """
    pools = {"max": MaxPool2D, "avg": AvgPool2D}
    if pool not in pools:
        raise ValueError(f"lenet5: pool must be 'max' or 'avg', got {pool!r}")
    rng = np.random.default_rng(seed)
    Pool = pools[pool]
    return Sequential(
        Conv2D(1, 6, 5, rng=rng, dtype=dtype), ReLU(), Pool(2),
        Conv2D(6, 16, 5, rng=rng, dtype=dtype), ReLU(), Pool(2),
        Flatten(),
        Dense(256, 120, rng=rng, dtype=dtype), ReLU(),
        Dense(120, 84, rng=rng, dtype=dtype), ReLU(),
        Dense(84, 10, rng=rng, dtype=dtype),
        input_shape=(1, 28, 28),
    )


def convnet(seed=0, dtype=np.float32, channels=(32, 64), hidden=128, dropout=0.25):
    """Two convolution blocks with batch norm, then a dense head with dropout, for 1x28x28
    images and 10 classes (the Fashion-MNIST model).

    Each block is conv 3x3 (padding 1), BatchNorm2D, ReLU, max-pool 2 (28 -> 14 -> 7);
    then dropout, flatten, dense ``channels[1] * 7 * 7 -> hidden``, ReLU, dropout, dense
    ``hidden -> 10``. With the defaults: 421,834 parameters. Weights are He-normal from
    ``np.random.default_rng(seed)``, layer by layer; the dropout masks are drawn from
    generators that :meth:`Sequential.fit` reseeds every epoch.

    Parameters
    ----------
    seed : int, default 0
    dtype : float32 (default) or float64
    channels : (int, int), default (32, 64)
        Filters of the two convolutions.
    hidden : int, default 128
    dropout : float in [0, 1), default 0.25
        Dropout probability of both dropout layers.

    Returns
    -------
    Sequential
    """
    func = "convnet"
    if not isinstance(channels, (tuple, list)) or len(channels) != 2:
        raise ValueError(f"{func}: channels must be a pair (C1, C2), got {channels!r}")
    c1, c2 = (as_int(func, "channels", c, 1) for c in channels)
    hidden = as_int(func, "hidden", hidden, 1)
    p = as_real(func, "dropout", dropout, 0.0, 1.0, hi_open=True)
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2D(1, c1, 3, padding=1, rng=rng, dtype=dtype), BatchNorm2D(c1, dtype=dtype),
        ReLU(), MaxPool2D(2),
        Conv2D(c1, c2, 3, padding=1, rng=rng, dtype=dtype), BatchNorm2D(c2, dtype=dtype),
        ReLU(), MaxPool2D(2),
        Dropout(p), Flatten(),
        Dense(c2 * 7 * 7, hidden, rng=rng, dtype=dtype), ReLU(), Dropout(p),
        Dense(hidden, 10, rng=rng, dtype=dtype),
        input_shape=(1, 28, 28),
    )


#: the named networks: name -> function(seed, dtype) returning a fresh Sequential
MODELS = {"lenet5": lenet5, "convnet": convnet}
