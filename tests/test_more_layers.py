"""Batch norm, dropout, leaky ReLU, tanh, sigmoid and global average pooling: forward and
backward against PyTorch (float64 to 1e-10) and central differences, train/eval
behaviour, running statistics, state_dict names, rebuilding and bad input."""

import doctest
import importlib

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, needs_openmp, torch_or_skip
from cycnn import (
    BatchNorm1D,
    BatchNorm2D,
    Dropout,
    GlobalAvgPool2D,
    LeakyReLU,
    Sequential,
    Sigmoid,
    Tanh,
    batch_norm_backward,
    batch_norm_forward,
    dropout_backward,
    dropout_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    gradcheck,
    leaky_relu_backward,
    leaky_relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from cycnn.layers import layer_from_config

#: float64 agreement with PyTorch (two correct implementations, different summation
#: orders); float32 to its own rounding
TORCH_TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _t(torch, a, grad=False):
    return torch.tensor(np.array(a), requires_grad=grad)


# --------------------------------------------------------------------------- activations

ACTIVATIONS = {
    # name: (forward, backward taking (dy, x_or_y), backward uses "x" or "y", torch fn)
    "leaky_relu": (lambda x: leaky_relu_forward(x, 0.2),
                   lambda dy, x: leaky_relu_backward(dy, x, 0.2), "x",
                   lambda t, F: F.leaky_relu(t, 0.2)),
    "tanh": (tanh_forward, tanh_backward, "y", lambda t, F: t.tanh()),
    "sigmoid": (sigmoid_forward, sigmoid_backward, "y", lambda t, F: t.sigmoid()),
}


def away_from_zero(rng, shape):
    x = rng.standard_normal(shape) * 2
    return np.where(np.abs(x) < 1e-3, 0.5, x)


@pytest.mark.parametrize("name", ACTIVATIONS)
@DTYPES
def test_activation_matches_torch_forward_and_backward(rng, name, dtype):
    torch = torch_or_skip()
    fwd, bwd, uses, tfn = ACTIVATIONS[name]
    x = away_from_zero(rng, (3, 4, 5)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = fwd(x)
    dx = bwd(dy, x if uses == "x" else y)
    tx = _t(torch, x, grad=True)
    ty = tfn(tx, torch.nn.functional)
    ty.backward(_t(torch, dy))
    assert y.shape == x.shape and y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), **TORCH_TOL[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TORCH_TOL[dtype])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradcheck(rng, name):
    fwd, bwd, uses, _ = ACTIVATIONS[name]
    backward = (lambda dy, x: bwd(dy, x)) if uses == "x" else (lambda dy, x: bwd(dy, fwd(x)))
    # moderate inputs: where tanh' is 1e-7 the central difference is rounding noise
    gradcheck(fwd, away_from_zero(rng, (2, 3, 4)) / 2, backward)


def test_activation_values_and_limits():
    np.testing.assert_array_equal(leaky_relu_forward([-1.0, 0.0, 2.0]), [-0.01, 0.0, 2.0])
    np.testing.assert_array_equal(leaky_relu_backward([1.0, 1.0, 1.0], [-1.0, 0.0, 2.0]),
                                  [0.01, 0.01, 1.0])  # slope at 0 is the negative one
    y = sigmoid_forward(np.array([-800.0, -30.0, 0.0, 30.0, 800.0]))
    assert np.all(np.isfinite(y)) and y[2] == 0.5 and y[0] == 0.0 and y[-1] == 1.0
    np.testing.assert_allclose(y[1] + y[3], 1.0, rtol=1e-15)  # symmetric: s(-x) = 1 - s(x)
    np.testing.assert_array_equal(tanh_forward([-50.0, 0.0, 50.0]), [-1.0, 0.0, 1.0])


def test_activation_shape_mismatch_is_refused():
    for bwd, name in ((tanh_backward, "y"), (sigmoid_backward, "y"),
                      (leaky_relu_backward, "x")):
        with pytest.raises(ValueError, match=rf"{bwd.__name__}: dy must have the shape of "
                                             rf"{name}; got dy.shape=\(3,\)"):
            bwd(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="leaky_relu_forward: negative_slope"):
        leaky_relu_forward([1.0], negative_slope="0.1")


# --------------------------------------------------------------------------- global pool

@DTYPES
def test_global_avg_pool_matches_adaptive_avg_pool(rng, dtype):
    torch = torch_or_skip()
    x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    dy = rng.standard_normal((2, 3, 1, 1)).astype(dtype)
    y = global_avg_pool2d_forward(x)
    dx = global_avg_pool2d_backward(dy, x.shape)
    tx = _t(torch, x, grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1)
    ty.backward(_t(torch, dy))
    assert y.shape == (2, 3, 1, 1) and y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), **TORCH_TOL[dtype])
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TORCH_TOL[dtype])


