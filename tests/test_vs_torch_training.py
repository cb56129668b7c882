"""Training side by side with PyTorch: same network, initial weights (copied through
state_dict), batch order and hyperparameters must give the same loss curve."""

import numpy as np
import pytest

import cycnn
from conftest import torch_or_skip
from cycnn import SGD, Adam, epoch_order, lenet5, to_torch
from cycnn.datasets import load_digits

torch = torch_or_skip()
F = torch.nn.functional


@pytest.fixture(autouse=True)
def one_thread():
    """One thread for both libraries: reproducible and immune to spinning thread pools."""
    old, told = cycnn.get_num_threads(), torch.get_num_threads()
    cycnn.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    cycnn.set_num_threads(old)
    torch.set_num_threads(told)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _torch_fit(tm, opt, x, y, order, batch_size):
    """The textbook PyTorch loop; returns the loss of every step."""
    losses = []
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for s in range(0, len(order), batch_size):
        idx = torch.from_numpy(order[s:s + batch_size])
        opt.zero_grad()
        loss = F.cross_entropy(tm(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _cycnn_steps(model, opt, x, y, order, batch_size):
    """The same loop in cycnn: one train_step per batch, keeping every step's loss."""
    return [model.train_step(x[order[s:s + batch_size]], y[order[s:s + batch_size]], opt)[0]
            for s in range(0, len(order), batch_size)]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_float64_loss_curve_matches_torch(digits, kind):
    (x, y), _ = digits
    x, y = x[:640].astype(np.float64), y[:640]
    model = lenet5(seed=0, dtype=np.float64)
    tm = to_torch(model)
    assert tm[0].weight.dtype == torch.float64
    order = epoch_order(len(x), 0, 0)
    if kind == "sgd":
        ours, theirs = SGD(0.05, momentum=0.9), torch.optim.SGD(tm.parameters(), 0.05, 0.9)
    else:
        ours, theirs = Adam(2e-3), torch.optim.Adam(tm.parameters(), 2e-3)
    ref = _torch_fit(tm, theirs, x, y, order, 64)
    got = _cycnn_steps(model, ours, x, y, order, 64)
    assert len(got) == len(ref) == 10
    assert abs(got[0] - ref[0]) < 1e-5  # the acceptance bar; in fact ~1e-15
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-7, atol=1e-9)


def test_fit_uses_the_documented_batch_order(digits):
    """Sequential.fit == the explicit loop of train_step over epoch_order batches.

    Bit for bit: both run the same kernels on the same batches in the same order on one
    thread (the fixture), so every sum is added in the same order."""
    (x, y), _ = digits
    x, y = x[:200].astype(np.float64), y[:200]
    a, b = lenet5(seed=1, dtype=np.float64), lenet5(seed=1, dtype=np.float64)
    a.fit(x, y, epochs=2, batch_size=50, optimizer=SGD(0.05, momentum=0.9), seed=4)
    opt = SGD(0.05, momentum=0.9)
    for epoch in range(2):
        _cycnn_steps(b, opt, x, y, epoch_order(len(x), 4, epoch), 50)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_float32_one_epoch_on_digits_same_accuracy_as_torch(digits):
    (x, y), (xt, yt) = digits
    model = lenet5(seed=0)
    tm = to_torch(model)
    order = epoch_order(len(x), 0, 0)
    hist = model.fit(x, y, epochs=1, batch_size=32, optimizer=SGD(0.01, momentum=0.9), seed=0)
    ref = _torch_fit(tm, torch.optim.SGD(tm.parameters(), 0.01, 0.9), x, y, order, 32)
    torch_loss = float(np.average(ref, weights=[len(order[s:s + 32])
                                                for s in range(0, len(order), 32)]))
    assert hist["loss"][0] == pytest.approx(torch_loss, rel=1e-3)
    _, acc = model.evaluate(xt, yt)
    with torch.no_grad():
        tacc = float((tm(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
    assert abs(acc - tacc) <= 0.005, (acc, tacc)
    assert acc > 0.85
