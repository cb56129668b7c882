"""Losses, softmax and dense with PyTorch's other arguments (docs/dense-softmax.md,
docs/api.md's table): cross-entropy's weight, ignore_index, label_smoothing, reduction and
spatial or unbatched logits; mse_loss(reduction='none'); softmax's dtype=, 0-d input and
empty class axis, and the softmax backward passes; dense on (D_in,) and (..., D_in).

Each against central differences and PyTorch, then the bad arguments.
"""

from __future__ import annotations

import numpy as np
import pytest

import cycnn
from conftest import DTYPES, torch_or_skip
from cycnn import softmax_cross_entropy

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}

CE_SHAPES = [(4, 3), (2, 3, 5), (2, 4, 3, 2), (3,), (1, 2, 1, 1, 2)]
CE_OPTIONS = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, reduction="none"),
    dict(ignore_index=1),
    dict(ignore_index=1, weight=True),
    dict(label_smoothing=0.2),
    dict(label_smoothing=0.15, weight=True, ignore_index=0, reduction="sum"),
    dict(label_smoothing=1.0, reduction="none"),
]


def _ce_inputs(shape, options, targets, rng, dtype=np.float64):
    logits = rng.standard_normal(shape).astype(dtype)
    K = shape[0] if len(shape) == 1 else shape[1]
    if targets == "index":
        labels = rng.integers(0, K, size=shape[:1] + shape[2:] if len(shape) > 1 else ())
    else:
        labels = rng.random(shape).astype(dtype)
        labels /= labels.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    opts = dict(options)
    if opts.pop("weight", None):
        opts["weight"] = (rng.random(K) + 0.5).astype(dtype)
    return logits, labels, opts


def _ce_cases():
    for shape in CE_SHAPES:
        for k, options in enumerate(CE_OPTIONS):
            for targets in ("index", "probabilities"):
                if targets == "probabilities" and "ignore_index" in options:
                    continue
                yield pytest.param(shape, options, targets,
                                   id=f"{'x'.join(map(str, shape))}-{k}-{targets}")


@pytest.mark.parametrize("shape, options, targets", list(_ce_cases()))
@DTYPES
def test_cross_entropy_matches_pytorch(shape, options, targets, dtype):
    torch = torch_or_skip()
    rng = np.random.default_rng(len(shape) * 100 + CE_OPTIONS.index(options))
    logits, labels, opts = _ce_inputs(shape, options, targets, rng, dtype)
    xt = torch.tensor(logits, requires_grad=True)
    topts = {k: torch.from_numpy(v) if k == "weight" else v for k, v in opts.items()}
    lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(np.asarray(labels)), **topts)
    g = rng.standard_normal(lt.shape).astype(dtype)
    lt.backward(torch.from_numpy(g))
    loss, d = softmax_cross_entropy(logits, labels, **opts)
    if opts.get("reduction") == "none":
        assert loss.shape == tuple(lt.shape) and loss.dtype == dtype
        d = d * np.expand_dims(g, 0 if len(shape) == 1 else 1)
    else:
        assert isinstance(loss, float)
        d = d * g
    assert d.dtype == dtype and d.shape == logits.shape
    np.testing.assert_allclose(loss, lt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(d, xt.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("options, targets", [
    pytest.param(o, t, id=f"{o}-{t}") for o in CE_OPTIONS for t in ("index", "probabilities")
    if t == "index" or "ignore_index" not in o])  # ignore_index is for class indices only
def test_cross_entropy_central_differences(options, targets):
    rng = np.random.default_rng(CE_OPTIONS.index(options))
    logits, labels, opts = _ce_inputs((3, 4, 2), options, targets, rng)
    none = opts.get("reduction") == "none"

    def forward(z):
        return np.asarray(softmax_cross_entropy(z, labels, **opts)[0])

    def backward(dy, z):
        d = softmax_cross_entropy(z, labels, **opts)[1]
        return d * (np.expand_dims(dy, 1) if none else dy)

    result = cycnn.gradcheck(forward, logits, backward, rtol=1e-6)
    assert result.analytic[0].any()


def test_ignored_labels_take_no_part():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3))
    labels = np.array([0, 2, 2, 1, 2])
    loss, d = softmax_cross_entropy(z, labels, ignore_index=2)
    kept, d_kept = softmax_cross_entropy(z[[0, 3]], labels[[0, 3]])
    assert loss == pytest.approx(kept, rel=1e-14)
    np.testing.assert_array_equal(d[[1, 2, 4]], 0)
    np.testing.assert_allclose(d[[0, 3]], d_kept, rtol=1e-14)


