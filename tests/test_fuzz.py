"""Random configurations against PyTorch: conv2d, max/avg pooling, dense, softmax + CE.

Property-based (hypothesis): every example draws shapes, strides, padding, dtype, route,
thread count, the convolution's dilation, groups and padding mode, the pooling options
(padding, dilation, ceil_mode, count_include_pad, divisor_override) and data (small,
large and tiny magnitudes; integer-valued data, which makes ties in max pooling), runs
cycnn's forward and backward passes, and compares them with PyTorch computing in float64
on the same values.

Tolerances are fair to sums that cancel: an entry's error is measured against the sum of
the absolute values of its terms (computed by the same operation on ``|x|``, ``|w|``,
``|dy|``), not against the entry itself, which may be near zero while its terms are large.
float32 results are compared with the float64 truth.

A CI run draws a fixed set of a few hundred examples per kernel (``derandomize``: the
same examples every time). ``CYCNN_FUZZ=1`` runs 5,000 fresh random examples per kernel;
``CYCNN_FUZZ_EXAMPLES=n`` sets the number.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import cycnn  # noqa: E402
from conftest import torch_or_skip  # noqa: E402

torch = torch_or_skip()
F = torch.nn.functional

LONG = os.environ.get("CYCNN_FUZZ", "") not in ("", "0")
EXAMPLES = int(os.environ.get("CYCNN_FUZZ_EXAMPLES", 5000 if LONG else 200))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: allowed error, as a fraction of the sum of absolute terms of each entry
TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.fixture(autouse=True, scope="module")
def torch_one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def assert_fair(got, want, terms, dtype, what):
    """|got - want| <= tol * terms, entry by entry, plus the dtype's smallest normal number
    (a value below it may underflow to zero, which is the right rounding)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    terms = np.asarray(terms, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    bound = TOL[dtype] * terms + np.finfo(dtype).tiny
    err = np.abs(got - want)
    bad = err > bound
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: at {at} got {got[at]!r}, PyTorch {want[at]!r}, error "
                             f"{err[at]:.3g} > {TOL[dtype]:g} x sum of |terms| {terms[at]:.3g}")


@st.composite
def arrays(draw, shape, dtype, ties=False):
    """Random values of one of several magnitudes; integer-valued ones make ties."""
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 1e3, 1e-3]))
    rng = np.random.default_rng(seed)
    if ties and draw(st.booleans()):
        a = rng.integers(-3, 4, size=shape).astype(np.float64)
    else:
        a = rng.standard_normal(shape) * scale
    return a.astype(dtype)


DTYPE = st.sampled_from([np.float32, np.float64])


# --------------------------------------------------------------------------- convolution

