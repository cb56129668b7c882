"""Weights that leave cycnn: PyTorch modules both ways, and ONNX graphs.

* :func:`to_torch` builds the equivalent ``torch.nn.Sequential`` and copies the weights
  and buffers in; :func:`from_torch` does the opposite for a PyTorch network made of the
  layers cycnn has.
* :func:`export_onnx` writes an ONNX graph (the ``onnx`` package) that any ONNX runtime
  can execute: the inference-mode network, from the input image to the logits.

The ``.safetensors`` weights format lives with the other file formats in
:mod:`cycnn.checkpoint` (``model.save("m.safetensors")``).

Each layer maps to one module or operator:

=================  =======================  ======================
cycnn              torch.nn                 ONNX
=================  =======================  ======================
Conv2D             Conv2d                   Conv (padding_mode zeros)
ConvTranspose2D    ConvTranspose2d          ConvTranspose
MaxPool2D          MaxPool2d                MaxPool
AvgPool2D          AvgPool2d                AveragePool
GlobalAvgPool2D    AdaptiveAvgPool2d(1)     GlobalAveragePool
ReLU               ReLU                     Relu
LeakyReLU          LeakyReLU                LeakyRelu
Tanh, Sigmoid      Tanh, Sigmoid            Tanh, Sigmoid
Flatten            Flatten                  Flatten
Dense              Linear                   Gemm (transB=1)
Dropout            Dropout                  (left out: inference)
BatchNorm2D/1D     BatchNorm2d/1d           BatchNormalization
=================  =======================  ======================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Tanh,
)
from .model import Sequential

__all__ = ["to_torch", "from_torch", "export_onnx"]

#: the ONNX operator set the exported graphs use, and the IR version they declare (both
#: read by every onnxruntime since 1.14)
ONNX_OPSET = 17
ONNX_IR_VERSION = 8


# --------------------------------------------------------------------------- to PyTorch

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
        "LeakyReLU": lambda: nn.LeakyReLU(layer.negative_slope),
        "Tanh": nn.Tanh,
        "Sigmoid": nn.Sigmoid,
        "GlobalAvgPool2D": lambda: nn.AdaptiveAvgPool2d(1),
        "Dropout": lambda: nn.Dropout(layer.p),
        "BatchNorm2D": lambda: nn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum),
        "BatchNorm1D": lambda: nn.BatchNorm1d(layer.num_features, layer.eps, layer.momentum),
    }
    if kind not in makers:
        raise TypeError(f"to_torch: no PyTorch equivalent for {layer!r}")
    return makers[kind]()


def to_torch(model):
    """The equivalent ``torch.nn.Sequential`` holding a copy of ``model``'s weights and
    buffers (batch norm's running statistics), each module in its layer's mode.

    Layer indices, parameter names and shapes are the same, so
    ``model.load_state_dict(tm.state_dict())`` and back need no reshaping, and a
    ``.safetensors`` file saved by cycnn loads with ``tm.load_state_dict(
    safetensors.torch.load_file(path))``. Every argument of cycnn's layers carries over
    (dilation, groups, ``bias=False`` and padding modes of ``Conv2D``; ``ConvTranspose2D``;
    pooling padding, dilation, ``ceil_mode``, ``count_include_pad`` and
    ``divisor_override``), except padding that differs between the two sides of an axis,
    which PyTorch's modules cannot express.

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
    tm.load_state_dict({k: torch.from_numpy(np.array(v))
                        for k, v in model.state_dict().items()})
    tm.train(any(layer.training for layer in model.layers))
    for layer, module in zip(model.layers, tm):
        module.train(layer.training)
    return tm


# --------------------------------------------------------------------------- from PyTorch

def _unsupported(module, why):
    return ValueError(f"from_torch: {module!r} is not supported: {why}")


def _from_module(m, nn, dtype):
    """A cycnn layer (weights not yet copied) computing what torch module ``m`` computes."""
    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    if isinstance(m, nn.Conv2d):
        padding = m.padding if isinstance(m.padding, str) else pair(m.padding)
        return Conv2D(m.in_channels, m.out_channels, pair(m.kernel_size), pair(m.stride),
                      padding, pair(m.dilation), m.groups, m.bias is not None, m.padding_mode,
                      rng=0, dtype=dtype)
    if isinstance(m, nn.ConvTranspose2d):
        if m.padding_mode != "zeros":
            raise _unsupported(m, "only padding_mode='zeros'")
        return ConvTranspose2D(m.in_channels, m.out_channels, pair(m.kernel_size),
                               pair(m.stride), pair(m.padding), pair(m.output_padding),
                               m.groups, m.bias is not None, pair(m.dilation), rng=0,
                               dtype=dtype)
    if isinstance(m, nn.Linear):
        return Dense(m.in_features, m.out_features, m.bias is not None, rng=0, dtype=dtype)
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise _unsupported(m, "only return_indices=False")
        return MaxPool2D(pair(m.kernel_size), pair(m.stride), pair(m.padding),
                         pair(m.dilation), ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return AvgPool2D(pair(m.kernel_size), pair(m.stride), pair(m.padding), m.ceil_mode,
                         m.count_include_pad, m.divisor_override)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if pair(m.output_size) != (1, 1):
            raise _unsupported(m, "only output_size=1 (global average pooling)")
        return GlobalAvgPool2D()
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(m, "only start_dim=1, end_dim=-1")
        return Flatten()
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        if not (m.affine and m.track_running_stats):
            raise _unsupported(m, "only affine=True and track_running_stats=True")
        cls = BatchNorm2D if isinstance(m, nn.BatchNorm2d) else BatchNorm1D
        return cls(m.num_features, m.eps, m.momentum, dtype=dtype)
    if isinstance(m, nn.Dropout):
        return Dropout(m.p)
    if isinstance(m, nn.LeakyReLU):
        return LeakyReLU(m.negative_slope)
    simple = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid}
    if type(m) in simple:
        return simple[type(m)]()
    raise TypeError(f"from_torch: no cycnn layer for {m!r} (supported: Conv2d, "
                    "ConvTranspose2d, Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), "
                    "Flatten, BatchNorm1d/2d, Dropout, ReLU, LeakyReLU, Tanh, Sigmoid, "
                    "inside nn.Sequential)")


def _leaves(module, nn):
    for m in module:
        if isinstance(m, nn.Sequential):
            yield from _leaves(m, nn)
        elif not isinstance(m, nn.Identity):
            yield m


def from_torch(module, input_shape=None):
    """A cycnn :class:`Sequential` computing what the PyTorch network ``module`` computes,
    with a copy of its weights and buffers.

    Parameters
    ----------
    module : torch.nn.Sequential
        Made of the modules listed in this module's table (nested ``Sequential`` blocks
        are flattened and ``Identity`` modules dropped, so layer indices can differ from
        PyTorch's). Every option of the convolutions, pools and linear layers carries
        over (dilation, groups, ``bias=False``, padding modes, ``ceil_mode``, ...).
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(1, 28, 28)``, checked against the layers.

    Returns
    -------
    Sequential
        In the module's dtype (float32 or float64), each layer in its module's mode.

    Raises
    ------
    TypeError
        ``module`` is not an ``nn.Sequential``, or holds a module cycnn has no layer for.
    ValueError
        A module with an option cycnn does not implement (``return_indices=True``, a
        transposed convolution with a padding mode other than zeros, ...).
    """
    import torch
    from torch import nn

    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch: module must be a torch.nn.Sequential, got "
                        f"{type(module).__name__}")
    tensors = list(module.parameters()) + list(module.buffers())
    floats = {t.dtype for t in tensors if t.is_floating_point()}
    if len(floats) > 1 or not floats <= {torch.float32, torch.float64}:
        raise ValueError(f"from_torch: the module's tensors must all be float32 or all "
                         f"float64, got {sorted(str(d) for d in floats)}")
    dtype = np.float64 if floats == {torch.float64} else np.float32
    pairs = [(m, _from_module(m, nn, dtype)) for m in _leaves(module, nn)]
    if not pairs:
        raise ValueError("from_torch: the module has no layers")
    model = Sequential([layer for _, layer in pairs], input_shape=input_shape)
    for m, layer in pairs:
        layer.train() if m.training else layer.eval()
        state = {k: v.detach().cpu().numpy() for k, v in m.state_dict().items()}
        for name, target in {**layer.params, **layer.buffers}.items():
            np.copyto(target, state[name], casting="unsafe")
    if input_shape is not None:
        model.shapes(input_shape)
    return model


