"""ReLU, softmax and log-softmax: values, the derivative at 0, stability, PyTorch."""

import sys

import numpy as np
import pytest

from conftest import DTYPES, torch_or_skip
from cycnn import gradcheck, log_softmax, relu_backward, relu_forward, softmax

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def away_from_zero(rng, shape):
    """Normal values pushed at least 1e-3 from the ReLU kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-3, 0.5, x)


# --------------------------------------------------------------------------- ReLU

def test_relu_forward_values():
    np.testing.assert_array_equal(relu_forward([-3.0, -0.0, 0.0, 2.5]), [0, 0, 0, 2.5])


def test_relu_derivative_at_exactly_zero_is_zero(rng):
    x = np.array([-1.0, 0.0, 1.0])
    dy = np.array([4.0, 5.0, 6.0])
    np.testing.assert_array_equal(relu_backward(dy, x), [0.0, 0.0, 6.0])


def test_relu_backward_blocks_inf_without_nan():
    dx = relu_backward([np.inf, np.inf], [-1.0, 1.0])
    np.testing.assert_array_equal(dx, [0.0, np.inf])


def test_relu_nan_stays_nan_forward_and_gets_no_gradient():
    assert np.isnan(relu_forward([np.nan]))[0]
    np.testing.assert_array_equal(relu_backward([1.0], [np.nan]), [0.0])


@DTYPES
def test_relu_dtype_follows_input(rng, dtype):
    x = rng.standard_normal((3, 4)).astype(dtype)
    assert relu_forward(x).dtype == dtype
    assert relu_backward(x, x).dtype == dtype
    assert relu_forward(np.arange(3)).dtype == np.float64


def test_relu_gradcheck(rng):
    gradcheck(relu_forward, away_from_zero(rng, (4, 3, 5)), relu_backward)


@DTYPES
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_relu_loops_are_the_rule_on_every_length_and_thread_count(rng, dtype, threads):
    """The compiled loops (cycnn/_act.pyx), called directly so that short arrays are split
    across threads too: every block boundary, every length up to a few vectors, and the
    special values, against NumPy's spelling of the rule."""
    from cycnn import activations

    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30], dtype)
    for n in list(range(0, 70)) + [1000, 4099]:
        x = rng.standard_normal(n).astype(dtype)
        dy = rng.standard_normal(n).astype(dtype)
        x[: min(n, 7)] = special[: min(n, 7)]
        dy[-min(n, 7):] = special[: min(n, 7)] if n else dy[:0]
        dx = np.full(n, 7.0, dtype)  # anything the loop fails to write shows
        activations._act.relu(x, dy, dx, True, threads)
        np.testing.assert_array_equal(dx, np.where(x > 0, dy, 0))
        y = np.full(n, 7.0, dtype)
        activations._act.relu(x, x, y, False, threads)
        np.testing.assert_array_equal(y, np.maximum(x, 0))  # NaN stays NaN


@pytest.mark.parametrize("order", ["C", "F"])
def test_relu_backward_takes_any_layout_and_shape(rng, order):
    x = np.asarray(rng.standard_normal((3, 4, 5)), order=order)[:, ::2]
    dy = np.asarray(rng.standard_normal((3, 4, 5)), order=order)[:, ::2]
    np.testing.assert_array_equal(relu_backward(dy, x), np.where(x > 0, dy, 0))
    np.testing.assert_array_equal(relu_forward(x), np.maximum(x, 0))
    assert relu_backward(np.float64(2.0), np.float64(1.0)) == 2.0  # 0-d
    assert relu_forward(np.float64(-2.0)) == 0.0 and relu_forward(3).shape == ()


def test_relu_backward_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"relu_backward: dy must have the shape of x; got "
                                         r"dy.shape=\(3,\), x.shape=\(4,\)"):
        relu_backward(np.ones(3), np.ones(4))


def test_relu_non_numeric_is_a_type_error():
    with pytest.raises(TypeError, match=r"relu_forward: x must hold real numbers"):
        relu_forward(["a", "b"])


# --------------------------------------------------------------------------- softmax

def softmax_backward(dy, z):
    """Jacobian-vector product of softmax along the last axis: s * (dy - sum(dy * s))."""
    s = softmax(z)
    return s * (dy - np.sum(dy * s, axis=-1, keepdims=True))


