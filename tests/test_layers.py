"""Layers: shapes, initialisation, dtype, agreement with the functional API and with
finite differences, and the train/eval switch."""

import math

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, RTOL, torch_or_skip
from cycnn.layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
    he_normal,
    layer_from_config,
)


def _layers(dtype, rng=0):
    return {
        "conv": (Conv2D(3, 4, 3, stride=1, padding=1, rng=rng, dtype=dtype), (2, 3, 6, 6)),
        "conv-stride": (Conv2D(2, 3, (3, 2), stride=2, rng=rng, dtype=dtype), (2, 2, 7, 6)),
        "maxpool": (MaxPool2D(2), (2, 3, 6, 6)),
        "avgpool": (AvgPool2D(3, stride=2), (2, 3, 7, 7)),
        "relu": (ReLU(), (2, 3, 4, 4)),
        "flatten": (Flatten(), (2, 3, 4, 4)),
        "dense": (Dense(12, 5, rng=rng, dtype=dtype), (3, 12)),
    }


NAMES = list(_layers(np.float64))


@pytest.mark.parametrize("name", NAMES)
@DTYPES
def test_forward_shape_matches_output_shape_and_dtype(rng, name, dtype):
    layer, shape = _layers(dtype)[name]
    x = rng.standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    assert y.shape == (shape[0], *layer.output_shape(shape[1:]))
    assert y.dtype == dtype
    dx = layer.backward(rng.standard_normal(y.shape).astype(dtype))
    assert dx.shape == x.shape and dx.dtype == dtype
    for k, g in layer.grads.items():
        assert g.shape == layer.params[k].shape and g.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_finite_differences(rng, name):
    """Contract the layer with a random dy: L = sum(dy * forward(x)), float64."""
    layer, shape = _layers(np.float64)[name]
    x = rng.standard_normal(shape)
    if name == "relu":  # keep clear of the kink at 0
        x = np.where(np.abs(x) < 0.05, 0.5, x)
    dy = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)
    def loss():
        return float(np.sum(dy * layer.forward(x)))
    eps = 1e-6
    for arr, grad in [(x, dx)] + [(layer.params[k], layer.grads[k]) for k in layer.params]:
        flat, gflat = arr.reshape(-1), grad.reshape(-1)
        for idx in rng.choice(flat.size, size=min(8, flat.size), replace=False):
            keep = flat[idx]
            flat[idx] = keep + eps
            up = loss()
            flat[idx] = keep - eps
            down = loss()
            flat[idx] = keep
            np.testing.assert_allclose(gflat[idx], (up - down) / (2 * eps), rtol=1e-6,
                                       atol=1e-8)


