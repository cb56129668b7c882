"""PyTorch's own test inputs, through cycnn: every float sample of ``op_db`` and ``module_db``.

PyTorch tests each operator on the sample inputs listed in
``torch.testing._internal.common_methods_invocations.op_db`` (and each module on
``common_modules.module_db``). Here every float32 and float64 CPU sample of the operators
cycnn implements (conv2d, conv_transpose2d, max_pool2d, avg_pool2d, relu, linear,
cross_entropy, mse_loss, softmax, log_softmax, and the matching modules) runs through
cycnn, forward and backward, and is compared with PyTorch's autograd:

* the upstream gradient is random (never all ones, which would hide transposed indices),
  the same numbers for both;
* the truth is PyTorch in float64 on the very same input values (a float32 sample is
  converted exactly), so a float32 result is judged by its own rounding only;
* the tolerance is relative to a scale fair to sums that cancel: for the ops that are
  sums of products (convolutions, linear, average pooling) the largest sum of absolute
  terms (the same op on |inputs| and |dy|), otherwise the largest |value|; 1e-10 for
  float64 results, 1e-4 for float32;
* convolution samples run through both of cycnn's routes (direct loops and im2col);
* every gradient cycnn's backward pass returns is compared (for losses: the logits' or
  the prediction's; targets get none), and max pooling's winners against PyTorch's
  ``return_indices``.

A sample cycnn cannot run is listed in ``UNSUPPORTED`` with the reason; the tests fail if
another one appears (or if a listed one starts to run: then shorten the list). Skipped,
with the reason, without torch or expecttest (which PyTorch's test modules import).
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

import cycnn
from conftest import torch_or_skip

#: relative tolerance by the dtype of cycnn's result
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

#: the op_db entries cycnn implements (name, variant) and the module_db classes
OPS = ["nn.functional.conv2d", "nn.functional.conv_transpose2d", "nn.functional.max_pool2d",
       "nn.functional.avg_pool2d", "nn.functional.relu", "nn.functional.linear",
       "nn.functional.cross_entropy", "nn.functional.mse_loss", "softmax", "log_softmax"]
MODULES = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "ReLU", "Linear",
           "CrossEntropyLoss", "MSELoss", "Softmax", "LogSoftmax"]

#: sample id -> why cycnn does not run it. Ids are "op_db:<name>[<variant>]:<dtype>:#<k>"
#: (k counts the op's samples in PyTorch's order) and "module_db:<class>:<dtype>:#<k>".
UNSUPPORTED: dict[str, str] = {}

#: the share of samples that may stay unsupported
MAX_UNSUPPORTED = 0.05


class Unsupported(Exception):
    """Raised by an adapter for a sample cycnn cannot run; the message is the reason."""


# --------------------------------------------------------------------------- one case

@dataclass
class Case:
    """A sample, ready to run both ways.

    ``arrays`` are the sample's tensors as NumPy arrays in the sample's dtype; ``grads``
    names those whose gradients cycnn returns. ``torch_fn(t)`` computes the op from a dict
    of torch tensors like ``arrays``; ``cycnn_fn(a, dy)`` returns cycnn's output and a
    dict of gradients for the upstream gradient ``dy``. ``bilinear`` ops are sums of
    products, whose fair error scale is the same op on absolute values.
    """

    arrays: dict
    grads: tuple
    torch_fn: object
    cycnn_fn: object
    bilinear: bool = False
    indices: bool = False  # the output is (values, argmax): argmax compared exactly
    routes: tuple = (None,)  # cycnn_fn's extra argument: the convolution algorithms
    notes: list = field(default_factory=list)


def _bind(signature_of, args, kwargs):
    """The call's arguments by name, defaults filled in, as PyTorch's signature reads them."""
    bound = inspect.signature(signature_of).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _numpy(t):
    import torch

    return t.detach().numpy() if isinstance(t, torch.Tensor) else t


def _one(v):
    """PyTorch's one-element tuple (1,) spelling of an int; () for 'the default'."""
    if isinstance(v, (tuple, list)):
        if len(v) == 0:
            return None
        if len(v) == 1:
            return v[0]
    return v


# --------------------------------------------------------------------------- op adapters
# Each takes (input, args, kwargs) of an op_db sample and returns a Case. The signatures
# below are PyTorch's (torch.nn.functional), so that positional arguments bind by name.

