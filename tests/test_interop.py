"""Weights that leave cycnn: to_torch / from_torch both ways (batch-norm running
statistics included), .safetensors files (read by safetensors.torch, and read back as
untrusted input) and ONNX graphs run by onnxruntime."""

import json
import struct

import numpy as np
import pytest

import cycnn
from conftest import extra_or_skip, torch_or_skip
from cycnn import (
    SGD,
    BatchNorm1D,
    BatchNorm2D,
    CheckpointError,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    convnet,
    export_onnx,
    from_torch,
    lenet5,
    to_torch,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py



def every_layer(dtype=np.float32):
    """A small network using every layer type cycnn can move to PyTorch and ONNX."""
    return Sequential(
        Conv2D(1, 4, 3, padding=1, rng=0, dtype=dtype), BatchNorm2D(4, dtype=dtype),
        LeakyReLU(0.1), MaxPool2D(2),
        Conv2D(4, 6, 3, rng=1, dtype=dtype), Tanh(), cycnn.AvgPool2D(2), Dropout(0.3),
        Conv2D(6, 8, 1, rng=2, dtype=dtype), Sigmoid(), GlobalAvgPool2D(), Flatten(),
        Dense(8, 6, rng=3, dtype=dtype), BatchNorm1D(6, dtype=dtype), ReLU(),
        Dense(6, 3, rng=4, dtype=dtype), input_shape=(1, 12, 12))


def _trained(model, rng, steps=3, n=16):
    x = rng.standard_normal((n, *model.input_shape)).astype(model.dtype)
    model.fit(x, np.arange(n) % 3, epochs=steps, batch_size=8, optimizer=SGD(0.1))
    return x


# --------------------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_to_torch_and_back_with_running_statistics(rng, dtype):
    torch = torch_or_skip()
    model = every_layer(dtype)
    x = _trained(model, rng)
    assert int(model[1].buffers["num_batches_tracked"]) == 6
    model.eval()
    tm = to_torch(model)
    assert not tm.training and not tm[1].training  # the layers' mode travels along
    sd = tm.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(sd[k].numpy(), v, err_msg=k)
    with torch.no_grad():
        ty = tm(torch.from_numpy(x)).numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ty, model.predict(x), rtol=tol, atol=tol)
    back = from_torch(tm, input_shape=(1, 12, 12))
    assert repr(back) == repr(model) and back.dtype == dtype
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_a_network_trained_in_torch_predicts_the_same_in_cycnn(rng):
    """Defined and trained in PyTorch (nested blocks, bias-free convolutions before batch
    norm, as PyTorch code usually writes them), then loaded with from_torch."""
    torch = torch_or_skip()
    nn = torch.nn
    torch.manual_seed(0)
    tm = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                      nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding="same"), nn.BatchNorm2d(8), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 10),
    )
    opt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    x = torch.from_numpy(rng.standard_normal((32, 1, 14, 14)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 32))
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tm(x), y).backward()
        opt.step()
    tm.eval()
    model = from_torch(tm, input_shape=(1, 14, 14))
    assert [type(layer).__name__ for layer in model] == [
        "Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Conv2D", "BatchNorm2D", "ReLU",
        "GlobalAvgPool2D", "Flatten", "Dropout", "Dense"]
    assert "bias" not in model[0].params and "bias" in model[4].params  # bias=False kept
    np.testing.assert_array_equal(model[1].buffers["running_var"],
                                  tm[0][1].running_var.numpy())
    assert int(model[5].buffers["num_batches_tracked"]) == 5
    with torch.no_grad():
        expect = tm(x).numpy()
    np.testing.assert_allclose(model.predict(x.numpy()), expect, rtol=1e-5, atol=1e-5)