def test_global_avg_pool_gradcheck_and_bad_input(rng):
    x = rng.standard_normal((2, 3, 4, 3))
    gradcheck(global_avg_pool2d_forward, x,
              lambda dy, x: global_avg_pool2d_backward(dy, x.shape))
    with pytest.raises(ValueError, match=r"global_avg_pool2d_forward: x must be 4-D"):
        global_avg_pool2d_forward(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"global_avg_pool2d_backward: dy must have shape "
                                         r"\(N, C, 1, 1\) = \(2, 3, 1, 1\)"):
        global_avg_pool2d_backward(np.ones((2, 3, 2, 1)), (2, 3, 4, 3))


# --------------------------------------------------------------------------- batch norm

BN_SHAPES = {"2d": (4, 3, 5, 6), "1d": (7, 5), "1d-seq": (4, 3, 6)}


def _bn_inputs(rng, shape, dtype):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w = rng.uniform(0.5, 1.5, C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("shape", BN_SHAPES.values(), ids=list(BN_SHAPES))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@DTYPES
def test_batch_norm_matches_torch(rng, shape, training, dtype):
    """F.batch_norm: output, all three gradients and the running statistics it updates."""
    torch = torch_or_skip()
    x, w, b = _bn_inputs(rng, shape, dtype)
    C = shape[1]
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    trm, trv = _t(torch, rm), _t(torch, rv)
    dy = rng.standard_normal(shape).astype(dtype)
    y, cache = batch_norm_forward(x, w, b, rm, rv, training=training, momentum=0.3, eps=1e-3)
    dx, dw, db = batch_norm_backward(dy, cache)
    tx, tw, tb = (_t(torch, a, grad=True) for a in (x, w, b))
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training,
                                        momentum=0.3, eps=1e-3)
    ty.backward(_t(torch, dy))
    assert y.shape == shape and dx.shape == shape and dw.shape == db.shape == (C,)
    assert y.dtype == dx.dtype == dw.dtype == dtype
    tol = TORCH_TOL[dtype]
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(dw, tw.grad.numpy(), **tol)
    np.testing.assert_allclose(db, tb.grad.numpy(), **tol)
    np.testing.assert_allclose(rm, trm.numpy(), **tol)  # updated in place, unbiased var
    np.testing.assert_allclose(rv, trv.numpy(), **tol)


@pytest.mark.parametrize("shape", BN_SHAPES.values(), ids=list(BN_SHAPES))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradcheck(rng, shape, training):
    x, w, b = _bn_inputs(rng, shape, np.float64)
    C = shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)

    def f(x, w, b):
        return batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training)[0]

    def backward(dy, x, w, b):
        return batch_norm_backward(dy, batch_norm_forward(x, w, b, rm.copy(), rv.copy(),
                                                          training=training)[1])
    # eps=1e-5: dx is a small difference of large sums, and at eps=1e-6 the central
    # difference's rounding noise (1e-16 / eps) reaches 1e-6 of it
    gradcheck(f, [x, w, b], backward, eps=1e-5, rtol=1e-6)


def test_batch_norm_normalises_each_channel(rng):
    x, w, b = _bn_inputs(rng, (8, 3, 4, 4), np.float64)
    y, _ = batch_norm_forward(x, np.ones(3), np.zeros(3), eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-12)  # biased variance


