"""Check your own implementation of a layer against cycnn's, and learn what is wrong.

Each checker takes a function you wrote, with the signature of cycnn's function of the
same name, and runs it on a ladder of cases: first the smallest (one image, one channel,
a 3x3 input and a 2x2 kernel), then channels, filters, batches, strides, padding,
non-square shapes and, for max pooling, ties; every case in float64 and then in float32.
The data are seeded, so a report is the same on every run.

The checker stops at the first case your function gets wrong and returns a
:class:`CheckResult`. Its ``repr`` is a report in words: the case, which output is wrong
(``dx``, ``dw`` or ``db``), the largest error and where it is, the expected and the
received values when the case is small, and a diagnosis when the mistake is a known one.
A diagnosis is never a guess: each known mistake is computed, on the same case, by
cycnn's own functions with that one thing done wrong (the filter not rotated, ``dy`` not
dilated, the padding not cropped, ...), and the diagnosis is given only when your output
matches that wrong result and the right result does not.

Your function is never trusted: an exception, a wrong shape or dtype, NaN, a wrong number
of return values or a change to an input array is reported as a finding, never raised.

Examples
--------
>>> import cycnn
>>> from cycnn import check
>>> check.relu_backward(cycnn.relu_backward)
relu_backward: passed all 8 cases (4 shapes, float64 and float32).
...
"""

from __future__ import annotations

import html
import re
import textwrap
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import cycnn as _cy  # public names only: cycnn.conv2d_backward, cycnn.Sequential, ...

__all__ = [
    "CheckResult",
    "Failure",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d",
    "avg_pool2d_backward",
    "relu_backward",
    "dense_backward",
    "softmax_cross_entropy",
    "network_backward",
]

#: tolerance per dtype: |received - expected| <= atol * scale + rtol * |expected|, where
#: scale is the largest |expected| of that output (at least 1)
TOLERANCE = {np.dtype(np.float64): (1e-7, 1e-9), np.dtype(np.float32): (2e-4, 2e-5)}

#: arrays up to this many entries (per plane) are printed in a report
SHOW_AT_MOST = 64

#: width of the report (it fits a docs page's code block and a notebook cell)
WIDTH = 78

_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


#: a short bracketed group (one level of nesting), kept on one line when wrapping
_GROUP = re.compile(r"\((?:[^()]|\([^()]*\))*\)|\[(?:[^\[\]]|\[[^\[\]]*\])*\]")


def _para(text, indent=""):
    """``text`` wrapped to the report's width (continuation lines indented), without
    breaking a short formula such as ``(i, j)`` or ``xp[n, c, i*sh + p, j*sw + q]``."""
    keep = _GROUP.sub(lambda m: m[0].replace(" ", "\0") if len(m[0]) <= 32 else m[0], text)
    lines = textwrap.wrap(keep, WIDTH, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines] or [""]


# =========================================================================== results

@dataclass
class Failure:
    """What went wrong on the first failing case.

    Attributes
    ----------
    case : int
        Number of the failing case (1-based) in the ladder.
    title : str
        The case in words (shapes, stride, padding, dtype).
    kind : str
        ``'exception'``, ``'returned'`` (wrong number or kind of return values),
        ``'inplace'`` (an input was modified), ``'shape'``, ``'dtype'``, ``'nonfinite'``
        (NaN or inf where the right answer is finite) or ``'values'``.
    output : str or None
        The output that is wrong (``'dx'``, ``'dw'``, ...), when there is one.
    mistake : str or None
        The key of the known mistake recognised (``'filter_not_rotated'``, ...), or None.
    diagnosis : str or None
        The diagnosis in words.
    largest_error : float or None
        ``max |received - expected|`` for a values failure.
    where : tuple of int or None
        Index of the largest error.
    expected, received : ndarray or None
        The right and the received output.
    lines : list of str
        The body of the report.
    """

    case: int
    title: str
    kind: str
    output: str | None = None
    mistake: str | None = None
    diagnosis: str | None = None
    largest_error: float | None = None
    where: tuple | None = None
    expected: Any = None
    received: Any = None
    lines: list = field(default_factory=list)


@dataclass(repr=False)
class CheckResult:
    """The outcome of a checker: truthy when every case passed; its repr is the report.

    Attributes
    ----------
    name : str
        The checker (``'conv2d_backward'``, ...).
    passed : bool
        True when every case passed.
    cases_run : int
        Cases run, the failing one included.
    cases_total : int
        Cases in the ladder.
    cases : list of str
        Titles of the cases run, in order.
    failure : Failure or None
        The first failure, None when every case passed.
    """

    name: str
    passed: bool
    cases_run: int
    cases_total: int
    cases: list
    failure: Failure | None = None
    shapes: int = 0

    def __bool__(self):
        return self.passed

    def report(self) -> str:
        """The report as plain text (the same as ``repr``)."""
        if self.passed:
            head = (f"{self.name}: passed all {self.cases_total} cases ({self.shapes} shapes, "
                    "float64 and float32).")
            listed = [line for k, t in enumerate(self.cases[:self.shapes], 1)
                      for line in _para(f"  {k}. {t}", "     ")]
            return "\n".join([*_para(head, "  "), "Cases (each run in float64, then float32):",
                          *listed])
        f = self.failure
        done = ("no case passed before it" if f.case == 1 else
                "case 1 passed" if f.case == 2 else f"cases 1 to {f.case - 1} passed")
        head = f"{self.name}: FAILED on case {f.case} of {self.cases_total} ({done})."
        return "\n".join([*_para(head, "  "), *_para(f"Case {f.case}: {f.title}", "  "),
                          *f.lines])

    __str__ = report

    def __repr__(self):
        return self.report()

    def _repr_html_(self):
        colour = "#2e7d32" if self.passed else "#c62828"
        return (f'<pre style="border-left: 4px solid {colour}; padding-left: 0.8em; '
                f'white-space: pre-wrap">{html.escape(self.report())}</pre>')


# =========================================================================== the runner

@dataclass
class _Mistake:
    """A known mistake: the outputs a function making it returns on this case.

    ``outputs`` maps an output name to the wrong array, or to a ``_Shape`` when the
    mistake shows as a wrong shape.
    """

    key: str
    text: str
    outputs: dict


@dataclass
class _Shape:
    shape: tuple


@dataclass
class _Case:
    """One rung of the ladder.

    ``call(fn, args)`` runs the learner's function(s) on copies of ``args`` and returns
    the outputs as a dict, or raises ``_Problem``; ``expected`` holds the right outputs;
    ``mistakes()`` computes the known wrong variants (only when the case fails).
    """

    title: str
    dtype: np.dtype
    args: dict
    expected: dict
    call: Callable
    mistakes: Callable
    shown: str
    notes: dict = field(default_factory=dict)
    watched: Callable | None = None
    values: list = field(default_factory=list)


class _Problem(Exception):
    """Raised inside a case's ``call`` for a finding that is not about values."""

    def __init__(self, kind, lines, output=None):
        super().__init__(kind)
        self.kind, self.lines, self.output = kind, lines, output


def _learner_frame(tb):
    """The innermost traceback frame outside cycnn and NumPy: the learner's own line."""
    frames = traceback.extract_tb(tb)
    here = str(Path(__file__).resolve().parent)
    numpy_dir = str(Path(np.__file__).resolve().parent)
    own = [fr for fr in frames if not str(Path(fr.filename).resolve()).startswith(
        (here, numpy_dir))]
    return own[-1] if own else (frames[-1] if frames else None)


def _guarded(label, fn, *args):
    """Call the learner's ``fn``; an exception becomes a ``_Problem`` naming the line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args)
        except Exception as exc:  # the learner's code may raise anything
            lines = _para(f"Your {label} raised {type(exc).__name__}: {exc}".rstrip())
            frame = _learner_frame(exc.__traceback__)
            if frame is not None:
                where = f"  in {frame.name}, line {frame.lineno}"
                lines.append(where + (f": {frame.line.strip()}" if frame.line else ""))
            lines += _para("Fix the error first; the inputs of this case are listed above.")
            raise _Problem("exception", lines) from None
    return out, [str(w.message) for w in caught]


def _tolerance(dtype, expected):
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(expected)))) if np.size(expected) else 1.0
    return rtol, atol * scale


def _close(a, b, dtype):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    rtol, atol = _tolerance(dtype, b)
    return bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _fmt(v):
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.6g}"


def _count(n, one, many):
    return f"{n} {one if n == 1 else many}"


#: what is wrong with an output, for the one-line mentions after the first
_KIND_WORDS = {"values": "wrong values", "shape": "wrong shape", "dtype": "wrong dtype",
               "nonfinite": "NaN or inf", "returned": "missing or not an array"}


def _idx(name, where):
    return f"{name}[{', '.join(str(int(k)) for k in where)}]" if where else name


def _show(a):
    return np.array2string(np.asarray(a), precision=4, suppress_small=True,
                           max_line_width=WIDTH - 4)


def _side_by_side(*blocks):
    """Small arrays next to each other, ``blocks`` being (title, array) pairs, or one
    above the other when they do not fit in the report's width."""
    columns = [[title, *_show(a).splitlines()] for title, a in blocks]
    widths = [max(len(s) for s in col) for col in columns]
    if 2 + sum(widths) + 4 * (len(widths) - 1) > WIDTH:
        return ["  " + s for col in columns for s in col]
    rows = max(len(col) for col in columns)
    padded = [col + [""] * (rows - len(col)) for col in columns]
    return ["  " + "    ".join(f"{col[k]:<{w}}" for col, w in zip(padded, widths)).rstrip()
            for k in range(rows)]


