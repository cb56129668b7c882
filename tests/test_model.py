"""Sequential: training loop, predictions, summary, state_dict, checkpoints, bad input."""


import numpy as np
import pytest

import cycnn
from conftest import needs_openmp, torch_or_skip
from cycnn import (
    SGD,
    Adam,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
    lenet5,
    load_checkpoint,
)

# Train on one thread (conftest's fixture): with two, OpenMP's spinning workers can fight
# NumPy's OpenBLAS workers and make these tiny runs crawl on a busy machine. Thread counts
# are exercised in test_two_threads_reproducible. `digits` is conftest's too.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small(digits):
    (x, y), (xt, yt) = digits
    return (x[:256], y[:256]), (xt[:128], yt[:128])


def _tiny(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2D(1, 2, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2D(4), Flatten(),
                      Dense(2 * 6 * 6, 10, rng=rng, dtype=dtype))


# --------------------------------------------------------------------------- training

def test_fit_learns_and_reports_history(small):
    (x, y), (xt, yt) = small
    model = lenet5(seed=0)
    hist = model.fit(x, y, epochs=3, batch_size=32, optimizer=SGD(0.05, momentum=0.9),
                     validation_data=(xt, yt), seed=0)
    assert len(hist["loss"]) == len(hist["accuracy"]) == len(hist["val_accuracy"]) == 3
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] > hist["accuracy"][0] and hist["val_accuracy"][-1] > 0.3
    assert hist.epochs_completed == 3 and not hist.interrupted
    assert all(layer.cache is None for layer in model)  # no activations kept
    model.forward(x[:4])  # a training-mode forward does fill every cache
    assert all(layer.cache is not None for layer in model)
    loss, acc = model.evaluate(xt, yt)
    assert (loss, acc) == pytest.approx((hist["val_loss"][-1], hist["val_accuracy"][-1]))


def test_fit_without_validation_leaves_no_activations(small):
    """The last batch's activations are dropped by fit itself (with validation data,
    evaluate() would drop them anyway, hiding a fit that forgot to)."""
    (x, y), _ = small
    model = _tiny()
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, optimizer=SGD(0.05))
    assert all(layer.training for layer in model)
    assert all(layer.cache is None for layer in model)


def test_float32_stays_float32_end_to_end(small):
    (x, y), _ = small
    model = lenet5(seed=0)
    seen = []
    for layer in model:
        orig = layer.forward

        def spy(a, orig=orig):
            seen.append(a.dtype)
            return orig(a)
        layer.forward = spy
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, optimizer=Adam())
    assert set(seen) == {np.dtype(np.float32)}
    assert all(v.dtype == np.float32 for v in model.state_dict().values())
    assert model.predict(x[:3]).dtype == np.float32


def test_same_seed_and_threads_give_bit_identical_weights(small):
    (x, y), _ = small
    runs = []
    for _ in range(2):
        model = lenet5(seed=3)
        model.fit(x, y, epochs=2, batch_size=32, optimizer=SGD(0.05, momentum=0.9), seed=5)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    other = lenet5(seed=3)
    other.fit(x, y, epochs=2, batch_size=32, optimizer=SGD(0.05, momentum=0.9), seed=6)
    assert not np.array_equal(other.state_dict()["0.weight"], runs[0]["0.weight"])


@needs_openmp
def test_two_threads_reproducible(small, always_parallel):
    (x, y), _ = small
    cycnn.set_num_threads(2)
    runs = []
    for _ in range(2):
        model = _tiny(seed=3)
        model.fit(x[:64], y[:64], epochs=1, batch_size=16, optimizer=SGD(0.05, momentum=0.9))
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_resume_from_checkpoint_equals_uninterrupted(small, tmp_path):
    (x, y), _ = small
    straight = lenet5(seed=1)
    straight.fit(x, y, epochs=2, batch_size=64, optimizer=Adam(2e-3), seed=2)
    first = lenet5(seed=1)
    opt = Adam(2e-3)
    first.fit(x, y, epochs=1, batch_size=64, optimizer=opt, seed=2)
    first.save(tmp_path / "ck.npz", optimizer=opt, meta={"epochs_completed": 1})
    model, opt2, meta = load_checkpoint(tmp_path / "ck.npz")
    assert meta == {"epochs_completed": 1} and isinstance(opt2, Adam)
    model.fit(x, y, epochs=2, batch_size=64, optimizer=opt2, seed=2, initial_epoch=1)
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


