"""The ``cycnn`` command: train (short runs, recipes, resume, Ctrl-C, plots), evaluate,
predict, export, and usage errors (exit 2, one line, no traceback)."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cycnn
from conftest import extra_or_skip
from cycnn.cli import main

# Tiny runs: one thread, one epoch of LeNet-5 on the bundled digits (4,000 images), the
# rest of the digits recipe unchanged (SGD with Nesterov momentum, one-cycle, augmentation)
FAST = ["--threads", "1", "--epochs", "1", "--no-progress", "--model", "lenet5"]


@pytest.fixture(autouse=True)
def restore_threads():
    old = cycnn.get_num_threads()
    yield
    cycnn.set_num_threads(old)


def _run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "cycnn", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_help_is_clear(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--dataset {digits,mnist,fashion-mnist}", "--data-dir", "--epochs",
                "--batch-size", "--lr", "--optimizer {sgd,adam,adamw}", "--dtype", "--seed",
                "--threads", "--save", "--resume", "--model {lenet5,convnet}",
                "--schedule {constant,step,cosine,onecycle,warmup-cosine}",
                "--augment, --no-augment", "--nesterov, --no-nesterov", "--weight-decay",
                "--label-smoothing", "--plot", "digits recipe"):
        assert opt in out, opt


def test_train_one_epoch_reports_accuracy_time_and_file(tmp_path, capsys):
    path = tmp_path / "w.npz"
    assert main(["train", *FAST, "--save", str(path)]) == 0
    cap = capsys.readouterr()
    assert "test accuracy" in cap.out and "4,000 training / 1,000 test" in cap.out
    assert f"weights saved to {path}" in cap.out and "epoch(s) in" in cap.out
    assert "epoch 1/1: loss" in cap.err  # progress on stderr, one line when not a TTY
    ck = cycnn.load_checkpoint(path)
    model, opt, meta = ck
    assert meta["epochs_completed"] == 1 and meta["dataset"] == "digits"
    assert type(opt).__name__ == "SGD" and opt.nesterov and opt.weight_decay == 1e-3
    assert meta["recipe"] == dict(cycnn.recipes.RECIPES["digits"], model="lenet5",
                                  model_options={}, epochs=1)
    assert type(ck.scheduler).__name__ == "OneCycleLR" and ck.scheduler.last_step == 32
    assert "OneCycleLR" not in cap.out and "onecycle schedule" in cap.out
    assert "RandomAffine(degrees=" in cap.out and "label smoothing 0.1" in cap.out
    acc = model.evaluate(*cycnn.datasets.load_digits()[1])[1]
    assert f"test accuracy {100 * acc:.2f}%" in cap.out


def test_label_smoothing_reaches_the_loss(tmp_path, capsys):
    """The option is trained with, not only recorded: the gradient of a smoothed target
    differs from the one-hot one, so one epoch ends at other weights."""
    paths = {eps: tmp_path / f"ls{eps}.npz" for eps in ("0", "0.3")}
    for eps, path in paths.items():
        assert main(["train", *FAST, "--label-smoothing", eps, "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "label smoothing 0.3" in out and "label smoothing 0," not in out
    smooth, plain = (cycnn.load_checkpoint(paths[e]) for e in ("0.3", "0"))
    assert smooth.meta["recipe"]["label_smoothing"] == 0.3
    w = "0.weight"
    assert not np.allclose(smooth.model.state_dict()[w], plain.model.state_dict()[w])


def test_same_seed_and_threads_give_identical_weights_and_resume_continues(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for p in (a, b):
        assert main(["train", *FAST, "--seed", "7", "--optimizer", "adam", "--schedule",
                     "constant", "--save", str(p)]) == 0
    sa, sb = cycnn.load(a).state_dict(), cycnn.load(b).state_dict()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    capsys.readouterr()
    assert main(["train", "--threads", "1", "--no-progress", "--resume", str(a),
                 "--epochs", "2", "--save", str(a)]) == 0
    out = capsys.readouterr().out
    assert "epochs 2-2" in out and "Adam" in out and "resumed from" in out
    assert cycnn.load_checkpoint(a).meta["epochs_completed"] == 2


def test_float64_run(tmp_path, capsys):
    path = tmp_path / "w64.npz"
    assert main(["train", *FAST, "--dtype", "float64", "--batch-size", "64",
                 "--save", str(path)]) == 0
    assert cycnn.load(path).dtype == np.float64


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "-0.1"], "--lr must be a finite number > 0"),
    (["--epochs", "two"], "--epochs must be an integer"),
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/dir"],
     "data directory /nonexistent/dir does not exist"),
    (["--dataset", "mnist"], "--dataset mnist needs --data-dir"),
    (["--data-dir", "/tmp"], "--data-dir is only for"),
    (["--resume", "/nonexistent/ck.npz"], "checkpoint /nonexistent/ck.npz does not exist"),
        (["--momentum", "1.5"], "--momentum must be a finite number in [0, 1), got 1.5"),
    (["--save", "/nonexistent/dir/w.npz"], "directory /nonexistent/dir does not exist"),
], ids=["batch0", "lr0", "lr-neg", "epochs-text", "dataset", "data-dir", "mnist-dir",
        "digits-dir", "resume", "momentum", "save-dir"])
def test_usage_errors_exit_2_with_a_message(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--threads", "1", "--no-progress",
              *([] if "--save" in args else ["--no-save"]), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_corrupt_resume_file_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "corrupt" in err


def test_subprocess_error_has_no_traceback():
    r = _run("train", "--batch-size", "0")
    assert r.returncode == 2
    assert "error: argument --batch-size" in r.stderr and "Traceback" not in r.stderr
    r = _run("train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    path = tmp_path / "ck.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cycnn", "train", "--threads", "1", "--epochs", "1000",
         "--batch-size", "256", "--save", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert path.exists(), "no checkpoint after the first epoch"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert f"checkpoint saved to {path}" in out and "--resume" in out
    assert cycnn.load_checkpoint(path).meta["epochs_completed"] >= 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary left over


@pytest.mark.slow
def test_default_run_reaches_98_5_percent(tmp_path):
    """The acceptance run: `cycnn train` with every default (the digits recipe, seed 0,
    all cores). Measured on an idle 2-core Xeon: 99.10 % for seed 0 (98.80 and 99.10 % for
    seeds 1 and 2, 98.8 and 98.9 % for seeds 3 and 4 on one thread; see
    docs/training-recipes.md). Another CPU or thread count sums in another order and
    lands like another seed, so this asserts 98.5 %, below the lowest of those five."""
    r = subprocess.run([sys.executable, "-m", "cycnn", "train"], capture_output=True,
                       text=True, timeout=1800, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("test accuracy"))
    acc = float(line.split()[2].rstrip("%"))
    assert acc >= 98.5, r.stdout
    assert (tmp_path / "cycnn-digits.npz").is_file()
    assert "weights saved to cycnn-digits.npz" in r.stdout


def test_download_into_data_dir_from_local_files(tmp_path, monkeypatch, capsys):
    import hashlib

    from test_datasets import _write_set

    from cycnn import datasets

    server = tmp_path / "server"
    _write_set(server, n_train=40, n_test=10)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in server.iterdir()}
    monkeypatch.setitem(datasets.SOURCES, "mnist", {"url": server.as_uri() + "/", "md5": md5})
    cache = tmp_path / "cache"
    assert main(["train", *FAST, "--dataset", "mnist", "--download", "--data-dir",
                 str(cache), "--batch-size", "8", "--no-save"]) == 0
    assert "40 training / 10 test" in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == sorted(md5)


# --------------------------------------------------------------------------- more of train

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short LeNet-5 run, saved as .npz, shared by the evaluate/predict/export tests."""
    path = tmp_path_factory.mktemp("ck") / "lenet.npz"
    old = cycnn.get_num_threads()
    try:
        assert main(["train", *FAST, "--epochs", "2", "--save", str(path)]) == 0
    finally:
        cycnn.set_num_threads(old)
    return path


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_train_plot_draws_the_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    plot = tmp_path / "curves.png"
    assert main(["train", *FAST, "--epochs", "2", "--no-save", "--plot", str(plot)]) == 0
    assert f"curves drawn to {plot}" in capsys.readouterr().out
    w, h = _png_size(plot)
    assert w > 600 and h > 300