def _conv2d_sig(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    pass


def _conv_transpose2d_sig(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                          groups=1, dilation=1):
    pass


def _max_pool2d_sig(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    return_indices=False):
    pass


def _avg_pool2d_sig(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None):
    pass


def _linear_sig(input, weight, bias=None):
    pass


def _cross_entropy_sig(input, target, weight=None, size_average=None, ignore_index=-100,
                       reduce=None, reduction="mean", label_smoothing=0.0):
    pass


def _mse_loss_sig(input, target, size_average=None, reduce=None, reduction="mean",
                  weight=None):
    pass


def _softmax_sig(input, dim=None, _stacklevel=3, dtype=None):
    pass


def _arrays(**tensors):
    return {k: _numpy(v) for k, v in tensors.items() if v is not None}


def conv2d_case(F, a):
    arr = _arrays(x=a["input"], w=a["weight"], b=a["bias"])
    opts = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                groups=a["groups"])

    def cy(n, dy, route):
        y = cycnn.conv2d_forward(n["x"], n["w"], n.get("b"), **opts, algorithm=route)
        dx, dw, db = cycnn.conv2d_backward(dy, n["x"], n["w"], **opts, algorithm=route)
        return y, {"x": dx, "w": dw, "b": db}

    return Case(arr, tuple(arr), lambda t: F.conv2d(t["x"], t["w"], t.get("b"), **opts), cy,
                bilinear=True, routes=("direct", "im2col"))


def conv_transpose2d_case(F, a):
    arr = _arrays(x=a["input"], w=a["weight"], b=a["bias"])
    opts = dict(stride=a["stride"], padding=a["padding"], output_padding=a["output_padding"],
                groups=a["groups"], dilation=a["dilation"])

    def cy(n, dy, route):
        y = cycnn.conv_transpose2d_forward(n["x"], n["w"], n.get("b"), **opts, algorithm=route)
        dx, dw, db = cycnn.conv_transpose2d_backward(dy, n["x"], n["w"], **opts,
                                                     algorithm=route)
        return y, {"x": dx, "w": dw, "b": db}

    return Case(arr, tuple(arr),
                lambda t: F.conv_transpose2d(t["x"], t["w"], t.get("b"), **opts), cy,
                bilinear=True, routes=("direct", "im2col"))


def max_pool2d_case(F, a):
    arr = _arrays(x=a["input"])
    size, stride = a["kernel_size"], _one(a["stride"])
    opts = dict(padding=_one(a["padding"]), dilation=_one(a["dilation"]),
                ceil_mode=a["ceil_mode"])

    def torch_fn(t):
        return F.max_pool2d(t["x"], size, stride, **opts, return_indices=True)

    def cy(n, dy, route):
        y, cache = cycnn.max_pool2d_forward(n["x"], size, stride, **opts)
        return (y, cache.argmax), {"x": cycnn.max_pool2d_backward(dy, cache)}

    return Case(arr, ("x",), torch_fn, cy, indices=True)


def avg_pool2d_case(F, a):
    arr = _arrays(x=a["input"])
    size, stride = a["kernel_size"], _one(a["stride"])
    opts = dict(padding=_one(a["padding"]), ceil_mode=a["ceil_mode"],
                count_include_pad=a["count_include_pad"], divisor_override=a["divisor_override"])

    def cy(n, dy, route):
        y, cache = cycnn.avg_pool2d_forward(n["x"], size, stride, **opts)
        return y, {"x": cycnn.avg_pool2d_backward(dy, cache)}

    return Case(arr, ("x",), lambda t: F.avg_pool2d(t["x"], size, stride, **opts), cy,
                bilinear=True)


def relu_case(F, a):
    def cy(n, dy, route):
        return cycnn.relu_forward(n["x"]), {"x": cycnn.relu_backward(dy, n["x"])}

    return Case(_arrays(x=a["input"]), ("x",), lambda t: F.relu(t["x"]), cy)


def linear_case(F, a):
    arr = _arrays(x=a["input"], w=a["weight"], b=a["bias"])

    def cy(n, dy, route):
        dx, dw, db = cycnn.dense_backward(dy, n["x"], n["w"])
        return cycnn.dense_forward(n["x"], n["w"], n.get("b")), {"x": dx, "w": dw, "b": db}

    return Case(arr, tuple(arr), lambda t: F.linear(t["x"], t["w"], t.get("b")), cy,
                bilinear=True)


