"""The docs pages: their examples are tested, complete and tied to the source.

* The Sybil set-up in the root conftest.py fails on a wrong expected output (proved on a
  temporary page, both through Sybil's API and through a real pytest run).
* Every public name of ``cycnn.__all__`` has an entry on the API page.
* Every piece of source a page includes by line range (pymdownx.snippets) still shows the
  code the page says it shows; if the file moved on, the failure names the new lines.
* Every number the docs take from the source documents is printed by a running example.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sybil.example import SybilFailure

import cycnn

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _docs_conftest():
    """The root conftest.py as a module, under a name of its own."""
    spec = importlib.util.spec_from_file_location("cycnn_docs_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- Sybil fails

GOOD_PAGE = """\
# A page

```python
>>> import numpy as np
>>> np.set_printoptions(precision=6, suppress=True)
>>> print(np.array([0.1234567, 2.0]))
[0.123457 2.      ]

```
"""

WRONG_PAGE = GOOD_PAGE.replace("[0.123457 2.      ]", "[0.123456 2.      ]")


def _evaluate_all(page: Path):
    sybil = _docs_conftest().make_sybil(path=str(page.parent))
    document = sybil.parse(page)
    namespace = document.namespace
    for setup in [sybil.setup] if sybil.setup else []:
        setup(namespace)
    try:
        for example in document.examples():
            example.evaluate()
    finally:
        if sybil.teardown:
            sybil.teardown(namespace)


def test_sybil_passes_a_right_output(tmp_path):
    page = tmp_path / "good.md"
    page.write_text(GOOD_PAGE)
    _evaluate_all(page)


def test_a_page_s_print_options_do_not_leak(tmp_path):
    """A page's own print options are undone after it: the next page starts afresh."""
    page = tmp_path / "good.md"
    page.write_text(GOOD_PAGE)
    before = np.get_printoptions()
    _evaluate_all(page)
    assert np.get_printoptions() == before


def test_sybil_fails_on_a_wrong_output(tmp_path):
    page = tmp_path / "wrong.md"
    page.write_text(WRONG_PAGE)
    with pytest.raises(SybilFailure, match=r"0\.123456"):
        _evaluate_all(page)


