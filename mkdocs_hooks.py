"""MkDocs hooks for the cycnn site (listed under ``hooks:`` in mkdocs.yml).

Source included by name: a page writes ``--8<-- "cycnn/_conv.pyx:@conv2d_forward"`` and
this hook turns ``@conv2d_forward`` into the line range of that top-level ``def`` (its
signature and whole body, without the docstring; ``@Class.method`` works too) before pymdownx.snippets includes it. Pages therefore show the
code as it is today, without line numbers that go stale when the file changes, and a
renamed or deleted function fails the strict build.

Sphinx roles in docstrings (``:func:`name```) become links on the API page (mkdocstrings
would print them as text).

Math is typeset offline: MathJax 3 comes from the PyPI package ``django-static-mathjax``
(a ``docs`` extra), and this hook adds its single-file SVG build and licence to the
site, so the pages never ask a CDN for it. The SVG output needs no web fonts.
"""

from __future__ import annotations

import os
import re

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

#: where the script lands in the site; mkdocs.yml's extra_javascript names the same path
MATHJAX_URI = "javascripts/mathjax/tex-svg-full.js"


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


def on_files(files, config):
    root = mathjax_dir()
    for uri, src in (
        (MATHJAX_URI, os.path.join(root, "es5", "tex-svg-full.js")),
        ("javascripts/mathjax/LICENSE", os.path.join(root, "LICENSE")),
    ):
        if not os.path.isfile(src):
            raise PluginError(f"mkdocs_hooks: {src} is missing from django-static-mathjax")
        files.append(File.generated(config, uri, abs_src_path=src))
    return files


# ----------------------------------------------------------------------------- includes

_BY_NAME = re.compile(r'^(?P<lead>[ \t]*--8<--[ \t]+")(?P<path>[^"@:]+):@(?P<name>[\w.]+)"', re.M)


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
        short = name[len("cycnn."):] if name.startswith("cycnn.") else name
        for target in (f"cycnn.{short}", name):
            if f'id="{target}"' in html:
                return f'<a href="#{target}"><code>{short}</code></a>'
        return f"<code>{short}</code>"

    return _ROLE.sub(replace, html)


def on_page_content(html, page, config, files):
    return link_roles(html)


def on_config(config):
    # pymdownx.snippets resolves base_path against the working directory; anchor it to
    # the repository (the directory of mkdocs.yml) so a build from elsewhere works too
    base = os.path.dirname(config["config_file_path"])
    snippets = config["mdx_configs"].get("pymdownx.snippets")
    if snippets is not None:
        snippets["base_path"] = [os.path.join(base, p) for p in snippets.get("base_path", ["."])]
    return config