# --------------------------------------------------------------------------- ONNX

def _onnx_nodes(layer, i, x, helper, numpy_helper, init, in_shape, out_shape):
    """The ONNX nodes for ``layer`` reading tensor ``x`` of per-sample shape ``in_shape``
    (``out_shape`` after the layer); returns ``(nodes, output name)``."""
    kind = type(layer).__name__
    y = f"y{i}"

    def const(name, a):
        init.append(numpy_helper.from_array(np.ascontiguousarray(a, np.float32), f"{i}.{name}"))
        return f"{i}.{name}"

    node = helper.make_node
    def weights():
        ins = [const("weight", layer.params["weight"])]
        return ins + ([const("bias", layer.params["bias"])] if "bias" in layer.params else [])

    if kind in ("Conv2D", "ConvTranspose2D"):
        (pt, pb), (pl, pr) = layer.pads
        extra = {}
        if kind == "Conv2D" and layer.padding_mode != "zeros":
            raise ValueError(f"export_onnx: {layer!r} pads with padding_mode="
                             f"{layer.padding_mode!r}; ONNX's Conv pads with zeros only")
        if kind == "ConvTranspose2D":
            extra["output_padding"] = list(layer.output_padding)
        op = "Conv" if kind == "Conv2D" else "ConvTranspose"
        return [node(op, [x, *weights()], [y], kernel_shape=list(layer.kernel_size),
                     strides=list(layer.stride), pads=[pt, pl, pb, pr],
                     dilations=list(layer.dilation), group=layer.groups, **extra)], y
    if kind in ("MaxPool2D", "AvgPool2D"):
        ph, pw = layer.padding
        ends = [ph, pw]
        if layer.ceil_mode:
            # PyTorch's ceil_mode drops a last window that would start in the right-hand
            # padding; ONNX runtimes keep it. So export ceil_mode as the end padding that
            # gives PyTorch's (and cycnn's) output size with floor division.
            if kind == "AvgPool2D" and layer.count_include_pad:
                raise ValueError(f"export_onnx: {layer!r} has ceil_mode=True with "
                                 "count_include_pad=True, which ONNX's AveragePool averages "
                                 "differently")
            dil = layer.dilation if kind == "MaxPool2D" else (1, 1)
            ends = [(o - 1) * s + d * (k - 1) + 1 - n - p for o, s, d, k, n, p in zip(
                out_shape[1:], layer.stride, dil, layer.kernel_size, in_shape[1:], (ph, pw))]
        opts = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
                "pads": [ph, pw, *ends]}
        if kind == "MaxPool2D":
            return [node("MaxPool", [x], [y], dilations=list(layer.dilation), **opts)], y
        if layer.divisor_override is not None:
            raise ValueError(f"export_onnx: {layer!r} has divisor_override, which ONNX's "
                             "AveragePool cannot express")
        return [node("AveragePool", [x], [y], count_include_pad=int(layer.count_include_pad),
                     **opts)], y
    if kind == "Dense":
        return [node("Gemm", [x, *weights()], [y], transB=1)], y
    if kind in ("BatchNorm2D", "BatchNorm1D"):
        ins = [x] + [const(k, v) for k, v in (("weight", layer.params["weight"]),
                                               ("bias", layer.params["bias"]),
                                               ("running_mean", layer.buffers["running_mean"]),
                                               ("running_var", layer.buffers["running_var"]))]
        return [node("BatchNormalization", ins, [y], epsilon=layer.eps)], y
    if kind == "LeakyReLU":
        return [node("LeakyRelu", [x], [y], alpha=layer.negative_slope)], y
    if kind == "Flatten":
        return [node("Flatten", [x], [y], axis=1)], y
    if kind == "Dropout":
        return [], x
    simple = {"ReLU": "Relu", "Tanh": "Tanh", "Sigmoid": "Sigmoid",
              "GlobalAvgPool2D": "GlobalAveragePool"}
    if kind not in simple:
        raise TypeError(f"export_onnx: no ONNX operator for {layer!r}")
    return [node(simple[kind], [x], [y])], y