def test_pytest_run_fails_on_a_wrong_output(tmp_path):
    """The same through pytest, with the real conftest.py: exit status 1, failure shown."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "wrong.md").write_text(WRONG_PAGE)
    (tmp_path / "docs" / "good.md").write_text(GOOD_PAGE)
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "docs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 5 passed" in proc.stdout, proc.stdout  # 3 examples a page, 1 wrong
    assert "wrong.md" in proc.stdout and "0.123456" in proc.stdout


# --------------------------------------------------------------------------- stock doctest

#: pages with examples (the API page has none of its own)
EXAMPLE_PAGES = sorted(p.name for p in DOCS.glob("*.md") if "```python" in p.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_the_standard_doctest_runner_passes_on_the_page(page):
    """A reader told that the pages are doctests runs ``python -m doctest`` on one: it must
    pass with nothing set up beforehand, in a fresh interpreter, from any directory."""
    proc = subprocess.run(
        [sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(DOCS / page)],
        cwd=ROOT / "tests", capture_output=True, text=True, timeout=300, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_standard_runner_fails_on_a_wrong_output(tmp_path):
    """... and it is a real check: a page with a wrong output fails it."""
    page = tmp_path / "wrong.md"
    page.write_text(WRONG_PAGE)
    proc = subprocess.run([sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(page)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "0.123456" in proc.stdout, proc.stdout


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_the_page_sets_its_print_options_in_its_first_example(page):
    """Self-contained: the first example block sets what the outputs depend on."""
    first = (DOCS / page).read_text().split("```python", 1)[1].split("```", 1)[0]
    assert ">>> np.set_printoptions(precision=6, suppress=True)" in first, (
        f"{page}: the first example must set np.set_printoptions(precision=6, suppress=True)")


# --------------------------------------------------------------------------- exercises

#: the marker at the end of a teaching page where its exercises will go (issue 12): the
#: page's "## Exercises" section is written right after it, as the page's last section
EXERCISES_MARKER = "<!-- exercises: the page's \"## Exercises\" section goes below this line -->"
#: pages that are not teaching pages: the entry points, references and the checker tool
NOT_TEACHING = {"index.md", "notation.md", "performance.md", "api.md", "errors.md", "check.md"}
#: pages written by a script rather than by hand: benchmarks/run_all.py writes the tables of
#: performance-results.md on the machine it runs on, so it holds measurements, not examples
GENERATED_PAGES = {"performance-results.md"}
TEACHING_PAGES = [p for p in EXAMPLE_PAGES if p not in NOT_TEACHING]


@pytest.mark.parametrize("page", TEACHING_PAGES)
def test_teaching_page_shows_a_figure(page):
    assert re.search(r"!\[[^\]]+\]\(figures/", (DOCS / page).read_text()), (
        f"{page}: no figure (made by docs/figures/make_figures.py)")


@pytest.mark.parametrize("page", TEACHING_PAGES)
def test_teaching_page_ends_with_the_place_for_its_exercises(page):
    text = (DOCS / page).read_text()
    assert text.count(EXERCISES_MARKER) == 1, (
        f"{page} must have the line {EXERCISES_MARKER!r} once, at its end")
    after = text.split(EXERCISES_MARKER, 1)[1].strip()
    assert not after or after.startswith("## Exercises"), (
        f"{page}: only the exercises may follow the exercises marker, found {after[:60]!r}")


#: the pages whose subject is a backward pass: at least one solution there runs a checker
#: of cycnn.check on the learner's implementation
BACKWARD_PAGES = {"conv-weight-gradient.md", "conv-input-gradient.md", "stride-padding.md",
                  "conv-dilation-groups.md", "im2col.md", "transposed-conv.md", "pooling.md",
                  "dense-softmax.md", "network.md", "sources.md"}
_EXERCISE = re.compile(r"^### Exercise (\d+): \S.*$", re.MULTILINE)
_SOLUTION = '??? success "Solution"'
_CHECKER_CALL = re.compile(r"\bcheck\.(\w+)\(")


def exercises(text: str) -> list[dict]:
    """The exercises of a page: its number, the question and the solution block of each.

    An exercise is a ``### Exercise N: title`` heading in the page's ``## Exercises``
    section (after the exercises marker), its question the text up to the first line
    ``??? success "Solution"``, and the solution that block's indented body.
    """
    section = text.split(EXERCISES_MARKER, 1)[-1]
    heads = list(_EXERCISE.finditer(section))
    found = []
    for k, head in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(section)
        body = section[head.end():end]
        question, _, rest = body.partition("\n" + _SOLUTION + "\n")
        solution = [line for line in rest.splitlines()
                    if not line.strip() or line.startswith("    ")] if rest else []
        found.append({"number": int(head[1]), "question": question.strip(),
                      "solution": "\n".join(solution), "solutions": body.count(_SOLUTION),
                      "start": text.index(head[0])})
    return found


@pytest.mark.parametrize("page", TEACHING_PAGES)
def test_teaching_page_has_three_to_five_exercises_with_executed_solutions(page):
    text = (DOCS / page).read_text()
    assert "\n## Exercises\n" in text.split(EXERCISES_MARKER, 1)[-1], (
        f"{page}: no '## Exercises' section after the exercises marker")
    found = exercises(text)
    assert 3 <= len(found) <= 5, f"{page}: {len(found)} exercises, expected 3 to 5"
    assert [e["number"] for e in found] == list(range(1, len(found) + 1)), (
        f"{page}: exercises not numbered 1, 2, ...")
    for e in found:
        where = f"{page}, exercise {e['number']}"
        assert e["question"], f"{where}: no question before the solution"
        assert e["solutions"] == 1, f"{where}: {e['solutions']} solution blocks, expected 1"
        assert "```python\n    >>> " in e["solution"], (
            f"{where}: the solution shows no executed example (```python with >>>)")


def test_sybil_runs_every_solution_block():
    """Every solution's examples are among those Sybil collects on the page."""
    sybil = _docs_conftest().make_sybil(path=str(DOCS))
    missing = []
    for page in TEACHING_PAGES:
        text = (DOCS / page).read_text()
        starts = [example.start for example in sybil.parse(DOCS / page).examples()]
        for e in exercises(text):
            first = text.index(_SOLUTION, e["start"])
            last = first + len(_SOLUTION) + len(e["solution"])
            if not any(first < at < last for at in starts):
                missing.append(f"{page}, exercise {e['number']}")
    assert not missing, f"solutions Sybil does not run: {missing}"


