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
* ``buffers`` holds state that is saved with the weights but not trained (batch norm's
  ``running_mean``, ``running_var`` and ``num_batches_tracked``, PyTorch's buffers);
  optimizers never see it;
* ``train()`` / ``eval()`` switch the mode: in eval mode ``forward`` keeps nothing, so
  inference holds no activations (``eval()`` also clears the cache);
* ``output_shape(shape)`` maps a per-sample input shape (no batch axis) to the output
  shape, raising ValueError when the layer cannot take that input;
* ``config()`` is a JSON-serialisable dict from which the layer can be rebuilt;
* ``reseed(seed)`` restarts the random generator of a layer that draws random numbers
  in training (:class:`Dropout`); other layers ignore it.

The arithmetic lives in the functional modules (:mod:`cycnn.conv`, :mod:`cycnn.pool`,
:mod:`cycnn.activations`, :mod:`cycnn.dense`, :mod:`cycnn.losses`); nothing is computed
twice. Parameters are float32 by default (``dtype=np.float64`` for gradient checks)
and drawn with He (Kaiming) initialisation, ``w ~ N(0, 2 / fan_in)``, biases zero, from
a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_choice, as_int, as_pair, as_real, param_dtype
from .activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import (
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
)
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward, dropout_forward
from .geometry import (
    PADDING_MODES,
    check_avg_pool_options,
    check_conv_args,
    check_conv_transpose_args,
    check_pool_args,
    resolve_padding,
)
from .losses import softmax_cross_entropy
from .norm import batch_norm_backward, batch_norm_forward
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "Layer",
    "Conv2D",
    "ConvTranspose2D",
    "MaxPool2D",
    "AvgPool2D",
    "ReLU",
    "Flatten",
    "Dense",
    "SoftmaxCrossEntropy",
    "LeakyReLU",
    "Tanh",
    "Sigmoid",
    "GlobalAvgPool2D",
    "Dropout",
    "BatchNorm2D",
    "BatchNorm1D",
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
        self.buffers: dict[str, np.ndarray] = {}
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
        """Convert the parameters (and floating-point buffers) to ``dtype`` in place, and
        drop stale gradients."""
        dt = param_dtype(type(self).__name__, dtype)
        for k, v in self.params.items():
            self.params[k] = v.astype(dt)
        for k, v in self.buffers.items():
            if v.dtype.kind == "f":
                self.buffers[k] = v.astype(dt)
        self.grads.clear()
        self.clear_cache()
        return self

    def reseed(self, seed):
        """Restart the layer's random generator from ``seed`` (a no-op for layers that
        draw no random numbers)."""

    def check_buffers(self, buffers: dict) -> list[str]:
        """Problems with candidate ``buffers`` (name -> array) before they are loaded;
        an empty list when they are fine."""
        return []

    def config(self) -> dict:
        return {"type": type(self).__name__}

    def __repr__(self):
        args = [f"{k}={v!r}" for k, v in self.config().items() if k != "type"]
        return f"{type(self).__name__}({', '.join(args)})"


# --------------------------------------------------------------------------- convolution

def _per_sample(layer, shape, channels):
    """A per-sample input shape (C, H, W) with C = channels, as a 3-tuple."""
    if len(shape) != 3:
        raise ValueError(f"expects (C, H, W) = ({channels}, H, W) per sample, "
                         f"got {tuple(shape)}")
    if shape[0] != channels:
        raise ValueError(f"expects per-sample input ({channels}, H, W) "
                         f"(C={channels} input channels), got {tuple(shape)}")
    return tuple(int(v) for v in shape)


def _shape_check(check, shape):
    """Run a functional argument check on an array of ``shape`` that takes no memory, and
    return what it read; its message loses the function name (the layer says who)."""
    try:
        return check(np.broadcast_to(np.zeros((), np.float32), shape))
    except ValueError as err:
        raise ValueError(str(err).split(": ", 1)[-1]) from None


def _listed(v):
    """A config value as JSON keeps it: tuples become lists, at every depth."""
    return [_listed(u) for u in v] if isinstance(v, (tuple, list)) else v


def _unless_default(**options):
    """The options given as ``name=(value, default)`` whose value is not the default, as
    config entries: a layer that uses none of its later arguments keeps the config (and the
    checkpoint header) it had before they existed."""
    return {k: _listed(v) for k, (v, default) in options.items() if v != default}


class Conv2D(Layer):
    """2-D convolution (a cross-correlation, as in every CNN library), NCHW.

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xp[n, c0 + c, i*sh + p*rh, j*sw + q*rw]``
    (``xp`` the padded input, ``c0`` the first channel of filter f's group).

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
    dilation : int or (int, int), default 1
        ``(rh, rw)``, at least 1.
    groups : int, default 1
        At least 1, dividing ``in_channels`` and ``out_channels``.
    bias : bool, default True
        False: no bias parameter (PyTorch's ``bias=False``).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
    rng : numpy.random.Generator, int or None
        Source of the He-normal initial weights; biases start at zero.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (F, C / groups, KH, KW), "bias": (F,)}
        PyTorch's ``Conv2d`` names and layout (no ``"bias"`` with ``bias=False``).
    pads : ((int, int), (int, int))
        The padding resolved to ``((pt, pb), (pl, pr))``.
    """

    has_params = True
    per_sample = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", *, rng=None,
                 dtype=np.float32):
        super().__init__()
        cls = "Conv2D"
        self.in_channels = as_int(cls, "in_channels", in_channels, 1)
        self.out_channels = as_int(cls, "out_channels", out_channels, 1)
        self.kernel_size = as_pair(cls, "kernel_size", kernel_size, 1)
        self.stride = as_pair(cls, "stride", stride, 1)
        self.dilation = as_pair(cls, "dilation", dilation, 1)
        self.groups = as_int(cls, "groups", groups, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{cls}: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        self.padding_mode = as_choice(cls, "padding_mode", padding_mode, PADDING_MODES)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{cls}: bias must be True or False, got {bias!r}")
        self.pads = resolve_padding(padding, self.kernel_size, self.stride, func=cls,
                                    dilation=self.dilation)
        if isinstance(padding, str):
            self.padding = padding
        elif self.pads[0][0] == self.pads[0][1] and self.pads[1][0] == self.pads[1][1]:
            self.padding = (self.pads[0][0], self.pads[1][0])
        else:
            self.padding = self.pads
        dt = param_dtype(cls, dtype)
        KH, KW = self.kernel_size
        Cg = self.in_channels // self.groups
        self.params["weight"] = he_normal((self.out_channels, Cg, KH, KW), Cg * KH * KW, rng, dt)
        if bias:
            self.params["bias"] = np.zeros(self.out_channels, dt)

    @property
    def _args(self):
        return (self.stride, self.pads, self.dilation, self.groups, self.padding_mode)

    def forward(self, x):
        y = conv2d_forward(x, self.params["weight"], self.params.get("bias"), *self._args)
        self._keep(x)
        return y

    def backward(self, dy, need_dx=True):
        """Gradients of the weight and bias into ``grads``; returns dx (None if not
        ``need_dx``: a first layer has nobody to pass it to)."""
        dx, dw, db = conv2d_backward(dy, self._cached(), self.params["weight"], *self._args,
                                     need_dx=need_dx)
        self.grads["weight"] = dw
        if "bias" in self.params:
            self.grads["bias"] = db
        return dx

    def output_shape(self, shape):
        shape = _per_sample(self, shape, self.in_channels)
        w = np.broadcast_to(np.zeros((), np.float32), self.params["weight"].shape)
        geo = _shape_check(lambda x: check_conv_args("Conv2D", x, w, None, *self._args), shape)
        return geo.yshape

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else _listed(self.padding)
        return {"type": "Conv2D", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": pad,
                **_unless_default(dilation=(self.dilation, (1, 1)), groups=(self.groups, 1),
                                  bias=("bias" in self.params, True),
                                  padding_mode=(self.padding_mode, "zeros"))}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        s = "" if self.stride == (1, 1) else f", stride={self.stride}"
        p = "" if self.padding in ((0, 0), "valid") else f", padding={self.padding!r}"
        p += "" if self.dilation == (1, 1) else f", dilation={self.dilation}"
        p += "" if self.groups == 1 else f", groups={self.groups}"
        p += "" if "bias" in self.params else ", bias=False"
        p += "" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"
        return f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={k}{s}{p})"


