"""The two routes to the same convolution agree: the direct loops the docs show and the
im2col + BLAS route ``'auto'`` picks for most layers (docs/performance.md)."""

import zlib

import numpy as np
import pytest

import cycnn
import cycnn.conv
from conftest import DTYPES, needs_openmp

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-11, atol=1e-11)}


def _configs(count, seed):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        N, C, F = rng.integers(1, 4), rng.integers(1, 5), rng.integers(1, 5)
        H, W = rng.integers(1, 13, size=2)
        KH, KW = rng.integers(1, 6, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        kind = rng.integers(0, 5)
        pads = [int(v) for v in rng.integers(0, 3, size=4)]
        padding = [pads[0], (pads[0], pads[1]), ((pads[0], pads[1]), (pads[2], pads[3])),
                   "valid", "same"][kind]
        if padding == "same":
            sh = sw = 1
        try:
            (pt, pb), (pl, pr) = cycnn.resolve_padding(padding, (KH, KW), (sh, sw))
        except ValueError:
            continue
        if KH > H + pt + pb or KW > W + pl + pr:
            continue
        out.append((int(N), int(C), int(H), int(W), int(F), int(KH), int(KW),
                    (int(sh), int(sw)), padding))
    return out


CONFIGS = _configs(200, 7)


@DTYPES
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "N{}C{}_{}x{}_F{}K{}x{}_s{}_p{}".format(*c))
def test_direct_and_im2col_agree(cfg, dtype):
    N, C, H, W, F, KH, KW, stride, padding = cfg
    rng = np.random.default_rng(zlib.crc32(repr(cfg).encode()))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    y1 = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="direct")
    y2 = cycnn.conv2d_forward(x, w, b, stride, padding, algorithm="im2col")
    assert y1.shape == y2.shape and y1.dtype == y2.dtype == dtype
    np.testing.assert_allclose(y2, y1, **TOL[dtype])
    dy = rng.standard_normal(y1.shape).astype(dtype)
    g1 = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="direct")
    g2 = cycnn.conv2d_backward(dy, x, w, stride, padding, algorithm="im2col")
    for a, b_ in zip(g1, g2):
        assert a.shape == b_.shape and a.dtype == b_.dtype == dtype
        np.testing.assert_allclose(b_, a, **TOL[dtype])


def test_im2col_in_chunks_matches_one_chunk(monkeypatch):
    """Bounding the column buffer splits the batch; the sums must not change."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 3, 9, 8))
    w = rng.standard_normal((5, 3, 3, 2))
    y = cycnn.conv2d_forward(x, w, stride=(2, 1), padding=1, algorithm="im2col")
    dy = rng.standard_normal(y.shape)
    whole = cycnn.conv2d_backward(dy, x, w, (2, 1), 1, algorithm="im2col")
    monkeypatch.setattr(cycnn.conv, "IM2COL_MAX_ELEMENTS", 60)  # one sample per chunk
    np.testing.assert_allclose(
        cycnn.conv2d_forward(x, w, stride=(2, 1), padding=1, algorithm="im2col"), y, rtol=1e-12)
    for a, b in zip(cycnn.conv2d_backward(dy, x, w, (2, 1), 1, algorithm="im2col"), whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="algorithm must be one of .* got 'fft'"):
        cycnn.conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), algorithm="fft")


@needs_openmp
def test_threads_give_the_same_result(always_parallel):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 10, 10))
    w = rng.standard_normal((6, 3, 3, 3))
    dy = rng.standard_normal((4, 6, 8, 8))
    for alg in ("direct", "im2col"):
        one = cycnn.conv2d_backward(dy, x, w, threads=1, algorithm=alg)
        two = cycnn.conv2d_backward(dy, x, w, threads=2, algorithm=alg)
        for a, b in zip(one, two):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_need_dx_false_skips_only_dx():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 2, 8, 7))
    w = rng.standard_normal((4, 2, 3, 3))
    dy = rng.standard_normal((3, 4, 4, 4))
    for alg in ("direct", "im2col"):
        full = cycnn.conv2d_backward(dy, x, w, 2, 1, algorithm=alg)
        dx, dw, db = cycnn.conv2d_backward(dy, x, w, 2, 1, algorithm=alg, need_dx=False)
        assert dx is None
        # bit for bit: dw and db come from the same calls on the same arrays either way
        np.testing.assert_array_equal(dw, full[1])
        np.testing.assert_array_equal(db, full[2])


def test_clear_workspace_frees_the_column_buffers():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 3, 9, 9))
    w = rng.standard_normal((5, 3, 3, 3))
    y = cycnn.conv2d_forward(x, w, algorithm="im2col")
    assert cycnn.conv._local.bufs  # kept between calls
    cycnn.clear_workspace()
    assert not getattr(cycnn.conv._local, "bufs", None)
    # the same call on the same arrays: only the buffers are new
    np.testing.assert_array_equal(cycnn.conv2d_forward(x, w, algorithm="im2col"), y)
