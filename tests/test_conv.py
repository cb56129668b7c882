"""Tests of the conv2d layer (docs/conv-forward.md, conv-weight-gradient.md,
conv-input-gradient.md, stride-padding.md).

Three independent routes compute the same convolution and its gradients:

* the compiled kernels behind ``cycnn.conv2d_forward`` / ``conv2d_backward``, by two
  algorithms (``'direct'`` loops and ``'im2col'`` + BLAS);
* ``cycnn.reference``, the vectorised NumPy route the docs teach (dilation, padding,
  rotation);
* PyTorch (``torch.nn.functional.conv2d`` and autograd), when installed.

They are compared on a few hundred random configurations drawn from a seeded generator,
checked against central differences, and pinned to the seeds' worked numbers. Bad
arguments are in tests/test_conv_bad_input.py. No timing here: see benchmarks/bench_conv.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, RTOL, needs_openmp, torch_or_skip
from cycnn import conv as conv_mod
from cycnn import reference

ALGORITHMS = pytest.mark.parametrize("algorithm", ["direct", "im2col"])


@pytest.fixture(autouse=True)
def one_thread_by_default():
    """Run the compiled loops on one thread unless a test asks for more.

    These problems are tiny: on a machine busy with other work, a two-thread OpenMP region
    waits (spinning) for a thread the OS has not scheduled, and the module ran 10-30x
    slower. The thread tests below pass ``threads=`` explicitly.
    """
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(1)
    yield
    cycnn.set_num_threads(old)


# --------------------------------------------------------------------------- configurations

def _pad_sides(padding, KH, KW):
    """((pt, pb), (pl, pr)) for a padding argument, computed here, not by cycnn."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":  # total K - 1, the odd one extra at the bottom/right
        return (((KH - 1) // 2, KH // 2), ((KW - 1) // 2, KW // 2))
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], tuple):
        return padding
    return (padding[0], padding[0]), (padding[1], padding[1])


def _fmt_pad(padding):
    return repr(padding).replace(" ", "")


class Config:
    """One convolution problem: shapes, stride, padding and a seed for its arrays."""

    def __init__(self, N, C, F, H, W, KH, KW, stride, padding, seed):
        self.N, self.C, self.F, self.H, self.W, self.KH, self.KW = N, C, F, H, W, KH, KW
        self.stride, self.padding, self.seed = stride, padding, seed
        sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
        (pt, pb), (pl, pr) = _pad_sides(padding, KH, KW)
        self.sh, self.sw, self.pads = sh, sw, ((pt, pb), (pl, pr))
        self.OH = (H + pt + pb - KH) // sh + 1
        self.OW = (W + pl + pr - KW) // sw + 1

    @property
    def id(self):
        return (f"N{self.N}C{self.C}F{self.F}-{self.H}x{self.W}-k{self.KH}x{self.KW}"
                f"-s{self.sh}x{self.sw}-p{_fmt_pad(self.padding)}")

    def arrays(self, dtype, bias=True):
        """x, w, b, dy drawn from this config's seed (dy random: never all ones)."""
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((self.N, self.C, self.H, self.W)).astype(dtype)
        w = rng.standard_normal((self.F, self.C, self.KH, self.KW)).astype(dtype)
        b = rng.standard_normal(self.F).astype(dtype) if bias else None
        dy = rng.standard_normal((self.N, self.F, self.OH, self.OW)).astype(dtype)
        return x, w, b, dy


PAD_MODES = ("int", "pair", "sides", "valid", "same")


def draw_configs(count, seed):
    """``count`` valid configs, cycling through the padding modes; deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        mode = PAD_MODES[len(out) % len(PAD_MODES)]
        N = int(rng.integers(1, 4))
        C, F = (int(v) for v in rng.integers(1, 5, size=2))
        H, W = (int(v) for v in rng.integers(1, 13, size=2))
        KH, KW = (int(v) for v in rng.integers(1, 6, size=2))
        if mode == "same":
            stride = 1
        else:
            sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
            stride = sh if sh == sw and rng.random() < 0.5 else (sh, sw)
        if mode == "int":
            padding = int(rng.integers(0, 3))
        elif mode == "pair":
            padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
        elif mode == "sides":
            t, b_, l_, r = (int(v) for v in rng.integers(0, 4, size=4))
            padding = ((t, b_), (l_, r))
        else:
            padding = mode
        (pt, pb), (pl, pr) = _pad_sides(padding, KH, KW)
        if KH > H + pt + pb or KW > W + pl + pr:
            continue  # kernel exceeds the padded input: redraw
        out.append(Config(N, C, F, H, W, KH, KW, stride, padding, seed=1000 * seed + len(out)))
    return out


CONFIGS = draw_configs(200, seed=2)
TORCH_CONFIGS = draw_configs(100, seed=3)


def test_configs_cover_the_space():
    """The random configurations really exercise what the issue lists."""
    modes = {c.padding if isinstance(c.padding, str) else type(c.padding).__name__
             for c in CONFIGS}
    assert {"valid", "same", "int", "tuple"} <= modes
    assert any(isinstance(c.padding, tuple) and isinstance(c.padding[0], tuple) for c in CONFIGS)
    assert any(c.H != c.W for c in CONFIGS) and any(c.KH != c.KW for c in CONFIGS)
    assert {c.sh for c in CONFIGS} == {1, 2, 3} and any(c.sh != c.sw for c in CONFIGS)
    assert any(c.KH % 2 == 0 and c.padding == "same" for c in CONFIGS)
    assert {c.N for c in CONFIGS} == {1, 2, 3}
    assert {c.C for c in CONFIGS} == {c.F for c in CONFIGS} == {1, 2, 3, 4}
    assert {c.KH for c in CONFIGS} == {1, 2, 3, 4, 5}
    assert min(c.OH for c in CONFIGS) == 1  # kernel exactly as large as the padded input


def assert_close(actual, expected, dtype):
    """Shape and dtype first, then values to RTOL[dtype] relative to the largest entry."""
    assert actual.shape == expected.shape
    assert actual.dtype == dtype
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


# --------------------------------------------------------------------------- seeds' numbers

# seed 001: a 5x5 input o and a 4x4 delta d
SEED001_O = np.array([[0.51, 0.9, 0.88, 0.84, 0.05],
                      [0.4, 0.62, 0.22, 0.59, 0.1],
                      [0.11, 0.2, 0.74, 0.33, 0.14],
                      [0.47, 0.01, 0.85, 0.7, 0.09],
                      [0.76, 0.19, 0.72, 0.17, 0.57]])
SEED001_D = np.array([[0, 0, 0.0686, 0],
                      [0, 0.0364, 0, 0],
                      [0, 0.0467, 0, 0],
                      [0, 0, 0, -0.0681]])
SEED001_DW = np.array([[0.044606, 0.094061],
                       [0.011262, 0.068288]])


@pytest.mark.parametrize("route", ["direct", "im2col", "reference"])
def test_seed001_weight_gradient(route):
    """dw of a 2x2 kernel on the 5x5 input o with delta d: the seed's printed numbers."""
    x, dy, w = SEED001_O[None, None], SEED001_D[None, None], np.zeros((1, 1, 2, 2))
    if route == "reference":
        dx, dw, db = reference.conv2d_backward(dy, x, w)
    else:
        dx, dw, db = cycnn.conv2d_backward(dy, x, w, algorithm=route)
    assert dw.shape == (1, 1, 2, 2)
    np.testing.assert_allclose(dw[0, 0], SEED001_DW, rtol=0, atol=1e-6)
    np.testing.assert_allclose(db, [SEED001_D.sum()], rtol=0, atol=1e-15)


