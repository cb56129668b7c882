"""Softmax cross-entropy and MSE: values, gradients, stability, bad labels, PyTorch."""

import sys

import numpy as np
import pytest

from conftest import DTYPES, torch_or_skip
from cycnn import gradcheck, mse_loss, softmax, softmax_cross_entropy

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


# --------------------------------------------------------------------------- cross-entropy

def test_uniform_logits_give_log_k():
    loss, dlogits = softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 3]))
    assert isinstance(loss, float)
    assert round(loss, 12) == round(np.log(4), 12)
    assert dlogits.shape == (3, 4)


def test_gradient_is_softmax_minus_onehot_over_n(rng):
    z = rng.standard_normal((5, 3))
    labels = np.array([2, 0, 1, 1, 2])
    _, dlogits = softmax_cross_entropy(z, labels)
    np.testing.assert_allclose(dlogits, (softmax(z) - np.eye(3)[labels]) / 5, rtol=1e-13)


def test_integer_labels_and_their_one_hot_rows_agree(rng):
    z = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    loss_i, d_i = softmax_cross_entropy(z, labels)
    loss_p, d_p = softmax_cross_entropy(z, np.eye(4)[labels])
    assert loss_i == pytest.approx(loss_p, rel=1e-14)
    np.testing.assert_allclose(d_i, d_p, rtol=1e-14)


def test_huge_logits_give_a_finite_loss_and_no_nan():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    loss, dlogits = softmax_cross_entropy(z, np.array([1, 0]))
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-12)


@pytest.mark.parametrize("target", ["int", "prob"])
def test_cross_entropy_gradcheck(rng, target):
    z = rng.standard_normal((4, 5))
    labels = (rng.integers(0, 5, 4) if target == "int"
              else rng.dirichlet(np.ones(5), 4))
    gradcheck(lambda v: softmax_cross_entropy(v, labels)[0], z,
              lambda dy, v: dy * softmax_cross_entropy(v, labels)[1])


def test_unnormalised_target_rows_still_get_the_exact_gradient(rng):
    z, t = rng.standard_normal((3, 4)), rng.uniform(0, 2, (3, 4))
    gradcheck(lambda v: softmax_cross_entropy(v, t)[0], z,
              lambda dy, v: dy * softmax_cross_entropy(v, t)[1])


@DTYPES
def test_cross_entropy_dtype_follows_logits(rng, dtype):
    z = rng.standard_normal((3, 4)).astype(dtype)
    _, d = softmax_cross_entropy(z, np.array([0, 1, 2], np.int8))
    assert d.dtype == dtype
    _, d = softmax_cross_entropy(z, np.eye(4)[:3])
    assert d.dtype == dtype


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in \[0, K\) "
                                         r"= \[0, 3\) \(or equal ignore_index=-100\) for "
                                         r"logits.shape=\(2, 3\); got 3 at flat index 1"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_negative_labels_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must lie in .* got -1"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([-1, 0]))


def test_labels_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be class indices "
                                         r"of shape \(2,\) .* got labels.shape=\(3,\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_float_labels_as_a_vector_are_a_type_error():
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: labels of shape \(2,\) \(the "
                                        r"logits' shape without the class axis\) must be "
                                        r"integer class indices, got dtype float64"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_boolean_labels_are_a_type_error():
    with pytest.raises(TypeError, match=r"softmax_cross_entropy: labels .* got dtype bool"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([True, False]))


def test_0d_logits_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits is empty or 0-d "
                                         r"\(logits.shape=\(\)\)"):
        softmax_cross_entropy(np.float64(1.0), np.array(0))


def test_unbatched_logits_need_a_0d_label():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be class indices "
                                         r"of shape \(\) .* got labels.shape=\(1,\)"):
        softmax_cross_entropy(np.zeros(3), np.array([0]))


def test_probability_targets_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be class indices "
                                         r"of shape \(2,\) \(the logits' shape without the "
                                         r"class axis\) or distributions of the logits' shape "
                                         r"\(2, 3\); got labels.shape=\(2, 4\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 4)))


