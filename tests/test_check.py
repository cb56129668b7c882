"""cycnn.check: the checkers pass right implementations and diagnose planted mistakes.

Each learner-style implementation below is written the way a learner would write it
(loops over the indices of the docs' equations, plain NumPy) and takes switches that
plant one known mistake. For every mistake the test asserts three things:

* the checker fails on the first case of its ladder where the planted implementation's
  outputs differ from cycnn's (found here independently, by calling the implementation
  on each case and comparing with np.allclose), and that case is the one named in the
  table (the smallest case that can expose the mistake);
* the diagnosis is the one for that mistake;
* the right implementation (all switches off) passes every case, so the switch alone
  causes the failure.

cycnn's own functions and the NumPy reference pass every checker, and no learner
function, however broken, makes a checker raise.
"""

from __future__ import annotations

import doctest
import functools
import re
import subprocess
import sys

import numpy as np
import pytest

import cycnn
from cycnn import check

# --------------------------------------------------------------------------- learners


def _pads(padding):
    """((pt, pb), (pl, pr)) from an int, (ph, pw) or ((pt, pb), (pl, pr))."""
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    if isinstance(padding[0], int):
        return (padding[0], padding[0]), (padding[1], padding[1])
    return tuple(padding[0]), tuple(padding[1])


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_forward(x, w, b, stride=1, padding=0, *, plus_one=True, ceil=False, flip=False,
                 bias=True, sum_c=True, w_cf=False, w_qp=False, use_stride=True, pad=True):
    sh, sw = _pair(stride)
    (pt, pb), (pl, pr) = _pads(padding) if pad else ((0, 0), (0, 0))
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    if ceil:
        OH, OW = -(-(H + pt + pb - KH) // sh) + 1, -(-(W + pl + pr - KW) // sw) + 1
    else:
        OH, OW = (H + pt + pb - KH) // sh + 1, (W + pl + pr - KW) // sw + 1
    if not plus_one:
        OH, OW = OH - 1, OW - 1
    if flip:
        w = w[:, :, ::-1, ::-1]
    if w_cf:
        w = w.transpose(1, 0, 2, 3)  # reading w[c, f]: works here only when C == F
    if w_qp:
        w = w.transpose(0, 1, 3, 2)
    y = np.zeros((N, F, OH, OW), x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    r, c = (i * sh, j * sw) if use_stride else (i, j)
                    window = xp[n, :, r:r + KH, c:c + KW]
                    if window.shape != w[f].shape:  # a window sticking out (with ceil)
                        continue
                    if sum_c:
                        y[n, f, i, j] = np.sum(window * w[f])
                    else:
                        for ch in range(C):  # the sum over channels overwritten
                            y[n, f, i, j] = np.sum(window[ch] * w[f, ch])
                    if bias:
                        y[n, f, i, j] += b[f]
    return y


def conv_backward(dy, x, w, stride=1, padding=0, *, rotate=True, dilate=True, crop=True,
                  crop_corner=False, sum_n=True, average=False, dw_rotated=False,
                  dw_cf=False, db_shape=None):
    """Scatter form: every dy[n, f, i, j] is sent back to the window it came from."""
    sh, sw = _pair(stride)
    (pt, pb), (pl, pr) = _pads(padding)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, OH, OW = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(F, dy.dtype)
    # the filter as the scatter needs it; a learner who forgets the rotation in the
    # route "full correlation with rot180(w)" gets the same as scattering the rotated w
    wk = w if rotate else w[:, :, ::-1, ::-1]
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    r, c = (i * sh, j * sw) if dilate else (i, j)
                    g = dy[n, f, i, j]
                    dxp[n, :, r:r + KH, c:c + KW] += wk[f] * g
                    if sum_n or n == N - 1:
                        dw[f] += xp[n, :, r:r + KH, c:c + KW] * g
                        db[f] += g
    if average:
        dw, db = dw / N, db / N
    if dw_rotated:
        dw = dw[:, :, ::-1, ::-1]
    if dw_cf:
        dw = dw.transpose(1, 0, 2, 3)
    if db_shape == "per_sample":
        db = dy.sum(axis=(2, 3))
    if db_shape == "per_position":
        db = dy.sum(axis=0)
    if not crop:
        return dxp, dw, db
    if crop_corner:
        return dxp[:, :, :H, :W], dw, db
    return dxp[:, :, pt:pt + H, pl:pl + W], dw, db


def conv_backward_route(dy, x, w, stride=1, padding=0, *, extra=True, sum_f=True):
    """Route form: dilate dy, pad it, correlate with the rotated filter, crop."""
    sh, sw = _pair(stride)
    (pt, pb), (pl, pr) = _pads(padding)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, OH, OW = dy.shape
    HP, WP = H + pt + pb, W + pl + pr
    dyd = np.zeros((N, F, (OH - 1) * sh + 1, (OW - 1) * sw + 1), dy.dtype)
    dyd[:, :, ::sh, ::sw] = dy
    e_h = HP - ((OH - 1) * sh + KH) if extra else 0
    e_w = WP - ((OW - 1) * sw + KW) if extra else 0
    full = np.pad(dyd, ((0, 0), (0, 0), (KH - 1, KH - 1 + e_h), (KW - 1, KW - 1 + e_w)))
    wr = w[:, :, ::-1, ::-1]
    rows, cols = full.shape[2] - KH + 1, full.shape[3] - KW + 1
    dxp = np.zeros((N, C, rows, cols), dy.dtype)
    for n in range(N):
        for f in range(F):
            for c in range(C):
                plane = np.zeros((rows, cols), dy.dtype)
                for u in range(rows):
                    for v in range(cols):
                        plane[u, v] = np.sum(full[n, f, u:u + KH, v:v + KW] * wr[f, c])
                if sum_f:
                    dxp[n, c] += plane
                else:
                    dxp[n, c] = plane  # the sum over filters overwritten
    dx = dxp[:, :, pt:pt + H, pl:pl + W]
    _, dw, db = cycnn.conv2d_backward(dy, x, w, stride, padding)  # not under test here
    return dx, dw, db


def max_forward(x, size, stride, *, plus_one=True, ceil=False):
    KH, KW = _pair(size)
    sh, sw = _pair(stride)
    N, C, H, W = x.shape
    if ceil:
        OH, OW = -(-(H - KH) // sh) + 1, -(-(W - KW) // sw) + 1
    else:
        OH, OW = (H - KH) // sh + 1, (W - KW) // sw + 1
    if not plus_one:
        OH, OW = OH - 1, OW - 1
    y = np.zeros((N, C, OH, OW), x.dtype)
    for i in range(OH):
        for j in range(OW):
            window = x[:, :, i * sh:i * sh + KH, j * sw:j * sw + KW]
            if window.size:
                y[:, :, i, j] = window.reshape(N, C, -1).max(axis=2)
    return y, (x, (KH, KW), (sh, sw))


def max_backward(dy, cache, *, ties="first", accumulate=True, whole_window=False,
                 times_dy=True):
    x, (KH, KW), (sh, sw) = cache
    N, C, OH, OW = dy.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    if whole_window:
                        mask = np.ones(window.shape, bool)
                    elif ties == "all":
                        mask = window == window.max()
                    else:
                        k = np.argmax(window) if ties == "first" else \
                            window.size - 1 - np.argmax(window.ravel()[::-1])
                        mask = np.zeros(window.shape, bool)
                        mask.flat[k] = True
                    g = dy[n, c, i, j] if times_dy else 1.0
                    target = dx[n, c, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    if accumulate:
                        target += mask * g
                    else:
                        target[mask] = g
    return dx


def avg_backward(dy, cache, *, divide=True, accumulate=True):
    N, C, H, W = cache.x_shape
    KH, KW = cache.size
    sh, sw = cache.stride
    dx = np.zeros(cache.x_shape, dy.dtype)
    _, _, OH, OW = dy.shape
    for i in range(OH):
        for j in range(OW):
            share = dy[:, :, i, j] / (KH * KW) if divide else dy[:, :, i, j]
            target = dx[:, :, i * sh:i * sh + KH, j * sw:j * sw + KW]
            if accumulate:
                target += share[:, :, None, None]
            else:
                target[...] = share[:, :, None, None]
    return dx


def relu_back(dy, x, *, at_zero=False, mask_from_dy=False, times_dy=True, blocks=True):
    if not blocks:
        return dy.copy()
    mask = (dy > 0) if mask_from_dy else (x >= 0) if at_zero else (x > 0)
    return dy * mask if times_dy else mask.astype(dy.dtype)


def dense_back(dy, x, w, *, w_t_in_dx=False, dw_t=False, db_not_summed=False, average=False,
               last_only=False):
    N = x.shape[0]
    dx = dy @ w.T if w_t_in_dx else dy @ w
    dw = x.T @ dy if dw_t else dy.T @ x
    db = dy.copy() if db_not_summed else dy.sum(axis=0)
    if last_only:
        dw, db = np.outer(dy[-1], x[-1]), dy[-1].copy()
    if average:
        dw, db = dw / N, db / N
    return dx, dw, db


def softmax_ce(logits, labels, *, stable=True, average_grad=True, average_loss=True,
               subtract_y=True, sign=1.0):
    N, K = logits.shape
    z = logits - logits.max(axis=1, keepdims=True) if stable else logits
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(N), labels] = 1
    logp = z - np.log(e.sum(axis=1, keepdims=True))
    loss = -np.sum(logp[np.arange(N), labels])
    loss = loss / N if average_loss else loss
    d = sign * (p - onehot) if subtract_y else p
    return float(loss), (d / N if average_grad else d).astype(logits.dtype)


def net_backward(model, dy, *, skip_relu=False, skip_first=False, update=False,
                 give_back=True):
    layers = model.layers[1:] if skip_first else model.layers
    for layer in reversed(layers):
        if skip_relu and isinstance(layer, cycnn.ReLU):
            continue
        dy = layer.backward(dy)
        if update:
            for k in layer.params:
                layer.params[k] -= 0.1 * layer.grads[k]
    return dy if give_back else None


# --------------------------------------------------------------------------- helpers

CHECKERS = {
    "conv2d_forward": lambda f: check.conv2d_forward(f),
    "conv2d_backward": lambda f: check.conv2d_backward(f),
    "max_pool2d": lambda pair: check.max_pool2d(*pair),
    "avg_pool2d_backward": lambda f: check.avg_pool2d_backward(f),
    "relu_backward": lambda f: check.relu_backward(f),
    "dense_backward": lambda f: check.dense_backward(f),
    "softmax_cross_entropy": lambda f: check.softmax_cross_entropy(f),
    "network_backward": lambda f: check.network_backward(f),
}


def _fns(name, learner):
    if name == "max_pool2d":
        return learner
    return (learner,)


def first_differing_case(name, learner):
    """1-based number of the first case whose outputs differ from cycnn's, found by
    calling the learner directly and comparing with np.allclose (not the checker's
    comparison)."""
    ladder = check._ladder(name)
    runs = [(build, dt) for dt in (np.float64, np.float32) for _, build in ladder]
    for number, (build, dt) in enumerate(runs, 1):
        case = build(np.dtype(dt))
        args = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.args.items()}
        got, _ = case.call(_fns(name, learner), args)
        for k, want in case.expected.items():
            have = np.asarray(got[k], dtype=np.float64)
            want = np.asarray(want, dtype=np.float64)
            if have.shape != want.shape or not np.allclose(have, want, rtol=1e-5, atol=1e-5):
                return number
    return None


P = functools.partial

#: (checker, planted implementation, case number that first exposes it, mistake key)
PLANTED = [
    ("conv2d_forward", P(conv_forward, plus_one=False), 1, "output_size_off_by_one"),
    ("conv2d_forward", P(conv_forward, ceil=True), 6, "output_size_off_by_one"),
    ("conv2d_forward", P(conv_forward, flip=True), 1, "true_convolution"),
    ("conv2d_forward", P(conv_forward, bias=False), 1, "bias_missing"),
    ("conv2d_forward", P(conv_forward, sum_c=False), 2, "channel_sum_missing"),
    ("conv2d_forward", P(conv_forward, w_cf=True), 2, "weight_layout"),
    ("conv2d_forward", P(conv_forward, w_qp=True), 1, "weight_layout"),
    ("conv2d_forward", P(conv_forward, use_stride=False), 4, "stride_ignored"),
    ("conv2d_forward", P(conv_forward, pad=False), 5, "padding_ignored"),
    ("conv2d_backward", P(conv_backward, rotate=False), 1, "filter_not_rotated"),
    ("conv2d_backward", P(conv_backward, dilate=False), 4, "dy_not_dilated"),
    ("conv2d_backward", P(conv_backward, crop=False), 5, "padding_not_cropped"),
    ("conv2d_backward", P(conv_backward, crop_corner=True), 5, "padding_not_cropped"),
    ("conv2d_backward", P(conv_backward_route, extra=False), 6, "unreached_rows_dropped"),
    ("conv2d_backward", P(conv_backward_route, sum_f=False), 2, "filter_sum_missing"),
    ("conv2d_backward", P(conv_backward, sum_n=False), 3, "batch_sum_missing"),
    ("conv2d_backward", P(conv_backward, average=True), 3, "batch_averaged"),
    ("conv2d_backward", P(conv_backward, db_shape="per_sample"), 1, "batch_sum_missing"),
    ("conv2d_backward", P(conv_backward, db_shape="per_position"), 1, "position_sum_missing"),
    ("conv2d_backward", P(conv_backward, dw_rotated=True), 1, "dw_rotated"),
    ("conv2d_backward", P(conv_backward, dw_cf=True), 2, "weight_layout"),
    ("max_pool2d", (P(max_forward, plus_one=False), max_backward), 1, "output_size_off_by_one"),
    ("max_pool2d", (P(max_forward, ceil=True), max_backward), 5, "output_size_off_by_one"),
    ("max_pool2d", (max_forward, P(max_backward, ties="all")), 2, "ties_all"),
    ("max_pool2d", (max_forward, P(max_backward, ties="last")), 2, "ties_last"),
    ("max_pool2d", (max_forward, P(max_backward, whole_window=True)), 1, "whole_window"),
    ("max_pool2d", (max_forward, P(max_backward, times_dy=False)), 1, "mask_without_dy"),
    ("max_pool2d", (max_forward, P(max_backward, accumulate=False)), 4, "overlap_overwritten"),
    ("avg_pool2d_backward", P(avg_backward, divide=False), 1, "not_divided_by_window"),
    ("avg_pool2d_backward", P(avg_backward, accumulate=False), 3, "overlap_overwritten"),
    ("relu_backward", P(relu_back, at_zero=True), 2, "relu_at_zero"),
    ("relu_backward", P(relu_back, mask_from_dy=True), 1, "relu_mask_from_dy"),
    ("relu_backward", P(relu_back, times_dy=False), 1, "relu_mask_without_dy"),
    ("relu_backward", P(relu_back, blocks=False), 1, "relu_identity"),
    ("dense_backward", P(dense_back, w_t_in_dx=True), 1, "weight_layout"),
    ("dense_backward", P(dense_back, dw_t=True), 1, "weight_layout"),
    ("dense_backward", P(dense_back, db_not_summed=True), 1, "batch_sum_missing"),
    ("dense_backward", P(dense_back, average=True), 3, "batch_averaged"),
    ("dense_backward", P(dense_back, last_only=True), 3, "batch_sum_missing"),
    ("softmax_cross_entropy", P(softmax_ce, average_grad=False), 2, "loss_grad_not_averaged"),
    ("softmax_cross_entropy", P(softmax_ce, average_loss=False), 2, "loss_not_averaged"),
    ("softmax_cross_entropy", P(softmax_ce, subtract_y=False), 1, "labels_not_subtracted"),
    ("softmax_cross_entropy", P(softmax_ce, sign=-1.0), 1, "sign_flipped"),
    ("softmax_cross_entropy", P(softmax_ce, stable=False), 4, "overflow"),
    ("network_backward", P(net_backward, skip_relu=True), 2, "relu_skipped"),
]


def _id(entry):
    name, learner, _, key = entry
    parts = learner if name == "max_pool2d" else (learner,)
    planted = ",".join(f"{k}={v}" for fn in parts for k, v in getattr(fn, "keywords", {}).items())
    return f"{name}-{key}-{planted}"


RIGHT = {
    "conv2d_forward": conv_forward,
    "conv2d_backward": conv_backward,
    "max_pool2d": (max_forward, max_backward),
    "avg_pool2d_backward": avg_backward,
    "relu_backward": relu_back,
    "dense_backward": dense_back,
    "softmax_cross_entropy": softmax_ce,
    "network_backward": net_backward,
}


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(RIGHT))
def test_a_right_learner_implementation_passes(name):
    result = CHECKERS[name](RIGHT[name])
    assert result.passed, repr(result)
    assert result.cases_run == result.cases_total >= 8
    assert result.failure is None and bool(result)


def test_the_route_implementation_passes_too():
    assert check.conv2d_backward(conv_backward_route).passed


@pytest.mark.parametrize("entry", PLANTED, ids=[_id(e) for e in PLANTED])
def test_a_planted_mistake_is_caught_on_the_first_case_that_shows_it(entry):
    name, learner, case_number, key = entry
    assert first_differing_case(name, learner) == case_number
    result = CHECKERS[name](learner)
    assert not result.passed
    f = result.failure
    assert f.case == case_number, repr(result)
    assert result.cases_run == case_number
    assert f.mistake == key, repr(result)
    report = repr(result)
    assert f"FAILED on case {case_number} of {result.cases_total}" in report
    assert "Diagnosis: " in report and f.diagnosis.split()[0] in report
    assert max(len(line) for line in report.splitlines()) <= check.WIDTH, report


def test_every_known_mistake_is_planted():
    """Each mistake key the checkers can name (apart from the generic ones and the ones
    only reachable through an exception) is planted above."""
    source = open(check.__file__, encoding="utf-8").read()
    keys = set(re.findall(r'_Mistake\("([a-z_0-9]+)"', source))
    planted = {key for *_, key in PLANTED} | {key for _, key in GENERIC}
    assert keys <= planted, sorted(keys - planted)


#: the mistakes any output can show, planted in dx
GENERIC = [
    (lambda dx: np.zeros_like(dx), "all_zero"),
    (lambda dx: -dx, "sign_flipped"),
    (lambda dx: np.swapaxes(dx, -1, -2).copy(), "transposed"),
]


@pytest.mark.parametrize("spoil, key", GENERIC, ids=[key for _, key in GENERIC])
def test_the_mistakes_any_output_can_show(spoil, key):
    def learner(dy, x, w, stride, padding):
        dx, dw, db = cycnn.conv2d_backward(dy, x, w, stride, padding)
        return spoil(dx), dw, db

    f = check.conv2d_backward(learner).failure
    assert (f.case, f.output, f.mistake) == (1, "dx", key)


# --------------------------------------------------------------------------- cycnn passes

@pytest.mark.parametrize("name, fns", [
    ("conv2d_forward", cycnn.conv2d_forward),
    ("conv2d_forward", cycnn.reference.conv2d_forward),
    ("conv2d_backward", cycnn.conv2d_backward),
    ("conv2d_backward", cycnn.reference.conv2d_backward),
    ("conv2d_backward", P(cycnn.conv2d_backward, algorithm="direct")),
    ("conv2d_backward", P(cycnn.conv2d_backward, algorithm="im2col")),
    ("max_pool2d", (cycnn.max_pool2d_forward, cycnn.max_pool2d_backward)),
    ("max_pool2d", (cycnn.max_pool2d_forward, None)),
    ("avg_pool2d_backward", cycnn.avg_pool2d_backward),
    ("relu_backward", cycnn.relu_backward),
    ("dense_backward", cycnn.dense_backward),
    ("softmax_cross_entropy", cycnn.softmax_cross_entropy),
    ("network_backward", lambda model, dy: model.backward(dy)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_cycnn_and_the_reference_pass_every_checker(name, fns):
    result = CHECKERS[name](fns)
    assert result.passed, repr(result)


def test_the_docstring_examples_run():
    failures, tried = doctest.testmod(check, optionflags=doctest.ELLIPSIS)
    assert tried >= 2 and failures == 0


# --------------------------------------------------------------------------- robustness

def test_an_exception_is_a_finding_that_names_the_line():
    def broken(dy, x, w, stride, padding):
        dx = np.zeros_like(x)
        dx[0, 0, 99, 0] = 1.0  # out of range
        return dx, w, dy

    result = check.conv2d_backward(broken)
    f = result.failure
    assert (f.case, f.kind) == (1, "exception")
    report = repr(result)
    assert "Your conv2d_backward raised IndexError" in report
    assert "in broken, line" in report and "dx[0, 0, 99, 0] = 1.0" in report


def test_nan_is_a_finding():
    def nan_dw(dy, x, w, stride, padding):
        dx, dw, db = cycnn.conv2d_backward(dy, x, w, stride, padding)
        dw[0, 0, 0, 0] = np.nan
        return dx, dw, db

    f = check.conv2d_backward(nan_dw).failure
    assert (f.case, f.kind, f.output, f.where) == (1, "nonfinite", "dw", (0, 0, 0, 0))


@pytest.mark.parametrize("returned, kind", [
    (lambda dx, dw, db: (dx, dw), "returned"),
    (lambda dx, dw, db: None, "returned"),
    (lambda dx, dw, db: (dx, dw, "db"), "returned"),
    (lambda dx, dw, db: (dx, dw, [db, np.ones(3)]), "returned"),
    (lambda dx, dw, db: (dx[:, :, :-1], dw, db), "shape"),
    (lambda dx, dw, db: (dx, dw.ravel(), db), "shape"),
    (lambda dx, dw, db: (dx, dw, None), "returned"),
], ids=["two-values", "none", "a-string", "ragged", "dx-short", "dw-flat", "db-none"])
def test_wrong_returns_are_findings(returned, kind):
    def learner(dy, x, w, stride, padding):
        return returned(*cycnn.conv2d_backward(dy, x, w, stride, padding))

    result = check.conv2d_backward(learner)
    assert (result.failure.case, result.failure.kind) == (1, kind), repr(result)


def test_a_float64_answer_to_float32_inputs_is_a_dtype_finding():
    def float64_always(dy, x, w, stride, padding):
        return tuple(a.astype(np.float64) for a in
                     cycnn.conv2d_backward(dy, x, w, stride, padding))

    result = check.conv2d_backward(float64_always)
    f = result.failure
    assert f.kind == "dtype" and f.output == "dx"
    assert f.case == len(check.CONV_LADDER) + 1  # the first float32 case
    assert "(float32)" in f.title and "np.zeros_like(x)" in repr(result)


@pytest.mark.parametrize("name, learner, argument", [
    ("relu_backward", lambda dy, x: np.multiply(dy, x > 0, out=dy), "dy"),
    ("conv2d_backward",
     lambda dy, x, w, s, p: (x.fill(0), *cycnn.conv2d_backward(dy, x, w, s, p))[1:], "x"),
    ("softmax_cross_entropy", lambda z, y: (z.__isub__(z.max()),
                                            cycnn.softmax_cross_entropy(z, y))[1], "logits"),
])
def test_changing_an_input_in_place_is_a_finding(name, learner, argument):
    result = CHECKERS[name](learner)
    assert (result.failure.case, result.failure.kind) == (1, "inplace")
    assert f"changed its argument {argument} in place" in repr(result)


def test_a_network_backward_that_updates_the_weights_is_a_finding():
    result = check.network_backward(P(net_backward, update=True))
    assert (result.failure.case, result.failure.kind) == (1, "inplace")
    assert "changed model.layers[0].params['weight']" in repr(result)


def test_a_network_backward_that_skips_a_layer_or_returns_nothing():
    f = check.network_backward(P(net_backward, skip_first=True)).failure
    assert (f.case, f.kind) == (1, "returned")
    assert f.output == "model.layers[0].grads['weight']"
    f = check.network_backward(P(net_backward, give_back=False)).failure
    assert (f.case, f.kind, f.output) == (1, "returned", "dx")


def test_max_pool_forward_alone_and_a_forward_that_returns_no_cache():
    assert check.max_pool2d(lambda x, size, stride: max_forward(x, size, stride)[0]).passed
    result = check.max_pool2d(lambda x, size, stride: max_forward(x, size, stride)[0],
                              max_backward)
    assert (result.failure.case, result.failure.kind) == (1, "returned")
    assert "must return 2 values, (y, cache)" in repr(result)


def test_the_checkers_never_raise_for_odd_learners():
    def raises_type_error(*args):
        raise TypeError("unsupported")

    def returns_object(*args):
        return object()

    def returns_generator(*args):
        return (a for a in args)

    for name in RIGHT:
        for odd in (raises_type_error, returns_object, returns_generator):
            fns = (odd, odd) if name == "max_pool2d" else odd
            result = CHECKERS[name](fns)
            assert not result.passed and result.failure.case == 1, (name, odd)
            assert repr(result).startswith(f"{name}: FAILED on case 1")


def test_a_checker_refuses_something_that_is_not_a_function():
    with pytest.raises(TypeError, match=r"check.conv2d_backward: backward must be a function"):
        check.conv2d_backward("conv2d_backward")


# --------------------------------------------------------------------------- the report

def test_the_report_is_the_repr_and_reads_in_a_notebook():
    result = check.relu_backward(P(relu_back, at_zero=True))
    text = repr(result)
    assert str(result) == text == result.report()
    assert text.splitlines()[0] == "relu_backward: FAILED on case 2 of 8 (case 1 passed)."
    assert "Case 2: 2x3 values, some exactly 0 (float64)" in text
    assert "expected dx:" in text and "yours:" in text
    assert max(len(line) for line in text.splitlines()) <= check.WIDTH
    page = result._repr_html_()
    assert page.startswith("<pre") and "&gt;=" in page and "x >= 0" not in page


def test_the_report_names_the_largest_error_and_its_place():
    result = check.conv2d_backward(P(conv_backward, rotate=False))
    f = result.failure
    case = check._ladder("conv2d_backward")[0][1](np.dtype(np.float64))
    expected = case.expected["dx"]
    err = np.abs(f.received - expected)
    assert f.largest_error == err.max() and err[f.where] == err.max()
    assert f"the largest error is {check._fmt(err.max())} at dx[{', '.join(map(str, f.where))}]" \
        in repr(result)


def test_the_report_is_the_same_every_time():
    learner = P(conv_backward, dilate=False)
    assert repr(check.conv2d_backward(learner)) == repr(check.conv2d_backward(learner))


def test_a_passing_report_lists_the_cases():
    text = repr(check.dense_backward(cycnn.dense_backward))
    assert text.startswith("dense_backward: passed all 10 cases (5 shapes, float64 and float32).")
    assert "  1. 1 sample, 2 features in, 2 out (a square weight matrix)" in text


def test_the_checkers_need_no_pytorch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import cycnn\nfrom cycnn import check\n"
            "assert check.conv2d_backward(cycnn.conv2d_backward).passed\n"
            "assert check.network_backward(lambda m, dy: m.backward(dy)).passed\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