def test_seed004_output_size():
    """A 32x32x3 image and six 5x5x3 filters give a 28x28x6 output."""
    assert cycnn.conv_output_size(32, 5) == 28
    x = np.random.default_rng(4).random((1, 3, 32, 32))
    w = np.random.default_rng(5).random((6, 3, 5, 5))
    assert cycnn.conv2d_forward(x, w).shape == (1, 6, 28, 28)
    assert reference.conv2d_forward(x, w).shape == (1, 6, 28, 28)


def test_seed002_dilate_2d():
    x = np.array([[1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [5, 6, 7, 8, 9]])
    expected = np.array([
        [1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 5],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [4, 0, 0, 5, 0, 0, 6, 0, 0, 7, 0, 0, 8],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [5, 0, 0, 6, 0, 0, 7, 0, 0, 8, 0, 0, 9],
    ])
    out = cycnn.dilate(x, (2, 3))
    assert out.shape == (5, 13)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, expected)


def test_seed002_dilate_batch_channels():
    """The seed's (2, 2, 3, 3) example (np.random.seed(10) integers, copied as printed)."""
    x = np.array([[[[9, 4, 0], [1, 9, 0], [1, 8, 9]],
                   [[0, 8, 6], [4, 3, 0], [4, 6, 8]]],
                  [[[1, 8, 4], [1, 3, 6], [5, 3, 9]],
                   [[6, 9, 1], [9, 4, 2], [6, 7, 8]]]])
    out = cycnn.dilate(x, (2, 3))
    assert out.shape == (2, 2, 5, 7)
    expected_00 = np.array([[9, 0, 0, 4, 0, 0, 0],
                            [0, 0, 0, 0, 0, 0, 0],
                            [1, 0, 0, 9, 0, 0, 0],
                            [0, 0, 0, 0, 0, 0, 0],
                            [1, 0, 0, 8, 0, 0, 9]])
    expected_11 = np.array([[6, 0, 0, 9, 0, 0, 1],
                            [0, 0, 0, 0, 0, 0, 0],
                            [9, 0, 0, 4, 0, 0, 2],
                            [0, 0, 0, 0, 0, 0, 0],
                            [6, 0, 0, 7, 0, 0, 8]])
    np.testing.assert_array_equal(out[0, 0], expected_00)
    np.testing.assert_array_equal(out[1, 1], expected_11)
    # every channel of every sample: values on the (2, 3) grid, zeros elsewhere
    np.testing.assert_array_equal(out[..., ::2, ::3], x)
    mask = np.ones(out.shape, bool)
    mask[..., ::2, ::3] = False
    assert not out[mask].any()


def test_seed002_rotate180():
    k = np.arange(1, 10).reshape(3, 3)
    np.testing.assert_array_equal(cycnn.rotate180(k), [[9, 8, 7], [6, 5, 4], [3, 2, 1]])


# --------------------------------------------------------------------------- kernels vs reference

@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
def test_kernels_match_reference(cfg, algorithm, dtype):
    x, w, b, dy = cfg.arrays(dtype)
    y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
    assert y.shape == (cfg.N, cfg.F, cfg.OH, cfg.OW)
    assert_close(y, reference.conv2d_forward(x, w, b, cfg.stride, cfg.padding), dtype)

    grads = cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    expected = reference.conv2d_backward(dy, x, w, cfg.stride, cfg.padding)
    for name, got, want, shape in zip(("dx", "dw", "db"), grads, expected,
                                      (x.shape, w.shape, b.shape)):
        assert got.shape == shape, name
        assert got.flags.c_contiguous, name
        assert_close(got, want, dtype)


@ALGORITHMS
def test_bias_none_is_zero_bias(algorithm):
    x, w, b, _ = CONFIGS[7].arrays(np.float64)
    cfg = CONFIGS[7]
    y0 = cycnn.conv2d_forward(x, w, None, cfg.stride, cfg.padding, algorithm=algorithm)
    y1 = cycnn.conv2d_forward(x, w, np.zeros_like(b), cfg.stride, cfg.padding,
                              algorithm=algorithm)
    np.testing.assert_array_equal(y0, y1)


@DTYPES
def test_im2col_in_chunks_of_the_batch(dtype, monkeypatch):
    """A column buffer too small for the batch: the im2col route works sample by sample."""
    cfg = Config(5, 3, 4, 9, 8, 3, 2, (2, 1), ((1, 0), (2, 1)), seed=55)
    x, w, b, dy = cfg.arrays(dtype)
    y_ref = reference.conv2d_forward(x, w, b, cfg.stride, cfg.padding)
    g_ref = reference.conv2d_backward(dy, x, w, cfg.stride, cfg.padding)
    for limit in (1, 2 * cfg.C * cfg.KH * cfg.KW * cfg.OH * cfg.OW):  # 1 and 2 samples
        monkeypatch.setattr(conv_mod, "IM2COL_MAX_ELEMENTS", limit)
        assert len(conv_mod._chunks(cfg.N, cfg.C * cfg.KH * cfg.KW, cfg.OH * cfg.OW)[0]) > 1
        y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm="im2col")
        assert_close(y, y_ref, dtype)
        for got, want in zip(cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding,
                                                   algorithm="im2col"), g_ref):
            assert_close(got, want, dtype)


# --------------------------------------------------------------------------- gradient check