@st.composite
def conv_case(draw):
    dtype = draw(DTYPE)
    G = draw(st.integers(1, 3))  # groups: C and F are multiples of it
    N, C, Fn = draw(st.integers(1, 3)), G * draw(st.integers(1, 2)), G * draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    rh, rw = (1, 1) if draw(st.booleans()) else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    EH, EW = rh * (KH - 1) + 1, rw * (KW - 1) + 1  # the dilated kernel's span
    kind = draw(st.sampled_from(["int", "pair", "sides", "valid", "same"]))
    sh, sw = (1, 1) if kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = [draw(st.integers(0, 3)) for _ in range(4)]
    padding, sides = {
        "int": (p[0], (p[0], p[0], p[0], p[0])),
        "pair": ((p[0], p[1]), (p[0], p[0], p[1], p[1])),
        "sides": (((p[0], p[1]), (p[2], p[3])), tuple(p)),
        "valid": ("valid", (0, 0, 0, 0)),
        "same": ("same", ((EH - 1) // 2, EH // 2, (EW - 1) // 2, EW // 2)),
    }[kind]
    pt, pb, pl, pr = sides
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    # PyTorch's limits: reflect pads less than the input size, circular at most it
    extra = {"reflect": 1, "circular": 0}.get(mode)
    H = draw(st.integers(max(1, EH - pt - pb, max(pt, pb) + extra if extra is not None else 1),
                         EH + 8))
    W = draw(st.integers(max(1, EW - pl - pr, max(pl, pr) + extra if extra is not None else 1),
                         EW + 8))
    x = draw(arrays((N, C, H, W), dtype))
    w = draw(arrays((Fn, C // G, KH, KW), dtype))
    b = draw(arrays((Fn,), dtype))
    OH, OW = (H + pt + pb - EH) // sh + 1, (W + pl + pr - EW) // sw + 1
    dy = draw(arrays((N, Fn, OH, OW), dtype))
    args = dict(dilation=(rh, rw), groups=G, padding_mode=mode)
    route = dict(algorithm=draw(st.sampled_from(["direct", "im2col", "auto"])),
                 threads=draw(st.sampled_from([1, 2])))
    return x, w, b, dy, (sh, sw), padding, sides, args, route


def _torch_conv(x, w, b, stride, sides, dilation=1, groups=1, padding_mode="zeros"):
    pt, pb, pl, pr = sides
    mode = "constant" if padding_mode == "zeros" else padding_mode
    return F.conv2d(F.pad(x, (pl, pr, pt, pb), mode=mode), w, b, stride, dilation=dilation,
                    groups=groups)


@FUZZ
@given(conv_case())
def test_conv2d_matches_torch(case):
    x, w, b, dy, stride, padding, sides, args, route = case
    dtype = x.dtype.type
    y = cycnn.conv2d_forward(x, w, b, stride, padding, **args, **route)
    dx, dw, db = cycnn.conv2d_backward(dy, x, w, stride, padding, **args, **route)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    xt, wt, bt = (t64(a).requires_grad_() for a in (x, w, b))
    yt = _torch_conv(xt, wt, bt, stride, sides, **args)
    yt.backward(t64(dy))
    ax, aw, ab, ady = (t64(np.abs(a)) for a in (x, w, b, dy))
    with torch.no_grad():  # a padding mode copies values: |copy| = copy of |x|
        assert_fair(y, yt, _torch_conv(ax, aw, ab, stride, sides, **args), dtype, "y")
    # sums of |terms| of the gradients: the same contractions with absolute values
    ax.requires_grad_()
    aw.requires_grad_()
    (_torch_conv(ax, aw, None, stride, sides, **args) * ady).sum().backward()
    assert_fair(dx, xt.grad, ax.grad, dtype, "dx")
    assert_fair(dw, wt.grad, aw.grad, dtype, "dw")
    assert_fair(db, bt.grad, ady.sum(dim=(0, 2, 3)), dtype, "db")


# --------------------------------------------------------------------------- pooling

def _pool_out(n, k, s, p, r, ceil_mode):
    """PyTorch's pooling output size: the dilated window's room divided by the stride,
    rounded up under ceil_mode unless the last window would start past the input and the
    left padding."""
    room = n + 2 * p - (r * (k - 1) + 1)
    out = (room + (s - 1 if ceil_mode else 0)) // s + 1
    return out - 1 if ceil_mode and (out - 1) * s >= n + p else out


def _every_window_reads_the_input(n, k, s, p, r, out):
    return all(any(0 <= i * s - p + q * r < n for q in range(k)) for i in range(out))


@st.composite
def pool_case(draw, dilation=True):
    dtype = draw(DTYPE)
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = None if draw(st.booleans()) else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    sh, sw = (KH, KW) if stride is None else stride
    padding = (draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2)))
    rates = (1, 1) if not dilation or draw(st.booleans()) else \
        (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    ceil_mode = draw(st.booleans())
    sizes = []
    for k, s, p, r in ((KH, sh, padding[0], rates[0]), (KW, sw, padding[1], rates[1])):
        n = draw(st.integers(max(1, r * (k - 1) + 1 - 2 * p), r * (k - 1) + 10))
        out = _pool_out(n, k, s, p, r, ceil_mode)
        # a window of padding only: PyTorch's max is -inf there, cycnn refuses the input
        hypothesis.assume(_every_window_reads_the_input(n, k, s, p, r, out))
        sizes.append((n, out))
    (H, OH), (W, OW) = sizes
    x = draw(arrays((N, C, H, W), dtype, ties=True))
    dy = draw(arrays((N, C, OH, OW), dtype))
    options = dict(padding=padding, ceil_mode=ceil_mode)
    if dilation:
        options["dilation"] = rates
    return x, dy, (KH, KW), stride, options, draw(st.sampled_from([1, 2]))


@FUZZ
@given(pool_case())
def test_max_pool_matches_torch(case):
    x, dy, size, stride, options, threads = case
    dtype = x.dtype.type
    y, cache = cycnn.max_pool2d_forward(x, size, stride, **options, threads=threads)
    dx = cycnn.max_pool2d_backward(dy, cache, threads=threads)
    xt = t64(x).requires_grad_()
    yt, idx = F.max_pool2d(xt, size, stride or size, **options, return_indices=True)
    yt.backward(t64(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())  # a maximum is one of the inputs
    # the winner of every window: the first maximum in row-major order, as in PyTorch
    np.testing.assert_array_equal(cache.argmax, idx.numpy())
    # |terms|: |dy| summed over the windows each input won (overlapping windows add up)
    xa = t64(x).requires_grad_()
    F.max_pool2d(xa, size, stride or size, **options).backward(t64(np.abs(dy)))
    assert_fair(dx, xt.grad, xa.grad, dtype, "dx")


@FUZZ
@given(pool_case(dilation=False), st.booleans(), st.sampled_from([None, None, 1, 3, 7]))
def test_avg_pool_matches_torch(case, count_include_pad, divisor_override):
    x, dy, size, stride, options, threads = case
    options.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    dtype = x.dtype.type
    y, cache = cycnn.avg_pool2d_forward(x, size, stride, **options, threads=threads)
    dx = cycnn.avg_pool2d_backward(dy, cache, threads=threads)
    xt = t64(x).requires_grad_()
    yt = F.avg_pool2d(xt, size, stride or size, **options)
    yt.backward(t64(dy))
    ax, ady = t64(np.abs(x)).requires_grad_(), t64(np.abs(dy))
    ya = F.avg_pool2d(ax, size, stride or size, **options)
    (ya * ady).sum().backward()
    assert_fair(y, yt.detach(), ya.detach(), dtype, "y")
    assert_fair(dx, xt.grad, ax.grad, dtype, "dx")


# --------------------------------------------------------------------------- dense

@st.composite
def dense_case(draw):
    dtype = draw(DTYPE)
    N, D_in, D_out = draw(st.integers(1, 9)), draw(st.integers(1, 40)), draw(st.integers(1, 12))
    return (draw(arrays((N, D_in), dtype)), draw(arrays((D_out, D_in), dtype)),
            draw(arrays((D_out,), dtype)), draw(arrays((N, D_out), dtype)))


@FUZZ
@given(dense_case())
def test_dense_matches_torch(case):
    x, w, b, dy = case
    dtype = x.dtype.type
    y = cycnn.dense_forward(x, w, b)
    dx, dw, db = cycnn.dense_backward(dy, x, w)
    xt, wt, bt = (t64(a).requires_grad_() for a in (x, w, b))
    yt = F.linear(xt, wt, bt)
    yt.backward(t64(dy))
    ax, aw, ab, ady = (t64(np.abs(a)) for a in (x, w, b, dy))
    assert_fair(y, yt.detach(), F.linear(ax, aw, ab), dtype, "y")
    assert_fair(dx, xt.grad, ady @ aw, dtype, "dx")
    assert_fair(dw, wt.grad, ady.T @ ax, dtype, "dw")
    assert_fair(db, bt.grad, ady.sum(0), dtype, "db")


# --------------------------------------------------------------------------- softmax + CE

@st.composite
def ce_case(draw):
    dtype = draw(DTYPE)
    N, K = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    logits = draw(arrays((N, K), dtype))
    logits = logits * dtype(draw(st.sampled_from([1.0, 30.0, 1e3])))  # up to huge logits
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        labels = rng.integers(0, K, N)
    else:
        labels = rng.dirichlet(np.ones(K), N).astype(dtype)
    return logits, labels


@FUZZ
@given(ce_case())
def test_softmax_cross_entropy_matches_torch(case):
    logits, labels = case
    dtype = logits.dtype.type
    loss, dlogits = cycnn.softmax_cross_entropy(logits, labels)
    assert dlogits.dtype == dtype and np.isfinite(loss) and np.isfinite(dlogits).all()
    zt = t64(logits).requires_grad_()
    target = torch.from_numpy(labels) if labels.ndim == 1 else t64(labels)
    lt = F.cross_entropy(zt, target)
    lt.backward()
    N, K = logits.shape
    t = np.eye(K)[labels] if labels.ndim == 1 else labels.astype(np.float64)
    z = logits.astype(np.float64)
    p = np.exp(F.log_softmax(t64(logits), 1).numpy())
    # log p[k] = (z[k] - m) - log(sum_j exp(z[j] - m)), m the row maximum: each term carries
    # rounding of the size of |z[k]| + |m| + 1 (the 1 for the sum, which is at least 1)
    size = np.abs(z) + np.abs(z).max(axis=1, keepdims=True) + 1
    assert_fair(loss, lt.item(), (np.abs(t) * size).sum() / N, dtype, "loss")
    terms = (p * size * np.abs(t).sum(1, keepdims=True) + np.abs(t)) / N
    assert_fair(dlogits, zt.grad, terms, dtype, "dlogits")