class ConvTranspose2D(Layer):
    """2-D transposed convolution (PyTorch's ``ConvTranspose2d``), NCHW.

    Every input element scatters its filters onto the output (see
    :func:`cycnn.conv_transpose2d_forward`): the output is the size of the input a
    :class:`Conv2D` with the same arguments would have shrunk to this one's input, plus
    ``output_padding``.

    Parameters
    ----------
    in_channels, out_channels : int
        C_in and C_out, each at least 1 and divisible by ``groups``.
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int, (int, int) or ((int, int), (int, int)), default 0
        Rows and columns cropped from the full scatter.
    output_padding : int or (int, int), default 0
        Below the stride or the dilation on each axis.
    groups : int, default 1
    bias : bool, default True
    dilation : int or (int, int), default 1
    rng : numpy.random.Generator, int or None
        Source of the He-normal initial weights (fan-in ``C_in / groups * KH * KW``, the
        inputs of the convolution this one transposes); biases start at zero.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (C_in, C_out / groups, KH, KW), "bias": (C_out,)}
        PyTorch's ``ConvTranspose2d`` names and layout.
    """

    has_params = True
    per_sample = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        cls = "ConvTranspose2D"
        self.in_channels = as_int(cls, "in_channels", in_channels, 1)
        self.out_channels = as_int(cls, "out_channels", out_channels, 1)
        self.kernel_size = as_pair(cls, "kernel_size", kernel_size, 1)
        self.stride = as_pair(cls, "stride", stride, 1)
        self.dilation = as_pair(cls, "dilation", dilation, 1)
        self.output_padding = as_pair(cls, "output_padding", output_padding, 0)
        self.groups = as_int(cls, "groups", groups, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{cls}: groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")
        for op, s, r in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= r:
                raise ValueError(f"{cls}: output_padding={self.output_padding} must be smaller "
                                 f"than the stride {self.stride} or the dilation "
                                 f"{self.dilation} along each axis")
        if isinstance(padding, str):
            raise ValueError(f"{cls}: padding must be an int or a tuple of ints, got {padding!r}")
        self.pads = resolve_padding(padding, func=cls)
        same = self.pads[0][0] == self.pads[0][1] and self.pads[1][0] == self.pads[1][1]
        self.padding = (self.pads[0][0], self.pads[1][0]) if same else self.pads
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{cls}: bias must be True or False, got {bias!r}")
        dt = param_dtype(cls, dtype)
        KH, KW = self.kernel_size
        Fg = self.out_channels // self.groups
        fan_in = self.in_channels // self.groups * KH * KW
        self.params["weight"] = he_normal((self.in_channels, Fg, KH, KW), fan_in, rng, dt)
        if bias:
            self.params["bias"] = np.zeros(self.out_channels, dt)

    @property
    def _args(self):
        return (self.stride, self.pads, self.output_padding, self.groups, self.dilation)

    def forward(self, x):
        y = conv_transpose2d_forward(x, self.params["weight"], self.params.get("bias"),
                                     *self._args)
        self._keep(x)
        return y

    def backward(self, dy, need_dx=True):
        dx, dw, db = conv_transpose2d_backward(dy, self._cached(), self.params["weight"],
                                               *self._args, need_dx=need_dx)
        self.grads["weight"] = dw
        if "bias" in self.params:
            self.grads["bias"] = db
        return dx

    def output_shape(self, shape):
        shape = _per_sample(self, shape, self.in_channels)
        w = np.broadcast_to(np.zeros((), np.float32), self.params["weight"].shape)
        geo, _ = _shape_check(
            lambda x: check_conv_transpose_args("ConvTranspose2D", x, w, None, *self._args),
            shape)
        return geo.yshape

    def config(self):
        return {"type": "ConvTranspose2D", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": _listed(self.padding),
                "output_padding": list(self.output_padding), "groups": self.groups,
                "bias": "bias" in self.params, "dilation": list(self.dilation)}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        defaults = dict(stride=(1, 1), padding=(0, 0), output_padding=(0, 0), groups=1,
                        bias=True, dilation=(1, 1))
        now = dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                   groups=self.groups, bias="bias" in self.params, dilation=self.dilation)
        extra = "".join(f", {key}={v!r}" for key, v in now.items() if v != defaults[key])
        return f"ConvTranspose2D({self.in_channels}, {self.out_channels}, kernel_size={k}{extra})"


