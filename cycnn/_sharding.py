"""A training step on several threads: one shard of the batch per core, each in its own
process.

Run loop by loop, a LeNet-5 step on two threads opens some twenty short parallel regions
(every convolution and pooling loop, each split across the cores); between them the
serial parts (the loss, the optimizer, Python itself) leave the second core idle, and
every region first wakes a sleeping thread. Here the batch is cut instead: with ``T``
threads, shard ``k`` is samples ``[k*N/T, (k+1)*N/T)``, taken through every layer,
forward and backward, with the compiled loops and BLAS on one thread. Shard 0 runs in
the calling process on the model itself; shards 1 to ``T-1`` run in worker processes,
one per shard, started on the first such step and kept for the next ones.

Why processes and not threads: the layers are Python, and two Python threads take
turns holding the interpreter lock. A step has dozens of short compiled calls, each of
which hands the lock over and wakes the other thread, so two threads of shards were
slower than one thread (measured: 3.68 ms against 3.24 ms per LeNet-5 step of 64).
Worker processes have an interpreter each. A step costs them one byte each way
through a pipe; the parameters, the shard's samples, its size, its gradients and its loss
go through one shared memory mapping (an unlinked temporary file, so nothing is left
behind however the process ends). Only the model itself, sent when it changes, and a
worker's error travel as pickled messages. After answering, a worker polls for the next
step for at most :data:`SPIN_NEXT` seconds and then waits in a blocking read, so a worker
with nothing to do takes no CPU from a loaded machine; ``fit`` checks that the workers pay
and otherwise takes the shards in the calling process (:func:`in_this_process`).

Only some models are sharded: every layer must be one of cycnn's built-in layers whose
output for a sample depends on that sample alone (``per_sample = True``: no batch
statistics, no random masks), and the loss the default-weighted mean
:class:`~cycnn.layers.SoftmaxCrossEntropy` with no ignored label. The parameter
gradients are the shards' sums added in shard order, the loss gradient of shard ``k``
being scaled by ``n_k / N``: the same sums as the whole step, in another order, so they
agree with it to rounding, and bit for bit from run to run at one thread count.
"""

from __future__ import annotations

import atexit
import mmap
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
import weakref
from multiprocessing.connection import Connection

import numpy as np

from . import _memory, _threads
from .layers import SoftmaxCrossEntropy

#: fewest samples per shard: below this a shard's loops are too short to pay for a core
MIN_SHARD = 8

#: whether training steps on several threads are cut into shards (``CYCNN_SHARD_STEPS=0``
#: in the environment turns it off)
ENABLED = os.environ.get("CYCNN_SHARD_STEPS", "1") not in ("", "0")

#: bytes between two arrays in the shared mapping (a cache line)
_ALIGN = 64


def model_shardable(model):
    """Whether every layer of ``model`` is a built-in cycnn layer that works sample by
    sample (a custom layer may not be importable in a worker process). The answer is
    kept while the model holds the same layer objects (every step asks again)."""
    seen = _shardable_seen.get(model)
    if seen is not None and _same(seen[0], model.layers):
        return seen[1]
    answer = os.name == "posix" and all(
        layer.per_sample and type(layer).__module__.startswith("cycnn.")
        for layer in model.layers)
    _shardable_seen[model] = (list(model.layers), answer)
    return answer


#: model -> (its layers when last asked, whether it could be sharded)
_shardable_seen = weakref.WeakKeyDictionary()


def _loss_shardable(loss, y):
    """Whether the batch's loss is the shards' losses weighted by their sizes."""
    if type(loss) is not SoftmaxCrossEntropy:
        return False
    o = loss.options
    return o["weight"] is None and o["reduction"] == "mean" and \
        not (y == o["ignore_index"]).any()