def test_predict_is_batched_and_leaves_no_activations(small):
    (x, _), _ = small
    model = lenet5(seed=0)
    full = model.predict(x[:50], batch_size=50)
    np.testing.assert_allclose(model.predict(x[:50], batch_size=7), full, rtol=1e-4, atol=1e-5)
    assert full.shape == (50, 10)
    assert all(layer.cache is None for layer in model)
    assert all(layer.training for layer in model)  # mode restored


def test_unshuffled_fit_visits_samples_in_order(small):
    (x, y), _ = small
    a, b = _tiny(), _tiny()
    a.fit(x[:64], y[:64], epochs=1, batch_size=16, optimizer=SGD(0.1), shuffle=False)
    opt = SGD(0.1)
    for s in range(0, 64, 16):
        b.train_step(x[s:s + 16], y[s:s + 16], opt)
    # bit for bit: the same steps on the same batches in the same order, one thread
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


# --------------------------------------------------------------------------- summary, state

def test_summary_lists_layers_shapes_and_parameter_counts():
    text = lenet5().summary()
    assert "Conv2D(1, 6, kernel_size=5)" in text and "(6, 24, 24)" in text
    assert "Dense(256, 120)" in text and "30,840" in text
    assert "total parameters: 44,426" in text
    assert "?" in _tiny().summary() and "(2, 24, 24)" in _tiny().summary((1, 28, 28))


def test_state_dict_names_follow_torch_sequential():
    sd = lenet5().state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        "0.weight": (6, 1, 5, 5), "0.bias": (6,), "3.weight": (16, 6, 5, 5), "3.bias": (16,),
        "7.weight": (120, 256), "7.bias": (120,), "9.weight": (84, 120), "9.bias": (84,),
        "11.weight": (10, 84), "11.bias": (10,)}


def test_load_state_dict_checks_names_and_shapes():
    model = lenet5()
    sd = model.state_dict()
    bad = dict(sd, **{"7.weight": np.zeros((256, 120))})
    with pytest.raises(ValueError, match=r"7.weight has shape \(256, 120\).*\(120, 256\)"):
        model.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing.*'11.bias'"):
        model.load_state_dict({k: v for k, v in sd.items() if k != "11.bias"})
    with pytest.raises(ValueError, match="unexpected.*'12.weight'"):
        model.load_state_dict(dict(sd, **{"12.weight": np.zeros(3)}))
    before = model.state_dict()["0.weight"].copy()
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before)  # untouched


