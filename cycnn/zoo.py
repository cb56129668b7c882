"""Ready-made networks."""

from __future__ import annotations

import numpy as np

from .layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .model import Sequential

__all__ = ["lenet5"]


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