def numerical_gradient(f, a, h):
    """Central differences of the scalar ``f()`` with respect to every element of ``a``
    (changed in place and restored)."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        fp = f()
        a[idx] = old - h
        fm = f()
        a[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def relative_error(numeric, analytic):
    """max |numeric - analytic| over the larger of the two max-norms."""
    scale = max(np.max(np.abs(numeric)), np.max(np.abs(analytic)), 1e-300)
    return float(np.max(np.abs(numeric - analytic)) / scale)


GRADCHECK_CONFIGS = [
    Config(2, 2, 3, 6, 7, 3, 2, 1, 0, seed=11),
    Config(2, 3, 2, 7, 6, 3, 3, 2, ((1, 0), (0, 2)), seed=12),  # stride 2, asymmetric pad
    Config(1, 2, 2, 8, 9, 2, 3, (2, 3), (1, 2), seed=13),       # (sh, sw), (ph, pw)
    Config(2, 1, 3, 5, 6, 4, 2, 1, "same", seed=14),            # 'same', even kernels
    Config(1, 3, 1, 9, 7, 5, 3, 3, ((2, 1), (1, 0)), seed=15),  # stride 3, F=1
]


@pytest.mark.parametrize("cfg", GRADCHECK_CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
def test_central_differences(cfg, algorithm):
    """dx, dw and db against central differences of L = sum(y * dy), in float64.

    The convolution is linear in each of x, w, b, so central differences have no
    truncation error and a large step keeps the rounding error small.
    """
    x, w, b, dy = cfg.arrays(np.float64)

    def loss():
        y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
        return float(np.sum(y * dy))

    dx, dw, db = cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    for name, arr, analytic in (("dx", x, dx), ("dw", w, dw), ("db", b, db)):
        numeric = numerical_gradient(loss, arr, h=1e-3)
        assert numeric.shape == analytic.shape
        assert relative_error(numeric, analytic) < 1e-7, name


def test_gradcheck_helper_catches_a_transposed_gradient():
    """The check above would notice dw transposed in (p, q) (why dy is not all ones)."""
    cfg = GRADCHECK_CONFIGS[0]
    x, w, b, dy = cfg.arrays(np.float64)
    w = w[:, :, :2, :2].copy()  # square kernel, so a transposed dw has the right shape
    dy = np.random.default_rng(3).standard_normal((cfg.N, cfg.F, 5, 6))

    def loss():
        return float(np.sum(cycnn.conv2d_forward(x, w, b) * dy))

    _, dw, _ = cycnn.conv2d_backward(dy, x, w)
    numeric = numerical_gradient(loss, w, h=1e-3)
    assert relative_error(numeric, dw) < 1e-7
    assert relative_error(numeric, dw.transpose(0, 1, 3, 2)) > 1e-3


# --------------------------------------------------------------------------- PyTorch oracle

def torch_conv(torch, x, w, b, dy, stride, padding):
    """y, dx, dw, db from PyTorch autograd on the same arrays."""
    fn = torch.nn.functional
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = torch.from_numpy(w.copy()).requires_grad_(True)
    bt = None if b is None else torch.from_numpy(b.copy()).requires_grad_(True)
    xin, tpad = xt, padding
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (pt, pb), (pl, pr) = padding
        xin, tpad = fn.pad(xt, (pl, pr, pt, pb)), 0  # F.pad takes the last axis first
    y = fn.conv2d(xin, wt, bt, stride=stride, padding=tpad)
    y.backward(torch.from_numpy(dy))
    db = None if bt is None else bt.grad.numpy()
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), db


def assert_torch_close(got, want, dtype, name):
    assert got.shape == want.shape, name
    assert got.dtype == want.dtype == dtype, name
    diff = float(np.max(np.abs(got - want)))
    if dtype == np.float64:
        assert diff < 1e-10, f"{name}: max abs diff {diff:.3g}"
    else:
        rel = diff / max(float(np.max(np.abs(want))), 1e-30)
        assert rel < 1e-4, f"{name}: relative diff {rel:.3g}"


@pytest.fixture
def torch1():
    """PyTorch on one thread: these problems are tiny, and PyTorch's OpenMP pool spinning
    beside cycnn's on a busy machine only adds waiting."""
    torch = torch_or_skip()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(old)


@pytest.mark.parametrize("cfg", TORCH_CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_matches_pytorch(cfg, algorithm, dtype, torch1):
    torch = torch1
    x, w, b, dy = cfg.arrays(dtype)
    want = torch_conv(torch, x, w, b, dy, cfg.stride, cfg.padding)
    y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
    got = (y,) + cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    for name, g, t in zip(("y", "dx", "dw", "db"), got, want):
        assert_torch_close(g, t, dtype, name)


@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (1, 4), (4, 4)],
                         ids=lambda k: f"k{k[0]}x{k[1]}")
@ALGORITHMS
@DTYPES
def test_same_padding_even_kernel(kernel, algorithm, dtype):
    """'same' with an even kernel: allowed; extra row/column at the bottom/right, as in
    PyTorch; the output keeps H x W."""
    KH, KW = kernel
    cfg = Config(2, 3, 4, 7, 6, KH, KW, 1, "same", seed=40 + KH * 10 + KW)
    assert cycnn.resolve_padding("same", kernel_size=kernel) == cfg.pads
    x, w, b, dy = cfg.arrays(dtype)
    y = cycnn.conv2d_forward(x, w, b, padding="same", algorithm=algorithm)
    assert y.shape == (2, 4, 7, 6)
    grads = cycnn.conv2d_backward(dy, x, w, padding="same", algorithm=algorithm)
    assert_close(y, reference.conv2d_forward(x, w, b, padding="same"), dtype)
    for got, want in zip(grads, reference.conv2d_backward(dy, x, w, padding="same")):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (1, 4), (4, 4)],
                         ids=lambda k: f"k{k[0]}x{k[1]}")
@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_same_padding_even_kernel_pytorch(kernel, algorithm, dtype, torch1):
    """PyTorch's padding='same' puts the odd extra row/column at the bottom/right too."""
    KH, KW = kernel
    cfg = Config(2, 3, 4, 7, 6, KH, KW, 1, "same", seed=40 + KH * 10 + KW)
    x, w, b, dy = cfg.arrays(dtype)
    y = cycnn.conv2d_forward(x, w, b, padding="same", algorithm=algorithm)
    grads = cycnn.conv2d_backward(dy, x, w, padding="same", algorithm=algorithm)
    want = torch_conv(torch1, x, w, b, dy, 1, "same")
    for name, g, t in zip(("y", "dx", "dw", "db"), (y,) + grads, want):
        assert_torch_close(g, t, dtype, name)


# --------------------------------------------------------------------------- dtype rule

ALL_DTYPE_CASES = [
    # (x, w, b, dy) dtypes -> result dtype
    ((np.float32,) * 4, np.float32),
    ((np.float64,) * 4, np.float64),
    ((np.float32, np.float64, np.float32, np.float32), np.float64),
    ((np.float64, np.float32, np.float32, np.float32), np.float64),
    ((np.float32, np.float32, np.float64, np.float64), np.float64),
    ((np.int64, np.int64, np.int64, np.int64), np.float64),
    ((np.int32, np.int8, np.uint8, np.int16), np.float64),
    ((np.int64, np.float32, np.float32, np.float32), np.float64),
    ((np.float16, np.float16, np.float16, np.float16), np.float32),
]


