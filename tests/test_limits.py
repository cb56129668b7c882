"""Absurd sizes, huge integers and degenerate inputs (issue 10's reproducers, one test each).

Every case used to crash the interpreter, raise an error that named nothing, or be
accepted and fail later. Each must now give a ValueError/TypeError/MemoryError that
names the function and the argument, raised in Python before any compiled loop (or,
for the degenerate but valid inputs, work as PyTorch does).
"""

from __future__ import annotations

import numpy as np
import pytest

import cycnn

X = np.ones((2, 3, 8, 8))
W = np.ones((4, 3, 3, 3))
HUGE = [2**31, 2**63, 10**30]

CONV_CALLS = {
    "conv2d_forward": lambda **kw: cycnn.conv2d_forward(X, W, **kw),
    "conv2d_backward": lambda **kw: cycnn.conv2d_backward(np.ones((2, 4, 6, 6)), X, W, **kw),
}
POOL_CALLS = {
    "max_pool2d_forward": lambda x, **kw: cycnn.max_pool2d_forward(x, **kw),
    "avg_pool2d_forward": lambda x, **kw: cycnn.avg_pool2d_forward(x, **kw),
}


@pytest.mark.parametrize("threads", [9, 10**5, 2**31, 2**63], ids=str)
@pytest.mark.parametrize("func", list(CONV_CALLS))
def test_too_many_threads_for_convolution(func, threads):
    limit = cycnn._threads.MAX_THREADS
    if threads <= limit:
        pytest.skip(f"{threads} threads are within this machine's limit {limit}")
    with pytest.raises(ValueError, match=rf"^{func}: threads must be <= {limit} \(4 per CPU"):
        CONV_CALLS[func](threads=threads)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (64, 16, 24, 24)], ids=["small", "large"])
@pytest.mark.parametrize("func", list(POOL_CALLS))
def test_too_many_threads_for_pooling_whatever_the_size(func, shape):
    """Small inputs run on one thread anyway; the argument is refused all the same."""
    with pytest.raises(ValueError, match=rf"^{func}: threads must be <= "):
        POOL_CALLS[func](np.ones(shape), threads=2**31)


def test_set_num_threads_refuses_what_a_call_would_refuse():
    old = cycnn.get_num_threads()
    try:
        for n in (10**5, 2**31):
            with pytest.raises(ValueError, match=r"^set_num_threads: n must be <= \d+"):
                cycnn.set_num_threads(n)
            assert cycnn.get_num_threads() == old  # nothing changed
        with pytest.raises(TypeError, match=r"^set_num_threads: n must be an integer"):
            cycnn.set_num_threads(2.0)
        cycnn.set_num_threads(cycnn._threads.MAX_THREADS)  # the limit itself is fine
        cycnn.conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    finally:
        cycnn.set_num_threads(old)


@pytest.mark.parametrize("value", HUGE, ids=str)
@pytest.mark.parametrize("func", list(CONV_CALLS))
def test_huge_stride_is_a_named_value_error(func, value):
    with pytest.raises(ValueError, match=rf"^{func}: stride must be <= 2147483647, got {value}"):
        CONV_CALLS[func](stride=value)


@pytest.mark.parametrize("value", HUGE, ids=str)
@pytest.mark.parametrize("func", list(POOL_CALLS))
def test_huge_pool_size_and_stride(func, value):
    with pytest.raises(ValueError, match=rf"^{func}: stride must be <= 2147483647"):
        POOL_CALLS[func](X, size=2, stride=value)
    with pytest.raises(ValueError, match=rf"^{func}: size must be <= 2147483647"):
        POOL_CALLS[func](X, size=value)


@pytest.mark.parametrize("value", HUGE, ids=str)
def test_huge_layer_arguments(value):
    with pytest.raises(ValueError, match=r"^Conv2D: stride must be <= 2147483647"):
        cycnn.Conv2D(1, 2, 3, stride=value)
    with pytest.raises(ValueError, match=r"^Conv2D: out_channels must be <= 2147483647"):
        cycnn.Conv2D(1, value, 3)
    with pytest.raises(ValueError, match=r"^MaxPool2D: kernel_size must be <= 2147483647"):
        cycnn.MaxPool2D(value)
    with pytest.raises(ValueError, match=r"^Dense: in_features must be <= 2147483647"):
        cycnn.Dense(value, 2)


@pytest.mark.parametrize("padding", [2**31, (0, 2**40), ((0, 0), (2**63, 0))], ids=str)
def test_huge_padding_is_refused_by_name(padding):
    with pytest.raises(ValueError, match=r"^conv2d_forward: padding must be <= 2147483647"):
        cycnn.conv2d_forward(X, W, padding=padding)