def test_all_ignored_gives_nan_and_no_gradient():
    loss, d = softmax_cross_entropy(np.zeros((2, 3)), np.array([1, 1]), ignore_index=1)
    assert np.isnan(loss) and not d.any()


def test_weighted_mean_divides_by_the_weight_of_the_targets():
    z, labels, w = np.zeros((2, 2)), np.array([0, 1]), np.array([1.0, 3.0])
    loss, _ = softmax_cross_entropy(z, labels, weight=w)
    assert loss == pytest.approx((1 + 3) * np.log(2) / (1 + 3))
    loss, _ = softmax_cross_entropy(z, labels, weight=w, reduction="sum")
    assert loss == pytest.approx(4 * np.log(2))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@DTYPES
def test_the_plain_case_equals_the_general_formula(reduction, dtype):
    """Class indices with no weight, no smoothing and nothing ignored take a shorter
    route; unit weights take the general one: the same numbers, to the bit."""
    rng = np.random.default_rng(7)
    z = (4 * rng.standard_normal((33, 10))).astype(dtype)
    labels = rng.integers(0, 10, 33)
    plain = softmax_cross_entropy(z, labels, reduction=reduction)
    general = softmax_cross_entropy(z, labels, weight=np.ones(10, dtype), reduction=reduction)
    np.testing.assert_array_equal(plain[0], general[0])
    np.testing.assert_array_equal(plain[1], general[1])
    assert plain[1].dtype == dtype


@pytest.mark.parametrize("options", [dict(), dict(weight=np.array([1.0, 2.0, 0.5]))],
                         ids=["plain", "weighted"])
def test_an_infinitely_unlikely_class_leaves_the_loss_finite(options):
    """A logit of -inf off the target: its log-probability is -inf, which the smoothing
    term would carry as 0 * -inf = NaN; without smoothing the loss is finite (PyTorch)."""
    z = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, 0.0]])
    loss, d = softmax_cross_entropy(z, np.array([2, 0]), **options)
    assert np.isfinite(loss) and np.isfinite(d).all()
    ref, _ = softmax_cross_entropy(np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([1, 0]),
                                   **({} if not options else
                                      dict(weight=np.array([1.0, 2.0]))))
    if not options:
        assert loss == pytest.approx(ref, rel=1e-15)
    torch = torch_or_skip()
    topts = {k: torch.from_numpy(v) for k, v in options.items()}
    lt = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.tensor([2, 0]), **topts)
    assert loss == pytest.approx(float(lt), rel=1e-14)


def test_spatial_logits_are_one_sample_per_position():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, 3, 4, 5))
    labels = rng.integers(0, 3, (2, 4, 5))
    loss, d = softmax_cross_entropy(z, labels, reduction="none")
    rows = z.transpose(0, 2, 3, 1).reshape(-1, 3)
    flat, d_flat = softmax_cross_entropy(rows, labels.reshape(-1), reduction="none")
    np.testing.assert_allclose(loss.reshape(-1), flat, rtol=1e-14)
    np.testing.assert_allclose(d.transpose(0, 2, 3, 1).reshape(-1, 3), d_flat, rtol=1e-14)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()], ids=str)
@DTYPES
def test_mse_none(shape, dtype):
    rng = np.random.default_rng(3)
    pred, target = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    loss, d = cycnn.mse_loss(pred, target, reduction="none")
    assert loss.shape == shape and loss.dtype == dtype and d.dtype == dtype
    np.testing.assert_allclose(loss, (pred - target) ** 2, **TOL[dtype])
    if dtype == np.float64 and shape:
        cycnn.gradcheck(lambda p: cycnn.mse_loss(p, target, reduction="none")[0], pred,
                        lambda dy, p: dy * cycnn.mse_loss(p, target, reduction="none")[1])


# --------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", [((4, 5), 1), ((3, 4, 2), 0), ((6,), -1), ((), 0)],
                         ids=str)
