"""``Sequential``: a stack of layers that trains with mini-batch gradient descent.

The model runs ``forward`` through the layers in order and ``backward`` in reverse;
``fit`` loops over shuffled mini-batches (forward, loss, backward, optimizer step), and
``save`` / :func:`load` keep the weights and the architecture in one ``.npz`` file.

Parameter names follow PyTorch's ``nn.Sequential``: ``"<index>.weight"`` and
``"<index>.bias"``, where the index counts every layer (with or without parameters).
A ``Dense`` weight is ``(out, in)`` and a ``Conv2D`` weight ``(F, C, KH, KW)``, so a
``state_dict`` moves between cycnn and PyTorch with no reshaping.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    Layer,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
    _float_dtype,
    layer_from_config,
)
from .optim import Optimizer, get_optimizer

__all__ = ["Sequential", "History", "Checkpoint", "CheckpointError", "load",
           "load_checkpoint", "lenet5", "to_torch", "epoch_order"]

#: Format tag and version written into every checkpoint.
FORMAT = "cycnn-checkpoint"
VERSION = 1
_HEADER = "__cycnn__"
_OPT_PREFIX = "optimizer/"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not match its own architecture."""


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


class Checkpoint:
    """What :func:`load_checkpoint` returns: the model, the optimizer (or None) and the
    free-form ``meta`` dict saved with them."""

    def __init__(self, model, optimizer, meta):
        self.model, self.optimizer, self.meta = model, optimizer, meta

    def __iter__(self):
        return iter((self.model, self.optimizer, self.meta))


def _as_labels(func, y, n, k=None):
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{func}: labels y must be a 1-D array of integer class indices, "
                        f"got dtype {y.dtype} and shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{func}: x has {n} samples but y has {y.shape[0]} labels "
                         f"(they must have the same length)")
    if k is not None and y.size and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)][0]
        raise ValueError(f"{func}: labels must lie in [0, {k}) for a model with {k} "
                         f"outputs; found {bad}")
    return y.astype(np.int64, copy=False)


