"""MkDocs hooks for the cycnn site (listed under ``hooks:`` in mkdocs.yml).

Source included by name: a page writes ``--8<-- "cycnn/_conv.pyx:@conv2d_forward"`` and
this hook turns ``@conv2d_forward`` into the line range of that top-level ``def`` (its
signature and whole body, without the docstring; ``@Class.method`` works too) before
pymdownx.snippets includes it. Pages therefore show the code as it is today, without line
numbers that go stale when the file changes, and a renamed or deleted function fails the
strict build.

Docstrings: Sphinx roles (``:func:`name```) become links on the API page, and RST double
backticks left in a type (``ndarray, shape of ``x```` is printed as code already) lose
their backticks (mkdocstrings prints both as text).

Copy buttons: every ``>>>`` example block gets a ``data-copy`` attribute holding only its
source lines, without prompts and outputs (Material's copy button copies that attribute
when it is present), so what a reader pastes runs.

Search: the search index gets the pages' math as plain text (``(sh, sw)`` rather than
``\\((sh, sw)\\)``), since search results are shown without MathJax.

Math is typeset offline: MathJax 3 comes from the PyPI package ``django-static-mathjax``
(a ``docs`` extra), and this hook adds its single-file CommonHTML build, its web fonts and
its licence to the site, so the pages never ask a CDN for anything. CommonHTML rather than
SVG: its equations are HTML boxes that keep their natural size and scroll sideways when
they are wider than the screen (SVG equations were scaled down, or vanished on phones).
"""

from __future__ import annotations

import doctest
import html as html_lib
import json
import os
import re

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

#: where the script lands in the site; mkdocs.yml's extra_javascript names the same path
MATHJAX_URI = "javascripts/mathjax/tex-chtml-full.js"
#: MathJax looks for its fonts beside the script, in output/chtml/fonts/woff-v2/
MATHJAX_FONTS = "output/chtml/fonts/woff-v2"


def mathjax_dir() -> str:
    """Directory of the MathJax ES5 build inside the installed django-static-mathjax."""
    try:
        import mathjax  # django-static-mathjax
    except ImportError as err:
        raise PluginError(
            "mkdocs_hooks: the docs need MathJax from the PyPI package django-static-mathjax "
            "(pip install -e '.[docs]')"
        ) from err
    return os.path.join(os.path.dirname(mathjax.__file__), "static", "mathjax")


def mathjax_files() -> list[tuple[str, str]]:
    """(site URI, source path) of every MathJax file the site serves."""
    root = mathjax_dir()
    wanted = [(MATHJAX_URI, os.path.join(root, "es5", "tex-chtml-full.js")),
              ("javascripts/mathjax/LICENSE", os.path.join(root, "LICENSE"))]
    fonts = os.path.join(root, "es5", *MATHJAX_FONTS.split("/"))
    if os.path.isdir(fonts):
        for name in sorted(os.listdir(fonts)):
            if name.endswith(".woff"):
                wanted.append((f"javascripts/mathjax/{MATHJAX_FONTS}/{name}",
                               os.path.join(fonts, name)))
    if not any(uri.endswith(".woff") for uri, _ in wanted):
        raise PluginError(f"mkdocs_hooks: no MathJax web fonts in {fonts}")
    return wanted


def on_files(files, config):
    for uri, src in mathjax_files():
        if not os.path.isfile(src):
            raise PluginError(f"mkdocs_hooks: {src} is missing from django-static-mathjax")
        files.append(File.generated(config, uri, abs_src_path=src))
    return files


# ----------------------------------------------------------------------------- includes

_BY_NAME = re.compile(r'^(?P<lead>[ \t]*--8<--[ \t]+")(?P<path>[^"@:]+):@(?P<name>[\w.]+)"',
                      re.MULTILINE)


def block_lines(path: str, name: str) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive) of ``def name`` (or ``cdef``, ``cpdef``,
    ``class``) at the top level of ``path``, or of a method for ``name = "Class.method"``:
    the signature and the body up to its last non-blank line, leaving out a docstring
    (the API reference shows it)."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    lo, hi, indent = 0, len(lines) - 1, ""
    *outer, name = name.split(".")
    for part in outer + [name]:
        first, last = _find_block(lines, lo, hi, indent, part, path)
        lo, hi, indent = first + 1, last, indent + "    "
    return _without_docstring(lines, first, last)