def _inputs_block(**arrays):
    """The first plane of each input, side by side, when the case is small."""
    planes = []
    for name, a in arrays.items():
        lead = (0,) * max(a.ndim - 2, 0)
        if a[lead].size > SHOW_AT_MOST // 2:
            return []
        label = f"{name}[{', '.join(map(str, lead))}]:" if lead else f"{name}:"
        planes.append((label, a[lead]))
    return _side_by_side(*planes)


def _planes(name, expected, received, where):
    """The plane (or the whole array) holding the largest error, expected and received."""
    if expected.ndim >= 3 and where is not None:
        lead = tuple(int(k) for k in where[:-2])
        e, r = expected[lead], received[lead]
        label = f"{name}[{', '.join(map(str, lead))}]"
    else:
        e, r, label = expected, received, name
    if e.size > SHOW_AT_MOST or e.ndim == 0:
        return []
    return _side_by_side((f"expected {label}:", e), ("yours:", r))


def _compare(name, received, expected, dtype, shown):
    """None when ``received`` is right; otherwise ``(kind, lines, details)``."""
    if received is None:
        return "returned", [f"{name} is None: your function must return it."], {}
    try:
        r = np.asarray(received)
    except Exception as exc:  # a ragged list or the like
        return "returned", [f"{name} is not an array ({type(exc).__name__}: {exc})."], {}
    if r.dtype.kind not in "biuf":
        return "returned", [f"{name} has dtype {r.dtype}, not numbers."], {}
    e = np.asarray(expected)
    if r.shape != e.shape:
        return "shape", [f"{name} has shape {r.shape}, but it should be {e.shape}"
                         f"{shown.get(name, '')}."], {"received": r}
    bad_nan = ~np.isfinite(r) & np.isfinite(e)
    if bad_nan.any():
        where = tuple(int(k) for k in np.argwhere(bad_nan)[0])
        if r.ndim == 0:
            text = f"{name} is {r[()]}, but the right {name} is finite, {_fmt(e)}."
        else:
            n_bad = int(bad_nan.sum())
            text = (f"{name} holds {_count(n_bad, 'NaN or inf entry', 'NaN or inf entries')} "
                    f"where the right answer is finite, the first at {_idx(name, where)} "
                    f"(expected {_fmt(e[where])}, yours {r[where]}).")
        return "nonfinite", [text], {"received": r, "where": where}
    r64, e64 = r.astype(np.float64), e.astype(np.float64)
    rtol, atol = _tolerance(dtype, e64)
    ok = np.isclose(r64, e64, rtol=rtol, atol=atol)
    if not ok.all():
        err = np.where(ok, 0.0, np.abs(r64 - e64))
        where = tuple(int(k) for k in np.unravel_index(int(np.argmax(err)), err.shape)) \
            if err.ndim else ()
        largest = float(err[where]) if err.ndim else float(err)
        n_bad, n = int((~ok).sum()), int(ok.size)
        if r.ndim == 0:
            lines = [f"{name} is wrong: expected {_fmt(e64)}, yours {_fmt(r64)}."]
        else:
            lines = [f"{name} is wrong: the largest error is {_fmt(largest)} at "
                     f"{_idx(name, where)} (expected {_fmt(e64[where])}, yours "
                     f"{_fmt(r64[where])}); {n_bad} of the {n} entries "
                     f"{'is' if n_bad == 1 else 'are'} wrong."]
        return "values", lines, {"received": r, "where": where, "largest": largest}
    if r.dtype != e.dtype and not isinstance(expected, float):
        return "dtype", [
            f"{name} has the right values but dtype {r.dtype}; for {dtype} inputs it should "
            f"be {e.dtype}, as cycnn's is. Allocate it with the input's dtype (for example "
            f"np.zeros_like(x), or np.zeros(shape, dtype=x.dtype))."], {"received": r}
    return None


def _matches(received, wrong, expected, dtype):
    """True when the learner's output equals the wrong variant and the right one does not."""
    if isinstance(wrong, _Shape):
        return np.shape(received) == tuple(wrong.shape) != np.shape(expected)
    wrong = np.asarray(wrong)
    if np.shape(received) != wrong.shape:
        return False
    r = np.asarray(received, dtype=np.float64)
    w64 = wrong.astype(np.float64)
    if not np.isfinite(w64).all():  # the variant overflows; yours must too
        right_is_finite = bool(np.isfinite(np.asarray(expected)).all())
        return right_is_finite and not np.isfinite(r).all()
    return _close(r, w64, dtype) and not _close(expected, w64, dtype)


def _generic_mistakes(name, expected):
    """Mistakes any output can show: all zeros, the sign flipped, axes transposed."""
    e = np.asarray(expected)
    out = [
        _Mistake("all_zero", f"{name} is all zeros: was anything ever added into it?",
                 {name: np.zeros_like(e)}),
        _Mistake("sign_flipped", f"{name} has the right size but the opposite sign: check "
                 "the sign of the gradient you start from.", {name: -e}),
    ]
    if e.ndim >= 2:
        out.append(_Mistake("transposed", f"{name} is the right answer with its last two "
                            "axes swapped (rows and columns exchanged).",
                            {name: np.swapaxes(e, -1, -2)}))
    return out


def _diagnose(name, received, case):
    for m in [*case.mistakes(), *_generic_mistakes(name, case.expected[name])]:
        if name in m.outputs and _matches(received, m.outputs[name], case.expected[name],
                                          case.dtype):
            return m
    return None


def _changed_inputs(pristine, given):
    """Lines naming every argument the learner's function modified in place."""
    lines = []
    for label, before in pristine.items():
        after = given[label]
        if not isinstance(before, np.ndarray):
            continue
        if after.shape != before.shape or not np.array_equal(before, after, equal_nan=True):
            n = int((before != after).sum()) if after.shape == before.shape else before.size
            lines.append(f"Your function changed its argument {label} in place ({n} of "
                         f"{before.size} entries differ afterwards).")
    return lines


def _run_case(number, case, fns):
    """Run one case; None when it passes, a Failure otherwise."""
    given = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.args.items()}
    head = _para(f"  inputs: {case.shown}", "    ") + case.values
    try:
        received, warned = case.call(fns, given)
    except _Problem as p:
        body = [line for text in p.lines for line in
                (_para(text, "  ") if not text.startswith("  in ") else [text])]
        return Failure(number, case.title, p.kind, output=p.output, lines=head + body)
    changed = _changed_inputs(case.args, given)
    if case.watched is not None:
        changed += case.watched()
    if changed:
        text = ("A backward pass must leave its inputs alone: the layer below, the optimizer or "
                "the next step may still need them. Build new arrays (np.zeros_like(x), "
                "dy.copy()) instead of writing into the arguments.")
        return Failure(number, case.title, "inplace", lines=head + [
            line for t in [*changed, text] for line in _para(t, "  ")])
    status, first, others = [], None, []  # status: one sentence per output
    for name, exp in case.expected.items():
        verdict = _compare(name, received.get(name), exp, case.dtype, case.notes)
        if verdict is None:
            status.append(f"{name} is right.")
            continue
        kind, lines, details = verdict
        if first is None:
            first = (name, kind, details)
            status.append(" ".join(lines))
        else:
            others.append((len(status), name, kind, details))
            status.append(f"{name} is also wrong ({_KIND_WORDS[kind]}).")
    if first is None:
        return None
    name, kind, details = first
    f = Failure(number, case.title, kind, output=name, expected=case.expected[name],
                received=details.get("received"), where=details.get("where"),
                largest_error=details.get("largest"))
    m = _diagnose(name, f.received, case) if kind in ("values", "nonfinite", "shape") else None
    if m is not None:
        f.mistake, f.diagnosis = m.key, m.text
        for at, other, other_kind, got in others:  # the same mistake elsewhere?
            same = other_kind in ("values", "nonfinite", "shape") and getattr(
                _diagnose(other, got.get("received"), case), "key", None) == m.key
            if same:
                status[at] = (f"{other} is also wrong ({_KIND_WORDS[other_kind]}), by the "
                              "same mistake.")
    body = head + [line for sentence in status for line in _para(sentence, "  ")]
    if kind in ("values", "nonfinite"):
        body += _planes(name, np.asarray(case.expected[name]), np.asarray(f.received), f.where)
    if m is not None:
        body += _para("Diagnosis: " + m.text, "  ")
    if warned:
        body += _para(f"NumPy warned while your function ran: {warned[0]}", "  ")
    f.lines = body
    return f


