"""``Sequential``: a stack of layers, run forward in order and backward in reverse.

The model is the container: it holds the layers, runs the passes, names the parameters
and takes one gradient step (:meth:`Sequential.train_step`). Everything around that lives
in modules of its own: the epoch loop with its history, progress bar and Ctrl-C handling
(:mod:`cycnn.training`), checkpoints (:mod:`cycnn.checkpoint`), PyTorch interop
(:mod:`cycnn.interop`) and ready-made networks (:mod:`cycnn.zoo`).

Parameter names follow PyTorch's ``nn.Sequential``: ``"<index>.weight"`` and
``"<index>.bias"``, where the index counts every layer (with or without parameters).
Buffers (batch norm's running statistics) are named the same way, ``"<index>.running_mean"``,
and appear in :meth:`Sequential.state_dict` after their layer's parameters, as in PyTorch;
:meth:`Sequential.parameters` (what optimizers update) leaves them out.
A ``Dense`` weight is ``(out, in)`` and a ``Conv2D`` weight ``(F, C, KH, KW)``, so a
``state_dict`` moves between cycnn and PyTorch with no reshaping.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import _memory, _sharding
from ._threads import get_num_threads
from ._validate import as_int, as_labels
from .layers import Layer, SoftmaxCrossEntropy

__all__ = ["Sequential"]

#: per model, the last answer of :meth:`Sequential.shapes` with what it was read from (a
#: weak mapping, so that none of it is copied or pickled with the model)
_shapes_seen = weakref.WeakKeyDictionary()


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
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)):
                raise TypeError(f"Sequential: input_shape must be a tuple of ints, got "
                                f"{input_shape!r}")
            input_shape = tuple(as_int("Sequential", "input_shape", s, 1) for s in input_shape)
        self.input_shape = input_shape

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
        """Training mode for every layer: their ``forward`` keeps what ``backward`` needs."""
        for layer in self.layers:
            layer.train()
        return self

    def eval(self):
        """Inference mode for every layer: nothing is kept, caches are dropped."""
        for layer in self.layers:
            layer.eval()
        return self

    def clear_cache(self):
        """Drop every layer's cached activations (the model stays in its mode)."""
        for layer in self.layers:
            layer.clear_cache()

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def steps_depend_on_threads(self) -> bool:
        """Whether a training step's result (to the last bit) depends on the thread count:
        only when steps on several threads are cut into one shard per thread (models of
        built-in per-sample layers, unless ``CYCNN_SHARD_STEPS=0``), which adds the
        shards' gradients in another order. Otherwise every loop a step runs gives the
        same bits on any number of threads."""
        return _sharding.ENABLED and _sharding.model_shardable(self)

    # ---------------------------------------------------------------- parameters
    def parameters(self) -> dict:
        """The live parameter arrays under their state_dict names (an optimizer updates
        them in place)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.params.items()}

    def gradients(self) -> dict:
        """The gradients of the last backward pass, under the parameters' names."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.grads.items()}

    def buffers(self) -> dict:
        """The live buffers (batch norm's running statistics) under their state_dict
        names; trained by nobody, updated by the layers' forward passes in training."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.buffers.items()}

    def _state(self) -> dict:
        """Parameters and buffers, live, layer by layer in PyTorch's order."""
        out = {}
        for i, layer in enumerate(self.layers):
            out.update({f"{i}.{k}": v for k, v in layer.params.items()})
            out.update({f"{i}.{k}": v for k, v in layer.buffers.items()})
        return out

    def state_dict(self) -> dict:
        """Copies of the parameters and buffers, named as PyTorch's ``nn.Sequential``
        names them (``"0.weight"``, ``"1.running_mean"``, ...), in PyTorch's order."""
        return {k: v.copy() for k, v in self._state().items()}

    def reseed(self, seed):
        """Restart the random generators of layers that draw random numbers in training
        (:class:`Dropout`): layer ``i`` gets ``np.random.default_rng([*seed, i])``.

        ``seed`` is an int or a sequence of ints; :func:`cycnn.training.fit` calls this
        with ``(seed, epoch, 2)`` at the start of every epoch.
        """
        base = [int(s) for s in np.atleast_1d(np.asarray(seed, dtype=np.int64))]
        for i, layer in enumerate(self.layers):
            layer.reseed([*base, i])

    def load_state_dict(self, state_dict, *, source="state_dict"):
        """Copy parameters and buffers in (cast to the model's dtypes); names and shapes
        must match.

        Accepts NumPy arrays or anything ``np.asarray`` understands, including a PyTorch
        ``state_dict()``. Integer buffers (``num_batches_tracked``) take integers only.
        Nothing is changed unless every entry fits.
        """
        params = self._state()
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
                elif w.dtype.kind in "iu" and a.dtype.kind not in "iu":
                    problems.append(f"{k} must hold integers, got dtype {a.dtype}")
                arrays[k] = a
        for i, layer in enumerate(self.layers):
            mine = {name: arrays[f"{i}.{name}"] for name in layer.buffers
                    if f"{i}.{name}" in arrays}
            problems += [f"{i}.{msg}" for msg in layer.check_buffers(mine)]
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

        Raises ValueError naming the first layer that cannot take its input. The answer
        for the last shape asked is kept while the layers are the same objects with
        parameters of the same shapes (every training step asks it again).
        """
        shape = start = tuple(int(s) for s in input_shape)
        params = [p.shape for layer in self.layers for p in layer.params.values()]
        seen = _shapes_seen.get(self)
        if seen is not None and seen[0] == start and seen[2] == params and \
                _sharding._same(seen[1], self.layers):
            return list(seen[3])
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
        _shapes_seen[self] = (start, list(self.layers), params, tuple(out))
        return out

    def prepare(self, func, x):
        """Check ``x`` against the layers and convert it to the model dtype (no copy when
        it already is); returns ``(x, per-sample output shape)``."""
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

    def labels(self, func, y, n, out_shape):
        """``y`` checked as ``n`` class labels for outputs of per-sample ``out_shape``."""
        return as_labels(func, y, n, out_shape[-1] if out_shape else None)

    # ---------------------------------------------------------------- passes
    def forward(self, x):
        """Run ``x`` through the layers in order; returns the last layer's output."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy, need_dx=True, input_grad=None):
        """Run ``backward`` through the layers in reverse; returns dL/dx of the input.

        A layer is asked for its input gradient only when something below it needs one:
        a layer with parameters, or the caller (``need_dx=True``). With ``need_dx=False``
        the first layer skips it (``fit`` does this: nothing below the first layer needs
        it) and None is returned. ``input_grad`` is the 0.1 name of ``need_dx``.
        """
        if input_grad is not None:
            need_dx = input_grad
        # needed[i]: does anything below layer i use its dx?
        needed, below = [], bool(need_dx)
        for layer in self.layers:
            needed.append(below)
            below = below or bool(layer.params)
        for layer, want in zip(reversed(self.layers), reversed(needed)):
            dy = layer.backward(dy, need_dx=want)
        return dy

    def train_step(self, x, y, optimizer, loss=None):
        """One gradient step on the batch ``(x, y)``: forward, loss, backward, update.

        Parameters
        ----------
        x : ndarray, shape (N, ...)
            A batch of inputs (converted to the model dtype).
        y : ndarray of int, shape (N,)
            Class labels.
        optimizer : Optimizer
            Updates the parameters in place from the gradients.
        loss : SoftmaxCrossEntropy, optional
            The loss layer (default: a new :class:`SoftmaxCrossEntropy`).

        Returns
        -------
        (float, int)
            The batch's mean loss before the update and how many samples the model
            classified correctly before the update.

        Notes
        -----
        On several threads (:func:`cycnn.set_num_threads`), a step of a model made of
        cycnn's per-sample layers (convolutions, pooling, activations, flatten, dense)
        with the default-weighted mean loss cuts the batch into one shard per thread:
        the first taken through the whole step here, the others in worker processes
        (started on the first such step and kept). The shards' gradients are added in
        order: the same sums as on one thread, to rounding, and the same bits from run
        to run at one thread count. Other models, and every model with
        ``CYCNN_SHARD_STEPS=0`` in the environment, split each compiled loop across the
        threads instead.

        The first training step of a process sets two thresholds of glibc's malloc, so
        that the memory one step frees stays mapped for the next instead of being handed
        back and faulted in again (``cycnn/_memory.py``; ``CYCNN_KEEP_HEAP=0`` in the
        environment leaves malloc alone).
        """
        func = "train_step"
        _memory.keep_freed_memory()  # once per process: the next step reuses this one's pages
        x, out_shape = self.prepare(func, x)
        y = self.labels(func, y, x.shape[0], out_shape)
        loss = loss or SoftmaxCrossEntropy()
        self.train()
        spans = _sharding.shards(self, x.shape[0], get_num_threads(), loss, y)
        if spans is not None:  # one shard of the batch per thread
            return _sharding.train_step(self, x, y, optimizer, loss, spans)
        logits = self.forward(x)
        batch_loss = loss.forward(logits, y)
        n_correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
        self.backward(loss.backward(), need_dx=False)
        optimizer.step(self.parameters(), self.gradients())
        return batch_loss, n_correct

    def predict(self, x, batch_size=256):
        """Network outputs (logits) for ``x``, computed in eval mode in batches.

        Returns an ``(N, K)`` array in the model dtype; ``.argmax(1)`` gives classes.
        """
        func = "predict"
        batch_size = as_int(func, "batch_size", batch_size, 1)
        x, out_shape = self.prepare(func, x)
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
        x, out_shape = self.prepare(func, x)
        y = self.labels(func, y, x.shape[0], out_shape)
        logits = self.predict(x, batch_size)
        loss = SoftmaxCrossEntropy().forward(logits, y)
        return loss, float(np.mean(logits.argmax(axis=1) == y))

    # ---------------------------------------------------------------- elsewhere
    def fit(self, x, y, epochs=1, batch_size=32, optimizer=None, validation_data=None,
            shuffle=True, seed=0, *, initial_epoch=0, verbose=0, loss=None,
            on_epoch_end=None, augment=None, scheduler=None):
        """Train with mini-batch gradient descent: see :func:`cycnn.training.fit`."""
        from .training import fit

        return fit(self, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   validation_data=validation_data, shuffle=shuffle, seed=seed,
                   initial_epoch=initial_epoch, verbose=verbose, loss=loss,
                   on_epoch_end=on_epoch_end, augment=augment, scheduler=scheduler)

    def save(self, path, optimizer=None, meta=None, scheduler=None):
        """Write a checkpoint (``.npz``, or ``.safetensors`` for weights only): see
        :func:`cycnn.checkpoint.save`."""
        from .checkpoint import save

        return save(self, path, optimizer, meta, scheduler)

    # ---------------------------------------------------------------- summary
    def summary(self, input_shape=None) -> str:
        """A table of layers, per-sample output shapes and parameter counts."""
        shape = input_shape or self.input_shape
        shapes = self.shapes(shape) if shape is not None else [None] * len(self.layers)
        rows = [(str(i), repr(layer), "?" if s is None else str(s), f"{layer.num_params:,}")
                for i, (layer, s) in enumerate(zip(self.layers, shapes))]
        head = ("#", "layer", "output shape", "params")
        w = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(head)]

        def fmt(r):
            return f"{r[0]:>{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}"

        rule = "-" * len(fmt(head))
        inp = "?" if shape is None else str(tuple(shape))
        lines = [f"Sequential, input {inp}, {self.dtype}", rule, fmt(head), rule,
                 *map(fmt, rows), rule,
                 f"total parameters: {self.num_params:,}"]
        return "\n".join(lines)
