"""Every docs page as a notebook: the conversion, the run in a fresh kernel, the ways out.

* The converter (cycnn/_notebooks.py) is checked on a small page holding every construct
  the docs use, and its include-by-name against the site's (mkdocs_hooks.block_lines).
* Every page's notebook is valid nbformat 4 and runs in a fresh Jupyter kernel (nbclient,
  one kernel per notebook, in an empty directory) without an error. Where the page passes
  the standard doctest runner in a fresh interpreter (a self-contained page), every cell
  must also print exactly what the page shows under it.
* The notebooks reach a learner two ways: ``cycnn notebooks DIR`` copies the ones the
  package carries (written by setup.py at build time), and the built site has one per
  page with a download link on the page.
"""

from __future__ import annotations

import base64
import doctest
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cycnn import _notebooks
from cycnn.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.stem for p in DOCS.glob("*.md"))

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install "
                               "-e '.[test]' brings nbclient): notebooks are not checked")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(cell):
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


# --------------------------------------------------------------------------- the converter

PAGE = '''\
# A page

Inline math \\(dx = dy\\,w\\) and a [link](other.md#part), an API link
[`dilate`][cycnn.dilate] and a figure:

![two squares](figures/sq.png)

$$
y = x
$$

```python
>>> import numpy as np
>>> a = np.arange(3)
>>> a
array([0, 1, 2])
>>> b = a + 1
>>> print(b)
[1 2 3]
>>> c = 0

```

```python
def f(v):
    return v + 1
```

!!! warning "Pitfall: one"
    Indented prose with \\(p\\).

    ```python
    >>> f(1)
    2

    ```

Exercise: what is f(2)?

??? success "Solution"
    One more than 2:

    ```python
    >>> f(2)
    3

    ```

    Because f adds one.


```py
--8<-- "src/k.py:@g"
--8<-- "src/k.py:1:1"
```

```python
>>> int("x")
Traceback (most recent call last):
...
ValueError: invalid literal for int() with base 10: 'x'

```

Try it:

<div class="conv-explorer"></div>

::: cycnn.dilate
'''

SOURCE = '''\
x = 1


def g(a):
    """Doc."""
    return a
'''


@pytest.fixture
def page_notebook(tmp_path):
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
    (tmp_path / "docs" / "figures" / "sq.png").write_bytes(png)
    (tmp_path / "src" / "k.py").write_text(SOURCE)
    return _notebooks.page_to_notebook(PAGE, "a-page", tmp_path), png


def test_a_page_becomes_markdown_and_code_cells(page_notebook):
    nb, png = page_notebook
    nbformat.validate(nbformat.from_dict(nb))
    cells = nb["cells"]
    kinds = "".join("m" if c["cell_type"] == "markdown" else "c" for c in cells)
    assert kinds == "mccccmcmmcmmcm", kinds
    code = [_text(c) for c in cells if c["cell_type"] == "code"]
    # prompts gone, outputs gone, a cell ends after every example that shows an output
    assert code[:3] == ["import numpy as np\na = np.arange(3)\na", "b = a + 1\nprint(b)",
                        "c = 0"]
    assert code[3] == "def f(v):\n    return v + 1"
    assert code[4:] == ["f(1)", "f(2)", 'int("x")']
    assert all(c["outputs"] == [] and c["execution_count"] is None
               for c in cells if c["cell_type"] == "code")
    hidden = [c["metadata"].get("jupyter", {}).get("source_hidden") for c in cells
              if c["cell_type"] == "code"]
    assert hidden == [None, None, None, None, None, True, None]  # the solution is folded
    # ... its prose too, in cells of its own; the question and the title stay in sight
    folded = [_text(c) for c in cells if c["metadata"].get("jupyter", {}).get("source_hidden")]
    assert folded == ["One more than 2:", "f(2)", "Because f adds one."]
    solution_code = next(c for c in cells if _text(c) == "f(2)")
    assert solution_code["metadata"]["jupyter"]["outputs_hidden"] is True  # after Run all
    asked = next(c for c in cells if "what is f(2)?" in _text(c))
    assert _text(asked).endswith("**Solution** (open the hidden cells to see it)")
    assert cells[-2]["metadata"]["tags"] == ["raises-exception"]
    md = "\n".join(_text(c) for c in cells if c["cell_type"] == "markdown")
    assert "Inline math $dx = dy\\,w$ and a [link](other.ipynb#part)" in md
    assert "an API link\n`dilate` and a figure" in md
    assert "$$\ny = x\n$$" in md
    assert "**Pitfall: one**\n\nIndented prose with $p$." in md
    assert "**Solution** (open the hidden cells to see it)" in md
    assert "```py\ndef g(a):\n    return a\nx = 1\n```" in md  # docstring left out, as on the site
    assert _notebooks.EXPLORER_NOTE in md and "conv-explorer" not in md
    assert "- `cycnn.dilate`: its documentation is `help(cycnn.dilate)`" in md
    figure = next(c for c in cells if "attachments" in c)
    assert "![two squares](attachment:sq.png)" in _text(figure)
    assert base64.b64decode(figure["attachments"]["sq.png"]["image/png"]) == png