def _run(name, fns, ladder):
    """Run the ladder (every shape in float64, then in float32) until the first failure."""
    cases = [(title, build) for title, build in ladder]
    order = [(t, b, dt) for dt in _DTYPES for t, b in cases]
    titles = []
    for number, (title, build, dt) in enumerate(order, 1):
        case = build(dt)
        case.title = f"{title} ({dt})"
        titles.append(case.title)
        failure = _run_case(number, case, fns)
        if failure is not None:
            return CheckResult(name, False, number, len(order), titles, failure, len(cases))
    return CheckResult(name, True, len(order), len(order), [t for t, _ in cases], None,
                       len(cases))


def _check_callable(name, **fns):
    for label, fn in fns.items():
        if not callable(fn):
            raise TypeError(f"check.{name}: {label} must be a function, got "
                            f"{type(fn).__name__}")


def _returns(label, out, names):
    """Unpack a tuple of outputs, or raise a _Problem saying what came back instead."""
    if len(names) == 1:
        return {names[0]: out}
    if not isinstance(out, (tuple, list)) or len(out) != len(names):
        got = (f"{len(out)} values" if isinstance(out, (tuple, list))
               else f"a {type(out).__name__}")
        raise _Problem("returned", [f"Your {label} returned {got}; it must return "
                                    f"{len(names)} values, ({', '.join(names)})."])
    return dict(zip(names, out))


# =========================================================================== data

def _ints(rng, shape, lo, hi, dtype):
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _shapes_text(**arrays):
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())


# =========================================================================== convolution

#: (title, N, C, F, H, W, KH, KW, stride, padding, small integers?)
CONV_LADDER = [
    ("1 image, 1 channel, 3x3 input, one 2x2 filter, stride 1, no padding",
     1, 1, 1, 3, 3, 2, 2, 1, 0, True),
    ("1 image, 2 channels, 3x3 input, two 2x2 filters", 1, 2, 2, 3, 3, 2, 2, 1, 0, True),
    ("a batch of 2 images, 1 channel, 3x3 input, one 2x2 filter", 2, 1, 1, 3, 3, 2, 2, 1, 0,
     True),
    ("1 image, 5x5 input, one 3x3 filter, stride 2", 1, 1, 1, 5, 5, 3, 3, 2, 0, True),
    ("1 image, 3x3 input, one 2x2 filter, padding 1", 1, 1, 1, 3, 3, 2, 2, 1, 1, True),
    ("1 image, 6x6 input, one 3x3 filter, stride 2 (no window reads the last row and "
     "column)", 1, 1, 1, 6, 6, 3, 3, 2, 0, True),
    ("2 images, 2 channels, 5x7 input, three 2x3 filters, stride (2, 1), padding (1, 0)",
     2, 2, 3, 5, 7, 2, 3, (2, 1), (1, 0), False),
    ("3 images, 2 channels, 7x9 input, four 3x2 filters, stride (2, 3), padding "
     "((1, 2), (0, 1))", 3, 2, 4, 7, 9, 3, 2, (2, 3), ((1, 2), (0, 1)), False),
]


def _conv_data(spec, dtype, seed):
    _, N, C, F, H, W, KH, KW, stride, padding, small = spec
    rng = np.random.default_rng(seed)
    if small:
        x = _ints(rng, (N, C, H, W), 0, 9, dtype)
        w = _ints(rng, (F, C, KH, KW), -3, 3, dtype)
        b = _ints(rng, (F,), -2, 2, dtype)
        b[b == 0] = 1  # a bias that shows
    else:
        x, w, b = (_normal(rng, s, dtype) for s in ((N, C, H, W), (F, C, KH, KW), (F,)))
    return x, w, b, stride, padding


def _geometry(x, w, stride, padding):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    sh, sw = _pair(stride)
    (pt, pb), (pl, pr) = _cy.resolve_padding(padding, (KH, KW), (sh, sw))
    HP, WP = H + pt + pb, W + pl + pr
    OH, OW = (HP - KH) // sh + 1, (WP - KW) // sw + 1
    return dict(N=N, C=C, H=H, W=W, F=F, KH=KH, KW=KW, sh=sh, sw=sw, pt=pt, pb=pb, pl=pl,
                pr=pr, HP=HP, WP=WP, OH=OH, OW=OW)


def _args_text(stride, padding):
    return f"stride={stride!r}, padding={padding!r}"


