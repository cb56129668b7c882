"""Small calls run on one thread (waking a second costs more than it saves), so these
tests lower the size thresholds (the ``always_parallel`` fixture) to force the parallel
loops on small arrays and check they give the one-thread results exactly: every parallel
index owns its output slice and adds its terms in the same order whatever the thread
count, and the BLAS call of the im2col route is the same call either way (``threads=``
sets only cycnn's own loops), so equal inputs give equal bits."""

import contextlib
import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import cycnn
import cycnn.conv
import cycnn.pool
import cycnn.training
from conftest import needs_openmp
from cycnn import _sharding, _threads


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


# --------------------------------------------------------------------------- sharded steps
# cycnn/_sharding.py: with CYCNN_SHARD_STEPS=1, a training step on several threads cuts
# the batch into one shard per thread. The shards' gradients are the same sums as the
# whole batch's, added in another order, so they agree with the whole step to rounding
# (float64: 1e-12).

@pytest.fixture
def shards_on(monkeypatch):
    """Sharded steps, as CYCNN_SHARD_STEPS=1 asks (they are off by default)."""
    monkeypatch.setattr(_sharding, "ENABLED", True)


def _net(seed=0, dtype=np.float64):
    return cycnn.Sequential(
        cycnn.Conv2D(1, 4, 3, rng=seed, dtype=dtype), cycnn.ReLU(), cycnn.MaxPool2D(2),
        cycnn.Conv2D(4, 5, 3, padding=1, rng=seed + 1, dtype=dtype), cycnn.ReLU(),
        cycnn.AvgPool2D(2), cycnn.Flatten(), cycnn.Dense(5 * 2 * 2, 3, rng=seed + 2, dtype=dtype))


def _net_of_every_kind(seed=0, dtype=np.float64):
    """Dilation, groups, a padding mode, a transposed convolution, pooling with padding."""
    return cycnn.Sequential(
        cycnn.Conv2D(1, 4, 3, padding=2, dilation=2, padding_mode="reflect", rng=seed,
                     dtype=dtype), cycnn.ReLU(),
        cycnn.Conv2D(4, 4, 3, padding=1, groups=2, rng=seed + 1, dtype=dtype),
        cycnn.MaxPool2D(2, padding=1), cycnn.ConvTranspose2D(4, 2, 2, stride=2, rng=seed + 2,
                                                             dtype=dtype),
        cycnn.AvgPool2D(3, 3), cycnn.Flatten(), cycnn.Dense(2 * 4 * 4, 3, rng=seed + 3,
                                                            dtype=dtype))


def _step(threads, sharded, batch, dtype, monkeypatch, seed=0, net=_net):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 10, 10)).astype(dtype)
    y = rng.integers(0, 3, batch)
    model = net(dtype=dtype)
    monkeypatch.setattr(_sharding, "ENABLED", sharded)
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(threads)
    try:
        loss, correct = model.train_step(x, y, cycnn.SGD(0.1, momentum=0.9))
    finally:
        cycnn.set_num_threads(old)
    return loss, correct, model


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("threads, batch", [(2, 16), (2, 37), (3, 40), (4, 33)])
def test_sharded_step_equals_the_whole_step(threads, batch, dtype, tol, monkeypatch):
    loss1, correct1, whole = _step(1, False, batch, dtype, monkeypatch)
    loss2, correct2, shard = _step(threads, True, batch, dtype, monkeypatch)
    assert _sharding.shards(shard, batch, threads) is not None
    assert correct2 == correct1
    np.testing.assert_allclose(loss2, loss1, rtol=tol)
    g1, g2 = whole.gradients(), shard.gradients()
    assert list(g2) == list(g1) and len(g1) == 6
    for k in g1:
        assert g2[k].dtype == dtype
        np.testing.assert_allclose(g2[k], g1[k], rtol=tol, atol=tol)
    p1, p2 = whole.parameters(), shard.parameters()
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], rtol=tol, atol=tol)


