"""Small calls run on one thread (waking a second costs more than it saves), so these
tests lower the size thresholds (the ``always_parallel`` fixture) to force the parallel
loops on small arrays and check they give the one-thread results exactly: every parallel
index owns its output slice and adds its terms in the same order whatever the thread
count, and the BLAS call of the im2col route is the same call either way (``threads=``
sets only cycnn's own loops), so equal inputs give equal bits."""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time

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
# cycnn/_sharding.py: a training step on several threads cuts the batch into one shard per
# thread, shard 0 run here and the others in worker processes. The shards' gradients are
# the same sums as the whole batch's, added in another order, so they agree with the
# whole step to rounding (float64: 1e-12).

@pytest.fixture
def shards_on(monkeypatch):
    """Sharded steps, whatever CYCNN_SHARD_STEPS says in the environment of the tests."""
    monkeypatch.setattr(_sharding, "ENABLED", True)


def _net(seed=0, dtype=np.float64):
    return cycnn.Sequential(
        cycnn.Conv2D(1, 4, 3, rng=seed, dtype=dtype), cycnn.ReLU(), cycnn.MaxPool2D(2),
        cycnn.Conv2D(4, 5, 3, padding=1, rng=seed + 1, dtype=dtype), cycnn.ReLU(),
        cycnn.AvgPool2D(2), cycnn.Flatten(), cycnn.Dense(5 * 2 * 2, 3, rng=seed + 2, dtype=dtype))


def _net_of_every_kind(seed=0, dtype=np.float64):
    """Dilation, groups, a padding mode, a transposed convolution, pooling with padding,
    and the other activations."""
    return cycnn.Sequential(
        cycnn.Conv2D(1, 4, 3, padding=2, dilation=2, padding_mode="reflect", rng=seed,
                     dtype=dtype), cycnn.LeakyReLU(0.1),
        cycnn.Conv2D(4, 4, 3, padding=1, groups=2, rng=seed + 1, dtype=dtype), cycnn.Tanh(),
        cycnn.MaxPool2D(2, padding=1), cycnn.ConvTranspose2D(4, 2, 2, stride=2, rng=seed + 2,
                                                             dtype=dtype), cycnn.Sigmoid(),
        cycnn.AvgPool2D(3, 3), cycnn.Flatten(), cycnn.Dense(2 * 4 * 4, 3, rng=seed + 3,
                                                            dtype=dtype))


def _batch(batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 1, 10, 10)).astype(dtype), rng.integers(0, 3, batch)


def _step(threads, sharded, batch, dtype, monkeypatch, seed=0, net=_net, model=None,
          loss=None):
    x, y = _batch(batch, dtype, seed)
    model = model or net(dtype=dtype)
    monkeypatch.setattr(_sharding, "ENABLED", sharded)
    with _threads_set_to(threads):
        loss, correct = model.train_step(x, y, cycnn.SGD(0.1, momentum=0.9), loss)
    return loss, correct, model


def _assert_same_step(one, other, tol, n_grads=6):
    (loss1, correct1, whole), (loss2, correct2, shard) = one, other
    assert correct2 == correct1
    np.testing.assert_allclose(loss2, loss1, rtol=tol)
    g1, g2 = whole.gradients(), shard.gradients()
    assert list(g2) == list(g1) and len(g1) == n_grads
    for k in g1:
        assert g2[k].dtype == g1[k].dtype
        np.testing.assert_allclose(g2[k], g1[k], rtol=tol, atol=tol, err_msg=k)
    p1, p2 = whole.parameters(), shard.parameters()
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("threads, batch", [(2, 16), (2, 37), (3, 40), (4, 33)])
def test_sharded_step_equals_the_whole_step(threads, batch, dtype, tol, monkeypatch):
    whole = _step(1, False, batch, dtype, monkeypatch)
    shard = _step(threads, True, batch, dtype, monkeypatch)
    assert len(_sharding.shards(shard[2], batch, threads)) == threads
    _assert_same_step(whole, shard, tol)


