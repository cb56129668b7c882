"""Weights that leave cycnn: the same network as a PyTorch module."""

from __future__ import annotations

import numpy as np

__all__ = ["to_torch"]


def _symmetric(layer, torch_name):
    """(ph, pw) of a convolution layer whose padding is the same on both sides."""
    (pt, pb), (pl, pr) = layer.pads
    if pt != pb or pl != pr:
        raise ValueError(f"to_torch: {layer!r} has asymmetric padding {layer.pads}, "
                         f"which torch.nn.{torch_name} cannot express")
    return (pt, pl)


def _torch_module(layer, nn):
    """The ``torch.nn`` module computing what ``layer`` computes, from its arguments."""
    kind = layer.config()["type"]
    makers = {
        "Conv2D": lambda: nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            _symmetric(layer, "Conv2d"), layer.dilation, layer.groups,
            "bias" in layer.params, layer.padding_mode),
        "ConvTranspose2D": lambda: nn.ConvTranspose2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            _symmetric(layer, "ConvTranspose2d"), layer.output_padding, layer.groups,
            "bias" in layer.params, layer.dilation),
        "MaxPool2D": lambda: nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding,
                                          layer.dilation, ceil_mode=layer.ceil_mode),
        "AvgPool2D": lambda: nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                                          layer.ceil_mode, layer.count_include_pad,
                                          layer.divisor_override),
        "ReLU": nn.ReLU,
        "Flatten": nn.Flatten,
        "Dense": lambda: nn.Linear(layer.in_features, layer.out_features,
                                   "bias" in layer.params),
    }
    if kind not in makers:
        raise TypeError(f"to_torch: no PyTorch equivalent for {layer!r}")
    return makers[kind]()


def to_torch(model):
    """The equivalent ``torch.nn.Sequential`` holding a copy of ``model``'s weights.

    Layer indices, parameter names and shapes are the same, so
    ``model.load_state_dict(tm.state_dict())`` and back need no reshaping. Every argument
    of cycnn's layers carries over (dilation, groups, ``bias=False`` and padding modes of
    ``Conv2D``; ``ConvTranspose2D``; pooling padding, dilation, ``ceil_mode``,
    ``count_include_pad`` and ``divisor_override``), except padding that differs between
    the two sides of an axis, which PyTorch's modules cannot express.

    Raises
    ------
    ValueError
        A convolution layer with asymmetric padding.
    TypeError
        A layer with no PyTorch equivalent.
    """
    import torch
    from torch import nn

    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[model.dtype]
    tm = nn.Sequential(*(_torch_module(layer, nn) for layer in model.layers)).to(dtype)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm
