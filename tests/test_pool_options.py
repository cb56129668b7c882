"""Pooling with PyTorch's other arguments: padding, dilation, ceil_mode, count_include_pad,
divisor_override, and unbatched input.

The compiled pooling against obvious Python loops written from PyTorch's documented rules
(below), against PyTorch itself, and against central differences; then the bad arguments.
"""

from __future__ import annotations

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, torch_or_skip
from cycnn import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward


def out_size(n, k, s, p, d, ceil):
    """PyTorch's documented output size, written out again here."""
    span = d * (k - 1) + 1
    num = n + 2 * p - span
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def naive(x, k, s, p, d, ceil, mode, include_pad=True, divisor=None):
    """y and d y / d x, one window at a time, from the rules of PyTorch's docs."""
    (KH, KW), (sh, sw), (ph, pw), (rh, rw) = k, s, p, d
    C, H, W = x.shape
    OH, OW = out_size(H, KH, sh, ph, rh, ceil), out_size(W, KW, sw, pw, rw, ceil)
    y = np.empty((C, OH, OW))
    route = np.zeros((C, OH, OW, H, W))
    for c in range(C):
        for i in range(OH):
            for j in range(OW):
                taps = [(i * sh - ph + a * rh, j * sw - pw + b * rw)
                        for a in range(KH) for b in range(KW)]
                inside = [(h, w) for h, w in taps if 0 <= h < H and 0 <= w < W]
                if mode == "max":
                    values = [x[c, h, w] for h, w in inside]
                    best = int(np.argmax(values))  # the first maximum in row-major order
                    y[c, i, j] = values[best]
                    route[c, i, j][inside[best]] = 1
                else:
                    if divisor is not None:
                        area = divisor
                    elif include_pad:  # the window clipped to the padded input
                        top, left = i * sh - ph, j * sw - pw
                        area = (min(top + KH, H + ph) - top) * (min(left + KW, W + pw) - left)
                    else:
                        area = len(inside)
                    y[c, i, j] = sum(x[c, h, w] for h, w in inside) / area
                    for h, w in inside:
                        route[c, i, j, h, w] += 1 / area
    return y, route