def conv_family(dtype=np.float32, padding_mode="reflect", divisor_override=None):
    """The options of the convolution family (issue 14) beside batch norm (issue 13)."""
    return Sequential(
        Conv2D(2, 4, 3, padding=2, dilation=2, groups=2, bias=False,
               padding_mode=padding_mode, rng=0, dtype=dtype),
        BatchNorm2D(4, dtype=dtype), ReLU(),
        cycnn.ConvTranspose2D(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2,
                              rng=1, dtype=dtype),
        MaxPool2D(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        cycnn.AvgPool2D(2, padding=1, ceil_mode=True, count_include_pad=False,
                        divisor_override=divisor_override),
        Flatten(), Dense(4 * 6 * 6, 5, bias=False, rng=2, dtype=dtype),
        BatchNorm1D(5, dtype=dtype), input_shape=(2, 10, 10))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_conv_family_options_to_torch_and_back(rng, dtype):
    """Dilation, groups, bias=False, padding modes, the transposed convolution and the
    pooling options travel both ways, beside batch norm's running statistics."""
    torch = torch_or_skip()
    model = conv_family(dtype, divisor_override=3)
    x = _trained(model, rng)
    model.eval()
    tm = to_torch(model)
    assert tm[0].padding_mode == "reflect" and tm[0].bias is None and tm[0].groups == 2
    assert tm[4].ceil_mode and not tm[5].count_include_pad and tm[5].divisor_override == 3
    with torch.no_grad():
        ty = tm(torch.from_numpy(x)).numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ty, model.predict(x), rtol=tol, atol=tol)
    back = from_torch(tm, input_shape=model.input_shape)
    assert repr(back) == repr(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_from_torch_refuses_what_cycnn_lacks():
    torch = torch_or_skip()
    nn = torch.nn
    with pytest.raises(TypeError, match="from_torch: module must be a torch.nn.Sequential"):
        from_torch(nn.Linear(2, 3))
    with pytest.raises(TypeError, match=r"from_torch: no cycnn layer for GELU"):
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.GELU()))
    with pytest.raises(ValueError, match="return_indices=False"):
        from_torch(nn.Sequential(nn.MaxPool2d(2, return_indices=True)))
    with pytest.raises(ValueError, match="track_running_stats=True"):
        from_torch(nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)))
    with pytest.raises(ValueError, match="must all be float32 or all float64"):
        from_torch(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2).double()))


def test_convnet_trains_like_torch_in_float64(digits):
    """Batch statistics, running statistics and their gradients through a whole network:
    the same convnet (dropout off, so that no random mask is involved), initial weights,
    batches and SGD steps give the same losses in cycnn and PyTorch."""
    torch = torch_or_skip()
    (x, y), _ = digits
    x, y = x[:256].astype(np.float64), y[:256]
    model = convnet(seed=0, dtype=np.float64, channels=(4, 8), hidden=16, dropout=0.0)
    tm = to_torch(model)
    opt = SGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)
    order = cycnn.epoch_order(len(x), 0, 0)
    ours, theirs = [], []
    for s in range(0, len(x), 32):
        idx = order[s:s + 32]
        ours.append(model.train_step(x[idx], y[idx], opt)[0])
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x[idx])),
                                                 torch.from_numpy(y[idx]))
        loss.backward()
        topt.step()
        theirs.append(loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=k)


# --------------------------------------------------------------------------- safetensors

def test_safetensors_round_trip_and_torch_reads_it(rng, tmp_path):
    torch = torch_or_skip()
    st = extra_or_skip("safetensors.torch", "safetensors is not installed "
                       "(pip install safetensors; it is in the test extras)")
    model = every_layer()
    x = _trained(model, rng)
    model.eval()
    path = model.save(tmp_path / "m.safetensors", meta={"note": "hello"})
    again = cycnn.load_checkpoint(path)
    assert again.optimizer is None and again.meta == {"note": "hello"}
    for k, v in model.state_dict().items():
        got = again.model.state_dict()[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, v, err_msg=k)
    tm = to_torch(again.model).eval()
    tm.load_state_dict(st.load_file(str(path)))  # strict: every name, shape and dtype
    with torch.no_grad():
        np.testing.assert_allclose(tm(torch.from_numpy(x)).numpy(), model.predict(x),
                                   rtol=1e-5, atol=1e-6)
    assert st.load_file(str(path))["1.num_batches_tracked"].dtype == torch.int64