def test_sharded_step_with_every_kind_of_layer(monkeypatch):
    whole = _step(1, False, 24, np.float64, monkeypatch, net=_net_of_every_kind)
    shard = _step(2, True, 24, np.float64, monkeypatch, net=_net_of_every_kind)
    assert _sharding.shards(shard[2], 24, 2) is not None
    _assert_same_step(whole, shard, 1e-12, n_grads=8)


def test_sharded_step_with_label_smoothing(monkeypatch):
    loss = cycnn.SoftmaxCrossEntropy(label_smoothing=0.2)
    whole = _step(1, False, 32, np.float64, monkeypatch, loss=loss)
    shard = _step(2, True, 32, np.float64, monkeypatch, loss=loss)
    _assert_same_step(whole, shard, 1e-12)


def test_a_sharded_step_is_the_same_bits_every_run(monkeypatch):
    runs = [_step(2, True, 30, np.float32, monkeypatch) for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    p1, p2 = runs[0][2].parameters(), runs[1][2].parameters()
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


def test_a_worker_follows_the_model_it_is_given(monkeypatch):
    """The workers keep their copy of the model between steps; a model converted to
    another dtype, a layer replaced, or another model altogether is sent again."""
    model = _net(dtype=np.float32)
    for _ in range(2):
        _step(2, True, 32, np.float32, monkeypatch, model=model)
    model.astype(np.float64)
    other = _net(dtype=np.float32).astype(np.float64)
    other.load_state_dict(model.state_dict())
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch, model=other),
                      _step(2, True, 32, np.float64, monkeypatch, model=model), 1e-12)
    for m in (model, other):
        m.layers[1] = cycnn.Tanh()
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch, model=other),
                      _step(2, True, 32, np.float64, monkeypatch, model=model), 1e-12)
    fresh = _net(seed=3)
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch, net=lambda dtype: _net(3)),
                      _step(2, True, 32, np.float64, monkeypatch, model=fresh), 1e-12)


def test_more_samples_per_shard_than_the_workers_have_room_for(monkeypatch):
    _sharding.shutdown()
    _step(2, True, 16, np.float64, monkeypatch)
    small = _workers()[0]
    # a shard of 3,000 samples (2.4 MB) outgrows the mapping: a larger worker replaces it
    _assert_same_step(_step(1, False, 6000, np.float64, monkeypatch),
                      _step(2, True, 6000, np.float64, monkeypatch), 1e-12)
    assert _workers()[0] is not small and _workers()[0].nbytes > small.nbytes


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


class _MyReLU(cycnn.ReLU):
    """A layer of the user's own: per sample, but a worker process may not import it."""


@pytest.mark.usefixtures("shards_on")
def test_whole_steps_where_sharding_cannot_or_does_not_pay():
    model = _net()
    y = np.zeros(64, int)
    assert _sharding.shards(model, 64, 1) is None  # one thread
    assert _sharding.shards(model, 2 * _sharding.MIN_SHARD - 1, 2) is None  # shards too small
    assert len(_sharding.shards(model, 3 * _sharding.MIN_SHARD, 4)) == 3  # as many as fit
    mixed = cycnn.Sequential(cycnn.Flatten(), _BatchMean(), cycnn.Dense(4, 3, rng=0))
    assert _sharding.shards(mixed, 64, 2) is None  # a layer that reads other samples
    custom = cycnn.Sequential(cycnn.Flatten(), _MyReLU(), cycnn.Dense(4, 3, rng=0))
    assert _sharding.shards(custom, 64, 2) is None
    # losses whose batch mean is not the shards' means weighted by their sizes
    for loss, labels in [(cycnn.SoftmaxCrossEntropy(weight=np.ones(3)), y),
                         (cycnn.SoftmaxCrossEntropy(reduction="sum"), y),
                         (cycnn.SoftmaxCrossEntropy(ignore_index=2), y + 2 * (y == 0)),
                         (_OtherLoss(), y)]:
        assert _sharding.shards(model, 64, 2, loss, labels) is None, loss
    assert _sharding.shards(model, 64, 2, cycnn.SoftmaxCrossEntropy(ignore_index=2), y)
    assert _sharding.shards(model, 64, 2, cycnn.SoftmaxCrossEntropy(label_smoothing=0.1), y)


class _OtherLoss(cycnn.SoftmaxCrossEntropy):
    """A loss of the user's own."""