def test_sharded_step_with_every_kind_of_layer(monkeypatch):
    loss1, correct1, whole = _step(1, False, 24, np.float64, monkeypatch, net=_net_of_every_kind)
    loss2, correct2, shard = _step(2, True, 24, np.float64, monkeypatch, net=_net_of_every_kind)
    assert _sharding.shards(shard, 24, 2) is not None and correct1 == correct2
    np.testing.assert_allclose(loss2, loss1, rtol=1e-12)
    g1, g2 = whole.gradients(), shard.gradients()
    assert list(g1) == list(g2) and len(g1) == 8
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-12, atol=1e-12)


def test_a_sharded_step_is_the_same_bits_every_run(monkeypatch):
    runs = [_step(2, True, 30, np.float32, monkeypatch) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    p1, p2 = runs[0][2].parameters(), runs[1][2].parameters()
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


@pytest.mark.usefixtures("shards_on")
def test_shards_cover_the_batch_in_order():
    model = _net()
    for n, threads in [(16, 2), (17, 2), (100, 3), (33, 4), (64, 2)]:
        spans = _sharding.shards(model, n, threads)
        assert spans[0][0] == 0 and spans[-1][1] == n and len(spans) == threads
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        sizes = [b - a for a, b in spans]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= _sharding.MIN_SHARD


class _BatchMean(cycnn.Layer):
    """A layer that mixes samples (subtracts the batch mean): it must not be sharded."""

    def forward(self, x):
        return x - x.mean(axis=0)

    def backward(self, dy, need_dx=True):
        return dy - dy.mean(axis=0)


@pytest.mark.usefixtures("shards_on")
def test_whole_steps_where_sharding_cannot_or_does_not_pay():
    model = _net()
    assert _sharding.shards(model, 64, 1) is None  # one thread
    assert _sharding.shards(model, 2 * _sharding.MIN_SHARD - 1, 2) is None  # shards too small
    assert len(_sharding.shards(model, 3 * _sharding.MIN_SHARD, 4)) == 3  # as many as fit
    mixed = cycnn.Sequential(cycnn.Flatten(), _BatchMean(), cycnn.Dense(4, 3, rng=0))
    assert _sharding.shards(mixed, 64, 2) is None  # a layer that reads other samples


def test_shards_are_off_unless_asked_for(monkeypatch):
    monkeypatch.setattr(_sharding, "ENABLED", False)
    assert _sharding.shards(_net(), 64, 2) is None
    code = "from cycnn import _sharding; print(_sharding.ENABLED)"
    for value, want in (("1", "True"), ("0", "False"), ("", "False")):
        env = dict(os.environ, CYCNN_SHARD_STEPS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.strip() == want, out.stderr


@pytest.mark.usefixtures("shards_on")
def test_each_shard_runs_its_loops_on_its_own_thread(monkeypatch):
    """Inside a shard the kernels default to one thread (the shards are the parallel
    work); the caller's default comes back after the step."""
    seen = []

    class Spy(cycnn.ReLU):
        def forward(self, x):
            seen.append((threading.current_thread().name, cycnn.get_num_threads()))
            return super().forward(x)

    model = cycnn.Sequential(cycnn.Flatten(), Spy(), cycnn.Dense(4, 3, rng=0))
    x = np.random.default_rng(0).standard_normal((32, 1, 2, 2))
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(2)
    try:
        model.train_step(x, np.arange(32) % 3, cycnn.SGD(0.1))
        assert cycnn.get_num_threads() == 2
    finally:
        cycnn.set_num_threads(old)
    assert sorted(n for _, n in seen) == [1, 1]
    assert len({name for name, _ in seen}) == 2  # two threads took a shard each


@pytest.mark.usefixtures("shards_on")
def test_an_error_in_a_shard_reaches_the_caller(monkeypatch):
    class Fails(cycnn.ReLU):
        def forward(self, x):
            if threading.current_thread() is not threading.main_thread():
                raise FloatingPointError("shard failed")
            return super().forward(x)

    model = cycnn.Sequential(cycnn.Flatten(), Fails(), cycnn.Dense(4, 3, rng=0))
    x = np.random.default_rng(0).standard_normal((32, 1, 2, 2))
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(2)
    try:
        with pytest.raises(FloatingPointError, match="shard failed"):
            model.train_step(x, np.arange(32) % 3, cycnn.SGD(0.1))
        assert cycnn.get_num_threads() == 2  # the caller's pin was undone
    finally:
        cycnn.set_num_threads(old)


@pytest.mark.usefixtures("shards_on")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this OS")
def test_a_forked_child_makes_its_own_shard_workers(monkeypatch):
    """A child process forked after a sharded step inherits the worker pool but not its
    threads; its own sharded steps must not wait for workers that do not exist."""
    _step(2, True, 32, np.float64, monkeypatch)  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as workers:
        loss = workers.apply_async(_child_step).get(timeout=60)
    want = _step(2, True, 32, np.float64, monkeypatch)[0]
    assert loss == want  # same shards, same thread count: the same bits


def _child_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 10, 10))
    y = rng.integers(0, 3, 32)
    cycnn.set_num_threads(2)
    return _net().train_step(x, y, cycnn.SGD(0.1, momentum=0.9))[0]


