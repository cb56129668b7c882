"""The ``cycnn`` command: ``cycnn train`` trains a LeNet-5-style network.

    cycnn train                          # bundled digits, defaults: about 97 % in seconds
    cycnn train --dataset fashion-mnist --epochs 5 --optimizer adam --save fm.npz
    cycnn train --resume fm.npz --epochs 10
    cycnn notebooks course               # every docs page as a Jupyter notebook

Progress goes to stderr (a bar per epoch on a terminal, one line per epoch otherwise);
the summary goes to stdout. Usage errors exit with status 2 and a one-line message.
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
from .optim import SGD, Adam
from .zoo import lenet5

__all__ = ["main", "build_parser"]

DEFAULTS = {"epochs": 15, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9, "seed": 0,
            "lr": {"sgd": 0.01, "adam": 1e-3}}


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
        help="train a LeNet-5-style CNN and report its test accuracy",
        description=textwrap.fill(
            "Train a LeNet-5-style CNN (conv 1->6 5x5, ReLU, max-pool 2, conv 6->16 5x5, "
            "ReLU, max-pool 2, flatten, dense 256->120->84->10) with mini-batch gradient "
            "descent, then report the accuracy on the held-out test set, the time taken "
            "and where the weights were saved. With no options it trains on the 5,000 "
            "MNIST digits bundled with cycnn (4,000 train / 1,000 test). A checkpoint is "
            "written after every epoch; Ctrl-C stops after the current batch and saves.", 78
        ),
        epilog=(
            "examples:\n"
            "  cycnn train\n"
            "  cycnn train --optimizer adam --epochs 10 --threads 1\n"
            "  cycnn train --dataset fashion-mnist --epochs 3 --batch-size 64 --save fm.npz\n"
            "  cycnn train --resume fm.npz --epochs 6      # continue to epoch 6"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--dataset", choices=datasets.DATASETS, default="digits",
                   help="data set (default: digits, bundled; mnist and fashion-mnist read "
                        "the four standard IDX files from --data-dir)")
    t.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="directory with the IDX files (default for fashion-mnist: "
                        f"{datasets.FASHION_MNIST_DIR} when present)")
    t.add_argument("--download", action="store_true",
                   help="fetch missing mnist/fashion-mnist files into --data-dir (default: "
                        "~/.cache/cycnn/<dataset>, or $CYCNN_DATA) and check their MD5 sums")
    t.add_argument("--epochs", type=_positive_int("--epochs"), default=None,
                   help=f"train until this many epochs are done (default: "
                        f"{DEFAULTS['epochs']})")
    t.add_argument("--batch-size", type=_positive_int("--batch-size"),
                   default=DEFAULTS["batch_size"], metavar="N",
                   help=f"samples per gradient step (default: {DEFAULTS['batch_size']})")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                   help=f"sgd (with momentum) or adam (default: {DEFAULTS['optimizer']})")
    t.add_argument("--lr", type=_positive_float("--lr"), default=None,
                   help="learning rate (default: 0.01 for sgd, 0.001 for adam)")
    t.add_argument("--momentum", type=_option("--momentum", float, as_real, 0.0, 1.0, hi_open=True),
                   default=DEFAULTS["momentum"],
                   help=f"SGD momentum in [0, 1) (default: {DEFAULTS['momentum']})")
    t.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="floating-point type of weights and data (default: float32, or "
                        "the checkpoint's with --resume)")
    t.add_argument("--seed", type=_nonneg_int("--seed"), default=DEFAULTS["seed"],
                   help="seed of the initial weights and the batch order; the same seed "
                        "and --threads give bit-identical weights (default: 0)")
    t.add_argument("--threads", type=_positive_int("--threads"), default=None,
                   help=f"threads for the compiled kernels and BLAS (default: all cores, "
                        f"here {get_num_threads()})")
    t.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="checkpoint file (.npz) written after every epoch and on Ctrl-C "
                        "(default: cycnn-<dataset>.npz in the current directory)")
    t.add_argument("--no-save", action="store_true", help="do not write a checkpoint")
    t.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue from a checkpoint: weights, optimizer state and the epoch "
                        "count; an epoch interrupted half-way is run again from its start")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one line per epoch is still printed to stderr)")
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


def _train(args) -> int:
    out = sys.stdout
    if args.threads is not None:
        try:
            set_num_threads(args.threads)
        except ValueError as e:
            raise _UsageError(f"--threads: {str(e).split(': ', 1)[1]}") from None
    save = None if args.no_save else (args.save or Path(f"cycnn-{args.dataset}.npz"))
    if save is not None and not (save.parent if str(save.parent) else Path(".")).is_dir():
        raise _UsageError(f"cannot save to {save}: directory {save.parent} does not exist")

    meta = {}
    if args.resume is not None:
        try:
            model, optimizer, meta = load_checkpoint(args.resume)
        except (FileNotFoundError, CheckpointError) as e:
            raise _UsageError(str(e)) from None
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
        if args.lr is not None and optimizer is not None:
            optimizer.lr = args.lr
        # numbers the checkpoint knows win over defaults, so a plain --resume continues
        args.seed = meta.get("seed", args.seed)
    else:
        dtype = np.dtype(args.dtype or "float32")
        model, optimizer = lenet5(args.seed, dtype), None
    if optimizer is None:
        kind = args.optimizer or DEFAULTS["optimizer"]
        lr = args.lr or DEFAULTS["lr"][kind]
        try:
            optimizer = SGD(lr, momentum=args.momentum) if kind == "sgd" else Adam(lr)
        except ValueError as e:
            raise _UsageError(str(e)) from None
    start = int(meta.get("epochs_completed", 0))
    epochs = args.epochs or max(DEFAULTS["epochs"], start)
    if start >= epochs:
        raise _UsageError(f"{args.resume} already has {start} epochs; pass --epochs above "
                          f"{start} to train further")

    (x_train, y_train), (x_test, y_test) = _load_data(args, dtype)
    name = "LeNet-5" if args.resume is None else f"model of {args.resume}"
    print(f"cycnn {__version__}: {name} ({model.num_params:,} parameters, {dtype}) on "
          f"{args.dataset}: {len(x_train):,} training / {len(x_test):,} test images", file=out)
    print(f"{optimizer!r}, batch {args.batch_size}, epochs {start + 1}-{epochs}, "
          f"{get_num_threads()} thread(s), seed {args.seed}"
          + (f", resumed from {args.resume}" if args.resume else ""), file=out, flush=True)

    history = {k: list(v) for k, v in meta.get("history", {}).items()}

    def checkpoint(epochs_completed, hist):
        if save is None:
            return
        merged = {k: history.get(k, []) + list(hist.get(k, [])) for k in hist}
        model.save(save, optimizer, meta={
            "dataset": args.dataset, "seed": args.seed, "epochs_completed": epochs_completed,
            "batch_size": args.batch_size, "history": merged,
        })

    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train, epochs=epochs, batch_size=args.batch_size,
                     optimizer=optimizer, seed=args.seed, initial_epoch=start,
                     verbose=2 if args.no_progress else 1,
                     on_epoch_end=lambda e, h: checkpoint(e + 1, h))
    seconds = time.perf_counter() - t0
    if hist.interrupted:
        checkpoint(hist.epochs_completed, hist)
        print(f"interrupted: {hist.epochs_completed} complete epoch(s) in {seconds:.1f} s"
              + (f"; checkpoint saved to {save} (continue with --resume {save})"
                 if save else "; nothing saved (--no-save)"), file=out, flush=True)
        return 130
    loss, acc = model.evaluate(x_test, y_test)
    n_right = int(round(acc * len(y_test)))
    print(f"test accuracy {100 * acc:.2f}% ({n_right}/{len(y_test)}), test loss {loss:.4f}",
          file=out)
    print(f"trained {epochs - start} epoch(s) in {seconds:.1f} s "
          f"({(epochs - start) * len(x_train) / seconds:,.0f} samples/s)", file=out)
    print(f"weights saved to {save}" if save else "weights not saved (--no-save)", file=out,
          flush=True)
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
