"""The transposed convolution (docs/transposed-conv.md).

The compiled route (the convolution's three loops with the roles of the arrays exchanged,
direct and im2col) against the NumPy reference (a full correlation with the rotated
filters) and PyTorch; central differences for every argument; the identities the page
derives; the layer; the bad arguments.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, RTOL, torch_or_skip
from cycnn import reference

ALGORITHMS = pytest.mark.parametrize("algorithm", ["direct", "im2col"])


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def draw(count, seed):
    """``count`` valid transposed convolutions, arguments from their documented ranges."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        G = int(rng.choice([1, 1, 2, 3]))
        C, Fg = G * int(rng.integers(1, 3)), int(rng.integers(1, 4))
        N = int(rng.integers(0, 3)) if rng.random() < 0.1 else int(rng.integers(1, 3))
        H, W = (int(v) for v in rng.integers(1, 7, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 4, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
        rh, rw = (int(v) for v in rng.integers(1, 3, size=2))
        oph = int(rng.integers(0, max(sh, rh)))
        opw = int(rng.integers(0, max(sw, rw)))
        if rng.random() < 0.3:
            padding = tuple(tuple(int(v) for v in rng.integers(0, 3, size=2)) for _ in "hw")
        else:
            padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
        pads = padding if isinstance(padding[0], tuple) else ((padding[0],) * 2,
                                                              (padding[1],) * 2)
        full_h = (H - 1) * sh + rh * (KH - 1) + 1 + oph
        full_w = (W - 1) * sw + rw * (KW - 1) + 1 + opw
        if full_h - sum(pads[0]) < 1 or full_w - sum(pads[1]) < 1:
            continue
        unbatched = N == 1 and rng.random() < 0.2
        out.append(dict(xshape=(C, H, W) if unbatched else (N, C, H, W),
                        wshape=(C, Fg, KH, KW),
                        args=dict(stride=(sh, sw), padding=padding,
                                  output_padding=(oph, opw), groups=G, dilation=(rh, rw)),
                        seed=seed * 1000 + len(out)))
    return out


CASES = draw(100, seed=7)


def _id(case):
    a = case["args"]
    return (f"x{'x'.join(map(str, case['xshape']))}-w{'x'.join(map(str, case['wshape']))}"
            f"-s{a['stride']}-p{a['padding']}-op{a['output_padding']}-g{a['groups']}"
            f"-d{a['dilation']}").replace(" ", "")


def arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["xshape"]).astype(dtype)
    w = rng.standard_normal(case["wshape"]).astype(dtype)
    b = rng.standard_normal(case["wshape"][1] * case["args"]["groups"]).astype(dtype)
    y = reference.conv_transpose2d_forward(x, w, b, **case["args"])
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, dy


def assert_close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == dtype
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def test_cases_cover_the_arguments():
    args = [c["args"] for c in CASES]
    assert {a["groups"] for a in args} == {1, 2, 3}
    assert {a["stride"][0] for a in args} == {1, 2, 3}
    assert any(a["output_padding"][0] >= a["stride"][0] for a in args)  # op < dilation only
    assert any(a["output_padding"] != (0, 0) for a in args)
    assert any(isinstance(a["padding"][0], tuple) for a in args)
    assert any(len(c["xshape"]) == 3 for c in CASES)
    assert any(c["xshape"][0] == 0 for c in CASES if len(c["xshape"]) == 4)


@pytest.mark.parametrize("case", CASES, ids=_id)
@ALGORITHMS
@DTYPES
def test_kernels_match_reference(case, algorithm, dtype):
    x, w, b, dy = arrays(case, dtype)
    y = cycnn.conv_transpose2d_forward(x, w, b, **case["args"], algorithm=algorithm)
    assert_close(y, reference.conv_transpose2d_forward(x, w, b, **case["args"]), dtype)
    got = cycnn.conv_transpose2d_backward(dy, x, w, **case["args"], algorithm=algorithm)
    want = reference.conv_transpose2d_backward(dy, x, w, **case["args"])
    for g, r in zip(got, want):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("case", [c for c in CASES[::3] if
                                  not isinstance(c["args"]["padding"][0], tuple)], ids=_id)
@ALGORITHMS
@DTYPES
def test_matches_pytorch(case, algorithm, dtype):
    torch = torch_or_skip()
    x, w, b, dy = arrays(case, dtype)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, **case["args"])
    yt.backward(torch.from_numpy(dy))
    y = cycnn.conv_transpose2d_forward(x, w, b, **case["args"], algorithm=algorithm)
    got = cycnn.conv_transpose2d_backward(dy, x, w, **case["args"], algorithm=algorithm)
    assert_close(y, yt.detach().numpy(), dtype)
    for g, t in zip(got, (xt, wt, bt)):
        assert_close(g, t.grad.numpy(), dtype)


