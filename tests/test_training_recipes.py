"""Learning-rate schedules (against torch.optim.lr_scheduler, to 1e-12), augmentation
(exact warps, seeded, label-preserving), the recipes, and reproducible training with all
of them (bit-identical reruns, resume equal to an uninterrupted run)."""

import math

import numpy as np
import pytest

import cycnn
from conftest import torch_or_skip
from cycnn import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    OneCycleLR,
    RandomAffine,
    StepLR,
    WarmupCosineLR,
    affine_warp,
    lenet5,
)
from cycnn.recipes import RECIPES, build, make_loss
from cycnn.schedules import get_scheduler

# bit-identical comparisons need a fixed thread count: one, here (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")



# --------------------------------------------------------------------------- schedules

def _torch_schedule(torch, name, opt):
    L = torch.optim.lr_scheduler
    return {
        "step": lambda: L.StepLR(opt, step_size=7, gamma=0.5),
        "cosine": lambda: L.CosineAnnealingLR(opt, T_max=30, eta_min=0.001),
        "onecycle": lambda: L.OneCycleLR(opt, max_lr=0.3, total_steps=97),
        "onecycle-3-linear": lambda: L.OneCycleLR(opt, max_lr=0.3, total_steps=97,
                                                  three_phase=True, pct_start=0.25,
                                                  anneal_strategy="linear"),
        "warmup-cosine": lambda: L.SequentialLR(
            opt, [L.LinearLR(opt, start_factor=0.1, total_iters=10),
                  L.CosineAnnealingLR(opt, T_max=40)], milestones=[10]),
    }[name]()


def _ours(name, opt):
    return {
        "step": lambda: StepLR(opt, step_size=7, gamma=0.5),
        "cosine": lambda: CosineAnnealingLR(opt, T_max=30, eta_min=0.001),
        "onecycle": lambda: OneCycleLR(opt, max_lr=0.3, total_steps=97),
        "onecycle-3-linear": lambda: OneCycleLR(opt, max_lr=0.3, total_steps=97,
                                                three_phase=True, pct_start=0.25,
                                                anneal_strategy="linear"),
        "warmup-cosine": lambda: WarmupCosineLR(opt, warmup_steps=10, total_steps=50,
                                                start_factor=0.1),
    }[name]()


STEPS = {"step": 50, "cosine": 75, "onecycle": 97, "onecycle-3-linear": 97,
         "warmup-cosine": 50}


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_schedule_matches_torch_step_for_step(name, kind):
    """The learning rate (and, for one-cycle, the momentum or beta1) at every step, and
    the weights after training with it, as torch's optimizer + scheduler give them."""
    torch = torch_or_skip()
    import warnings

    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(6)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = {"sgd": lambda: torch.optim.SGD([tw], lr=0.1, momentum=0.9),
            "adam": lambda: torch.optim.Adam([tw], lr=0.1),
            "adamw": lambda: torch.optim.AdamW([tw], lr=0.1)}[kind]()
    opt = {"sgd": lambda: SGD(0.1, momentum=0.9), "adam": lambda: Adam(0.1),
           "adamw": lambda: AdamW(0.1)}[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation chatter
        tsched = _torch_schedule(torch, name, topt)
    sched = _ours(name, opt)
    params = {"w": w0.copy()}
    for _ in range(STEPS[name]):
        group = topt.param_groups[0]
        assert abs(opt.lr - group["lr"]) <= 1e-12 * max(1.0, group["lr"])
        mom = opt.momentum if kind == "sgd" else opt.betas[0]
        tmom = group["momentum"] if kind == "sgd" else group["betas"][0]
        assert abs(mom - tmom) <= 1e-12
        g = rng.standard_normal(6)
        tw.grad = torch.tensor(g)
        topt.step()
        opt.step(params, {"w": g})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tsched.step()
        sched.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_schedule_closed_forms():
    opt = SGD(0.2)
    s = StepLR(opt, 3, gamma=0.5)
    assert [s.lr_at(t) for t in (0, 2, 3, 6, 9)] == [0.2, 0.2, 0.1, 0.05, 0.025]
    c = CosineAnnealingLR(SGD(1.0), T_max=10)
    assert c.lr_at(0) == 1.0 and abs(c.lr_at(5) - 0.5) < 1e-15 and c.lr_at(10) == 0.0
    o = OneCycleLR(SGD(0.1, momentum=0.9), max_lr=1.0, total_steps=100)
    assert math.isclose(o.lr_at(0), 1 / 25) and math.isclose(o.lr_at(29), 1.0)
    assert math.isclose(o.lr_at(99), 1 / 25 / 1e4)
    assert o.momentum_at(0) == 0.95 and math.isclose(o.momentum_at(29), 0.85)


def test_schedule_state_round_trip_and_resume():
    a_opt, b_opt = SGD(0.1, momentum=0.9), SGD(0.1, momentum=0.9)
    a = OneCycleLR(a_opt, 0.5, total_steps=40)
    for _ in range(13):
        a.step()
    b = get_scheduler(a.config(), b_opt)  # as a checkpoint restores it
    assert b.last_step == 13 and b_opt.lr == a_opt.lr and b_opt.momentum == a_opt.momentum
    for _ in range(20):
        a.step()
        b.step()
    assert b_opt.lr == a_opt.lr and repr(a) == repr(b)


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="StepLR: step_size must be >= 1"):
        StepLR(SGD(0.1), 0)
    with pytest.raises(TypeError, match="optimizer must be a cycnn optimizer"):
        CosineAnnealingLR("sgd", 10)
    with pytest.raises(ValueError, match="anneal_strategy must be 'cos' or 'linear'"):
        OneCycleLR(SGD(0.1), 0.1, 10, anneal_strategy="exp")
    s = OneCycleLR(SGD(0.1), 0.1, total_steps=3)
    for _ in range(3):
        s.step()
    with pytest.raises(ValueError, match="OneCycleLR: stepped 4 times, but the schedule has "
                                         "total_steps=3"):
        s.step()
    with pytest.raises(ValueError, match="total_steps must be >= 6"):
        WarmupCosineLR(SGD(0.1), warmup_steps=5, total_steps=5)
    with pytest.raises(ValueError, match="unknown schedule type 'Exp'"):
        get_scheduler({"type": "Exp"}, SGD(0.1))


def test_fit_steps_the_schedule_after_every_batch(digits):
    (x, y), _ = digits
    model = lenet5(seed=0)
    opt = SGD(0.05, momentum=0.9)
    sched = CosineAnnealingLR(opt, T_max=1000)
    model.fit(x[:200], y[:200], epochs=2, batch_size=32, optimizer=opt, scheduler=sched)
    assert sched.last_step == 2 * 7  # ceil(200 / 32) = 7 batches per epoch
    assert opt.lr == sched.lr_at(14)
    with pytest.raises(ValueError, match="scheduler was built for another optimizer"):
        model.fit(x[:64], y[:64], epochs=1, optimizer=SGD(0.1), scheduler=sched)
    with pytest.raises(TypeError, match="scheduler must be a cycnn LRScheduler"):
        model.fit(x[:64], y[:64], epochs=1, optimizer=opt, scheduler="cosine")


# --------------------------------------------------------------------------- augmentation

def test_identity_and_integer_shifts_are_exact(rng):
    x = rng.standard_normal((3, 2, 7, 6))
    eye = np.tile(np.eye(2), (3, 1, 1))
    np.testing.assert_array_equal(affine_warp(x, eye, np.zeros((3, 2))), x)
    shifted = affine_warp(x, eye, np.array([[2.0, 0.0], [0.0, -1.0], [-3.0, 4.0]]))
    expect = np.zeros_like(x)
    expect[0, :, 2:] = x[0, :, :-2]          # two rows down
    expect[1, :, :, :-1] = x[1, :, :, 1:]    # one column left
    expect[2, :, :-3, 4:] = x[2, :, 3:, :-4]  # three up, four right
    np.testing.assert_array_equal(shifted, expect)


def test_quarter_turn_is_rot90_and_half_pixel_shift_averages(rng):
    x = rng.standard_normal((1, 1, 5, 5))
    turn = np.array([[[0.0, -1.0], [1.0, 0.0]]])  # counter-clockwise on the screen
    np.testing.assert_allclose(affine_warp(x, turn, np.zeros((1, 2)))[0, 0],
                               np.rot90(x[0, 0]), atol=1e-12)
    half = affine_warp(x, np.eye(2)[None], np.array([[0.0, 0.5]]))[0, 0]
    np.testing.assert_allclose(half[:, 1:], (x[0, 0, :, :-1] + x[0, 0, :, 1:]) / 2,
                               rtol=1e-12)


def test_positive_angles_turn_counter_clockwise():
    """RandomAffine's matrices are the rotations its docstring promises: a dot right of
    the centre moves up (rows point down) for a positive angle."""
    aug = RandomAffine(degrees=80, translate=0, scale=(1, 1))
    A, t = aug.params(6, np.random.default_rng(1))
    theta = np.deg2rad(np.random.default_rng(1).uniform(-80, 80, 6))
    expect = np.stack([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    np.testing.assert_allclose(A, expect.transpose(2, 0, 1), rtol=1e-15)
    assert not t.any()
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 7] = 1.0  # three pixels right of the centre (4, 4)
    plus90 = affine_warp(x, np.array([[[0.0, -1.0], [1.0, 0.0]]]), np.zeros((1, 2)))
    minus90 = affine_warp(x, np.array([[[0.0, 1.0], [-1.0, 0.0]]]), np.zeros((1, 2)))
    assert np.unravel_index(np.argmax(plus90[0, 0]), (9, 9)) == (1, 4)  # now above it
    assert np.unravel_index(np.argmax(minus90[0, 0]), (9, 9)) == (7, 4)  # below it


def test_augmentation_is_deterministic_per_seed_and_keeps_dtype(digits):
    (x, _), _ = digits
    aug = RandomAffine(**{**RECIPES["digits"]["augment"],
                          "scale": tuple(RECIPES["digits"]["augment"]["scale"])})
    a = aug(x[:16], np.random.default_rng(7))
    np.testing.assert_array_equal(a, aug(x[:16], np.random.default_rng(7)))
    assert not np.array_equal(a, aug(x[:16], np.random.default_rng(8)))
    assert a.dtype == np.float32 and a.shape == (16, 1, 28, 28)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-6  # bilinear: no overshoot


def test_fit_draws_new_augmentations_every_epoch_and_the_same_ones_per_seed():
    """fit hands the augmentation a generator seeded by (seed, epoch): every epoch sees new
    variants of the images, and a rerun with the same seed sees the same ones."""

    def run(seed):
        draws = []

        def record(xb, rng):
            draws.append(float(rng.random()))
            return xb

        net = cycnn.Sequential(cycnn.Flatten(), cycnn.Dense(4, 2, rng=0), input_shape=(4,))
        net.fit(np.ones((8, 4), np.float32), np.zeros(8, np.int64), epochs=3, batch_size=8,
                optimizer=SGD(0.1), seed=seed, augment=record)
        return draws

    first = run(seed=3)
    assert len(first) == 3 and len(set(first)) == 3  # one batch per epoch, each new
    assert run(seed=3) == first
    assert run(seed=4) != first


def test_augmentation_preserves_labels(digits):
    """A LeNet trained for a few epochs on augmented digits reads augmented test digits
    nearly as well as clean ones: the transformations leave a digit recognisable as
    itself. The same measure catches a transformation that changes digits (a half turn:
    6 <-> 9, and a 7 or a 4 upside down is no digit), which scores far lower."""
    (x, y), (xt, yt) = digits
    aug = RandomAffine(degrees=15, translate=3, scale=(0.85, 1.15), shear=10)
    model = lenet5(seed=0)
    model.fit(x, y, epochs=4, batch_size=32, optimizer=SGD(0.01, momentum=0.9), augment=aug)
    _, clean = model.evaluate(xt, yt)
    _, augmented = model.evaluate(aug(xt, np.random.default_rng(0)), yt)
    half_turn = np.tile(-np.eye(2), (len(xt), 1, 1))
    _, turned = model.evaluate(affine_warp(xt, half_turn, np.zeros((len(xt), 2))), yt)
    assert clean > 0.9 and augmented > 0.8, (clean, augmented)  # chance is 0.1
    assert augmented - turned > 0.3, (augmented, turned)


def test_augmentation_bad_arguments():
    with pytest.raises(ValueError, match="RandomAffine: degrees must be a finite number in"):
        RandomAffine(degrees=-1)
    with pytest.raises(ValueError, match="scale must be a pair"):
        RandomAffine(scale=1.1)
    with pytest.raises(ValueError, match=r"matrices must be \(N, 2, 2\)"):
        affine_warp(np.zeros((2, 1, 4, 4)), np.eye(2)[None], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="every matrix must be invertible"):
        affine_warp(np.zeros((1, 1, 4, 4)), np.zeros((1, 2, 2)), np.zeros((1, 2)))
    with pytest.raises(TypeError, match="augment must be a callable"):
        lenet5().fit(np.zeros((4, 1, 28, 28)), np.zeros(4, int), optimizer=SGD(0.1),
                     augment="affine")


# --------------------------------------------------------------------------- recipes

def test_recipe_builds_what_it_says(digits):
    model, opt, sched, aug = build(RECIPES["digits"], n_train=4000, seed=0)
    r = RECIPES["digits"]
    assert type(opt) is SGD and opt.nesterov and opt.weight_decay == r["weight_decay"]
    assert isinstance(sched, OneCycleLR) and sched.max_lr == r["lr"]
    assert sched.total_steps == r["epochs"] * math.ceil(4000 / r["batch_size"])
    assert aug.degrees == r["augment"]["degrees"]
    assert repr(model) == repr(cycnn.zoo.MODELS[r["model"]](0, **r["model_options"]))
    assert model.num_params != cycnn.zoo.MODELS[r["model"]](0).num_params  # options used
    assert build(RECIPES["fashion-mnist"], 60000)[3] is None  # no augmentation there
    assert make_loss(r).options["label_smoothing"] == r["label_smoothing"] > 0
    assert make_loss({}).options["label_smoothing"] == 0.0  # a recipe from before the entry


def _small_recipe(**change):
    return dict(RECIPES["digits"], epochs=3, batch_size=32, **change)


def _train(recipe, x, y, epochs=None, start=0, state=None):
    model, opt, sched, aug = build(recipe, len(x), seed=4)
    if state is not None:
        model.load_state_dict(state[0])
        opt.load_state_dict(*state[1], {k: v.shape for k, v in model.parameters().items()})
        sched = get_scheduler(state[2], opt)
    model.fit(x, y, epochs=epochs or recipe["epochs"], batch_size=recipe["batch_size"],
              optimizer=opt, seed=4, scheduler=sched, augment=aug, initial_epoch=start)
    return model, opt, sched


def test_same_seed_same_threads_gives_bit_identical_weights(digits):
    """Guaranteed by construction: every random draw (weights, batch order, augmentation,
    dropout) comes from a generator seeded by (seed, epoch), and the kernels run the same
    loops in the same order on one thread."""
    (x, y), _ = digits
    recipe = _small_recipe(model="convnet")
    a = _train(recipe, x[:192], y[:192])[0].state_dict()
    b = _train(recipe, x[:192], y[:192])[0].state_dict()
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resumed_run_equals_the_uninterrupted_one(digits):
    """Stop after epoch 1 (weights, buffers, optimizer and schedule saved), restart at
    epoch 1: the result is bit-identical to three epochs in one go."""
    (x, y), _ = digits
    recipe = _small_recipe(model="convnet")
    whole = _train(recipe, x[:160], y[:160])[0].state_dict()
    model, opt, sched = _train(recipe, x[:160], y[:160], epochs=1)
    saved = (model.state_dict(), opt.state_dict(), sched.config())
    resumed = _train(recipe, x[:160], y[:160], start=1, state=saved)[0].state_dict()
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)
