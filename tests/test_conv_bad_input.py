"""Bad arguments to the conv2d layer: one test per case.

Every test asserts the exception type AND that the message names the function, the
argument and the offending shape or value (STYLE.md: "errors name the function, the
argument and the shapes"). The forward and backward passes share their checks, so most
cases run through both, and through the NumPy reference route, which reuses them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cycnn
from cycnn import reference

X = np.ones((2, 3, 8, 8))
W = np.ones((4, 3, 3, 3))
B = np.ones(4)
DY = np.ones((2, 4, 6, 6))  # the forward output's shape for X, W, stride 1, no padding

ROUTES = {
    "conv2d_forward": lambda x, w, b=None, dy=None, **kw: cycnn.conv2d_forward(x, w, b, **kw),
    "conv2d_backward": lambda x, w, b=None, dy=DY, **kw: cycnn.conv2d_backward(dy, x, w, **kw),
    "reference.conv2d_forward":
        lambda x, w, b=None, dy=None, **kw: reference.conv2d_forward(x, w, b, **kw),
    "reference.conv2d_backward":
        lambda x, w, b=None, dy=DY, **kw: reference.conv2d_backward(dy, x, w, **kw),
}
ALL_ROUTES = pytest.mark.parametrize("func", list(ROUTES))
PUBLIC_ROUTES = pytest.mark.parametrize("func", ["conv2d_forward", "conv2d_backward"])


def raises(exc, func, pattern):
    """pytest.raises whose message must start with the function's name."""
    return pytest.raises(exc, match=rf"^{re.escape(func)}: {pattern}")


def test_the_good_arguments_work():
    """The arrays above are valid: every failure below is caused by its one change."""
    for func, call in ROUTES.items():
        call(X, W, B if "forward" in func else None)


# --------------------------------------------------------------------------- shapes

@ALL_ROUTES
def test_x_wrong_ndim(func):
    with raises(ValueError, func, r"x must be 3-D or 4-D \(C, H, W\) or \(N, C, H, W\), got "
                                  r"shape \(8, 8\) \(2-D\)"):
        ROUTES[func](np.ones((8, 8)), W)


@ALL_ROUTES
def test_w_wrong_ndim(func):
    with raises(ValueError, func,
                r"w must be 4-D \(F, C / groups, KH, KW\), got shape \(3, 3, 3\) \(3-D\)"):
        ROUTES[func](X, np.ones((3, 3, 3)))


@ALL_ROUTES
def test_x_5d(func):
    with raises(ValueError, func, r"x must be 3-D or 4-D .* got shape \(1, 2, 3, 8, 8\) "
                                  r"\(5-D\)"):
        ROUTES[func](np.ones((1, 2, 3, 8, 8)), W)


@ALL_ROUTES
def test_unbatched_dy_must_match_an_unbatched_x(func):
    """One sample (C, H, W) is accepted, as in PyTorch, but then dy is (F, OH, OW) too."""
    if "backward" not in func:
        assert ROUTES[func](X[0], W).shape == (4, 6, 6)
        return
    with raises(ValueError, func, r"dy.*\(4, 6, 6\)"):
        ROUTES[func](X[0], W, dy=DY)


@ALL_ROUTES
def test_channel_mismatch(func):
    with raises(ValueError, func, r"x has C=3 channels but w expects C=1 "
                                  r"\(x.shape=\(2, 3, 8, 8\), w.shape=\(4, 1, 3, 3\)\)"):
        ROUTES[func](X, np.ones((4, 1, 3, 3)))


@pytest.mark.parametrize("func", ["conv2d_forward", "reference.conv2d_forward"])
def test_bias_wrong_length(func):
    with raises(ValueError, func, r"b must have shape \(F,\) = \(4,\) to match "
                                  r"w.shape=\(4, 3, 3, 3\), got b.shape=\(5,\)"):
        ROUTES[func](X, W, np.ones(5))


