"""Checkpoints (cycnn/checkpoint.py): round trips, atomic saves, and files as untrusted input.

A checkpoint a user hands in may be truncated, bit-flipped, hand-edited or not a
checkpoint at all. Every such file must give a CheckpointError that names the file (or, for
a directory or an unreadable file, an OSError of its own), never another exception, never
a model or optimizer loaded half-way. A save killed at any moment leaves the previous
checkpoint loadable. ``CYCNN_FUZZ=1`` runs the bit-flip test over every header bit.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cycnn import SGD, Adam, CheckpointError, Dense, ReLU, Sequential, lenet5, load, load_checkpoint
from cycnn.checkpoint import HEADER

LONG = os.environ.get("CYCNN_FUZZ", "") not in ("", "0")


@pytest.fixture
def trained(tmp_path):
    """A small model and its SGD-with-momentum state after two steps, saved."""
    rng = np.random.default_rng(0)
    model = Sequential(Dense(6, 5, rng=1), ReLU(), Dense(5, 3, rng=2), input_shape=(6,))
    opt = SGD(0.1, momentum=0.9)
    x, y = rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)
    for _ in range(2):
        model.train_step(x, y, opt)
    path = model.save(tmp_path / "m.npz", optimizer=opt, meta={"note": "two steps"})
    return model, opt, path


def _arrays(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _header(path):
    return json.loads(str(_arrays(path)[HEADER]))


def _rewrite(path, arrays=None, header=None):
    arrays = dict(_arrays(path) if arrays is None else arrays)
    if header is not None:
        arrays[HEADER] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- round trips

def test_save_and_load_round_trip(tmp_path):
    x = np.random.default_rng(3).random((4, 1, 28, 28)).astype(np.float32)
    model = lenet5(seed=2)
    path = model.save(tmp_path / "m.npz")
    again = load(path)
    assert repr(again) == repr(model) and again.input_shape == (1, 28, 28)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)
    # the same weights through the same kernels on the same input: the same bits
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with np.load(path, allow_pickle=False) as f:  # no pickle anywhere
        header = json.loads(str(f[HEADER]))
    assert header["layers"][0] == {"type": "Conv2D", "in_channels": 1, "out_channels": 6,
                                   "kernel_size": [5, 5], "stride": [1, 1], "padding": [0, 0]}
    assert load(path).dtype == np.float32
    m64 = lenet5(dtype=np.float64)
    assert load(m64.save(tmp_path / "m64.npz")).dtype == np.float64


def test_optimizer_state_round_trip(trained):
    model, opt, path = trained
    ck = load_checkpoint(path)
    assert ck.meta == {"note": "two steps"} and isinstance(ck.optimizer, SGD)
    assert ck.optimizer.steps == opt.steps
    for name, state in opt.state.items():
        np.testing.assert_array_equal(ck.optimizer.state[name]["momentum_buffer"],
                                      state["momentum_buffer"])


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    lenet5(seed=0).save(path)
    good = path.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        lenet5(seed=1).save(path)
    assert path.read_bytes() == good  # the old checkpoint survives
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temporary file is left behind


# --------------------------------------------------------------------------- damaged files

def test_truncated_checkpoint_is_reported(tmp_path):
    path = lenet5().save(tmp_path / "m.npz")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 30, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"m\.npz.*truncated or corrupt"):
            load(path)


def test_corrupt_checkpoint_is_reported(tmp_path):
    path = lenet5().save(tmp_path / "m.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("7.weight.npy")
    mid = info.header_offset + 200 + info.compress_size // 2  # inside the array data
    data[mid] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"m\.npz.*corrupt"):
        load(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"m\.npz"):
        load(path)


def test_duplicate_zip_members_are_refused(trained):
    """Two members of one name (one flipped bit in a name can do it): zipfile would
    silently read the last, dropping the other; here it is an error."""
    _, _, path = trained
    arrays = _arrays(path)

    def npy(a):
        member = io.BytesIO()
        np.lib.format.write_array(member, a)
        return member.getvalue()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            z.writestr(k + ".npy", npy(v))
        name = "optimizer/momentum_buffer/0.weight.npy"
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr(name, npy(np.zeros_like(arrays[name[:-4]])))
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"m\.npz.*more than once"):
        load_checkpoint(path)


def _header_spans(data: bytes) -> list[int]:
    """Byte offsets of every zip header field: local headers, central directory, end."""
    spans = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            spans += range(info.header_offset, info.header_offset + 30 + len(info.filename))
        end = data.rindex(b"PK\x05\x06")
        start = int.from_bytes(data[end + 16:end + 20], "little")
        spans += range(start, len(data))
    return spans


def test_bit_flips_in_zip_headers_never_escape(trained):
    """A flipped bit anywhere in the zip structure either leaves a loadable file with the
    same weights (a field nobody reads) or gives CheckpointError: never another
    exception (zipfile raises NotImplementedError, RuntimeError, OverflowError...)."""
    model, _, path = trained
    data = path.read_bytes()
    spans = _header_spans(data)
    rng = np.random.default_rng(1)
    bits = [(o, b) for o in spans for b in range(8)]
    picks = bits if LONG else [bits[k] for k in rng.choice(len(bits), 600, replace=False)]
    outcomes = {"loaded": 0, "refused": 0}
    for offset, bit in picks:
        flipped = bytearray(data)
        flipped[offset] ^= 1 << bit
        path.write_bytes(bytes(flipped))
        try:
            ck = load_checkpoint(path)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        for k, v in model.state_dict().items():  # loaded means loaded right
            np.testing.assert_array_equal(ck.model.state_dict()[k], v)
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == len(picks), outcomes


# --------------------------------------------------------------------------- hand-edited files

@pytest.mark.parametrize("edit, message", [
    (lambda h: h.update(layers="conv"), "'layers' must be a list"),
    (lambda h: h.update(layers=[]), "non-empty list"),
    (lambda h: h.update(layers=[1, 2]), "non-empty list of layer configs"),
    (lambda h: h.update(dtype=5), "'dtype' must be a str"),
    (lambda h: h.update(dtype="int8"), "float32 or float64"),
    (lambda h: h.update(input_shape="6"), "'input_shape' must be a list"),
    (lambda h: h.update(input_shape=[0]), "'input_shape' must be a list of positive ints"),
    (lambda h: h.update(params=[]), "'params' must be a dict"),
    (lambda h: h.update(meta="x"), "'meta' must be a dict"),
    (lambda h: h.update(format="other"), "wrong format tag"),
    (lambda h: h.update(version=99), "version 99"),
    (lambda h: h["layers"][0].update(type="Conv9D"), "unknown layer type 'Conv9D'"),
    (lambda h: h["layers"][0].update(in_features="six"), "in_features must be an integer"),
    (lambda h: h["layers"][0].update(colour="red"), "bad arguments"),
    (lambda h: h["layers"][0].update(in_features=7), "input shape"),
    (lambda h: h.update(input_shape=[7]), "do not fit the recorded input shape"),
    (lambda h: h["optimizer"].update(type=3), "'optimizer' must be an optimizer config"),
    (lambda h: h["optimizer"].update(type="RMSprop"), "unknown optimizer type"),
    (lambda h: h["optimizer"].update(steps=[1]), "step counts must map names to ints"),
    (lambda h: h["optimizer"].update(momentum=2.0), "momentum must be a finite number"),
    (lambda h: h["optimizer"].update(lr="fast"), "lr must be a number"),
    (lambda h: h["optimizer"]["steps"].update({"9.weight": 1}), "unknown parameters"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_hand_edited_headers_are_refused(trained, edit, message):
    _, _, path = trained
    header = _header(path)
    edit(header)
    _rewrite(path, header=header)
    with pytest.raises(CheckpointError, match=rf"checkpoint .*m\.npz: .*{message}"):
        load_checkpoint(path)


def test_incomplete_or_stray_optimizer_state_is_refused(trained):
    _, _, path = trained
    arrays = _arrays(path)
    missing = {k: v for k, v in arrays.items() if k != "optimizer/momentum_buffer/2.bias"}
    _rewrite(path, missing)
    with pytest.raises(CheckpointError, match=r"'2\.bias' has taken 2 step\(s\) but its "
                                              r"state \['momentum_buffer'\] is missing"):
        load_checkpoint(path)
    stray = dict(arrays, **{"optimizer/momentum_buffer/7.weight": np.zeros(3, np.float32)})
    _rewrite(path, stray)
    with pytest.raises(CheckpointError, match=r"7\.weight.*matches no parameter"):
        load_checkpoint(path)
    unknown_slot = dict(arrays, **{"optimizer/velocity/0.weight": np.zeros((5, 6), np.float32)})
    _rewrite(path, unknown_slot)
    with pytest.raises(CheckpointError, match=r"unknown state entry 'velocity/0.weight'"):
        load_checkpoint(path)
    wrong_shape = dict(arrays, **{"optimizer/momentum_buffer/0.weight": np.zeros((6, 5),
                                                                                 np.float32)})
    _rewrite(path, wrong_shape)
    with pytest.raises(CheckpointError, match=r"has shape \(6, 5\) but the parameter has "
                                              r"shape \(5, 6\)"):
        load_checkpoint(path)


def test_weights_missing_extra_or_misshapen_are_refused(tmp_path):
    path = lenet5().save(tmp_path / "m.npz")
    arrays = _arrays(path)
    arrays["7.weight"] = np.zeros((120, 400), np.float32)  # as if built for 32x32 inputs
    _rewrite(tmp_path / "bad.npz", arrays)
    with pytest.raises(CheckpointError, match=r"bad\.npz.*7.weight.*\(120, 400\)"):
        load(tmp_path / "bad.npz")
    del arrays["7.weight"]
    _rewrite(tmp_path / "missing.npz", arrays)
    with pytest.raises(CheckpointError, match=r"missing\.npz.*missing.*7.weight"):
        load(tmp_path / "missing.npz")
    _rewrite(tmp_path / "extra.npz", dict(_arrays(path), **{"20.weight": np.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"extra\.npz.*unexpected \['20.weight'\]"):
        load(tmp_path / "extra.npz")
    _rewrite(tmp_path / "text.npz", dict(_arrays(path), **{"0.bias": np.array(["a"] * 6)}))
    with pytest.raises(CheckpointError, match=r"text\.npz.*0.bias has non-numeric dtype"):
        load(tmp_path / "text.npz")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"plain\.npz.*not a cycnn checkpoint"):
        load(tmp_path / "plain.npz")


def test_pickled_or_foreign_members_are_refused(tmp_path):
    path = lenet5().save(tmp_path / "m.npz")
    arrays = _arrays(path)
    arrays["0.bias"] = np.array([{"a": 1}] * 6, dtype=object)
    np.savez(path, **arrays)  # allow_pickle is the writer's default
    with pytest.raises(CheckpointError, match=r"member '0.bias.npy' is not a plain NumPy "
                                              r"array .*allow_pickle=False"):
        load(path)
    path = lenet5().save(tmp_path / "m.npz")
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("README.txt", "hello")
    with pytest.raises(CheckpointError, match=r"unexpected member 'README.txt'"):
        load(path)


def test_directories_and_unreadable_files_get_their_own_message(tmp_path, monkeypatch):
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a checkpoint file"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.npz does not exist"):
        load(tmp_path / "nope.npz")
    path = lenet5().save(tmp_path / "m.npz")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "read_bytes", denied)  # root ignores chmod, so pretend
    with pytest.raises(PermissionError, match=r"m\.npz cannot be read: permission denied"):
        load(path)


# --------------------------------------------------------------------------- killed saves

def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "m.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f".m.npz.{int(dead.stdout)}.abc123.tmp"  # a writer that has exited
    live = tmp_path / f".m.npz.{os.getppid()}.def456.tmp"  # a writer still running
    other = tmp_path / f".other.npz.{int(dead.stdout)}.ghi789.tmp"  # another target's
    for f in (stale, live, other):
        f.write_bytes(b"half a checkpoint")
    lenet5().save(path)
    assert not stale.exists() and live.exists() and other.exists() and path.exists()


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from cycnn import Dense, Sequential
    model = Sequential(Dense(64, 64, rng=0), input_shape=(64,))
    for k in range(1, 10**6):
        model.layers[0].params["weight"][...] = k
        model.save(sys.argv[1], meta={"k": k})
        print(k, flush=True)
""")