def draw(count, seed, mode):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        H, W = (int(v) for v in rng.integers(1, 9, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 5, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
        ph, pw = int(rng.integers(0, KH // 2 + 1)), int(rng.integers(0, KW // 2 + 1))
        rh, rw = (int(v) for v in rng.integers(1, 3, size=2)) if mode == "max" else (1, 1)
        ceil = bool(rng.random() < 0.5)
        try:
            OH = out_size(H, KH, sh, ph, rh, ceil)
            OW = out_size(W, KW, sw, pw, rw, ceil)
        except ZeroDivisionError:  # pragma: no cover
            continue
        if OH < 1 or OW < 1:
            continue
        # every window needs a tap inside the input (cycnn refuses the others)
        if any(all(not 0 <= i * sh - ph + a * rh < H for a in range(KH)) for i in range(OH)):
            continue
        if any(all(not 0 <= j * sw - pw + b * rw < W for b in range(KW)) for j in range(OW)):
            continue
        opts = dict(size=(KH, KW), stride=(sh, sw), padding=(ph, pw), ceil_mode=ceil)
        if mode == "max":
            opts["dilation"] = (rh, rw)
        else:
            opts["count_include_pad"] = bool(rng.random() < 0.5)
            opts["divisor_override"] = [None, None, 3, -2][len(out) % 4]
        out.append(dict(shape=(int(rng.integers(1, 3)), H, W), opts=opts,
                        seed=seed * 1000 + len(out)))
    return out


MAX_CASES, AVG_CASES = draw(80, 1, "max"), draw(80, 2, "avg")


def _id(case):
    return "-".join(f"{k[:4]}{v}" for k, v in case["opts"].items()).replace(" ", "") + \
        f"-x{case['shape']}".replace(" ", "")


def test_cases_cover_the_arguments():
    for cases in (MAX_CASES, AVG_CASES):
        assert {c["opts"]["ceil_mode"] for c in cases} == {False, True}
        assert any(c["opts"]["padding"] != (0, 0) for c in cases)
    assert any(c["opts"]["dilation"] != (1, 1) for c in MAX_CASES)
    assert {c["opts"]["count_include_pad"] for c in AVG_CASES} == {False, True}
    # a ceil_mode window that runs past the padding, and one PyTorch's rule drops
    assert any(out_size(c["shape"][1], c["opts"]["size"][0], c["opts"]["stride"][0],
                        c["opts"]["padding"][0], 1, True) !=
               out_size(c["shape"][1], c["opts"]["size"][0], c["opts"]["stride"][0],
                        c["opts"]["padding"][0], 1, False) for c in AVG_CASES)


@pytest.mark.parametrize("case", MAX_CASES, ids=_id)
def test_max_pool_matches_the_rules(case):
    o = case["opts"]
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    y, cache = max_pool2d_forward(x, **o)  # unbatched (C, H, W), as PyTorch accepts
    want, route = naive(x, o["size"], o["stride"], o["padding"], o["dilation"],
                        o["ceil_mode"], "max")
    np.testing.assert_array_equal(y, want)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(max_pool2d_backward(dy, cache),
                               np.einsum("cij,cijhw->chw", dy, route), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("case", AVG_CASES, ids=_id)
def test_avg_pool_matches_the_rules(case):
    o = case["opts"]
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    y, cache = avg_pool2d_forward(x[None], **o)
    want, route = naive(x, o["size"], o["stride"], o["padding"], (1, 1), o["ceil_mode"], "avg",
                        o["count_include_pad"], o["divisor_override"])
    np.testing.assert_allclose(y[0], want, rtol=1e-13, atol=1e-14)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(avg_pool2d_backward(dy, cache)[0],
                               np.einsum("cij,cijhw->chw", dy[0], route), rtol=1e-13,
                               atol=1e-14)


@pytest.mark.parametrize("case", MAX_CASES[::4] + AVG_CASES[::4], ids=_id)
@DTYPES
def test_matches_pytorch(case, dtype):
    torch = torch_or_skip()
    o = dict(case["opts"])
    size = o.pop("size")
    x = np.random.default_rng(case["seed"]).standard_normal((2, *case["shape"])).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    if "dilation" in o:
        yt, indices = torch.nn.functional.max_pool2d(xt, size, **o, return_indices=True)
        y, cache = max_pool2d_forward(x, size, **o)
        np.testing.assert_array_equal(cache.argmax, indices.numpy())  # return_indices
        backward = max_pool2d_backward
    else:
        yt = torch.nn.functional.avg_pool2d(xt, size, **o)
        y, cache = avg_pool2d_forward(x, size, **o)
        backward = avg_pool2d_backward
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(backward(dy, cache), xt.grad.numpy(), **tol)


GRADCHECKS = {
    "max-padding": dict(size=3, stride=2, padding=1),
    "max-dilation": dict(size=(2, 3), stride=1, dilation=(2, 1)),
    "max-ceil": dict(size=2, stride=2, padding=1, ceil_mode=True),
    "avg-padding": dict(size=3, stride=2, padding=1),
    "avg-no-pad-count": dict(size=3, stride=2, padding=1, count_include_pad=False),
    "avg-ceil": dict(size=(3, 2), stride=2, padding=(1, 0), ceil_mode=True),
    "avg-divisor": dict(size=2, stride=1, divisor_override=3),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
def test_central_differences(name):
    opts = GRADCHECKS[name]
    rng = np.random.default_rng(sorted(GRADCHECKS).index(name))
    # distinct values far apart (steps of 0.1 >> eps): no max-pool window is near a tie
    x = rng.permutation(np.arange(2 * 3 * 7 * 6)).reshape(2, 3, 7, 6) * 0.1
    if name.startswith("max"):
        def forward(x):
            return max_pool2d_forward(x, **opts)[0]

        def backward(dy, x):
            return max_pool2d_backward(dy, max_pool2d_forward(x, **opts)[1])
    else:
        def forward(x):
            return avg_pool2d_forward(x, **opts)[0]

        def backward(dy, x):
            return avg_pool2d_backward(dy, avg_pool2d_forward(x, **opts)[1])
    result = cycnn.gradcheck(forward, x, backward, eps=1e-4, rtol=1e-7)
    assert result.ok and result.analytic[0].any()


def test_ceil_mode_keeps_a_partial_window_and_drops_one_that_starts_in_the_padding():
    # 4 inputs, window 3, stride 2, padding 1: full windows start at -1 and 1; ceil_mode
    # adds one at 3, inside the input, running past the padding
    assert cycnn.conv_output_size(4, 3, 2, 1) == 2
    assert cycnn.conv_output_size(4, 3, 2, 1, ceil_mode=True) == 3
    y, _ = max_pool2d_forward(np.arange(4.0).reshape(1, 1, 4), (1, 3), (1, 2), (0, 1),
                              ceil_mode=True)
    np.testing.assert_array_equal(y, [[[1, 3, 3]]])
    # 5 inputs, window 2, stride 2, padding 1: rounding up gives 4 windows, but the 4th
    # would start at input position 5, in the padding after the input: PyTorch drops it
    assert cycnn.conv_output_size(5, 2, 2, 1, ceil_mode=True) == 3


def test_ceil_mode_lets_a_window_run_past_a_small_input():
    """PyTorch keeps one window larger than the input under ceil_mode (stride 2)."""
    y, cache = max_pool2d_forward(np.arange(4.0).reshape(1, 4, 1), (3, 1), 2, 0, (2, 1),
                                  ceil_mode=True)
    assert y.shape == (1, 1, 1) and float(y[0, 0, 0]) == 2.0  # taps 0 and 2 (4 is past)


def test_padding_never_wins_a_max_window():
    x = -np.ones((1, 1, 2, 2))  # every value below the padding's 0 ...
    y, cache = max_pool2d_forward(x, 2, 1, padding=1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))  # ... which is never read
    assert cache.argmax.min() >= 0 and cache.argmax.max() < 4


def test_unbatched_cache_masks_and_counts():
    y, cache = max_pool2d_forward(np.arange(16.0).reshape(1, 4, 4), 2, 1)
    assert cache.x_shape == (1, 4, 4) and cache.win_counts().shape == (1, 4, 4)
    assert int(cache.win_counts().sum()) == y.size


def test_layers_carry_the_arguments_to_pytorch(rng):
    torch = torch_or_skip()
    layers = [cycnn.MaxPool2D(3, 2, 1, 2, ceil_mode=True),
              cycnn.AvgPool2D(3, 2, 1, True, False, None), cycnn.AvgPool2D(2, 1, 1, False, True, 3)]
    x = rng.standard_normal((2, 3, 9, 8))
    for layer in layers:
        again = cycnn.layers.layer_from_config(layer.config())
        assert repr(again) == repr(layer)
        tm = cycnn.to_torch(cycnn.Sequential([cycnn.Conv2D(3, 3, 1, rng=0, dtype=np.float64),
                                              layer]))
        y = cycnn.Sequential([cycnn.Conv2D(3, 3, 1, rng=0, dtype=np.float64), layer]).forward(x)
        np.testing.assert_allclose(y, tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-12,
                                   atol=1e-12)
        assert y.shape[1:] == layer.output_shape((3, 9, 8))
    assert repr(layers[0]) == "MaxPool2D(3, stride=(2, 2), padding=(1, 1), ceil_mode=True, " \
                              "dilation=(2, 2))"
    assert cycnn.MaxPool2D(2).config() == {"type": "MaxPool2D", "kernel_size": [2, 2],
                                           "stride": [2, 2]}


# --------------------------------------------------------------------------- bad input

X = np.zeros((1, 1, 6, 6))


@pytest.mark.parametrize("pool", [max_pool2d_forward, avg_pool2d_forward],
                         ids=["max", "avg"])
def test_padding_above_half_the_window(pool):
    name = pool.__name__
    with pytest.raises(ValueError, match=rf"{name}: padding=\(2, 1\) must be at most half the "
                                         r"window \(3, 3\) // 2 = \(1, 1\)"):
        pool(X, 3, padding=(2, 1))


def test_dilation_below_one():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: dilation must be >= 1, got 0"):
        max_pool2d_forward(X, 2, dilation=(0, 1))


def test_dilated_window_larger_than_the_input():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: window 3x3 \(size=3\), dilated "
                                         r"by \(3, 3\) to span 7x7, is larger than the input "
                                         r"plane 6x6"):
        max_pool2d_forward(X, 3, 1, dilation=3)


def test_a_window_of_padding_only_is_refused():
    """Possible only with dilation: both taps of the only window fall in the padding."""
    with pytest.raises(ValueError, match=r"max_pool2d_forward: window 0 along the rows holds no "
                                         r"input position .* its taps all fall in the padding"):
        max_pool2d_forward(np.zeros((1, 4, 4)), (2, 1), 1, (1, 0), (5, 1))


@pytest.mark.parametrize("value", [1, "yes", None], ids=repr)
def test_ceil_mode_must_be_a_bool(value):
    with pytest.raises(TypeError, match=r"avg_pool2d_forward: ceil_mode must be True or False"):
        avg_pool2d_forward(X, 2, ceil_mode=value)


def test_count_include_pad_must_be_a_bool():
    with pytest.raises(TypeError, match=r"avg_pool2d_forward: count_include_pad must be True "
                                        r"or False, got 0"):
        avg_pool2d_forward(X, 2, count_include_pad=0)


@pytest.mark.parametrize("value, exc, pattern", [
    (0, ValueError, r"divisor_override must not be 0"),
    (1.5, TypeError, r"divisor_override must be an integer, got 1.5"),
], ids=["zero", "float"])
def test_divisor_override(value, exc, pattern):
    with pytest.raises(exc, match=rf"avg_pool2d_forward: {pattern}"):
        avg_pool2d_forward(X, 2, divisor_override=value)


def test_an_edited_cache_is_refused():
    _, cache = max_pool2d_forward(X, 3, 1, padding=1)
    with pytest.raises(ValueError, match=r"max_pool2d_backward \(cache\): padding=\(2, 2\) must "
                                         r"be at most half .* \(was the cache edited\?\)"):
        max_pool2d_backward(np.zeros((1, 1, 6, 6)), cache._replace(padding=(2, 2)))
    _, cache = avg_pool2d_forward(X, 2)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward \(cache\): divisor_override "
                                         r"must not be 0"):
        avg_pool2d_backward(np.zeros((1, 1, 3, 3)), cache._replace(divisor_override=0))


def test_a_remembered_cache_check_still_refuses_an_edited_cache():
    """The backward pass keeps the answer of its cache check (geometry.pool_cache_geometry): after
    good calls, caches of the same shapes edited into a bad shape, padding or stand-in
    (True for 1) are still refused, every time, and a good call after them still works."""
    _, cache = max_pool2d_forward(X, 3, 1, padding=1)
    dy = np.ones((1, 1, 6, 6))
    good = max_pool2d_backward(dy, cache)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"padding=\(2, 2\) must be at most half"):
            max_pool2d_backward(dy, cache._replace(padding=(2, 2)))
        with pytest.raises(TypeError, match=r"\(cache\): x_shape must be an integer, got True"):
            max_pool2d_backward(dy, cache._replace(x_shape=(True, 1, 6, 6)))
        with pytest.raises(ValueError, match=r"\(cache\): x_shape must be \(N, C, H, W\)"):
            max_pool2d_backward(dy, cache._replace(x_shape=(6, 6)))
        with pytest.raises(ValueError, match=r"dy must have the forward output's shape "
                                             r"\(1, 1, 7, 7\)"):
            max_pool2d_backward(dy, cache._replace(x_shape=(1, 1, 7, 7)))
    np.testing.assert_array_equal(max_pool2d_backward(dy, cache), good)


def test_dy_shape_names_the_new_arguments():
    _, cache = max_pool2d_forward(X, 3, 2, padding=1, dilation=2, ceil_mode=True)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: dy must have the forward "
                                         r"output's shape \(1, 1, 3, 3\) for x.shape=\(1, 1, 6, "
                                         r"6\), size=\(3, 3\), stride=\(2, 2\), padding=\(1, 1\), "
                                         r"dilation=\(2, 2\), ceil_mode=True; got"):
        max_pool2d_backward(np.zeros((1, 1, 2, 2)), cache)