def test_a_step_with_an_ignored_label_is_whole_and_right(monkeypatch):
    loss = cycnn.SoftmaxCrossEntropy(ignore_index=1)
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch, loss=loss),
                      _step(2, True, 32, np.float64, monkeypatch, loss=loss), 0)


def test_shards_are_on_unless_turned_off(monkeypatch):
    monkeypatch.setattr(_sharding, "ENABLED", False)
    assert _sharding.shards(_net(), 64, 2) is None
    code = "from cycnn import _sharding; print(_sharding.ENABLED)"
    for value, want in (("1", "True"), ("0", "False"), ("", "False"), (None, "True")):
        env = dict(os.environ, CYCNN_SHARD_STEPS=value or "")
        if value is None:
            del env["CYCNN_SHARD_STEPS"]
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.strip() == want, out.stderr


def _workers():
    return [w for w in _sharding._workers if w is not None]


@pytest.mark.usefixtures("shards_on")
def test_each_shard_beyond_the_first_runs_in_its_own_process():
    _sharding.shutdown()
    with _threads_set_to(3):
        _net().train_step(*_batch(48, np.float64), cycnn.SGD(0.1))
        assert cycnn.get_num_threads() == 3  # the caller's default came back
    pids = {w.proc.pid for w in _workers()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(w.proc.poll() is None for w in _workers())  # kept for the next step
    _sharding.shutdown()
    assert not _workers()


def _bad_twin(model):
    twin = _real_twin(model)
    twin.layers[0].stride = (0, 0)  # the worker's copy of the first convolution fails
    return twin


_real_twin = _sharding._twin


@pytest.mark.usefixtures("shards_on")
def test_an_error_in_a_worker_reaches_the_caller_with_its_traceback(monkeypatch):
    _sharding.shutdown()
    monkeypatch.setattr(_sharding, "_twin", _bad_twin)
    with _threads_set_to(2):
        with pytest.raises(cycnn.ShardError, match="(?s)shard of the training step "
                                                   "failed.*Traceback.*stride"):
            _net().train_step(*_batch(32, np.float64), cycnn.SGD(0.1))
        assert cycnn.get_num_threads() == 2
    assert not _workers()  # the failed worker was stopped
    monkeypatch.setattr(_sharding, "_twin", _real_twin)
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch),
                      _step(2, True, 32, np.float64, monkeypatch), 1e-12)


@pytest.mark.usefixtures("shards_on")
@pytest.mark.parametrize("when", ["during the step", "before the step"])
def test_a_worker_that_dies_is_reported_and_replaced(when, monkeypatch):
    """Killed while it works on a shard (one of 3,000 samples: far longer than the kill
    takes), or found dead when the step is sent to it."""
    _step(2, True, 6000, np.float64, monkeypatch)
    w = _workers()[0]
    if when == "during the step":
        real_post = w.post

        def post_then_die(*message):
            real_post(*message)
            w.proc.kill()

        monkeypatch.setattr(w, "post", post_then_die)
    else:
        w.proc.kill()
        w.proc.wait(timeout=10)
        monkeypatch.setattr(w.proc, "poll", lambda: None)  # not noticed before the send
    with pytest.raises(_sharding.ShardError, match=f"pid {w.proc.pid}.* ended"):
        _step(2, True, 6000, np.float64, monkeypatch)
    assert w not in _sharding._workers
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch),
                      _step(2, True, 32, np.float64, monkeypatch), 1e-12)
    assert _workers()[0] is not w


@pytest.mark.usefixtures("shards_on")
def test_an_interrupted_step_never_reads_a_stale_answer(monkeypatch):
    """Ctrl-C during shard 0 leaves the worker's answer unread: the worker is stopped,
    so the next step cannot take that answer for its own."""
    _step(2, True, 32, np.float64, monkeypatch)
    w = _workers()[0]

    def interrupted(*args):
        raise KeyboardInterrupt

    real = _sharding._run_shard
    monkeypatch.setattr(_sharding, "_run_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _step(2, True, 32, np.float64, monkeypatch)
    assert w.proc.wait(timeout=10) is not None
    monkeypatch.setattr(_sharding, "_run_shard", real)
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch, seed=1),
                      _step(2, True, 32, np.float64, monkeypatch, seed=1), 1e-12)


