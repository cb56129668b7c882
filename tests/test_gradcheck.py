"""The gradient-check utility itself: its numbers, and that it catches wrong gradients."""

import sys

import numpy as np
import pytest

import cycnn
from cycnn import (
    GradcheckError,
    conv2d_backward,
    conv2d_forward,
    dense_backward,
    dense_forward,
    gradcheck,
    numerical_gradient,
    relative_error,
    relu_backward,
    relu_forward,
)


def test_numerical_gradient_equals_a_hand_written_central_difference(rng):
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal((2, 4))
    dy = rng.standard_normal((3, 2))

    def f(v):
        return np.tanh(v @ w.T)

    eps = 1e-6
    expected = np.empty_like(x)
    for r in range(3):
        for c in range(4):
            up, down = x.copy(), x.copy()
            up[r, c] += eps
            down[r, c] -= eps
            expected[r, c] = (np.sum(dy * f(up)) - np.sum(dy * f(down))) / (2 * eps)
    np.testing.assert_allclose(numerical_gradient(f, x, dy=dy, eps=eps), expected,
                               rtol=1e-7, atol=1e-9)


def test_numerical_gradient_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    g = numerical_gradient(lambda v: np.sum(np.sin(v) * v), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-8, atol=1e-9)


def test_numerical_gradient_leaves_the_callers_array_alone(rng):
    x = rng.standard_normal(5)
    before = x.copy()
    numerical_gradient(lambda v: np.sum(v ** 2), x)
    np.testing.assert_array_equal(x, before)


def test_gradcheck_passes_a_correct_layer_and_reports_tiny_errors(rng):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    result = gradcheck(dense_forward, (x, w, b), lambda dy, x, w, b: dense_backward(dy, x, w))
    assert result.ok and result.max_error < 1e-8 and len(result.errors) == 3
    assert [a.shape for a in result.analytic] == [x.shape, w.shape, b.shape]


def test_gradcheck_catches_a_doubled_gradient(rng):
    x = rng.standard_normal((3, 4)) + np.sign(rng.standard_normal((3, 4)))
    wrong = lambda dy, v: 2 * relu_backward(dy, v)  # noqa: E731
    with pytest.raises(GradcheckError, match=r"gradcheck: gradient of input 0 \(shape \(3, 4\)\) "
                                             r"is wrong: relative error"):
        gradcheck(relu_forward, x, wrong)


def test_gradcheck_catches_a_relu_gradient_that_passes_negative_inputs(rng):
    x = np.array([[-1.0, 2.0], [0.5, -3.0]])
    wrong = lambda dy, v: dy  # noqa: E731  (forgot the mask)
    result = gradcheck(relu_forward, x, wrong, raise_exception=False)
    assert not result.ok and result.max_error == pytest.approx(1.0)


def test_gradcheck_catches_a_transposed_weight_gradient(rng):
    x, w = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    wrong = lambda dy, x, w: (dy @ w, x.T @ dy)  # noqa: E731  (should be dy.T @ x)
    with pytest.raises(GradcheckError, match=r"gradient of input 1"):
        gradcheck(dense_forward, (x, w), wrong)


def test_gradcheck_catches_a_conv_gradient_with_an_unflipped_kernel(rng):
    x, w = rng.standard_normal((1, 1, 5, 5)), rng.standard_normal((1, 1, 3, 3))

    def wrong(dy, x, w):  # dx computed with the kernel rotated: a classic slip
        dx, dw, _ = conv2d_backward(dy, x, w[..., ::-1, ::-1].copy())
        return dx, dw

    result = gradcheck(conv2d_forward, (x, w), wrong, raise_exception=False)
    assert not result.ok and result.errors[1] < 1e-8 and result.errors[0] > 1e-2


def test_gradcheck_proves_conv2d_backward_with_stride_and_padding(rng):
    x, w, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), \
        rng.standard_normal(3)
    gradcheck(lambda x, w, b: conv2d_forward(x, w, b, stride=2, padding=1), (x, w, b),
              lambda dy, x, w, b: conv2d_backward(dy, x, w, stride=2, padding=1))


def test_wrt_selects_the_inputs_checked(rng):
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    result = gradcheck(dense_forward, (x, w), lambda dy, x, w: dense_backward(dy, x, w)[1],
                       wrt=[1])
    assert result.ok and len(result.numerical) == 1


def test_scalar_output_is_checked_with_a_random_dy():
    result = gradcheck(lambda v: float(np.sum(v ** 2)), np.array([1.0, -2.0]),
                       lambda dy, v: dy * 2 * v)
    assert result.ok


def test_backward_returning_the_wrong_number_of_gradients_is_refused(rng):
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"gradcheck: backward must return 2 gradient\(s\)"):
        gradcheck(dense_forward, (x, w), lambda dy, x, w: dense_backward(dy, x, w))


def test_backward_returning_the_wrong_shape_is_refused(rng):
    with pytest.raises(ValueError, match=r"gradcheck: backward's gradient for input 0 has shape "
                                         r"\(4, 3\), but the input has shape \(3, 4\)"):
        gradcheck(relu_forward, rng.standard_normal((3, 4)), lambda dy, v: dy.T)


def test_array_output_without_dy_is_refused():
    with pytest.raises(ValueError, match=r"numerical_gradient: f returned an array of shape "
                                         r"\(2,\); pass dy"):
        numerical_gradient(lambda v: v * 2, np.ones(2))


def test_nonpositive_eps_is_refused():
    with pytest.raises(ValueError, match=r"numerical_gradient: eps must be > 0"):
        numerical_gradient(np.sum, np.ones(2), eps=0)


def test_relative_error_definition():
    np.testing.assert_array_equal(relative_error([0.0, 2.0, 1.0], [0.0, 1.0, -1.0]),
                                  [0.0, 1 / 3, 1.0])
    assert relative_error(1e-13, 0.0, tiny=1e-12) == pytest.approx(0.1)


def test_docstring_examples_run():
    import doctest

    for name in ["cycnn.gradcheck"]:
        result = doctest.testmod(sys.modules[name], extraglobs={"np": np, "cycnn": cycnn})
        assert result.failed == 0 and result.attempted > 0