def _loss_value(loss, like):
    """cycnn returns a reduced loss as a Python float (no dtype): give it the logits'."""
    return np.asarray(loss, like.dtype) if isinstance(loss, float) else loss


def _upstream(loss_grad, dy, class_axis, reduction):
    """The chain rule for a loss: cycnn returns the gradient of the loss (per position
    for reduction='none'), which the upstream gradient dy scales."""
    if reduction == "none":
        return loss_grad * np.expand_dims(dy, class_axis)
    return loss_grad * dy


def cross_entropy_case(F, a):
    for legacy in ("size_average", "reduce"):
        if a[legacy] is not None:
            raise Unsupported(f"the deprecated {legacy}= argument (use reduction=)")
    arr = _arrays(x=a["input"], target=a["target"], weight=a["weight"])
    opts = dict(ignore_index=a["ignore_index"], reduction=a["reduction"],
                label_smoothing=a["label_smoothing"])
    class_axis = 0 if arr["x"].ndim == 1 else 1

    def cy(n, dy, route):
        loss, d = cycnn.softmax_cross_entropy(n["x"], n["target"], n.get("weight"), **opts)
        return _loss_value(loss, n["x"]), {"x": _upstream(d, dy, class_axis, opts["reduction"])}

    return Case(arr, ("x",),
                lambda t: F.cross_entropy(t["x"], t["target"], t.get("weight"), **opts), cy)


def mse_loss_case(F, a):
    for legacy in ("size_average", "reduce", "weight"):
        if a[legacy] is not None:
            raise Unsupported(f"the {legacy}= argument")
    arr = _arrays(x=a["input"], target=a["target"])
    if arr["x"].shape != arr["target"].shape:
        raise Unsupported("broadcasting target against input")
    reduction = a["reduction"]

    def cy(n, dy, route):
        loss, d = cycnn.mse_loss(n["x"], n["target"], reduction=reduction)
        return _loss_value(loss, n["x"]), {"x": d * dy}

    return Case(arr, ("x",), lambda t: F.mse_loss(t["x"], t["target"], reduction=reduction),
                cy)


def _softmax_case(name, backward):
    def make(F, a):
        import torch

        arr = _arrays(x=a["input"])
        dim, dtype = a["dim"], a["dtype"]
        if dim is None:
            raise Unsupported("dim=None (PyTorch's deprecated implicit choice of the axis)")
        np_dtype = None if dtype is None else torch.empty((), dtype=dtype).numpy().dtype

        def torch_fn(t):
            # the float64 truth computes in float64 whatever dtype= says
            wide = None if dtype is None else torch.promote_types(dtype, t["x"].dtype)
            return getattr(torch, name)(t["x"], dim, dtype=wide)

        def cy(n, dy, route):
            y = getattr(cycnn, name)(n["x"], dim, dtype=np_dtype)
            dx = backward(dy, y, dim)
            return y, {"x": dx.astype(n["x"].dtype)}  # back to the input's dtype, as torch

        return Case(arr, ("x",), torch_fn, cy)
    return make


ADAPTERS = {
    "nn.functional.conv2d": (_conv2d_sig, conv2d_case),
    "nn.functional.conv_transpose2d": (_conv_transpose2d_sig, conv_transpose2d_case),
    "nn.functional.max_pool2d": (_max_pool2d_sig, max_pool2d_case),
    "nn.functional.avg_pool2d": (_avg_pool2d_sig, avg_pool2d_case),
    "nn.functional.relu": (lambda input, inplace=False: None, relu_case),
    "nn.functional.linear": (_linear_sig, linear_case),
    "nn.functional.cross_entropy": (_cross_entropy_sig, cross_entropy_case),
    "nn.functional.mse_loss": (_mse_loss_sig, mse_loss_case),
    "softmax": (_softmax_sig, _softmax_case("softmax", cycnn.softmax_backward)),
    "log_softmax": (_softmax_sig, _softmax_case("log_softmax", cycnn.log_softmax_backward)),
}


# --------------------------------------------------------------------------- module adapters