def export_onnx(model, path, input_shape=None):
    """Write ``model`` as an ONNX graph computing its inference-mode logits.

    The graph has one input ``"input"`` of shape ``(N, *input_shape)`` (``N`` left free)
    and one output ``"logits"``; the weights are stored in it as float32 (ONNX runtimes
    implement every operator for float32, not all for float64, so a float64 model is
    rounded). Dropout is left out and batch norm uses its running statistics, as in
    :meth:`Sequential.predict`.

    Parameters
    ----------
    model : Sequential
    path : str or Path
        Where to write the ``.onnx`` file (atomically).
    input_shape : tuple of int, optional
        Per-sample input shape; defaults to ``model.input_shape``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed (``pip install onnx``).
    ValueError
        No input shape is known, or the layers do not fit it.
    TypeError
        A layer with no ONNX operator.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install onnx") from None
    from ._io import atomic_write

    shape = input_shape if input_shape is not None else model.input_shape
    if shape is None:
        raise ValueError("export_onnx: the model's input shape is unknown; pass "
                         "input_shape=(C, H, W)")
    out_shape = model.shapes(shape)[-1]
    elem = TensorProto.FLOAT
    nodes, init, x = [], [], "input"
    shapes = [tuple(shape), *model.shapes(shape)]
    for i, layer in enumerate(model.layers):
        more, x = _onnx_nodes(layer, i, x, helper, numpy_helper, init, shapes[i],
                              shapes[i + 1])
        nodes += more
    if x == "input":  # nothing but dropout: the output is the input
        nodes.append(helper.make_node("Identity", ["input"], ["logits"]))
    else:
        nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes, "cycnn",
        [helper.make_tensor_value_info("input", elem, ["N", *map(int, shape)])],
        [helper.make_tensor_value_info("logits", elem, ["N", *map(int, out_shape)])],
        init,
    )
    onnx_model = helper.make_model(graph, producer_name="cycnn",
                                   opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    onnx_model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(onnx_model)
    path = Path(path)
    with atomic_write(path) as fh:
        fh.write(onnx_model.SerializeToString())
    return path
