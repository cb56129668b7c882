"""MkDocs hook: every page as a Jupyter notebook, offered for download on the page.

``cycnn/_notebooks.py`` turns a page's Markdown into a notebook (Markdown cells with the
prose and the math, code cells with the examples, no prompts and no outputs). This hook
adds, for every page ``P.md``, the file ``notebooks/P.ipynb`` to the site and a download
link under the page's title. The converter is loaded from its file, as ``setup.py`` does
when it writes the same notebooks into the package for ``cycnn notebooks``, so the site's
notebooks and the installed ones come from one function.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from mkdocs.structure.files import File

#: folder of the site that holds the notebooks
NOTEBOOKS = "notebooks"


def _converter(config):
    root = Path(config["config_file_path"]).parent
    spec = importlib.util.spec_from_file_location("cycnn_notebooks_for_site",
                                                  root / "cycnn" / "_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, root


def notebook_uri(src_uri: str) -> str:
    """Where the notebook of the page ``src_uri`` (e.g. ``pooling.md``) lands in the site."""
    return f"{NOTEBOOKS}/{Path(src_uri).with_suffix('.ipynb').as_posix()}"


def on_files(files, config):
    converter, root = _converter(config)
    for page in list(files.documentation_pages()):
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        notebook = converter.page_to_notebook(text, Path(page.src_uri).stem, root)
        files.append(File.generated(config, notebook_uri(page.src_uri),
                                    content=converter.notebook_json(notebook)))
    return files


def download_link(src_uri: str) -> str:
    """The Markdown of the download link for the page ``src_uri``."""
    target = os.path.relpath(notebook_uri(src_uri), os.path.dirname(src_uri) or ".")
    name = Path(target).name
    return (f'[Download this page as a Jupyter notebook]({target})'
            f'{{ download="{name}" .cycnn-notebook-link }}')


def add_download_link(markdown: str, src_uri: str) -> str:
    """``markdown`` with the download link as a paragraph under its first ``# `` title."""
    lines = markdown.split("\n")
    at = next((k + 1 for k, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join(lines[:at] + ["", download_link(src_uri), ""] + lines[at:])


def on_page_markdown(markdown, page, config, files):
    return add_download_link(markdown, page.file.src_uri)