@pytest.mark.parametrize("func", ["conv2d_forward", "reference.conv2d_forward"])
def test_bias_wrong_ndim(func):
    with raises(ValueError, func, r"b must have shape \(F,\) = \(4,\) .* got b.shape=\(4, 1\)"):
        ROUTES[func](X, W, np.ones((4, 1)))


@ALL_ROUTES
def test_kernel_larger_than_input(func):
    with raises(ValueError, func, r"kernel 9x3 \(w.shape=\(4, 3, 9, 3\)\) is larger than the "
                                  r"padded input 8x8 \(x.shape=\(2, 3, 8, 8\)"):
        ROUTES[func](X, np.ones((4, 3, 9, 3)))


@ALL_ROUTES
def test_kernel_larger_than_padded_input(func):
    with raises(ValueError, func, r"kernel 3x11 .* larger than the padded input 10x9 "
                                  r"\(x.shape=\(2, 3, 8, 8\), padding=\(\(1, 1\), \(0, 1\)\)\)"):
        ROUTES[func](X, np.ones((4, 3, 3, 11)), padding=((1, 1), (0, 1)))


def test_kernel_as_large_as_padded_input_is_fine():
    y = cycnn.conv2d_forward(X, np.ones((4, 3, 10, 9)), padding=((1, 1), (0, 1)))
    assert y.shape == (2, 4, 1, 1)


@PUBLIC_ROUTES
def test_empty_arrays(func):
    with raises(ValueError, func, r"empty array \(x.shape=\(2, 3, 0, 8\)"):
        ROUTES[func](np.ones((2, 3, 0, 8)), W)
    with raises(ValueError, func, r"empty array .*w.shape=\(0, 3, 3, 3\)"):
        ROUTES[func](X, np.ones((0, 3, 3, 3)))


def test_an_empty_batch_is_fine():
    """N = 0 gives an empty output and zero weight gradients, as in PyTorch."""
    y = cycnn.conv2d_forward(np.ones((0, 3, 8, 8)), W, B)
    assert y.shape == (0, 4, 6, 6)
    dx, dw, db = cycnn.conv2d_backward(np.ones((0, 4, 6, 6)), np.ones((0, 3, 8, 8)), W)
    assert dx.shape == (0, 3, 8, 8)
    np.testing.assert_array_equal(dw, np.zeros(W.shape))
    np.testing.assert_array_equal(db, np.zeros(4))


@pytest.mark.parametrize("dy_shape", [(2, 4, 5, 6), (2, 3, 6, 6), (1, 4, 6, 6), (4, 6, 6)],
                         ids=str)
@pytest.mark.parametrize("func", ["conv2d_backward", "reference.conv2d_backward"])
def test_dy_shape_mismatch(func, dy_shape):
    pattern = re.escape(str(dy_shape))
    # the expected and the given shape, in either order
    with raises(ValueError, func, rf"(?=.*dy)(?=.*\(2, 4, 6, 6\))(?=.*{pattern})"):
        ROUTES[func](X, W, dy=np.ones(dy_shape))


def test_dy_shape_mismatch_names_stride_and_padding():
    with raises(ValueError, "conv2d_backward",
                r"dy must have the forward output's shape \(2, 4, 4, 2\) for "
                r"x.shape=\(2, 3, 8, 8\), w.shape=\(4, 3, 3, 3\), stride=\(2, 3\), "
                r"padding=\(\(1, 0\), \(0, 0\)\); got dy.shape=\(2, 4, 6, 6\)"):
        cycnn.conv2d_backward(DY, X, W, stride=(2, 3), padding=((1, 0), (0, 0)))


# --------------------------------------------------------------------------- stride

@ALL_ROUTES
@pytest.mark.parametrize("stride", [0, -1, (1, 0), (0, 2)], ids=str)
def test_stride_below_one(func, stride):
    bad = stride if isinstance(stride, int) else min(stride)
    with raises(ValueError, func, rf"stride must be >= 1, got {bad}$"):
        ROUTES[func](X, W, stride=stride)