GRADCHECKS = {
    "plain": dict(),
    "stride": dict(stride=(2, 3)),
    "padding": dict(stride=2, padding=(1, 2)),
    "output_padding": dict(stride=(3, 2), padding=1, output_padding=(2, 1)),
    "output_padding-below-dilation": dict(stride=1, dilation=3, output_padding=2),
    "groups": dict(stride=2, groups=2, padding=1),
    "dilation": dict(stride=2, dilation=(2, 1), padding=((2, 0), (1, 1))),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
@ALGORITHMS
def test_central_differences(name, algorithm):
    args = GRADCHECKS[name]
    rng = np.random.default_rng(sorted(GRADCHECKS).index(name))
    x = rng.standard_normal((2, 4, 4, 3))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(3 * args.get("groups", 1))

    def forward(x, w, b):
        return cycnn.conv_transpose2d_forward(x, w, b, **args, algorithm=algorithm)

    def backward(dy, x, w, b):
        return cycnn.conv_transpose2d_backward(dy, x, w, **args, algorithm=algorithm)

    result = cycnn.gradcheck(forward, [x, w, b], backward, eps=1e-3, rtol=1e-7)
    assert result.ok and all(a.any() for a in result.analytic)


@ALGORITHMS
def test_it_is_the_input_gradient_of_a_convolution(rng, algorithm):
    """The page's claim: conv_transpose2d(dy, w) is conv2d_backward's dx for that dy, with
    the same w, stride, padding, dilation and groups."""
    x = rng.standard_normal((2, 6, 9, 8))          # what the convolution reads
    w = rng.standard_normal((4, 3, 3, 2))          # (F, C / G, KH, KW) = (C_in, C_out / G, ...)
    args = dict(stride=2, padding=1, dilation=(1, 2), groups=2)
    y = cycnn.conv2d_forward(x, w, **args, algorithm=algorithm)
    dy = rng.standard_normal(y.shape)
    dx, _, _ = cycnn.conv2d_backward(dy, x, w, **args, algorithm=algorithm)
    # the rows and columns of x that no window reached come back as output_padding
    op = (9 - cycnn.conv_transpose_output_size(y.shape[2], 3, 2, 1, 1),
          8 - cycnn.conv_transpose_output_size(y.shape[3], 2, 2, 1, 2))
    t = cycnn.conv_transpose2d_forward(dy, w, **args, output_padding=op, algorithm=algorithm)
    np.testing.assert_allclose(t, dx, rtol=1e-12, atol=1e-12)


def test_its_input_gradient_is_a_convolution(rng):
    x, w = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    y = cycnn.conv_transpose2d_forward(x, w, stride=2, padding=1)
    dy = rng.standard_normal(y.shape)
    dx, _, _ = cycnn.conv_transpose2d_backward(dy, x, w, stride=2, padding=1)
    np.testing.assert_allclose(dx, cycnn.conv2d_forward(dy, w, stride=2, padding=1),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, k, s, p, r, op", [(3, 3, 2, 1, 1, 0), (4, 2, 3, 0, 2, 2),
                                               (1, 1, 1, 0, 1, 0), (5, 3, 2, (2, 0), 3, 1)],
                         ids=str)
def test_output_size_turns_the_convolution_formula_round(n, k, s, p, r, op):
    out = cycnn.conv_transpose_output_size(n, k, s, p, r, op)
    before, after = (p, p) if isinstance(p, int) else p
    assert out == (n - 1) * s - before - after + r * (k - 1) + 1 + op
    assert cycnn.conv_output_size(out, k, s, p, r) == n + op // s


