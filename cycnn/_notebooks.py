"""Every docs page as a Jupyter notebook, written by this module alone (standard library).

A page becomes Markdown cells (the prose and the math) and code cells (its examples,
without the ``>>>`` prompts and without the outputs, so a reader runs them and sees the
outputs for themselves). In detail:

* a ```` ```python ```` block with prompts becomes code cells, split after every example
  that shows an output (so that each output is the last value of a cell and appears);
  a block without prompts becomes one code cell; an example whose expected output is a
  traceback gets the ``raises-exception`` tag, which Jupyter and nbclient honour;
* other fences stay Markdown code blocks; a ``--8<-- "file:..."`` source include inside
  one is replaced by the lines it includes (``file:@name`` is the whole ``def name`` or
  ``class name`` without its docstring, as on the site; ``file:first:last`` a range);
* an admonition (``!!! kind "Title"``) becomes its bold title followed by its content; a
  collapsible one (``??? kind "Title"``, used for solutions) shows its title, then its
  content in cells of their own, folded (``source_hidden``, and ``outputs_hidden`` for
  code) until the reader opens them: the prose of a solution as well as its code and
  what the code prints, so that no question is followed by its answer in plain sight;
* ``\\( ... \\)`` becomes ``$ ... $``; links to other pages point at their notebooks;
  links into the API reference become plain text (``help(name)`` shows the docstring);
* images are attached to their cell, so a notebook is a single self-contained file;
* the interactive explorer, which needs the site's JavaScript, becomes a sentence.

``setup.py`` loads this file by path (not through ``import cycnn``, which needs the
compiled kernels) and writes one notebook per page into ``cycnn/notebooks/`` when it
builds the package, so an installed cycnn carries them; ``cycnn notebooks DIR`` copies
them out. The site's hook (``mkdocs_hooks_notebooks.py``) makes the same notebooks for
the download link on every page.
"""

from __future__ import annotations

import base64
import doctest
import json
import re
import textwrap
from pathlib import Path

__all__ = ["page_to_notebook", "notebook_json", "write_notebooks", "definition_lines",
           "NOTEBOOK_DIR"]

#: where the built package keeps its notebooks (package data)
NOTEBOOK_DIR = Path(__file__).resolve().parent / "notebooks"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
_ADMONITION = re.compile(r'^(?P<indent>[ \t]*)(?P<mark>!!!|\?\?\?\+?)[ \t]+(?P<kind>[\w-]+)'
                         r'(?:[ \t]+"(?P<title>[^"]*)")?[ \t]*$')
_INCLUDE = re.compile(r'^[ \t]*--8<--[ \t]+"(?P<spec>[^"]+)"[ \t]*$')
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")
_API_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\[(?P<ref>[\w.]+)\]")
_PAGE_LINK = re.compile(r"\]\((?P<page>[\w-]+)\.md(?P<anchor>#[\w-]*)?\)")
_INLINE_MATH = re.compile(r"\\\((.+?)\\\)")
_ATTR_LIST = re.compile(r"\{:?[ \t]*[#.][^}\n]*\}")
_MKDOCSTRINGS = re.compile(r"^:::[ \t]+(?P<name>[\w.]+)[ \t]*$")
_EXPLORER = re.compile(r'^[ \t]*<div class="conv-explorer"[^>]*>\s*</div>[ \t]*$')

EXPLORER_NOTE = ("*The interactive explorer of this page runs on the website (it needs the "
                 "site's JavaScript).*")


# --------------------------------------------------------------------------- includes