def test_padding_too_large_for_memory_names_the_shape():
    with pytest.raises(MemoryError, match=r"^conv2d_forward: x, padded and contiguous, of shape "
                                          r"\(2, 3, 2000000008, 2000000008\) would need "):
        cycnn.conv2d_forward(X, W, padding=10**9)


def test_output_too_large_for_memory_names_the_shape():
    x = np.ones((1, 1, 1000, 1000), np.float32)
    with pytest.raises(MemoryError, match=r"y \(N, F, OH, OW\) of shape \(1, 1000000, 1000, "
                                          r"1000\) would need 3,725.3 GiB"):
        cycnn.conv2d_forward(x, np.ones((10**6, 1, 1, 1), np.float32))
    # a broadcast x has no memory of its own, but the kernels need it contiguous
    xb = np.broadcast_to(np.float32(1), (1, 1, 10**6, 10**6))
    with pytest.raises(MemoryError, match=r"x, padded and contiguous, of shape "):
        cycnn.conv2d_forward(xb, np.ones((1, 1, 2, 2), np.float32))


def test_dense_output_too_large_for_memory():
    x, w = np.ones((10**6, 1), np.float32), np.ones((10**6, 1), np.float32)
    with pytest.raises(MemoryError, match=r"^dense_forward: y \(N, D_out\) of shape "
                                          r"\(1000000, 1000000\) would need"):
        cycnn.dense_forward(x, w)


@pytest.mark.parametrize("field, value, error, message", [
    ("stride", (0, 0), ValueError, r"\(cache\): stride must be >= 1, got 0"),
    ("stride", (1.5, 1), TypeError, r"\(cache\): stride must be an integer"),
    ("size", (0, 2), ValueError, r"\(cache\): size must be >= 1, got 0"),
    ("size", (9, 9), ValueError,
     r"\(cache\): window 9x9 \(size=\(9, 9\)\) is larger than the input plane 8x8"),
    ("x_shape", (2, 3), ValueError, r"\(cache\): x_shape must be \(N, C, H, W\)"),
    ("x_shape", (2, 3, 8, 2**40), ValueError, r"\(cache\): x_shape must be <= 2147483647"),
    ("dtype", np.dtype(np.int8), ValueError, r"\(cache\): dtype must be float32 or float64"),
])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_edited_pooling_caches(kind, field, value, error, message):
    y, cache = getattr(cycnn, f"{kind}_pool2d_forward")(X)
    backward = getattr(cycnn, f"{kind}_pool2d_backward")
    with pytest.raises(error, match=rf"^{kind}_pool2d_backward {message}"):
        backward(np.ones_like(y), cache._replace(**{field: value}))


def test_edited_max_pool_winners():
    y, cache = cycnn.max_pool2d_forward(X)
    dy = np.ones_like(y)
    for argmax, error in ((cache.argmax + 64, ValueError), (cache.argmax - 100, ValueError),
                          (cache.argmax.astype(float), TypeError), (cache.argmax[:1], ValueError)):
        with pytest.raises(error, match=r"^max_pool2d_backward: cache.argmax must hold"):
            cycnn.max_pool2d_backward(dy, cache._replace(argmax=argmax))


# --------------------------------------------------------------------------- degenerate, valid

def test_relu_on_0d_arrays_like_torch():
    assert cycnn.relu_backward(np.array(1.0), np.array(2.0)) == 1.0
    assert cycnn.relu_backward(np.array(1.0), np.array(-2.0)) == 0.0
    assert cycnn.relu_backward(np.array(3.0), np.array(0.0)) == 0.0  # the subgradient at 0
    dx = cycnn.relu_backward(np.float32(2.0), np.float32(1.0))
    assert dx.shape == () and dx.dtype == np.float32
    assert cycnn.relu_forward(np.array(-1.5)).shape == ()


def test_nan_probability_targets_are_refused():
    """PyTorch returns a NaN loss for NaN targets; cycnn says where the NaN is instead
    (a NaN target is a bug upstream, and a NaN loss would hide where it came from)."""
    logits = np.zeros((3, 4))
    target = np.full((3, 4), 0.25)
    target[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"^softmax_cross_entropy: labels must be finite "
                                         r"probabilities; found nan at \(1, 2\)"):
        cycnn.softmax_cross_entropy(logits, target)
    target[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"found inf at \(1, 2\)"):
        cycnn.softmax_cross_entropy(logits, target)


def test_nan_logits_propagate_as_in_torch():
    loss, d = cycnn.softmax_cross_entropy(np.array([[np.nan, 0.0], [1.0, 0.0]]), [0, 1])
    assert np.isnan(loss) and np.isnan(d[0]).all() and np.isfinite(d[1]).all()