@pytest.mark.usefixtures("shards_on")
def test_a_worker_whose_caller_stopped_listening_ends_quietly(monkeypatch):
    """Its answer goes nowhere: the worker ends with status 0, not a traceback."""
    _step(2, True, 32, np.float64, monkeypatch)
    w = _workers()[0]
    w.recv.close()
    w.views[4].put_step(16, 32, 0.0)
    w.post(_sharding._STEP)
    assert w.proc.wait(timeout=60) == 0
    _sharding.shutdown()


@pytest.mark.usefixtures("shards_on")
def test_ctrl_c_is_left_to_the_calling_process(monkeypatch):
    """A terminal sends SIGINT to the whole process group: the workers ignore it, and
    the caller (fit stops cleanly at the end of the step) decides."""
    _step(2, True, 32, np.float64, monkeypatch)
    w = _workers()[0]
    os.kill(w.proc.pid, signal.SIGINT)
    time.sleep(0.2)
    _assert_same_step(_step(1, False, 32, np.float64, monkeypatch),
                      _step(2, True, 32, np.float64, monkeypatch), 1e-12)
    assert _workers()[0] is w and w.proc.poll() is None


@pytest.mark.usefixtures("shards_on")
def test_where_no_worker_can_start_the_shards_run_here(monkeypatch):
    _sharding.shutdown()
    monkeypatch.setattr(_sharding, "_unavailable", None)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.warns(RuntimeWarning, match="could not start a shard worker.*nonexistent"):
        got = _step(2, True, 32, np.float64, monkeypatch)
    assert not _workers() and _sharding._unavailable
    with _sharding.in_this_process():
        want = _step(2, True, 32, np.float64, monkeypatch)
    _assert_same_step(want, got, 0)


def test_the_workers_end_with_the_process_that_started_them():
    code = ("import numpy as np, cycnn\n"
            "from cycnn import _sharding\n"
            "cycnn.set_num_threads(2)\n"
            "m = cycnn.Sequential(cycnn.Flatten(), cycnn.Dense(4, 3, rng=0))\n"
            "m.train_step(np.ones((32, 1, 2, 2)), np.arange(32) % 3, cycnn.SGD(0.1))\n"
            "print(_sharding._workers[0].proc.pid)\n")
    env = dict(os.environ, CYCNN_SHARD_STEPS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr, out.stderr
    pid = int(out.stdout)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"shard worker {pid} outlived its caller")


@pytest.mark.usefixtures("shards_on")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this OS")
# Python 3.12+ warns that forking a process with threads (the OpenMP pool here) may
# deadlock the child; forking such a process is what this test is about
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_makes_its_own_shard_workers(monkeypatch):
    """A child process forked after a sharded step inherits the pipes to the parent's
    workers; its own sharded steps must start workers of its own."""
    _step(2, True, 32, np.float64, monkeypatch)  # the parent's workers now exist
    ours = {w.proc.pid for w in _workers()}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as workers:
        loss, theirs = workers.apply_async(_child_step).get(timeout=60)
    assert {w.proc.pid for w in _workers() if w.proc.poll() is None} == ours  # untouched
    want = _step(2, True, 32, np.float64, monkeypatch)[0]
    assert loss == want  # same shards, same thread count: the same bits
    assert theirs and not theirs & ours


