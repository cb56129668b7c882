"""Learning-rate schedules, as ``torch.optim.lr_scheduler`` defines them.

A schedule owns a step counter ``t`` and sets its optimizer's ``lr`` to ``lr_at(t)``:
once when it is built (``t = 0``) and after every :meth:`LRScheduler.step`. As in
PyTorch, call ``step()`` after ``optimizer.step()``; :func:`cycnn.training.fit` does so
after every batch, so ``t`` counts gradient steps (batches), not epochs.

With ``lr0`` the optimizer's learning rate when the schedule is built:

* :class:`StepLR`: ``lr0 * gamma ** (t // step_size)``.
* :class:`CosineAnnealingLR`: ``eta_min + (lr0 - eta_min) * (1 + cos(pi t / T_max)) / 2``.
* :class:`OneCycleLR`: from ``max_lr / div_factor`` up to ``max_lr`` over the first
  ``pct_start`` of ``total_steps``, then down to ``max_lr / (div_factor *
  final_div_factor)``, along half cosines (or straight lines); the momentum (SGD's
  ``momentum``, Adam's ``beta1``) moves the opposite way between ``max_momentum`` and
  ``base_momentum``.
* :class:`WarmupCosineLR`: a linear warm-up from ``lr0 * start_factor`` to ``lr0`` over
  ``warmup_steps``, then a cosine down to ``eta_min`` at ``total_steps`` (PyTorch:
  ``SequentialLR`` of ``LinearLR`` and ``CosineAnnealingLR``).

Each is written in closed form; PyTorch updates some recursively, which agrees to
rounding (the tests compare every step to 1e-12).
"""

from __future__ import annotations

import math

from ._validate import as_int, as_real
from .optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "OneCycleLR", "WarmupCosineLR"]