def _find_block(lines, lo, hi, indent, name, path):
    """0-based first and last line of the definition of ``name`` at ``indent``."""
    head = re.compile(rf"^{indent}(c?p?def|class)\s+(\w+\s+)*{re.escape(name)}\s*[(:]")
    starts = [k for k in range(lo, hi + 1) if head.match(lines[k])]
    if len(starts) != 1:
        raise PluginError(
            f"mkdocs_hooks: {path} has {len(starts)} definitions of {name!r} at indent "
            f"{len(indent)}; an include by name needs exactly one"
        )
    first = last = starts[0]
    for k in range(first + 1, hi + 1):
        line = lines[k]
        if line.strip() and not line.startswith(indent + " "):
            break
        if line.strip():
            last = k
    return first, last


_DOCSTRING = re.compile(r"""^\s*[rRbBuU]?(\"\"\"|''')""")


def _without_docstring(lines, first, last):
    # the signature ends on the first line that ends with ':' once a comment is cut off
    sig_end = next(k for k in range(first, last + 1)
                   if lines[k].split("#")[0].rstrip().endswith(":"))
    body = next((k for k in range(sig_end + 1, last + 1) if lines[k].strip()), None)
    opening = _DOCSTRING.match(lines[body]) if body is not None else None
    if opening is None:
        return [(first + 1, last + 1)]
    quote = opening.group(1)
    if quote in lines[body][opening.end():]:
        end = body
    else:
        end = next(k for k in range(body + 1, last + 1) if quote in lines[k])
    after = next((k for k in range(end + 1, last + 1) if lines[k].strip()), None)
    if after is None:
        return [(first + 1, sig_end + 1)]
    return [(first + 1, sig_end + 1), (after + 1, last + 1)]


def expand_includes(markdown: str, base: str = ".") -> str:
    """Rewrite ``--8<-- "file:@name"`` into ``--8<-- "file:first:last[,first:last]"``."""

    def by_lines(match):
        ranges = block_lines(os.path.join(base, match["path"]), match["name"])
        spec = ",".join(f"{a}:{b}" for a, b in ranges)
        return f'{match["lead"]}{match["path"]}:{spec}"'

    return _BY_NAME.sub(by_lines, markdown)


def on_page_markdown(markdown, page, config, files):
    base = os.path.dirname(config["config_file_path"])
    return expand_includes(markdown, base)


# ----------------------------------------------------------------------------- roles

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):<code>~?([\w.]+)</code>")


def link_roles(html: str) -> str:
    """Turn the Sphinx roles of NumPy-style docstrings (``:func:`name```), which
    mkdocstrings leaves as text, into links to the entry on the same page when there is
    one (``id="cycnn.name"``), and into plain code otherwise."""

    def replace(match):
        name = match.group(1)
        short = name.removeprefix("cycnn.")
        for target in (f"cycnn.{short}", name):
            if f'id="{target}"' in html:
                return f'<a href="#{target}"><code>{short}</code></a>'
        return f"<code>{short}</code>"

    return _ROLE.sub(replace, html)


_RST_LITERAL = re.compile(r"<code>([^<]*?)</code>")


def drop_rst_backticks(html: str) -> str:
    """Inside a ``<code>`` that holds no markup (a parameter's type, say), RST literals
    written ````x```` are already code: drop the backticks. Code blocks are untouched
    (their ``<code>`` holds highlighting spans)."""

    def replace(match):
        return "<code>" + re.sub(r"``([^`]+)``", r"\1", match.group(1)) + "</code>"

    return _RST_LITERAL.sub(replace, html)


# ----------------------------------------------------------------------------- copy

_CODE_BLOCK = re.compile(
    r'<div class="(?P<cls>(?:language-[\w-]+ )?highlight)">(?P<body><pre>.*?</pre>)</div>',
    re.DOTALL,
)


def runnable_source(example_text: str) -> str | None:
    """The code of a doctest block, without ``>>>``/``...`` prompts and outputs, or None
    when the text holds no ``>>>`` example."""
    examples = doctest.DocTestParser().get_examples(example_text)
    if not examples:
        return None
    return "".join(example.source for example in examples).rstrip("\n") + "\n"


def add_copy_text(html: str) -> str:
    """Give every highlighted doctest block a ``data-copy`` attribute with its runnable
    source: Material's copy button copies that attribute instead of the shown text."""

    def replace(match):
        code = re.sub(r"<[^>]+>", "", match["body"])
        source = runnable_source(html_lib.unescape(code))
        if source is None:
            return match.group(0)
        attribute = html_lib.escape(source, quote=True).replace("\n", "&#10;")
        return f'<div class="{match["cls"]}" data-copy="{attribute}">{match["body"]}</div>'

    return _CODE_BLOCK.sub(replace, html)