def test_state_dict_moves_to_torch_and_back(digits):
    torch = torch_or_skip()
    from torch import nn

    (x, _), _ = digits
    ours = lenet5(seed=4, dtype=np.float64)
    theirs = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
        nn.ReLU(), nn.Linear(84, 10)).double()
    # cycnn -> torch
    tsd = theirs.state_dict()
    assert {k: tuple(v.shape) for k, v in tsd.items()} == \
        {k: v.shape for k, v in ours.state_dict().items()}
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    xb = x[:16].astype(np.float64)
    with torch.no_grad():
        np.testing.assert_allclose(ours.predict(xb), theirs(torch.from_numpy(xb)).numpy(),
                                   rtol=1e-10, atol=1e-12)
    # torch -> cycnn, a fresh torch init, given as torch tensors directly
    torch.manual_seed(0)
    fresh = cycnn.to_torch(ours)
    for m in fresh:
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    ours.load_state_dict(dict(fresh.named_parameters()))  # even live Parameters
    with torch.no_grad():
        np.testing.assert_allclose(ours.predict(xb), fresh(torch.from_numpy(xb)).numpy(),
                                   rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- bad input

def test_labels_and_images_of_different_lengths(small):
    (x, y), _ = small
    with pytest.raises(ValueError, match="256 samples but y has 255 labels"):
        lenet5().fit(x, y[:-1], epochs=1, batch_size=32, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="same length"):
        lenet5().evaluate(x[:10], y[:9])


def test_wrong_image_shape_names_the_layer_and_both_shapes():
    model = lenet5()
    with pytest.raises(ValueError) as e:
        model.predict(np.zeros((2, 3, 28, 28), np.float32))
    msg = str(e.value)
    assert "first layer Conv2D(1, 6, kernel_size=5)" in msg
    assert "(3, 28, 28)" in msg and "C=1" in msg
    with pytest.raises(ValueError, match=r"layer 7 Dense\(256, 120\).*\(784,\).*\(1, 40, 40\)"):
        model.fit(np.zeros((4, 1, 40, 40), np.float32), np.zeros(4, int), epochs=1,
                  batch_size=2, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"first layer.*\(28, 28\)"):
        model.predict(np.zeros((2, 28, 28), np.float32))


def test_shapes_are_checked_again_after_the_layers_change():
    """The shape walk is remembered between steps; a replaced layer, a list edited in
    place or a parameter of another shape is checked afresh."""
    model, x = _tiny(), np.zeros((2, 1, 28, 28), np.float32)
    assert model.shapes((1, 28, 28))[-1] == (10,)
    assert model.shapes((1, 28, 28))[-1] == (10,)
    model.layers[-1] = Dense(2 * 6 * 6, 7, rng=0)
    assert model.predict(x).shape == (2, 7)
    model.layers.append(Dense(5, 3, rng=0))  # takes 5 features, gets 7
    with pytest.raises(ValueError, match=r"layer 5 Dense\(5, 3\)"):
        model.predict(x)
    model.layers.pop()
    model.layers[2] = MaxPool2D(2)  # the same parameters, 12x12 maps for 6x6
    with pytest.raises(ValueError, match=r"layer 4 Dense\(72, 7\)"):
        model.predict(x)
    model.layers[2] = MaxPool2D(4)
    assert model.predict(x).shape == (2, 7)
    model.layers[0].params["weight"] = np.zeros((2, 3, 5, 5), np.float32)  # C=3 now
    with pytest.raises(ValueError, match="first layer"):
        model.predict(x)


def test_bad_batch_size_epochs_optimizer_and_labels(small):
    (x, y), _ = small
    model = lenet5()
    for bs in (0, -1):
        with pytest.raises(ValueError, match="fit: batch_size must be >= 1"):
            model.fit(x, y, epochs=1, batch_size=bs, optimizer=SGD(0.1))
    with pytest.raises(TypeError, match="fit: batch_size must be an integer, got 2.5"):
        model.fit(x, y, epochs=1, batch_size=2.5, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="epochs"):
        model.fit(x, y, epochs=0, batch_size=8, optimizer=SGD(0.1))
    with pytest.raises(TypeError, match="optimizer"):
        model.fit(x, y, epochs=1, batch_size=8, optimizer=None)
    with pytest.raises(TypeError, match="integer class indices"):
        model.fit(x, y.astype(float), epochs=1, batch_size=8, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match=r"\[0, 10\).*found 10"):
        model.fit(x, np.where(y == 3, 10, y), epochs=1, batch_size=8, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="no samples"):
        model.fit(x[:0], y[:0], epochs=1, batch_size=8, optimizer=SGD(0.1))
    with pytest.raises(ValueError, match="SGD: lr must be a finite number > 0, got 0"):
        SGD(lr=0)


def test_sequential_refuses_non_layers():
    with pytest.raises(TypeError, match="item 1"):
        Sequential(ReLU(), "dense")
    with pytest.raises(ValueError, match="at least one"):
        Sequential()