def log_softmax_backward(dy, z):
    """Jacobian-vector product of log-softmax: dy - softmax(z) * sum(dy)."""
    return dy - softmax(z) * np.sum(dy, axis=-1, keepdims=True)


def test_softmax_rows_sum_to_one(rng):
    s = softmax(rng.standard_normal((5, 7)) * 10)
    np.testing.assert_allclose(s.sum(axis=1), 1, rtol=1e-14)
    assert (s >= 0).all()


def test_softmax_of_huge_logits_neither_overflows_nor_gives_nan():
    z = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s = softmax(z)
        ls = log_softmax(z)
    np.testing.assert_allclose(s, [[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3], rtol=1e-15)
    np.testing.assert_allclose(ls, [[0, -1e4, -2e4], [-np.log(3)] * 3, [-np.log(3)] * 3],
                               rtol=1e-15)
    assert np.isfinite(s).all() and np.isfinite(ls).all()


def test_softmax_float32_huge_logits_stay_finite():
    s = softmax(np.array([[1e4, -1e4]], np.float32))
    assert s.dtype == np.float32 and np.isfinite(s).all()
    np.testing.assert_array_equal(s, [[1, 0]])


def test_softmax_axis(rng):
    z = rng.standard_normal((3, 4))
    np.testing.assert_allclose(softmax(z, axis=0), softmax(z.T).T, rtol=1e-14)
    np.testing.assert_allclose(log_softmax(z, axis=0), log_softmax(z.T).T, rtol=1e-14)


def test_log_softmax_is_log_of_softmax(rng):
    z = rng.standard_normal((6, 5)) * 3
    np.testing.assert_allclose(log_softmax(z), np.log(softmax(z)), rtol=1e-13)


def test_softmax_gradcheck(rng):
    gradcheck(softmax, rng.standard_normal((4, 6)), softmax_backward)


def test_log_softmax_gradcheck(rng):
    gradcheck(log_softmax, rng.standard_normal((4, 6)), log_softmax_backward)


def test_softmax_axis_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"softmax: axis=2 is out of range for z.shape=\(2, 3\)"):
        softmax(np.zeros((2, 3)), axis=2)


def test_softmax_of_a_scalar_is_one_entry():
    """PyTorch reads a 0-d tensor as a single score: softmax 1, log_softmax 0."""
    assert softmax(2.5).shape == () and float(softmax(2.5)) == 1.0
    assert float(log_softmax(np.float32(-7.0), axis=0)) == 0.0
    with pytest.raises(ValueError, match=r"log_softmax: axis=1 is out of range for z.shape=\(\)"):
        log_softmax(1.0, axis=1)


def test_softmax_of_an_empty_class_axis_is_empty():
    out = softmax(np.zeros((3, 0), np.float32))
    assert out.shape == (3, 0) and out.dtype == np.float32
    assert log_softmax(np.zeros((5, 0, 0)), axis=-1).shape == (5, 0, 0)


# --------------------------------------------------------------------------- PyTorch oracle

SHAPES = [(int(a), int(b)) for a, b in np.random.default_rng(11).integers(1, 12, (25, 2))]


@DTYPES
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_relu_and_softmax_match_pytorch(shape, dtype):
    torch = torch_or_skip()
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    z_t = torch.from_numpy(z.copy()).requires_grad_(True)
    y_t = torch.relu(z_t)
    y_t.backward(torch.from_numpy(dy))
    y = relu_forward(z)
    assert y.shape == tuple(y_t.shape)
    np.testing.assert_array_equal(y, y_t.detach().numpy())
    np.testing.assert_array_equal(relu_backward(dy, z), z_t.grad.numpy())
    for ours, theirs in [(softmax, torch.softmax), (log_softmax, torch.log_softmax)]:
        out = ours(z)
        assert out.shape == shape and out.dtype == dtype
        np.testing.assert_allclose(out, theirs(torch.from_numpy(z), dim=-1).numpy(),
                                   **TOL[dtype])


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(sys.modules["cycnn.activations"], extraglobs={"np": np})
    assert result.failed == 0 and result.attempted > 0
