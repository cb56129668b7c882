"""Small calls run on one thread (waking a second costs more than it saves), so these
tests lower the size thresholds (the ``always_parallel`` fixture) to force the parallel
loops on small arrays and check they give the one-thread results exactly: every parallel
index owns its output slice and adds its terms in the same order whatever the thread
count, and the BLAS call of the im2col route is the same call either way (``threads=``
sets only cycnn's own loops), so equal inputs give equal bits."""

import numpy as np
import pytest

import cycnn
import cycnn.conv
import cycnn.pool
from conftest import needs_openmp


def test_threads_for_uses_one_thread_below_the_threshold():
    assert cycnn.conv._threads_for(cycnn.conv.PARALLEL_MIN_ELEMENTS - 1, 2) == 1
    assert cycnn.conv._threads_for(cycnn.conv.PARALLEL_MIN_ELEMENTS, 2) == 2
    assert cycnn.pool._threads_for(cycnn.pool.PARALLEL_MIN_ELEMENTS - 1, 2) == 1
    assert cycnn.pool._threads_for(cycnn.pool.PARALLEL_MIN_ELEMENTS, 2) == 2


@needs_openmp
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_im2col_route_on_two_threads_matches_one(always_parallel, dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 3, 11, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y1 = cycnn.conv2d_forward(x, w, b, (2, 1), 1, threads=1, algorithm="im2col")
    y2 = cycnn.conv2d_forward(x, w, b, (2, 1), 1, threads=2, algorithm="im2col")
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape).astype(dtype)
    g1 = cycnn.conv2d_backward(dy, x, w, (2, 1), 1, threads=1, algorithm="im2col")
    g2 = cycnn.conv2d_backward(dy, x, w, (2, 1), 1, threads=2, algorithm="im2col")
    for a, b_ in zip(g1, g2):
        tol = 1e-5 if dtype == np.float32 else 1e-12  # BLAS may split its sums differently
        np.testing.assert_allclose(a, b_, rtol=tol, atol=tol)


@needs_openmp
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("size,stride", [(2, None), (3, 2), (3, 1)], ids=["2s2", "3s2", "3s1"])
def test_pooling_on_two_threads_matches_one(always_parallel, kind, size, stride):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 5, 9, 8))
    fwd = getattr(cycnn, f"{kind}_pool2d_forward")
    bwd = getattr(cycnn, f"{kind}_pool2d_backward")
    y1, c1 = fwd(x, size, stride, threads=1)
    y2, c2 = fwd(x, size, stride, threads=2)
    np.testing.assert_array_equal(y1, y2)
    dy = rng.standard_normal(y1.shape)
    np.testing.assert_array_equal(bwd(dy, c1, threads=1), bwd(dy, c2, threads=2))


def test_fit_runs_blas_on_one_thread_and_restores_it():
    """During fit the compiled loops own the cores: NumPy's BLAS is held to one thread
    (read back through threadpoolctl from inside the loop), and the caller's limit
    returns afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("NumPy reports no BLAS library to threadpoolctl")
    seen = []
    model = cycnn.Sequential(cycnn.Flatten(), cycnn.Dense(4, 3, rng=0))
    x = np.random.default_rng(0).standard_normal((8, 1, 2, 2)).astype(np.float32)
    y = np.arange(8) % 3
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        model.fit(x, y, epochs=1, batch_size=4, optimizer=cycnn.SGD(0.1),
                  on_epoch_end=lambda epoch, history: seen.append(blas_threads()))
        assert seen == [[1] * len(before)]
        assert blas_threads() == before