# --------------------------------------------------------------------------- pooling

class _Pool2D(Layer):
    per_sample = True

    _forward = _backward = None  # set by subclasses

    def __init__(self, kernel_size=2, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        cls = type(self).__name__
        self.kernel_size = as_pair(cls, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(cls, "stride", stride, 1)
        self.padding = as_pair(cls, "padding", padding, 0)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{cls}: ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        self.dilation = (1, 1)

    def _options(self):
        """The layer's arguments after (x, size, stride), as the functional pass takes them."""
        return ()

    def forward(self, x):
        y, cache = type(self)._forward(x, self.kernel_size, self.stride, *self._options())
        self._keep(cache)
        return y

    def backward(self, dy, need_dx=True):
        cache = self._cached("forward cache")
        return type(self)._backward(dy, cache) if need_dx else None

    def output_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"expects (C, H, W) per sample, got {tuple(shape)}")
        geo = _shape_check(lambda x: check_pool_args(
            type(self).__name__, x, self.kernel_size, self.stride, self.padding, self.dilation,
            self.ceil_mode), tuple(shape))
        return geo.yshape

    def config(self):
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride),
                **_unless_default(padding=(self.padding, (0, 0)),
                                  ceil_mode=(self.ceil_mode, False))}

    def __repr__(self):
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        s = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        extra = "".join(f", {key}={tuple(v) if isinstance(v, list) else v!r}"
                        for key, v in self.config().items()
                        if key not in ("type", "kernel_size", "stride"))
        return f"{type(self).__name__}({k}{s}{extra})"


