"""The epoch loop: shuffled mini-batches, history, a progress bar and a clean Ctrl-C.

:func:`fit` is what :meth:`Sequential.fit` runs. The gradient step itself belongs to the
model (:meth:`Sequential.train_step`); this module only decides which samples go into
each step and keeps the books, so the loop reads as what it is::

    for epoch in range(initial_epoch, epochs):
        for idx in batches of epoch_order(N, seed, epoch):
            loss, correct = model.train_step(x[idx], y[idx], optimizer)

Two options change what a step sees, both seeded per epoch so that a run resumed at an
epoch boundary repeats the uninterrupted one: ``augment`` transforms each training
batch (with ``np.random.default_rng([seed, epoch, 1])``) and the layers that draw random
numbers (dropout) are reseeded from ``(seed, epoch, 2)``. A ``scheduler`` sets the
learning rate after every step.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time

import numpy as np

from . import _sharding
from ._sharding import ShardError
from ._threads import StepThreads, blas_threads, get_num_threads
from ._validate import as_int
from .layers import SoftmaxCrossEntropy
from .optim import Optimizer
from .schedules import LRScheduler

__all__ = ["fit", "History", "epoch_order", "ShardError"]


class History(dict):
    """Per-epoch metrics from :meth:`Sequential.fit`.

    Keys ``loss`` and ``accuracy`` (training, averaged over the epoch's batches as they
    were seen), ``val_loss`` and ``val_accuracy`` (after each epoch, when validation
    data were given), ``seconds`` (wall time per epoch) and ``samples_per_second``.
    ``interrupted`` is True when Ctrl-C stopped training early; ``epochs_completed``
    counts the full epochs done (including ``initial_epoch``).
    """

    def __init__(self):
        super().__init__(loss=[], accuracy=[], val_loss=[], val_accuracy=[], seconds=[],
                         samples_per_second=[])
        self.interrupted = False
        self.epochs_completed = 0


def epoch_order(n, seed, epoch):
    """The order in which :meth:`Sequential.fit` visits ``n`` samples in ``epoch``
    (with ``shuffle=True``): ``np.random.default_rng([seed, epoch]).permutation(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def fit(model, x, y, epochs=1, batch_size=32, optimizer=None, validation_data=None,
        shuffle=True, seed=0, *, initial_epoch=0, verbose=0, loss=None, on_epoch_end=None,
        augment=None, scheduler=None):
    """Train ``model`` with mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential
    x : array_like, shape (N, ...)
        Inputs; converted once to the model dtype (no copy if already so).
    y : array_like of int, shape (N,)
        Class labels.
    epochs : int
        Index of the last epoch (Keras' meaning): trains epochs ``initial_epoch`` to
        ``epochs - 1``.
    batch_size : int, >= 1
    optimizer : Optimizer
        e.g. ``SGD(lr=0.05, momentum=0.9)``.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch.
    shuffle : bool, default True
        Visit samples in a fresh random order each epoch. The order of epoch ``e``
        comes from ``np.random.default_rng([seed, e])``, so a run resumed at epoch
        ``e`` sees the same batches as an uninterrupted one.
    seed : int, default 0
    initial_epoch : int, default 0
        Epoch to start from (to resume).
    verbose : {0, 1, 2}
        0: silent. 1: a progress bar per epoch on stderr (loss, accuracy, samples/s),
        or one plain line per epoch when stderr is not a terminal. 2: one line per
        epoch.
    loss : SoftmaxCrossEntropy, optional
    on_epoch_end : callable(epoch, history), optional
        Called after each completed epoch (e.g. to save a checkpoint).
    augment : callable(x, rng) -> x, optional
        Applied to every training batch before the step, e.g.
        :class:`cycnn.RandomAffine`; ``rng`` is ``np.random.default_rng([seed, epoch,
        1])``, shared by the epoch's batches in order. Validation data are not augmented.
    scheduler : LRScheduler, optional
        Stepped after every batch (so its step counts are batches), e.g.
        ``OneCycleLR(optimizer, 0.1, total_steps=epochs * ceil(N / batch_size))``.

    Returns
    -------
    History

    Notes
    -----
    Ctrl-C (SIGINT) during ``fit`` finishes the current batch and returns the history
    with ``interrupted = True``; a second Ctrl-C aborts at once. When ``fit`` returns,
    the layers hold no cached activations. While ``fit`` runs, NumPy's BLAS (the dense
    layers' products) uses one thread: the compiled loops own the cores, and two thread
    pools taking turns on them made two-thread training slower than one thread.
    """
    func = "fit"
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{func}: optimizer must be a cycnn optimizer such as "
                        f"SGD(lr=0.01), got {optimizer!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"{func}: augment must be a callable augment(x, rng), such as "
                        f"RandomAffine(), got {augment!r}")
    if scheduler is not None:
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{func}: scheduler must be a cycnn LRScheduler such as "
                            f"CosineAnnealingLR(optimizer, T_max), got {scheduler!r}")
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"{func}: the scheduler was built for another optimizer "
                             f"({scheduler.optimizer!r}), not {optimizer!r}")
    batch_size = as_int(func, "batch_size", batch_size, 1)
    epochs = as_int(func, "epochs", epochs, 1, None)
    initial_epoch = as_int(func, "initial_epoch", initial_epoch, 0, None)
    seed = as_int(func, "seed", seed, 0, None)
    x, out_shape = model.prepare(func, x)
    y = model.labels(func, y, x.shape[0], out_shape)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(f"{func}: validation_data must be a pair (x_val, y_val)")
        xv, _ = model.prepare(func + " (validation_data)", validation_data[0])
        yv = model.labels(func + " (validation_data)", validation_data[1], xv.shape[0],
                          out_shape)
    loss = loss or SoftmaxCrossEntropy()
    N = x.shape[0]
    if N == 0:
        raise ValueError(f"{func}: x holds no samples (x.shape={x.shape})")
    history = History()
    history.epochs_completed = initial_epoch
    # two batch buffers: a sharded step gathers the next batch into one while its workers
    # compute and the other still holds the batch their step came from
    xbufs = [np.empty((min(batch_size, N), *x.shape[1:]), x.dtype) for _ in range(2)] \
        if shuffle else None
    stop = _Interrupt()
    # sharded steps fall back to all their shards in this process (the same bits)
    threads = StepThreads(get_num_threads(), one=_sharding.in_this_process
                          if model.steps_depend_on_threads else None)
    with stop, blas_threads(1):
        for epoch in range(initial_epoch, epochs):
            order = epoch_order(N, seed, epoch) if shuffle else None
            aug_rng = np.random.default_rng([seed, epoch, 1]) if augment is not None else None
            model.reseed((seed, epoch, 2))
            bar = _Progress(verbose, N, f"epoch {epoch + 1}/{epochs}")
            t0 = time.perf_counter()
            total_loss, correct, seen = 0.0, 0, 0
            batches = _Batches(x, y, batch_size, order, xbufs)
            for b in range(len(batches)):
                xb, yb = batches.get(b)
                if augment is not None:
                    xb = augment(xb, aug_rng)
                # on all threads, or on one if it is faster; a sharded step gathers the
                # next batch while it waits for its workers
                with threads.step(yb.shape[0]), \
                        _sharding.meanwhile(functools.partial(batches.gather, b + 1)):
                    batch_loss, batch_correct = model.train_step(xb, yb, optimizer, loss)
                if scheduler is not None:
                    scheduler.step()
                total_loss += batch_loss * yb.shape[0]
                correct += batch_correct
                seen += yb.shape[0]
                bar.update(yb.shape[0], total_loss / seen, correct / seen)
                if stop.requested:
                    break
            seconds = time.perf_counter() - t0
            if stop.requested:
                bar.close(f"interrupted after {seen} of {N} samples")
                history.interrupted = True
                break
            history["loss"].append(total_loss / N)
            history["accuracy"].append(correct / N)
            history["seconds"].append(seconds)
            history["samples_per_second"].append(N / seconds if seconds > 0 else float("inf"))
            extra = ""
            if validation_data is not None:
                vl, va = model.evaluate(xv, yv)
                history["val_loss"].append(vl)
                history["val_accuracy"].append(va)
                extra = f", val_loss {vl:.4f}, val_acc {100 * va:.2f}%"
            history.epochs_completed = epoch + 1
            bar.close(f"loss {total_loss / N:.4f}, acc {100 * correct / N:.2f}%{extra}, "
                      f"{N / max(seconds, 1e-9):.0f} samples/s, {seconds:.1f} s")
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
            if stop.requested:
                history.interrupted = True
                break
    model.clear_cache()  # the last batch's activations: nothing needs them any more
    return history