def on_page_content(html, page, config, files):
    return add_copy_text(drop_rst_backticks(link_roles(html)))


# ----------------------------------------------------------------------------- search

_SYMBOLS = {
    "partial": "∂", "cdot": "·", "times": "×", "sum": "Σ", "varepsilon": "ε",
    "epsilon": "ε", "eta": "η", "theta": "θ", "delta": "δ", "mu": "μ", "sigma": "σ",
    "leftarrow": "←", "rightarrow": "→", "to": "→", "ne": "≠", "neq": "≠", "approx": "≈",
    "in": "∈", "pm": "±", "odot": "⊙", "dots": "…", "ldots": "…", "cdots": "⋯",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "infty": "∞", "star": "⋆",
    "ast": "∗", "circ": "∘", "lfloor": "⌊", "rfloor": "⌋", "mid": "|", "top": "T",
}
_SPACES = {"qquad", "quad", "big", "Big", "bigg", "left", "right", "displaystyle",
           "limits", "nolimits", "!", ",", ";", ":", " ", "tag"}
_ENVIRONMENTS = re.compile(r"\\(?:begin|end)\{[^}]*\}")
_MATH = re.compile(r"\\\((?P<inline>.*?)\\\)|\\\[(?P<display>.*?)\\\]|\$\$(?P<dollars>.*?)\$\$",
                   re.DOTALL)


def tex_to_text(tex: str) -> str:
    """A plain-text reading of a TeX formula, good enough for search results:
    ``\\frac{\\partial L}{\\partial w}`` becomes ``∂L/∂w``."""
    text = _ENVIRONMENTS.sub(" ", tex)
    for _ in range(4):  # innermost braces first
        text = re.sub(r"\\(?:operatorname|text|mathrm|mathsf|mathbf|mathit|hat|bar|tilde)"
                      r"\s*\{([^{}]*)\}", lambda m: m.group(1), text)
        text = re.sub(r"([_^])\{([^{}]*)\}", lambda m: m.group(1) + _group(m.group(2)), text)
        text = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}",
                      lambda m: f"{_group(m.group(1))}/{_group(m.group(2))}", text)

    def command(match):
        name = match.group(1)
        if name in _SYMBOLS:
            return _SYMBOLS[name]
        if name in _SPACES:
            return " "
        return name  # \max, \log, \min, an unknown command: its name

    text = re.sub(r"\\([A-Za-z]+|.)", command, text)
    text = text.replace("&", " ").replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", text).strip()


def _group(part: str) -> str:
    """``part`` as it can stand before ``/`` or after ``_``: in parentheses unless it is
    one symbol (``\\partial L`` counts as one)."""
    part = part.strip()
    if re.fullmatch(r"(\\partial\s*)?[\w.]+", part):
        return re.sub(r"\\partial\s*", r"\\partial ", part)
    return f"({part})"


def search_text(text: str) -> str:
    """Replace the math of one search-index entry by its plain-text reading, leaving
    code blocks (``<pre>...</pre>``) alone."""
    parts = re.split(r"(<pre>.*?</pre>)", text, flags=re.DOTALL)
    for k in range(0, len(parts), 2):
        parts[k] = _MATH.sub(
            lambda m: tex_to_text(m["inline"] if m["inline"] is not None else
                                  m["display"] if m["display"] is not None else m["dollars"]),
            parts[k],
        )
    return "".join(parts)


def on_post_build(config):
    index = os.path.join(config["site_dir"], "search", "search_index.json")
    if not os.path.isfile(index):
        return
    with open(index, encoding="utf-8") as fh:
        data = json.load(fh)
    for doc in data.get("docs", []):
        doc["text"] = search_text(doc.get("text", ""))
        doc["title"] = search_text(doc.get("title", ""))
    with open(index, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))


def on_config(config):
    # pymdownx.snippets resolves base_path against the working directory; anchor it to
    # the repository (the directory of mkdocs.yml) so a build from elsewhere works too
    base = os.path.dirname(config["config_file_path"])
    snippets = config["mdx_configs"].get("pymdownx.snippets")
    if snippets is not None:
        snippets["base_path"] = [os.path.join(base, p) for p in snippets.get("base_path", ["."])]
    return config