def test_cycnn_reads_safetensors_written_by_the_safetensors_package(tmp_path):
    stn = extra_or_skip("safetensors.numpy", "safetensors is not installed")
    model = lenet5(seed=3)
    ours = model.save(tmp_path / "ours.safetensors")
    header = json.loads(_raw_header(ours.read_bytes())["__metadata__"]["__cycnn__"])
    theirs = tmp_path / "theirs.safetensors"
    stn.save_file(model.state_dict(), str(theirs),
                  metadata={"format": "cycnn-checkpoint", "__cycnn__": json.dumps(header)})
    loaded = cycnn.load(theirs)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


def test_safetensors_holds_no_optimizer(tmp_path):
    with pytest.raises(ValueError, match="holds weights only"):
        lenet5().save(tmp_path / "m.safetensors", SGD(0.1))
    assert not (tmp_path / "m.safetensors").exists()


def _raw_header(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])


def _with_header(header, body):
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def _bad_files(good):
    header, body = _raw_header(good), good[8 + struct.unpack("<Q", good[:8])[0]:]
    first = next(k for k in header if k != "__metadata__")

    def edit(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return _with_header(h, body)

    return {
        "empty": (b"", "shorter than the 8-byte header length"),
        "length-only": (good[:8], "header claims"),
        "half": (good[:len(good) // 2], "truncated"),
        "one-byte-short": (good[:-1], "truncated file"),
        "huge-length": (struct.pack("<Q", 2**62) + good[8:], "header claims"),
        "not-json": (struct.pack("<Q", 5) + b"{oops" + body, "unreadable safetensors header"),
        "not-utf8": (struct.pack("<Q", 2) + b"\xff\xfe" + body, "not UTF-8"),
        "a-list": (_with_header([1, 2], body), "not a JSON object"),
        "no-metadata": (edit(lambda h: h.pop("__metadata__")), "not a cycnn checkpoint"),
        "bad-dtype": (edit(lambda h: h[first].update(dtype="C64")), "dtype 'C64'"),
        "bad-shape": (edit(lambda h: h[first].update(shape=[-1])), "shape must be a list"),
        "size-mismatch": (edit(lambda h: h[first].update(shape=[1])), "needs 4 bytes"),
        "offsets-reversed": (edit(lambda h: h[first].update(data_offsets=[8, 0])),
                             "data_offsets must be"),
        "extra-key": (edit(lambda h: h[first].update(extra=1)), "exactly dtype, shape"),
        "trailing": (good + b"\0" * 8, "bytes after the last tensor"),
        "gap": (edit(lambda h: [h[k].update(data_offsets=[o + 4 for o in h[k]["data_offsets"]])
                                 for k in h if k != "__metadata__"]) + b"\0" * 4,
                "tile the data section"),
        "missing-weight": (edit(lambda h: h.pop("11.bias")), "missing"),
        "bad-architecture": (edit(lambda h: h["__metadata__"].update(__cycnn__="{")),
                             "unreadable architecture record"),
        "duplicate-key": (struct.pack("<Q", 30) + b'{"a": 1, "a": 2}' + b" " * 14,
                          "appear more than once"),
    }


def test_malformed_safetensors_are_checkpoint_errors_naming_the_file(tmp_path):
    good = lenet5().save(tmp_path / "good.safetensors").read_bytes()
    for name, (data, message) in _bad_files(good).items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            cycnn.load(path)
        assert str(path) in str(e.value) and message in str(e.value), (name, str(e.value))


def test_damaged_safetensors_never_escape_as_other_errors(tmp_path):
    """Every truncation and a few hundred flipped bytes: either a clean CheckpointError or
    (for bytes that only change a weight's value) a model."""
    good = lenet5().save(tmp_path / "good.safetensors").read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.safetensors"
    cuts = list(range(0, 700)) + list(rng.integers(0, len(good), 100))
    for k in cuts:
        path.write_bytes(good[:k])
        with pytest.raises(CheckpointError):
            cycnn.load(path)
    n = struct.unpack("<Q", good[:8])[0]
    for k in rng.integers(0, n + 8, 300):
        data = bytearray(good)
        data[k] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(data))
        try:
            cycnn.load(path)
        except CheckpointError:
            pass


def test_a_missing_extra_fails_where_ci_requires_the_round_trips(monkeypatch):
    """.ci/run sets CYCNN_REQUIRE_EXTRAS=1: there a missing onnx, onnxruntime or safetensors
    fails the round-trip tests; elsewhere they skip with the reason."""
    monkeypatch.setenv("CYCNN_REQUIRE_EXTRAS", "1")
    with pytest.raises(pytest.fail.Exception, match="cycnn_no_such_package"):
        extra_or_skip("cycnn_no_such_package", "not installed")
    monkeypatch.setenv("CYCNN_REQUIRE_EXTRAS", "0")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        extra_or_skip("cycnn_no_such_package", "not installed")
    assert extra_or_skip("json", "never skipped") is json


# --------------------------------------------------------------------------- ONNX

def _onnxruntime():
    extra_or_skip("onnx", "onnx is not installed (it is in the test extras)")
    return extra_or_skip("onnxruntime", "onnxruntime is not installed (it is in the test extras)")


def _run_onnx(ort, path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.astype(np.float32)})[0]


@pytest.mark.parametrize("make", ["lenet5", "convnet"])
def test_onnx_predictions_equal_cycnn_on_the_bundled_test_digits(digits, tmp_path, make):
    ort = _onnxruntime()
    (x, y), (xt, yt) = digits
    model = {"lenet5": lambda: lenet5(seed=0),
             "convnet": lambda: convnet(seed=0, channels=(8, 16))}[make]()
    model.fit(x[:1024], y[:1024], epochs=1, batch_size=64,
              optimizer=SGD(0.05, momentum=0.9))
    path = export_onnx(model, tmp_path / "m.onnx")
    ours = model.predict(xt)
    theirs = _run_onnx(ort, path, xt)
    assert theirs.shape == ours.shape == (1000, 10)
    p, q = cycnn.softmax(ours.astype(np.float64)), cycnn.softmax(theirs.astype(np.float64))
    assert np.abs(p - q).max() < 1e-5
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4)
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))


