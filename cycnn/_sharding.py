"""A training step on several threads: one shard of the batch per thread.

Run loop by loop, a LeNet-5 step on two threads opens some twenty short parallel regions
(every convolution and pooling loop, each split across the cores) between which the
serial parts (ReLU, the dense layers, the loss, Python) leave the second core idle, and
each region wakes a sleeping thread first. Here the batch is cut instead: with ``T``
threads, thread ``k`` takes samples ``[k*N/T, (k+1)*N/T)`` through every layer, forward
and backward, with the compiled loops and BLAS on that thread alone. The step has one
fork and one join, every phase (the serial ones too) runs on every core, and waiting is
the passive kind (a Python condition variable: a thread that has nothing to do sleeps,
so a loaded machine is not made to wait on a spinning thread).

This only works for layers whose output for a sample depends on that sample alone (no
batch statistics): those whose class says ``per_sample = True``. Each shard runs the
model's own forward and backward passes, on a twin of the model whose layers share the
parameters but keep their own caches and gradients. The parameter gradients are the
shards' sums added in shard order and the loss gradient of shard ``k`` is scaled by
``n_k / N``: the same sums as the unsharded step, in another order, so they agree with it
to rounding, and bit for bit from run to run at one thread count.
"""

from __future__ import annotations

import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _threads

#: fewest samples per shard: below this a shard's loops are too short to pay for a thread
MIN_SHARD = 8

#: whether training steps on several threads are cut into shards (``CYCNN_SHARD_STEPS=1``
#: in the environment); off by default, because on the 2-core machine it was measured on
#: (an Intel Xeon shared with other jobs) whole steps, their loops split across the
#: threads, were faster: an epoch of 3,200 images took 0.35 s against 0.46 s with shards,
#: which also spent 30 % more CPU time. benchmarks/bench_train.py times both.
ENABLED = os.environ.get("CYCNN_SHARD_STEPS", "0") not in ("", "0")

_pool = None
_pool_size = 0
_pool_pid = None
_pool_lock = threading.Lock()


def _executor(workers):
    """The process's shard workers (created once, grown when more are asked for, and
    made again in a forked child, which inherits the pool but not its threads)."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_size < workers or _pool_pid != os.getpid():
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cycnn-shard",
                                       initializer=_threads.pin_this_thread, initargs=(1,))
            _pool_size, _pool_pid = workers, os.getpid()
        return _pool


def shards(model, n, threads):
    """``[(start, stop), ...]`` for a step on ``n`` samples, or None to keep it whole."""
    if not ENABLED or threads < 2 or not all(layer.per_sample for layer in model.layers):
        return None
    k = min(threads, n // MIN_SHARD)
    if k < 2:
        return None
    cuts = [n * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _replica(layer):
    """A layer that shares ``layer``'s parameters but keeps its own cache and gradients."""
    twin = copy.copy(layer)
    twin.grads = {}
    twin.cache = None
    return twin


def _twin(model):
    """The model with every layer replaced by a replica: the model's own forward and
    backward passes, run on another shard into other gradients."""
    twin = copy.copy(model)
    twin.layers = [_replica(layer) for layer in model.layers]
    return twin


def train_step(model, x, y, optimizer, loss, spans):
    """:meth:`Sequential.train_step` with the batch cut at ``spans`` (see the module)."""
    N = x.shape[0]
    models = [model] + [_twin(model) for _ in spans[1:]]
    losses = [loss] + [copy.copy(loss) for _ in spans[1:]]

    def run(k):
        (s0, s1), net, lossk = spans[k], models[k], losses[k]
        logits = net.forward(x[s0:s1])
        value = lossk.forward(logits, y[s0:s1])
        correct = int(np.count_nonzero(logits.argmax(axis=1) == y[s0:s1]))
        dy = lossk.backward()
        dy *= dy.dtype.type((s1 - s0) / N)  # the shard's mean becomes its share of the batch's
        net.backward(dy, need_dx=False)
        return value * (s1 - s0), correct

    pool = _executor(len(spans) - 1)
    with _threads.blas_threads(1), _threads.pinned(1):
        futures = [pool.submit(run, k) for k in range(1, len(spans))]
        first = run(0)
        results = [first] + [f.result() for f in futures]  # in shard order
    for i, layer in enumerate(model.layers):
        for name in layer.grads:
            total = layer.grads[name]
            for twin in models[1:]:
                total = total + twin.layers[i].grads[name]
            layer.grads[name] = total
    optimizer.step(model.parameters(), model.gradients())
    return sum(r[0] for r in results) / N, sum(r[1] for r in results)