def test_the_built_in_layers_say_whether_they_are_per_sample():
    from cycnn.layers import LAYERS
    # batch norm uses the batch's statistics, and dropout draws one mask for the whole
    # batch (a shard would get other masks): those two must see the whole batch
    whole_batch = {name for name, cls in LAYERS.items() if not cls.per_sample}
    assert whole_batch == {"BatchNorm1D", "BatchNorm2D", "Dropout"}
    assert not cycnn.Layer.per_sample  # a new layer is whole-batch until it says otherwise


# --------------------------------------------------------------------------- StepThreads

@contextlib.contextmanager
def _threads_set_to(n):
    """Inside the block, cycnn's default thread count is n; the old one comes back."""
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(n)
    try:
        yield
    finally:
        cycnn.set_num_threads(old)


def _every_route(seed=0, dtype=np.float64):
    """The fast convolution route and the im2col one, batch norm of both kinds, dropout,
    both poolings, a transposed convolution and the activations with compiled masks."""
    return cycnn.Sequential(
        cycnn.Conv2D(1, 6, 3, rng=seed, dtype=dtype), cycnn.BatchNorm2D(6, dtype=dtype),
        cycnn.ReLU(), cycnn.MaxPool2D(2),
        cycnn.Conv2D(6, 4, 3, padding=1, groups=2, padding_mode="reflect", rng=seed + 1,
                     dtype=dtype), cycnn.LeakyReLU(), cycnn.AvgPool2D(2),
        cycnn.ConvTranspose2D(4, 2, 2, stride=2, rng=seed + 2, dtype=dtype), cycnn.Flatten(),
        cycnn.Dropout(0.3), cycnn.Dense(32, 12, rng=seed + 3, dtype=dtype),
        cycnn.BatchNorm1D(12, dtype=dtype), cycnn.ReLU(),
        cycnn.Dense(12, 3, rng=seed + 4, dtype=dtype))