def test_layers_call_the_functional_api(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    conv = Conv2D(3, 4, 3, padding=1, rng=1, dtype=np.float64)
    np.testing.assert_array_equal(
        conv.forward(x),
        cycnn.conv2d_forward(x, conv.params["weight"], conv.params["bias"], padding=1))
    dense = Dense(108, 7, rng=2, dtype=np.float64)
    xf = Flatten().forward(x)
    np.testing.assert_array_equal(dense.forward(xf), cycnn.dense_forward(
        xf, dense.params["weight"], dense.params["bias"]))
    np.testing.assert_array_equal(MaxPool2D(2).forward(x), cycnn.max_pool2d_forward(x, 2)[0])
    np.testing.assert_array_equal(ReLU().forward(x), cycnn.relu_forward(x))


def test_he_initialisation_is_seeded_and_scaled():
    a = Conv2D(16, 32, 5, rng=np.random.default_rng(7))
    b = Conv2D(16, 32, 5, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    assert not np.array_equal(a.params["weight"], Conv2D(16, 32, 5, rng=8).params["weight"])
    np.testing.assert_array_equal(a.params["bias"], 0)
    std = float(a.params["weight"].std())
    assert abs(std - math.sqrt(2 / (16 * 25))) < 0.05 * std
    d = Dense(400, 300, rng=3)
    assert abs(float(d.params["weight"].std()) - math.sqrt(2 / 400)) < 0.03 * math.sqrt(2 / 400)
    assert d.params["weight"].shape == (300, 400)  # (out, in), as torch.nn.Linear
    # float32 and float64 layers from one seed start from the same numbers
    w32 = he_normal((4, 3), 3, 5, np.float32)
    w64 = he_normal((4, 3), 3, 5, np.float64)
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


@DTYPES
def test_dtype_of_parameters(dtype):
    assert Conv2D(1, 2, 3, rng=0, dtype=dtype).params["weight"].dtype == dtype
    assert Dense(3, 2, rng=0, dtype=dtype).params["bias"].dtype == dtype
    assert Conv2D(1, 2, 3, rng=0).params["weight"].dtype == np.float32  # default
    with pytest.raises(ValueError, match="float32 or float64"):
        Dense(3, 2, dtype=np.int32)


def test_eval_mode_keeps_nothing_and_backward_then_fails(rng):
    conv = Conv2D(1, 2, 3, rng=0)
    conv.eval()
    conv.forward(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))
    assert conv.cache is None
    with pytest.raises(RuntimeError, match="training mode"):
        conv.backward(np.zeros((1, 2, 3, 3), np.float32))
    conv.train()
    conv.forward(rng.standard_normal((1, 1, 5, 5)).astype(np.float32))
    conv.backward(np.ones((1, 2, 3, 3), np.float32))
    assert set(conv.grads) == {"weight", "bias"}


def test_output_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\(1, H, W\) \(C=1 input channels\), got \(3, 28, 28\)"):
        Conv2D(1, 6, 5).output_shape((3, 28, 28))
    with pytest.raises(ValueError, match="larger than the padded input"):
        Conv2D(1, 6, 5).output_shape((1, 4, 4))
    with pytest.raises(ValueError, match=r"expects \(256,\) features.*Flatten"):
        Dense(256, 10).output_shape((16, 4, 4))
    with pytest.raises(ValueError, match="larger than the input"):
        MaxPool2D(3).output_shape((1, 2, 2))


def test_softmax_cross_entropy_layer(rng):
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    loss_layer = SoftmaxCrossEntropy()
    loss = loss_layer.forward(logits, labels)
    ref_loss, ref_d = cycnn.softmax_cross_entropy(logits, labels)
    assert loss == ref_loss
    np.testing.assert_array_equal(loss_layer.backward(), ref_d)
    with pytest.raises(RuntimeError, match="forward"):
        loss_layer.backward()


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    layer, _ = _layers(np.float32)[name]
    again = layer_from_config(layer.config())
    assert repr(again) == repr(layer) and again.config() == layer.config()
    assert {k: v.shape for k, v in again.params.items()} == \
        {k: v.shape for k, v in layer.params.items()}


def test_repr_reads_like_the_constructor():
    assert repr(Conv2D(1, 6, 5)) == "Conv2D(1, 6, kernel_size=5)"
    assert repr(Conv2D(3, 8, 3, stride=2, padding=1)) == \
        "Conv2D(3, 8, kernel_size=3, stride=(2, 2), padding=(1, 1))"
    assert repr(MaxPool2D(2)) == "MaxPool2D(2)"
    assert repr(Dense(256, 120)) == "Dense(256, 120)"


@pytest.mark.parametrize("name", ["conv", "conv-stride", "maxpool", "avgpool", "dense"])
def test_layers_match_torch_modules(rng, name):
    torch = torch_or_skip()
    layer, shape = _layers(np.float64)[name]
    nn = torch.nn
    if isinstance(layer, Conv2D):
        (pt, _), (pl, _) = layer.pads
        tm = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                       layer.stride, (pt, pl)).double()
    elif isinstance(layer, Dense):
        tm = nn.Linear(layer.in_features, layer.out_features).double()
    elif isinstance(layer, MaxPool2D):
        tm = nn.MaxPool2d(layer.kernel_size, layer.stride)
    else:
        tm = nn.AvgPool2d(layer.kernel_size, layer.stride)
    if layer.params:
        tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.params.items()})
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    y = layer.forward(x)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL[np.float64], atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for k, p in tm.named_parameters():
        np.testing.assert_allclose(layer.grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-12)