def _params(m):
    return {k: _numpy(v) for k, v in m.named_parameters()}


def module_case(torch, m, forward_args, forward_kwargs):
    """A Case for a module_db entry: the torch module against the cycnn layer (or function)
    built from the module's own arguments and parameters."""
    from torch.func import functional_call

    name = type(m).__name__
    if forward_kwargs and set(forward_kwargs) != {"input"}:
        raise Unsupported(f"forward keyword arguments {sorted(forward_kwargs)}")
    inputs = list(forward_args) + ([forward_kwargs["input"]] if forward_kwargs else [])
    arr = {"x": _numpy(inputs[0])}
    if len(inputs) > 1:
        arr["target"] = _numpy(inputs[1])
    params = _params(m)
    arr.update({f"param:{k}": v for k, v in params.items()})
    grads = ("x", *(f"param:{k}" for k in params))

    def torch_fn(t):
        p = {k.split(":", 1)[1]: v for k, v in t.items() if k.startswith("param:")}
        extra = (t["target"],) if "target" in t else ()
        if "weight" in dict(m.named_buffers()) and isinstance(m, torch.nn.CrossEntropyLoss):
            p["weight"] = t["class_weight"]
        return functional_call(m, p, (t["x"], *extra))

    bilinear = name in ("Conv2d", "ConvTranspose2d", "Linear", "AvgPool2d")
    if name in ("Conv2d", "ConvTranspose2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU"):
        layer = _layer_like(m)

        indices = bool(getattr(m, "return_indices", False))

        def cy(n, dy, route):
            for k, v in n.items():
                if k.startswith("param:"):
                    layer.params[k.split(":", 1)[1]] = v
            y = layer.forward(n["x"])
            out = (y, layer.cache.argmax) if indices else y
            dx = layer.backward(dy)
            return out, {"x": dx, **{f"param:{k}": g for k, g in layer.grads.items()}}
        return Case(arr, grads, torch_fn, cy, bilinear=bilinear, indices=indices)
    if name == "CrossEntropyLoss":
        if m.weight is not None:
            arr["class_weight"] = _numpy(m.weight)
        loss_layer = cycnn.SoftmaxCrossEntropy(
            ignore_index=m.ignore_index, label_smoothing=m.label_smoothing,
            reduction=m.reduction)
        class_axis = 0 if arr["x"].ndim == 1 else 1

        def cy(n, dy, route):
            loss_layer.options["weight"] = n.get("class_weight")
            loss = loss_layer.forward(n["x"], n["target"])
            d = _upstream(loss_layer.backward(), dy, class_axis, m.reduction)
            return _loss_value(loss, n["x"]), {"x": d}
        return Case(arr, ("x",), torch_fn, cy)
    if name == "MSELoss":
        def cy(n, dy, route):
            loss, d = cycnn.mse_loss(n["x"], n["target"], reduction=m.reduction)
            return _loss_value(loss, n["x"]), {"x": d * dy}
        return Case(arr, ("x",), torch_fn, cy)
    if name in ("Softmax", "LogSoftmax"):
        forward = cycnn.softmax if name == "Softmax" else cycnn.log_softmax
        backward = cycnn.softmax_backward if name == "Softmax" else cycnn.log_softmax_backward

        def cy(n, dy, route):
            y = forward(n["x"], m.dim)
            return y, {"x": backward(dy, y, m.dim)}
        return Case(arr, ("x",), torch_fn, cy)
    raise Unsupported(f"no adapter for {name}")