def _conv_forward_mistakes(x, w, b, stride, padding):
    g = _geometry(x, w, stride, padding)
    N, F, OH, OW = g["N"], g["F"], g["OH"], g["OW"]
    sh, sw, KH, KW, HP, WP = g["sh"], g["sw"], g["KH"], g["KW"], g["HP"], g["WP"]
    y = _cy.conv2d_forward(x, w, b, stride, padding)
    ceil = ((HP - KH + sh - 1) // sh + 1, (WP - KW + sw - 1) // sw + 1)
    size = ("the output size is off by one: along each axis the windows start at 0, sh, "
            "2 sh, ... for as long as they fit in the padded input, so OH = (H + pt + pb - "
            "KH) // sh + 1 and OW = (W + pl + pr - KW) // sw + 1")
    m = [
        _Mistake("output_size_off_by_one", f"y has shape {(N, F, OH - 1, OW - 1)}: {size} "
                 "(the + 1 counts the first window).", {"y": _Shape((N, F, OH - 1, OW - 1))}),
        _Mistake("output_size_off_by_one", f"y has shape {(N, F) + ceil}: {size}; rounding "
                 "up counts a window that would stick out of the padded input.",
                 {"y": _Shape((N, F) + ceil)}),
        _Mistake("output_size_off_by_one", f"y has shape {(N, F, HP - KH + 1, WP - KW + 1)}, "
                 f"the size for stride 1: {size}.",
                 {"y": _Shape((N, F, HP - KH + 1, WP - KW + 1))}),
        _Mistake("padding_ignored", "y has the size of a convolution without padding: pad "
                 "x with zeros first (cycnn.zero_pad(x, padding)) and slide the windows "
                 "over the padded input.",
                 {"y": _Shape((N, F, (g["H"] - KH) // sh + 1, (g["W"] - KW) // sw + 1))}),
        _Mistake("true_convolution", "y matches a true convolution, with the filter rotated "
                 "by 180 degrees. A CNN layer computes a cross-correlation: y[n, f, i, j] = "
                 "b[f] + sum over c, p, q of w[f, c, p, q] * xp[n, c, i*sh + p, j*sw + q], "
                 "with no flip.",
                 {"y": _cy.conv2d_forward(x, _cy.rotate180(w), b, stride, padding)}),
        _Mistake("bias_missing", "y is right except for the bias: add b[f] to every output "
                 "of filter f.", {"y": y - b[None, :, None, None]}),
    ]
    if g["C"] > 1:
        for which, sl in (("last", slice(-1, None)), ("first", slice(0, 1))):
            m.append(_Mistake(
                "channel_sum_missing", f"y matches the {which} input channel alone: a filter "
                "reads every channel of its window, so the sum runs over c as well as p and q "
                "(did you write = instead of += in the loop over c?).",
                {"y": _cy.conv2d_forward(x[:, sl], w[:, sl], b, stride, padding)}))
    if g["C"] == F:
        m.append(_Mistake("weight_layout", "y matches the filters read as w[c, f] instead of "
                          "w[f, c]: cycnn (like PyTorch) stores them as (F, C, KH, KW).",
                          {"y": _cy.conv2d_forward(x, w.transpose(1, 0, 2, 3), b, stride,
                                                padding)}))
    if KH == KW:
        m.append(_Mistake("weight_layout", "y matches the filters read as w[f, c, q, p]: the "
                          "kernel's rows and columns are exchanged. w[f, c, p, q] has the "
                          "kernel row p before the column q.",
                          {"y": _cy.conv2d_forward(x, w.transpose(0, 1, 3, 2), b, stride,
                                                padding)}))
    if (sh, sw) != (1, 1):
        m.append(_Mistake("stride_ignored", "y matches windows that start at (i, j) instead "
                          "of (i*sh, j*sw): output (i, j) reads the window whose top-left "
                          "corner is at row i*sh and column j*sw of the padded input.",
                          {"y": _cy.conv2d_forward(x, w, b, 1, padding)[:, :, :OH, :OW]}))
    return m


def _conv_case(spec, dtype, backward):
    x, w, b, stride, padding = _conv_data(spec, dtype, seed=CONV_LADDER.index(spec))
    g = _geometry(x, w, stride, padding)
    extras = _args_text(stride, padding)
    if not backward:
        args = {"x": x, "w": w, "b": b, "stride": stride, "padding": padding}

        def call(fns, a):
            out, warned = _guarded("conv2d_forward", fns[0], a["x"], a["w"], a["b"],
                                   a["stride"], a["padding"])
            return _returns("conv2d_forward", out, ("y",)), warned

        return _Case("", dtype, args, {"y": _cy.conv2d_forward(x, w, b, stride, padding)}, call,
                     lambda: _conv_forward_mistakes(x, w, b, stride, padding),
                     f"{_shapes_text(x=x, w=w, b=b)}, {extras}",
                     notes={"y": " = (N, F, OH, OW)"}, values=_inputs_block(x=x, w=w, b=b))
    rng = np.random.default_rng(100 + CONV_LADDER.index(spec))
    yshape = (g["N"], g["F"], g["OH"], g["OW"])
    dy = _ints(rng, yshape, -2, 2, dtype) if spec[-1] else _normal(rng, yshape, dtype)
    if spec[-1] and not dy.any():  # pragma: no cover - depends on the seed
        dy.flat[0] = 1
    dx, dw, db = _cy.conv2d_backward(dy, x, w, stride, padding)
    args = {"dy": dy, "x": x, "w": w, "stride": stride, "padding": padding}

    def call(fns, a):
        out, warned = _guarded("conv2d_backward", fns[0], a["dy"], a["x"], a["w"],
                               a["stride"], a["padding"])
        return _returns("conv2d_backward", out, ("dx", "dw", "db")), warned

    return _Case("", dtype, args, {"dx": dx, "dw": dw, "db": db}, call,
                 lambda: _conv_backward_mistakes(dy, x, w, stride, padding),
                 f"{_shapes_text(dy=dy, x=x, w=w)}, {extras}",
                 notes={"dx": " = (N, C, H, W), the shape of x",
                        "dw": " = (F, C, KH, KW), the shape of w",
                        "db": " = (F,), one entry per filter"},
                 values=_inputs_block(x=x, w=w, dy=dy))


def _conv_backward_mistakes(dy, x, w, stride, padding):
    """The known mistakes of a convolution's backward pass, each computed on this case."""
    g = _geometry(x, w, stride, padding)
    N, C, H, W, F = g["N"], g["C"], g["H"], g["W"], g["F"]
    KH, KW, sh, sw, pt, pl = g["KH"], g["KW"], g["sh"], g["sw"], g["pt"], g["pl"]
    HP, WP, OH, OW = g["HP"], g["WP"], g["OH"], g["OW"]
    dx, dw, db = _cy.conv2d_backward(dy, x, w, stride, padding)
    xp = _cy.zero_pad(x, ((g["pt"], g["pb"]), (g["pl"], g["pr"])))
    m = [_Mistake("filter_not_rotated", "dx matches a full correlation of dy with the "
                  "filter as it is. Every x[n, c, h, w] that window (i, j) read with weight "
                  "w[f, c, p, q] receives w[f, c, p, q] * dy[n, f, i, j]; gathered as a "
                  "correlation over dy, that is the filter rotated by 180 degrees "
                  "(cycnn.rotate180(w)), not w itself.",
                  {"dx": _cy.conv2d_backward(dy, x, _cy.rotate180(w), stride, padding)[0]})]
    if (sh, sw) != (1, 1):
        # the windows put back at (i, j) instead of (i*sh, j*sw): stride-1 geometry
        reach_h, reach_w = OH + KH - 1, OW + KW - 1
        dxs, dws, _ = _cy.conv2d_backward(dy, xp[:, :, :reach_h, :reach_w], w)
        dxp = np.zeros(xp.shape, dx.dtype)
        dxp[:, :, :reach_h, :reach_w] = dxs
        text = (f"{{}} matches what you get when dy is not dilated. With stride ({sh}, {sw}) "
                "output (i, j) read the window that starts at row i*sh and column j*sw of "
                "the padded input, so its gradient goes back there, not to (i, j). Dilate dy "
                "first (cycnn.dilate(dy, (sh, sw)) inserts sh - 1 zero rows and sw - 1 zero "
                "columns) or index xp[n, c, i*sh + p, j*sw + q] in your loops.")
        m += [_Mistake("dy_not_dilated", text.format("dx"),
                       {"dx": dxp[:, :, pt:pt + H, pl:pl + W]}),
              _Mistake("dy_not_dilated", text.format("dw"), {"dw": dws}),
              _Mistake("dy_not_dilated", text.format("dx's shape"),
                       {"dx": _Shape((N, C, reach_h, reach_w))}),
              _Mistake("dy_not_dilated", text.format("dx's shape"),
                       {"dx": _Shape((N, C, reach_h - pt - g["pb"], reach_w - pl - g["pr"]))})]
    if (HP, WP) != (H, W):
        dxp_full = _cy.conv2d_backward(dy, xp, w, stride, 0)[0]
        m += [_Mistake("padding_not_cropped", f"dx has the shape of the padded input, "
                       f"{(N, C, HP, WP)}: the padding was not cropped. The padding zeros are "
                       "constants, so their gradients go nowhere: dx = dxp[:, :, pt:pt + H, "
                       "pl:pl + W].", {"dx": _Shape((N, C, HP, WP))}),
              _Mistake("padding_not_cropped", "dx matches dxp[:, :, :H, :W], the gradient of "
                       "the padded input cropped from the wrong corner: the padding has pt "
                       "rows above and pl columns on the left, so dx = dxp[:, :, pt:pt + H, "
                       "pl:pl + W].", {"dx": dxp_full[:, :, :H, :W]})]
    e_h, e_w = HP - ((OH - 1) * sh + KH), WP - ((OW - 1) * sw + KW)
    short = (N, C, min(H, HP - e_h - pt), min(W, WP - e_w - pl))
    if (e_h or e_w) and short != dx.shape:
        m.append(_Mistake("unreached_rows_dropped", f"dx has shape {short}: the last "
                          f"{e_h} row(s) and {e_w} column(s) of the padded input, which no "
                          "window reached, are missing. Their gradient is zero, but dx must "
                          "still have the shape of x: pad the dilated dy by KH - 1 + e_h rows "
                          "below and KW - 1 + e_w columns on the right (or allocate dxp with "
                          "the padded input's shape and scatter into it).",
                          {"dx": _Shape(short)}))
    if F > 1:
        for which, sl in (("last", slice(-1, None)), ("first", slice(0, 1))):
            m.append(_Mistake(
                "filter_sum_missing", f"dx matches the gradient through the {which} filter "
                "alone. Every filter read x, so dx sums the contributions of all F filters "
                "(did you write = instead of += in the loop over f?).",
                {"dx": _cy.conv2d_backward(dy[:, sl], x, w[sl], stride, padding)[0]}))
    if N > 1:
        for which, sl in (("last", slice(-1, None)), ("first", slice(0, 1))):
            part = _cy.conv2d_backward(dy[sl], x[sl], w, stride, padding)
            text = (f"{{}} matches the gradient of the {which} sample alone. The filters are "
                    "shared by every image of the batch, so {} sums over n (did you write = "
                    "instead of += in the loop over the batch?).")
            m += [_Mistake("batch_sum_missing", text.format("dw", "dw"), {"dw": part[1]}),
                  _Mistake("batch_sum_missing", text.format("db", "db"), {"db": part[2]})]
        text = (f"{{}} is the right sum divided by the batch size N = {N}. A layer's gradients "
                "are sums over the batch; the 1/N of a mean loss is already in dy, applied "
                "once, by the loss.")
        m += [_Mistake("batch_averaged", text.format("dw"), {"dw": dw / N}),
              _Mistake("batch_averaged", text.format("db"), {"db": db / N})]
    m += [_Mistake("batch_sum_missing", f"db has shape {(N, F)}: it was not summed over the "
                   "batch. db[f] = sum over n, i, j of dy[n, f, i, j], one number per filter.",
                   {"db": _Shape((N, F))}),
          _Mistake("position_sum_missing", f"db has shape {(F, OH, OW)}: it was not summed "
                   "over the output positions i, j. db[f] = sum over n, i, j of dy[n, f, i, j].",
                   {"db": _Shape((F, OH, OW))}),
          _Mistake("dw_rotated", "dw matches the right dw rotated by 180 degrees: dw is a "
                   "plain correlation of the padded input with dy, dw[f, c, p, q] = sum over "
                   "n, i, j of dy[n, f, i, j] * xp[n, c, i*sh + p, j*sw + q]; the rotation "
                   "belongs to dx.", {"dw": _cy.rotate180(dw)}),
          _Mistake("weight_layout", f"dw is laid out (C, F, KH, KW) = {(C, F, KH, KW)}: "
                   "cycnn (like PyTorch) stores filters as (F, C, KH, KW), and dw has the "
                   "shape of w.", {"dw": dw.transpose(1, 0, 2, 3)}),
          _Mistake("weight_layout", f"dw is laid out (C, F, KH, KW) = {(C, F, KH, KW)}: "
                   "cycnn (like PyTorch) stores filters as (F, C, KH, KW), and dw has the "
                   "shape of w.", {"dw": _Shape((C, F, KH, KW))})]
    if KH == KW:
        m.append(_Mistake("weight_layout", "dx matches the filters read as w[f, c, q, p]: "
                          "the kernel's rows and columns are exchanged.",
                          {"dx": _cy.conv2d_backward(dy, x, w.transpose(0, 1, 3, 2), stride,
                                                  padding)[0]}))
    return m


def conv2d_forward(forward) -> CheckResult:
    """Check a forward pass of a convolution layer against :func:`cycnn.conv2d_forward`.

    Parameters
    ----------
    forward : callable
        ``forward(x, w, b, stride, padding) -> y``, called with positional arguments:
        ``x`` of shape (N, C, H, W), ``w`` of (F, C, KH, KW), ``b`` of (F,), ``stride``
        an int or ``(sh, sw)`` and ``padding`` an int, ``(ph, pw)`` or
        ``((pt, pb), (pl, pr))``, as cycnn accepts them. The first cases use ints.

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Mistakes recognised: output size off by one (the ``+ 1``, rounding up, the stride
    or the padding left out of the size), a true convolution (filter rotated), the
    bias left out, the sum over input channels missing, the filters read in the wrong
    layout (``w[c, f]`` or ``w[f, c, q, p]``), the stride left out of the window
    position.
    """
    _check_callable("conv2d_forward", forward=forward)
    return _run("conv2d_forward", (forward,), _ladder("conv2d_forward"))


def conv2d_backward(backward) -> CheckResult:
    """Check a backward pass of a convolution layer against :func:`cycnn.conv2d_backward`.

    Parameters
    ----------
    backward : callable
        ``backward(dy, x, w, stride, padding) -> (dx, dw, db)``, called with positional
        arguments: ``dy`` of shape (N, F, OH, OW), ``x`` of (N, C, H, W), ``w`` of
        (F, C, KH, KW); ``stride`` and ``padding`` as for :func:`conv2d_forward` (ints in
        the first cases, tuples in the last two).

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Mistakes recognised: the filter not rotated in dx, ``dy`` not dilated for a stride
    above 1, the padding not cropped from dx (or cropped from the wrong corner), the
    rows no window reached left out of dx, the sum over filters (dx) or over the batch
    (dw, db) missing, the gradients averaged over the batch, db not summed over the
    output positions, dw rotated, the filters in the wrong layout.

    Examples
    --------
    >>> import cycnn
    >>> from cycnn import check
    >>> check.conv2d_backward(cycnn.conv2d_backward).passed
    True
    """
    _check_callable("conv2d_backward", backward=backward)
    return _run("conv2d_backward", (backward,), _ladder("conv2d_backward"))


# =========================================================================== pooling

#: (title, N, C, H, W, size, stride, data): data "distinct" (no ties), "tie" (a tie in the
#: first window) or "normal" (floats with ties planted)
POOL_LADDER = [
    ("1 image, 1 channel, 4x4 input, 2x2 windows, stride 2", 1, 1, 4, 4, 2, 2, "distinct"),
    ("1 image, 1 channel, 4x4 input, 2x2 windows, stride 2, a tie for the maximum",
     1, 1, 4, 4, 2, 2, "tie"),
    ("2 images, 3 channels, 4x4 input, 2x2 windows, stride 2", 2, 3, 4, 4, 2, 2, "distinct"),
    ("1 image, 1 channel, 3x3 input, 2x2 windows, stride 1 (windows overlap)",
     1, 1, 3, 3, 2, 1, "center"),
    ("1 image, 1 channel, 5x5 input, 2x2 windows, stride 2 (no window reads the last row "
     "and column)", 1, 1, 5, 5, 2, 2, "distinct"),
    ("1 image, 2 channels, 7x7 input, 3x3 windows, stride 2", 1, 2, 7, 7, 3, 2, "distinct"),
    ("2 images, 2 channels, 4x9 input, 2x3 windows, stride (2, 3)", 2, 2, 4, 9, (2, 3),
     (2, 3), "distinct"),
    ("2 images, 2 channels, 7x9 input, 3x2 windows, stride (2, 1), with ties",
     2, 2, 7, 9, (3, 2), (2, 1), "normal"),
]


def _pool_data(spec, dtype):
    title, N, C, H, W, size, stride, kind = spec
    rng = np.random.default_rng(200 + POOL_LADDER.index(spec))
    if kind in ("distinct", "tie", "center"):
        x = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(dtype) - N * C * H * W // 2
        if kind == "tie":
            x[0, 0, 0, 0] = x[0, 0, 1, 1] = x[0, 0, :2, :2].max() + 1
        if kind == "center":
            x[0, 0, 1, 1] = x.max() + 1  # the centre wins all four windows
    else:
        x = np.round(_normal(rng, (N, C, H, W), dtype), 1)  # rounding to 0.1 makes ties
        x[:, :, 0, 0] = x[:, :, 1, 1] = x[:, :, :3, :2].max() + 1
    return x, _pair(size), _pair(stride), rng


def _windows(x, size, stride):
    """``(N, C, OH, OW, KH, KW)`` view of the pooling windows."""
    (KH, KW), (sh, sw) = size, stride
    return sliding_window_view(x, (KH, KW), axis=(2, 3))[:, :, ::sh, ::sw]


def _scatter(dy, per_cell, x_shape, size, stride):
    """dx from a ``(N, C, OH, OW, KH, KW)`` array of what each window cell receives."""
    (KH, KW), (sh, sw) = size, stride
    _, _, OH, OW = dy.shape
    dx = np.zeros(x_shape, dy.dtype)
    for p in range(KH):
        for q in range(KW):
            dx[:, :, p:p + sh * (OH - 1) + 1:sh, q:q + sw * (OW - 1) + 1:sw] += per_cell[..., p, q]
    return dx


def _scatter_last_write(dy, per_cell, x_shape, size, stride):
    """As :func:`_scatter`, but each window overwrites (``=``) instead of adding."""
    (KH, KW), (sh, sw) = size, stride
    N, C, OH, OW = dy.shape
    dx = np.zeros(x_shape, dy.dtype)
    for i in range(OH):
        for j in range(OW):
            for p in range(KH):
                for q in range(KW):
                    cell = per_cell[:, :, i, j, p, q]
                    hit = cell != 0
                    dx[:, :, i * sh + p, j * sw + q] = np.where(
                        hit, cell, dx[:, :, i * sh + p, j * sw + q])
    return dx


def _pool_size_mistakes(name, N, C, H, W, size, stride):
    (KH, KW), (sh, sw) = size, stride
    OH, OW = (H - KH) // sh + 1, (W - KW) // sw + 1
    ceil = ((H - KH + sh - 1) // sh + 1, (W - KW + sw - 1) // sw + 1)
    size_text = ("the output size is off by one: the windows start at 0, sh, 2 sh, ... for as "
                 "long as they fit, so OH = (H - KH) // sh + 1 and OW = (W - KW) // sw + 1")
    return [
        _Mistake("output_size_off_by_one", f"{name} has shape {(N, C, OH - 1, OW - 1)}: "
                 f"{size_text} (the + 1 counts the first window).",
                 {name: _Shape((N, C, OH - 1, OW - 1))}),
        _Mistake("output_size_off_by_one", f"{name} has shape {(N, C) + ceil}: {size_text}; "
                 "rounding up counts a window that would stick out of the input.",
                 {name: _Shape((N, C) + ceil)}),
        _Mistake("output_size_off_by_one", f"{name} has shape {(N, C, H - KH + 1, W - KW + 1)}, "
                 f"the size for stride 1: {size_text}.",
                 {name: _Shape((N, C, H - KH + 1, W - KW + 1))}),
    ]


def _max_pool_mistakes(x, dy, size, stride):
    N, C, H, W = x.shape
    y, cache = _cy.max_pool2d_forward(x, size, stride)
    win = _windows(x, size, stride)
    KH, KW = size
    flat = win.reshape(win.shape[:4] + (KH * KW,))
    tied = flat == flat.max(axis=-1, keepdims=True)
    last = np.zeros_like(tied)
    np.put_along_axis(last, (KH * KW - 1 - np.argmax(tied[..., ::-1], axis=-1))[..., None],
                      True, axis=-1)
    first = np.zeros_like(tied)
    np.put_along_axis(first, np.argmax(flat, axis=-1)[..., None], True, axis=-1)
    shape6 = win.shape
    per = lambda mask: (dy[..., None] * mask).reshape(shape6)  # noqa: E731
    m = _pool_size_mistakes("y", N, C, H, W, size, stride)
    m += [
        _Mistake("ties_all", "dx sends the gradient to every input that ties for the maximum "
                 "of its window. The forward pass output one value, so only one input may "
                 "receive dy: cycnn (like PyTorch) takes the first maximum in row-major order, "
                 "np.argmax over the window. A mask built with window == window.max() marks "
                 "every tied cell.",
                 {"dx": _scatter(dy, per(tied), x.shape, size, stride)}),
        _Mistake("ties_last", "dx sends the gradient to the last of the tied maxima of a "
                 "window; cycnn (like PyTorch) sends it to the first in row-major order, the "
                 "one np.argmax returns (a comparison with >= instead of > picks the last).",
                 {"dx": _scatter(dy, per(last), x.shape, size, stride)}),
        _Mistake("whole_window", "dx sends each dy[n, c, i, j] to every input of its window. "
                 "Only the window's maximum made it into y, so only that input receives the "
                 "gradient.", {"dx": _scatter(dy, per(np.ones_like(tied)), x.shape, size,
                                                 stride)}),
        _Mistake("mask_without_dy", "dx is the mask of the maxima (how many windows each "
                 "input won) without dy: multiply by the incoming gradient, dx = mask * dy "
                 "window by window.",
                 {"dx": _cy.max_pool2d_backward(np.ones_like(dy), cache)}),
    ]
    if stride[0] < size[0] or stride[1] < size[1]:
        m.append(_Mistake("overlap_overwritten", "dx keeps one window's gradient where an "
                          "input won several overlapping windows (stride smaller than the "
                          "window): add with +=, so an input that won k windows receives the "
                          "sum of their k gradients.",
                          {"dx": _scatter_last_write(dy, per(first), x.shape, size, stride)}))
    return m


def _pool_case(spec, dtype, kind, with_backward=True):
    x, size, stride, rng = _pool_data(spec, dtype)
    N, C, H, W = x.shape
    forward = _cy.max_pool2d_forward if kind == "max" else _cy.avg_pool2d_forward
    y, cache = forward(x, size, stride)
    dy = _ints(rng, y.shape, -3, 3, dtype) if spec[-1] != "normal" else _normal(rng, y.shape,
                                                                                 dtype)
    dy[dy == 0] = 1  # every window sends a gradient
    size_arg = size if size[0] != size[1] else size[0]
    stride_arg = stride if stride[0] != stride[1] else stride[0]
    shown = f"x {x.shape}, size={size_arg!r}, stride={stride_arg!r}, dy {dy.shape}"
    notes = {"y": " = (N, C, OH, OW)", "dx": " = (N, C, H, W), the shape of x"}
    if kind == "max":
        args = {"x": x, "dy": dy, "size": size_arg, "stride": stride_arg}

        def call(fns, a):
            forward_fn, backward_fn = fns
            out, warned = _guarded("forward", forward_fn, a["x"], a["size"], a["stride"])
            if backward_fn is None:  # y alone, or (y, cache)
                y_only = out[0] if isinstance(out, (tuple, list)) and len(out) == 2 else out
                return {"y": y_only}, warned
            y_got, cache_got = _returns("forward", out, ("y", "cache")).values()
            dx_got, warned2 = _guarded("backward", backward_fn, a["dy"], cache_got)
            return {"y": y_got, "dx": dx_got}, warned + warned2

        expected = {"y": y}
        if with_backward:
            expected["dx"] = _cy.max_pool2d_backward(dy, cache)
        return _Case("", dtype, args, expected, call,
                     lambda: _max_pool_mistakes(x, dy, size, stride), shown, notes,
                     values=_inputs_block(x=x, dy=dy) if with_backward else _inputs_block(x=x))
    args = {"dy": dy, "cache": cache}

    def call(fns, a):
        out, warned = _guarded("avg_pool2d_backward", fns[0], a["dy"], a["cache"])
        return _returns("avg_pool2d_backward", out, ("dx",)), warned

    return _Case("", dtype, args, {"dx": _cy.avg_pool2d_backward(dy, cache)}, call,
                 lambda: _avg_pool_mistakes(x, dy, size, stride),
                 f"dy {dy.shape}, cache = cycnn.avg_pool2d_forward(x {x.shape}, "
                 f"{size_arg!r}, {stride_arg!r})[1]", notes)


def _avg_pool_mistakes(x, dy, size, stride):
    _, cache = _cy.avg_pool2d_forward(x, size, stride)
    KH, KW = size
    dx = _cy.avg_pool2d_backward(dy, cache)
    share = np.broadcast_to((dy / (KH * KW))[..., None, None], dy.shape + (KH, KW))
    m = [_Mistake("not_divided_by_window", f"dx copies each dy to the inputs of its window "
                  f"without dividing by KH*KW = {KH * KW}: y is the mean of KH*KW inputs, so "
                  f"each of them receives dy / (KH*KW).", {"dx": dx * (KH * KW)})]
    if stride[0] < KH or stride[1] < KW:
        m.append(_Mistake("overlap_overwritten", "dx keeps one window's share where windows "
                          "overlap (stride smaller than the window): add with +=, so an input "
                          "in k windows receives the sum of k shares.",
                          {"dx": _scatter_last_write(dy, share, x.shape, size, stride)}))
    return m


def max_pool2d(forward, backward=None) -> CheckResult:
    """Check a max-pooling forward pass and, if given, its backward pass.

    Your two functions keep their own cache, so they are checked as a pair: the
    checker calls ``y, cache = forward(x, size, stride)``, compares ``y`` with
    :func:`cycnn.max_pool2d_forward`, then calls ``dx = backward(dy, cache)`` with the
    cache your forward returned and compares ``dx`` with :func:`cycnn.max_pool2d_backward`.
    The cache can be anything (the input, the argmax of every window, a mask, ...).

    Parameters
    ----------
    forward : callable
        ``forward(x, size, stride) -> (y, cache)``, positional arguments: ``x`` of shape
        (N, C, H, W), ``size`` an int or ``(KH, KW)``, ``stride`` an int or ``(sh, sw)``
        (always given). With ``backward=None`` it may return ``y`` alone.
    backward : callable, optional
        ``backward(dy, cache) -> dx``; ``dy`` has ``y``'s shape.

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Ties go to the first maximum of the window in row-major order, as in cycnn and
    PyTorch. Mistakes recognised: output size off by one, the gradient sent to every
    tied maximum (or to the last one), to the whole window, the mask not multiplied by
    ``dy``, overlapping windows overwriting instead of adding.
    """
    _check_callable("max_pool2d", forward=forward)
    if backward is not None:
        _check_callable("max_pool2d", backward=backward)
    return _run("max_pool2d", (forward, backward),
                _ladder("max_pool2d", with_backward=backward is not None))


def avg_pool2d_backward(backward) -> CheckResult:
    """Check an average-pooling backward pass against :func:`cycnn.avg_pool2d_backward`.

    Parameters
    ----------
    backward : callable
        ``backward(dy, cache) -> dx`` where ``cache`` is the :class:`cycnn.AvgPoolCache`
        returned by :func:`cycnn.avg_pool2d_forward`: ``cache.x_shape`` is
        ``(N, C, H, W)``, ``cache.size`` is ``(KH, KW)``, ``cache.stride`` is
        ``(sh, sw)`` and ``cache.dtype`` the input's dtype.

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Mistakes recognised: dy not divided by the window's size, overlapping windows
    overwriting instead of adding, the shape of dx.
    """
    _check_callable("avg_pool2d_backward", backward=backward)
    return _run("avg_pool2d_backward", (backward,), _ladder("avg_pool2d_backward"))


# =========================================================================== ReLU

RELU_LADDER = [("3 values, none of them 0", (3,), "plain"),
               ("2x3 values, some exactly 0", (2, 3), "zeros"),
               ("a (2, 2, 3, 3) batch of small integers", (2, 2, 3, 3), "ints"),
               ("a (4, 10) array of floats", (4, 10), "normal")]


def _relu_case(spec, dtype):
    title, shape, kind = spec
    rng = np.random.default_rng(300 + RELU_LADDER.index(spec))
    if kind == "plain":
        x = np.array([-1.5, 2.0, 0.5], dtype)
    elif kind == "zeros":
        x = np.array([[-1.0, 0.0, 2.0], [0.0, 3.0, -0.5]], dtype)
    elif kind == "ints":
        x = _ints(rng, shape, -2, 2, dtype)
    else:
        x = _normal(rng, shape, dtype)
        x[0, :3] = 0
    dy = _ints(rng, shape, -3, 3, dtype) if kind != "normal" else _normal(rng, shape, dtype)
    dy[dy == 0] = -1
    if kind == "plain":
        dy = np.array([3.0, -1.0, 2.0], dtype)  # a negative dy where x > 0

    def call(fns, a):
        out, warned = _guarded("relu_backward", fns[0], a["dy"], a["x"])
        return _returns("relu_backward", out, ("dx",)), warned

    def mistakes():
        zero = dy.dtype.type(0)
        return [
            _Mistake("relu_at_zero", "dx passes dy where x is exactly 0. ReLU has no "
                     "derivative at 0; cycnn (like PyTorch) takes it to be 0 there, so the "
                     "gradient passes only where x > 0 (use x > 0, not x >= 0).",
                     {"dx": np.where(x >= 0, dy, zero)}),
            _Mistake("relu_mask_from_dy", "dx is masked where dy > 0. The mask comes from the "
                     "forward input: dx = dy where x > 0, and 0 elsewhere, whatever dy's sign.",
                     {"dx": np.where(dy > 0, dy, zero)}),
            _Mistake("relu_mask_without_dy", "dx is the mask (x > 0) without dy: multiply it "
                     "by the incoming gradient, dx = dy * (x > 0).",
                     {"dx": (x > 0).astype(dy.dtype)}),
            _Mistake("relu_identity", "dx is dy unchanged: ReLU blocks the gradient where "
                     "x <= 0, dx = dy * (x > 0).", {"dx": dy.copy()}),
        ]

    return _Case("", dtype, {"dy": dy, "x": x}, {"dx": _cy.relu_backward(dy, x)}, call, mistakes,
                 _shapes_text(dy=dy, x=x) + (f"; x = {_show(x)}" if x.size <= 6 else ""),
                 {"dx": ", the shape of x"})


def relu_backward(backward) -> CheckResult:
    """Check a ReLU backward pass against :func:`cycnn.relu_backward`.

    Parameters
    ----------
    backward : callable
        ``backward(dy, x) -> dx``, with ``x`` the forward input; any shape.

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    The derivative at exactly ``x = 0`` is 0, as in cycnn and PyTorch. Mistakes
    recognised: the derivative at 0 taken as 1, the mask taken from ``dy`` instead of
    ``x``, the mask returned without ``dy``, ``dy`` passed through unchanged.
    """
    _check_callable("relu_backward", backward=backward)
    return _run("relu_backward", (backward,), _ladder("relu_backward"))


# =========================================================================== dense

DENSE_LADDER = [("1 sample, 2 features in, 2 out (a square weight matrix)", 1, 2, 2, True),
                ("1 sample, 3 features in, 2 out", 1, 3, 2, True),
                ("a batch of 3 samples, 3 features in, 2 out", 3, 3, 2, True),
                ("4 samples, 5 features in, 3 out", 4, 5, 3, False),
                ("8 samples, 16 features in, 10 out", 8, 16, 10, False)]


def _dense_case(spec, dtype):
    title, N, D_in, D_out, small = spec
    rng = np.random.default_rng(400 + DENSE_LADDER.index(spec))
    make = (lambda s, lo, hi: _ints(rng, s, lo, hi, dtype)) if small else \
        (lambda s, lo, hi: _normal(rng, s, dtype))
    x, w, dy = make((N, D_in), 0, 5), make((D_out, D_in), -3, 3), make((N, D_out), -2, 2)
    dy[dy == 0] = 1
    dx, dw, db = _cy.dense_backward(dy, x, w)

    def call(fns, a):
        out, warned = _guarded("dense_backward", fns[0], a["dy"], a["x"], a["w"])
        return _returns("dense_backward", out, ("dx", "dw", "db")), warned

    def mistakes():
        text = (f"{{}} is the right sum divided by the batch size N = {N}: a layer's "
                "gradients are sums over the batch; the 1/N of a mean loss is already in dy.")
        m = [_Mistake("weight_layout", f"dw is the transpose of the right dw, shape "
                      f"{(D_in, D_out)}: cycnn (like PyTorch's Linear) stores w as (D_out, "
                      "D_in), so dw = dy.T @ x has w's shape.", {"dw": dw.T}),
             _Mistake("batch_sum_missing", f"db has shape {(N, D_out)}: it was not summed "
                      "over the batch, db = dy.sum(axis=0).", {"db": _Shape((N, D_out))})]
        if D_in == D_out:
            m.append(_Mistake("weight_layout", "dx matches dy @ w.T: with w of shape (D_out, "
                              "D_in), y = x @ w.T and so dx = dy @ w.", {"dx": dy @ w.T}))
        if N > 1:
            m += [_Mistake("batch_averaged", text.format("dw"), {"dw": dw / N}),
                  _Mistake("batch_averaged", text.format("db"), {"db": db / N}),
                  _Mistake("batch_sum_missing", "dw matches the last sample alone: the "
                           "weights are shared by the batch, so dw = dy.T @ x sums over n.",
                           {"dw": np.outer(dy[-1], x[-1])}),
                  _Mistake("batch_sum_missing", "db matches the last sample alone: db sums dy "
                           "over the batch.", {"db": dy[-1].copy()})]
        return m

    return _Case("", dtype, {"dy": dy, "x": x, "w": w}, {"dx": dx, "dw": dw, "db": db}, call,
                 mistakes, _shapes_text(dy=dy, x=x, w=w),
                 {"dx": " = (N, D_in), the shape of x", "dw": " = (D_out, D_in), the shape of w",
                  "db": " = (D_out,)"})


def dense_backward(backward) -> CheckResult:
    """Check a fully-connected layer's backward pass against :func:`cycnn.dense_backward`.

    Parameters
    ----------
    backward : callable
        ``backward(dy, x, w) -> (dx, dw, db)`` with ``dy`` of shape (N, D_out), ``x`` of
        (N, D_in) and ``w`` of (D_out, D_in), PyTorch's ``Linear`` layout
        (``y = x @ w.T + b``).

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Mistakes recognised: the weights in the transposed layout, db not summed over the
    batch, dw or db averaged over the batch, dw or db from the last sample only.
    """
    _check_callable("dense_backward", backward=backward)
    return _run("dense_backward", (backward,), _ladder("dense_backward"))


# =========================================================================== softmax + CE

SOFTMAX_LADDER = [("1 sample, 3 classes", 1, 3, "small"),
                  ("a batch of 2 samples, 3 classes", 2, 3, "small"),
                  ("4 samples, 5 classes", 4, 5, "normal"),
                  ("3 samples, 4 classes, logits near 1000 (exp overflows)", 3, 4, "large"),
                  ("8 samples, 10 classes", 8, 10, "normal")]


def _softmax_case(spec, dtype):
    title, N, K, kind = spec
    rng = np.random.default_rng(500 + SOFTMAX_LADDER.index(spec))
    if kind == "small":
        logits = _ints(rng, (N, K), -2, 3, dtype)
    else:
        logits = _normal(rng, (N, K), dtype) * (1 if kind == "normal" else 4)
        if kind == "large":
            logits += dtype.type(1000)
    labels = rng.integers(0, K, size=N)
    loss, dlogits = _cy.softmax_cross_entropy(logits, labels)

    def call(fns, a):
        out, warned = _guarded("softmax_cross_entropy", fns[0], a["logits"], a["labels"])
        got = _returns("softmax_cross_entropy", out, ("loss", "dlogits"))
        value = got["loss"]
        if np.ndim(value) != 0:
            raise _Problem("returned", [f"loss has shape {np.shape(value)}; it must be a "
                                        "single number, the mean over the batch."], "loss")
        return got, warned

    def mistakes():
        onehot = np.eye(K, dtype=dtype)[labels]
        with np.errstate(all="ignore"):
            e = np.exp(logits.astype(dtype))
            p = e / e.sum(axis=1, keepdims=True)
            naive_loss = -np.mean(np.log(p[np.arange(N), labels]))
        overflow = ("{} holds NaN or inf: exp of logits near 1000 overflows. Subtract each "
                    "row's maximum before exp (the softmax does not change) and compute the "
                    "loss from log-softmax, (z - m) - log(sum exp(z - m)).")
        m = [_Mistake("overflow", overflow.format("dlogits"), {"dlogits": (p - onehot) / N}),
             _Mistake("overflow", overflow.format("loss"), {"loss": naive_loss}),
             _Mistake("labels_not_subtracted", "dlogits matches softmax(logits) / N: subtract "
                      "the one-hot labels, dlogits = (softmax(logits) - Y) / N.",
                      {"dlogits": np.exp(logits - logits.max(1, keepdims=True)) /
                       np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True) / N}),
             _Mistake("sign_flipped", "dlogits matches (Y - softmax(logits)) / N: the "
                      "gradient of the loss is (softmax(logits) - Y) / N, which points uphill "
                      "(gradient descent subtracts it).", {"dlogits": -dlogits}),
             _Mistake("sign_flipped", "loss is negative: the cross-entropy is MINUS the mean "
                      "log-probability of the right class, a positive number.", {"loss": -loss})]
        if N > 1:
            m += [_Mistake("loss_grad_not_averaged", f"dlogits is N = {N} times too large: "
                           "the loss is the mean over the batch, (1/N) sum over n, so its "
                           "gradient is (softmax(logits) - Y) / N, not softmax(logits) - Y.",
                           {"dlogits": dlogits * N}),
                  _Mistake("loss_not_averaged", f"loss is the sum over the batch, N = {N} times "
                           "the right value: cycnn (like PyTorch) returns the mean.",
                           {"loss": loss * N})]
        return m

    shown = f"logits {logits.shape}, labels {labels.shape} = {labels.tolist()}"
    return _Case("", dtype, {"logits": logits, "labels": labels},
                 {"loss": float(loss), "dlogits": dlogits}, call, mistakes, shown,
                 {"dlogits": " = (N, K), the shape of logits"})


def softmax_cross_entropy(loss_fn) -> CheckResult:
    """Check softmax + cross-entropy against :func:`cycnn.softmax_cross_entropy`.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(logits, labels) -> (loss, dlogits)`` with ``logits`` of shape (N, K)
        and ``labels`` an int array of N class indices; ``loss`` is the batch mean, a
        single number, and ``dlogits`` has the shape of ``logits``.

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    Mistakes recognised: the loss gradient not averaged over the batch, the loss summed
    instead of averaged, the labels not subtracted, the sign flipped, overflow for large
    logits.
    """
    _check_callable("softmax_cross_entropy", loss_fn=loss_fn)
    return _run("softmax_cross_entropy", (loss_fn,), _ladder("softmax_cross_entropy"))


# =========================================================================== a network

def _net_dense(dt, rng):
    return _cy.Sequential(_cy.Dense(3, 2, rng=rng, dtype=dt))


def _net_mlp(dt, rng):
    cy = _cy
    return cy.Sequential(cy.Dense(4, 3, rng=rng, dtype=dt), cy.ReLU(),
                         cy.Dense(3, 2, rng=rng, dtype=dt))


def _net_conv(dt, rng):
    cy = _cy
    return cy.Sequential(cy.Conv2D(1, 2, 2, rng=rng, dtype=dt), cy.ReLU(), cy.Flatten(),
                         cy.Dense(8, 3, rng=rng, dtype=dt))


def _net_pool(dt, rng):
    cy = _cy
    return cy.Sequential(cy.Conv2D(1, 2, 3, padding=1, rng=rng, dtype=dt), cy.ReLU(),
                         cy.MaxPool2D(2), cy.Flatten(), cy.Dense(8, 3, rng=rng, dtype=dt))


def _net_lenet(dt, rng):
    cy = _cy
    return cy.Sequential(cy.Conv2D(2, 3, 3, stride=2, padding=1, rng=rng, dtype=dt), cy.ReLU(),
                         cy.AvgPool2D(2), cy.Flatten(), cy.Dense(12, 4, rng=rng, dtype=dt))


#: (title, builder, input shape)
NETWORK_LADDER = [
    ("Dense(3, 2), 1 sample", _net_dense, (1, 3)),
    ("Dense(4, 3), ReLU, Dense(3, 2), 2 samples", _net_mlp, (2, 4)),
    ("Conv2D(1, 2, 2), ReLU, Flatten, Dense(8, 3), 1 image 1x3x3", _net_conv, (1, 1, 3, 3)),
    ("Conv2D(1, 2, 3, padding=1), ReLU, MaxPool2D(2), Flatten, Dense(8, 3), 2 images 1x4x4",
     _net_pool, (2, 1, 4, 4)),
    ("Conv2D(2, 3, 3, stride=2, padding=1), ReLU, AvgPool2D(2), Flatten, Dense(12, 4), "
     "3 images 2x8x8", _net_lenet, (3, 2, 8, 8)),
]


def _network_case(spec, dtype):
    title, build, xshape = spec
    seed = 600 + NETWORK_LADDER.index(spec)

    def fresh():
        model = build(dtype, np.random.default_rng(seed))
        for layer in model.layers:  # biases too, so that every parameter matters
            if "bias" in layer.params:
                layer.params["bias"][...] = np.random.default_rng(seed + 1).standard_normal(
                    layer.params["bias"].shape)
        return model

    rng = np.random.default_rng(seed + 2)
    x = _normal(rng, xshape, dtype)
    model, twin = fresh(), fresh()
    model.train()
    twin.train()
    logits = model.forward(x)
    labels = rng.integers(0, logits.shape[1], size=xshape[0])
    _, dy = _cy.softmax_cross_entropy(logits, labels)
    twin.forward(x)
    expected = {"dx": twin.backward(dy.copy())}
    names = []
    for i, layer in enumerate(twin.layers):
        for k, g in layer.grads.items():
            label = f"model.layers[{i}].grads[{k!r}]"
            expected[label] = g
            names.append((label, i, k))
    params = {(i, k): v.copy() for i, layer in enumerate(model.layers)
              for k, v in layer.params.items()}
    for layer in model.layers:
        layer.grads.clear()

    def call(fns, a):
        out, warned = _guarded("backward", fns[0], a["model"], a["dy"])
        got = {"dx": out}
        for label, i, k in names:
            got[label] = model.layers[i].grads.get(k)
            if got[label] is None:
                raise _Problem("returned", [
                    f"{label} is missing: the backward pass of layer {i} "
                    f"({model.layers[i]!r}) was not called, or did not store its gradient. "
                    "Go through model.layers in reverse order and pass each layer's result "
                    "on: dy = layer.backward(dy)."], label)
        return got, warned

    def watched():
        return [f"Your backward changed model.layers[{i}].params[{k!r}]: a backward pass "
                "computes gradients only; the optimizer changes the weights afterwards."
                for (i, k), v in params.items()
                if not np.array_equal(v, model.layers[i].params[k])]

    def mistakes():
        if not any(isinstance(layer, _cy.ReLU) for layer in model.layers):
            return []
        skip = fresh()
        skip.train()
        skip.forward(x)
        g = dy.copy()
        for layer in reversed(skip.layers):
            if not isinstance(layer, _cy.ReLU):
                g = layer.backward(g)
        outs = {"dx": g}
        for label, i, k in names:
            outs[label] = skip.layers[i].grads[k]
        return [_Mistake("relu_skipped", "the gradients match a backward pass that skips the "
                         "ReLU layers: every layer's backward must run, in reverse order, ReLU "
                         "included (it zeroes the gradient where its input was <= 0).", outs)]

    shown = (f"model = Sequential({', '.join(repr(layer) for layer in model.layers)}) after "
             f"model.forward(x) with x {x.shape}; dy {dy.shape} from softmax_cross_entropy")
    notes = {"dx": ", the shape of x"}
    return _Case("", dtype, {"model": model, "dy": dy}, expected, call, mistakes, shown,
                 notes, watched)


def network_backward(backward) -> CheckResult:
    """Check a whole network's backward pass against :meth:`cycnn.Sequential.backward`.

    Parameters
    ----------
    backward : callable
        ``backward(model, dy) -> dx`` for a :class:`cycnn.Sequential` ``model`` on which
        ``model.forward(x)`` has just run in training mode, and ``dy``, the gradient of
        the loss with respect to the model's output. It must run every layer's backward
        pass, in reverse order, so that each layer's ``grads`` holds its gradients, and
        return the gradient with respect to ``x``. For example::

            def backward(model, dy):
                for layer in reversed(model.layers):
                    dy = layer.backward(dy)
                return dy

    Returns
    -------
    CheckResult
        Its repr is the report.

    Notes
    -----
    The checker builds each network twice from the same seed, runs ``model.forward``
    on both, calls your function on one and ``Sequential.backward`` on the other, and
    compares ``dx`` and every layer's ``grads``. It empties each layer's ``grads``
    before calling your function. Mistakes recognised: a layer's backward not called,
    the ReLU layers skipped, the weights changed.
    """
    _check_callable("network_backward", backward=backward)
    return _run("network_backward", (backward,), _ladder("network_backward"))


# =========================================================================== the ladders

def _ladder(name, with_backward=True):
    """The cases of checker ``name`` as ``(title, build)`` pairs; ``build(dtype)`` makes
    the case (its arguments, the right outputs and the known mistakes)."""
    if name in ("conv2d_forward", "conv2d_backward"):
        back = name == "conv2d_backward"
        return [(s[0], (lambda dt, s=s: _conv_case(s, dt, backward=back))) for s in CONV_LADDER]
    if name == "max_pool2d":
        return [(s[0], (lambda dt, s=s: _pool_case(s, dt, "max", with_backward)))
                for s in POOL_LADDER]
    if name == "avg_pool2d_backward":  # ties change nothing for an average
        return [(s[0], (lambda dt, s=s: _pool_case(s, dt, "avg"))) for s in POOL_LADDER
                if s[-1] != "tie"]
    builders = {"relu_backward": (_relu_case, RELU_LADDER),
                "dense_backward": (_dense_case, DENSE_LADDER),
                "softmax_cross_entropy": (_softmax_case, SOFTMAX_LADDER),
                "network_backward": (_network_case, NETWORK_LADDER)}
    build, ladder = builders[name]
    return [(s[0], (lambda dt, s=s: build(s, dt))) for s in ladder]