class LRScheduler:
    """Base class: a step counter and the rule ``lr_at(t)``.

    Subclasses set their hyperparameters, then call ``super().__init__(optimizer)``,
    which records ``base_lr`` (the optimizer's ``lr``) and applies ``lr_at(0)``.
    """

    def __init__(self, optimizer, *, last_step=0, base_lr=None):
        cls = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{cls}: optimizer must be a cycnn optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        self.base_lr = as_real(cls, "base_lr", optimizer.lr if base_lr is None else base_lr,
                               0.0, lo_open=True)
        self.last_step = as_int(cls, "last_step", last_step, 0, None)
        self._apply()

    def lr_at(self, t: int) -> float:  # pragma: no cover - abstract
        """The learning rate after ``t`` steps."""
        raise NotImplementedError

    def _apply(self):
        self.optimizer.lr = self.lr_at(self.last_step)

    def step(self):
        """Advance one step and set the optimizer's learning rate for the next one."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> float:
        """The learning rate the optimizer uses now."""
        return self.optimizer.lr

    def config(self) -> dict:
        """Hyperparameters, ``base_lr`` and the step count, JSON-serialisable."""
        return {"type": type(self).__name__, **self._hyper(), "base_lr": self.base_lr,
                "last_step": self.last_step}

    def _hyper(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({args})"


def _cos_between(start, end, pct):
    """Half a cosine from ``start`` (pct = 0) to ``end`` (pct = 1), as PyTorch's
    OneCycleLR writes it."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    ``lr = lr0 * gamma ** (t // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int >= 1
    gamma : float > 0, default 0.1
    """

    def __init__(self, optimizer, step_size, gamma=0.1, **state):
        self.step_size = as_int("StepLR", "step_size", step_size, 1)
        self.gamma = as_real("StepLR", "gamma", gamma, 0.0, lo_open=True)
        super().__init__(optimizer, **state)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)

    def _hyper(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from the learning rate down to ``eta_min`` over ``T_max`` steps.

    ``lr = eta_min + (lr0 - eta_min) * (1 + cos(pi * t / T_max)) / 2``, as
    ``torch.optim.lr_scheduler.CosineAnnealingLR`` (which, past ``T_max``, climbs back
    up along the same cosine; so does this).

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int >= 1
    eta_min : float >= 0, default 0
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, **state):
        self.T_max = as_int("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = as_real("CosineAnnealingLR", "eta_min", eta_min, 0.0)
        super().__init__(optimizer, **state)

    def lr_at(self, t):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * t / self.T_max)) / 2

    def _hyper(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith and Topin), as ``torch.optim.lr_scheduler.OneCycleLR``.

    The learning rate rises from ``max_lr / div_factor`` to ``max_lr`` until step
    ``pct_start * total_steps - 1``, then falls to ``max_lr / (div_factor *
    final_div_factor)`` at step ``total_steps - 1``. With ``cycle_momentum`` the
    optimizer's momentum (SGD) or first beta (Adam, AdamW) moves the other way, from
    ``max_momentum`` down to ``base_momentum`` and back. Stepping past ``total_steps``
    is an error, as in PyTorch.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float > 0
    total_steps : int >= 1
        The number of batches the schedule spans (epochs x batches per epoch).
    pct_start : float in [0, 1], default 0.3
    anneal_strategy : {'cos', 'linear'}, default 'cos'
    cycle_momentum : bool, default True
    base_momentum, max_momentum : float, default 0.85 and 0.95
    div_factor : float, default 25
    final_div_factor : float, default 1e4
    three_phase : bool, default False
        PyTorch's third phase: up, back down to the initial rate by
        ``2 * pct_start * total_steps - 2``, then on to the minimum.
    """

    def __init__(self, optimizer, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos",
                 cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, **state):
        cls = "OneCycleLR"
        self.max_lr = as_real(cls, "max_lr", max_lr, 0.0, lo_open=True)
        self.total_steps = as_int(cls, "total_steps", total_steps, 1)
        self.pct_start = as_real(cls, "pct_start", pct_start, 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{cls}: anneal_strategy must be 'cos' or 'linear', got "
                             f"{anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum = as_real(cls, "base_momentum", base_momentum, 0.0, 1.0,
                                     hi_open=True)
        self.max_momentum = as_real(cls, "max_momentum", max_momentum, 0.0, 1.0, hi_open=True)
        self.div_factor = as_real(cls, "div_factor", div_factor, 0.0, lo_open=True)
        self.final_div_factor = as_real(cls, "final_div_factor", final_div_factor, 0.0,
                                        lo_open=True)
        self.three_phase = bool(three_phase)
        if self.cycle_momentum and not (hasattr(optimizer, "momentum")
                                        or hasattr(optimizer, "betas")):
            raise ValueError(f"{cls}: cycle_momentum=True needs an optimizer with momentum "
                             f"or betas, got {optimizer!r}")
        initial = self.max_lr / self.div_factor
        low = initial / self.final_div_factor
        T = self.total_steps
        #: (end step, start lr, end lr, start momentum, end momentum), PyTorch's phases
        if self.three_phase:
            self._phases = [
                (float(self.pct_start * T) - 1, initial, self.max_lr, "max", "base"),
                (float(2 * self.pct_start * T) - 2, self.max_lr, initial, "base", "max"),
                (T - 1, initial, low, "max", "max"),
            ]
        else:
            self._phases = [
                (float(self.pct_start * T) - 1, initial, self.max_lr, "max", "base"),
                (T - 1, self.max_lr, low, "base", "max"),
            ]
        state.setdefault("base_lr", initial)
        super().__init__(optimizer, **state)

    def _phase(self, t):
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {t} times, but the schedule has "
                             f"total_steps={self.total_steps}")
        start = 0.0
        for k, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
            if t <= end or k == len(self._phases) - 1:
                return (t - start) / (end - start), lr0, lr1, m0, m1
            start = end
        raise AssertionError("unreachable")  # pragma: no cover

    def _anneal(self, a, b, pct):
        if self.anneal_strategy == "cos":
            return _cos_between(a, b, pct)
        return (b - a) * pct + a

    def lr_at(self, t):
        pct, lr0, lr1, _, _ = self._phase(t)
        return self._anneal(lr0, lr1, pct)

    def momentum_at(self, t):
        """The momentum (or beta1) after ``t`` steps."""
        pct, _, _, m0, m1 = self._phase(t)
        value = {"max": self.max_momentum, "base": self.base_momentum}
        return self._anneal(value[m0], value[m1], pct)

    def _apply(self):
        super()._apply()
        if self.cycle_momentum:
            m = self.momentum_at(self.last_step)
            if hasattr(self.optimizer, "betas"):
                self.optimizer.betas = (m, self.optimizer.betas[1])
            else:
                self.optimizer.momentum = m

    def _hyper(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps,
                "pct_start": self.pct_start, "anneal_strategy": self.anneal_strategy,
                "cycle_momentum": self.cycle_momentum, "base_momentum": self.base_momentum,
                "max_momentum": self.max_momentum, "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "three_phase": self.three_phase}


class WarmupCosineLR(LRScheduler):
    """A linear warm-up, then a cosine down to ``eta_min``.

    For ``t < warmup_steps``: ``lr = lr0 * (start_factor + (1 - start_factor) * t /
    warmup_steps)``; from then on ``CosineAnnealingLR`` with ``T_max = total_steps -
    warmup_steps``, counted from the end of the warm-up. This is PyTorch's
    ``SequentialLR([LinearLR(start_factor, total_iters=warmup_steps),
    CosineAnnealingLR(T_max, eta_min)], milestones=[warmup_steps])``.

    Parameters
    ----------
    optimizer : Optimizer
    warmup_steps : int >= 1
    total_steps : int > warmup_steps
    start_factor : float in (0, 1], default 0.1
    eta_min : float >= 0, default 0
    """

    def __init__(self, optimizer, warmup_steps, total_steps, start_factor=0.1, eta_min=0.0,
                 **state):
        cls = "WarmupCosineLR"
        self.warmup_steps = as_int(cls, "warmup_steps", warmup_steps, 1)
        self.total_steps = as_int(cls, "total_steps", total_steps, self.warmup_steps + 1)
        self.start_factor = as_real(cls, "start_factor", start_factor, 0.0, 1.0, lo_open=True)
        self.eta_min = as_real(cls, "eta_min", eta_min, 0.0)
        super().__init__(optimizer, **state)

    def lr_at(self, t):
        w = self.warmup_steps
        if t < w:
            return self.base_lr * (self.start_factor + (1 - self.start_factor) * t / w)
        T = self.total_steps - w
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * (t - w) / T)) / 2

    def _hyper(self):
        return {"warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "start_factor": self.start_factor, "eta_min": self.eta_min}


_SCHEDULES = {cls.__name__: cls for cls in (StepLR, CosineAnnealingLR, OneCycleLR,
                                            WarmupCosineLR)}


def get_scheduler(config: dict, optimizer) -> LRScheduler:
    """Rebuild a schedule from :meth:`LRScheduler.config` (as saved in a checkpoint),
    attached to ``optimizer`` and at its saved step.

    Raises ValueError for an unknown type or arguments the schedule does not take.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a schedule config must be a dict, got {config!r}")
    cfg = dict(config)
    kind = cfg.pop("type", None)
    if kind not in _SCHEDULES:
        raise ValueError(f"unknown schedule type {kind!r}; known: {', '.join(_SCHEDULES)}")
    try:
        return _SCHEDULES[kind](optimizer, **cfg)
    except TypeError as e:
        raise ValueError(f"{kind}: bad arguments {sorted(cfg)}: {e}") from None