def _check_batch_size(func, batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"{func}: batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


class Sequential:
    """Layers applied one after another.

    Parameters
    ----------
    *layers : Layer
        The layers, in order (a single list is accepted too).
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(1, 28, 28)``; only used by :meth:`summary`
        before the model has seen data.

    Examples
    --------
    >>> from cycnn import Sequential, Conv2D, ReLU, MaxPool2D, Flatten, Dense
    >>> model = Sequential(Conv2D(1, 4, 3, rng=0), ReLU(), MaxPool2D(2), Flatten(),
    ...                    Dense(4 * 13 * 13, 10, rng=0))
    >>> sorted(model.state_dict())
    ['0.bias', '0.weight', '4.bias', '4.weight']
    >>> model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """

    def __init__(self, *layers, input_shape=None):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is not a cycnn layer: {layer!r}")
        if not layers:
            raise ValueError("Sequential: give at least one layer")
        self.layers = list(layers)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)

    # ---------------------------------------------------------------- container
    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    @property
    def dtype(self) -> np.dtype:
        """dtype of the parameters (float32 when the model has none)."""
        for layer in self.layers:
            if layer.params:
                return layer.dtype
        return np.dtype(np.float32)

    def astype(self, dtype):
        """Convert every parameter to ``dtype`` (float32 or float64), in place."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def train(self):
        for layer in self.layers:
            layer.train()
        return self

    def eval(self):
        for layer in self.layers:
            layer.eval()
        return self

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    # ---------------------------------------------------------------- parameters
    def _params(self) -> dict:
        """Live parameter arrays under state_dict names (the optimizer updates them)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.params.items()}

    def _grads(self) -> dict:
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.grads.items()}

    def state_dict(self) -> dict:
        """Copies of the parameters, named as PyTorch's ``nn.Sequential`` names them."""
        return {k: v.copy() for k, v in self._params().items()}

    def load_state_dict(self, state_dict, *, source="state_dict"):
        """Copy parameters in (cast to the model's dtype); names and shapes must match.

        Accepts NumPy arrays or anything ``np.asarray`` understands, including a PyTorch
        ``state_dict()``. Nothing is changed unless every entry fits.
        """
        params = self._params()
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        arrays = {}
        for k, w in params.items():
            if k in state_dict:
                v = state_dict[k]
                if hasattr(v, "detach"):  # a torch tensor, possibly requiring grad
                    v = v.detach().cpu().numpy()
                a = np.asarray(v)
                if a.shape != w.shape:
                    problems.append(f"{k} has shape {a.shape} but the model needs {w.shape}")
                elif a.dtype.kind not in "biuf":
                    problems.append(f"{k} has non-numeric dtype {a.dtype}")
                arrays[k] = a
        if problems:
            raise ValueError(f"load_state_dict: {source} does not fit this model: "
                             + "; ".join(problems))
        for k, w in params.items():
            np.copyto(w, arrays[k], casting="unsafe")
        for layer in self.layers:
            layer.grads.clear()

    # ---------------------------------------------------------------- shapes
    def shapes(self, input_shape):
        """Per-sample output shape after each layer, checking that every layer fits.

        Raises ValueError naming the first layer that cannot take its input.
        """
        shape = tuple(int(s) for s in input_shape)
        out = []
        for i, layer in enumerate(self.layers):
            try:
                new = layer.output_shape(shape)
            except ValueError as e:
                where = "first layer" if i == 0 else f"layer {i}"
                raise ValueError(
                    f"{where} {layer!r} cannot take per-sample input of shape {shape}: {e}"
                    + (f" (the model input is {tuple(input_shape)})" if i else "")
                ) from None
            out.append(new)
            shape = new
        return out

    def _prepare_x(self, func, x):
        """Validate x against the layers and convert it to the model dtype (no copy when
        it already is)."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{func}: x must hold real numbers, got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"{func}: x must have a batch axis first, got shape {x.shape}")
        try:
            shapes = self.shapes(x.shape[1:])
        except ValueError as e:
            raise ValueError(f"{func}: x.shape={x.shape}: {e}") from None
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        return np.ascontiguousarray(x, dtype=self.dtype), shapes[-1]

    # ---------------------------------------------------------------- passes
    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy, input_grad=True):
        """Run ``backward`` through the layers in reverse; returns dL/dx of the input.

        ``input_grad=False`` lets a first ``Conv2D`` skip that gradient (``fit`` does
        this: nothing below the first layer needs it) and returns None.
        """
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        first = self.layers[0]
        if not input_grad and isinstance(first, Conv2D):
            return first.backward(dy, need_dx=False)
        return first.backward(dy)

    def predict(self, x, batch_size=256):
        """Network outputs (logits) for ``x``, computed in eval mode in batches.

        Returns an ``(N, K)`` array in the model dtype; ``.argmax(1)`` gives classes.
        """
        func = "predict"
        batch_size = _check_batch_size(func, batch_size)
        x, out_shape = self._prepare_x(func, x)
        was_training = [layer.training for layer in self.layers]
        self.eval()
        try:
            out = np.empty((x.shape[0], *out_shape), self.dtype)
            for s in range(0, x.shape[0], batch_size):
                out[s:s + batch_size] = self.forward(x[s:s + batch_size])
        finally:
            for layer, t in zip(self.layers, was_training):
                layer.training = t
        return out

    def evaluate(self, x, y, batch_size=256):
        """``(loss, accuracy)`` on ``(x, y)``: mean softmax cross-entropy and the
        fraction of samples whose largest output is the label."""
        func = "evaluate"
        x, out_shape = self._prepare_x(func, x)
        y = _as_labels(func, y, x.shape[0], out_shape[-1] if out_shape else None)
        logits = self.predict(x, batch_size)
        loss = SoftmaxCrossEntropy().forward(logits, y)
        return loss, float(np.mean(logits.argmax(axis=1) == y))

    # ---------------------------------------------------------------- training
    def fit(self, x, y, epochs=1, batch_size=32, optimizer=None, validation_data=None,
            shuffle=True, seed=0, *, initial_epoch=0, verbose=0, loss=None,
            on_epoch_end=None):
        """Train with mini-batch gradient descent.

        Parameters
        ----------
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

        Returns
        -------
        History

        Notes
        -----
        Ctrl-C (SIGINT) during ``fit`` finishes the current batch and returns the
        history with ``interrupted = True``; a second Ctrl-C aborts at once.
        """
        func = "fit"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{func}: optimizer must be a cycnn optimizer such as "
                            f"SGD(lr=0.01), got {optimizer!r}")
        batch_size = _check_batch_size(func, batch_size)
        for name, v, lo in (("epochs", epochs, 1), ("initial_epoch", initial_epoch, 0),
                            ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{func}: {name} must be an integer >= {lo}, got {v!r}")
        x, out_shape = self._prepare_x(func, x)
        K = out_shape[-1] if out_shape else None
        y = _as_labels(func, y, x.shape[0], K)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{func}: validation_data must be a pair (x_val, y_val)")
            xv, _ = self._prepare_x(func + " (validation_data)", validation_data[0])
            yv = _as_labels(func + " (validation_data)", validation_data[1], xv.shape[0], K)
        loss_fn = loss or SoftmaxCrossEntropy()
        N = x.shape[0]
        if N == 0:
            raise ValueError(f"{func}: x holds no samples (x.shape={x.shape})")
        params = self._params()
        history = History()
        history.epochs_completed = int(initial_epoch)
        xbuf = np.empty((min(batch_size, N), *x.shape[1:]), x.dtype) if shuffle else None
        stop = _Interrupt()
        with stop:
            for epoch in range(int(initial_epoch), int(epochs)):
                self.train()
                order = epoch_order(N, seed, epoch) if shuffle else None
                bar = _Progress(verbose, N, f"epoch {epoch + 1}/{epochs}")
                t0 = time.perf_counter()
                total_loss, correct, seen = 0.0, 0, 0
                for s in range(0, N, batch_size):
                    if order is not None:
                        idx = order[s:s + batch_size]
                        xb = np.take(x, idx, axis=0, out=xbuf[:idx.size])
                        yb = y[idx]
                    else:
                        xb, yb = x[s:s + batch_size], y[s:s + batch_size]
                    nb = yb.shape[0]
                    logits = self.forward(xb)
                    batch_loss = loss_fn.forward(logits, yb)
                    correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
                    self.backward(loss_fn.backward(), input_grad=False)
                    optimizer.step(params, self._grads())
                    total_loss += batch_loss * nb
                    seen += nb
                    bar.update(nb, total_loss / seen, correct / seen)
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
                    vl, va = self.evaluate(xv, yv)
                    history["val_loss"].append(vl)
                    history["val_accuracy"].append(va)
                    extra = f", val_loss {vl:.4f}, val_acc {100 * va:.2f}%"
                self.train()
                history.epochs_completed = epoch + 1
                bar.close(f"loss {total_loss / N:.4f}, acc {100 * correct / N:.2f}%{extra}, "
                          f"{N / max(seconds, 1e-9):.0f} samples/s, {seconds:.1f} s")
                if on_epoch_end is not None:
                    on_epoch_end(epoch, history)
                if stop.requested:
                    history.interrupted = True
                    break
        for layer in self.layers:  # drop the last batch's activations: nothing needs them
            layer._forget()
        return history

    # ---------------------------------------------------------------- summary
    def summary(self, input_shape=None) -> str:
        """A table of layers, per-sample output shapes and parameter counts."""
        shape = input_shape or self.input_shape
        shapes = self.shapes(shape) if shape is not None else [None] * len(self.layers)
        rows = [(str(i), repr(layer), "?" if s is None else str(s), f"{layer.num_params:,}")
                for i, (layer, s) in enumerate(zip(self.layers, shapes))]
        head = ("#", "layer", "output shape", "params")
        w = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]
        fmt = lambda r: f"{r[0]:>{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}"
        rule = "-" * len(fmt(head))
        inp = "?" if shape is None else str(tuple(shape))
        lines = [f"Sequential, input {inp}, {self.dtype}", rule, fmt(head), rule,
                 *map(fmt, rows), rule,
                 f"total parameters: {self.num_params:,}"]
        return "\n".join(lines)

    # ---------------------------------------------------------------- checkpoints
    def save(self, path, optimizer=None, meta=None):
        """Write the architecture, the weights (and optionally the optimizer state and a
        JSON-serialisable ``meta`` dict) to ``path`` as ``.npz``, atomically.

        The file is written to a temporary file in the same directory, flushed to disk
        and renamed over ``path`` (``os.replace``), so an interrupted save never leaves
        a half-written checkpoint. No pickle is used.
        """
        path = Path(path)
        params = self._params()
        header = {
            "format": FORMAT, "version": VERSION,
            "dtype": str(self.dtype),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [layer.config() for layer in self.layers],
            "params": {k: list(v.shape) for k, v in params.items()},
            "optimizer": None, "meta": meta or {},
        }
        arrays = dict(params)
        if optimizer is not None:
            cfg, opt_arrays = optimizer.state_dict()
            header["optimizer"] = cfg
            arrays.update({_OPT_PREFIX + k: v for k, v in opt_arrays.items()})
        arrays[_HEADER] = np.array(json.dumps(header))
        directory = path.parent if str(path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- loading

def load_checkpoint(path) -> Checkpoint:
    """Read a file written by :meth:`Sequential.save`.

    Returns
    -------
    Checkpoint
        ``(model, optimizer, meta)``; ``optimizer`` is None when none was saved.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Truncated or corrupt file, not a cycnn checkpoint, or arrays that do not match
        the recorded architecture; the message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")

    def fail(msg):
        return CheckpointError(f"checkpoint {path}: {msg}")

    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
            if _HEADER not in names:
                raise fail("not a cycnn checkpoint (no architecture record "
                           f"'{_HEADER}'; arrays: {names[:6]})")
            arrays = {k: f[k] for k in names}  # read everything now: CRC errors surface here
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        raise fail(f"truncated or corrupt file ({type(e).__name__}: {e})") from e
    try:
        header = json.loads(str(arrays.pop(_HEADER)))
    except (ValueError, TypeError) as e:
        raise fail(f"unreadable architecture record ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise fail("not a cycnn checkpoint (wrong format tag)")
    if header.get("version") != VERSION:
        raise fail(f"format version {header.get('version')} is not supported (this cycnn "
                   f"reads version {VERSION})")
    try:
        dtype = _float_dtype("load", header["dtype"])
        layers = [layer_from_config(c, dtype) for c in header["layers"]]
        model = Sequential(layers, input_shape=header.get("input_shape"))
    except (KeyError, TypeError, ValueError) as e:
        raise fail(f"architecture record does not describe a valid model ({e})") from e
    params = {k: v for k, v in arrays.items() if not k.startswith(_OPT_PREFIX)}
    opt_arrays = {k[len(_OPT_PREFIX):]: v for k, v in arrays.items()
                  if k.startswith(_OPT_PREFIX)}
    expected = model._params()
    recorded = {k: tuple(v) for k, v in header.get("params", {}).items()}
    for k, w in expected.items():
        if k in recorded and recorded[k] != w.shape:
            raise fail(f"architecture record lists {k} as {recorded[k]} but the layers "
                       f"need {w.shape}")
    try:
        model.load_state_dict(params, source="its weights")
    except ValueError as e:
        raise fail(f"weights do not match the recorded architecture: {e}") from None
    optimizer = None
    if header.get("optimizer") is not None:
        try:
            optimizer = get_optimizer(header["optimizer"])
            optimizer.load_state_dict(header["optimizer"], opt_arrays)
        except (TypeError, ValueError) as e:
            raise fail(f"optimizer state is invalid ({e})") from e
        for key, arr in opt_arrays.items():
            name = key.partition("/")[2]
            if name not in expected or arr.shape != expected[name].shape:
                raise fail(f"optimizer state {key} of shape {arr.shape} matches no "
                           "parameter of the model")
    return Checkpoint(model, optimizer, header.get("meta") or {})


def load(path) -> Sequential:
    """Load the model saved by :meth:`Sequential.save` (see :func:`load_checkpoint`)."""
    return load_checkpoint(path).model


# --------------------------------------------------------------------------- helpers

def epoch_order(n, seed, epoch):
    """The order in which :meth:`Sequential.fit` visits ``n`` samples in ``epoch``
    (with ``shuffle=True``): ``np.random.default_rng([seed, epoch]).permutation(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def lenet5(seed=0, dtype=np.float32, pool="max"):
    """A LeNet-5-style network for 1x28x28 images and 10 classes.

    conv 1->6 5x5, ReLU, pool 2, conv 6->16 5x5, ReLU, pool 2, flatten,
    dense 256->120, ReLU, dense 120->84, ReLU, dense 84->10 (44,426 parameters).
    Weights are He-normal from ``np.random.default_rng(seed)``, layer by layer.
    """
    rng = np.random.default_rng(seed)
    Pool = {"max": MaxPool2D, "avg": AvgPool2D}[pool]
    return Sequential(
        Conv2D(1, 6, 5, rng=rng, dtype=dtype), ReLU(), Pool(2),
        Conv2D(6, 16, 5, rng=rng, dtype=dtype), ReLU(), Pool(2),
        Flatten(),
        Dense(256, 120, rng=rng, dtype=dtype), ReLU(),
        Dense(120, 84, rng=rng, dtype=dtype), ReLU(),
        Dense(84, 10, rng=rng, dtype=dtype),
        input_shape=(1, 28, 28),
    )


def to_torch(model):
    """The equivalent ``torch.nn.Sequential`` holding a copy of ``model``'s weights.

    Layer indices, parameter names and shapes are the same, so
    ``model.load_state_dict(tm.state_dict())`` and back need no reshaping.
    """
    import torch
    from torch import nn

    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[model.dtype]
    mods = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            (pt, pb), (pl, pr) = layer._pads
            if pt != pb or pl != pr:
                raise ValueError(f"to_torch: {layer!r} has asymmetric padding")
            mods.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                  layer.stride, (pt, pl)))
        elif isinstance(layer, MaxPool2D):
            mods.append(nn.MaxPool2d(layer.kernel_size, layer.stride))
        elif isinstance(layer, AvgPool2D):
            mods.append(nn.AvgPool2d(layer.kernel_size, layer.stride))
        elif isinstance(layer, ReLU):
            mods.append(nn.ReLU())
        elif isinstance(layer, Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, Dense):
            mods.append(nn.Linear(layer.in_features, layer.out_features))
        else:  # pragma: no cover
            raise TypeError(f"to_torch: no PyTorch equivalent for {layer!r}")
    tm = nn.Sequential(*mods).to(dtype)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm


# --------------------------------------------------------------------------- fit helpers

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