def test_a_save_killed_at_any_moment_leaves_the_previous_checkpoint(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "m.npz"
    trials = 100 if LONG else 20
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE,
                                text=True)
        first = proc.stdout.readline()  # one save has completed
        assert first.strip(), "the saving process printed nothing"
        time.sleep(float(rng.uniform(0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        done = [first] + proc.stdout.readlines()
        proc.wait()
        last_complete = int(done[-1])
        ck = load_checkpoint(path)  # never a partial file
        k = ck.meta["k"]
        assert k >= last_complete, (trial, k, last_complete)
        assert k <= last_complete + 1
        np.testing.assert_array_equal(ck.model.layers[0].params["weight"], float(k))
    # the killed writers' temporary files go with the next save
    Sequential(Dense(2, 2, rng=0)).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_adam_checkpoints_load_their_moments(tmp_path):
    model = Sequential(Dense(3, 2, rng=0), input_shape=(3,))
    opt = Adam(1e-2)
    x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    model.train_step(x, y, opt)
    path = model.save(tmp_path / "a.npz", optimizer=opt)
    arrays = _arrays(path)
    del arrays["optimizer/exp_avg_sq/0.bias"]
    _rewrite(path, arrays)
    with pytest.raises(CheckpointError, match=r"\['exp_avg_sq'\] is missing"):
        load_checkpoint(path)