def _layer_like(m):
    """The cycnn layer with the arguments of torch module m (parameters set per call)."""
    import torch.nn as nn

    if isinstance(m, nn.Conv2d):
        return cycnn.Conv2D(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                            m.dilation, m.groups, m.bias is not None, m.padding_mode)
    if isinstance(m, nn.ConvTranspose2d):
        if m.padding_mode != "zeros":
            raise Unsupported("ConvTranspose2d with a padding_mode (PyTorch refuses it too)")
        return cycnn.ConvTranspose2D(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                     m.padding, m.output_padding, m.groups, m.bias is not None,
                                     m.dilation)
    if isinstance(m, nn.Linear):
        return cycnn.Dense(m.in_features, m.out_features, m.bias is not None)
    if isinstance(m, nn.MaxPool2d):
        return cycnn.MaxPool2D(m.kernel_size, m.stride, m.padding, m.dilation,
                               ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        return cycnn.AvgPool2D(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                               m.count_include_pad, m.divisor_override)
    return cycnn.ReLU()


# --------------------------------------------------------------------------- the driver

def _scale(values, bound):
    """The error scale of one compared array: its largest |value|, or for sums of products
    its largest sum of absolute terms."""
    ref = np.abs(values if bound is None else bound)
    ref = ref[np.isfinite(ref)]
    return float(ref.max()) if ref.size else 0.0


def _compare(what, got, want, bound, dtype):
    """None, or what differs between cycnn's ``got`` and the float64 truth ``want``."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, PyTorch {want.shape}"
    if got.dtype != dtype:
        return f"{what}: dtype {got.dtype}, PyTorch {dtype}"
    if not np.array_equal(np.isnan(got), np.isnan(want)):
        return f"{what}: NaN in other places than PyTorch's"
    ok = ~np.isnan(want)
    if got.size == 0 or not ok.any():
        return None
    err = float(np.abs(got[ok].astype(np.float64) - want[ok]).max())
    scale = _scale(want[ok], None if bound is None else np.asarray(bound)[ok])
    if err > RTOL[dtype] * scale:
        return f"{what}: max error {err:.3g} > {RTOL[dtype]:g} * scale {scale:.3g}"
    return None


def _torch_run(torch, case, arrays, dy, absolute=False):
    """The case through PyTorch in float64: output(s) and the gradients of case.grads."""
    t = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            v = np.abs(v) if absolute else v
            t[k] = torch.tensor(v, dtype=torch.float64, requires_grad=k in case.grads)
        else:
            t[k] = torch.tensor(v)
    out = case.torch_fn(t)
    values = out[0] if case.indices else out
    wanted = [t[k] for k in case.grads]
    g = torch.tensor(np.abs(dy) if absolute else dy, dtype=torch.float64)
    grads = torch.autograd.grad(values, wanted, g, allow_unused=True) if values.requires_grad \
        else [None] * len(wanted)
    grads = {k: (np.zeros(t[k].shape) if gr is None else gr.numpy())
             for k, gr in zip(case.grads, grads)}
    if case.indices:
        return (values.detach().numpy(), out[1].numpy()), grads
    return values.detach().numpy(), grads


def run_case(torch, case, seed):
    """Run one case; returns a list of the differences found (empty: it agrees)."""
    # the forward output's shape and dtype, from PyTorch on the sample as it is
    tn = {k: torch.tensor(np.asarray(v)) for k, v in case.arrays.items()}
    with torch.no_grad():
        native = case.torch_fn(tn)
    native = native[0] if case.indices else native
    out_dtype = native.numpy().dtype
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(tuple(native.shape)).astype(out_dtype)  # never all ones
    truth, tgrads = _torch_run(torch, case, case.arrays, dy)
    bound = bgrads = None
    if case.bilinear:
        bound, bgrads = _torch_run(torch, case, case.arrays, dy, absolute=True)
    problems = []
    for route in case.routes:
        label = "" if route is None else f"[{route}] "
        got, grads = case.cycnn_fn({k: np.asarray(v) for k, v in case.arrays.items()}, dy,
                                   route)
        if case.indices:
            (got, argmax), (want, indices) = got, truth
            if not np.array_equal(argmax, indices):
                problems.append(f"{label}argmax differs from PyTorch's indices")
            bound_out = None
        else:
            want, bound_out = truth, bound
        problems.append(_compare(f"{label}output", got, want, bound_out, out_dtype))
        for k in case.grads:
            if k not in grads or grads[k] is None:
                continue
            in_dtype = np.asarray(case.arrays[k]).dtype
            problems.append(_compare(f"{label}d{k}", grads[k], tgrads[k],
                                     None if bgrads is None else bgrads[k], in_dtype))
    return [p for p in problems if p]


def _samples(torch):
    """(id, Case or Unsupported, native dtype) for every sample, in PyTorch's order."""
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db

    F = torch.nn.functional
    torch.manual_seed(20261201)  # the sample inputs are drawn at random
    out = []
    for op in op_db:
        if op.name not in OPS:
            continue
        sig, adapter = ADAPTERS[op.name]
        for dtype in (torch.float32, torch.float64):
            tag = f"op_db:{op.name}[{op.variant_test_name}]:{str(dtype)[6:]}"
            for k, s in enumerate(op.sample_inputs("cpu", dtype, requires_grad=False)):
                try:
                    case = adapter(F, _bind(sig, (s.input, *s.args), s.kwargs))
                except Unsupported as why:
                    case = why
                out.append((f"{tag}:#{k}", case))
    for info in module_db:
        name = info.module_cls.__name__
        if name not in MODULES:
            continue
        for dtype in (torch.float32, torch.float64):
            tag = f"module_db:{name}:{str(dtype)[6:]}"
            inputs = info.module_inputs_func(info, device="cpu", dtype=dtype,
                                             requires_grad=False, training=True)
            for k, mi in enumerate(inputs):
                if mi.forward_input is None:
                    continue
                m = info.module_cls(*mi.constructor_input.args, **mi.constructor_input.kwargs)
                m = m.to(dtype)
                try:
                    case = module_case(torch, copy.deepcopy(m), mi.forward_input.args,
                                       mi.forward_input.kwargs)
                except Unsupported as why:
                    case = why
                out.append((f"{tag}:#{k}", case))
    return out


@pytest.fixture(scope="module")
def results():
    """Every sample run once: {id: ('ok' | 'unsupported' | 'failed', detail)}."""
    torch = torch_or_skip()
    pytest.importorskip("expecttest", reason="PyTorch's op_db needs expecttest "
                        "(pip install expecttest; it is in cycnn's test extras)")
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(1)  # tiny problems: one thread (see test_conv.py)
    found = {}
    try:
        with warnings.catch_warnings():
            # PyTorch's own remark on one of its samples (padding='same', even kernel)
            warnings.filterwarnings("ignore", "Using padding='same' with even kernel")
            for seed, (sid, case) in enumerate(_samples(torch)):
                if isinstance(case, Unsupported):
                    found[sid] = ("unsupported", str(case))
                    continue
                try:
                    problems = run_case(torch, case, seed)
                except Exception as err:  # any error is this sample's failure, reported
                    problems = [f"{type(err).__name__}: {err}"]
                found[sid] = ("failed", "; ".join(problems)) if problems else ("ok", "")
    finally:
        cycnn.set_num_threads(old)
    return found


def _by_status(results, status):
    return {k: v for k, (s, v) in results.items() if s == status}


def test_every_supported_sample_agrees_with_pytorch(results):
    failed = _by_status(results, "failed")
    assert not failed, f"{len(failed)} of {len(results)} samples disagree:\n" + "\n".join(
        f"  {k}: {v}" for k, v in list(failed.items())[:40])


def test_no_sample_becomes_unsupported(results):
    new = {k: v for k, v in _by_status(results, "unsupported").items() if k not in UNSUPPORTED}
    assert not new, "samples cycnn cannot run that UNSUPPORTED does not list:\n" + "\n".join(
        f"  {k!r}: {v!r}," for k, v in new.items())


def test_the_unsupported_list_is_current(results):
    """Every listed sample still exists and still cannot run, for the reason given."""
    unsupported = _by_status(results, "unsupported")
    stale = {k: results.get(k, ("gone", ""))[0] for k in UNSUPPORTED if k not in unsupported}
    assert not stale, f"listed in UNSUPPORTED but now {stale}: remove them from the list"
    changed = {k: v for k, v in unsupported.items() if k in UNSUPPORTED and UNSUPPORTED[k] != v}
    assert not changed, f"reasons changed: {changed}"


def test_at_most_five_percent_are_unsupported(results):
    n = len(_by_status(results, "unsupported"))
    assert n <= MAX_UNSUPPORTED * len(results), f"{n} of {len(results)} samples unsupported"


def test_every_op_and_module_has_samples(results):
    """PyTorch renamed nothing under us: each op and module contributes samples that run."""
    ran = {k.split(":")[1].split("[")[0] for k, (s, _) in results.items() if s == "ok"}
    assert set(OPS) | set(MODULES) <= ran, f"no passing sample for {set(OPS) | set(MODULES) - ran}"
    assert math.isfinite(len(results)) and len(results) > 3000
