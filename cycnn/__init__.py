"""cycnn: backpropagation in convolutional networks, derived and compiled.

Layout is NCHW, weights are ``(F, C, KH, KW)`` and biases ``(F,)``, as in PyTorch.

The public names are those of the submodules' own ``__all__`` lists, gathered below in
the order the modules depend on each other (kernels and geometry first, the model and its
surroundings last), plus the modules :mod:`cycnn.reference`, :mod:`cycnn.datasets`,
:mod:`cycnn.check`, :mod:`cycnn.images` (image files as model input) and
:mod:`cycnn.recipes` (what ``cycnn train`` runs by default), and :func:`build_info`.
"""

import os as _os
import sys as _sys

# Thread pools that busy-wait steal the cores from each other: cycnn's OpenMP loops and
# NumPy's OpenBLAS take turns many times per training step, and on two cores a spinning
# pool made 2-thread training up to 100x slower. Ask both to sleep when idle. Each
# setting takes effect only if its library has not loaded yet (OpenMP loads with
# cycnn's kernels just below, unless PyTorch loaded it first); the user's own values win.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import conv, datasets, images, recipes, reference  # noqa: E402
from ._dispatch import chosen as _chosen_kernels  # noqa: E402
from ._threads import *  # noqa: E402,F403
from .activations import *  # noqa: E402,F403
from .augment import *  # noqa: E402,F403
from .checkpoint import *  # noqa: E402,F403
from .conv import *  # noqa: E402,F403
from .dense import *  # noqa: E402,F403
from .dropout import *  # noqa: E402,F403
from .geometry import *  # noqa: E402,F403
from .gradcheck import *  # noqa: E402,F403
from .interop import *  # noqa: E402,F403
from .layers import *  # noqa: E402,F403
from .losses import *  # noqa: E402,F403
from .metrics import *  # noqa: E402,F403
from .model import *  # noqa: E402,F403
from .norm import *  # noqa: E402,F403
from .optim import *  # noqa: E402,F403
from .pool import *  # noqa: E402,F403
from .schedules import *  # noqa: E402,F403
from .training import *  # noqa: E402,F403
from .zoo import *  # noqa: E402,F403

# isort: split
from . import check  # noqa: E402  (checkers for a learner's code: uses the names above)

__version__ = "0.1.0"

#: the submodules whose ``__all__`` make up cycnn's public names, in this order (by name:
#: the function ``gradcheck`` has taken the name of its module)
_PUBLIC_MODULES = ("geometry", "conv", "pool", "activations", "dense", "losses", "gradcheck",
                   "norm", "dropout", "augment", "_threads", "layers", "model", "training",
                   "optim", "schedules", "metrics", "checkpoint", "interop", "zoo")

__all__ = [name for module in _PUBLIC_MODULES
           for name in _sys.modules[f"{__name__}.{module}"].__all__]
__all__ += ["reference", "datasets", "check", "images", "recipes", "build_info"]


def build_info():
    """Describe the machine, how the compiled kernels were built and which were loaded.

    Returns
    -------
    dict
        ``cpu`` is the processor's model name, ``cpu_features`` the features (among those
        the build variants need) that it reports, ``variants`` the variants present in
        this installation, best first, and ``kernels`` maps each kernel module to the
        build chosen at import (for instance ``'avx512'``, ``'avx2'`` or
        ``'baseline x86-64'``). ``openmp`` says whether the kernels were compiled with
        OpenMP (so ``prange`` loops can use several threads) and ``threads`` is the
        current default thread count. ``caches`` holds the data-cache sizes in bytes
        that the CPU reports (``L1d``, ``L2``, ``L3``, with the CPUs sharing each and
        where the number came from) and ``fast_chunk_bytes`` the per-thread buffer size
        the fast convolution route derives from them.
    """
    from . import _caches, _dispatch

    return {
        "version": __version__,
        "cpu": _dispatch.cpu_model(),
        "cpu_features": sorted(_dispatch.cpu_features()),
        "variants": _dispatch.built(),
        "kernels": _chosen_kernels(),
        "openmp": bool(conv._conv.OPENMP),
        "threads": get_num_threads(),  # noqa: F405
        "caches": dict(_caches.CACHES),
        "fast_chunk_bytes": conv.FAST_CHUNK_BYTES,
    }
