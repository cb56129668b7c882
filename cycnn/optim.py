"""Optimizers: stochastic gradient descent (with momentum) and Adam.

An optimizer is built from its hyperparameters alone and updates parameters in place:
``step(params, grads)`` takes two dicts keyed by the same names (a model's
``state_dict()`` names, e.g. ``"0.weight"``) and keeps its per-parameter state (momentum
buffers, moment estimates) under those names. The arithmetic follows ``torch.optim``
line by line, so the two agree step for step on the same gradients.

Gradient descent in its plainest form is ``w <- w - lr * dE/dw``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


def _check_lr(cls, lr):
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{cls}: learning rate lr must be a finite number > 0, got {lr!r}")
    return float(lr)


def _check_range(cls, name, v, lo, hi, hi_open=True):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
        lo <= v < hi if hi_open else lo <= v <= hi
    ):
        bound = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{cls}: {name} must be in {bound}, got {v!r}")
    return float(v)


class Optimizer:
    """Base class: the state is a dict of named arrays plus a step count per parameter."""

    #: names of the per-parameter state arrays, in the order they are saved
    _slots: tuple[str, ...] = ()

    def __init__(self):
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps: dict[str, int] = {}

    def step(self, params: dict, grads: dict) -> None:
        """Update every array in ``params`` in place from ``grads`` (same keys)."""
        for name, w in params.items():
            g = grads[name]
            if g.shape != w.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: gradient {name!r} has shape {g.shape} "
                    f"but the parameter has shape {w.shape}"
                )
            self.steps[name] = self.steps.get(name, 0) + 1
            self._update(name, w, g, self.state.setdefault(name, {}))

    def _update(self, name, w, g, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def zero_state(self) -> None:
        """Forget momentum buffers / moment estimates (as a fresh optimizer)."""
        self.state.clear()
        self.steps.clear()

    def astype(self, dtype) -> None:
        """Convert the state arrays to ``dtype`` (after converting the parameters)."""
        for st in self.state.values():
            for k, v in st.items():
                st[k] = v.astype(dtype)

    # ---- saving
    def config(self) -> dict:
        """Hyperparameters as a JSON-serialisable dict (with ``"type"``)."""
        raise NotImplementedError  # pragma: no cover

    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(config, arrays)``: hyperparameters and step counts, and the state arrays
        keyed ``"<slot>/<param name>"``."""
        cfg = dict(self.config(), steps=dict(self.steps))
        arrays = {f"{slot}/{name}": arr for name, st in self.state.items()
                  for slot, arr in st.items()}
        return cfg, arrays

    def load_state_dict(self, config: dict, arrays: dict) -> None:
        """Restore what :meth:`state_dict` returned (hyperparameters are not changed)."""
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in arrays.items():
            slot, _, name = key.partition("/")
            if slot not in self._slots or not name:
                raise ValueError(f"{type(self).__name__}: unknown state entry {key!r}")
            state.setdefault(name, {})[slot] = np.array(arr)
        self.state = state
        self.steps = {str(k): int(v) for k, v in config.get("steps", {}).items()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum and weight decay.

    With ``g = dE/dw + weight_decay * w``:

    * ``momentum == 0``: ``w <- w - lr * g``
    * otherwise (PyTorch's convention, not the "velocity" one):
      ``buf <- momentum * buf + g`` (``buf = g`` on the first step), ``w <- w - lr * buf``;
      with ``nesterov=True`` the step uses ``g + momentum * buf`` instead of ``buf``.

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    momentum : float, default 0
        In [0, 1).
    weight_decay : float, default 0
        L2 penalty coefficient, >= 0.
    nesterov : bool, default False
    """

    _slots = ("momentum_buffer",)

    def __init__(self, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__()
        self.lr = _check_lr("SGD", lr)
        self.momentum = _check_range("SGD", "momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_range("SGD", "weight_decay", weight_decay, 0.0, math.inf)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")

    def config(self):
        return {"type": "SGD", "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def _update(self, name, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, dtype=w.dtype, copy=True)
            else:
                buf *= self.momentum
                buf += g
            g = g + self.momentum * buf if self.nesterov else buf
        w -= self.lr * g


class Adam(Optimizer):
    """Adam with PyTorch's defaults and bias correction.

    With ``g = dE/dw + weight_decay * w`` and ``t`` the step number (from 1)::

        m <- m + (1 - beta1) * (g - m)          # = beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        w <- w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
        Added to the gradient (L2, as ``torch.optim.Adam``, not AdamW).
    """

    _slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__()
        self.lr = _check_lr("Adam", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair, got {betas!r}")
        self.betas = (_check_range("Adam", "betas[0]", betas[0], 0.0, 1.0),
                      _check_range("Adam", "betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_range("Adam", "eps", eps, 0.0, math.inf)
        self.weight_decay = _check_range("Adam", "weight_decay", weight_decay, 0.0, math.inf)

    def config(self):
        return {"type": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, name, w, g, state):
        beta1, beta2 = self.betas
        t = self.steps[name]
        if self.weight_decay:
            g = g + self.weight_decay * w
        if "exp_avg" not in state:
            state["exp_avg"] = np.zeros_like(w)
            state["exp_avg_sq"] = np.zeros_like(w)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size = self.lr / (1 - beta1 ** t)
        denom = np.sqrt(v)
        denom /= math.sqrt(1 - beta2 ** t)
        denom += self.eps
        w -= step_size * (m / denom)


_OPTIMIZERS = {"SGD": SGD, "Adam": Adam}


def get_optimizer(config: dict) -> Optimizer:
    """Rebuild an optimizer from :meth:`Optimizer.config` (as saved in a checkpoint)."""
    cfg = dict(config)
    kind = cfg.pop("type", None)
    cfg.pop("steps", None)
    if kind not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {kind!r}; known: {', '.join(_OPTIMIZERS)}")
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return _OPTIMIZERS[kind](**cfg)