def test_batch_norm_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"training needs more than one value per channel, "
                                         r"got x.shape=\(1, 4\)"):
        batch_norm_forward(np.ones((1, 4)), np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"weight must have shape \(C,\) = \(4,\)"):
        batch_norm_forward(np.ones((2, 4)), np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match="inference .* needs running_mean"):
        batch_norm_forward(np.ones((2, 4)), np.ones(4), np.zeros(4), training=False)
    with pytest.raises(TypeError, match="running_mean must be a float ndarray"):
        batch_norm_forward(np.ones((2, 4)), np.ones(4), np.zeros(4), [0.0] * 4, np.ones(4))
    with pytest.raises(ValueError, match="momentum must be a finite number in"):
        batch_norm_forward(np.ones((2, 4)), np.ones(4), np.zeros(4), momentum=1.5)
    y, cache = batch_norm_forward(np.arange(8.0).reshape(2, 4), np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward input"):
        batch_norm_backward(np.ones((2, 3)), cache)
    with pytest.raises(TypeError, match="BatchNormCache"):
        batch_norm_backward(np.ones((2, 4)), (1, 2, 3, 4))


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("cls", ["2D", "1D"])
def test_batch_norm_layer_follows_torch_module_over_steps(rng, momentum, cls):
    """Several training steps then eval: outputs, gradients, running stats, count."""
    torch = torch_or_skip()
    C = 3
    ours = (BatchNorm2D if cls == "2D" else BatchNorm1D)(C, momentum=momentum,
                                                          dtype=np.float64)
    theirs = (torch.nn.BatchNorm2d if cls == "2D" else torch.nn.BatchNorm1d)(
        C, momentum=momentum).double()
    shape = (4, C, 3, 5) if cls == "2D" else (6, C)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, C)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(C)))
    ours.params["weight"][:] = theirs.weight.detach().numpy()
    ours.params["bias"][:] = theirs.bias.detach().numpy()
    for _ in range(4):
        x = rng.standard_normal(shape) * 3 + 1
        dy = rng.standard_normal(shape)
        y = ours.forward(x)
        dx = ours.backward(dy)
        tx = _t(torch, x, grad=True)
        theirs.weight.grad = None
        ty = theirs(tx)
        ty.backward(_t(torch, dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.grads["weight"], theirs.weight.grad.numpy(),
                                   rtol=1e-10)
    state = theirs.state_dict()
    for k, v in ours.buffers.items():
        np.testing.assert_allclose(v, state[k].numpy(), rtol=1e-12)
    assert int(ours.buffers["num_batches_tracked"]) == 4
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours.forward(x), theirs(_t(torch, x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    assert int(ours.buffers["num_batches_tracked"]) == 4  # eval leaves the stats alone


def test_batch_norm_eval_uses_running_statistics_so_a_sample_ignores_its_batch(rng):
    layer = BatchNorm2D(2, dtype=np.float64)
    for _ in range(20):
        layer.forward(rng.standard_normal((8, 2, 3, 3)) * 2 + 5)
    layer.eval()
    x = rng.standard_normal((4, 2, 3, 3))
    alone = layer.forward(x[:1])
    np.testing.assert_array_equal(layer.forward(x)[:1], alone)
    layer.train()
    assert not np.allclose(layer.forward(x)[:1], alone)  # batch statistics differ


def test_batch_norm_state_dict_has_torch_names_and_order():
    torch = torch_or_skip()
    model = Sequential(cycnn.Conv2D(1, 2, 3, rng=0), BatchNorm2D(2), cycnn.ReLU(),
                       cycnn.Flatten(), cycnn.Dense(8, 4, rng=0), BatchNorm1D(4))
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                             torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 4),
                             torch.nn.BatchNorm1d(4))
    sd = model.state_dict()
    assert list(sd) == list(tm.state_dict())
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    assert set(model.parameters()) == {k for k, _ in tm.named_parameters()}
    assert set(model.buffers()) == {k for k, _ in tm.named_buffers()}


def test_optimizers_never_touch_buffers(rng):
    model = Sequential(BatchNorm1D(3, dtype=np.float64), cycnn.Dense(3, 2, rng=0,
                                                                     dtype=np.float64))
    x, y = rng.standard_normal((6, 3)), np.array([0, 1, 0, 1, 0, 1])
    before = {k: v.copy() for k, v in model.buffers().items()}
    model.train_step(x, y, cycnn.SGD(0.1, weight_decay=0.1))
    assert "0.running_mean" not in model.parameters()
    # the forward pass moved the running stats (momentum 0.1), the optimizer did not
    np.testing.assert_allclose(model.buffers()["0.running_mean"],
                               0.1 * x.mean(axis=0), rtol=1e-12)
    assert int(model.buffers()["0.num_batches_tracked"]) == int(before["0.num_batches_tracked"]) + 1


def test_load_state_dict_checks_buffers():
    model = Sequential(BatchNorm1D(3))
    good = model.state_dict()
    with pytest.raises(ValueError, match="0.num_batches_tracked must hold integers"):
        model.load_state_dict({**good, "0.num_batches_tracked": np.array(2.5)})
    with pytest.raises(ValueError, match="running_var must be >= 0"):
        model.load_state_dict({**good, "0.running_var": np.array([1.0, -1.0, 1.0])})
    with pytest.raises(ValueError, match=r"missing \['0.running_mean'\]"):
        model.load_state_dict({k: v for k, v in good.items() if k != "0.running_mean"})
    np.testing.assert_array_equal(model.state_dict()["0.running_var"], 1)  # nothing loaded


def test_batch_norm_layer_input_checks():
    with pytest.raises(ValueError, match=r"BatchNorm2D\(3\): x.shape=\(2, 4, 5, 5\): expects "
                                         r"\(3, H, W\) per sample"):
        BatchNorm2D(3).forward(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1D\(3\).*expects \(3,\) or \(3, L\)"):
        BatchNorm1D(3).forward(np.ones((2, 3, 4, 4), np.float32))
    layer = BatchNorm1D(3)
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer.forward(np.ones((1, 3), np.float32))
    assert int(layer.buffers["num_batches_tracked"]) == 0  # a refused batch is not counted
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        BatchNorm2D(3, eps=0)


# --------------------------------------------------------------------------- dropout

def test_dropout_is_inverted_and_seeded(rng):
    x = rng.uniform(1, 2, (200, 50))
    y, keep = dropout_forward(x, p=0.3, rng=5)
    y2, keep2 = dropout_forward(x, p=0.3, rng=5)
    np.testing.assert_array_equal(y, y2)  # same seed, same mask
    assert not np.array_equal(keep, dropout_forward(x, p=0.3, rng=6)[1])
    assert abs(keep.mean() - 0.7) < 0.01  # 10,000 draws: 0.7 +- 3 sd of 0.0046
    np.testing.assert_array_equal(y[~keep], 0)
    np.testing.assert_allclose(y[keep], x[keep] / 0.7, rtol=1e-15)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(dropout_backward(dy, keep, 0.3), dy * keep / 0.7, rtol=1e-15)


def test_dropout_matches_torch_given_the_same_mask(rng):
    """torch draws its own mask; read it off its output, then both must agree exactly
    in what they do with it, forward and backward."""
    torch = torch_or_skip()
    x = rng.uniform(1, 2, (6, 5, 4))
    dy = rng.standard_normal(x.shape)
    tx = _t(torch, x, grad=True)
    ty = torch.nn.functional.dropout(tx, p=0.4, training=True)
    ty.backward(_t(torch, dy))
    keep = ty.detach().numpy() != 0
    np.testing.assert_allclose(ty.detach().numpy(), x * keep / 0.6, rtol=1e-15)
    np.testing.assert_allclose(dropout_backward(dy, keep, 0.4), tx.grad.numpy(), rtol=1e-15)


def test_dropout_gradcheck_with_a_fixed_mask(rng):
    x = rng.standard_normal((3, 4, 5))
    keep = dropout_forward(x, 0.5, rng=1)[1]
    gradcheck(lambda x: x * keep / 0.5, x, lambda dy, x: dropout_backward(dy, keep, 0.5))


def test_dropout_layer_train_eval_and_reseed(rng):
    x = rng.uniform(1, 2, (4, 10)).astype(np.float32)
    layer = Dropout(0.5, rng=0)
    a = layer.forward(x)
    layer.reseed(0)
    np.testing.assert_array_equal(layer.forward(x), a)  # reseeded: the same mask again
    assert not np.array_equal(layer.forward(x), a)  # the generator moved on
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx != 0, layer.cache)
    layer.eval()
    assert layer.forward(x) is x and layer.cache is None  # identity, nothing kept
    assert Dropout(0.0).train().forward(x) is x


def test_dropout_bad_p():
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="Dropout: p must be a finite number in"):
            Dropout(bad)
    with pytest.raises(ValueError, match="dropout_backward: keep must be the boolean mask"):
        dropout_backward(np.ones(3), np.ones(3), 0.5)


