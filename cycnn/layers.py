"""Layers: the functional passes wrapped as objects that remember what backprop needs.

Every layer has the same small interface:

* ``forward(x) -> y`` computes the output and, in training mode, keeps what the
  backward pass will need (the input, or the max-pool winners);
* ``backward(dy, need_dx=True) -> dx`` takes ``dL/dy`` and returns ``dL/dx``, storing
  ``dL/dw`` and ``dL/db`` in ``grads``; with ``need_dx=False`` it skips ``dL/dx`` (a
  network's first layer has nobody to pass it to) and returns None;
* ``cache`` holds what the backward pass needs (None when nothing is kept) and
  ``clear_cache()`` drops it;
* ``params`` and ``grads`` are dicts of arrays under PyTorch's names (``"weight"``,
  ``"bias"``); layers without parameters have empty dicts;
* ``train()`` / ``eval()`` switch the mode: in eval mode ``forward`` keeps nothing, so
  inference holds no activations (``eval()`` also clears the cache);
* ``output_shape(shape)`` maps a per-sample input shape (no batch axis) to the output
  shape, raising ValueError when the layer cannot take that input;
* ``config()`` is a JSON-serialisable dict from which the layer can be rebuilt.

The arithmetic lives in the functional modules (:mod:`cycnn.conv`, :mod:`cycnn.pool`,
:mod:`cycnn.activations`, :mod:`cycnn.dense`, :mod:`cycnn.losses`); nothing is computed
twice. Parameters are float32 by default (``dtype=np.float64`` for gradient checks)
and drawn with He (Kaiming) initialisation, ``w ~ N(0, 2 / fan_in)``, biases zero, from
a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_int, as_pair, param_dtype
from .activations import relu_backward, relu_forward
from .conv import conv2d_backward, conv2d_forward
from .dense import dense_backward, dense_forward
from .geometry import conv_output_size, resolve_padding
from .losses import softmax_cross_entropy
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward

__all__ = [
    "Layer",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "ReLU",
    "Flatten",
    "Dense",
    "SoftmaxCrossEntropy",
    "he_normal",
]


def he_normal(shape, fan_in, rng=None, dtype=np.float32):
    """He (Kaiming) normal initialisation: ``N(0, 2 / fan_in)`` samples of ``shape``.

    Suited to layers followed by ReLU (it keeps the variance of activations roughly
    constant from layer to layer). The samples are drawn in float64 and then cast, so
    a float32 and a float64 layer built from the same seed start from the same numbers
    (to float32 rounding).

    Parameters
    ----------
    shape : tuple of int
    fan_in : int
        Inputs feeding each output: ``C * KH * KW`` for a convolution, ``D_in`` for a
        dense layer.
    rng : numpy.random.Generator or int or None
        A generator (used and advanced), a seed, or None for fresh entropy.
    dtype : float32 or float64
    """
    rng = np.random.default_rng(rng)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


class Layer:
    """Base class. Subclasses set ``params`` and implement the passes.

    A subclass's ``forward`` calls :meth:`_keep` with what its ``backward`` will need and
    its ``backward`` reads it back with :meth:`_cached`; the base class owns ``cache``,
    so every layer empties it the same way.
    """

    #: True for layers built with ``rng=`` and ``dtype=`` (those with parameters)
    has_params = False
    #: True for layers whose output for a sample depends on that sample alone (no batch
    #: statistics): a training step on several threads may then cut the batch into shards
    per_sample = False

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self.cache = None

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy, need_dx=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self):
        """Training mode: ``forward`` keeps what ``backward`` needs."""
        self.training = True
        return self

    def eval(self):
        """Inference mode: ``forward`` keeps nothing and ``backward`` is unavailable."""
        self.training = False
        self.clear_cache()
        return self

    def clear_cache(self):
        """Drop what the last training-mode ``forward`` kept for ``backward``."""
        self.cache = None

    def _keep(self, value):
        self.cache = value if self.training else None

    def _cached(self, what="forward input"):
        if self.cache is None:
            raise RuntimeError(
                f"{self!r}.backward: no {what} is stored; call forward() in training mode "
                "(layer.train()) first"
            )
        return self.cache

    def output_shape(self, shape):
        """Per-sample output shape for a per-sample input ``shape`` (no batch axis)."""
        return tuple(shape)

    @property
    def num_params(self) -> int:
        return sum(int(p.size) for p in self.params.values())

    @property
    def dtype(self):
        return next(iter(self.params.values())).dtype if self.params else None

    def astype(self, dtype):
        """Convert the parameters to ``dtype`` in place (and drop stale gradients)."""
        dt = param_dtype(type(self).__name__, dtype)
        for k, v in self.params.items():
            self.params[k] = v.astype(dt)
        self.grads.clear()
        self.clear_cache()
        return self

    def config(self) -> dict:
        return {"type": type(self).__name__}

    def __repr__(self):
        args = [f"{k}={v!r}" for k, v in self.config().items() if k != "type"]
        return f"{type(self).__name__}({', '.join(args)})"


# --------------------------------------------------------------------------- convolution

class Conv2D(Layer):
    """2-D convolution (a cross-correlation, as in every CNN library), NCHW.

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x[n, c, i*sh + p - pt, j*sw + q - pl]``

    Parameters
    ----------
    in_channels : int
        C, the number of input channels.
    out_channels : int
        F, the number of filters (output channels).
    kernel_size : int or (int, int)
        (KH, KW).
    stride : int or (int, int), default 1
    padding : int, (int, int), ((int, int), (int, int)) or 'same'/'valid', default 0
        As :func:`cycnn.conv2d_forward`.
    rng : numpy.random.Generator, int or None
        Source of the He-normal initial weights; biases start at zero.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (F, C, KH, KW), "bias": (F,)}
        PyTorch's ``Conv2d`` names and layout.
    pads : ((int, int), (int, int))
        The padding resolved to ``((pt, pb), (pl, pr))``.
    """

    has_params = True
    per_sample = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 rng=None, dtype=np.float32):
        super().__init__()
        cls = "Conv2D"
        self.in_channels = as_int(cls, "in_channels", in_channels, 1)
        self.out_channels = as_int(cls, "out_channels", out_channels, 1)
        self.kernel_size = as_pair(cls, "kernel_size", kernel_size, 1)
        self.stride = as_pair(cls, "stride", stride, 1)
        self.pads = resolve_padding(padding, self.kernel_size, self.stride, func=cls)
        if isinstance(padding, str):
            self.padding = padding
        elif self.pads[0][0] == self.pads[0][1] and self.pads[1][0] == self.pads[1][1]:
            self.padding = (self.pads[0][0], self.pads[1][0])
        else:
            self.padding = self.pads
        dt = param_dtype(cls, dtype)
        KH, KW = self.kernel_size
        fan_in = self.in_channels * KH * KW
        self.params["weight"] = he_normal((self.out_channels, self.in_channels, KH, KW),
                                          fan_in, rng, dt)
        self.params["bias"] = np.zeros(self.out_channels, dt)

    def forward(self, x):
        y = conv2d_forward(x, self.params["weight"], self.params["bias"], self.stride,
                           self.pads)
        self._keep(x)
        return y

    def backward(self, dy, need_dx=True):
        """Gradients of the weight and bias into ``grads``; returns dx (None if not
        ``need_dx``: a first layer has nobody to pass it to)."""
        dx, dw, db = conv2d_backward(dy, self._cached(), self.params["weight"], self.stride,
                                     self.pads, need_dx=need_dx)
        self.grads["weight"] = dw
        self.grads["bias"] = db
        return dx

    def output_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"expects (C, H, W) = ({self.in_channels}, H, W) per sample, "
                             f"got {tuple(shape)}")
        C, H, W = shape
        if C != self.in_channels:
            raise ValueError(f"expects per-sample input ({self.in_channels}, H, W) "
                             f"(C={self.in_channels} input channels), got {tuple(shape)}")
        (pt, pb), (pl, pr) = self.pads
        KH, KW = self.kernel_size
        if KH > H + pt + pb or KW > W + pl + pr:
            raise ValueError(f"kernel {KH}x{KW} is larger than the padded input "
                             f"{H + pt + pb}x{W + pl + pr} (per-sample shape {tuple(shape)})")
        (sh, sw) = self.stride
        return (self.out_channels, conv_output_size(H, KH, sh, (pt, pb)),
                conv_output_size(W, KW, sw, (pl, pr)))

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else \
            [list(p) if isinstance(p, tuple) else p for p in self.padding]
        return {"type": "Conv2D", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": pad}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        s = "" if self.stride == (1, 1) else f", stride={self.stride}"
        p = "" if self.padding in ((0, 0), "valid") else f", padding={self.padding!r}"
        return f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={k}{s}{p})"


# --------------------------------------------------------------------------- pooling

class _Pool2D(Layer):
    per_sample = True

    _forward = _backward = None  # set by subclasses

    def __init__(self, kernel_size=2, stride=None):
        super().__init__()
        cls = type(self).__name__
        self.kernel_size = as_pair(cls, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(cls, "stride", stride, 1)

    def forward(self, x):
        y, cache = type(self)._forward(x, self.kernel_size, self.stride)
        self._keep(cache)
        return y

    def backward(self, dy, need_dx=True):
        cache = self._cached("forward cache")
        return type(self)._backward(dy, cache) if need_dx else None

    def output_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"expects (C, H, W) per sample, got {tuple(shape)}")
        C, H, W = shape
        KH, KW = self.kernel_size
        if KH > H or KW > W:
            raise ValueError(f"window {KH}x{KW} is larger than the input {H}x{W}")
        sh, sw = self.stride
        return (C, conv_output_size(H, KH, sh), conv_output_size(W, KW, sw))

    def config(self):
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride)}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        s = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        return f"{type(self).__name__}({k}{s})"


class MaxPool2D(_Pool2D):
    """Max pooling over ``kernel_size`` windows (stride defaults to the window).

    The backward pass sends each output's gradient to the input that won its window.

    Parameters
    ----------
    kernel_size : int or (int, int), default 2
        The window (KH, KW).
    stride : int or (int, int), optional
        (sh, sw); by default the window size, so windows do not overlap.
    """

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)


class AvgPool2D(_Pool2D):
    """Average pooling: each input of a window gets ``1 / (KH*KW)`` of its gradient.

    Parameters
    ----------
    kernel_size : int or (int, int), default 2
        The window (KH, KW).
    stride : int or (int, int), optional
        (sh, sw); by default the window size, so windows do not overlap.
    """

    _forward = staticmethod(avg_pool2d_forward)
    _backward = staticmethod(avg_pool2d_backward)


# --------------------------------------------------------------------------- elementwise

class ReLU(Layer):
    """``y = max(x, 0)``; the gradient passes where ``x > 0``."""

    per_sample = True

    def forward(self, x):
        self._keep(x)
        return relu_forward(x)

    def backward(self, dy, need_dx=True):
        x = self._cached()
        return relu_backward(dy, x) if need_dx else None

    def __repr__(self):
        return "ReLU()"


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)``, a view when the input is contiguous."""

    per_sample = True

    def forward(self, x):
        self._keep(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        shape = self._cached("input shape")
        return dy.reshape(shape) if need_dx else None

    def output_shape(self, shape):
        return (int(np.prod(shape, dtype=np.int64)),)

    def __repr__(self):
        return "Flatten()"


# --------------------------------------------------------------------------- dense

class Dense(Layer):
    """Fully-connected layer, ``y = x w^T + b`` (PyTorch's ``Linear``).

    Parameters
    ----------
    in_features, out_features : int
        D_in and D_out.
    rng : numpy.random.Generator, int or None
        Source of the He-normal initial weights; biases start at zero.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (D_out, D_in), "bias": (D_out,)}
    """

    has_params = True
    per_sample = True

    def __init__(self, in_features, out_features, *, rng=None, dtype=np.float32):
        super().__init__()
        cls = "Dense"
        self.in_features = as_int(cls, "in_features", in_features, 1)
        self.out_features = as_int(cls, "out_features", out_features, 1)
        dt = param_dtype(cls, dtype)
        self.params["weight"] = he_normal((self.out_features, self.in_features),
                                          self.in_features, rng, dt)
        self.params["bias"] = np.zeros(self.out_features, dt)

    def forward(self, x):
        self._keep(x)
        return dense_forward(x, self.params["weight"], self.params["bias"])

    def backward(self, dy, need_dx=True):
        dx, dw, db = dense_backward(dy, self._cached(), self.params["weight"])
        self.grads["weight"] = dw
        self.grads["bias"] = db
        return dx if need_dx else None

    def output_shape(self, shape):
        if tuple(shape) != (self.in_features,):
            raise ValueError(f"expects ({self.in_features},) features per sample, got "
                             f"{tuple(shape)}"
                             + (" (add a Flatten layer before it)" if len(shape) > 1 else ""))
        return (self.out_features,)

    def config(self):
        return {"type": "Dense", "in_features": self.in_features,
                "out_features": self.out_features}

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"


# --------------------------------------------------------------------------- loss

class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, averaged over the batch.

    ``forward(logits, labels)`` returns the mean loss (a float) and keeps its gradient;
    ``backward()`` returns ``dL/dlogits = (softmax(logits) - onehot(labels)) / N``.
    The two are computed together by :func:`cycnn.softmax_cross_entropy`.
    """

    def __init__(self):
        self._dlogits = None

    def forward(self, logits, labels):
        loss, self._dlogits = softmax_cross_entropy(logits, labels)
        return loss

    __call__ = forward

    def backward(self):
        if self._dlogits is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward: call forward(logits, labels) first")
        d, self._dlogits = self._dlogits, None
        return d

    def __repr__(self):
        return "SoftmaxCrossEntropy()"


# --------------------------------------------------------------------------- rebuilding

LAYERS = {cls.__name__: cls for cls in (Conv2D, MaxPool2D, AvgPool2D, ReLU, Flatten, Dense)}


def layer_from_config(config: dict, dtype=np.float32) -> Layer:
    """Rebuild a layer from :meth:`Layer.config` (parameters freshly initialised).

    Raises ValueError for an unknown type or arguments the layer does not take, so that a
    hand-edited checkpoint header is reported as such.
    """
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        kind = config.get("type") if isinstance(config, dict) else config
        raise ValueError(f"unknown layer type {kind!r}; known: {', '.join(LAYERS)}")
    cfg = dict(config)
    cls = LAYERS[cfg.pop("type")]
    for k in ("kernel_size", "stride", "padding"):
        if isinstance(cfg.get(k), list):
            cfg[k] = tuple(cfg[k])
    if cls.has_params:
        cfg.update(rng=0, dtype=dtype)
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ValueError(f"{cls.__name__}: bad arguments {sorted(config)}: {e}") from None