def definition_lines(lines: list[str], name: str) -> list[tuple[int, int]]:
    """1-based, inclusive line ranges of ``def name`` (or ``cdef``/``cpdef``/``class``)
    in ``lines``, without its docstring; ``"Class.method"`` for a method.

    The same ranges as the site's include-by-name (``mkdocs_hooks.block_lines``); a test
    checks that the two agree on every include of every page.
    """
    lo, hi, indent = 0, len(lines) - 1, ""
    first = last = -1
    for part in name.split("."):
        head = re.compile(rf"^{indent}(c?p?def|class)\s+(\w+\s+)*{re.escape(part)}\s*[(:]")
        starts = [k for k in range(lo, hi + 1) if head.match(lines[k])]
        if len(starts) != 1:
            raise ValueError(f"{len(starts)} definitions of {part!r} at indent {len(indent)}")
        first = last = starts[0]
        for k in range(first + 1, hi + 1):
            if lines[k].strip() and not lines[k].startswith(indent + " "):
                break
            if lines[k].strip():
                last = k
        lo, hi, indent = first + 1, last, indent + "    "
    sig_end = next(k for k in range(first, last + 1)
                   if lines[k].split("#")[0].rstrip().endswith(":"))
    body = next((k for k in range(sig_end + 1, last + 1) if lines[k].strip()), None)
    opening = re.match(r"""^\s*[rRbBuU]?(\"\"\"|''')""", lines[body]) if body is not None \
        else None
    if opening is None:
        return [(first + 1, last + 1)]
    quote = opening.group(1)
    end = body if quote in lines[body][opening.end():] else \
        next(k for k in range(body + 1, last + 1) if quote in lines[k])
    after = next((k for k in range(end + 1, last + 1) if lines[k].strip()), None)
    if after is None:
        return [(first + 1, sig_end + 1)]
    return [(first + 1, sig_end + 1), (after + 1, last + 1)]


def _include(spec: str, root: Path) -> list[str]:
    """The lines a ``--8<--`` include puts on the page, dedented."""
    path, _, where = spec.partition(":")
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    if not where:
        ranges = [(1, len(lines))]
    elif where.startswith("@"):
        ranges = definition_lines(lines, where[1:])
    else:
        ranges = [tuple(int(v) for v in r.split(":")) for r in where.split(",")]
    picked = [line for a, b in ranges for line in lines[a - 1:b]]
    return textwrap.dedent("\n".join(picked)).splitlines()


# --------------------------------------------------------------------------- cells

def _source(text: str) -> list[str]:
    lines = text.strip("\n").split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


class _Builder:
    """Collects the cells of one notebook."""

    def __init__(self, name: str, root: Path, expected=False):
        self.name, self.root, self.expected = name, root, expected
        self.cells: list[dict] = []
        self.markdown: list[str] = []
        self.attachments: dict[str, dict] = {}
        self.folded = False  # inside a collapsible block: Markdown cells are folded too

    def _id(self):
        return f"{self.name}-{len(self.cells) + 1}"

    def flush(self):
        text = "\n".join(self.markdown).strip("\n")
        if text:
            metadata = {"jupyter": {"source_hidden": True}} if self.folded else {}
            cell = {"cell_type": "markdown", "id": self._id(), "metadata": metadata,
                    "source": _source(text)}
            if self.attachments:
                cell["attachments"] = self.attachments
            self.cells.append(cell)
        self.markdown, self.attachments = [], {}

    def code(self, text: str, hidden=False, raises=False, want=""):
        self.flush()
        metadata = {}
        if hidden:  # folded, and so are its outputs once it has run ("Run all")
            metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
        if raises:
            metadata["tags"] = ["raises-exception"]
        if self.expected:  # what the page shows under this code (for the tests)
            metadata["cycnn_expected"] = want
        self.cells.append({"cell_type": "code", "execution_count": None, "id": self._id(),
                           "metadata": metadata, "outputs": [], "source": _source(text)})

    def prose(self, line: str):
        line = _EXPLORER.sub(EXPLORER_NOTE, line)
        line = _INLINE_MATH.sub(lambda m: f"${m.group(1).strip()}$", line)
        line = _API_LINK.sub(lambda m: m["text"], line)
        line = _PAGE_LINK.sub(lambda m: f"]({m['page']}.ipynb{m['anchor'] or ''})", line)
        line = _ATTR_LIST.sub("", line)
        mk = _MKDOCSTRINGS.match(line)
        if mk:
            line = f"- `{mk['name']}`: its documentation is `help({mk['name']})`"
        self.markdown.append(_IMAGE.sub(self._attach, line))

    def _attach(self, m):
        src = m["src"]
        if re.match(r"^[a-z]+:", src):  # an address or an attachment already
            return m[0]
        path = self.root / "docs" / src
        kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                ".svg": "image/svg+xml", ".gif": "image/gif"}[path.suffix.lower()]
        data = path.read_bytes()
        payload = data.decode("utf-8") if kind == "image/svg+xml" else \
            base64.b64encode(data).decode("ascii")
        self.attachments[path.name] = {kind: payload}
        return f"![{m['alt']}](attachment:{path.name})"