class _Batches:
    """The batches of an epoch: slices of ``x`` and ``y`` in order, or with an ``order``
    gathered into the two buffers ``bufs`` in turn, so that the next batch can be
    gathered (:meth:`gather`) while the current one is still in use."""

    def __init__(self, x, y, batch_size, order, bufs):
        self.x, self.y, self.size, self.order, self.bufs = x, y, batch_size, order, bufs
        self.starts = range(0, x.shape[0], batch_size)
        self.ahead = None  # (b, batch b) when it was gathered before it was asked for

    def __len__(self):
        return len(self.starts)

    def get(self, b):
        """``(x, y)`` of batch ``b``."""
        if self.ahead is not None and self.ahead[0] == b:
            batch, self.ahead = self.ahead[1], None
            return batch
        s = self.starts[b]
        if self.order is None:
            return self.x[s:s + self.size], self.y[s:s + self.size]
        idx = self.order[s:s + self.size]
        return np.take(self.x, idx, axis=0, out=self.bufs[b % 2][:idx.size]), self.y[idx]

    def gather(self, b):
        """Gather batch ``b`` now, for :meth:`get` to return later (nothing to do without
        an order, or past the last batch)."""
        if self.order is not None and b < len(self):
            self.ahead = (b, self.get(b))


class _Interrupt:
    """Turn the first SIGINT inside the block into a flag (finish the batch, stop)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except ValueError:  # pragma: no cover - e.g. embedded interpreters
                self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class _Progress:
    """A tqdm bar on a terminal, one line per epoch otherwise, nothing for verbose=0."""

    def __init__(self, verbose, total, desc):
        self.bar = None
        self.desc = desc
        self.verbose = verbose
        if verbose == 1 and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="sample", unit_scale=True,
                            file=sys.stderr, leave=True, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def update(self, n, loss, acc):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"loss {loss:.4f}, acc {100 * acc:.2f}%", refresh=False)

    def close(self, message):
        if self.bar is not None:
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.close()
        elif self.verbose:
            print(f"{self.desc}: {message}", file=sys.stderr, flush=True)
