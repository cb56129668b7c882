"""MkDocs hooks for the cycnn site (listed under ``hooks:`` in mkdocs.yml).

Math is typeset offline: MathJax 3 comes from the PyPI package ``django-static-mathjax``
(a ``docs`` extra), and this hook adds its single-file SVG build and licence to the
site, so the pages never ask a CDN for it. The SVG output needs no web fonts.
"""

from __future__ import annotations

import os

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