#: backward-pass pages whose layers cycnn.check has no checker for: a solution there checks
#: the learner's backward pass with cycnn.gradcheck instead
GRADCHECK_PAGES = {"more-layers.md"}


@pytest.mark.parametrize("page", sorted(GRADCHECK_PAGES))
def test_a_solution_on_a_layer_page_runs_gradcheck(page):
    assert page in TEACHING_PAGES
    assert any("cycnn.gradcheck(" in e["solution"] for e in exercises((DOCS / page).read_text())), (
        f"{page}: no solution checks a backward pass with cycnn.gradcheck")


@pytest.mark.parametrize("page", sorted(BACKWARD_PAGES))
def test_a_solution_on_a_backward_pass_page_runs_a_checker(page):
    assert page in TEACHING_PAGES
    called = {name for e in exercises((DOCS / page).read_text())
              for name in _CHECKER_CALL.findall(e["solution"])}
    assert called, f"{page}: no solution calls a checker of cycnn.check"
    unknown = called - set(cycnn.check.__all__)
    assert not unknown, f"{page}: check.{sorted(unknown)} is not a checker of cycnn.check"


SOLUTION_PAGE = GOOD_PAGE + f"""
{EXERCISES_MARKER}

## Exercises

### Exercise 1: A third

What is one third, to six decimals?

??? success "Solution"
    Divide:

    ```python
    >>> print(np.array([1.0]) / 3)
    [0.333333]

    ```
"""
WRONG_SOLUTION_PAGE = SOLUTION_PAGE.replace("[0.333333]", "[0.333334]")


