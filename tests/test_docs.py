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
import re
import subprocess
import sys
import textwrap
from pathlib import Path

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
    _evaluate_all(page)  # also shows the print options (precision=6) are applied


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
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 3 passed" in proc.stdout, proc.stdout
    assert "wrong.md" in proc.stdout and "0.123456" in proc.stdout


def test_every_page_has_examples_that_sybil_collects():
    sybil = _docs_conftest().make_sybil(path=str(DOCS))
    counts = {}
    for page in sorted(DOCS.glob("*.md")):
        counts[page.name] = sum(1 for _ in sybil.parse(page).examples())
    empty = [name for name, n in counts.items() if n == 0 and name not in {"api.md"}]
    assert not empty, f"pages without a single tested example: {empty}"


# --------------------------------------------------------------------------- API page

def test_api_page_lists_every_public_name():
    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^::: cycnn\.([A-Za-z_][\w]*)\s*$", text, re.M))
    missing = [name for name in cycnn.__all__ if name not in documented]
    assert not missing, f"docs/api.md has no '::: cycnn.NAME' entry for: {missing}"
    unknown = sorted(documented - set(cycnn.__all__))
    assert not unknown, f"docs/api.md documents names that are not in cycnn.__all__: {unknown}"


# --------------------------------------------------------------------------- included code

#: every source include on the docs pages -> what the included code must contain.
#: ``file:@name`` includes the whole top-level ``def name`` (resolved by mkdocs_hooks.py);
#: a plain line range ``file:first:last`` is allowed only if listed here too, with the text
#: its first line starts with as the first needle.
INCLUDES = {
    "cycnn/_conv.pyx:@conv2d_forward": [
        "# y[n,f,i,j] = b[f] + sum_{c,p,q}", "prange(N",
        "y[n, f, i, j] += wv * xp[n, c, i * sh + p, j * sw + q]",
    ],
    "cycnn/_conv.pyx:@conv2d_backward_weight": [
        "# dw[f,c,p,q] = sum_{n,i,j}", "prange(F", "dw[f, c, p, q] = acc",
    ],
    "cycnn/_conv.pyx:@conv2d_backward_input": [
        "prange(N", "dxp[n, c, i * sh + p, j * sw + q] += wv * dy[n, f, i, j]",
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
    "cycnn/activations.py:@relu_backward": ["np.where(x > 0, dy"],
    "cycnn/dense.py:@dense_backward": ["dy @ w, dy.T @ x, dy.sum(axis=0)"],
    "cycnn/activations.py:@log_softmax": ["z.max(axis=axis, keepdims=True)", "np.log(np.exp(shifted)"],
    "cycnn/gradcheck.py:@numerical_gradient": ["flat[k] = keep + eps", "(2 * eps)"],
    "cycnn/_dispatch.py:@load": ["candidates()", "import_module"],
    "cycnn/_conv.pyx:@im2col": ["prange(C * KH * KW", "cols[r, k + j]"],
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
    "cycnn/recipes.py:@build": ["MODELS[recipe[\"model\"]](seed, dtype)",
                                "make_schedule(recipe, optimizer, n_train)"],
    "cycnn/augment.py:@affine_warp": ["np.clip(", "flat.take(top)", "flat.take(top + Wp + 1)"],
    "cycnn/schedules.py:@OneCycleLR._phase": ["for k, (end, lr0, lr1, m0, m1)",
                                             "(t - start) / (end - start)"],
    "cycnn/schedules.py:@_cos_between": ["math.cos(math.pi * pct) + 1"],
    "cycnn/reference.py:@conv2d_backward": [
        "dilate(dy, (sh, sw))", "rotate180(w)", "dxp[:, :, pt:pt + H, pl:pl + W]",
        "dy.sum(axis=(0, 2, 3))",
    ],
}

_INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$', re.M)


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


#: numbers from the source documents (docs/INDEX of the seeds) -> the page whose running
#: examples must print them
SEED_NUMBERS = {
    "index.md": ["[[0.044606 0.094061]\n [0.011262 0.068288]]"],
    "conv-forward.md": [
        "28x28x6", "28\n",
        "[0.3 0.6 0.1]",                                   # the grey filter (seed 000)
        "[[ 1.  2.  1.]\n [ 0.  0.  0.]\n [-1. -2. -1.]]",  # the edge filter (seed 000)
    ],
    "conv-weight-gradient.md": [
        "(4, 4)",                                          # (H - k1 + 1) x (W - k2 + 1)
        "[[0.044606 0.094061]\n [0.011262 0.068288]]",
        "[[-0.152303",                                     # SGD step from w00 = -0.13
        "[0.0836]",                                        # db = sum of the delta
    ],
    "dense-softmax.md": [
        "[-0.340999  0.242433  0.098566]",          # dZ = Y_hat - Y, by the chain rule
        "[[0.044606 0.094061]\n [0.011262 0.068288]]",  # MSE delta -> the seed's dW
    ],
    "pooling.md": [
        "[[6. 8.]\n [3. 4.]]",
        "[[0 0 0 0]\n [0 1 0 1]\n [1 0 0 0]\n [0 0 0 1]]",
        "[[0.25 0.25]\n [0.25 0.25]]",
        "0.111111",
    ],
    "stride-padding.md": [
        "(5, 13)",
        "[[1 0 0 2 0 0 3 0 0 4 0 0 5]",
        "[5 0 0 6 0 0 7 0 0 8 0 0 9]]",
        "(2, 2, 5, 7)",
        "[[9 0 0 4 0 0 0]",
        "[[9. 8. 7.]\n [6. 5. 4.]\n [3. 2. 1.]]",
    ],
}


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


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md") if p.name != "api.md"))
def test_page_has_the_parts_of_a_docs_page(page):
    """STYLE.md's order: claim, equation, worked example, pitfall, "in the code", API link."""
    text = (DOCS / page).read_text()
    assert re.search(r"^\$\$", text, re.M), f"{page}: no displayed equation"
    assert "```python\n>>>" in text, f"{page}: no worked example with prompts"
    assert re.search(r'^\s*!!! warning "Pitfall', text, re.M), f"{page}: no pitfall admonition"
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
