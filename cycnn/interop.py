"""Weights that leave cycnn: the same network as a PyTorch module."""

from __future__ import annotations

import numpy as np

__all__ = ["to_torch"]


def _torch_module(layer, nn):
    """The ``torch.nn`` module computing what ``layer`` computes, from its config."""
    cfg = layer.config()
    kind = cfg["type"]
    if kind == "Conv2D":
        (pt, pb), (pl, pr) = layer.pads
        if pt != pb or pl != pr:
            raise ValueError(f"to_torch: {layer!r} has asymmetric padding {layer.pads}, "
                             "which torch.nn.Conv2d cannot express")
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                         layer.stride, (pt, pl))
    makers = {
        "MaxPool2D": lambda: nn.MaxPool2d(layer.kernel_size, layer.stride),
        "AvgPool2D": lambda: nn.AvgPool2d(layer.kernel_size, layer.stride),
        "ReLU": nn.ReLU,
        "Flatten": nn.Flatten,
        "Dense": lambda: nn.Linear(layer.in_features, layer.out_features),
    }
    if kind not in makers:
        raise TypeError(f"to_torch: no PyTorch equivalent for {layer!r}")
    return makers[kind]()


def to_torch(model):
    """The equivalent ``torch.nn.Sequential`` holding a copy of ``model``'s weights.

    Layer indices, parameter names and shapes are the same, so
    ``model.load_state_dict(tm.state_dict())`` and back need no reshaping.
    """
    import torch
    from torch import nn

    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[model.dtype]
    tm = nn.Sequential(*(_torch_module(layer, nn) for layer in model.layers)).to(dtype)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm
