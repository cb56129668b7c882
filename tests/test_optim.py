"""Optimizers: the update rules, and agreement with torch.optim step for step."""

import numpy as np
import pytest

from conftest import torch_or_skip
from cycnn.optim import SGD, Adam, AdamW, get_optimizer

SHAPES = {"0.weight": (4, 3, 2, 2), "0.bias": (4,), "3.weight": (5, 16)}


def _params_and_grads(rng, steps, dtype=np.float64):
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
             for _ in range(steps)]
    return params, grads


def test_plain_sgd_is_w_minus_lr_grad(rng):
    params, (grads,) = _params_and_grads(rng, 1)
    before = {k: v.copy() for k, v in params.items()}
    SGD(lr=0.1).step(params, grads)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k] - 0.1 * grads[k])


def test_momentum_first_step_uses_the_gradient(rng):
    params, grads = _params_and_grads(rng, 2)
    w0 = params["0.bias"].copy()
    opt = SGD(lr=0.5, momentum=0.9)
    opt.step(params, grads[0])
    np.testing.assert_allclose(params["0.bias"], w0 - 0.5 * grads[0]["0.bias"], rtol=1e-15)
    w1 = params["0.bias"].copy()
    opt.step(params, grads[1])
    buf = 0.9 * grads[0]["0.bias"] + grads[1]["0.bias"]
    np.testing.assert_allclose(params["0.bias"], w1 - 0.5 * buf, rtol=1e-14)


def test_step_does_not_modify_gradients(rng):
    params, (grads,) = _params_and_grads(rng, 1)
    saved = {k: v.copy() for k, v in grads.items()}
    for opt in (SGD(0.1, momentum=0.9, weight_decay=0.01), Adam(weight_decay=0.01),
                AdamW(weight_decay=0.01)):
        opt.step(params, grads)
        opt.step(params, grads)
    for k in grads:
        np.testing.assert_array_equal(grads[k], saved[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_float32_stays_float32(rng, dtype):
    params, grads = _params_and_grads(rng, 2, dtype)
    for opt in (SGD(0.1, momentum=0.9, weight_decay=1e-4), Adam(1e-3, weight_decay=1e-4),
                AdamW(1e-3, weight_decay=1e-4)):
        for g in grads:
            opt.step(params, g)
        assert all(p.dtype == dtype for p in params.values())
        assert all(a.dtype == dtype for a in opt.state_dict()[1].values())


CASES = {
    "sgd": (SGD, dict(lr=0.1), dict(lr=0.1)),
    "sgd-momentum": (SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    "sgd-momentum-wd": (SGD, dict(lr=0.05, momentum=0.8, weight_decay=0.01),
                        dict(lr=0.05, momentum=0.8, weight_decay=0.01)),
    "sgd-nesterov": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True),
                     dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (Adam, dict(), dict()),
    "adam-custom": (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02),
                    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02)),
    "sgd-nesterov-wd": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
                        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    "adamw": (AdamW, dict(), dict()),
    "adamw-custom": (AdamW, dict(lr=0.02, betas=(0.85, 0.98), eps=1e-7, weight_decay=0.1),
                     dict(lr=0.02, betas=(0.85, 0.98), eps=1e-7, weight_decay=0.1)),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_torch_optim_step_for_step(rng, case):
    torch = torch_or_skip()
    cls, ours, theirs = CASES[case]
    params, grads = _params_and_grads(rng, 6)
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    tcls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam,
            "AdamW": torch.optim.AdamW}[cls.__name__]
    topt = tcls(list(tparams.values()), **theirs)
    opt = cls(**ours)
    for g in grads:
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        topt.step()
        opt.step(params, g)
        for k, t in tparams.items():
            assert params[k].shape == tuple(t.shape)
            np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_state_dict_round_trip_continues_identically(rng):
    params, grads = _params_and_grads(rng, 4)
    twin = {k: v.copy() for k, v in params.items()}
    a, b0 = Adam(lr=0.01), Adam(lr=0.01)
    for g in grads[:2]:
        a.step(params, g)
        b0.step(twin, g)
    cfg, arrays = b0.state_dict()
    b = get_optimizer(cfg)  # a fresh optimizer restored from b0's saved state
    b.load_state_dict(cfg, arrays)
    assert b.steps == b0.steps and repr(b) == repr(b0)
    for g in grads[2:]:
        a.step(params, g)
        b.step(twin, g)
    for k in params:
        np.testing.assert_array_equal(params[k], twin[k])


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate_is_refused(bad):
    for cls in (SGD, Adam, AdamW):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: lr must be a finite number > 0"):
            cls(lr=bad)


@pytest.mark.parametrize("bad", ["0.1", True, None])
def test_learning_rate_of_the_wrong_type_is_refused(bad):
    for cls in (SGD, Adam, AdamW):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: lr must be a number > 0"):
            cls(lr=bad)


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="momentum"):
        SGD(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam(betas=(0.9,))
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer({"type": "RMSprop"})


def test_gradient_shape_mismatch_names_the_parameter(rng):
    params, (grads,) = _params_and_grads(rng, 1)
    grads["0.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match="'0.bias'"):
        SGD(0.1).step(params, grads)


def test_adamw_decay_is_decoupled_from_the_gradient(rng):
    """With a zero gradient Adam's L2 decay still moves through the moment estimates,
    while AdamW only shrinks the weights: w * (1 - lr * wd), exactly, on step one."""
    w0 = rng.standard_normal(5)
    params, zero = {"w": w0.copy()}, {"w": np.zeros(5)}
    AdamW(lr=0.1, weight_decay=0.5).step(params, zero)
    np.testing.assert_allclose(params["w"], w0 * (1 - 0.1 * 0.5), rtol=1e-15)
    l2 = {"w": w0.copy()}
    Adam(lr=0.1, weight_decay=0.5).step(l2, zero)
    np.testing.assert_allclose(l2["w"], w0 - 0.1 * np.sign(w0), rtol=1e-6)  # Adam's unit step
    cfg, _ = AdamW(weight_decay=0.2).state_dict()
    assert cfg["type"] == "AdamW" and type(get_optimizer(cfg)) is AdamW
