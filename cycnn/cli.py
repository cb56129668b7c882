"""The ``cycnn`` command: train, evaluate, predict and export CNNs.

    cycnn train                          # bundled digits, the documented recipe
    cycnn train --dataset fashion-mnist --save fm.npz
    cycnn train --resume fm.npz --epochs 10
    cycnn evaluate fm.npz --plot confusion.png
    cycnn predict cycnn-digits.npz seven.png three.npy
    cycnn export cycnn-digits.npz digits.onnx
    cycnn notebooks course               # every docs page as a Jupyter notebook

Progress goes to stderr (a bar per epoch on a terminal, one line per epoch otherwise);
results go to stdout. Usage errors, and files that cannot be used (missing, corrupt,
mismatched checkpoints, unreadable images), exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from . import __version__, datasets
from ._threads import get_num_threads, set_num_threads
from ._validate import as_int, as_real
from .checkpoint import CheckpointError, load_checkpoint
from .recipes import (
    AUGMENT,
    LEGACY,
    OPTIMIZERS,
    RECIPES,
    SCHEDULES,
    build,
    make_augment,
    make_loss,
    make_optimizer,
)
from .zoo import MODELS

__all__ = ["main", "build_parser"]

DEFAULTS = {"seed": 0}


class _UsageError(Exception):
    """A problem with the command line or its files: reported in one line, exit 2."""


def _option(name, parse, check, *limits, **kw):
    """An argparse ``type=``: ``parse`` the text, then apply the library's own check."""
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            kind = "an integer" if parse is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}") from None
        try:
            return check("cycnn", name, value, *limits, **kw)
        except (TypeError, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    return convert


def _positive_int(name):
    return _option(name, int, as_int, 1)


def _nonneg_int(name):
    return _option(name, int, as_int, 0, None)


def _positive_float(name):
    return _option(name, float, as_real, 0.0, lo_open=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cycnn",
        description="Backpropagation in convolutional networks, derived and compiled.",
    )
    parser.add_argument("--version", action="version", version=f"cycnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    t = sub.add_parser(
        "train",
        help="train a CNN and report its test accuracy",
        description=textwrap.fill(
            "Train a CNN with mini-batch gradient descent, then report the accuracy on "
            "the held-out test set, the time taken and where the weights were saved. "
            "With no options it trains on the 5,000 MNIST digits bundled with cycnn "
            "(4,000 train / 1,000 test) with the digits recipe: the convnet model (two "
            "conv + batch-norm blocks, dropout), SGD with Nesterov momentum and weight "
            "decay, a one-cycle learning-rate schedule, random affine augmentation and "
            "label smoothing. "
            "Every option overrides one entry of the data set's recipe. A checkpoint is "
            "written after every epoch; Ctrl-C stops after the current batch and saves.",
            78),
        epilog=(
            "examples:\n"
            "  cycnn train\n"
            "  cycnn train --model lenet5 --optimizer adam --schedule constant --no-augment\n"
            "  cycnn train --dataset fashion-mnist --save fm.npz --plot fm-curves.png\n"
            "  cycnn train --resume fm.npz --epochs 6      # continue to epoch 6"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    digits = RECIPES["digits"]
    t.add_argument("--dataset", choices=datasets.DATASETS, default="digits",
                   help="data set (default: digits, bundled; mnist and fashion-mnist read "
                        "the four standard IDX files from --data-dir)")
    t.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory with the IDX files (default for fashion-mnist: "
                        f"{datasets.FASHION_MNIST_DIR} when present)")
    t.add_argument("--download", action="store_true",
                   help="fetch missing mnist/fashion-mnist files into --data-dir (default: "
                        "~/.cache/cycnn/<dataset>, or $CYCNN_DATA) and check their MD5 sums")
    t.add_argument("--model", choices=tuple(MODELS), default=None,
                   help=f"network (default: the recipe's, {digits['model']} for digits)")
    t.add_argument("--epochs", type=_positive_int("--epochs"), default=None,
                   help=f"train until this many epochs are done (default: the recipe's, "
                        f"{digits['epochs']} for digits)")
    t.add_argument("--batch-size", type=_positive_int("--batch-size"), default=None,
                   metavar="N", help=f"samples per gradient step (default: "
                                     f"{digits['batch_size']})")
    t.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=None,
                   help=f"sgd (with momentum), adam or adamw (default: "
                        f"{digits['optimizer']})")
    t.add_argument("--lr", type=_positive_float("--lr"), default=None,
                   help=f"learning rate; the peak of a one-cycle schedule (default: "
                        f"{digits['lr']} for the recipe's optimizer, else 0.01 for sgd, "
                        "0.001 for adam and adamw)")
    t.add_argument("--momentum", type=_option("--momentum", float, as_real, 0.0, 1.0, hi_open=True),
                   default=None,
                   help=f"SGD momentum in [0, 1) (default: {digits['momentum']}; a one-cycle "
                        "schedule moves it between 0.85 and 0.95)")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum for SGD (default: on)")
    t.add_argument("--weight-decay", type=_option("--weight-decay", float, as_real, 0.0),
                   default=None, metavar="WD",
                   help=f"weight decay: L2 for sgd and adam, decoupled for adamw (default: "
                        f"{digits['weight_decay']})")
    t.add_argument("--label-smoothing", type=_option("--label-smoothing", float, as_real, 0.0,
                                                     1.0, hi_open=True),
                   default=None, metavar="EPS",
                   help=f"train against targets mixed with the uniform distribution, "
                        f"(1 - EPS) x one-hot + EPS / classes; EPS in [0, 1) (default: "
                        f"{digits['label_smoothing']} for digits and mnist, 0 for "
                        "fashion-mnist)")
    t.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help=f"learning-rate schedule over the whole run, stepped every batch "
                        f"(default: {digits['schedule']})")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random rotations, scaling, shear and shifts of the training images "
                        "(default: on for digits and mnist, off for fashion-mnist)")
    t.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="floating-point type of weights and data (default: float32, or "
                        "the checkpoint's with --resume)")
    t.add_argument("--seed", type=_nonneg_int("--seed"), default=DEFAULTS["seed"],
                   help="seed of the initial weights, the batch order, the augmentation and "
                        "dropout; the same seed and --threads give bit-identical weights "
                        "(default: 0)")
    t.add_argument("--threads", type=_positive_int("--threads"), default=None,
                   help=f"threads for the compiled kernels and BLAS (default: all cores, "
                        f"here {get_num_threads()})")
    t.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="checkpoint file written after every epoch and on Ctrl-C: .npz "
                        "(everything, for --resume) or .safetensors (weights only) "
                        "(default: cycnn-<dataset>.npz in the current directory)")
    t.add_argument("--no-save", action="store_true", help="do not write a checkpoint")
    t.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue from a .npz checkpoint: weights, optimizer and schedule "
                        "state and the epoch count; an epoch interrupted half-way is run "
                        "again from its start")
    t.add_argument("--plot", type=Path, default=None, metavar="FILE",
                   help="draw the loss and accuracy curves (training and test, per epoch) "
                        "to FILE (.png, .svg, .pdf; needs matplotlib)")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one line per epoch is still printed to stderr)")

    def checkpoint_arg(p):
        p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                       help="a model saved by cycnn train (.npz or .safetensors)")

    def threads_arg(p):
        p.add_argument("--threads", type=_positive_int("--threads"), default=None,
                       help="threads for the compiled kernels and BLAS (default: all cores)")

    e = sub.add_parser(
        "evaluate", help="accuracy, loss, per-class accuracy and confusion matrix",
        description="Score a saved model on a data set's test images: accuracy, mean "
                    "loss, accuracy per class and the confusion matrix.",
        epilog="examples:\n  cycnn evaluate cycnn-digits.npz\n"
               "  cycnn evaluate fm.npz --dataset fashion-mnist --plot confusion.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    checkpoint_arg(e)
    e.add_argument("--dataset", choices=datasets.DATASETS, default=None,
                   help="data set (default: the one the checkpoint was trained on, else "
                        "digits)")
    e.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory with the IDX files, as for cycnn train")
    e.add_argument("--batch-size", type=_positive_int("--batch-size"), default=256,
                   metavar="N", help="images per forward pass (default: 256)")
    e.add_argument("--plot", type=Path, default=None, metavar="FILE",
                   help="draw the confusion matrix to FILE (needs matplotlib)")
    threads_arg(e)

    pr = sub.add_parser(
        "predict", help="classify image files (PNG, JPEG, .npy)",
        description=textwrap.fill(
            "Classify image files with a saved model. Each image is turned into the "
            "model's input the way MNIST's digits were made: grey, inverted when the "
            "background is light, the drawing fitted into 20x20 pixels and centred in "
            "28x28. Prints the predicted class and its probability per file. PNG and "
            "JPEG need Pillow; .npy files hold a (H, W) or (H, W, C) array (0-255 "
            "integers or floats in [0, 1]).", 78),
        epilog="example:\n  cycnn predict cycnn-digits.npz seven.png three.npy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    checkpoint_arg(pr)
    pr.add_argument("files", type=Path, nargs="+", metavar="FILE", help="image files")
    threads_arg(pr)

    x = sub.add_parser(
        "export", help="write a saved model as an ONNX graph",
        description="Write a saved model as an ONNX graph (needs the onnx package): input "
                    "'input' (N, C, H, W) float32, output 'logits'.",
        epilog="example:\n  cycnn export cycnn-digits.npz digits.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    checkpoint_arg(x)
    x.add_argument("output", type=Path, metavar="OUT.onnx", help="the file to write")

    _add_notebooks_parser(sub)
    return parser


def _load_data(args, dtype):
    name = args.dataset
    if name == "digits":
        if args.data_dir is not None:
            raise _UsageError("--data-dir is only for --dataset mnist or fashion-mnist "
                              "(the digits are bundled)")
        return datasets.load_digits(dtype)
    if args.data_dir is not None and not args.data_dir.is_dir() and not args.download:
        raise _UsageError(f"data directory {args.data_dir} does not exist")
    if name == "mnist" and args.data_dir is None and not args.download:
        raise _UsageError("--dataset mnist needs --data-dir DIR holding the four MNIST "
                          "IDX files (train-images-idx3-ubyte.gz, ...), or --download")
    try:
        return datasets.load(name, args.data_dir, dtype, download=args.download)
    except (FileNotFoundError, ValueError, OSError) as e:  # OSError: a failed download
        raise _UsageError(str(e).replace("pass download=True", "pass --download")) from None


def _set_threads(args):
    if args.threads is not None:
        try:
            set_num_threads(args.threads)
        except ValueError as e:
            raise _UsageError(f"--threads: {str(e).split(': ', 1)[1]}") from None


def _check_output(path, what):
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise _UsageError(f"cannot write {what} to {path}: directory {path.parent} does "
                          "not exist")


def _need_matplotlib(option):
    from .plots import require_matplotlib

    try:
        require_matplotlib()
    except ImportError as e:
        raise _UsageError(f"{option}: {e}") from None


def _load(path, what="checkpoint"):
    try:
        return load_checkpoint(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError, CheckpointError) as e:
        raise _UsageError(str(e)) from None
    except OSError as e:
        raise _UsageError(f"{what} {path}: {e}") from None


def _recipe(args, base):
    """``base`` (a recipe) with each option the command line gave applied."""
    recipe = dict(base)
    if args.model is not None and args.model != recipe["model"]:
        recipe["model_options"] = {}  # the options are the recipe's network's
    given = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
             "momentum": args.momentum, "nesterov": args.nesterov,
             "weight_decay": args.weight_decay, "schedule": args.schedule,
             "label_smoothing": args.label_smoothing}
    recipe.update({k: v for k, v in given.items() if v is not None})
    if args.optimizer is not None and args.optimizer != recipe["optimizer"]:
        recipe["optimizer"] = args.optimizer
        recipe["lr"] = OPTIMIZERS[args.optimizer][1]
    if args.lr is not None:
        recipe["lr"] = args.lr
    if args.augment is not None:
        recipe["augment"] = (recipe.get("augment") or AUGMENT) if args.augment else None
    return recipe


def _describe(recipe, optimizer, scheduler, augment):
    parts = [repr(optimizer).replace(f"lr={optimizer.lr!r}", f"lr={optimizer.lr:.4g}")]
    parts.append(f"{recipe['schedule']} schedule" if scheduler is not None
                 else "constant learning rate")
    parts.append(repr(augment) if augment is not None else "no augmentation")
    if recipe.get("label_smoothing"):
        parts.append(f"label smoothing {recipe['label_smoothing']:g}")
    return ", ".join(parts)


def _train(args) -> int:
    out = sys.stdout
    _set_threads(args)
    save = None if args.no_save else (args.save or Path(f"cycnn-{args.dataset}.npz"))
    if save is not None:
        _check_output(save, "the checkpoint")
    if args.plot is not None:
        _check_output(args.plot, "the plot")
        _need_matplotlib("--plot")

    meta, scheduler = {}, None
    if args.resume is not None:
        if args.resume.suffix == ".safetensors":
            raise _UsageError(f"{args.resume} holds weights only (no optimizer state); "
                              "--resume needs a .npz checkpoint")
        model, optimizer, meta = ck = _load(args.resume)
        scheduler = ck.scheduler
        dtype = np.dtype(args.dtype or model.dtype)
        if dtype != model.dtype:
            model.astype(dtype)
            if optimizer is not None:
                optimizer.astype(dtype)
        if meta.get("dataset") not in (None, args.dataset):
            raise _UsageError(f"{args.resume} was trained on {meta['dataset']!r}; pass "
                              f"--dataset {meta['dataset']}")
        if args.optimizer is not None and optimizer is not None and \
                type(optimizer).__name__.lower() != args.optimizer:
            raise _UsageError(f"{args.resume} was trained with {type(optimizer).__name__}; "
                              "drop --optimizer to continue with it")
        base = meta.get("recipe") or dict(LEGACY, batch_size=meta.get("batch_size", 32))
        for option, key in (("--model", "model"), ("--schedule", "schedule"),
                            ("--batch-size", "batch_size")):
            given = getattr(args, key)
            if given is not None and given != base.get(key):
                raise _UsageError(f"{args.resume} was trained with {option} "
                                  f"{base.get(key)}; drop {option} to continue with it")
        if args.lr is not None and scheduler is not None:
            raise _UsageError(f"{args.resume} follows a {type(scheduler).__name__} "
                              "schedule, which sets the learning rate; drop --lr")
        if args.lr is not None and optimizer is not None:
            optimizer.lr = args.lr
        # numbers the checkpoint knows win over defaults, so a plain --resume continues
        args.seed = meta.get("seed", args.seed)
        start = int(meta.get("epochs_completed", 0))
        recipe = _recipe(args, base)
        recipe["epochs"] = args.epochs or max(base["epochs"], start)
        if optimizer is None:
            optimizer = make_optimizer(recipe)
        augment = make_augment(recipe)
        name = f"model of {args.resume}"
    else:
        dtype = np.dtype(args.dtype or "float32")
        recipe = _recipe(args, RECIPES[args.dataset])
        start, name = 0, recipe["model"]
    epochs = recipe["epochs"]
    if start >= epochs:
        raise _UsageError(f"{args.resume} already has {start} epochs; pass --epochs above "
                          f"{start} to train further")

    (x_train, y_train), (x_test, y_test) = _load_data(args, dtype)
    if args.resume is None:
        try:
            model, optimizer, scheduler, augment = build(recipe, len(x_train), args.seed, dtype)
        except ValueError as e:
            raise _UsageError(str(e)) from None
    elif scheduler is not None:
        steps = -(-len(x_train) // recipe["batch_size"])
        span = getattr(scheduler, "total_steps", None)
        if span is not None and epochs * steps > span:
            raise _UsageError(f"{args.resume} follows a {type(scheduler).__name__} "
                              f"schedule of {span // steps} epochs, which cannot be "
                              f"extended; pass --epochs {span // steps} or less")
    print(f"cycnn {__version__}: {name} ({model.num_params:,} parameters, {dtype}) on "
          f"{args.dataset}: {len(x_train):,} training / {len(x_test):,} test images", file=out)
    print(f"{_describe(recipe, optimizer, scheduler, augment)}, batch {recipe['batch_size']}, "
          f"epochs {start + 1}-{epochs}, {get_num_threads()} thread(s), seed {args.seed}"
          + (f", resumed from {args.resume}" if args.resume else ""), file=out, flush=True)

    history = {k: list(v) for k, v in meta.get("history", {}).items()}
    weights_only = save is not None and save.suffix == ".safetensors"

    def merged(hist):
        return {k: history.get(k, []) + list(hist.get(k, [])) for k in hist}

    def checkpoint(epochs_completed, hist):
        if save is None:
            return
        info = {"dataset": args.dataset, "seed": args.seed,
                "epochs_completed": epochs_completed, "batch_size": recipe["batch_size"],
                "recipe": recipe, "history": merged(hist)}
        if weights_only:
            model.save(save, meta=info)
        else:
            model.save(save, optimizer, meta=info, scheduler=scheduler)

    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train, epochs=epochs, batch_size=recipe["batch_size"],
                     optimizer=optimizer, seed=args.seed, initial_epoch=start,
                     verbose=2 if args.no_progress else 1,
                     validation_data=(x_test, y_test) if args.plot is not None else None,
                     on_epoch_end=lambda e, h: checkpoint(e + 1, h),
                     augment=augment, scheduler=scheduler, loss=make_loss(recipe))
    seconds = time.perf_counter() - t0
    if hist.interrupted:
        checkpoint(hist.epochs_completed, hist)
        resumable = save is not None and not weights_only
        print(f"interrupted: {hist.epochs_completed} complete epoch(s) in {seconds:.1f} s"
              + (f"; checkpoint saved to {save} (continue with --resume {save})"
                 if resumable else f"; weights saved to {save}" if save
                 else "; nothing saved (--no-save)"), file=out, flush=True)
        return 130
    loss, acc = model.evaluate(x_test, y_test)
    n_right = int(round(acc * len(y_test)))
    print(f"test accuracy {100 * acc:.2f}% ({n_right}/{len(y_test)}), test loss {loss:.4f}",
          file=out)
    print(f"trained {epochs - start} epoch(s) in {seconds:.1f} s "
          f"({(epochs - start) * len(x_train) / seconds:,.0f} samples/s)", file=out)
    print(f"weights saved to {save}" if save else "weights not saved (--no-save)", file=out,
          flush=True)
    if args.plot is not None:
        from .plots import plot_history

        full = merged(hist)
        if len(full.get("val_loss", [])) != len(full["loss"]):  # resumed: no test curve before
            full.pop("val_loss", None)
            full.pop("val_accuracy", None)
        plot_history(full, args.plot, title=f"{name} on {args.dataset}")
        print(f"curves drawn to {args.plot}", file=out, flush=True)
    return 0


def _dataset_of(args, meta):
    name = args.dataset or meta.get("dataset") or "digits"
    if name not in datasets.DATASETS:  # pragma: no cover - a hand-edited meta
        raise _UsageError(f"unknown dataset {name!r} in the checkpoint; pass --dataset")
    args.dataset = name
    args.download = False
    return name


def _fits(model, path, shape, classes=10):
    try:
        out = model.shapes(shape)[-1]
    except ValueError as e:
        raise _UsageError(f"{path}: its model does not take {shape} images: {e}") from None
    if out != (classes,):
        raise _UsageError(f"{path}: its model has outputs of shape {out}, but the data set "
                          f"has {classes} classes")


def _evaluate(args) -> int:
    from .metrics import confusion_matrix, per_class_accuracy

    _set_threads(args)
    if args.plot is not None:
        _check_output(args.plot, "the plot")
        _need_matplotlib("--plot")
    model, _, meta = _load(args.checkpoint)
    name = _dataset_of(args, meta)
    names = datasets.CLASS_NAMES[name]
    _, (x, y) = _load_data(args, model.dtype)
    _fits(model, args.checkpoint, x.shape[1:], len(names))
    logits = model.predict(x, args.batch_size)
    from .losses import softmax_cross_entropy

    loss, _ = softmax_cross_entropy(logits, y)
    pred = logits.argmax(axis=1)
    m = confusion_matrix(y, pred, len(names))
    right = int(np.trace(m))
    print(f"{args.checkpoint} ({model.num_params:,} parameters) on {name}: "
          f"{len(y):,} test images")
    print(f"accuracy {100 * right / len(y):.2f}% ({right}/{len(y)}), loss {loss:.4f}")
    width = max(len(n) for n in names)
    print(f"\n{'class':<{width}}  accuracy  images")
    for n, a, count in zip(names, per_class_accuracy(m), m.sum(axis=1)):
        print(f"{n:<{width}}  {100 * a:7.2f}%  {count:6d}")
    print("\nconfusion matrix (rows: true class, columns: predicted class)")
    cell = max(4, len(str(m.max())) + 1)
    labels = [str(k) for k in range(len(names))]
    print(" " * 4 + "".join(f"{c:>{cell}}" for c in labels))
    for k, row in enumerate(m):
        print(f"{labels[k]:>3} " + "".join(f"{v:>{cell}}" for v in row))
    if name == "fashion-mnist":
        print("classes: " + ", ".join(f"{k} {n}" for k, n in enumerate(names)))
    if args.plot is not None:
        from .plots import plot_confusion

        plot_confusion(m, names, args.plot,
                       title=f"{args.checkpoint.name} on {name}: {100 * right / len(y):.2f}%")
        print(f"confusion matrix drawn to {args.plot}")
    sys.stdout.flush()
    return 0


def _predict(args) -> int:
    from .activations import softmax
    from .images import ImageError, mnist_like, read_image

    _set_threads(args)
    model, _, meta = _load(args.checkpoint)
    names = datasets.CLASS_NAMES.get(meta.get("dataset"), None)
    shape = model.input_shape or (1, 28, 28)
    if len(shape) != 3 or shape[0] != 1:
        raise _UsageError(f"{args.checkpoint}: its model takes {shape} inputs; predict "
                          "feeds it one-channel images")
    failed = 0
    for path in args.files:
        try:
            x = mnist_like(read_image(path), size=shape[1])
            if shape[1] != shape[2]:
                raise ImageError(f"{path}: the model takes non-square {shape} inputs")
        except ImageError as e:
            print(f"cycnn predict: error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        p = softmax(model.predict(x[None, None].astype(model.dtype))[0].astype(np.float64))
        k = int(p.argmax())
        label = names[k] if names and k < len(names) else str(k)
        print(f"{path}: {label} (class {k}, probability {p[k]:.4f})", flush=True)
    if failed:
        raise _UsageError(f"{failed} of {len(args.files)} file(s) could not be read")
    return 0


def _export(args) -> int:
    from .interop import export_onnx

    model, _, _ = _load(args.checkpoint)
    _check_output(args.output, "the ONNX graph")
    try:
        export_onnx(model, args.output, input_shape=model.input_shape or (1, 28, 28))
    except ImportError as e:
        raise _UsageError(f"{e} (or pip install 'cycnn[onnx]')") from None
    except (TypeError, ValueError) as e:
        raise _UsageError(f"{args.checkpoint}: {e}") from None
    print(f"ONNX graph of {args.checkpoint} ({model.num_params:,} parameters) written to "
          f"{args.output}")
    return 0


# --------------------------------------------------------------------------- notebooks

def _add_notebooks_parser(sub):
    n = sub.add_parser(
        "notebooks", help="write every page of the course as a Jupyter notebook",
        description=textwrap.fill(
            "Write every page of the cycnn docs as a Jupyter notebook (<page>.ipynb) into "
            "DIR, for reading and running offline: the prose and the math as Markdown, the "
            "examples as code cells to run. Notebooks already in DIR are kept (you may "
            "have edited them) unless --force is given.", 78),
    )
    n.add_argument("dir", nargs="?", type=Path, default=Path("cycnn-notebooks"),
                   metavar="DIR", help="where to write them (default: ./cycnn-notebooks)")
    n.add_argument("--force", action="store_true", help="replace notebooks already in DIR")


def _notebooks(args) -> int:
    from ._notebooks import NOTEBOOK_DIR

    found = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if not found:
        raise _UsageError(f"this installation of cycnn has no notebooks ({NOTEBOOK_DIR} is "
                          "empty): they are written when cycnn is built from its source tree")
    out = args.dir
    if out.exists() and not out.is_dir():
        raise _UsageError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for notebook in found:
        target = out / notebook.name
        if target.exists() and not args.force:
            kept.append(notebook.name)
            continue
        shutil.copyfile(notebook, target)
        written.append(notebook.name)
    print(f"wrote {len(written)} notebook(s) to {out}"
          + (f": {', '.join(written)}" if written else ""))
    if kept:
        print(f"kept {len(kept)} that were already there (--force replaces them): "
              f"{', '.join(kept)}")
    print(f"open them with: jupyter lab {out}   (or jupyter notebook {out})")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``cycnn`` command; returns the exit status.

    The thread pools' passive waiting is set up by ``import cycnn`` (see
    ``cycnn/__init__.py``), which runs before NumPy and the kernels load.
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on a usage error
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "export":
            return _export(args)
        if args.command == "notebooks":
            return _notebooks(args)
    except _UsageError as e:
        parser.exit(2, f"cycnn {args.command}: error: {e}\n")
    except KeyboardInterrupt:
        print("cycnn: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