@pytest.mark.parametrize("dtypes, result", ALL_DTYPE_CASES,
                         ids=lambda v: "-".join(np.dtype(d).name for d in v)
                         if isinstance(v, tuple) else np.dtype(v).name)
@ALGORITHMS
def test_dtype_rule(dtypes, result, algorithm):
    """float32 in -> float32 out; float64 -> float64; mixed -> float64; integers -> float64."""
    rng = np.random.default_rng(9)
    xd, wd, bd, dyd = dtypes
    x = (rng.random((2, 2, 6, 5)) * 9).astype(xd)
    w = (rng.random((3, 2, 3, 2)) * 9).astype(wd)
    b = (rng.random(3) * 9).astype(bd)
    dy = (rng.random((2, 3, 4, 4)) * 9).astype(dyd)
    y = cycnn.conv2d_forward(x, w, b, algorithm=algorithm)
    assert y.dtype == np.dtype(result)
    # backward has no b: its dtype follows dy, x and w
    back = np.dtype(np.float32) if {np.dtype(d) for d in (xd, wd, dyd)} <= {
        np.dtype(np.float16), np.dtype(np.float32)} else np.dtype(np.float64)
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, algorithm=algorithm)
    assert dx.dtype == dw.dtype == db.dtype == back
    # the values are those of the computation in float64, to the result's precision
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
    assert_close(y, reference.conv2d_forward(x64, w64, b64).astype(result), result)
    for got, want in zip((dx, dw, db), reference.conv2d_backward(dy64, x64, w64)):
        assert_close(got, want.astype(back), back.type)


def test_reference_follows_the_dtype_rule():
    x, w = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 2, 2), np.float32)
    assert reference.conv2d_forward(x, w).dtype == np.float32
    assert reference.conv2d_forward(x.astype(int), w.astype(int)).dtype == np.float64
    assert reference.conv2d_forward(x, w.astype(np.float64)).dtype == np.float64


# --------------------------------------------------------------------------- memory layout

def _layouts(a):
    """The same values in other memory layouts: Fortran order, sliced, transposed back."""
    yield "fortran", np.asfortranarray(a)
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    sl = tuple(slice(1, None, 2) for _ in a.shape)
    big[sl] = a
    yield "sliced", big[sl]
    if a.ndim == 4:
        yield "transposed", np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    else:
        yield "reversed", a[::-1].copy()[::-1]