def shards(model, n, threads, loss=None, y=None):
    """``[(start, stop), ...]`` for a step on ``n`` samples, or None to keep it whole.

    ``loss`` and the labels ``y`` of the step are checked too when ``loss`` is given."""
    if not ENABLED or threads < 2 or not model_shardable(model):
        return None
    if loss is not None and not _loss_shardable(loss, y):
        return None
    k = min(threads, n // MIN_SHARD)
    if k < 2:
        return None
    cuts = [n * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


# ------------------------------------------------------------------- the shared mapping

def _aligned(nbytes):
    return -(-nbytes // _ALIGN) * _ALIGN


class _Layout:
    """Where each array of a step lives in the shared mapping: every parameter, then
    every gradient (the same shapes), then the shard's samples and labels, then the
    step's numbers (:data:`_CONTROL`)."""

    def __init__(self, model, sample_shape, max_shard):
        self.dtype = np.dtype(model.dtype)
        self.params = []  # (layer index, name, offset, shape)
        end = 0
        for i, layer in enumerate(model.layers):
            for name, p in layer.params.items():
                self.params.append((i, name, end, p.shape))
                end += _aligned(p.nbytes)
        self.grad_offset = end
        end *= 2
        self.x = (end, (max_shard, *sample_shape))
        end += _aligned(max_shard * int(np.prod(sample_shape)) * self.dtype.itemsize)
        self.y = (end, (max_shard,))
        self.control = end + _aligned(max_shard * 8)
        self.nbytes = self.control + 8 * len(_CONTROL)

    def views(self, buf):
        """``(params, grads, x, y, control)`` as arrays on ``buf``: two lists in the order
        of :attr:`params`, the sample and label buffers, and the step's numbers as a
        :class:`_Control`."""
        def at(offset, shape, dtype):
            return np.frombuffer(buf, dtype, int(np.prod(shape)), offset).reshape(shape)

        params = [at(o, s, self.dtype) for _, _, o, s in self.params]
        grads = [at(o + self.grad_offset, s, self.dtype) for _, _, o, s in self.params]
        return (params, grads, at(*self.x, self.dtype), at(*self.y, np.int64),
                _Control(buf, self.control))


#: the numbers of a step in the shared mapping, 8 bytes each: the shard's size and the
#: batch's, how long the worker then polls for the next step, and its answer
_CONTROL = ("n", "N", "spin", "loss", "correct")


class _Control:
    """The step's numbers (:data:`_CONTROL`) at ``offset`` of the mapping ``buf``."""

    def __init__(self, buf, offset):
        self._ints = np.frombuffer(buf, np.int64, len(_CONTROL), offset)
        self._reals = np.frombuffer(buf, np.float64, len(_CONTROL), offset)

    def put_step(self, n, N, spin):
        self._ints[0], self._ints[1], self._reals[2] = n, N, spin

    def step(self):
        """``(n, N, spin)``."""
        return int(self._ints[0]), int(self._ints[1]), float(self._reals[2])

    def put_answer(self, loss, correct):
        self._reals[3], self._ints[4] = loss, correct

    def answer(self):
        """``(summed loss, correct)`` of the shard."""
        return float(self._reals[3]), int(self._ints[4])


def _same(a, b):
    """Whether two lists hold the same objects (not only equal ones), in order."""
    return len(a) == len(b) and all(u is v for u, v in zip(a, b))


# ------------------------------------------------------------------------ the workers

#: seconds the caller polls for a worker's answer before it sleeps in a read (short: on a
#: loaded machine a polling caller takes a CPU the worker may be waiting for)
SPIN_RESULT = 0.0003
#: seconds a worker polls for the next step after answering one before it sleeps (about
#: what the caller spends between two shards: adding, the optimizer, the next batch)
SPIN_NEXT = 0.001


#: what goes through the pipes: one byte per message, a model or an error followed by
#: a pickled message (:class:`multiprocessing.connection.Connection`'s framing)
_MODEL, _STEP, _ANSWER, _ERROR = b"m", b"s", b"a", b"e"


class _Pipe:
    """One end of a pipe that carries single bytes, and pickled messages after some."""

    def __init__(self, fd, readable):
        self.fd = fd
        self.conn = Connection(fd, readable=readable, writable=not readable)
        if readable:
            self.poller = select.poll()
            self.poller.register(fd, select.POLLIN)

    def put(self, kind, message=None):
        """Write the byte ``kind``, then ``message`` pickled if it is given (OSError if
        the other end is closed)."""
        os.write(self.fd, kind)
        if message is not None:
            self.conn.send(message)

    def get(self, spin):
        """``(kind, message)``: the next byte, and the message after it for ``_MODEL``
        and ``_ERROR`` (else None). Polls for up to ``spin`` seconds before it sleeps in
        the read: waking a sleeping reader costs tens of microseconds on a virtual
        machine, a poll one. EOFError when the other end is closed."""
        end = time.perf_counter() + spin
        while not self.poller.poll(0) and time.perf_counter() < end:
            pass
        kind = os.read(self.fd, 1)
        if not kind:
            raise EOFError
        return kind, (self.conn.recv() if kind in (_MODEL, _ERROR) else None)

    def close(self):
        self.conn.close()


class ShardError(RuntimeError):
    """A shard worker process of a training step failed or ended.

    Raised by :meth:`Sequential.train_step` (and so by ``fit``) on several threads, where
    part of the batch runs in a worker process. The message holds the worker's own
    traceback, or its pid and exit status if it ended; the next step starts a new worker.
    """


class _NoWorker(Exception):
    """A worker process could not be started."""


#: why worker processes cannot be started here (then every shard runs in this process)
_unavailable = None


#: what a worker process runs: ``python -c _WORKER_MAIN package_parent rfd wfd mfd``
_WORKER_MAIN = ("import sys\n"
                "sys.path.insert(0, sys.argv[1]) if sys.argv[1] not in sys.path else None\n"
                "from cycnn._sharding import serve\n"
                "serve(*map(int, sys.argv[2:]))\n")


class _Worker:
    """One worker process and its shared mapping, seen from the calling process."""

    def __init__(self, nbytes):
        self.file = tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.file.truncate(nbytes)
        self.nbytes = nbytes
        self.buf = mmap.mmap(self.file.fileno(), nbytes)
        their_in, to_worker = os.pipe()  # (read end, write end)
        from_worker, their_out = os.pipe()
        # the worker imports this very cycnn: its directory goes first on the worker's
        # path unless it is on it already (site-packages is, and must not jump the
        # standard library)
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, CYCNN_SHARD_STEPS="0", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        fds = (their_in, their_out, self.file.fileno())
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_MAIN, package_parent, *map(str, fds)],
                pass_fds=fds, env=env, stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (to_worker, from_worker):
                os.close(fd)
            self.file.close()
            raise
        finally:
            os.close(their_in)
            os.close(their_out)
        self.send = _Pipe(to_worker, readable=False)
        self.recv = _Pipe(from_worker, readable=True)
        self.layers, self.layout, self.views, self.options = [], None, None, None

    def fits(self, model, layout, loss):
        """Whether the worker's copy of the model is ``model`` as it is now (the same
        layer objects, and the layout of this step's mapping: the same parameter arrays)
        and its loss has ``loss``'s options. The list holds references, so no id is ever
        reused."""
        return (self.layout is layout and _same(self.layers, model.layers)
                and self.options == loss.options)

    def configure(self, model, layout, loss):
        """Send the worker its copy of ``model`` and ``loss``'s options (without caches,
        gradients or parameter values: those come through the mapping at every step)."""
        twin = _twin(model)
        for layer in twin.layers:
            layer.params = {k: np.empty(0, p.dtype) for k, p in layer.params.items()}
        self.post(_MODEL, (pickle.dumps(twin, protocol=pickle.HIGHEST_PROTOCOL), layout,
                           loss.options))
        self.layers, self.layout, self.options = list(model.layers), layout, dict(loss.options)
        self.views = layout.views(self.buf)

    def post(self, kind, message=None):
        """Send the byte ``kind`` (and ``message``); a worker that has ended is a
        ShardError."""
        try:
            self.send.put(kind, message)
        except OSError:  # the read end is closed: the worker is gone
            self._ended()

    def result(self):
        """The worker's answer to the step it was sent: ``(summed loss, correct)``."""
        try:
            kind, message = self.recv.get(SPIN_RESULT)
        except (EOFError, OSError):
            self._ended()
        if kind == _ERROR:
            raise ShardError(f"cycnn: a shard of the training step failed in worker process "
                             f"{self.proc.pid}:\n{message}")
        return self.views[4].answer()

    def _ended(self):
        code = self.proc.wait(timeout=10)
        raise ShardError(f"cycnn: the shard worker process (pid {self.proc.pid}) ended "
                         f"during a training step (exit status {code})") from None

    def close(self):
        """Close the pipes (the worker ends when it reads their end) and wait for it."""
        for conn in (self.send, self.recv):
            conn.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.layers = self.layout = self.views = None
        self.file.close()  # the mapping itself goes when the last view of it does


_workers: list = []
_workers_pid = None
_lock = threading.Lock()


#: ``(params, layout)`` of the last sharded step
_last_layout = None


def _layout_for(model, params, sample_shape, max_shard):
    """The :class:`_Layout` for a step: the last step's if it was made for the same
    parameter arrays (so a worker that has it has this model's parameters) and has room
    for shards of ``max_shard`` samples of ``sample_shape``."""
    global _last_layout
    if _last_layout is not None:
        last_params, layout = _last_layout
        if _same(last_params, params) and layout.x[1][1:] == sample_shape \
                and layout.x[1][0] >= max_shard:
            return layout
    layout = _Layout(model, sample_shape, max_shard)
    _last_layout = (params, layout)
    return layout


def _get_workers(count, nbytes):
    """``count`` workers whose mappings hold ``nbytes``; new ones replace those too small,
    and a forked child starts its own (it inherits the parent's pipes, not its workers)."""
    global _workers, _workers_pid
    if _workers_pid != os.getpid():
        _workers, _workers_pid = [], os.getpid()
    for i, w in enumerate(_workers[:count]):
        if w is not None and (w.nbytes < nbytes or w.proc.poll() is not None):
            _discard(i)
    while len(_workers) < count:
        _workers.append(None)
    for i in range(count):
        if _workers[i] is None:
            try:
                _workers[i] = _Worker(max(nbytes, 1 << 20) * 2)  # room to grow
            except OSError as e:  # no interpreter to start, no shared memory, ...
                raise _NoWorker(f"{type(e).__name__}: {e}") from e
    return _workers[:count]


def _discard(i):
    """Stop worker ``i`` (it may be mid-step: its answer is never read)."""
    w = _workers[i]
    _workers[i] = None
    if w is not None:
        if w.proc.poll() is None:
            w.proc.kill()
        w.close()


def shutdown():
    """Stop every worker process (they also stop when this process ends)."""
    with _lock:
        if _workers_pid == os.getpid():
            for i in range(len(_workers)):
                _discard(i)
            _workers.clear()


atexit.register(shutdown)


def _twin(model):
    """A copy of ``model`` whose layers share its parameters but keep no cache and no
    gradients (what is pickled for a worker)."""
    import copy

    twin = copy.copy(model)
    twin.layers = []
    for layer in model.layers:
        t = copy.copy(layer)
        t.grads, t.cache = {}, None
        twin.layers.append(t)
    return twin


def _run_shard(net, loss, x, y, N):
    """Forward, loss and backward of one shard; returns (summed loss, correct)."""
    logits = net.forward(x)
    value = loss.forward(logits, y)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
    dy = loss.backward()
    dy *= dy.dtype.type(x.shape[0] / N)  # the shard's mean becomes its share of the batch's
    net.backward(dy, need_dx=False)
    return value * x.shape[0], correct


_here = threading.local()


def in_this_process():
    """Inside the block, sharded steps run every shard in the calling process, one after
    the other: the same shards, summed in the same order, so the same bits as with the
    workers, at one core's speed (what ``fit`` falls back to while the workers do not
    pay, see :class:`cycnn._threads.StepThreads`)."""
    return _threads.held(_here, "on", True, default=False)


def meanwhile(work):
    """Inside the block, a sharded step on worker processes calls ``work()`` once, after
    the calling process's own shard, while the workers may still compute theirs: ``fit``
    gathers the next batch there (work the calling process would do anyway before the
    next step, when the workers have nothing to do)."""
    return _threads.held(_here, "meanwhile", work)


def train_step(model, x, y, optimizer, loss, spans):
    """:meth:`Sequential.train_step` with the batch cut at ``spans`` (see the module)."""
    global _unavailable
    if getattr(_here, "on", False) or _unavailable:
        return _train_step_here(model, x, y, optimizer, loss, spans)
    with _lock:
        try:
            return _train_step(model, x, y, optimizer, loss, spans)
        except _NoWorker as e:
            _unavailable = str(e)
    warnings.warn(f"cycnn: could not start a shard worker process ({_unavailable}); "
                  "sharded training steps run in this process from now on", RuntimeWarning,
                  stacklevel=3)
    return _train_step_here(model, x, y, optimizer, loss, spans)


def _train_step_here(model, x, y, optimizer, loss, spans):
    N = x.shape[0]
    twin = _twin(model)
    with _threads.blas_threads(1), _threads.pinned(1):
        s0, s1 = spans[0]
        results = [_run_shard(model, loss, x[s0:s1], y[s0:s1], N)]
        grads = []
        for s0, s1 in spans[1:]:
            results.append(_run_shard(twin, SoftmaxCrossEntropy(**loss.options),
                                      _as_sent(x[s0:s1]), _as_sent(y[s0:s1], np.int64), N))
            grads.append([twin.layers[i].grads[k] for i, layer in enumerate(model.layers)
                          for k in layer.params])
    _add_and_step(model, grads, optimizer)
    return sum(r[0] for r in results) / N, sum(r[1] for r in results)


def _as_sent(a, dtype=None):
    """A copy of ``a`` as a worker receives it: in a fresh, 64-byte aligned buffer (so a
    loop whose rounding depends on where its data start sees the same start)."""
    dtype = np.dtype(dtype or a.dtype)
    raw = np.empty(a.size * dtype.itemsize + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    out = raw[start:start + a.size * dtype.itemsize].view(dtype).reshape(a.shape)
    np.copyto(out, a)
    return out


def _add_and_step(model, shard_grads, optimizer):
    """Add each shard's gradients to the model's own (shard 0's), in shard order, then
    take the optimizer step. ``shard_grads`` holds one list per shard beyond the first,
    in the order of the model's parameters."""
    names = [(i, k) for i, layer in enumerate(model.layers) for k in layer.params]
    for j, (i, k) in enumerate(names):
        total = model.layers[i].grads[k]  # this step's own array: nothing else holds it
        for g in shard_grads:
            np.add(total, g[j], out=total)
    optimizer.step(model.parameters(), model.gradients())


def _train_step(model, x, y, optimizer, loss, spans):
    N = x.shape[0]
    max_shard = max(b - a for a, b in spans)
    params = [p for layer in model.layers for p in layer.params.values()]
    layout = _layout_for(model, params, x.shape[1:], max_shard)
    workers = _get_workers(len(spans) - 1, layout.nbytes)
    sent = []
    try:
        for w, (s0, s1) in zip(workers, spans[1:]):
            sent.append(w)  # from here on its pipe may hold part of a message
            if not w.fits(model, layout, loss):
                w.configure(model, layout, loss)
            wp, _, wx, wy, control = w.views
            for dst, src in zip(wp, params):
                np.copyto(dst, src)
            np.copyto(wx[:s1 - s0], x[s0:s1])
            np.copyto(wy[:s1 - s0], y[s0:s1])
            control.put_step(s1 - s0, N, SPIN_NEXT)
            w.post(_STEP)
        with _threads.blas_threads(1), _threads.pinned(1):
            s0, s1 = spans[0]
            first = _run_shard(model, loss, x[s0:s1], y[s0:s1], N)
        work = getattr(_here, "meanwhile", None)
        if work is not None:
            work()
        results = [first] + [w.result() for w in sent]  # in shard order
    except BaseException:
        for i, w in enumerate(_workers):
            if w in sent:
                _discard(i)  # its answer may still come: never read a stale one
        raise
    _add_and_step(model, [w.views[1] for w in sent], optimizer)
    return sum(r[0] for r in results) / N, sum(r[1] for r in results)


# ---------------------------------------------------------------- inside a worker

def serve(rfd, wfd, mfd):
    """The worker process's loop: build the model it is sent, run the shards it is sent,
    until the calling process closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the calling process
    _threads.set_num_threads(1)
    _memory.keep_freed_memory()
    recv, send = _Pipe(rfd, readable=True), _Pipe(wfd, readable=False)
    buf = mmap.mmap(mfd, os.fstat(mfd).st_size)
    net = views = layout = loss = None
    spin = 0.0
    while True:
        try:
            kind, message = recv.get(spin)
        except (EOFError, OSError):
            return
        try:
            if kind == _MODEL:
                twin, layout, options = message
                net, loss = pickle.loads(twin), SoftmaxCrossEntropy(**options)
                views = layout.views(buf)
                for (i, name, _, _), p in zip(layout.params, views[0]):
                    net.layers[i].params[name] = p
                net.train()
                continue
            n, N, spin = views[4].step()
            value, correct = _run_shard(net, loss, views[2][:n], views[3][:n], N)
            for (i, name, _, _), g in zip(layout.params, views[1]):
                np.copyto(g, net.layers[i].grads[name])
            views[4].put_answer(value, correct)
            answer = (_ANSWER,)
        except BaseException:
            answer = (_ERROR, traceback.format_exc())
        try:
            send.put(*answer)
        except OSError:  # the calling process has gone: nobody is left to answer
            return
