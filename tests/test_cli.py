"""The ``cycnn train`` command: short runs, resume, Ctrl-C, and usage errors (exit 2)."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cycnn
from cycnn.cli import main

# Tiny runs: one thread, one epoch on the bundled digits (4,000 images).
FAST = ["--threads", "1", "--epochs", "1", "--no-progress"]


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
                "--batch-size", "--lr", "--optimizer {sgd,adam}", "--dtype", "--seed",
                "--threads", "--save", "--resume", "LeNet-5"):
        assert opt in out


def test_train_one_epoch_reports_accuracy_time_and_file(tmp_path, capsys):
    path = tmp_path / "w.npz"
    assert main(["train", *FAST, "--save", str(path)]) == 0
    cap = capsys.readouterr()
    assert "test accuracy" in cap.out and "4,000 training / 1,000 test" in cap.out
    assert f"weights saved to {path}" in cap.out and "epoch(s) in" in cap.out
    assert "epoch 1/1: loss" in cap.err  # progress on stderr, one line when not a TTY
    model, opt, meta = cycnn.load_checkpoint(path)
    assert meta["epochs_completed"] == 1 and meta["dataset"] == "digits"
    assert type(opt).__name__ == "SGD" and opt.lr == 0.01
    acc = model.evaluate(*cycnn.datasets.load_digits()[1])[1]
    assert f"test accuracy {100 * acc:.2f}%" in cap.out


def test_same_seed_and_threads_give_identical_weights_and_resume_continues(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for p in (a, b):
        assert main(["train", *FAST, "--seed", "7", "--optimizer", "adam", "--save",
                     str(p)]) == 0
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
def test_default_run_reaches_96_percent(tmp_path):
    """The acceptance run: `cycnn train` with every default (15 epochs of the bundled
    digits, seed 0, all cores). About 5 s on two idle cores; 97.3 % there, 97.5 % on one."""
    r = subprocess.run([sys.executable, "-m", "cycnn", "train"], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("test accuracy"))
    acc = float(line.split()[2].rstrip("%"))
    assert acc >= 96.0, r.stdout
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