def test_a_wrong_solution_fails_sybil_and_the_standard_runner(tmp_path):
    """A solution folded in a ``???`` block is executed: a wrong one fails both ways."""
    good, wrong = tmp_path / "good.md", tmp_path / "wrong.md"
    good.write_text(SOLUTION_PAGE)
    wrong.write_text(WRONG_SOLUTION_PAGE)
    assert [e["number"] for e in exercises(SOLUTION_PAGE)] == [1]
    _evaluate_all(good)
    with pytest.raises(SybilFailure, match=r"0\.333334"):
        _evaluate_all(wrong)
    for page, status in ((good, 0), (wrong, 1)):
        proc = subprocess.run([sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(page)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == status, proc.stdout
    assert "0.333334" in proc.stdout


def test_every_page_has_examples_that_sybil_collects():
    sybil = _docs_conftest().make_sybil(path=str(DOCS))
    counts = {}
    for page in sorted(DOCS.glob("*.md")):
        counts[page.name] = sum(1 for _ in sybil.parse(page).examples())
    empty = [name for name, n in counts.items()
             if n == 0 and name not in {"api.md"} | GENERATED_PAGES]
    assert not empty, f"pages without a single tested example: {empty}"


# --------------------------------------------------------------------------- API page

def test_api_page_lists_every_public_name():
    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^::: cycnn\.([A-Za-z_][\w]*)\s*$", text, re.MULTILINE))
    missing = [name for name in cycnn.__all__ if name not in documented]
    assert not missing, f"docs/api.md has no '::: cycnn.NAME' entry for: {missing}"
    unknown = sorted(documented - set(cycnn.__all__))
    assert not unknown, f"docs/api.md documents names that are not in cycnn.__all__: {unknown}"



def _pytorch_table(text):
    """The rows of the API page's table of PyTorch's arguments, grouped by operator:
    {first cell of a group: every name in backticks in the argument cells of its rows}."""
    section = text.split("## PyTorch's arguments", 1)[1].split("\n## ", 1)[0]
    groups, current = {}, None
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] == "PyTorch" or set("".join(cells)) <= set("- "):
            continue  # not a row, the header or the line under it
        if cells[0]:
            current = groups.setdefault(cells[0], set())
        current.update(re.findall(r"`(\w+)", cells[1]))
    return groups


def _pytorch_arguments(torch, name):
    """The parameter names of torch.nn.functional.NAME or torch.nn.NAME (a module: its
    constructor's and its forward's), from the signature or, for the builtins that have
    none, the first line of the docstring."""
    if name[0].isupper():
        module = getattr(torch.nn, name)
        sigs = [inspect.signature(module.__init__), inspect.signature(module.forward)]
        return {p for sig in sigs for p in sig.parameters if p != "self"}
    fn = getattr(torch.nn.functional, name, None) or getattr(torch, name)
    try:
        found = set(inspect.signature(fn).parameters) - {"args", "kwargs"}
    except ValueError:
        found = set()
    if not found:
        head = re.match(rf"\s*{name}\(([^)]*)\)", fn.__doc__)
        found = {a.split("=")[0].strip(" *") for a in head[1].split(",")}
    return found - {"_stacklevel"}  # private: PyTorch's own warning machinery


def test_api_table_names_every_pytorch_argument():
    """The table of PyTorch's arguments lists every argument of every operator and module
    it names, as PyTorch (the installed version) defines them."""
    from conftest import torch_or_skip

    torch = torch_or_skip()
    groups = _pytorch_table((DOCS / "api.md").read_text())
    assert len(groups) == 9, groups  # conv2d, conv_transpose2d, ..., softmax
    missing = {}
    for first, listed in groups.items():
        for name in re.findall(r"`(\w+)`", first):
            lost = sorted(_pytorch_arguments(torch, name) - listed)
            if lost:
                missing[name] = lost
    assert not missing, f"docs/api.md's table of PyTorch's arguments misses: {missing}"


# --------------------------------------------------------------------------- included code

#: every source include on the docs pages -> what the included code must contain.
#: ``file:@name`` includes the whole top-level ``def name`` (resolved by mkdocs_hooks.py);
#: a plain line range ``file:first:last`` is allowed only if listed here too, with the text
#: its first line starts with as the first needle.
INCLUDES = {
    "cycnn/_conv.pyx:@conv2d_forward": [
        "# y[n,f,i,j] = b[f] + sum_{c,p,q}", "prange(N",
        "y[n, f, i, j] += wv * xp[n, c0 + c, i * sh + p * rh,",
    ],
    "cycnn/_conv.pyx:@conv2d_backward_weight": [
        "# dw[f,c,p,q] = sum_{n,i,j}", "prange(F", "dw[f, c, p, q] = acc",
    ],
    "cycnn/_conv.pyx:@conv2d_backward_input": [
        "prange(N", "dxp[n, c, i * sh + p * rh, j * sw + q * rw] += wv * dy[n, f, i, j]",
    ],
    "cycnn/_pool.pyx:@max_pool2d_forward": [
        "prange(NC", "v > best", "argmax[nc, i, j] = best_at",
    ],
    "cycnn/_pool.pyx:@max_pool2d_backward": [
        "dx[nc, argmax[nc, k]] += dy[nc, k]",
    ],
    "cycnn/_pool.pyx:@avg_pool2d_backward": [
        "share = dy[nc, i, j] / area", "dx[nc, i * sh + p, j * sw + q] += share",
    ],
    "cycnn/_act.pyx:@_relu_backward_run": ["dx[i] = dy[i] if x[i] > 0 else 0"],
    "cycnn/dense.py:@dense_backward": ["dy @ w, dy.T @ x, dy.sum(axis=0)"],
    "cycnn/activations.py:@log_softmax": ["z.max(axis=axis, keepdims=True)",
                                          "np.log(np.exp(shifted)"],
    "cycnn/gradcheck.py:@numerical_gradient": ["flat[k] = keep + eps", "(2 * eps)"],
    "cycnn/_dispatch.py:@load": ["candidates()", "import_module"],
    "cycnn/_conv.pyx:@im2col": ["prange(C * KH * KW", "cols[r, k + j]"],
    "cycnn/_conv.pyx:@col2im": ["dxp[n, c, i * sh + p * rh, j * sw + q * rw] += dcols[r, k + j]"],
    "cycnn/conv.py:@_backward_im2col": ["np.matmul(dyt[g * Fg:(g + 1) * Fg], cols[g * K:",
                                        "np.matmul(w2[g * Fg:(g + 1) * Fg].T, dyt",
                                        "_conv.col2im("],
    "cycnn/geometry.py:@conv_output_size": ["span = dilation * (k - 1) + 1",
                                            "room = n + before + after - span",
                                            "out = room // stride + 1"],
    "cycnn/geometry.py:@resolve_padding": ["((ph, ph), (pw, pw))", "th // 2, th - th // 2"],
    "cycnn/model.py:@Sequential.forward": ["for layer in self.layers", "layer.forward(x)"],
    "cycnn/model.py:@Sequential.backward": ["reversed(self.layers)",
                                            "layer.backward(dy, need_dx=want)"],
    "cycnn/layers.py:@Conv2D.backward": ["conv2d_backward(dy, self._cached()"],
    "cycnn/model.py:@Sequential.train_step": [
        "self.forward(x)", "loss.forward(logits, y)",
        "self.backward(loss.backward(), need_dx=False)", "optimizer.step(",
    ],
    "cycnn/training.py:7:9": ["    for epoch in range(initial_epoch, epochs):",
                              "model.train_step(x[idx], y[idx], optimizer)"],
    "cycnn/optim.py:@SGD._update": ["w -= self.lr * g"],
    "cycnn/_norm.pyx:@batch_norm_backward": [
        "prange(C", "sw = sw + dy[n, c, k] * xhat[n, c, k]",
        "scale * (dy[n, c, k] - mb - xhat[n, c, k] * mw)",
    ],
    "cycnn/_norm.pyx:@batch_stats": ["prange(C", "d = x[n, c, k] - m", "var[c] = s / (N * L)"],
    "cycnn/layers.py:@_BatchNorm.forward": ["batch_norm_forward(", "num_batches_tracked"],
    "cycnn/dropout.py:@dropout_forward": ["rng.random(x.shape", "1 / (1 - p)"],
    "cycnn/recipes.py:@build": ["MODELS[recipe[\"model\"]](seed, dtype, **recipe.get(",
                                "make_schedule(recipe, optimizer, n_train)"],
    "cycnn/augment.py:@affine_warp": ["np.clip(", "flat.take(top)", "flat.take(top + Wp + 1)"],
    "cycnn/schedules.py:@OneCycleLR._phase": ["for k, (end, lr0, lr1, m0, m1)",
                                             "(t - start) / (end - start)"],
    "cycnn/schedules.py:@_cos_between": ["math.cos(math.pi * pct) + 1"],
    "cycnn/geometry.py:@fold_padding": [
        "dxp[..., pt:pt + size[0], pl:pl + size[1]].copy()",
        "dxr[..., rows[t], :] += dxp[..., t, :]", "dx[..., cols[s]] += dxr[..., s]",
    ],
    "cycnn/conv.py:@conv_transpose2d_forward": [
        "check_conv_transpose_args(",
        "_backward(func, algorithm, x4, None, w, yf, None, geo, nt)",
        "y = yf[:, :, pt:pt + OH, pl:pl + OW]",
    ],
    "cycnn/check.py:@_matches": ["isinstance(wrong, _Shape)",
                                 "_close(r, w64, dtype) and not _close(expected, w64, dtype)"],
    "cycnn/reference.py:@conv2d_backward": [
        "dilate(dy, (sh, sw))", "rotate180(wd[fi])", "dxp[:, :, pt:pt + H, pl:pl + W]",
        "dy.sum(axis=(0, 2, 3))",
    ],
}

_INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$', re.MULTILINE)


def _hooks():
    spec = importlib.util.spec_from_file_location("cycnn_mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _includes():
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for spec in _INCLUDE.findall(page.read_text()):
            found.append((page.name, spec))
    return found


def test_source_includes_are_registered():
    unregistered = [f"{page}: {spec}" for page, spec in _includes() if spec not in INCLUDES]
    assert not unregistered, (
        "list these includes in INCLUDES in tests/test_docs.py with the code they must "
        "show:\n" + "\n".join(unregistered)
    )


@pytest.mark.parametrize("spec", sorted(INCLUDES))
def test_included_code_is_the_code_the_page_describes(spec):
    needles = INCLUDES[spec]
    if ":@" in spec:
        path, name = spec.split(":@")
        ranges = _hooks().block_lines(str(ROOT / path), name)
    else:
        path, first, last = spec.rsplit(":", 2)
        ranges = [(int(first), int(last))]
    lines = (ROOT / path).read_text().splitlines()
    text = "\n".join("\n".join(lines[a - 1:b]) for a, b in ranges)
    first, last = ranges[0][0], ranges[-1][1]
    if ":@" not in spec:
        assert text.startswith(needles[0]), f"{spec} no longer starts with {needles[0]!r}"
    missing = [n for n in needles if n not in text]
    assert not missing, f"{spec} (lines {first}-{last}) no longer contains {missing}"


def test_include_by_name_takes_the_whole_function(tmp_path):
    source = tmp_path / "k.py"
    source.write_text(textwrap.dedent('''\
        x = 1


        def f(a,
              b):
            s = 0

            return s


        def g():
            """Doc.

            More.
            """
            # g's body
            pass
        def h():  # a comment: the signature ends here
            """One line."""


        class K:
            """A class."""

            def m(self):
                """Method doc."""
                return 1

            def n(self):
                pass
        '''))
    hooks = _hooks()
    assert hooks.block_lines(str(source), "f") == [(4, 8)]
    assert hooks.block_lines(str(source), "g") == [(11, 11), (16, 17)]  # no docstring
    assert hooks.block_lines(str(source), "h") == [(18, 18)]
    assert hooks.block_lines(str(source), "K.m") == [(25, 25), (27, 27)]
    assert hooks.block_lines(str(source), "K.n") == [(29, 30)]
    page = 'text\n```cython\n--8<-- "k.py:@g"\n```\n'
    assert hooks.expand_includes(page, str(tmp_path)) == \
        'text\n```cython\n--8<-- "k.py:11:11,16:17"\n```\n'


# --------------------------------------------------------------------------- seed numbers

def _expected_outputs() -> dict[str, str]:
    """Every page's doctest expected output, joined per page."""
    sybil = _docs_conftest().make_sybil(path=str(DOCS))
    wants = {}
    for page in sorted(DOCS.glob("*.md")):
        parts = []
        for example in sybil.parse(page).examples():
            want = getattr(example.parsed, "want", None)
            if want:
                parts.append(want)
        wants[page.name] = "\n".join(parts)
    return wants


#: numbers of the five source documents (shared/seeds/) that a learner could try to
#: reproduce -> the page whose running examples must print them
SEED_NUMBERS = {
    "index.md": ["[[0.044606 0.094061]\n [0.011262 0.068288]]"],
    "conv-forward.md": [
        "28x28x6", "28\n",                                # 32x32x3, six 5x5x3 filters (004)
        "1000000",                                         # 100x100 image, 100 neurons (000)
        "[0.3 0.6 0.1]",                                   # the grey filter (000)
        "[[ 1.  2.  1.]\n [ 0.  0.  0.]\n [-1. -2. -1.]]",  # the edge filter (000)
    ],
    "conv-weight-gradient.md": [
        "(4, 4)",                                          # (H - k1 + 1) x (W - k2 + 1) (001)
        "[[0.044606 0.094061]\n [0.011262 0.068288]]",     # the answer's gradient (001)
        "[[-0.152303",                                     # SGD step from w00 = -0.13 (001)
        "[0.0836]",                                        # db = sum of the delta
        "((4, 4), 0.0686)",                                # its per-position bias b_ij (001)
    ],
    "dense-softmax.md": [
        "[-0.340999  0.242433  0.098566]",          # dZ = Y_hat - Y, by the chain rule (003)
        "[[0.044606 0.094061]\n [0.011262 0.068288]]",  # MSE delta -> the seed's dW (001)
    ],
    "pooling.md": [
        "[[6. 8.]\n [3. 4.]]",                             # window maxima (004)
        "[[0 0 0 0]\n [0 1 0 1]\n [1 0 0 0]\n [0 0 0 1]]",
        "[[0.25 0.25]\n [0.25 0.25]]",                     # 1/4 for 2x2 (003, 004)
        "0.111111",                                        # 1/9 for 3x3 (004)
    ],
    "stride-padding.md": [
        "(5, 13)",                                         # 3x5 dilated with (2, 3) (002)
        "[[1 0 0 2 0 0 3 0 0 4 0 0 5]",
        "[5 0 0 6 0 0 7 0 0 8 0 0 9]]",
        "(2, 2, 5, 7)",                                    # the seeded batch (002), in full:
        "sample 0, channel 0:\n[[9 4 0]\n [1 9 0]\n [1 8 9]]\n[[9 0 0 4 0 0 0]",
        "sample 0, channel 1:\n[[0 8 6]\n [4 3 0]\n [4 6 8]]\n[[0 0 0 8 0 0 6]",
        "sample 1, channel 0:\n[[1 8 4]\n [1 3 6]\n [5 3 9]]\n[[1 0 0 8 0 0 4]",
        "sample 1, channel 1:\n[[6 9 1]\n [9 4 2]\n [6 7 8]]\n[[6 0 0 9 0 0 1]",
        "[[9. 8. 7.]\n [6. 5. 4.]\n [3. 2. 1.]]",          # K1 rotated (002)
        "(214, 145)",                                      # 'same' for stride (7, 4) (002)
    ],
    "sources.md": [                                        # the book's worked example (002)
        ("[[7 0 3 7 0 8 2 0]\n [8 7 9 5 4 1 6 6]\n [1 7 2 9 0 0 1 8]\n [7 8 2 1 0 0 2 6]\n"
         " [3 6 6 4 8 9 0 0]]"),                           # Kr, filter 0
        ("[[9 0 2 5 1 0 6 6]\n [9 1 5 3 8 5 7 0]\n [0 9 3 0 2 9 3 4]\n [6 2 1 9 6 3 8 6]\n"
         " [6 5 6 0 5 7 8 3]]"),                           # Kr, filter 1
        "(256, 2, 36, 47)",                                # Z
        "((256, 1, 36, 47), (2, 1, 5, 8), (2,))",          # dX, dK, db (per filter)
        "(2, 36, 47)",                                     # the book's db
        "[(256, 1, 250, 192), (256, 2, 254, 199), (256, 1, 250, 192)]",  # Xp, dZ_Dp, dXp
        "261.0",                                           # its 'back' einsum's error
        "(1, 2, 66, 83)",                                  # (214, 145) read per side
        "((254, 199), (250, 192))",                        # dZ_Dp is not Xp's size
        "-0.41703",                                        # cross-entropy without minus (003)
        "((1, 2, 2, 2), 1.5)",                             # average across patches (003)
        "[[3.25 5.25]",
    ],
}

#: numbers of the sources that cannot be reproduced, or are a source's mistake or
#: convention, and the words that explain them on the page
SEED_EXPLAINED = {
    "conv-weight-gradient.md": ["\\(x_{0,0} = 0.25\\)", "cannot be\nrecomputed"],
    "sources.md": ["\\(x_{0,0} = 0.25\\)", "cannot be recomputed",
                   "padding it to make its size same as Xp", "1.0 and 1.0 + 1e-9",
                   "\\(dZ = \\hat{Y} - Y\\)"],
}


@pytest.mark.parametrize("page", sorted(SEED_EXPLAINED))
def test_seed_numbers_that_cannot_be_printed_are_explained(page):
    text = (DOCS / page).read_text()
    missing = [s for s in SEED_EXPLAINED[page] if s not in text]
    assert not missing, f"{page}: the explanation of {missing} is gone"


@pytest.mark.parametrize("page", sorted(SEED_NUMBERS))
def test_seed_numbers_are_printed_by_running_examples(page):
    wants = _expected_outputs()[page]
    missing = [s for s in SEED_NUMBERS[page] if s not in wants]
    assert not missing, f"{page}: no tested example prints {missing}"


def test_sphinx_roles_in_docstrings_become_links():
    hooks = _hooks()
    html = ('<h3 id="cycnn.zero_pad">zero_pad</h3><p>See :func:<code>cycnn.zero_pad</code>, '
            ':func:<code>dilate</code> and :class:<code>numpy.random.Generator</code>.</p>')
    out = hooks.link_roles(html)
    assert '<a href="#cycnn.zero_pad"><code>zero_pad</code></a>' in out
    assert "<code>dilate</code>" in out and ":func:" not in out
    assert "<code>numpy.random.Generator</code>" in out and ":class:" not in out


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")
                                         if p.name not in {"api.md", "errors.md"}
                                         | GENERATED_PAGES))
def test_page_has_the_parts_of_a_docs_page(page):
    """STYLE.md's order: claim, equation, worked example, pitfall, "in the code", API link."""
    text = (DOCS / page).read_text()
    assert re.search(r"^\$\$", text, re.MULTILINE), f"{page}: no displayed equation"
    assert "```python\n>>>" in text, f"{page}: no worked example with prompts"
    assert re.search(r'^\s*!!! warning "Pitfall', text, re.MULTILINE), \
        f"{page}: no pitfall admonition"
    assert "--8<--" in text, f"{page}: no code included from the source"
    assert "][cycnn." in text, f"{page}: no link into the API reference"


def test_home_page_shows_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    home = (DOCS / "index.md").read_text()
    commands = [line.strip() for line in readme.splitlines()
                if line.strip().startswith("python3 -m venv") or
                line.strip().startswith("python -m venv")]
    assert len(commands) >= 2, "README.md should show the train and the test command"
    missing = [c for c in commands if c not in home]
    assert not missing, f"docs/index.md does not show these README commands: {missing}"
