"""Max and average pooling: the seed's worked example, ties, overlaps, NaN, PyTorch."""

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, torch_or_skip
from cycnn import (
    AvgPoolCache,
    MaxPoolCache,
    avg_pool2d_backward,
    avg_pool2d_forward,
    distribute_value,
    gradcheck,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool_mask,
)

#: the 4x4 input of the lecture's max-pool example (window maxima 6, 8, 3, 4)
SEED_X = np.array([[1, 1, 2, 4],
                   [5, 6, 7, 8],
                   [3, 2, 1, 0],
                   [1, 2, 3, 4]], dtype=np.float64)

#: tolerance per dtype against PyTorch (float32: sums may be added in another order)
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def naive_pool(x, size, stride, mode):
    """The obvious loops: y and the gradient routing for dy, one window at a time."""
    (KH, KW), (sh, sw) = size, stride
    N, C, H, W = x.shape
    OH, OW = (H - KH) // sh + 1, (W - KW) // sw + 1
    y = np.empty((N, C, OH, OW))
    route = np.zeros((N, C, OH, OW, H, W))  # d y[n,c,i,j] / d x[n,c,:,:]
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    win = x[n, c, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    part = route[n, c, i, j, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    if mode == "max":
                        y[n, c, i, j] = win.max()
                        part[np.unravel_index(np.argmax(win), win.shape)] = 1
                    else:
                        y[n, c, i, j] = win.mean()
                        part[...] = 1 / (KH * KW)
    return y, route


def naive_backward(dy, route):
    return np.einsum("ncij,ncijhw->nchw", dy, route)


# --------------------------------------------------------------------------- seed example

def test_seed_max_pool_example_maxima_and_winners(rng):
    y, cache = max_pool2d_forward(SEED_X.reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(y[0, 0], [[6, 8], [3, 4]])
    winners = np.zeros((4, 4), bool)
    winners[1, 1] = winners[1, 3] = winners[2, 0] = winners[3, 3] = True
    np.testing.assert_array_equal(cache.mask()[0, 0], winners)
    dy = rng.standard_normal((1, 1, 2, 2))
    dx = max_pool2d_backward(dy, cache)
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[2, 0], expected[3, 3] = dy.ravel()
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_seed_avg_pool_2x2_gives_every_cell_a_quarter(rng):
    y, cache = avg_pool2d_forward(SEED_X.reshape(1, 1, 4, 4))
    np.testing.assert_allclose(y[0, 0], [[3.25, 5.25], [2.0, 2.0]], rtol=1e-15)
    dy = rng.standard_normal((1, 1, 2, 2))
    dx = avg_pool2d_backward(dy, cache)
    np.testing.assert_allclose(dx[0, 0], np.kron(dy[0, 0], np.ones((2, 2))) / 4, rtol=1e-15)


def test_avg_pool_3x3_gives_every_cell_a_ninth(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    y, cache = avg_pool2d_forward(x, 3)
    dy = rng.standard_normal(y.shape)
    dx = avg_pool2d_backward(dy, cache)
    np.testing.assert_allclose(dx, np.kron(dy, np.ones((3, 3))) / 9, rtol=1e-15)


def test_distribute_value_shares_equally():
    np.testing.assert_array_equal(distribute_value(1.0, 2), np.full((2, 2), 0.25))
    np.testing.assert_allclose(distribute_value(1.0, (3, 3)), np.full((3, 3), 1 / 9), rtol=1e-15)
    assert distribute_value(np.float32(2), (1, 4)).dtype == np.float32
    np.testing.assert_array_equal(distribute_value(2.0, (1, 4)), [[0.5, 0.5, 0.5, 0.5]])


def test_max_pool_mask_marks_the_seed_winners():
    for window, at in [([[1, 1], [5, 6]], (1, 1)), ([[2, 4], [7, 8]], (1, 1)),
                       ([[3, 2], [1, 2]], (0, 0)), ([[1, 0], [3, 4]], (1, 1))]:
        expected = np.zeros((2, 2), bool)
        expected[at] = True
        np.testing.assert_array_equal(max_pool_mask(window), expected)


# --------------------------------------------------------------------------- ties

def test_max_pool_mask_tie_marks_only_the_first_maximum():
    mask = max_pool_mask(np.full((3, 3), 7.0))
    assert mask.sum() == 1 and mask[0, 0]
    mask = max_pool_mask([[1, 9], [9, 9]])
    np.testing.assert_array_equal(mask, [[False, True], [False, False]])


def test_tied_window_sends_its_gradient_to_one_element():
    x = np.full((1, 1, 2, 2), 3.0)
    y, cache = max_pool2d_forward(x)
    dx = max_pool2d_backward(np.array([[[[5.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[5.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("size", [1, 2, 3, (2, 3)], ids=lambda s: f"size={s}")
def test_ties_never_duplicate_the_gradient(rng, size):
    x = rng.integers(0, 3, (3, 2, 9, 10)).astype(np.float64)  # many ties
    y, cache = max_pool2d_forward(x, size)
    dy = rng.standard_normal(y.shape)
    dx = max_pool2d_backward(dy, cache)
    assert np.count_nonzero(cache.win_counts()) == y.size  # one winner per window
    np.testing.assert_allclose(dx.sum(), dy.sum(), rtol=1e-12)
    np.testing.assert_allclose(dx, naive_backward(dy, naive_pool(x, cache.size, cache.stride,
                                                                  "max")[1]), rtol=1e-14)


# --------------------------------------------------------------------------- overlap, remainder

def test_overlapping_windows_accumulate_into_the_shared_winner(rng):
    x = rng.uniform(0, 1, (1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0  # inside all nine 3x3 stride-1 windows
    y, cache = max_pool2d_forward(x, 3, 1)
    dy = rng.standard_normal(y.shape)
    dx = max_pool2d_backward(dy, cache)
    assert cache.win_counts()[0, 0, 2, 2] == 9
    expected = np.zeros((5, 5))
    expected[2, 2] = dy.sum()
    np.testing.assert_allclose(dx[0, 0], expected, rtol=1e-14)


def test_overlapping_avg_pool_adds_shares(rng):
    x = rng.standard_normal((2, 2, 7, 6))
    y, cache = avg_pool2d_forward(x, 3, (2, 1))
    dy = rng.standard_normal(y.shape)
    y_ref, route = naive_pool(x, (3, 3), (2, 1), "avg")
    np.testing.assert_allclose(y, y_ref, rtol=1e-13)
    np.testing.assert_allclose(avg_pool2d_backward(dy, cache), naive_backward(dy, route),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_rows_and_columns_no_window_reaches_are_dropped(rng, pool):
    forward, backward = ((max_pool2d_forward, max_pool2d_backward) if pool == "max"
                         else (avg_pool2d_forward, avg_pool2d_backward))
    x = rng.standard_normal((2, 3, 5, 7))
    y, cache = forward(x, 2)
    assert y.shape == (2, 3, 2, 3)
    dx = backward(rng.standard_normal(y.shape), cache)
    assert dx.shape == x.shape
    assert not dx[:, :, 4, :].any() and not dx[:, :, :, 6].any()


def test_mask_of_a_max_pool_cache_counts_overlapping_wins():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    _, cache = max_pool2d_forward(x, 2, 1)  # every window's max is its bottom-right cell
    counts = np.zeros((4, 4), int)
    counts[1:, 1:] = 1
    np.testing.assert_array_equal(cache.win_counts()[0, 0], counts)
    np.testing.assert_array_equal(cache.mask()[0, 0], counts > 0)
    assert cache.argmax.dtype == np.int64 and cache.argmax.shape == (1, 1, 3, 3)


# --------------------------------------------------------------------------- NaN

def test_nan_in_a_window_makes_its_output_nan_and_takes_the_gradient():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan  # a second NaN in the same window: the first one wins
    y, cache = max_pool2d_forward(x)
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1:, :]).any()
    assert not np.isnan(y[0, 0, 0, 1])
    dx = max_pool2d_backward(np.ones((1, 1, 2, 2)), cache)
    assert dx[0, 0, 0, 1] == 1 and dx[0, 0, 1, 0] == 0 and dx.sum() == 4
    np.testing.assert_array_equal(max_pool_mask(x[0, 0, :2, :2]),
                                  [[False, True], [False, False]])


@pytest.mark.parametrize("at", range(9))
def test_a_nan_anywhere_in_the_window_wins_it(rng, at):
    x = rng.standard_normal((1, 1, 3, 3)) + 100
    x.flat[at] = np.nan
    y, cache = max_pool2d_forward(x, 3)
    assert np.isnan(y[0, 0, 0, 0]) and cache.argmax[0, 0, 0, 0] == at


@DTYPES
def test_nan_propagates_as_in_pytorch(dtype):
    torch = torch_or_skip()
    x = np.random.default_rng(5).standard_normal((2, 2, 6, 6)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    x[1, 0, 0, 0] = np.nan
    y, _ = max_pool2d_forward(x, 3, 1)
    y_t = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_t))
    np.testing.assert_array_equal(y[~np.isnan(y)], y_t[~np.isnan(y_t)])


# --------------------------------------------------------------------------- dtypes, threads

@DTYPES
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_output_dtype_follows_the_input(rng, dtype, pool):
    forward, backward = ((max_pool2d_forward, max_pool2d_backward) if pool == "max"
                         else (avg_pool2d_forward, avg_pool2d_backward))
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    y, cache = forward(x, 3, 2)
    assert y.dtype == dtype
    assert backward(np.ones(y.shape, dtype), cache).dtype == dtype


def test_integer_input_is_pooled_in_float64():
    y, cache = max_pool2d_forward(SEED_X.astype(np.int32).reshape(1, 1, 4, 4))
    assert y.dtype == np.float64 and cache.dtype == np.float64
    assert max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), cache).dtype == np.float64


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_threads_do_not_change_the_result(rng, pool):
    forward, backward = ((max_pool2d_forward, max_pool2d_backward) if pool == "max"
                         else (avg_pool2d_forward, avg_pool2d_backward))
    x = rng.standard_normal((5, 3, 11, 9))
    y1, c1 = forward(x, 3, 1, threads=1)
    y2, c2 = forward(x, 3, 1, threads=2)
    dy = rng.standard_normal(y1.shape)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(backward(dy, c1, threads=1), backward(dy, c2, threads=2))


def test_non_contiguous_input_is_accepted(rng):
    base = rng.standard_normal((4, 3, 8, 8))
    x = base.transpose(0, 1, 3, 2)
    y, _ = max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(y, max_pool2d_forward(np.ascontiguousarray(x), 2)[0])


# --------------------------------------------------------------------------- gradient checks

def distinct_values(rng, shape):
    """A shuffled grid of values 0.01 apart: no ties, so max pooling is differentiable."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.01 - 1.0).reshape(shape)


@pytest.mark.parametrize("size,stride", [(2, None), (3, 2), (3, 1), ((2, 3), (1, 2))],
                         ids=["2x2s2", "3x3s2", "3x3s1", "2x3s1x2"])
def test_max_pool_gradcheck(rng, size, stride):
    x = distinct_values(rng, (2, 2, 7, 8))
    gradcheck(lambda v: max_pool2d_forward(v, size, stride)[0], x,
              lambda dy, v: max_pool2d_backward(dy, max_pool2d_forward(v, size, stride)[1]))


@pytest.mark.parametrize("size,stride", [(2, None), (3, 2), (3, 1), ((2, 3), (1, 2))],
                         ids=["2x2s2", "3x3s2", "3x3s1", "2x3s1x2"])
def test_avg_pool_gradcheck(rng, size, stride):
    x = rng.standard_normal((2, 2, 7, 8))
    gradcheck(lambda v: avg_pool2d_forward(v, size, stride)[0], x,
              lambda dy, v: avg_pool2d_backward(dy, avg_pool2d_forward(v, size, stride)[1]))


# --------------------------------------------------------------------------- PyTorch oracle

def _configs(count, seed):
    """Random pooling problems: odd sizes, windows overlapping or not, uneven remainders."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        KH, KW = (int(k) for k in rng.integers(1, 5, 2))
        sh, sw = (int(s) for s in rng.integers(1, 4, 2))
        H, W = KH + int(rng.integers(0, 9)), KW + int(rng.integers(0, 9))
        N, C = (int(v) for v in rng.integers(1, 4, 2))
        out.append(((N, C, H, W), (KH, KW), (sh, sw)))
    return out


CONFIGS = _configs(60, 3)
CONFIG_IDS = [f"x{'x'.join(map(str, s))}-k{k[0]}x{k[1]}-s{t[0]}x{t[1]}" for s, k, t in CONFIGS]


@pytest.mark.parametrize("pool", ["max", "avg"])
@DTYPES
@pytest.mark.parametrize("shape,size,stride", CONFIGS, ids=CONFIG_IDS)
def test_matches_pytorch_forward_and_backward(shape, size, stride, dtype, pool):
    torch = torch_or_skip()
    rng = np.random.default_rng(hash((shape, size, stride)) % 2**32)
    x = rng.standard_normal(shape).astype(dtype)
    forward, backward, t_pool = (
        (max_pool2d_forward, max_pool2d_backward, torch.nn.functional.max_pool2d)
        if pool == "max" else
        (avg_pool2d_forward, avg_pool2d_backward, torch.nn.functional.avg_pool2d))
    y, cache = forward(x, size, stride)
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t = t_pool(x_t, size, stride)
    assert y.shape == tuple(y_t.shape) and y.dtype == dtype
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    y_t.backward(torch.from_numpy(dy))
    dx = backward(dy, cache)
    assert dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("shape,size,stride", CONFIGS[:20], ids=CONFIG_IDS[:20])
def test_ties_follow_pytorch(shape, size, stride):
    torch = torch_or_skip()
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, shape).astype(np.float64)  # ties everywhere
    y, cache = max_pool2d_forward(x, size, stride)
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t, idx = torch.nn.functional.max_pool2d(x_t, size, stride, return_indices=True)
    np.testing.assert_array_equal(cache.argmax, idx.numpy())
    dy = rng.standard_normal(y.shape)
    y_t.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(max_pool2d_backward(dy, cache), x_t.grad.numpy(),
                               **TOL[np.float64])


def test_naive_loops_agree_without_torch(rng):
    for shape, size, stride in CONFIGS[:15]:
        x = rng.standard_normal(shape)
        dy_shape = None
        for pool, forward, backward in [("max", max_pool2d_forward, max_pool2d_backward),
                                        ("avg", avg_pool2d_forward, avg_pool2d_backward)]:
            y, cache = forward(x, size, stride)
            y_ref, route = naive_pool(x, size, stride, pool)
            np.testing.assert_allclose(y, y_ref, rtol=1e-13)
            dy_shape = y.shape
            dy = rng.standard_normal(dy_shape)
            np.testing.assert_allclose(backward(dy, cache), naive_backward(dy, route),
                                       rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- bad input

def test_window_larger_than_input_is_refused():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: window 5x5 .* larger than the "
                                         r"input plane 4x4 \(x.shape=\(1, 1, 4, 4\)\)"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 5)


def test_window_taller_than_input_is_refused_by_avg_pool():
    with pytest.raises(ValueError, match=r"avg_pool2d_forward: window 3x1"):
        avg_pool2d_forward(np.zeros((1, 1, 2, 9)), (3, 1))


def test_size_below_one_is_refused():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: size must be >= 1, got 0"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 0)


def test_stride_below_one_is_refused():
    with pytest.raises(ValueError, match=r"avg_pool2d_forward: stride must be >= 1, got -1"):
        avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, (1, -1))


def test_non_integer_size_is_a_type_error():
    with pytest.raises(TypeError, match=r"max_pool2d_forward: size must be an integer"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2.0)


def test_x_must_be_3d_or_4d():
    with pytest.raises(ValueError, match=r"max_pool2d_forward: x must be 3-D or 4-D "
                                         r"\(C, H, W\) or \(N, C, H, W\), got shape \(4, 4\)"):
        max_pool2d_forward(np.zeros((4, 4)))


def test_empty_x_is_refused():
    with pytest.raises(ValueError, match=r"avg_pool2d_forward: empty array"):
        avg_pool2d_forward(np.zeros((2, 0, 4, 4)))


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_an_empty_batch_is_fine(pool):
    forward, backward = ((max_pool2d_forward, max_pool2d_backward) if pool == "max"
                         else (avg_pool2d_forward, avg_pool2d_backward))
    y, cache = forward(np.zeros((0, 2, 4, 4)))
    assert y.shape == (0, 2, 2, 2)
    assert backward(np.zeros(y.shape), cache).shape == (0, 2, 4, 4)


def test_dy_from_another_call_shape_is_refused(rng):
    _, cache = max_pool2d_forward(rng.standard_normal((2, 3, 8, 8)), 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: dy must have the forward "
                                         r"output's shape \(2, 3, 4, 4\) .* got dy.shape="
                                         r"\(2, 3, 3, 3\)"):
        max_pool2d_backward(np.zeros((2, 3, 3, 3)), cache)


def test_avg_dy_shape_mismatch_is_refused(rng):
    _, cache = avg_pool2d_forward(rng.standard_normal((2, 3, 8, 8)), 3, 1)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: dy must have .* \(2, 3, 6, 6\)"):
        avg_pool2d_backward(np.zeros((2, 3, 4, 4)), cache)


def test_cache_of_the_other_pool_is_a_type_error(rng):
    y, cache = avg_pool2d_forward(rng.standard_normal((1, 1, 4, 4)))
    with pytest.raises(TypeError, match=r"max_pool2d_backward: cache must be the MaxPoolCache"):
        max_pool2d_backward(y, cache)


@pytest.mark.parametrize("index", [16, -1, -2**63, 2**63 + 3])
def test_edited_argmax_is_refused(rng, index):
    y, cache = max_pool2d_forward(rng.standard_normal((1, 1, 4, 4)))
    argmax = cache.argmax.copy().astype(np.uint64 if index > 2**62 else np.int64)
    argmax[0, 0, 1, 0] = index  # one bad index among good ones
    bad = cache._replace(argmax=argmax)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: cache.argmax must hold"):
        max_pool2d_backward(y, bad)


def test_non_numeric_x_is_a_type_error():
    with pytest.raises(TypeError, match=r"max_pool2d_forward: x must hold real numbers"):
        max_pool2d_forward(np.full((1, 1, 2, 2), "a"))


def test_max_pool_mask_refuses_an_empty_window():
    with pytest.raises(ValueError, match=r"max_pool_mask: window must be a non-empty array"):
        max_pool_mask(np.zeros((0, 2)))


def test_distribute_value_refuses_a_bad_shape():
    with pytest.raises(ValueError, match=r"distribute_value: shape must be >= 1, got 0"):
        distribute_value(1.0, (0, 2))


def test_distribute_value_refuses_an_array_dz():
    with pytest.raises(ValueError, match=r"distribute_value: dz must be a single number"):
        distribute_value(np.ones(3), 2)


def test_caches_are_documented_named_tuples():
    assert MaxPoolCache._fields == ("x_shape", "size", "stride", "argmax", "dtype", "padding",
                                    "dilation", "ceil_mode")
    assert AvgPoolCache._fields == ("x_shape", "size", "stride", "dtype", "padding",
                                    "ceil_mode", "count_include_pad", "divisor_override")
    assert "max_pool2d_forward" in cycnn.__all__ and "MaxPoolCache" in cycnn.__all__


def test_docstring_examples_run():
    import doctest
    import sys

    import cycnn.pool  # noqa: F401

    result = doctest.testmod(sys.modules["cycnn.pool"], extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