def test_train_saves_safetensors_which_cannot_be_resumed(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    assert main(["train", *FAST, "--save", str(path)]) == 0
    assert cycnn.load_checkpoint(path).meta["epochs_completed"] == 1
    with pytest.raises(SystemExit) as e:
        main(["train", *FAST, "--resume", str(path), "--epochs", "2"])
    assert e.value.code == 2
    assert "holds weights only" in capsys.readouterr().err


def test_resume_keeps_the_recipe_and_refuses_to_stretch_its_schedule(trained, tmp_path,
                                                                      capsys):
    path = tmp_path / "again.npz"
    path.write_bytes(trained.read_bytes())
    for args, message in [
        (["--epochs", "3"], "schedule of 2 epochs, which cannot be extended"),
        (["--epochs", "3", "--lr", "0.5"], "sets the learning rate; drop --lr"),
        (["--epochs", "3", "--model", "convnet"], "trained with --model lenet5"),
        (["--epochs", "3", "--batch-size", "8"], "trained with --batch-size 128"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["train", "--threads", "1", "--no-progress", "--resume", str(path), *args])
        assert e.value.code == 2
        assert message in capsys.readouterr().err, args


@pytest.mark.parametrize("args, message", [
    (["--plot", "/nonexistent/dir/c.png"], "directory /nonexistent/dir does not exist"),
    (["--schedule", "linear"], "invalid choice: 'linear'"),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--label-smoothing", "1"], "--label-smoothing must be a finite number in [0, 1)"),
], ids=["plot-dir", "schedule", "weight-decay", "model", "label-smoothing"])
def test_more_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["train", *FAST, "--no-save", *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(SystemExit) as e:
        main(["train", *FAST, "--no-save", "--plot", str(tmp_path / "c.png")])
    assert e.value.code == 2
    assert "--plot: plotting needs matplotlib: pip install 'cycnn[plot]'" in \
        capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate

def test_evaluate_reports_accuracy_per_class_and_confusion(trained, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    plot = tmp_path / "confusion.png"
    assert main(["evaluate", str(trained), "--threads", "1", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    model = cycnn.load(trained)
    _, (x, y) = cycnn.datasets.load_digits()
    loss, acc = model.evaluate(x, y)
    assert f"accuracy {100 * acc:.2f}% ({round(acc * 1000)}/1000), loss {loss:.4f}" in out
    pred = model.predict(x).argmax(1)
    lines = out.splitlines()
    rows = lines[lines.index("confusion matrix (rows: true class, columns: predicted class)")
                 + 2:][:10]
    m = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    np.testing.assert_array_equal(m, cycnn.confusion_matrix(y, pred, 10))
    assert m.sum(axis=1).tolist() == [100] * 10
    for k in range(10):
        assert any(line.split()[:2] == [str(k), f"{np.mean(pred[y == k] == k) * 100:.2f}%"]
                   for line in lines)
    assert f"confusion matrix drawn to {plot}" in out
    w, h = _png_size(plot)
    assert w > 500 and h > 400


def test_evaluate_refuses_mismatched_and_broken_checkpoints(tmp_path, capsys):
    odd = cycnn.Sequential(cycnn.Flatten(), cycnn.Dense(784, 3, rng=0), input_shape=(1, 28, 28))
    odd.save(tmp_path / "three.npz")
    small = cycnn.Sequential(cycnn.Flatten(), cycnn.Dense(144, 10, rng=0),
                             input_shape=(1, 12, 12))
    small.save(tmp_path / "small.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    for args, message in [
        ([str(tmp_path / "three.npz")], "has outputs of shape (3,), but the data set has 10"),
        ([str(tmp_path / "small.npz")], "does not take (1, 28, 28) images"),
        ([str(tmp_path / "junk.npz")], "junk.npz: truncated or corrupt"),
        ([str(tmp_path / "none.npz")], "none.npz does not exist"),
        ([str(tmp_path)], "is a directory"),
        ([str(tmp_path / "three.npz"), "--dataset", "mnist"], "--dataset mnist needs"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["evaluate", *args])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)


# --------------------------------------------------------------------------- predict

def _digit_files(tmp_path, index):
    """One test digit as a dark-on-white 3x PNG, a JPEG, and a 28x28 .npy."""
    from PIL import Image

    _, (x, y) = cycnn.datasets.load_digits()
    d = x[index, 0]
    big = (np.kron(1 - d, np.ones((3, 3))) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "d.png")
    Image.fromarray(big).save(tmp_path / "d.jpg", quality=95)
    np.save(tmp_path / "d.npy", (d * 255).astype(np.uint8))
    return [tmp_path / "d.png", tmp_path / "d.jpg", tmp_path / "d.npy"], int(y[index])


def test_predict_prints_class_and_probability(trained, tmp_path, capsys):
    pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'cycnn[images]')")
    model = cycnn.load(trained)
    _, (x, y) = cycnn.datasets.load_digits()
    right = int(np.flatnonzero(model.predict(x).argmax(1) == y)[0])
    files, label = _digit_files(tmp_path, right)
    assert main(["predict", str(trained), *map(str, files), "--threads", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    for line, f in zip(out, files):
        p = cycnn.softmax(model.predict(
            cycnn.images.mnist_like(cycnn.images.read_image(f))[None, None])[0]
            .astype(np.float64))
        assert line == f"{f}: {p.argmax()} (class {p.argmax()}, probability {p.max():.4f})"
    assert out[2].startswith(f"{files[2]}: {label} ")  # the .npy is the digit itself


def _png_of_size(png, width, height):
    """``png`` with its header claiming ``width x height`` pixels (CRC fixed: a decoder
    believes it until it reads the pixels)."""
    import zlib

    ihdr = bytearray(png[12:29])  # b"IHDR" + 13 bytes of header
    ihdr[4:12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return png[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + png[33:]


def _bad_images(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    Image.fromarray(noise).save(good)  # noise compresses badly: 60 bytes cut the pixels
    data = good.read_bytes()
    bad = {
        "text.png": (b"hello, not an image\n", "not a PNG, JPEG or .npy file"),
        "truncated.png": (data[:60], "not a readable PNG or JPEG image"),
        "empty.png": (b"", "empty file"),
        "huge.png": (_png_of_size(data, 100_000, 100_000), "image is outside the sizes read"),
        "big.png": (_png_of_size(data, 4097, 4096), "image is outside the sizes read"),
        "pickle.npy": (None, "holds Python objects"),
        "cube.npy": (None, "must hold a 2-D (H, W) or 3-D (H, W, C) array"),
        "range.npy": (None, "floating-point pixels must lie in [0, 1]"),
        "bad.npy": (b"\x93NUMPY\x01\x00garbage", "not a readable .npy file"),
    }
    for name, (content, _) in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2, 2)))
    np.save(tmp_path / "range.npy", np.full((28, 28), 3.5))
    return {tmp_path / k: m for k, (_, m) in bad.items()}


def test_predict_refuses_bad_files_one_by_one(trained, tmp_path, capsys):
    pytest.importorskip("PIL", reason="Pillow is not installed")
    bad = _bad_images(tmp_path)
    files, _ = _digit_files(tmp_path, 0)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(trained), str(files[2]), *map(str, bad), str(tmp_path / "no.png"),
              str(tmp_path)])
    assert e.value.code == 2
    cap = capsys.readouterr()
    assert cap.out.startswith(f"{files[2]}: ")  # the good file is still classified
    assert "Traceback" not in cap.err
    for path, message in bad.items():
        assert f"{path}: {message}" in cap.err, (path, cap.err)
    assert f"{tmp_path / 'no.png'}: no such file" in cap.err
    assert f"{tmp_path}: is a directory" in cap.err
    assert f"{len(bad) + 2} of {len(bad) + 3} file(s) could not be read" in cap.err


def test_predict_without_pillow_reads_npy_and_explains_png(trained, tmp_path, monkeypatch,
                                                           capsys):
    import builtins

    np.save(tmp_path / "d.npy", np.zeros((28, 28), np.uint8))
    (tmp_path / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    real_import = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(SystemExit):
        main(["predict", str(trained), str(tmp_path / "d.npy"), str(tmp_path / "d.png")])
    cap = capsys.readouterr()
    assert f"{tmp_path / 'd.npy'}: " in cap.out
    assert "reading PNG or JPEG files needs Pillow: pip install 'cycnn[images]'" in cap.err


# --------------------------------------------------------------------------- export

def test_export_writes_an_onnx_graph_that_predicts_the_same(trained, tmp_path, capsys):
    extra_or_skip("onnx", "onnx is not installed (it is in the test extras)")
    ort = extra_or_skip("onnxruntime", "onnxruntime is not installed")
    out = tmp_path / "m.onnx"
    assert main(["export", str(trained), str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    _, (x, _) = cycnn.datasets.load_digits()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0],
                               cycnn.load(trained).predict(x), rtol=1e-5, atol=1e-4)
    with pytest.raises(SystemExit) as e:
        main(["export", str(trained), str(tmp_path / "no" / "m.onnx")])
    assert e.value.code == 2 and "does not exist" in capsys.readouterr().err