@pytest.mark.parametrize("cfg", [CONFIGS[1], CONFIGS[3], GRADCHECK_CONFIGS[1]],
                         ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
def test_non_contiguous_inputs(cfg, algorithm, dtype):
    x, w, b, dy = cfg.arrays(dtype)
    kw = dict(stride=cfg.stride, padding=cfg.padding, algorithm=algorithm)
    y0 = cycnn.conv2d_forward(x, w, b, **kw)
    g0 = cycnn.conv2d_backward(dy, x, w, **kw)
    for (lx, x2), (_lw, w2), (_lb, b2), (_ld, dy2) in zip(_layouts(x), _layouts(w), _layouts(b),
                                                       _layouts(dy)):
        assert not x2.flags.c_contiguous, lx
        np.testing.assert_array_equal(x2, x)
        y = cycnn.conv2d_forward(x2, w2, b2, **kw)
        assert_close(y, y0, dtype)
        for got, want in zip(cycnn.conv2d_backward(dy2, x2, w2, **kw), g0):
            assert_close(got, want, dtype)


@ALGORITHMS
@DTYPES
def test_read_only_broadcast_and_byte_swapped_inputs(algorithm, dtype):
    cfg = GRADCHECK_CONFIGS[1]
    x, w, b, dy = cfg.arrays(dtype)
    kw = dict(stride=cfg.stride, padding=cfg.padding, algorithm=algorithm)
    y0 = cycnn.conv2d_forward(x, w, b, **kw)
    g0 = cycnn.conv2d_backward(dy, x, w, **kw)
    variants = {
        "read-only": lambda a: np.require(a.copy(), requirements="C")[...],
        "byte-swapped": lambda a: a.astype(a.dtype.newbyteorder()),
    }
    for label, make in variants.items():
        x2, w2, b2, dy2 = (make(a) for a in (x, w, b, dy))
        if label == "read-only":
            for a in (x2, w2, b2, dy2):
                a.flags.writeable = False
        y = cycnn.conv2d_forward(x2, w2, b2, **kw)
        assert y.dtype == dtype, label
        assert_close(y, y0, dtype)
        for got, want in zip(cycnn.conv2d_backward(dy2, x2, w2, **kw), g0):
            assert_close(got, want, dtype)
    # a broadcast x (stride 0 along N): every sample gives the same output
    xb = np.broadcast_to(x[:1], x.shape)
    y = cycnn.conv2d_forward(xb, w, b, **kw)
    assert_close(y, cycnn.conv2d_forward(np.ascontiguousarray(xb), w, b, **kw), dtype)
    if algorithm == "direct":
        # the direct loops run the same sums in the same order for every n: equal bits
        np.testing.assert_array_equal(y[0], y[-1])
    else:
        # BLAS makes no such promise: identical columns at different positions of the
        # product may be summed in another order (edge tiles, other CPUs' kernels)
        assert_close(y[-1], y[0], dtype)


def test_inputs_are_not_modified():
    cfg = GRADCHECK_CONFIGS[1]
    x, w, b, dy = cfg.arrays(np.float64)
    copies = [a.copy() for a in (x, w, b, dy)]
    for algorithm in ("direct", "im2col"):
        cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
        cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    for a, c in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------- NaN and inf

def _window_mask(cfg, h, w_):
    """(OH, OW) bool: outputs whose window covers input pixel (h, w_) (unpadded coords)."""
    (pt, _), (pl, _) = cfg.pads
    i = np.arange(cfg.OH)[:, None]
    j = np.arange(cfg.OW)[None, :]
    hp, wp = h + pt, w_ + pl
    return ((i * cfg.sh <= hp) & (hp < i * cfg.sh + cfg.KH)
            & (j * cfg.sw <= wp) & (wp < j * cfg.sw + cfg.KW))


def _tap_mask(cfg, h, w_):
    """(KH, KW) bool: kernel taps (p, q) that some window pairs with input pixel (h, w_)."""
    (pt, _), (pl, _) = cfg.pads
    p = np.arange(cfg.KH)[:, None]
    q = np.arange(cfg.KW)[None, :]
    hp, wp = h + pt, w_ + pl
    rows = ((hp - p) % cfg.sh == 0) & ((hp - p) // cfg.sh >= 0) & ((hp - p) // cfg.sh < cfg.OH)
    cols = ((wp - q) % cfg.sw == 0) & ((wp - q) // cfg.sw >= 0) & ((wp - q) // cfg.sw < cfg.OW)
    return rows & cols


NAN_CONFIGS = [
    Config(2, 2, 3, 7, 8, 3, 2, 1, 1, seed=21),
    Config(2, 2, 3, 9, 8, 3, 3, 2, ((1, 0), (2, 1)), seed=22),
    Config(1, 2, 3, 10, 11, 4, 3, (3, 2), (1, 2), seed=23),
]


@pytest.mark.parametrize("cfg", NAN_CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_in_x_forward(cfg, algorithm, dtype):
    """A NaN in x makes exactly the outputs whose windows include it NaN (all filters of
    that sample), and only those."""
    x, w, b, _ = cfg.arrays(dtype)
    n, c, h, w_ = 1 % cfg.N, 1, 4, 5
    x[n, c, h, w_] = np.nan
    y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
    expected = np.zeros(y.shape, bool)
    expected[n, :] = _window_mask(cfg, h, w_)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(np.isnan(y), expected)
    y_ref = reference.conv2d_forward(x, w, b, cfg.stride, cfg.padding)
    np.testing.assert_array_equal(np.isnan(y_ref), expected)
    assert_close(np.where(expected, 0, y), np.where(expected, 0, y_ref), dtype)


@pytest.mark.parametrize("cfg", NAN_CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_in_x_backward(cfg, algorithm, dtype):
    """dw[f, c, p, q] is NaN exactly for the taps some window pairs with the NaN pixel;
    dx and db do not depend on x and stay finite."""
    x, w, _, dy = cfg.arrays(dtype)
    n, c, h, w_ = 0, 1, 4, 5
    x[n, c, h, w_] = np.nan
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    expected = np.zeros(dw.shape, bool)
    expected[:, c] = _tap_mask(cfg, h, w_)
    assert expected.any()
    np.testing.assert_array_equal(np.isnan(dw), expected)
    assert np.isfinite(dx).all() and np.isfinite(db).all()


@pytest.mark.parametrize("cfg", NAN_CONFIGS, ids=lambda c: c.id)
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_reference_nan_in_x_backward(cfg, dtype):
    """The NumPy reference route follows the same IEEE semantics for dw.

    (It used to correlate xp with the dilated dy, so with stride > 1 the inserted zeros
    met pixels no window reads: 0 * NaN = NaN in extra taps of dw.)"""
    x, w, _, dy = cfg.arrays(dtype)
    n, c, h, w_ = 0, 1, 4, 5
    x[n, c, h, w_] = np.nan
    dx, dw, db = reference.conv2d_backward(dy, x, w, cfg.stride, cfg.padding)
    expected = np.zeros(dw.shape, bool)
    expected[:, c] = _tap_mask(cfg, h, w_)
    np.testing.assert_array_equal(np.isnan(dw), expected)
    assert np.isfinite(dx).all() and np.isfinite(db).all()


@pytest.mark.parametrize("cfg", NAN_CONFIGS, ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_in_dy_backward(cfg, algorithm, dtype):
    """A NaN in dy[n, f, i, j]: dx is NaN on that window (every channel), dw on filter f
    (every tap meets the window, padding zeros included: 0 * NaN = NaN), db[f]."""
    x, w, _, dy = cfg.arrays(dtype)
    n, f, i, j = cfg.N - 1, 1, cfg.OH // 2, cfg.OW // 2
    dy[n, f, i, j] = np.nan
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    (pt, _), (pl, _) = cfg.pads
    hp = np.arange(cfg.H)[:, None] + pt
    wp = np.arange(cfg.W)[None, :] + pl
    window = ((i * cfg.sh <= hp) & (hp < i * cfg.sh + cfg.KH)
              & (j * cfg.sw <= wp) & (wp < j * cfg.sw + cfg.KW))
    expected_dx = np.zeros(dx.shape, bool)
    expected_dx[n, :] = window
    np.testing.assert_array_equal(np.isnan(dx), expected_dx)
    expected_dw = np.zeros(dw.shape, bool)
    expected_dw[f] = True
    np.testing.assert_array_equal(np.isnan(dw), expected_dw)
    np.testing.assert_array_equal(np.isnan(db), np.arange(cfg.F) == f)
    # the reference route agrees
    rdx, rdw, rdb = reference.conv2d_backward(dy, x, w, cfg.stride, cfg.padding)
    np.testing.assert_array_equal(np.isnan(rdx), expected_dx)
    np.testing.assert_array_equal(np.isnan(rdw), expected_dw)
    assert_close(np.where(expected_dx, 0, dx), np.where(expected_dx, 0, rdx), dtype)


@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_in_w(algorithm, dtype):
    """A NaN in w[f] makes every output of filter f NaN, and dx NaN wherever that tap
    reads; dw stays finite (it does not depend on w)."""
    cfg = NAN_CONFIGS[0]
    x, w, b, dy = cfg.arrays(dtype)
    w[2, 0, 1, 1] = np.nan
    y = cycnn.conv2d_forward(x, w, b, cfg.stride, cfg.padding, algorithm=algorithm)
    np.testing.assert_array_equal(np.isnan(y).any(axis=(0, 2, 3)), [False, False, True])
    assert np.isnan(y[:, 2]).all()
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, cfg.stride, cfg.padding, algorithm=algorithm)
    assert np.isfinite(dw).all() and np.isfinite(db).all()
    assert np.isnan(dx[:, 0]).any() and np.isfinite(dx[:, 1]).all()
    rdx = reference.conv2d_backward(dy, x, w, cfg.stride, cfg.padding)[0]
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(rdx))


@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_inf_in_x(algorithm, dtype):
    """inf times positive weights gives inf; inf times a zero weight gives NaN."""
    x = np.ones((1, 1, 7, 7), dtype)
    x[0, 0, 2, 2] = np.inf
    x[0, 0, 6, 6] = -np.inf
    w = np.full((2, 1, 3, 3), 0.5, dtype)
    w[1, 0, 1, 1] = 0.0  # filter 1's centre tap pairs inf with 0 in output (1, 1)
    y = cycnn.conv2d_forward(x, w, algorithm=algorithm)
    assert y.shape == (1, 2, 5, 5)
    window = np.zeros((5, 5), bool)
    window[:3, :3] = True  # outputs whose window covers (2, 2)
    assert (y[0, 0][window] == np.inf).all()
    assert y[0, 0, 4, 4] == -np.inf
    assert np.isnan(y[0, 1, 1, 1])
    others = window.copy()
    others[1, 1] = False
    assert (y[0, 1][others] == np.inf).all()
    finite = ~window
    finite[4, 4] = False
    assert np.isfinite(y[0][:, finite]).all()
    # exact: the finite outputs are sums of a few small integers, which floats hold exactly
    np.testing.assert_array_equal(y, reference.conv2d_forward(x, w))


@ALGORITHMS
@DTYPES
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_inf_in_x_backward_stride2(algorithm, dtype):
    """With stride 2, only the taps that read the inf pixel become inf in dw (dy > 0)."""
    x = np.ones((1, 1, 7, 7), dtype)
    x[0, 0, 2, 2] = np.inf
    w = np.ones((2, 1, 3, 3), dtype)
    dy = (np.random.default_rng(8).random((1, 2, 3, 3)) + 0.5).astype(dtype)
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, 2, 0, algorithm=algorithm)
    # windows start at rows/cols 0, 2, 4: pixel 2 is read by taps 0 (window 1) and 2 (window 0)
    taps = np.zeros((3, 3), bool)
    taps[np.ix_([0, 2], [0, 2])] = True
    for f in range(2):
        assert (dw[f, 0][taps] == np.inf).all()
        assert np.isfinite(dw[f, 0][~taps]).all()
    assert np.isfinite(dx).all() and np.isfinite(db).all()


# --------------------------------------------------------------------------- threads

@needs_openmp
@pytest.mark.parametrize("cfg", [GRADCHECK_CONFIGS[0], GRADCHECK_CONFIGS[1],
                                 Config(4, 2, 2, 9, 8, 3, 3, 2, ((1, 0), (2, 1)), seed=32),
                                 Config(8, 3, 5, 12, 11, 3, 3, 1, 1, seed=31)],
                         ids=lambda c: c.id)
@ALGORITHMS
@DTYPES
def test_threads_agree(cfg, algorithm, dtype, always_parallel):
    # N >= 2 and F >= 2: both the n-loops (y, dx) and the f-loop (dw) split across threads
    assert cfg.N >= 2 and cfg.F >= 2
    x, w, b, dy = cfg.arrays(dtype)
    out = {}
    for t in (1, 2):
        kw = dict(stride=cfg.stride, padding=cfg.padding, threads=t, algorithm=algorithm)
        out[t] = (cycnn.conv2d_forward(x, w, b, **kw),) + cycnn.conv2d_backward(dy, x, w, **kw)
    for one, two in zip(out[1], out[2]):
        assert_close(two, one, dtype)
    if algorithm == "direct":
        # each thread owns whole slices of the output (n for y and dx, f for dw) and adds
        # in the same order: the results are identical, not just close
        for one, two in zip(out[1], out[2]):
            np.testing.assert_array_equal(two, one)


def test_threads_zero_raises():
    x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"conv2d_forward: threads must be >= 1, got 0"):
        cycnn.conv2d_forward(x, w, threads=0)
    with pytest.raises(ValueError, match=r"conv2d_backward: threads must be >= 1, got 0"):
        cycnn.conv2d_backward(np.ones((1, 1, 3, 3)), x, w, threads=0)


def test_set_num_threads_is_the_default():
    old = cycnn.get_num_threads()
    try:
        cycnn.set_num_threads(2)
        assert cycnn.get_num_threads() == 2 == cycnn.build_info()["threads"]
        with pytest.raises(ValueError, match=r"set_num_threads: n must be >= 1, got 0"):
            cycnn.set_num_threads(0)
    finally:
        cycnn.set_num_threads(old)


# --------------------------------------------------------------------------- baseline build

VARIANT_SCRIPT = textwrap.dedent("""
    import numpy as np
    import cycnn
    from cycnn import reference
    kernels = cycnn.build_info()["kernels"]["_conv"]
    rng = np.random.default_rng(7)
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
        w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        args = ((2, 1), ((1, 0), (0, 2)))
        y_ref = reference.conv2d_forward(x, w, b, *args)
        dy = rng.standard_normal(y_ref.shape).astype(dtype)
        g_ref = reference.conv2d_backward(dy, x, w, *args)
        for algorithm in ("direct", "im2col"):
            for threads in (1, 2):
                kw = dict(algorithm=algorithm, threads=threads)
                y = cycnn.conv2d_forward(x, w, b, *args, **kw)
                g = cycnn.conv2d_backward(dy, x, w, *args, **kw)
                for got, want in zip((y,) + g, (y_ref,) + g_ref):
                    assert got.dtype == dtype and got.shape == want.shape
                    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    print("variant ok:", kernels)
""")


def _run_variant(**env):
    proc = subprocess.run([sys.executable, "-c", VARIANT_SCRIPT], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("variant ok: ", 1)[1].strip()


def test_baseline_build_in_subprocess():
    """CYCNN_FORCE_BASELINE=1 loads the plain x86-64 build, which computes the same."""
    assert _run_variant(CYCNN_FORCE_BASELINE="1").startswith("baseline")


def _cpuinfo_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            return next(set(line.split(":", 1)[1].split()) for line in fh
                        if line.startswith("flags"))
    except (OSError, StopIteration):
        return None


#: what each variant needs, in Linux's /proc/cpuinfo spelling (written out here, not read
#: from setup.py, so that the test checks the table instead of repeating it)
CPUINFO_NEEDS = {
    "avx512": {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma"},
    "avx2": {"avx2", "fma"},
}


def test_default_build_is_the_best_this_cpu_runs():
    """The variant loaded is the first of the table that /proc/cpuinfo says the CPU has."""
    flags = _cpuinfo_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this OS: the CPU's features cannot be cross-checked")
    from cycnn import _dispatch
    assert [s for s, _ in _dispatch.variants()] == list(CPUINFO_NEEDS)
    present = _dispatch.built()
    expected = next((s for s, needs in CPUINFO_NEEDS.items() if needs <= flags and s in present),
                    "baseline x86-64")
    if os.environ.get("CYCNN_FORCE_BASELINE", "") not in ("", "0"):
        expected = "baseline x86-64"
    info = cycnn.build_info()
    assert info["kernels"] == {"_conv": expected, "_norm": expected, "_pool": expected}
    assert isinstance(info["openmp"], bool)


def test_every_requested_variant_was_built():
    from cycnn import _dispatch
    for module in ("_conv", "_norm", "_pool"):
        assert _dispatch.built(module) == _dispatch.requested(), module


@pytest.mark.parametrize("variant", list(CPUINFO_NEEDS))
def test_every_variant_this_cpu_runs_computes_the_same(variant):
    from cycnn import _dispatch
    flags = _cpuinfo_flags()
    if flags is None or not CPUINFO_NEEDS[variant] <= flags:
        pytest.skip(f"this CPU cannot run the {variant} build")
    if variant not in _dispatch.built():
        pytest.skip(f"the {variant} build was not asked for (CYCNN_VARIANTS at build time)")
    assert _run_variant(CYCNN_VARIANT=variant, CYCNN_FORCE_BASELINE="0") == variant


# --------------------------------------------------------------------------- teaching helpers

@pytest.mark.parametrize("pad, sides", [
    (1, ((1, 1), (1, 1))),
    ((2, 0), ((2, 2), (0, 0))),
    ((0, 3), ((0, 0), (3, 3))),
    (((1, 0), (2, 3)), ((1, 0), (2, 3))),
    (0, ((0, 0), (0, 0))),
], ids=_fmt_pad)
@DTYPES
def test_zero_pad_modes(pad, sides, dtype):
    x = np.random.default_rng(1).random((2, 3, 4, 5)).astype(dtype)
    out = cycnn.zero_pad(x, pad)
    (pt, pb), (pl, pr) = sides
    assert out.shape == (2, 3, 4 + pt + pb, 5 + pl + pr)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[..., pt:pt + 4, pl:pl + 5], x)
    assert out.sum(dtype=np.float64) == pytest.approx(x.sum(dtype=np.float64))
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))))