# --------------------------------------------------------------------------- layers

LAYERS = {
    "leaky": (lambda: LeakyReLU(0.1), (2, 3, 4), "LeakyReLU", dict(negative_slope=0.1)),
    "tanh": (Tanh, (2, 5), "Tanh", {}),
    "sigmoid": (Sigmoid, (2, 5), "Sigmoid", {}),
    "gap": (GlobalAvgPool2D, (2, 3, 4, 5), "AdaptiveAvgPool2d", dict(output_size=1)),
    "bn2d": (lambda: BatchNorm2D(3, dtype=np.float64), (4, 3, 4, 5), "BatchNorm2d",
             dict(num_features=3)),
    "bn1d": (lambda: BatchNorm1D(5, dtype=np.float64), (6, 5), "BatchNorm1d",
             dict(num_features=5)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_its_torch_module(rng, name):
    torch = torch_or_skip()
    make, shape, tname, targs = LAYERS[name]
    layer = make()
    module = getattr(torch.nn, tname)(**targs).double()
    x = away_from_zero(rng, shape)
    dy = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(dy)
    tx = _t(torch, x, grad=True)
    module(tx).backward(_t(torch, dy))
    assert layer.output_shape(shape[1:]) == tuple(module(tx).shape[1:])
    np.testing.assert_allclose(layer.forward(x), module(tx).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_gradcheck_and_rebuild(rng, name):
    make, shape, _, _ = LAYERS[name]
    layer = make()
    x = away_from_zero(rng, shape) / 2  # moderate: tanh' and sigmoid' are not yet tiny
    params = list(layer.params)

    def f(x, *ps):
        for k, p in zip(params, ps):
            layer.params[k] = p
        return layer.forward(x)

    def backward(dy, x, *ps):
        f(x, *ps)
        dx = layer.backward(dy)
        return [dx] + [layer.grads[k] for k in params]
    gradcheck(f, [x] + [layer.params[k].copy() for k in params], backward, eps=1e-5,
              rtol=1e-6)
    again = layer_from_config(layer.config(), np.float64)
    assert repr(again) == repr(layer) and again.config() == layer.config()


def test_doctests_in_the_new_modules():
    for name in ("cycnn.norm", "cycnn.dropout", "cycnn.augment", "cycnn.metrics",
                 "cycnn.images", "cycnn.recipes"):
        result = doctest.testmod(importlib.import_module(name), extraglobs={"np": np})
        assert result.attempted > 0 and result.failed == 0, name


@needs_openmp
@DTYPES
def test_batch_norm_kernels_give_the_same_bits_on_any_thread_count(rng, monkeypatch, dtype):
    """Guaranteed by the kernels: a channel's sums run on one thread, in one order."""
    import cycnn.norm

    monkeypatch.setattr(cycnn.norm, "PARALLEL_MIN_ELEMENTS", 0)
    x, w, b = _bn_inputs(rng, (4, 6, 5, 5), dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    out = []
    for threads in (1, 2, 3):
        y, cache = batch_norm_forward(x, w, b, threads=threads)
        out.append((y, *batch_norm_backward(dy, cache, threads=threads)))
    for other in out[1:]:
        for a, b_ in zip(out[0], other):
            np.testing.assert_array_equal(a, b_)
