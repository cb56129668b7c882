"""Dilated and grouped convolution, and the padding modes (docs/conv-dilation-groups.md).

Three routes again: the compiled kernels (direct loops and im2col), the NumPy reference
(which applies a dilated kernel as ``dilate(w)``, groups one after the other and the
padding modes through ``np.pad``), and PyTorch. Then central differences for every new
argument, the identities the page derives, and the bad arguments.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, RTOL, torch_or_skip
from cycnn import reference

ALGORITHMS = pytest.mark.parametrize("algorithm", ["direct", "im2col"])
MODES = ("zeros", "reflect", "replicate", "circular")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def draw(count, seed):
    """``count`` valid (shapes, arguments) with dilation, groups and padding modes drawn
    from their documented ranges; deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        G = int(rng.choice([1, 1, 2, 3]))
        C, F = G * int(rng.integers(1, 3)), G * int(rng.integers(1, 4))
        N = int(rng.integers(0, 3)) if rng.random() < 0.1 else int(rng.integers(1, 3))
        H, W = (int(v) for v in rng.integers(2, 11, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 4, size=2))
        rh, rw = (int(v) for v in rng.integers(1, 4, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
        mode = MODES[len(out) % 4]
        ph, pw = (int(v) for v in rng.integers(0, 3, size=2))
        limit = {"reflect": 1, "circular": 0}.get(mode)
        if limit is not None and (ph > H - limit or pw > W - limit):
            continue
        if rh * (KH - 1) + 1 > H + 2 * ph or rw * (KW - 1) + 1 > W + 2 * pw:
            continue
        unbatched = N == 1 and rng.random() < 0.2
        xshape = (C, H, W) if unbatched else (N, C, H, W)
        out.append(dict(xshape=xshape, wshape=(F, C // G, KH, KW),
                        args=dict(stride=(sh, sw), padding=(ph, pw), dilation=(rh, rw),
                                  groups=G, padding_mode=mode), seed=seed * 1000 + len(out)))
    return out


CASES = draw(120, seed=5)


def _id(case):
    a = case["args"]
    return (f"x{'x'.join(map(str, case['xshape']))}-w{'x'.join(map(str, case['wshape']))}"
            f"-s{a['stride'][0]}{a['stride'][1]}-p{a['padding'][0]}{a['padding'][1]}"
            f"-d{a['dilation'][0]}{a['dilation'][1]}-g{a['groups']}-{a['padding_mode']}")


def arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["xshape"]).astype(dtype)
    w = rng.standard_normal(case["wshape"]).astype(dtype)
    b = rng.standard_normal(case["wshape"][0]).astype(dtype)
    y = reference.conv2d_forward(x, w, b, **case["args"])
    dy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, dy


def assert_close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == dtype
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def test_cases_cover_the_arguments():
    args = [c["args"] for c in CASES]
    assert {a["padding_mode"] for a in args} == set(MODES)
    assert {a["groups"] for a in args} == {1, 2, 3}
    assert {a["dilation"][0] for a in args} == {1, 2, 3}
    assert any(a["dilation"][0] != a["dilation"][1] for a in args)
    assert any(len(c["xshape"]) == 3 for c in CASES)  # unbatched
    assert any(c["xshape"][0] == 0 for c in CASES if len(c["xshape"]) == 4)  # empty batch


@pytest.mark.parametrize("case", CASES, ids=_id)
@ALGORITHMS
@DTYPES
def test_kernels_match_reference(case, algorithm, dtype):
    x, w, b, dy = arrays(case, dtype)
    y = cycnn.conv2d_forward(x, w, b, **case["args"], algorithm=algorithm)
    assert_close(y, reference.conv2d_forward(x, w, b, **case["args"]), dtype)
    got = cycnn.conv2d_backward(dy, x, w, **case["args"], algorithm=algorithm)
    want = reference.conv2d_backward(dy, x, w, **case["args"])
    for g, r in zip(got, want):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("case", CASES[::3], ids=_id)
@ALGORITHMS
@DTYPES
def test_matches_pytorch(case, algorithm, dtype):
    torch = torch_or_skip()
    x, w, b, dy = arrays(case, dtype)
    a = case["args"]
    conv = torch.nn.Conv2d(x.shape[-3], w.shape[0], w.shape[2:], a["stride"], a["padding"],
                           a["dilation"], a["groups"], padding_mode=a["padding_mode"])
    conv = conv.to(torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(b))
    xt = torch.tensor(x, requires_grad=True)
    yt = conv(xt)
    yt.backward(torch.from_numpy(dy))
    y = cycnn.conv2d_forward(x, w, b, **a, algorithm=algorithm)
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, **a, algorithm=algorithm)
    for got, want in ((y, yt), (dx, xt.grad), (dw, conv.weight.grad), (db, conv.bias.grad)):
        assert_close(got, want.detach().numpy(), dtype)


GRADCHECKS = {
    "dilation": dict(stride=1, padding=1, dilation=(2, 3)),
    "dilation-stride": dict(stride=(2, 1), padding=(2, 0), dilation=2),
    "groups": dict(stride=1, padding=1, groups=2),
    "depthwise": dict(stride=2, padding=1, groups=4),
    "reflect": dict(stride=1, padding=(2, 1), padding_mode="reflect"),
    "replicate": dict(stride=2, padding=2, padding_mode="replicate"),
    "circular": dict(stride=1, padding=(1, 3), padding_mode="circular", dilation=(1, 2)),
    "same-dilated": dict(padding="same", dilation=2, groups=2),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
@ALGORITHMS
def test_central_differences(name, algorithm):
    """dx, dw and db against central differences of sum(dy * y), float64."""
    args = GRADCHECKS[name]
    rng = np.random.default_rng(sorted(GRADCHECKS).index(name))
    G = args.get("groups", 1)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((4, 4 // G, 3, 2))
    b = rng.standard_normal(4)

    def forward(x, w, b):
        return cycnn.conv2d_forward(x, w, b, **args, algorithm=algorithm)

    def backward(dy, x, w, b):
        return cycnn.conv2d_backward(dy, x, w, **args, algorithm=algorithm)

    # the convolution is linear in each input: a large step has no truncation error
    result = cycnn.gradcheck(forward, [x, w, b], backward, eps=1e-3, rtol=1e-7)
    assert result.ok and all(a.any() for a in result.analytic)


def test_the_pages_worked_example():
    """docs/conv-dilation-groups.md: a 2x2 filter with dilation 2 on the numbers 1 to 16,
    every number written out from the equations on the page."""
    x = np.arange(1.0, 17.0).reshape(4, 4)
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    dy = np.array([[0.1, -0.2], [0.3, 0.4]])
    y = cycnn.conv2d_forward(x[None, None], w[None, None], dilation=2)[0, 0]
    # y11 = w11 x11 + w12 x13 + w21 x31 + w22 x33 and so on
    np.testing.assert_array_equal(y, [[1 * 1 + 2 * 3 + 3 * 9 + 4 * 11,
                                       1 * 2 + 2 * 4 + 3 * 10 + 4 * 12],
                                      [1 * 5 + 2 * 7 + 3 * 13 + 4 * 15,
                                       1 * 6 + 2 * 8 + 3 * 14 + 4 * 16]])
    dx, dw, db = cycnn.conv2d_backward(dy[None, None], x[None, None], w[None, None], dilation=2)
    # dw[p, q] = sum_ij dy[i, j] x[i + 2p, j + 2q]; every x is read once: dx = dy * w, tiled
    want_dw = [[sum(dy[i, j] * x[i + 2 * p, j + 2 * q] for i in range(2) for j in range(2))
                for q in range(2)] for p in range(2)]
    np.testing.assert_allclose(dw[0, 0], want_dw, rtol=1e-15)
    np.testing.assert_allclose(dw[0, 0], [[3.6, 4.8], [8.4, 9.6]], rtol=1e-14)
    np.testing.assert_allclose(dx[0, 0], np.block([[dy * 1, dy * 2], [dy * 3, dy * 4]]),
                               rtol=1e-15)


def test_unbatched_is_the_batch_of_one(rng):
    x, w = rng.standard_normal((4, 8, 7)), rng.standard_normal((6, 2, 3, 3))
    args = dict(stride=(1, 2), padding=1, dilation=2, groups=2, padding_mode="reflect")
    y = cycnn.conv2d_forward(x, w, **args)
    np.testing.assert_array_equal(y, cycnn.conv2d_forward(x[None], w, **args)[0])
    dy = rng.standard_normal(y.shape)
    for got, want in zip(cycnn.conv2d_backward(dy, x, w, **args),
                         cycnn.conv2d_backward(dy[None], x[None], w, **args)):
        # same loops, same order, one thread: the same bits
        np.testing.assert_array_equal(got, want[0] if got.ndim == 3 else want)


@ALGORITHMS
def test_a_dilated_kernel_is_the_kernel_spread_out(rng, algorithm):
    """The page's claim: dilation (rh, rw) is an ordinary convolution with dilate(w)."""
    x, w = rng.standard_normal((2, 3, 11, 10)), rng.standard_normal((4, 3, 3, 2))
    spread = cycnn.dilate(w, (2, 3))
    assert spread.shape == (4, 3, 5, 4)
    np.testing.assert_allclose(cycnn.conv2d_forward(x, w, dilation=(2, 3), algorithm=algorithm),
                               cycnn.conv2d_forward(x, spread, algorithm=algorithm),
                               rtol=1e-12, atol=1e-12)


@ALGORITHMS
def test_groups_are_separate_convolutions(rng, algorithm):
    """groups=G is G convolutions side by side: channel group g with filter group g."""
    x, w = rng.standard_normal((2, 6, 7, 7)), rng.standard_normal((9, 2, 3, 3))
    y = cycnn.conv2d_forward(x, w, groups=3, algorithm=algorithm)
    for g in range(3):
        alone = cycnn.conv2d_forward(x[:, 2 * g:2 * g + 2], w[3 * g:3 * g + 3],
                                     algorithm=algorithm)
        np.testing.assert_allclose(y[:, 3 * g:3 * g + 3], alone, rtol=1e-12, atol=1e-12)


def test_auto_takes_the_direct_loops_for_depthwise_layers():
    """im2col pays when several filters reuse each copied column; a depthwise layer has
    one filter per group."""
    from cycnn.conv import _choose

    assert _choose("f", "auto", (8, 1, 3, 3), (2, 8, 5, 5), groups=8) == "direct"
    assert _choose("f", "auto", (8, 2, 3, 3), (2, 8, 5, 5), groups=2) == "im2col"
    assert _choose("f", "auto", (8, 2, 3, 3), (2, 8, 5, 5)) == "im2col"


# --------------------------------------------------------------------------- padding modes

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [((1, 2), (0, 3)), ((2, 0), (3, 3)), ((0, 0), (1, 0))],
                         ids=str)
def test_pad_input_is_numpys_pad(mode, pads, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                  "circular": "wrap"}[mode]
    want = np.pad(x, ((0, 0), (0, 0), *pads), mode=numpy_mode)
    np.testing.assert_array_equal(cycnn.pad_input(x, pads, mode), want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pads", [((1, 2), (0, 3)), ((2, 0), (3, 3)), ((3, 3), (4, 4))],
                         ids=str)
def test_fold_is_the_adjoint_of_pad(mode, pads, rng):
    """<pad(x), g> == <x, fold(g)> for every x and g: fold is pad's backward pass."""
    if mode == "reflect" and max(sum(pads, ())) >= 4:
        pads = ((1, 2), (0, 3))
    x = rng.standard_normal((2, 3, 4, 5))
    g = rng.standard_normal(cycnn.pad_input(x, pads, mode).shape)
    folded = cycnn.fold_padding(g, pads, mode)
    assert folded.shape == x.shape
    np.testing.assert_allclose(np.sum(cycnn.pad_input(x, pads, mode) * g), np.sum(x * folded),
                               rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_fold_adds_every_copy_back_onto_its_original(mode, rng):
    """The fold against an independent count: scatter-add through np.pad's index map."""
    pads = ((2, 1), (3, 2))
    g = rng.standard_normal((2, 2, 4 + 3, 4 + 5))
    index = np.arange(16).reshape(4, 4)
    held = np.pad(index, pads, constant_values=-1) if mode == "zeros" else \
        np.pad(index, pads, mode={"reflect": "reflect", "replicate": "edge",
                                  "circular": "wrap"}[mode])
    want = np.zeros((2, 2, 16))
    for (t, s), k in np.ndenumerate(held):
        if k >= 0:
            want[:, :, k] += g[:, :, t, s]
    np.testing.assert_allclose(cycnn.fold_padding(g, pads, mode), want.reshape(2, 2, 4, 4),
                               rtol=1e-13, atol=1e-13)


def test_the_docs_fold_example():
    got = cycnn.fold_padding(np.array([[10, 20, 1, 2, 3, 30, 40]]), ((0, 0), (2, 2)),
                             "reflect")
    np.testing.assert_array_equal(got, [[1 + 40, 20 + 2 + 30, 10 + 3]])


# --------------------------------------------------------------------------- the layer

def test_conv2d_layer_takes_pytorchs_arguments(rng):
    torch = torch_or_skip()
    layer = cycnn.Conv2D(4, 6, 3, stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=2,
                         bias=False, padding_mode="circular", rng=0, dtype=np.float64)
    assert set(layer.params) == {"weight"} and layer.params["weight"].shape == (6, 2, 3, 3)
    model = cycnn.Sequential([layer])
    tm = cycnn.to_torch(model)
    x = rng.standard_normal((2, 4, 9, 8))
    y = layer.forward(x)
    assert y.shape == (2, *layer.output_shape((4, 9, 8)))
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], tm[0].weight.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    again = cycnn.layers.layer_from_config(layer.config(), np.float64)
    assert repr(again) == repr(layer) == ("Conv2D(4, 6, kernel_size=3, stride=(2, 1), "
                                          "padding=(2, 1), dilation=(2, 1), groups=2, "
                                          "bias=False, padding_mode='circular')")


def test_default_conv2d_config_is_unchanged():
    """A layer using none of the new arguments writes the config (and checkpoint header)
    it wrote before they existed."""
    assert cycnn.Conv2D(1, 6, 5).config() == {
        "type": "Conv2D", "in_channels": 1, "out_channels": 6, "kernel_size": [5, 5],
        "stride": [1, 1], "padding": [0, 0]}


# --------------------------------------------------------------------------- bad input

X, W = np.ones((2, 4, 8, 8)), np.ones((6, 2, 3, 3))


def _backward(x, w, **kw):
    """conv2d_backward with the dy of the forward output, or any dy when the arguments are
    bad (they are checked before dy is)."""
    try:
        dy = np.ones(reference.conv2d_forward(x, w, **kw).shape)
    except (TypeError, ValueError):
        dy = np.ones(1)
    return cycnn.conv2d_backward(dy, x, w, **kw)


ROUTES = {
    "conv2d_forward": lambda x, w, **kw: cycnn.conv2d_forward(x, w, **kw),
    "conv2d_backward": _backward,
    "reference.conv2d_forward": lambda x, w, **kw: reference.conv2d_forward(x, w, **kw),
}
ALL = pytest.mark.parametrize("func", list(ROUTES))


def raises(exc, func, pattern):
    return pytest.raises(exc, match=rf"^{re.escape(func)}: {pattern}")


def test_the_good_arguments_work():
    for call in ROUTES.values():
        call(X, W, groups=2, dilation=2, padding=1, padding_mode="reflect")


@pytest.mark.parametrize("func", ["conv2d_forward", "reference.conv2d_forward"])
def test_groups_not_dividing_c(func):
    with raises(ValueError, func, r"groups=3 must divide both the input channels and the "
                                  r"filters, but it does not divide C=4 input channels "
                                  r"\(x.shape=\(2, 4, 8, 8\)\)"):
        ROUTES[func](X, np.ones((6, 1, 3, 3)), groups=3)


@ALL
def test_groups_not_dividing_f(func):
    with raises(ValueError, func, r"groups=2 must divide .* does not divide F=5 filters "
                                  r"\(w.shape=\(5, 2, 3, 3\)\)"):
        ROUTES[func](X, np.ones((5, 2, 3, 3)), groups=2)


@ALL
def test_groups_times_w_channels_must_be_c(func):
    with raises(ValueError, func, r"x has C=4 channels but w expects C = groups \* w.shape\[1\] "
                                  r"= 2 \* 1 = 2"):
        ROUTES[func](X, np.ones((6, 1, 3, 3)), groups=2)


@ALL
@pytest.mark.parametrize("groups", [0, -1], ids=str)
def test_groups_below_one(func, groups):
    with raises(ValueError, func, rf"groups must be >= 1, got {groups}$"):
        ROUTES[func](X, W, groups=groups)


@ALL
@pytest.mark.parametrize("dilation", [0, -2, (1, 0), (0, 3)], ids=str)
def test_dilation_below_one(func, dilation):
    bad = dilation if isinstance(dilation, int) else min(dilation)
    with raises(ValueError, func, rf"dilation must be >= 1, got {bad}$"):
        ROUTES[func](X, W, dilation=dilation, groups=2)


@ALL
@pytest.mark.parametrize("dilation", [1.5, "2", True, (1, 2, 3)], ids=repr)
def test_dilation_not_an_int_or_pair(func, dilation):
    exc = ValueError if isinstance(dilation, tuple) else TypeError
    with raises(exc, func, r"dilation must be an (integer|int or a pair of ints)"):
        ROUTES[func](X, W, dilation=dilation, groups=2)


@ALL
def test_dilated_kernel_larger_than_padded_input(func):
    with raises(ValueError, func, r"kernel 3x3 \(w.shape=\(6, 2, 3, 3\)\), dilated by \(4, 1\) "
                                  r"to span 9x3, is larger than the padded input 8x8"):
        ROUTES[func](X, W, dilation=(4, 1), groups=2)


@ALL
@pytest.mark.parametrize("mode", ["reflection", "zero", "", None, "REFLECT"], ids=repr)
def test_unknown_padding_mode(func, mode):
    with raises(ValueError, func, r"padding_mode must be one of \('zeros', 'reflect', "
                                  rf"'replicate', 'circular'\), got {re.escape(repr(mode))}"):
        ROUTES[func](X, W, groups=2, padding=1, padding_mode=mode)


@ALL
def test_reflect_padding_must_be_smaller_than_the_input(func):
    x = np.ones((1, 4, 3, 8))
    with raises(ValueError, func, r"padding_mode='reflect' needs padding smaller than the input "
                                  r"size along each axis; got padding \(3, 3\) for H=3"):
        ROUTES[func](x, W, groups=2, padding=3, padding_mode="reflect")


@ALL
def test_circular_padding_must_not_wrap_twice(func):
    x = np.ones((1, 4, 8, 2))
    with raises(ValueError, func, r"padding_mode='circular' needs padding at most the input "
                                  r"size along each axis; got padding \(3, 3\) for W=2"):
        ROUTES[func](x, W, groups=2, padding=3, padding_mode="circular")


def test_pad_helpers_refuse_bad_modes_and_shapes():
    with raises(ValueError, "pad_input", r"padding_mode must be one of"):
        cycnn.pad_input(np.ones((3, 3)), 1, "mirror")
    with raises(ValueError, "fold_padding", r"dxp must be at least 2-D and larger than the "
                                            r"padding \(\(2, 2\), \(2, 2\)\), got shape \(4, 9\)"):
        cycnn.fold_padding(np.ones((4, 9)), 2, "reflect")
    with raises(ValueError, "pad_input", r"x must be at least 2-D"):
        cycnn.pad_input(np.ones(3), 1)