class MaxPool2D(_Pool2D):
    """Max pooling over ``kernel_size`` windows (stride defaults to the window).

    The backward pass sends each output's gradient to the input that won its window.
    ``ceil_mode`` is keyword-only here, because PyTorch's ``MaxPool2d`` has
    ``return_indices`` in its place (cycnn always keeps the winners, in the cache).

    Parameters
    ----------
    kernel_size : int or (int, int), default 2
        The window (KH, KW).
    stride : int or (int, int), optional
        (sh, sw); by default the window size, so windows do not overlap.
    padding : int or (int, int), default 0
        (ph, pw) on both sides, at most half the window; the padding never wins.
    dilation : int or (int, int), default 1
        (rh, rw), the step between the taps of a window.
    ceil_mode : bool, default False
        Round the output size up (see :func:`cycnn.max_pool2d_forward`).
    """

    _forward = staticmethod(max_pool2d_forward)
    _backward = staticmethod(max_pool2d_backward)

    def __init__(self, kernel_size=2, stride=None, padding=0, dilation=1, *, ceil_mode=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.dilation = as_pair("MaxPool2D", "dilation", dilation, 1)

    def _options(self):
        return (self.padding, self.dilation, self.ceil_mode)

    def config(self):
        return {**super().config(), **_unless_default(dilation=(self.dilation, (1, 1)))}


class AvgPool2D(_Pool2D):
    """Average pooling: each input of a window gets ``1 / d`` of its gradient, with ``d``
    the window's divisor (``KH*KW`` for a window inside the input).

    Parameters
    ----------
    kernel_size : int or (int, int), default 2
        The window (KH, KW).
    stride : int or (int, int), optional
        (sh, sw); by default the window size, so windows do not overlap.
    padding : int or (int, int), default 0
        (ph, pw) of zeros on both sides, at most half the window.
    ceil_mode : bool, default False
        Round the output size up (see :func:`cycnn.avg_pool2d_forward`).
    count_include_pad : bool, default True
        Whether the padding counts in ``d`` (PyTorch's default: it does).
    divisor_override : int, optional
        Divide every window by this number instead.
    """

    _forward = staticmethod(avg_pool2d_forward)
    _backward = staticmethod(avg_pool2d_backward)

    def __init__(self, kernel_size=2, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad, self.divisor_override = check_avg_pool_options(
            "AvgPool2D", count_include_pad, divisor_override)

    def _options(self):
        return (self.padding, self.ceil_mode, self.count_include_pad, self.divisor_override)

    def config(self):
        return {**super().config(), **_unless_default(
            count_include_pad=(self.count_include_pad, True),
            divisor_override=(self.divisor_override, None))}


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
    bias : bool, default True
        False: no bias parameter (PyTorch's ``bias=False``).
    rng : numpy.random.Generator, int or None
        Source of the He-normal initial weights; biases start at zero.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (D_out, D_in), "bias": (D_out,)}
    """

    has_params = True
    per_sample = True

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32):
        super().__init__()
        cls = "Dense"
        self.in_features = as_int(cls, "in_features", in_features, 1)
        self.out_features = as_int(cls, "out_features", out_features, 1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"{cls}: bias must be True or False, got {bias!r}")
        dt = param_dtype(cls, dtype)
        self.params["weight"] = he_normal((self.out_features, self.in_features),
                                          self.in_features, rng, dt)
        if bias:
            self.params["bias"] = np.zeros(self.out_features, dt)

    def forward(self, x):
        self._keep(x)
        return dense_forward(x, self.params["weight"], self.params.get("bias"))

    def backward(self, dy, need_dx=True):
        dx, dw, db = dense_backward(dy, self._cached(), self.params["weight"])
        self.grads["weight"] = dw
        if "bias" in self.params:
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
                "out_features": self.out_features,
                **_unless_default(bias=("bias" in self.params, True))}

    def __repr__(self):
        b = "" if "bias" in self.params else ", bias=False"
        return f"Dense({self.in_features}, {self.out_features}{b})"


# --------------------------------------------------------------------------- more activations

class LeakyReLU(Layer):
    """``y = x`` where ``x > 0``, ``negative_slope * x`` elsewhere (PyTorch's ``LeakyReLU``).

    Parameters
    ----------
    negative_slope : float, default 0.01
    """

    per_sample = True

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = as_real("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        self._keep(x)
        return leaky_relu_forward(x, self.negative_slope)

    def backward(self, dy, need_dx=True):
        x = self._cached()
        return leaky_relu_backward(dy, x, self.negative_slope) if need_dx else None

    def config(self):
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}


class Tanh(Layer):
    """``y = tanh(x)``; the backward pass ``dx = dy * (1 - y**2)`` keeps only ``y``."""

    per_sample = True

    def forward(self, x):
        y = tanh_forward(x)
        self._keep(y)
        return y

    def backward(self, dy, need_dx=True):
        y = self._cached("forward output")
        return tanh_backward(dy, y) if need_dx else None

    def __repr__(self):
        return "Tanh()"


class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``; the backward pass ``dx = dy * y * (1 - y)`` keeps ``y``."""

    per_sample = True

    def forward(self, x):
        y = sigmoid_forward(x)
        self._keep(y)
        return y

    def backward(self, dy, need_dx=True):
        y = self._cached("forward output")
        return sigmoid_backward(dy, y) if need_dx else None

    def __repr__(self):
        return "Sigmoid()"


class GlobalAvgPool2D(Layer):
    """The mean of each channel's plane: ``(N, C, H, W) -> (N, C, 1, 1)``.

    PyTorch's ``AdaptiveAvgPool2d(1)`` (follow it with :class:`Flatten` before a
    :class:`Dense` layer). Each input receives ``1 / (H*W)`` of its channel's gradient.
    """

    per_sample = True

    def forward(self, x):
        y = global_avg_pool2d_forward(x)
        self._keep(np.shape(x))
        return y

    def backward(self, dy, need_dx=True):
        shape = self._cached("input shape")
        return global_avg_pool2d_backward(dy, shape) if need_dx else None

    def output_shape(self, shape):
        if len(shape) != 3 or shape[1] * shape[2] == 0:
            raise ValueError(f"expects (C, H, W) per sample, got {tuple(shape)}")
        return (shape[0], 1, 1)

    def __repr__(self):
        return "GlobalAvgPool2D()"


# --------------------------------------------------------------------------- regularisation

class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``p`` and scale
    the rest by ``1 / (1 - p)``; in eval mode, the identity.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
    rng : numpy.random.Generator, int or None
        Source of the masks (advanced at every training-mode forward pass).
        :meth:`Sequential.fit` reseeds it at the start of every epoch from its own
        ``seed``, so that training runs, and runs resumed from a checkpoint, draw the
        same masks.
    """

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        self.p = as_real("Dropout", "p", p, 0.0, 1.0, hi_open=True)
        self.rng = np.random.default_rng(rng)

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        y, keep = dropout_forward(x, self.p, self.rng)
        self._keep(keep)
        return y

    def backward(self, dy, need_dx=True):
        if self.p == 0:
            return dy if need_dx else None
        keep = self._cached("dropout mask")
        return dropout_backward(dy, keep, self.p) if need_dx else None

    def config(self):
        return {"type": "Dropout", "p": self.p}


class _BatchNorm(Layer):
    """Shared by :class:`BatchNorm2D` and :class:`BatchNorm1D` (they differ in the input
    shapes they accept)."""

    has_params = True
    _inputs = ""  # per-sample shapes accepted, for messages

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, rng=None, dtype=np.float32):
        super().__init__()
        cls = type(self).__name__
        self.num_features = as_int(cls, "num_features", num_features, 1)
        self.eps = as_real(cls, "eps", eps, 0.0, lo_open=True)
        self.momentum = None if momentum is None else as_real(cls, "momentum", momentum,
                                                              0.0, 1.0)
        dt = param_dtype(cls, dtype)
        C = self.num_features
        self.params["weight"] = np.ones(C, dt)
        self.params["bias"] = np.zeros(C, dt)
        self.buffers["running_mean"] = np.zeros(C, dt)
        self.buffers["running_var"] = np.ones(C, dt)
        self.buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def _check_input(self, x):
        shape = np.shape(x)
        try:
            self.output_shape(shape[1:])
        except ValueError as e:
            raise ValueError(f"{self!r}: x.shape={shape}: {e}") from None

    def forward(self, x):
        self._check_input(x)
        b = self.buffers
        factor = 0.0
        if self.training:
            # PyTorch: momentum=None means a cumulative average over the batches seen
            factor = (1.0 / (int(b["num_batches_tracked"]) + 1) if self.momentum is None
                      else self.momentum)
        y, cache = batch_norm_forward(x, self.params["weight"], self.params["bias"],
                                      b["running_mean"], b["running_var"],
                                      training=self.training, momentum=factor, eps=self.eps)
        if self.training:
            b["num_batches_tracked"] += 1
        self._keep(cache)
        return y

    def backward(self, dy, need_dx=True):
        dx, dw, db = batch_norm_backward(dy, self._cached("forward cache"))
        self.grads["weight"] = dw.astype(self.params["weight"].dtype, copy=False)
        self.grads["bias"] = db.astype(self.params["bias"].dtype, copy=False)
        return dx if need_dx else None

    def check_buffers(self, buffers):
        problems = []
        var = buffers.get("running_var")
        if var is not None and not np.all(np.asarray(var) >= 0):
            problems.append("running_var must be >= 0 everywhere (it is a variance)")
        count = buffers.get("num_batches_tracked")
        count = np.asarray(count) if count is not None else None
        if count is not None and count.dtype.kind in "iu" and np.any(count < 0):
            problems.append("num_batches_tracked must be >= 0")
        return problems

    def config(self):
        return {"type": type(self).__name__, "num_features": self.num_features,
                "eps": self.eps, "momentum": self.momentum}

    def __repr__(self):
        extra = "" if self.eps == 1e-5 else f", eps={self.eps!r}"
        extra += "" if self.momentum == 0.1 else f", momentum={self.momentum!r}"
        return f"{type(self).__name__}({self.num_features}{extra})"


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` feature maps, per channel (PyTorch's
    ``BatchNorm2d``).

    In training, each channel is normalised with the mean and (biased) variance of its
    ``N*H*W`` values in the batch, then scaled by ``weight`` and shifted by ``bias``;
    the running estimates move towards the batch's statistics. In eval mode the running
    estimates are used instead, so a sample's output does not depend on its batch.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float, default 1e-5
        Added to the variance before the square root.
    momentum : float in [0, 1] or None, default 0.1
        PyTorch's convention: ``running <- (1 - momentum) * running + momentum * batch``
        (the unbiased batch variance goes into ``running_var``). None: a cumulative
        average over all batches seen.
    rng : ignored
        Accepted so that every layer with parameters is built alike; the scale starts
        at 1 and the shift at 0.
    dtype : float32 (default) or float64

    Attributes
    ----------
    params : {"weight": (C,), "bias": (C,)}
    buffers : {"running_mean": (C,), "running_var": (C,), "num_batches_tracked": ()}
        PyTorch's names; ``num_batches_tracked`` is an int64 count of training batches.
    """

    def output_shape(self, shape):
        if len(shape) != 3 or shape[0] != self.num_features:
            raise ValueError(f"expects ({self.num_features}, H, W) per sample "
                             f"(C={self.num_features} channels), got {tuple(shape)}")
        return tuple(shape)


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of ``(N, C)`` features (or ``(N, C, L)`` sequences), per
    feature (PyTorch's ``BatchNorm1d``).

    As :class:`BatchNorm2D`, with statistics over the ``N`` (or ``N*L``) values of each
    feature. A training batch needs at least two values per feature.

    Parameters
    ----------
    num_features : int
        C, the number of features.
    eps : float, default 1e-5
    momentum : float in [0, 1] or None, default 0.1
    rng : ignored
    dtype : float32 (default) or float64
    """

    def output_shape(self, shape):
        if len(shape) not in (1, 2) or shape[0] != self.num_features:
            raise ValueError(f"expects ({self.num_features},) or ({self.num_features}, L) "
                             f"per sample, got {tuple(shape)}")
        return tuple(shape)


# --------------------------------------------------------------------------- loss

class SoftmaxCrossEntropy:
    """Softmax followed by cross-entropy, averaged over the batch by default.

    ``forward(logits, labels)`` returns the loss (a float, or an array with
    ``reduction='none'``) and keeps its gradient; ``backward()`` returns ``dL/dlogits``,
    ``(softmax(logits) - onehot(labels)) / N`` with the default arguments. The two are
    computed together by :func:`cycnn.softmax_cross_entropy`, whose ``weight``,
    ``ignore_index``, ``label_smoothing`` and ``reduction`` this takes (PyTorch's
    ``CrossEntropyLoss`` arguments).
    """

    def __init__(self, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
        self.options = dict(weight=weight, ignore_index=ignore_index,
                            label_smoothing=label_smoothing, reduction=reduction)
        self._dlogits = None

    def forward(self, logits, labels):
        loss, self._dlogits = softmax_cross_entropy(logits, labels, **self.options)
        return loss

    __call__ = forward

    def backward(self):
        if self._dlogits is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward: call forward(logits, labels) first")
        d, self._dlogits = self._dlogits, None
        return d

    def __repr__(self):
        defaults = dict(weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean")
        args = [f"{k}={v!r}" for k, v in self.options.items()
                if k != "weight" and v != defaults[k]]
        if self.options["weight"] is not None:
            args.insert(0, "weight=...")
        return f"SoftmaxCrossEntropy({', '.join(args)})"


# --------------------------------------------------------------------------- rebuilding

LAYERS = {cls.__name__: cls for cls in (Conv2D, ConvTranspose2D, MaxPool2D, AvgPool2D, ReLU,
                                        Flatten, Dense, LeakyReLU, Tanh, Sigmoid,
                                        GlobalAvgPool2D, Dropout, BatchNorm2D, BatchNorm1D)}


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
    for k in ("kernel_size", "stride", "padding", "dilation", "output_padding"):
        if isinstance(cfg.get(k), list):
            cfg[k] = tuple(tuple(v) if isinstance(v, list) else v for v in cfg[k])
    if cls.has_params:
        cfg.update(rng=0, dtype=dtype)
    try:
        return cls(**cfg)
    except TypeError as e:
        raise ValueError(f"{cls.__name__}: bad arguments {sorted(config)}: {e}") from None
