"""Training recipes: what ``cycnn train`` does when no option says otherwise.

A recipe names a network from :data:`cycnn.zoo.MODELS` (with the keyword arguments in its
``model_options``) and every hyperparameter of its training; :func:`build` turns one into
the objects :meth:`Sequential.fit` takes. The command line starts from the recipe of the
chosen data set and lets each option override one entry, so ``cycnn train`` and
``cycnn train --dataset fashion-mnist`` are each the documented run of the page "Training
recipes".
"""

from __future__ import annotations

import math

import numpy as np

from .augment import RandomAffine
from .layers import SoftmaxCrossEntropy
from .optim import SGD, Adam, AdamW
from .schedules import CosineAnnealingLR, OneCycleLR, StepLR, WarmupCosineLR
from .zoo import MODELS

__all__ = ["RECIPES", "AUGMENT", "OPTIMIZERS", "SCHEDULES", "build", "make_optimizer",
           "make_schedule", "make_augment", "make_loss"]

#: the augmentation of the digits recipe (``--augment`` turns it on for other data sets)
AUGMENT = {"degrees": 10.0, "translate": 2.0, "scale": [0.9, 1.1], "shear": 5.0}

#: the recipe of each data set (the digits' one is ``cycnn train`` with no options)
RECIPES = {
    "digits": {
        "model": "convnet", "model_options": {"hidden": 256}, "epochs": 25, "batch_size": 128,
        "optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": True,
        "weight_decay": 1e-3, "schedule": "onecycle", "augment": AUGMENT,
        "label_smoothing": 0.1,
    },
    "mnist": {
        "model": "convnet", "model_options": {"hidden": 256}, "epochs": 5, "batch_size": 128,
        "optimizer": "sgd", "lr": 0.2, "momentum": 0.9, "nesterov": True,
        "weight_decay": 1e-3, "schedule": "onecycle", "augment": AUGMENT,
        "label_smoothing": 0.1,
    },
    "fashion-mnist": {
        "model": "convnet", "model_options": {}, "epochs": 5, "batch_size": 64,
        "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 5e-4, "schedule": "onecycle", "augment": None,
        "label_smoothing": 0.0,
    },
}

#: what a checkpoint written before recipes existed was trained with (cycnn 0.1's
#: ``cycnn train``): resuming one continues the same way
LEGACY = {"model": "lenet5", "model_options": {}, "epochs": 15, "batch_size": 32,
          "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
          "schedule": "constant", "augment": None, "label_smoothing": 0.0}

#: the optimizers by name, and the learning rate each starts from when a run picks an
#: optimizer other than its recipe's without giving --lr
OPTIMIZERS = {"sgd": (SGD, 0.01), "adam": (Adam, 1e-3), "adamw": (AdamW, 1e-3)}

#: the schedules by name (``constant`` keeps the learning rate)
SCHEDULES = ("constant", "step", "cosine", "onecycle", "warmup-cosine")


def make_optimizer(recipe):
    """The optimizer of ``recipe`` (its ``optimizer``, ``lr``, ``momentum``,
    ``nesterov`` and ``weight_decay`` entries)."""
    cls, _ = OPTIMIZERS[recipe["optimizer"]]
    if cls is SGD:
        return SGD(recipe["lr"], momentum=recipe["momentum"],
                   weight_decay=recipe["weight_decay"],
                   nesterov=recipe["nesterov"] and recipe["momentum"] > 0)
    return cls(recipe["lr"], weight_decay=recipe["weight_decay"])


def make_schedule(recipe, optimizer, n_train):
    """The learning-rate schedule of ``recipe`` over its whole run (None for
    ``constant``), attached to ``optimizer``; its steps are batches."""
    name, epochs = recipe["schedule"], recipe["epochs"]
    steps_per_epoch = math.ceil(n_train / recipe["batch_size"])
    total = epochs * steps_per_epoch
    if name == "constant":
        return None
    if name == "step":  # divide by 10 after each third of the epochs
        return StepLR(optimizer, step_size=max(1, epochs // 3) * steps_per_epoch, gamma=0.1)
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total)
    if name == "onecycle":
        return OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=total)
    if name == "warmup-cosine":
        return WarmupCosineLR(optimizer, warmup_steps=steps_per_epoch,
                              total_steps=max(total, steps_per_epoch + 1))
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def make_augment(recipe):
    """The :class:`RandomAffine` of ``recipe`` (None when its ``augment`` is None)."""
    aug = recipe.get("augment")
    if not aug:
        return None
    return RandomAffine(aug["degrees"], aug["translate"], tuple(aug["scale"]), aug["shear"])


def make_loss(recipe):
    """The training loss of ``recipe``: softmax cross-entropy with its
    ``label_smoothing`` (0 when the entry is missing, as in checkpoints written before
    the entry existed)."""
    return SoftmaxCrossEntropy(label_smoothing=recipe.get("label_smoothing", 0.0))


def build(recipe, n_train, seed=0, dtype=np.float32):
    """The model, optimizer, schedule and augmentation a recipe describes.

    Parameters
    ----------
    recipe : dict
        An entry of :data:`RECIPES`, possibly with some values replaced.
    n_train : int
        Training-set size (the schedule counts batches: ``epochs * ceil(n_train /
        batch_size)`` steps).
    seed : int, default 0
        Seed of the initial weights.
    dtype : float32 (default) or float64

    Returns
    -------
    (Sequential, Optimizer, LRScheduler or None, RandomAffine or None)

    Examples
    --------
    >>> model, opt, sched, aug = build(RECIPES["digits"], n_train=4000)
    >>> type(opt).__name__, round(opt.lr, 6), opt.nesterov   # OneCycle starts at lr / 25
    ('SGD', 0.008, True)
    >>> sched.total_steps, aug.degrees
    (800, 10.0)
    """
    model = MODELS[recipe["model"]](seed, dtype, **recipe.get("model_options", {}))
    optimizer = make_optimizer(recipe)
    return model, optimizer, make_schedule(recipe, optimizer, n_train), make_augment(recipe)
