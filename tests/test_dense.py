"""Fully-connected layer: y = x w^T + b and its three gradients, against PyTorch."""

import sys

import numpy as np
import pytest

from conftest import DTYPES, torch_or_skip
from cycnn import dense_backward, dense_forward, gradcheck

TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def test_forward_is_x_times_w_transposed_plus_b():
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    w = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    b = np.array([0.5, -0.5])
    np.testing.assert_array_equal(dense_forward(x, w, b), [[1.5, 4.5], [0.5, -1.0]])
    np.testing.assert_array_equal(dense_forward(x, w), [[1.0, 5.0], [0.0, -0.5]])


def test_backward_index_by_index(rng):
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    dy = rng.standard_normal((4, 5))
    dx, dw, db = dense_backward(dy, x, w)
    for n in range(4):
        for d in range(3):
            assert np.isclose(dx[n, d], sum(dy[n, o] * w[o, d] for o in range(5)), rtol=1e-13)
    for o in range(5):
        for d in range(3):
            assert np.isclose(dw[o, d], sum(dy[n, o] * x[n, d] for n in range(4)), rtol=1e-13)
        assert np.isclose(db[o], dy[:, o].sum(), rtol=1e-13)


def test_gradcheck_x_w_b(rng):
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(3)
    gradcheck(dense_forward, (x, w, b), lambda dy, x, w, b: dense_backward(dy, x, w))


@DTYPES
def test_dtype_rule(rng, dtype):
    x = rng.standard_normal((2, 3)).astype(dtype)
    w = rng.standard_normal((4, 3)).astype(dtype)
    assert dense_forward(x, w).dtype == dtype
    assert all(g.dtype == dtype for g in dense_backward(np.ones((2, 4), dtype), x, w))
    assert dense_forward(x, w.astype(np.float64)).dtype == np.float64
    assert dense_forward(np.ones((2, 3), int), np.ones((4, 3), int)).dtype == np.float64


# --------------------------------------------------------------------------- PyTorch oracle

CASES = [tuple(int(v) for v in row) for row in
         np.random.default_rng(17).integers(1, 10, (25, 3))]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@DTYPES
@pytest.mark.parametrize("N,D_in,D_out", CASES, ids=lambda v: str(v))
def test_matches_torch_linear(N, D_in, D_out, dtype, bias):
    torch = torch_or_skip()
    rng = np.random.default_rng(N * 100 + D_in * 10 + D_out)
    x = rng.standard_normal((N, D_in)).astype(dtype)
    w = rng.standard_normal((D_out, D_in)).astype(dtype)
    b = rng.standard_normal(D_out).astype(dtype) if bias else None
    dy = rng.standard_normal((N, D_out)).astype(dtype)
    x_t, w_t = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, w))
    b_t = torch.from_numpy(b.copy()).requires_grad_(True) if bias else None
    y_t = torch.nn.functional.linear(x_t, w_t, b_t)
    y_t.backward(torch.from_numpy(dy))
    y = dense_forward(x, w, b)
    assert y.shape == tuple(y_t.shape) and y.dtype == dtype
    np.testing.assert_allclose(y, y_t.detach().numpy(), **TOL[dtype])
    dx, dw, db = dense_backward(dy, x, w)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, (D_out,))
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dw, w_t.grad.numpy(), **TOL[dtype])
    if bias:
        np.testing.assert_allclose(db, b_t.grad.numpy(), **TOL[dtype])


# --------------------------------------------------------------------------- bad input

def test_features_that_do_not_chain_are_refused():
    with pytest.raises(ValueError, match=r"dense_forward: x has D_in=4 features but w expects "
                                         r"D_in=3 \(x.shape=\(2, 4\), w.shape=\(5, 3\)"):
        dense_forward(np.ones((2, 4)), np.ones((5, 3)))


def test_x_must_be_at_least_1d():
    with pytest.raises(ValueError, match=r"dense_forward: x must be at least 1-D \(..., D_in\), "
                                         r"got a 0-d array"):
        dense_forward(np.float64(1.0), np.ones((5, 1)))


def test_extra_axes_must_still_end_in_d_in():
    with pytest.raises(ValueError, match=r"dense_forward: x has D_in=4 features but w expects "
                                         r"D_in=12 \(x.shape=\(2, 3, 4\)"):
        dense_forward(np.ones((2, 3, 4)), np.ones((5, 12)))


def test_w_must_be_2d():
    with pytest.raises(ValueError, match=r"dense_backward: w must be 2-D \(D_out, D_in\)"):
        dense_backward(np.ones((2, 5)), np.ones((2, 3)), np.ones(3))


def test_bias_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match=r"dense_forward: b must have shape \(D_out,\) = \(5,\)"
                                         r" .* got b.shape=\(4,\)"):
        dense_forward(np.ones((2, 3)), np.ones((5, 3)), np.ones(4))


def test_dy_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"dense_backward: dy must have the forward output's "
                                         r"shape \(N, D_out\) = \(2, 5\) .* got dy.shape=\(5, 2\)"):
        dense_backward(np.ones((5, 2)), np.ones((2, 3)), np.ones((5, 3)))


def test_backward_features_that_do_not_chain_are_refused():
    with pytest.raises(ValueError, match=r"dense_backward: x has D_in=3 features but w expects "
                                         r"D_in=2"):
        dense_backward(np.ones((2, 5)), np.ones((2, 3)), np.ones((5, 2)))


def test_non_numeric_weights_are_a_type_error():
    with pytest.raises(TypeError, match=r"dense_forward: w must hold real numbers"):
        dense_forward(np.ones((2, 3)), np.full((5, 3), "w"))


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(sys.modules["cycnn.dense"], extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
