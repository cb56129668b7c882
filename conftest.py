"""Run every example on every docs page as a test (Sybil).

Each ```python block under docs/ is evaluated in page order, one namespace per page:
blocks with ``>>>`` prompts are doctests and fail on any output that differs from the
page; blocks without prompts are run as code and fail on an exception. Other fences
(``cython``, ``text``, ``console``) are shown, not run.

Every page prints with the same NumPy options, set here rather than on each page; the
home page tells the reader so.
"""

from doctest import ELLIPSIS

import numpy as np
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

#: the print options every docs page is written against
PRINT_OPTIONS = dict(precision=6, suppress=True)


def docs_setup(namespace):
    """Before each page: fixed print options, as the home page says."""
    namespace["_saved_print_options"] = np.get_printoptions()
    np.set_printoptions(**PRINT_OPTIONS)


def docs_teardown(namespace):
    """After each page: restore NumPy's print options for the other tests."""
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