def test_three_dimensional_labels_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: labels must be class indices "
                                         r".* got labels.shape=\(2, 3, 1\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros((2, 3, 1)))


def test_empty_logits_are_refused():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits is empty"):
        softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, int))


# --------------------------------------------------------------------------- MSE

def test_half_sum_is_the_seed_convention(rng):
    y, t = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    loss, dpred = mse_loss(y, t, reduction="half_sum")
    assert loss == pytest.approx(0.5 * np.sum((t - y) ** 2), rel=1e-14)
    np.testing.assert_allclose(dpred, y - t, rtol=1e-15)


def test_mean_is_the_default_and_pytorchs_convention(rng):
    y, t = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    loss, dpred = mse_loss(y, t)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean((y - t) ** 2), rel=1e-14)
    np.testing.assert_allclose(dpred, 2 * (y - t) / 20, rtol=1e-14)


def test_sum_reduction(rng):
    y, t = rng.standard_normal(7), rng.standard_normal(7)
    loss, dpred = mse_loss(y, t, reduction="sum")
    assert loss == pytest.approx(np.sum((y - t) ** 2), rel=1e-14)
    np.testing.assert_allclose(dpred, 2 * (y - t), rtol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "half_sum"])
def test_mse_gradcheck(rng, reduction):
    y, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gradcheck(lambda v: mse_loss(v, t, reduction)[0], y,
              lambda dy, v: dy * mse_loss(v, t, reduction)[1])


@DTYPES
def test_mse_dtype(rng, dtype):
    y = rng.standard_normal(4).astype(dtype)
    assert mse_loss(y, y.copy())[1].dtype == dtype
    assert mse_loss(3.0, 1.0) == (4.0, 4.0)


def test_mse_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"mse_loss: pred and target must have the same shape; "
                                         r"got pred.shape=\(2, 3\), target.shape=\(3, 2\)"):
        mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))


def test_mse_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match=r"mse_loss: unknown reduction 'avg'"):
        mse_loss(np.zeros(2), np.zeros(2), reduction="avg")


def test_mse_empty_is_refused():
    with pytest.raises(ValueError, match=r"mse_loss: pred is empty"):
        mse_loss(np.zeros(0), np.zeros(0))


# --------------------------------------------------------------------------- PyTorch oracle

CASES = [(int(n), int(k)) for n, k in np.random.default_rng(23).integers(1, 12, (25, 2))]


@pytest.mark.parametrize("target", ["int", "prob"])
@DTYPES
@pytest.mark.parametrize("N,K", CASES, ids=lambda v: str(v))
def test_cross_entropy_matches_pytorch(N, K, dtype, target):
    torch = torch_or_skip()
    rng = np.random.default_rng(N * 50 + K)
    z = (rng.standard_normal((N, K)) * 3).astype(dtype)
    labels = (rng.integers(0, K, N) if target == "int"
              else rng.dirichlet(np.ones(K), N).astype(dtype))
    z_t = torch.from_numpy(z.copy()).requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(z_t, torch.from_numpy(labels))
    loss_t.backward()
    loss, dlogits = softmax_cross_entropy(z, labels)
    assert dlogits.shape == tuple(z_t.grad.shape) and dlogits.dtype == dtype
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[dtype])
    np.testing.assert_allclose(dlogits, z_t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@DTYPES
@pytest.mark.parametrize("N,K", CASES, ids=lambda v: str(v))
def test_mse_matches_pytorch(N, K, dtype, reduction):
    torch = torch_or_skip()
    rng = np.random.default_rng(N * 50 + K + 1)
    y, t = (rng.standard_normal((N, K)).astype(dtype) for _ in range(2))
    y_t = torch.from_numpy(y.copy()).requires_grad_(True)
    loss_t = torch.nn.functional.mse_loss(y_t, torch.from_numpy(t), reduction=reduction)
    loss_t.backward()
    loss, dpred = mse_loss(y, t, reduction=reduction)
    assert dpred.shape == tuple(y_t.grad.shape) and dpred.dtype == dtype
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[dtype])
    np.testing.assert_allclose(dpred, y_t.grad.numpy(), **TOL[dtype])


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(sys.modules["cycnn.losses"], extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
