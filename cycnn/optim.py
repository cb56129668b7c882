"""Optimizers: stochastic gradient descent (with momentum), Adam and AdamW.

An optimizer is built from its hyperparameters alone and updates parameters in place:
``step(params, grads)`` takes two dicts keyed by the same names (a model's
``state_dict()`` names, e.g. ``"0.weight"``) and keeps its per-parameter state (momentum
buffers, moment estimates) under those names. The arithmetic follows ``torch.optim``
line by line, so the two agree step for step on the same gradients.

Gradient descent in its plainest form is ``w <- w - lr * dE/dw``.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import as_real

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


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

    def _required_slots(self) -> tuple[str, ...]:
        """The state arrays every parameter with a step count must have."""
        return self._slots

    def load_state_dict(self, config: dict, arrays: dict, shapes: dict | None = None) -> None:
        """Restore what :meth:`state_dict` returned (hyperparameters are not changed).

        ``shapes`` (parameter name -> shape), when given, is what the state must fit:
        every parameter with a step count must have each of its state arrays, of that
        parameter's shape, and no state may belong to an unknown parameter. Nothing is
        changed unless all of it fits.
        """
        cls = type(self).__name__
        steps = config.get("steps", {})
        if not isinstance(steps, dict):
            raise ValueError(f"{cls}: steps must be a dict of step counts, got {steps!r}")
        steps = {str(k): int(v) for k, v in steps.items()}
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in arrays.items():
            slot, _, name = key.partition("/")
            if slot not in self._slots or not name:
                raise ValueError(f"{cls}: unknown state entry {key!r}")
            arr = np.asarray(arr)
            if arr.dtype.kind != "f":
                raise ValueError(f"{cls}: state {key!r} has dtype {arr.dtype}, not float")
            if shapes is not None:
                if name not in shapes:
                    raise ValueError(f"{cls}: state {key!r} of shape {arr.shape} matches no "
                                     "parameter of the model")
                if arr.shape != tuple(shapes[name]):
                    raise ValueError(f"{cls}: state {key!r} has shape {arr.shape} but the "
                                     f"parameter has shape {tuple(shapes[name])}")
            state.setdefault(name, {})[slot] = np.array(arr)
        if shapes is not None:
            unknown = sorted(set(steps) - set(shapes))
            if unknown:
                raise ValueError(f"{cls}: step counts for unknown parameters {unknown}")
        for name in steps:
            missing = [s for s in self._required_slots() if s not in state.get(name, {})]
            if missing and steps[name] > 0:
                raise ValueError(f"{cls}: parameter {name!r} has taken {steps[name]} step(s) "
                                 f"but its state {missing} is missing")
        stray = sorted(set(state) - set(steps))
        if stray:
            raise ValueError(f"{cls}: state for {stray} without a step count")
        self.state = state
        self.steps = steps

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
        self.lr = as_real("SGD", "lr", lr, 0.0, lo_open=True)
        self.momentum = as_real("SGD", "momentum", momentum, 0.0, 1.0, hi_open=True)
        self.weight_decay = as_real("SGD", "weight_decay", weight_decay, 0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")

    def _required_slots(self):
        return self._slots if self.momentum else ()

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
        cls = type(self).__name__
        self.lr = as_real(cls, "lr", lr, 0.0, lo_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{cls}: betas must be a pair, got {betas!r}")
        self.betas = (as_real(cls, "betas[0]", betas[0], 0.0, 1.0, hi_open=True),
                      as_real(cls, "betas[1]", betas[1], 0.0, 1.0, hi_open=True))
        self.eps = as_real(cls, "eps", eps, 0.0)
        self.weight_decay = as_real(cls, "weight_decay", weight_decay, 0.0)

    def config(self):
        return {"type": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, name, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        self._adam_step(name, w, g, state)

    def _adam_step(self, name, w, g, state):
        beta1, beta2 = self.betas
        t = self.steps[name]
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


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as ``torch.optim.AdamW``.

    The decay shrinks the weights directly instead of being added to the gradient, so it
    does not pass through Adam's per-entry scaling::

        w <- w * (1 - lr * weight_decay)
        then the Adam step of :class:`Adam` with the plain gradient

    Parameters
    ----------
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0.01
        PyTorch's default for AdamW.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)

    def config(self):
        return dict(super().config(), type="AdamW")

    def _update(self, name, w, g, state):
        if self.weight_decay:
            w *= 1 - self.lr * self.weight_decay
        self._adam_step(name, w, g, state)


_OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def get_optimizer(config: dict) -> Optimizer:
    """Rebuild an optimizer from :meth:`Optimizer.config` (as saved in a checkpoint).

    Raises ValueError for an unknown type or arguments the optimizer does not take.
    """
    if not isinstance(config, dict):
        raise ValueError(f"an optimizer config must be a dict, got {config!r}")
    cfg = dict(config)
    kind = cfg.pop("type", None)
    cfg.pop("steps", None)
    if kind not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer type {kind!r}; known: {', '.join(_OPTIMIZERS)}")
    if isinstance(cfg.get("betas"), list):
        cfg["betas"] = tuple(cfg["betas"])
    try:
        return _OPTIMIZERS[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"{kind}: bad arguments {sorted(cfg)}: {e}") from None