def test_onnx_graph_of_every_layer(rng, tmp_path):
    ort = _onnxruntime()
    model = every_layer(np.float64)  # exported as float32
    x = _trained(model, rng)
    path = export_onnx(model, tmp_path / "every.onnx")
    np.testing.assert_allclose(_run_onnx(ort, path, x), model.predict(x), rtol=1e-5,
                               atol=1e-5)
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Dropout" not in ops and ops.count("BatchNormalization") == 2
    assert ops[-1] == "Gemm"


def test_onnx_graph_of_the_conv_family_options(rng, tmp_path):
    ort = _onnxruntime()
    model = conv_family(padding_mode="zeros")
    x = _trained(model, rng)
    path = export_onnx(model, tmp_path / "family.onnx")
    np.testing.assert_allclose(_run_onnx(ort, path, x), model.predict(x), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="export_onnx: .*padding_mode='reflect'"):
        export_onnx(conv_family(), tmp_path / "reflect.onnx")
    with pytest.raises(ValueError, match="export_onnx: .*divisor_override"):
        export_onnx(conv_family(padding_mode="zeros", divisor_override=3), tmp_path / "d.onnx")
    pool = Sequential(cycnn.AvgPool2D(2, padding=1, ceil_mode=True), input_shape=(1, 5, 5))
    with pytest.raises(ValueError, match="export_onnx: .*count_include_pad=True"):
        export_onnx(pool, tmp_path / "p.onnx")


def test_onnx_export_needs_an_input_shape_and_the_package(tmp_path, monkeypatch):
    extra_or_skip("onnx", "onnx is not installed")
    model = Sequential(Flatten(), Dense(4, 2, rng=0))
    with pytest.raises(ValueError, match="input shape is unknown"):
        export_onnx(model, tmp_path / "m.onnx")
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *a, **k):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match="export_onnx needs the onnx package"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(4,))
    assert not (tmp_path / "m.onnx").exists()