@ALL_ROUTES
@pytest.mark.parametrize("stride", [1.5, 2.0, (1, 1.0), "2", True, None], ids=repr)
def test_stride_not_an_int(func, stride):
    bad = stride[1] if isinstance(stride, tuple) else stride
    with raises(TypeError, func, rf"stride must be an integer, got {re.escape(repr(bad))}"):
        ROUTES[func](X, W, stride=stride)


@PUBLIC_ROUTES
def test_stride_wrong_length(func):
    with raises(ValueError, func, r"stride must be an int or a pair of ints, got \(1, 2, 3\)"):
        ROUTES[func](X, W, stride=(1, 2, 3))


def test_numpy_integer_stride_is_fine():
    y = cycnn.conv2d_forward(X, W, stride=np.int64(2), padding=(np.int32(1), 0))
    assert y.shape == (2, 4, 4, 3)


# --------------------------------------------------------------------------- padding

@ALL_ROUTES
@pytest.mark.parametrize("padding", [-1, (0, -2), ((0, 1), (-1, 0)), ((-3, 0), (0, 0))],
                         ids=lambda p: repr(p).replace(" ", ""))
def test_negative_padding(func, padding):
    bad = min(np.ravel(padding))
    with raises(ValueError, func, rf"padding must be >= 0, got {bad}"):
        ROUTES[func](X, W, padding=padding)


@ALL_ROUTES
@pytest.mark.parametrize("padding", ["full", "SAME", "", "causal"])
def test_unknown_padding_string(func, padding):
    with raises(ValueError, func, rf"unknown padding {re.escape(repr(padding))}; use 'valid', "
                                  r"'same'"):
        ROUTES[func](X, W, padding=padding)


@PUBLIC_ROUTES
@pytest.mark.parametrize("padding", [1.0, None, (1, 0.5)], ids=repr)
def test_padding_not_an_int(func, padding):
    with raises(TypeError, func, r"padding must be an integer, got "):
        ROUTES[func](X, W, padding=padding)


@PUBLIC_ROUTES
@pytest.mark.parametrize("padding", [(1, 1, 1), ((1, 1), (1, 1), (1, 1)), ((1, 2, 3), (0, 0))],
                         ids=lambda p: repr(p).replace(" ", ""))
def test_padding_wrong_length(func, padding):
    with raises(ValueError, func, r"padding must be an int or a pair of ints, got "):
        ROUTES[func](X, W, padding=padding)


@ALL_ROUTES
@pytest.mark.parametrize("stride", [2, (1, 2), (3, 1)], ids=str)
def test_same_with_stride_above_one(func, stride):
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    # such a padding exists (seed 002 uses it), but it depends on H and W, not on the layer
    with raises(ValueError, func,
                rf"padding='same' needs stride 1, got stride=\({sh}, {sw}\): with a larger "
                r"stride the padding that keeps H x W depends on the input size "
                r"\(\(sh - 1\) \* H \+ KH - sh rows and \(sw - 1\) \* W \+ KW - sw columns "
                r"in all\)"):
        ROUTES[func](X, W, stride=stride, padding="same")


@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (3, 4), (8, 1)], ids=str)
def test_same_with_even_kernel_is_allowed(kernel):
    """The decision: allowed, extra row/column at the bottom/right (PyTorch's choice);
    the values are checked against PyTorch and the reference in test_conv.py."""
    w = np.ones((4, 3) + kernel)
    assert cycnn.conv2d_forward(X, w, padding="same").shape == (2, 4, 8, 8)
    dx, dw, db = cycnn.conv2d_backward(np.ones((2, 4, 8, 8)), X, w, padding="same")
    assert dx.shape == X.shape and dw.shape == w.shape and db.shape == (4,)


def test_same_padding_helper_without_kernel_size():
    with raises((TypeError, ValueError), "resolve_padding", r".*kernel_size"):
        cycnn.resolve_padding("same")


# --------------------------------------------------------------------------- non-numeric