def test_softmax_backward_central_differences(which, shape, axis):
    forward = getattr(cycnn, which)
    backward = getattr(cycnn, f"{which}_backward")
    z = np.random.default_rng(4).standard_normal(shape)
    cycnn.gradcheck(lambda z: forward(z, axis), z, lambda dy, z: backward(dy, forward(z, axis),
                                                                           axis))


@pytest.mark.parametrize("which", ["softmax", "log_softmax"])
@DTYPES
def test_softmax_dtype_and_backward_match_pytorch(which, dtype):
    torch = torch_or_skip()
    z = np.random.default_rng(5).standard_normal((3, 4, 5)).astype(dtype)
    zt = torch.tensor(z, requires_grad=True)
    yt = getattr(torch, which)(zt, 1, dtype=torch.float64)
    y = getattr(cycnn, which)(z, 1, dtype=np.float64)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    dz = getattr(cycnn, f"{which}_backward")(dy, y, 1).astype(dtype)
    np.testing.assert_allclose(dz, zt.grad.numpy(), **TOL[dtype])


def test_softmax_dtype_narrows_too():
    assert cycnn.softmax(np.zeros(3), dtype=np.float32).dtype == np.float32


# --------------------------------------------------------------------------- dense

@pytest.mark.parametrize("xshape", [(3,), (2, 3, 3), (2, 1, 2, 3), (0, 3)], ids=str)
def test_dense_on_any_leading_axes(xshape):
    torch = torch_or_skip()
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal(xshape), rng.standard_normal((4, 3)), rng.standard_normal(4)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.linear(xt, wt, bt)
    y = cycnn.dense_forward(x, w, b)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.from_numpy(dy))
    for got, t in zip(cycnn.dense_backward(dy, x, w), (xt, wt, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_dense_extra_axes_central_differences():
    rng = np.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    cycnn.gradcheck(cycnn.dense_forward, [x, w, b],
                    lambda dy, x, w, b: cycnn.dense_backward(dy, x, w))


def test_dense_layer_without_bias():
    layer = cycnn.Dense(3, 2, bias=False, rng=0)
    assert set(layer.params) == {"weight"} and repr(layer) == "Dense(3, 2, bias=False)"
    y = layer.forward(np.ones((4, 3), np.float32))
    np.testing.assert_allclose(y, np.ones((4, 3)) @ layer.params["weight"].T, rtol=1e-6)
    layer.backward(np.ones_like(y))
    assert set(layer.grads) == {"weight"}
    assert cycnn.layers.layer_from_config(layer.config()).config() == layer.config()


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")], ids=repr)
def test_label_smoothing_outside_zero_one(value):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: label_smoothing must be a "
                                         r"finite number in \[0, 1\]"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=value)


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: reduction must be one of "
                                         r"\('mean', 'sum', 'none'\), got 'avg'"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg")


def test_weight_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: weight must have shape \(K,\) "
                                         r"= \(3,\) for logits.shape=\(2, 3, 4\), got "
                                         r"weight.shape=\(4,\)"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 4), int), weight=np.ones(4))


def test_ignore_index_is_an_integer():
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: ignore_index must be an "
                                        r"integer, got 1.0"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=1.0)


def test_spatial_labels_out_of_range():
    labels = np.zeros((2, 4), int)
    labels[1, 2] = 5
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, K\) = "
                                         r"\[0, 3\) \(or equal ignore_index=-100\) for "
                                         r"logits.shape=\(2, 3, 4\); got 5 at flat index 6"):
        softmax_cross_entropy(np.zeros((2, 3, 4)), labels)


def test_softmax_dtype_must_be_float():
    with pytest.raises(ValueError, match=r"softmax: dtype must be float32 or float64, got int64"):
        cycnn.softmax(np.zeros(3), dtype=np.int64)


def test_softmax_backward_shapes_must_agree():
    with pytest.raises(ValueError, match=r"softmax_backward: dy must have the shape of y; got "
                                         r"dy.shape=\(3,\), y.shape=\(2, 3\)"):
        cycnn.softmax_backward(np.zeros(3), np.zeros((2, 3)))


def test_mse_unknown_reduction_lists_none():
    with pytest.raises(ValueError, match=r"mse_loss: unknown reduction 'avg'; use one of "
                                         r"\('mean', 'sum', 'half_sum', 'none'\)"):
        cycnn.mse_loss([1.0], [1.0], reduction="avg")