def _child_step():
    x, y = _batch(32, np.float64)
    cycnn.set_num_threads(2)
    loss = _net().train_step(x, y, cycnn.SGD(0.1, momentum=0.9))[0]
    return loss, {w.proc.pid for w in _workers()}


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_sharded_steps_fall_back_to_this_process_with_the_same_bits(dtype, monkeypatch):
    """StepThreads may run any sharded step with every shard in this process instead of
    in the workers (what it does while the workers do not pay); the shards and the order
    of their sums are the same, so a fit whose steps hop between the two gives the bits
    of a fit on the workers alone. Batch norm is never sharded."""
    monkeypatch.setattr(_sharding, "ENABLED", False)
    assert not _net().steps_depend_on_threads
    monkeypatch.setattr(_sharding, "ENABLED", True)
    assert _net().steps_depend_on_threads
    assert not _every_route().steps_depend_on_threads  # batch norm: whole steps
    x, y = _batch(80, dtype, seed=4)

    class Hopping(_threads.StepThreads):
        here = [True, False, False, True, True, False, True]

        @contextlib.contextmanager
        def step(self, samples):
            self.seen.append(self.here[self.count % len(self.here)])
            with self.one() if self.seen[-1] else contextlib.nullcontext():
                yield
            self.count += 1

    runs = []
    for hopping in (False, True):
        Hopping.seen = []
        if hopping:
            monkeypatch.setattr(cycnn.training, "StepThreads", Hopping)
        with _threads_set_to(2):
            model = _net(dtype=dtype)
            h = model.fit(x, y, epochs=2, batch_size=20,
                          optimizer=cycnn.SGD(0.05, momentum=0.9))
        runs.append((h["loss"], model.state_dict()))
    assert Hopping.seen == (Hopping.here * 2)[:8]  # 8 steps, both ways taken
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[1][1][k], runs[0][1][k], err_msg=k)


@pytest.mark.usefixtures("shards_on")
def test_a_fit_gathers_the_next_batch_while_its_workers_compute(monkeypatch):
    """Each sharded step of a shuffled fit gathers the next batch after its own shard
    (cycnn._sharding.meanwhile); the fit sees the batches it would see without that."""
    monkeypatch.setattr(_threads, "ADAPTIVE", False)  # every step on the workers
    x, y = _batch(70, np.float64, seed=6)
    gathered, ahead = [], [False]
    real_gather, real_meanwhile = cycnn.training._Batches.gather, _sharding.meanwhile

    def gather(batches, b):
        real_gather(batches, b)
        gathered.append(b)

    monkeypatch.setattr(cycnn.training._Batches, "gather", gather)
    monkeypatch.setattr(_sharding, "meanwhile", lambda work: real_meanwhile(work) if ahead[0]
                        else contextlib.nullcontext())
    runs = []
    for on in (False, True):
        ahead[0] = on
        with _threads_set_to(2):
            model = _net()
            h = model.fit(x, y, epochs=2, batch_size=16, optimizer=cycnn.SGD(0.05, momentum=0.9))
        runs.append((h["loss"], model.state_dict()))
    # 5 batches an epoch; the last, of 6 samples, is not sharded (MIN_SHARD = 8)
    assert gathered == [1, 2, 3, 4] * 2
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[1][1][k], runs[0][1][k], err_msg=k)


def test_a_step_in_this_process_takes_its_shards_as_the_workers_would(monkeypatch):
    """Not the whole step's bits (another order of sums), but the sharded step's."""
    x, y = _batch(40, np.float64, seed=2)
    steps = []
    for here in (False, True):
        model = _net()
        monkeypatch.setattr(_sharding, "ENABLED", True)
        with _threads_set_to(2), _sharding.in_this_process() if here \
                else contextlib.nullcontext():
            steps.append((model.train_step(x, y, cycnn.SGD(0.1)), model.gradients()))
    assert steps[0][0] == steps[1][0]
    for k in steps[0][1]:
        np.testing.assert_array_equal(steps[1][1][k], steps[0][1][k], err_msg=k)


def test_a_fit_asks_step_threads_for_every_step(monkeypatch):
    seen = []

    class Counting(_threads.StepThreads):
        @contextlib.contextmanager
        def step(self, samples):
            seen.append((self.n, self.adaptive, samples))
            yield

    monkeypatch.setattr(cycnn.training, "StepThreads", Counting)
    monkeypatch.setattr(_threads, "ADAPTIVE", True)
    for sharded in (False, True):  # sharded steps fall back as well (the test above)
        monkeypatch.setattr(_sharding, "ENABLED", sharded)
        seen.clear()
        with _threads_set_to(2):
            _net().fit(np.zeros((20, 1, 10, 10)), np.zeros(20, int), batch_size=8,
                       optimizer=cycnn.SGD(0.1))
        assert seen == [(2, True, 8), (2, True, 8), (2, True, 4)]