def test_zero_pad_2d():
    np.testing.assert_array_equal(cycnn.zero_pad(np.ones((1, 2)), 1),
                                  [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])


def test_zero_pad_errors():
    with pytest.raises(ValueError, match=r"zero_pad: x must be at least 2-D, got shape \(3,\)"):
        cycnn.zero_pad(np.ones(3), 1)
    with pytest.raises(ValueError, match=r"zero_pad: pad must be .*'same'"):
        cycnn.zero_pad(np.ones((3, 3)), "same")
    with pytest.raises(ValueError, match=r"pad.* must be >= 0, got -1"):
        cycnn.zero_pad(np.ones((3, 3)), -1)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 1, 5), (1, 1)], ids=str)
def test_dilate_rate_one_is_identity(shape):
    x = np.arange(np.prod(shape)).reshape(shape)
    out = cycnn.dilate(x, 1)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    np.testing.assert_array_equal(cycnn.dilate(x, (1, 1)), x)


def test_dilate_one_axis():
    out = cycnn.dilate(np.array([[1.0, 2.0], [3.0, 4.0]]), (1, 2))
    np.testing.assert_array_equal(out, [[1, 0, 2], [3, 0, 4]])
    assert out.dtype == np.float64


def test_dilate_errors():
    with pytest.raises(ValueError, match=r"dilate: rate must be >= 1, got 0"):
        cycnn.dilate(np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match=r"dilate: x must be .* got shape \(2,\)"):
        cycnn.dilate(np.ones(2), 2)
    with pytest.raises(TypeError, match=r"dilate: rate must be an integer, got 1.5"):
        cycnn.dilate(np.ones((2, 2)), 1.5)