def test_expected_outputs_are_kept_only_when_asked(tmp_path, page_notebook):
    plain, _ = page_notebook
    with_expected = _notebooks.page_to_notebook(PAGE, "a-page", tmp_path, expected=True)
    wants = [c["metadata"].get("cycnn_expected") for c in with_expected["cells"]
             if c["cell_type"] == "code"]
    assert wants[:3] == ["array([0, 1, 2])\n", "[1 2 3]\n", ""]
    assert wants[-1].startswith("ValueError: invalid literal")
    assert "cycnn_expected" not in json.dumps(plain)


def test_the_notebook_file_is_stable(tmp_path):
    out = _notebooks.write_notebooks(tmp_path / "a", DOCS, ROOT)
    again = _notebooks.write_notebooks(tmp_path / "b", DOCS, ROOT)
    assert [p.read_bytes() for p in out] == [p.read_bytes() for p in again]
    assert sorted(p.stem for p in out) == PAGES  # by stem: "training" < "training-recipes"
    (tmp_path / "a" / "gone.ipynb").write_text("{}")
    _notebooks.write_notebooks(tmp_path / "a", DOCS, ROOT)
    assert not (tmp_path / "a" / "gone.ipynb").exists()  # a deleted page's notebook goes


def _includes_by_name():
    found = set()
    for page in DOCS.glob("*.md"):
        found |= set(re.findall(r'--8<--\s+"([^"]+):@([\w.]+)"', page.read_text()))
    return sorted(found)


@pytest.mark.parametrize("path, name", _includes_by_name())
def test_an_include_by_name_shows_what_the_site_shows(path, name):
    hooks = _load(ROOT / "mkdocs_hooks.py", "cycnn_mkdocs_hooks_for_notebooks")
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    assert _notebooks.definition_lines(lines, name) == hooks.block_lines(str(ROOT / path), name)


# --------------------------------------------------------------------------- every page runs

