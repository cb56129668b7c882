"""Run every example on every docs page as a test (Sybil).

Each ```python block under docs/ is evaluated in page order, one namespace per page:
blocks with ``>>>`` prompts are doctests and fail on any output that differs from the
page; blocks without prompts are run as code and fail on an exception. Other fences
(``cython``, ``text``, ``console``) are shown, not run.

Each page is self-contained: its first example sets the NumPy print options it is written
against, so Sybil, the standard runner (``python -m doctest -o ELLIPSIS docs/PAGE.md``)
and a notebook made from the page print the same. Nothing is set up here for the pages;
NumPy's print options are only put back after each page, so that one page's settings
reach neither the next page nor the other tests.
"""

from doctest import ELLIPSIS

import numpy as np
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser


def docs_setup(namespace):
    """Before each page: remember NumPy's print options (the page sets its own)."""
    namespace["_saved_print_options"] = np.get_printoptions()


def docs_teardown(namespace):
    """After each page: restore NumPy's print options for what runs next."""
    np.set_printoptions(**namespace["_saved_print_options"])


def make_sybil(path="docs"):
    """The Sybil configuration the docs are tested with (tests/test_docs.py reuses it)."""
    return Sybil(
        parsers=[PythonCodeBlockParser(doctest_optionflags=ELLIPSIS), SkipParser()],
        path=path,
        patterns=["*.md"],
        setup=docs_setup,
        teardown=docs_teardown,
    )


pytest_collect_file = make_sybil().pytest()
