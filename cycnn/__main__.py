"""``python -m cycnn ...`` runs the ``cycnn`` command (see :mod:`cycnn.cli`)."""

import sys

from .cli import main

sys.exit(main())