def _self_contained(page: Path) -> bool:
    """True when the standard runner passes the page in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "doctest", "-o", "ELLIPSIS", str(page)],
                          capture_output=True, text=True, timeout=300, cwd=page.parent)
    return proc.returncode == 0


def _printed(cell) -> str:
    out = []
    for o in cell["outputs"]:
        if o["output_type"] == "stream" and o["name"] == "stdout":
            out.append(o["text"])
        elif o["output_type"] == "execute_result":
            out.append(o["data"]["text/plain"] + "\n")
    return "".join(out)


def _error(cell):
    return next((o for o in cell["outputs"] if o["output_type"] == "error"), None)


@pytest.fixture(scope="module")
def run_notebook(tmp_path_factory):
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip "
                                   "install -e '.[test]'): notebooks are not run")

    def run(page):
        nb = _notebooks.page_to_notebook((DOCS / f"{page}.md").read_text(encoding="utf-8"),
                                         page, ROOT, expected=True)
        nb = nbformat.reads(_notebooks.notebook_json(nb), as_version=4)  # sources as text
        nbformat.validate(nb)
        # plain repr() for every value, as doctest prints it (IPython's pretty printer
        # lays out long tuples its own way); added to this copy only
        nb.cells.insert(0, nbformat.v4.new_code_cell("%pprint off"))
        workdir = tmp_path_factory.mktemp(page)
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(workdir)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as e:
            pytest.fail(f"notebook of {page}.md failed in a fresh kernel:\n{e}")
        return nb.cells[1:]

    return run


@pytest.mark.parametrize("page", PAGES)
def test_every_notebook_runs_in_a_fresh_kernel(page, run_notebook):
    cells = run_notebook(page)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert bool(code) == (">>>" in (DOCS / f"{page}.md").read_text()), page
    for cell in code:
        error = _error(cell)
        if "raises-exception" in cell["metadata"].get("tags", []):
            assert error is not None, f"{page}: this cell should raise:\n{_text(cell)}"
        else:
            assert error is None, f"{page}: {error and error['evalue']}\n{_text(cell)}"
    checker, wrong = doctest.OutputChecker(), []
    for cell in code:
        want = cell["metadata"]["cycnn_expected"]
        error = _error(cell)
        if error is not None:
            # doctest names the exception with its module, Jupyter without
            want = re.sub(r"^[\w.]*\.(\w+:)", r"\1", want)
            got = f"{error['ename']}: {error['evalue']}\n"
        else:
            got = _printed(cell)
        if not checker.check_output(want, got, doctest.ELLIPSIS):
            wrong.append(f"{_text(cell)}\n--- the page shows:\n{want}--- the notebook "
                         f"printed:\n{got}")
    if wrong and not _self_contained(DOCS / f"{page}.md"):
        # the page relies on settings it does not make itself (the standard runner fails
        # on it too): the notebook cannot be blamed for printing differently
        return
    assert not wrong, f"{page}: cells print something else than the page:\n" + \
        "\n\n".join(wrong)


# --------------------------------------------------------------------------- ways out

def test_the_installed_package_carries_a_notebook_per_page():
    """setup.py writes them when the package is built (pip install . or -e .)."""
    carried = sorted(p.stem for p in _notebooks.NOTEBOOK_DIR.glob("*.ipynb"))
    assert carried == PAGES, ("cycnn/notebooks/ does not match docs/: reinstall "
                              "(pip install -e .) to write the notebooks again")


def test_cycnn_notebooks_writes_them_and_keeps_a_learners_edits(tmp_path, capsys):
    out = tmp_path / "course"
    assert main(["notebooks", str(out)]) == 0
    written = sorted(p.name for p in out.glob("*.ipynb"))
    assert written == sorted(f"{p}.ipynb" for p in PAGES)
    for name in written:
        assert (out / name).read_bytes() == (_notebooks.NOTEBOOK_DIR / name).read_bytes()
    assert f"wrote {len(PAGES)} notebook(s) to {out}" in capsys.readouterr().out
    edited = out / "pooling.ipynb"
    edited.write_text("my notes")
    assert main(["notebooks", str(out)]) == 0
    assert edited.read_text() == "my notes"
    assert "kept 12 that were already there" in capsys.readouterr().out.replace(
        str(len(PAGES)), "12")
    assert main(["notebooks", str(out), "--force"]) == 0
    assert edited.read_bytes() == (_notebooks.NOTEBOOK_DIR / "pooling.ipynb").read_bytes()


def test_cycnn_notebooks_refuses_a_file_as_the_directory(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("")
    with pytest.raises(SystemExit) as e:
        main(["notebooks", str(target)])
    assert e.value.code == 2
    assert "exists and is not a directory" in capsys.readouterr().err


def test_cycnn_notebooks_says_so_when_the_package_has_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_notebooks, "NOTEBOOK_DIR", tmp_path / "empty")
    with pytest.raises(SystemExit) as e:
        main(["notebooks", str(tmp_path / "out")])
    assert e.value.code == 2
    assert "has no notebooks" in capsys.readouterr().err


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: the site is not built")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_every_page_of_the_site_offers_its_notebook(site):
    hook = _load(ROOT / "mkdocs_hooks_notebooks.py", "cycnn_notebook_hook")
    for page in PAGES:
        notebook = site / hook.notebook_uri(f"{page}.md")
        expected = _notebooks.notebook_json(_notebooks.page_to_notebook(
            (DOCS / f"{page}.md").read_text(encoding="utf-8"), page, ROOT))
        assert notebook.read_text(encoding="utf-8") == expected, page
        html = (site / ("" if page == "index" else page) / "index.html").read_text()
        links = re.findall(r'<a [^>]*href="([^"]+\.ipynb)"[^>]*>', html)
        assert len(links) == 1, (page, links)
        assert f'download="{page}.ipynb"' in html, page
        page_dir = site / ("" if page == "index" else page)
        assert (page_dir / links[0]).resolve() == notebook.resolve(), (page, links[0])