def test_rotate180_batch_and_copy():
    w = np.arange(24.0).reshape(2, 3, 2, 2)
    r = cycnn.rotate180(w)
    np.testing.assert_array_equal(r, w[..., ::-1, ::-1])
    np.testing.assert_array_equal(cycnn.rotate180(r), w)
    r[0, 0, 0, 0] = -1.0
    assert w[0, 0, 1, 1] == 3.0  # a new array, not a view
    with pytest.raises(ValueError, match=r"rotate180: w must be at least 2-D, got shape \(4,\)"):
        cycnn.rotate180(np.ones(4))


@pytest.mark.parametrize("n, k, stride, pad, expected", [
    (32, 5, 1, 0, 28),
    (28, 5, 2, 2, 14),
    (28, 5, 1, 2, 28),
    (7, 3, 2, 0, 3),
    (8, 3, 2, 0, 3),   # the last row of the input is read by no window
    (5, 5, 1, 0, 1),
    (4, 5, 1, (1, 0), 1),
    (10, 4, 3, (2, 1), 4),
    (1, 3, 1, 1, 1),
])
def test_conv_output_size(n, k, stride, pad, expected):
    assert cycnn.conv_output_size(n, k, stride=stride, pad=pad) == expected
    # and the actual forward agrees
    before, after = pad if isinstance(pad, tuple) else (pad, pad)
    y = cycnn.conv2d_forward(np.ones((1, 1, n, 1)), np.ones((1, 1, k, 1)), stride=(stride, 1),
                             padding=((before, after), (0, 0)))
    assert y.shape[2] == expected


def test_conv_output_size_kernel_too_large():
    with pytest.raises(ValueError, match=r"conv_output_size: kernel size k=6 is larger than "
                                         r"the padded input n \+ pad = 3 \+ 1 \+ 1 = 5"):
        cycnn.conv_output_size(3, 6, pad=1)
    with pytest.raises(ValueError, match=r"conv_output_size: stride must be >= 1, got 0"):
        cycnn.conv_output_size(8, 3, stride=0)
    with pytest.raises(TypeError, match=r"conv_output_size: n must be an integer, got 2.5"):
        cycnn.conv_output_size(2.5, 1)


@pytest.mark.parametrize("padding, kernel, expected", [
    (0, None, ((0, 0), (0, 0))),
    (2, None, ((2, 2), (2, 2))),
    ((1, 3), None, ((1, 1), (3, 3))),
    (((0, 1), (2, 3)), None, ((0, 1), (2, 3))),
    ([[0, 1], [2, 3]], None, ((0, 1), (2, 3))),
    ("valid", None, ((0, 0), (0, 0))),
    ("same", (3, 5), ((1, 1), (2, 2))),
    ("same", (4, 3), ((1, 2), (1, 1))),
    ("same", (2, 1), ((0, 1), (0, 0))),
    (np.int64(1), None, ((1, 1), (1, 1))),
], ids=lambda v: _fmt_pad(v))
def test_resolve_padding(padding, kernel, expected):
    assert cycnn.resolve_padding(padding, kernel_size=kernel) == expected


def test_resolve_padding_same_needs_kernel_size():
    # (was "cannot unpack non-iterable NoneType object", naming nothing)
    with pytest.raises((TypeError, ValueError), match=r"resolve_padding: .*kernel_size"):
        cycnn.resolve_padding("same")


# --------------------------------------------------------------------------- API details