def test_the_pages_powers_of_ten():
    """docs/transposed-conv.md: the nine equations of a 2x2 input and a 2x2 filter."""
    (x11, x12), (x21, x22) = x = np.array([[1.0, 2.0], [3.0, 4.0]])
    (w11, w12), (w21, w22) = w = np.array([[1.0, 10.0], [100.0, 1000.0]])
    want = [[x11 * w11, x11 * w12 + x12 * w11, x12 * w12],
            [x11 * w21 + x21 * w11, x11 * w22 + x12 * w21 + x21 * w12 + x22 * w11,
             x12 * w22 + x22 * w12],
            [x21 * w21, x21 * w22 + x22 * w21, x22 * w22]]
    np.testing.assert_array_equal(cycnn.conv_transpose2d_forward(x[None, None], w[None, None])
                                  [0, 0], want)
    assert want[1][1] == 1234
    dy = np.zeros((1, 1, 3, 3))
    dy[0, 0, 1, 1] = 1.0
    dx, dw, db = cycnn.conv_transpose2d_backward(dy, x[None, None], w[None, None])
    np.testing.assert_array_equal(dx[0, 0], [[w22, w21], [w12, w11]])
    np.testing.assert_array_equal(dw[0, 0], [[x22, x21], [x12, x11]])


def test_scatter_example():
    """One input element scatters a copy of the filter, scaled by itself (the page's)."""
    x = np.array([[[[1.0, 2.0]]]])
    w = np.array([[[[1.0, 10.0]]]])
    np.testing.assert_array_equal(cycnn.conv_transpose2d_forward(x, w, stride=2),
                                  [[[[1, 10, 2, 20]]]])
    np.testing.assert_array_equal(cycnn.conv_transpose2d_forward(x, w, stride=1),
                                  [[[[1, 12, 20]]]])


# --------------------------------------------------------------------------- the layer

def test_layer_matches_pytorchs_module(rng):
    torch = torch_or_skip()
    layer = cycnn.ConvTranspose2D(4, 6, (3, 2), stride=2, padding=(1, 0), output_padding=1,
                                  groups=2, dilation=(1, 2), rng=3, dtype=np.float64)
    assert layer.params["weight"].shape == (4, 3, 3, 2) and layer.params["bias"].shape == (6,)
    tm = cycnn.to_torch(cycnn.Sequential([layer]))[0]
    assert isinstance(tm, torch.nn.ConvTranspose2d)
    x = rng.standard_normal((2, 4, 5, 4))
    y = layer.forward(x)
    assert y.shape == (2, *layer.output_shape((4, 5, 4)))
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, p in tm.named_parameters():
        np.testing.assert_allclose(layer.grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_layer_config_round_trip_and_repr():
    layer = cycnn.ConvTranspose2D(4, 6, 3, stride=2, padding=((1, 0), (0, 1)), groups=2,
                                  bias=False)
    again = cycnn.layers.layer_from_config(layer.config())
    assert repr(again) == repr(layer) == ("ConvTranspose2D(4, 6, kernel_size=3, stride=(2, 2), "
                                          "padding=((1, 0), (0, 1)), groups=2, bias=False)")
    assert "bias" not in again.params


def test_layer_gradcheck(rng):
    layer = cycnn.ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, rng=0,
                                  dtype=np.float64)
    x = rng.standard_normal((1, 2, 3, 3))

    def forward(x, w, b):
        layer.params.update(weight=w, bias=b)
        return layer.forward(x)

    def backward(dy, x, w, b):
        layer.params.update(weight=w, bias=b)
        layer.forward(x)
        dx = layer.backward(dy)
        return dx, layer.grads["weight"], layer.grads["bias"]

    cycnn.gradcheck(forward, [x, layer.params["weight"], rng.standard_normal(3)], backward,
                    eps=1e-3, rtol=1e-7)


# --------------------------------------------------------------------------- bad input

X, W = np.ones((2, 4, 5, 5)), np.ones((4, 3, 3, 3))
ROUTES = {
    "conv_transpose2d_forward": lambda x, w, b=None, **kw:
        cycnn.conv_transpose2d_forward(x, w, b, **kw),
    "conv_transpose2d_backward": lambda x, w, b=None, **kw:
        cycnn.conv_transpose2d_backward(np.ones(1), x, w, **kw),
    "reference.conv_transpose2d_forward": lambda x, w, b=None, **kw:
        reference.conv_transpose2d_forward(x, w, b, **kw),
}
ALL = pytest.mark.parametrize("func", list(ROUTES))


def raises(exc, func, pattern):
    return pytest.raises(exc, match=rf"^{re.escape(func)}: {pattern}")