@needs_openmp
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_a_fit_is_the_same_bits_whatever_threads_its_steps_take(always_parallel, dtype,
                                                                 monkeypatch):
    """StepThreads may move any step of a fit between n threads and one; that is only
    allowed because no result depends on it. Here the steps hop between 1, 2 and 3
    threads and must give the bits of a fit on one thread."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((56, 1, 12, 12)).astype(dtype)
    y = rng.integers(0, 3, 56)

    class Hopping(_threads.StepThreads):
        hops = [3, 1, 2, 1, 3, 3, 2]

        @contextlib.contextmanager
        def step(self, samples):
            with _threads.pinned(self.hops[self.count % len(self.hops)]):
                yield
            self.count += 1

    runs = []
    for hopping in (False, True):
        if hopping:
            monkeypatch.setattr(cycnn.training, "StepThreads", Hopping)
        with _threads_set_to(1):
            model = _every_route(dtype=dtype)
            h = model.fit(x, y, epochs=2, batch_size=8, optimizer=cycnn.SGD(0.05, momentum=0.9))
        runs.append((h["loss"], model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].keys() == runs[1][1].keys()
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[1][1][k], runs[0][1][k], err_msg=k)


def _steps(st, costs, n_steps):
    """Run ``n_steps`` steps of ``st`` on a fake clock: a step on t threads takes
    ``costs(step)[t]`` seconds. Returns the thread count each step ran on."""
    used = []
    for step in range(n_steps):
        with st.step(8):
            used.append(cycnn.get_num_threads())
            st.clock.now += costs(step)[used[-1]]
    return used


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_step_threads_takes_one_thread_while_it_is_faster(monkeypatch):
    monkeypatch.setattr(_threads, "ADAPTIVE", True)
    st = _threads.StepThreads(4, period=10, probes=2, clock=_Clock())
    slow_then_fast = lambda step: {1: 1.0, 4: 2.0} if step < 10 else {1: 2.0, 4: 1.0}  # noqa: E731
    used = _steps(st, slow_then_fast, 25)
    # step 0 warms up; 2 probes on 4 threads, 2 on one; the rest of the period on the faster
    assert used[:10] == [4, 4, 4, 1, 1, 1, 1, 1, 1, 1]
    assert used[10:20] == [1, 4, 4, 1, 1, 4, 4, 4, 4, 4]
    assert used[20:] == [4, 4, 4, 1, 1]


@pytest.mark.parametrize("why", ["adaptive=False", "one thread", "CYCNN_ADAPTIVE_THREADS=0"])
def test_step_threads_keeps_n_when_told_to(monkeypatch, why):
    monkeypatch.setattr(_threads, "ADAPTIVE", why != "CYCNN_ADAPTIVE_THREADS=0")
    n = 1 if why == "one thread" else 3
    st = _threads.StepThreads(n, period=10, probes=2, adaptive=why != "adaptive=False",
                              clock=_Clock())
    with _threads_set_to(n):  # as fit does: n is the default it found
        assert _steps(st, lambda step: {1: 1.0, n: 5.0}, 20) == [n] * 20


def test_sharded_steps_are_never_moved_between_thread_counts(monkeypatch):
    """Shards add their gradients in an order that depends on the thread count, so a fit
    whose steps are sharded keeps them all on n threads; batch norm is never sharded."""
    monkeypatch.setattr(_sharding, "ENABLED", False)
    assert not _net().steps_depend_on_threads
    monkeypatch.setattr(_sharding, "ENABLED", True)
    assert _net().steps_depend_on_threads
    assert not _every_route().steps_depend_on_threads  # batch norm: whole steps
    made = []
    real = _threads.StepThreads
    monkeypatch.setattr(cycnn.training, "StepThreads",
                        lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    monkeypatch.setattr(_threads, "ADAPTIVE", True)
    with _threads_set_to(2):
        _net().fit(np.zeros((16, 1, 10, 10)), np.zeros(16, int), batch_size=16,
                   optimizer=cycnn.SGD(0.1))
    assert len(made) == 1 and made[0].n == 2 and not made[0].adaptive


def test_a_fit_asks_step_threads_for_every_step(monkeypatch):
    seen = []

    class Counting(_threads.StepThreads):
        @contextlib.contextmanager
        def step(self, samples):
            seen.append((self.n, self.adaptive, samples))
            yield

    monkeypatch.setattr(cycnn.training, "StepThreads", Counting)
    monkeypatch.setattr(_threads, "ADAPTIVE", True)
    with _threads_set_to(2):
        _net().fit(np.zeros((20, 1, 10, 10)), np.zeros(20, int), batch_size=8,
                   optimizer=cycnn.SGD(0.1))
    assert seen == [(2, True, 8), (2, True, 8), (2, True, 4)]