@ALGORITHMS
@DTYPES
def test_need_dx_false(algorithm, dtype):
    """need_dx=False skips dx (None) and leaves dw and db unchanged."""
    cfg = GRADCHECK_CONFIGS[1]
    x, w, _, dy = cfg.arrays(dtype)
    kw = dict(stride=cfg.stride, padding=cfg.padding, algorithm=algorithm)
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, need_dx=False, **kw)
    assert dx is None
    _, dw1, db1 = cycnn.conv2d_backward(dy, x, w, **kw)
    # bit for bit: dw and db come from the same calls on the same arrays either way
    np.testing.assert_array_equal(dw, dw1)
    np.testing.assert_array_equal(db, db1)


@ALGORITHMS
def test_results_do_not_share_buffers(algorithm):
    """Returned arrays are new: a second call (reusing any workspace) leaves them alone."""
    cfg = CONFIGS[10]
    x, w, b, dy = cfg.arrays(np.float64)
    kw = dict(stride=cfg.stride, padding=cfg.padding, algorithm=algorithm)
    first = (cycnn.conv2d_forward(x, w, b, **kw),) + cycnn.conv2d_backward(dy, x, w, **kw)
    saved = [a.copy() for a in first]
    cycnn.conv2d_forward(2 * x + 1, -w, b, **kw)
    cycnn.conv2d_backward(-dy, 3 * x, w + 1, **kw)
    for a, c in zip(first, saved):
        np.testing.assert_array_equal(a, c)
    assert not any(np.shares_memory(a, c) for i, a in enumerate(first) for c in first[i + 1:])


@ALGORITHMS
def test_python_threads_in_parallel(algorithm):
    """Calls from several Python threads at once (the kernels drop the GIL) give the
    serial results: no shared scratch space between threads."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = Config(4, 3, 5, 16, 15, 3, 3, 1, 1, seed=77)
    jobs = []
    for k in range(8):
        x, w, b, dy = Config(4, 3, 5, 16, 15, 3, 3, 1, 1, seed=77 + k).arrays(np.float64)
        jobs.append((x, w, b, dy))

    def run(job):
        x, w, b, dy = job
        out = []
        for _ in range(5):
            out = [cycnn.conv2d_forward(x, w, b, padding=1, algorithm=algorithm)]
            out += cycnn.conv2d_backward(dy, x, w, padding=1, algorithm=algorithm)
        return out

    serial = [run(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(run, jobs))
    for s_, p_ in zip(serial, parallel):
        for a, c in zip(s_, p_):
            np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)
    assert cfg.OH == 16


def test_unknown_algorithm():
    with pytest.raises(ValueError, match=r"conv2d_forward: algorithm must be one of .*'fft'"):
        cycnn.conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), algorithm="fft")


# --------------------------------------------------------------------------- docs' numbers

# Every number the conv pages print, pinned through the public API (the pages themselves
# run under Sybil, which compares printed text; these compare values to 1e-12).
DOC_X = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])
DOC_W = np.array([[1., 2.], [3., 4.]])
DOC_DY = np.array([[0.1, -0.2], [0.3, 0.4]])


@ALGORITHMS
def test_docs_conv_forward_numbers(algorithm):
    """docs/conv-forward.md"""
    y = cycnn.conv2d_forward(DOC_X[None, None], DOC_W[None, None], np.array([0.5]),
                             algorithm=algorithm)
    np.testing.assert_allclose(y[0, 0], [[37.5, 47.5], [67.5, 77.5]], rtol=0, atol=1e-12)
    assert (cycnn.conv_output_size(32, 5, stride=1, pad=2),
            cycnn.conv_output_size(32, 5, stride=2, pad=2)) == (32, 16)
    w = np.zeros((2, 3, 3, 3))
    w[0, :, 1, 1] = 0.3, 0.6, 0.1
    w[1, 2] = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]]
    picture = np.zeros((1, 3, 6, 6))
    picture[0, 0], picture[0, 1], picture[0, 2, :3] = 0.8, 0.4, 1.0
    y = cycnn.conv2d_forward(picture, w, algorithm=algorithm)
    np.testing.assert_allclose(y[0, 0], np.repeat([[0.58], [0.58], [0.48], [0.48]], 4, 1),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(y[0, 1], np.repeat([[0.], [4.], [4.], [0.]], 4, 1),
                               rtol=0, atol=1e-12)


@ALGORITHMS
def test_docs_weight_and_input_gradient_numbers(algorithm):
    """docs/conv-weight-gradient.md and docs/conv-input-gradient.md"""
    dx, dw, db = cycnn.conv2d_backward(DOC_DY[None, None], DOC_X[None, None],
                                       DOC_W[None, None], algorithm=algorithm)
    np.testing.assert_allclose(dw[0, 0], [[2.9, 3.5], [4.7, 5.3]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, [0.6], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx[0, 0], [[0.1, 0.0, -0.4], [0.6, 0.8, 0.0], [0.9, 2.4, 1.6]],
                               rtol=0, atol=1e-12)
    # seed 001's SGD step with eta = 0.5 (the page prints 6 decimals)
    _, dw, db = cycnn.conv2d_backward(SEED001_D[None, None], SEED001_O[None, None],
                                      np.zeros((1, 1, 2, 2)), algorithm=algorithm)
    w = np.array([[-0.13, 0.20], [0.05, -0.10]]) - 0.5 * dw[0, 0]
    np.testing.assert_allclose(w, [[-0.152303, 0.15297], [0.044369, -0.134144]],
                               rtol=0, atol=5e-7)
    assert round(float(0.0 - 0.5 * db[0]), 6) == -0.0418


@ALGORITHMS
def test_docs_stride_padding_numbers(algorithm):
    """docs/stride-padding.md: stride 2, padding 1, 5x5 input, 3x3 kernel."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    w = np.arange(1, 10).reshape(1, 1, 3, 3).astype(float)
    dy = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -2.0], [1.0, 1.0, 1.0]])[None, None]
    for dx, dw, db in (cycnn.conv2d_backward(dy, x, w, stride=2, padding=1, algorithm=algorithm),
                       reference.conv2d_backward(dy, x, w, stride=2, padding=1)):
        np.testing.assert_allclose(dw[0, 0], [[18, 35.5, 37], [23, 49, 47.5], [-26, -14.5, 6]],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(dx[0, 0], [[5, 2, -5, 2, 10],
                                              [9, 3.5, -8, 3, 12],
                                              [2.5, 3, 0, -8, -10],
                                              [6, 8.5, 2, -10, -14],
                                              [5, 10, 5, 10, 5]], rtol=0, atol=1e-12)
        np.testing.assert_allclose(db, [3.5], rtol=0, atol=1e-12)
    y = cycnn.conv2d_forward(np.ones((3, 2, 9, 11)), np.ones((4, 2, 3, 4)), stride=(2, 3),
                             padding=((1, 2), (0, 1)), algorithm=algorithm)
    assert y.shape == (3, 4, 5, 3)