@pytest.mark.parametrize("make", [
    lambda a: np.full(a.shape, "a"),
    lambda a: a.astype(object),
    lambda a: a.astype(complex),
    lambda a: np.zeros(a.shape, "datetime64[s]"),
], ids=["str", "object", "complex", "datetime"])
@pytest.mark.parametrize("func, name", [
    ("conv2d_forward", "x"), ("conv2d_forward", "w"), ("conv2d_forward", "b"),
    ("conv2d_backward", "dy"), ("conv2d_backward", "x"), ("conv2d_backward", "w"),
], ids=lambda v: v)
def test_non_numeric_arrays(func, name, make):
    args = dict(x=X, w=W, b=B, dy=DY)
    args[name] = make(args[name])
    if func == "conv2d_backward":
        del args["b"]
    else:
        del args["dy"]
    shape = re.escape(str(args[name].shape))
    with raises(TypeError, func, rf"{name} must hold real numbers, got dtype \S+ "
                                 rf"\(shape {shape}\)"):
        ROUTES[func](**args)


@PUBLIC_ROUTES
def test_none_as_x(func):
    with raises(TypeError, func, r"x must hold real numbers, got dtype object"):
        ROUTES[func](None, W)


def test_nested_lists_are_fine():
    y = cycnn.conv2d_forward(X.tolist(), W.tolist(), B.tolist())
    np.testing.assert_array_equal(y, cycnn.conv2d_forward(X, W, B))


def test_ragged_list():
    with raises((TypeError, ValueError), "conv2d_forward", r"x "):
        cycnn.conv2d_forward([[[[1.0]], [[1.0, 2.0]]]], W)


@pytest.mark.parametrize("threads", [0, -2], ids=str)
@PUBLIC_ROUTES
def test_threads_below_one(func, threads):
    with raises(ValueError, func, rf"threads must be >= 1, got {threads}$"):
        ROUTES[func](X, W, threads=threads)


@pytest.mark.parametrize("threads", [1.5, "2", True], ids=repr)
@PUBLIC_ROUTES
def test_threads_not_an_int(func, threads):
    with raises(TypeError, func, rf"threads must be an integer, got {re.escape(repr(threads))}"):
        ROUTES[func](X, W, threads=threads)


@PUBLIC_ROUTES
def test_unknown_algorithm(func):
    with raises(ValueError, func, r"algorithm must be one of "
                                  r"\('auto', 'direct', 'im2col', 'fast'\), got 'winograd'"):
        ROUTES[func](X, W, algorithm="winograd")


# --------------------------------------------------------------------------- remembered answers

def test_a_remembered_answer_never_lets_bad_input_through():
    """check_conv_args and pool_geometry keep the answers they gave (geometry._remembered):
    after a good call, the same shapes with a bad argument, or a stand-in that equals a
    good one (True == 1, 1.0 == 1), are still refused, each time."""
    from cycnn.geometry import check_conv_args, pool_geometry

    good = check_conv_args("f", X, W, B, 1, 0)
    assert check_conv_args("f", X, W, B, 1, 0) is good  # remembered
    assert check_conv_args("f", X, W, B, (1, 1), 0) == good  # another key, same answer
    for _ in range(2):
        for stride in (True, 1.0, (True, 1), (1, 1.0), ((1, 1), 1)):
            with pytest.raises(TypeError, match="f: stride must be an integer"):
                check_conv_args("f", X, W, B, stride, 0)
        with pytest.raises(ValueError, match="b must have shape"):
            check_conv_args("f", X, W, np.ones(5), 1, 0)
        with pytest.raises(ValueError, match="x has C=2 channels"):
            check_conv_args("f", X[:, :2], W, B, 1, 0)
    assert pool_geometry("g", (2, 3, 8, 8), 2, None).yshape == (2, 3, 4, 4)
    for _ in range(2):
        with pytest.raises(TypeError, match="ceil_mode must be True or False"):
            pool_geometry("g", (2, 3, 8, 8), 2, None, 0, 1, 0)
        with pytest.raises(ValueError, match="padding=\\(2, 2\\) must be at most half"):
            pool_geometry("g", (2, 3, 8, 8), 2, None, 2)
