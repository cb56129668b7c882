"""The fast route of 2x2, stride-2 max pooling's forward pass (cycnn/_fastpool.pyx) gives
exactly what the general loops of cycnn/_pool.pyx give: the same maxima and the same
winners (ties to the first cell in row-major order, a NaN beats every number). Both
routes compare the same numbers and copy one of them, so the results are equal bit for
bit. The backward pass has one route, fed by the winners the forward pass recorded."""

import numpy as np
import pytest

import cycnn
import cycnn.pool as pool
from conftest import DTYPES, needs_openmp


def _both(monkeypatch, x, **kwargs):
    """max_pool2d_forward(x, 2) by the fast route, then by the general loops."""
    fast = cycnn.max_pool2d_forward(x, 2, **kwargs)
    monkeypatch.setattr(pool, "FAST_2X2", False)
    general = cycnn.max_pool2d_forward(x, 2, **kwargs)
    monkeypatch.setattr(pool, "FAST_2X2", True)
    return fast, general


def _check(monkeypatch, x, **kwargs):
    (y1, c1), (y2, c2) = _both(monkeypatch, x, **kwargs)
    assert y1.dtype == x.dtype and y1.shape == y2.shape
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(c1.argmax, c2.argmax)


def _sweep(count, seed):
    """``count`` random (shape, values) pairs: planes from 2x2 to 33x33, odd and even."""
    rng = np.random.default_rng(seed)
    kinds = ["normal", "ties", "nan", "inf"]
    return [((int(rng.integers(1, 5)), int(rng.integers(1, 7)),
              int(rng.integers(2, 34)), int(rng.integers(2, 34))), kinds[k % 4])
            for k in range(count)]


SWEEP = _sweep(48, seed=15)


def _values(shape, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few distinct values: most windows tie
        return rng.integers(0, 3, size=shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    if kind in ("nan", "inf"):
        bad = {"nan": np.nan, "inf": -np.inf}[kind]
        x.flat[rng.choice(x.size, size=max(1, x.size // 7), replace=False)] = bad
    return x


def test_sweep_covers_odd_and_even_planes():
    assert {s[2] % 2 for s, _ in SWEEP} == {0, 1} and {s[3] % 2 for s, _ in SWEEP} == {0, 1}
    assert min(min(s[2:]) for s, _ in SWEEP) == 2


@DTYPES
@pytest.mark.parametrize("shape, kind", SWEEP, ids=lambda v: "x".join(map(str, v))
                         if isinstance(v, tuple) else v)
def test_fast_2x2_matches_the_general_loops(shape, kind, dtype, monkeypatch):
    _check(monkeypatch, _values(shape, kind, dtype, sum(shape)))


@needs_openmp
@DTYPES
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape, kind", SWEEP[:12], ids=lambda v: "x".join(map(str, v))
                         if isinstance(v, tuple) else v)
def test_fast_2x2_on_threads(shape, kind, threads, dtype, always_parallel, monkeypatch):
    _check(monkeypatch, _values(shape, kind, dtype, sum(shape)), threads=threads)


def test_the_fast_route_is_the_one_taken(monkeypatch):
    """size == stride == 2 calls _fastpool; any other window or stride does not."""
    calls = []
    real = pool._fastpool

    class Spy:
        def max_pool2x2_forward(self, *args):
            calls.append(args[0].shape)
            return real.max_pool2x2_forward(*args)

    monkeypatch.setattr(pool, "_fastpool", Spy())
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    cycnn.max_pool2d_forward(x, 2)
    cycnn.max_pool2d_forward(x, (2, 2), (2, 2))
    cycnn.max_pool2d_forward(x, 2, 1)
    cycnn.max_pool2d_forward(x, 3, 2)
    cycnn.max_pool2d_forward(x, (2, 3), 2)
    assert calls == [(6, 8, 8), (6, 8, 8)]


def test_first_of_tied_maxima_and_first_nan_win():
    x = np.array([[[[1.0, 3.0, 5.0, np.nan], [3.0, 3.0, np.nan, np.nan]]]])
    y, cache = cycnn.max_pool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == 3.0 and np.isnan(y[0, 0, 0, 1])
    assert cache.argmax[0, 0, 0].tolist() == [1, 3]  # (0, 1) and (0, 3): the first of each


@pytest.mark.parametrize("at", range(4))
def test_each_cell_of_the_window_can_win(at):
    x = np.zeros((1, 1, 2, 2), np.float32)
    x.flat[at] = 1.0
    y, cache = cycnn.max_pool2d_forward(x, 2)
    assert y.item() == 1.0 and cache.argmax.item() == at


def test_odd_rows_and_columns_get_zero_gradient():
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 7))
    x[0, 0, 4] = x[0, 0, :, 6] = 100.0  # the largest values lie where no window reaches
    y, cache = cycnn.max_pool2d_forward(x, 2)
    assert (y < 100).all()
    dx = cycnn.max_pool2d_backward(np.ones(y.shape), cache)
    assert (dx[0, 0, 4] == 0).all() and (dx[0, 0, :, 6] == 0).all()
    assert dx.sum() == y.size


# --------------------------------------------------------------------------- routing
# The fast loop takes 2x2 windows with stride 2 whose windows all lie inside x (no
# padding, no dilation, and ceil_mode only where it adds no partial window); every other
# case goes to the general loops. Each case is checked against them.

ROUTED = {  # name: (input shape, keyword arguments, whether the fast loop takes it)
    "plain": ((2, 3, 8, 8), {}, True),
    "unbatched": ((3, 8, 8), {}, True),
    "ceil-even": ((2, 3, 8, 8), dict(ceil_mode=True), True),
    "ceil-odd": ((2, 3, 9, 7), dict(ceil_mode=True), False),
    "padding": ((2, 3, 8, 8), dict(padding=1), False),
    "padding-rows": ((2, 3, 8, 8), dict(padding=(1, 0)), False),
    "dilation": ((2, 3, 9, 9), dict(dilation=2), False),
    "stride-1": ((2, 3, 8, 8), dict(stride=1), False),
    "empty-batch": ((0, 3, 8, 8), {}, True),
}


@DTYPES
@pytest.mark.parametrize("name", list(ROUTED))
def test_every_pooling_argument_is_routed_to_loops_that_take_it(name, dtype, monkeypatch):
    shape, kwargs, fast = ROUTED[name]
    calls = []
    real = pool._fastpool

    class Spy:
        def max_pool2x2_forward(self, *args):
            calls.append(args[0].shape)
            return real.max_pool2x2_forward(*args)

    monkeypatch.setattr(pool, "_fastpool", Spy())
    x = _values(shape, "ties", dtype, 4)
    y1, c1 = cycnn.max_pool2d_forward(x, 2, **kwargs)
    assert bool(calls) == fast
    monkeypatch.setattr(pool, "FAST_2X2", False)
    y2, c2 = cycnn.max_pool2d_forward(x, 2, **kwargs)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(c1.argmax, c2.argmax)
    dy = np.random.default_rng(1).standard_normal(y1.shape).astype(dtype)
    np.testing.assert_array_equal(cycnn.max_pool2d_backward(dy, c1),
                                  cycnn.max_pool2d_backward(dy, c2))