def test_the_good_arguments_work():
    y = cycnn.conv_transpose2d_forward(X, W, np.ones(3), stride=2, padding=1, output_padding=1)
    assert y.shape == (2, 3, 10, 10)
    cycnn.conv_transpose2d_backward(np.ones(y.shape), X, W, stride=2, padding=1,
                                    output_padding=1)


@ALL
@pytest.mark.parametrize("op, stride, dilation", [(2, 2, 1), (1, 1, 1), ((0, 3), (1, 3), 2),
                                                  (2, 1, 2)], ids=str)
def test_output_padding_not_below_stride_or_dilation(func, op, stride, dilation):
    with raises(ValueError, func, r"output_padding=\(\d, \d\) must be smaller than the stride "
                                  r"\(\d, \d\) or the dilation \(\d, \d\) along each axis"):
        ROUTES[func](X, W, stride=stride, dilation=dilation, output_padding=op)


@ALL
def test_output_padding_below_dilation_is_allowed_as_in_pytorch(func):
    if "backward" in func:
        return
    assert ROUTES[func](X, W, stride=1, dilation=2, output_padding=1).shape == (2, 3, 10, 10)


@ALL
def test_groups_not_dividing_c_in(func):
    with raises(ValueError, func, r"groups=3 must divide the C_in=4 input channels"):
        ROUTES[func](X, W, groups=3)


@ALL
def test_channel_mismatch(func):
    with raises(ValueError, func, r"x has C_in=4 channels but w expects C_in=2 .* w is "
                                  r"\(C_in, C_out / groups, KH, KW\) as in PyTorch's "
                                  r"ConvTranspose2d"):
        ROUTES[func](X, np.ones((2, 3, 3, 3)))


@pytest.mark.parametrize("func", ["conv_transpose2d_forward",
                                  "reference.conv_transpose2d_forward"])
def test_bias_must_have_c_out_entries(func):
    with raises(ValueError, func, r"b must have shape \(C_out,\) = \(6,\) = \(groups \* "
                                  r"w.shape\[1\],\) for w.shape=\(4, 3, 3, 3\) and groups=2, "
                                  r"got b.shape=\(3,\)"):
        ROUTES[func](X, W, np.ones(3), groups=2)


@ALL
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding(func, padding):
    with raises(ValueError, func, rf"padding must be .* got '{padding}' \(string paddings are "
                                  r"not defined for a transposed convolution"):
        ROUTES[func](X, W, padding=padding)


@ALL
def test_padding_that_crops_everything(func):
    with raises(ValueError, func, r"padding=\(\(4, 4\), \(0, 0\)\) crops the whole output: "
                                  r"the full scatter is 7 rows/columns"):
        ROUTES[func](X, W, padding=(4, 0))


@ALL
@pytest.mark.parametrize("arg", ["stride", "dilation"])
def test_stride_and_dilation_below_one(func, arg):
    with raises(ValueError, func, rf"{arg} must be >= 1, got 0$"):
        ROUTES[func](X, W, **{arg: (1, 0)})


@ALL
def test_x_must_be_3d_or_4d(func):
    with raises(ValueError, func, r"x must be 3-D or 4-D \(C_in, H, W\) or \(N, C_in, H, W\)"):
        ROUTES[func](np.ones((5, 5)), W)


def test_dy_must_have_the_output_shape():
    with raises(ValueError, "conv_transpose2d_backward",
                r"dy must have the forward output's shape \(2, 3, 9, 9\) for x.shape=\(2, 4, 5, "
                r"5\), w.shape=\(4, 3, 3, 3\), stride=\(2, 2\), padding=\(\(1, 1\), \(1, 1\)\), "
                r"output_padding=\(0, 0\), dilation=\(1, 1\); got dy.shape=\(2, 3, 10, 10\)"):
        cycnn.conv_transpose2d_backward(np.ones((2, 3, 10, 10)), X, W, stride=2, padding=1)


def test_layer_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"ConvTranspose2D: output_padding=\(2, 2\) must be "
                                         r"smaller than the stride"):
        cycnn.ConvTranspose2D(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2D: groups=2 must divide in_channels=3"):
        cycnn.ConvTranspose2D(3, 2, 3, groups=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2D: padding must be an int"):
        cycnn.ConvTranspose2D(2, 2, 3, padding="same")