def _python_cells(builder: _Builder, body: str, hidden: bool):
    """Code cells from the text of a python fence (already dedented)."""
    if ">>>" not in body:
        builder.code(body, hidden)
        return
    examples = doctest.DocTestParser().get_examples(body)
    chunk: list[str] = []
    for ex in examples:
        raises = ex.exc_msg is not None
        if raises and chunk:  # the failing example gets a cell of its own
            builder.code("".join(chunk), hidden)
            chunk = []
        chunk.append(ex.source)
        if ex.want or raises:
            builder.code("".join(chunk), hidden, raises, ex.exc_msg if raises else ex.want)
            chunk = []
    if chunk:
        builder.code("".join(chunk), hidden)


def _convert(builder: _Builder, lines: list[str], hidden=False):
    k = 0
    while k < len(lines):
        line = lines[k]
        fence = _FENCE.match(line)
        adm = _ADMONITION.match(line)
        if fence:  # an opening fence (the closing one is consumed with its block)
            indent, marks = fence["indent"], fence["fence"]
            info = fence["info"].strip()
            end = next((j for j in range(k + 1, len(lines))
                        if lines[j].strip() == marks and lines[j].startswith(indent)),
                       len(lines))
            body = textwrap.dedent("\n".join(lines[k + 1:end]))
            language = info.split()[0] if info else ""
            if language == "python":
                _python_cells(builder, body, hidden)
            else:
                shown = []
                for b in body.split("\n"):
                    inc = _INCLUDE.match(b)
                    shown += _include(inc["spec"], builder.root) if inc else [b]
                builder.markdown += [f"```{language}", *shown, "```"]
            k = end + 1
            continue
        if adm:
            indent = adm["indent"]
            title = adm["title"] if adm["title"] is not None else adm["kind"].capitalize()
            end = k + 1
            while end < len(lines) and (not lines[end].strip() or
                                        lines[end].startswith(indent + "    ")):
                end += 1
            inner = textwrap.dedent("\n".join(lines[k + 1:end])).split("\n")
            collapsible = adm["mark"].startswith("???")
            if title:
                builder.prose(f"**{title}**" + (" (open the hidden cells to see it)"
                                                if collapsible else ""))
                builder.markdown.append("")
            if collapsible:  # what came before stays in sight, and so does the title
                builder.flush()
                folded, builder.folded = builder.folded, True
                _convert(builder, inner, True)
                builder.flush()
                builder.folded = folded
            else:
                _convert(builder, inner, hidden)
                builder.markdown.append("")
            k = end
            continue
        builder.prose(line)
        k += 1


def page_to_notebook(markdown: str, name: str, root: Path, expected=False) -> dict:
    """The notebook (an nbformat 4.5 dict) of the docs page ``name`` with text ``markdown``;
    ``root`` is the repository, against which includes and images are resolved.

    ``expected=True`` stores in each code cell's metadata (``cycnn_expected``) the output
    the page shows for it, or the exception message; the tests compare it with what the
    cell prints. The notebooks that ship have no such entry.
    """
    builder = _Builder(name, Path(root), expected)
    title = next((m[1] for m in re.finditer(r"^# (.+)$", markdown, re.M)), name)
    builder.markdown += [f"*This notebook is the page “{title}” of the cycnn course. Run "
                         "the cells from the top: each one prints what the page shows.*", ""]
    _convert(builder, markdown.split("\n"))
    builder.flush()
    return {
        "cells": builder.cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python",
                           "name": "python3"},
            "language_info": {"name": "python"},
            "title": title,
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_json(notebook: dict) -> str:
    """The file text of a notebook, laid out as Jupyter writes it (stable, diffable)."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_notebooks(out_dir, docs_dir, root=None) -> list[Path]:
    """Write ``<page>.ipynb`` into ``out_dir`` for every ``*.md`` in ``docs_dir``.

    Files whose text is unchanged are left alone, and notebooks of pages that no longer
    exist are removed. Returns the paths of the notebooks, sorted.
    """
    out_dir, docs_dir = Path(out_dir), Path(docs_dir)
    root = Path(root) if root is not None else docs_dir.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for page in sorted(docs_dir.glob("*.md")):
        text = notebook_json(page_to_notebook(page.read_text(encoding="utf-8"), page.stem,
                                              root))
        target = out_dir / f"{page.stem}.ipynb"
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    for stale in set(out_dir.glob("*.ipynb")) - set(written):
        stale.unlink()
    return written
