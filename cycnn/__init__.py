"""cycnn: backpropagation in convolutional networks, derived and compiled.

Layout is NCHW, weights are ``(F, C, KH, KW)`` and biases ``(F,)``, as in PyTorch.
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

from ._dispatch import chosen as _chosen_kernels
from ._threads import get_num_threads, set_num_threads
from .conv import (
    clear_workspace,
    conv2d_backward,
    conv2d_forward,
    conv_output_size,
    dilate,
    resolve_padding,
    rotate180,
    zero_pad,
)
from . import reference

__version__ = "0.1.0"

# --- conv2d (issue 2) ---
__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv_output_size",
    "resolve_padding",
    "zero_pad",
    "dilate",
    "rotate180",
    "reference",
    "set_num_threads",
    "get_num_threads",
    "build_info",
    "clear_workspace",
]
# --- layers (issue 3): pooling, activations, dense, losses, gradcheck ---
from .pool import (  # noqa: E402
    AvgPoolCache,
    MaxPoolCache,
    avg_pool2d_backward,
    avg_pool2d_forward,
    distribute_value,
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool_mask,
)
from .activations import log_softmax, relu_backward, relu_forward, softmax  # noqa: E402
from .dense import dense_backward, dense_forward  # noqa: E402
from .losses import mse_loss, softmax_cross_entropy  # noqa: E402
from .gradcheck import (  # noqa: E402
    GradcheckError,
    GradcheckResult,
    gradcheck,
    numerical_gradient,
    relative_error,
)

__all__ += [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "max_pool_mask",
    "distribute_value",
    "MaxPoolCache",
    "AvgPoolCache",
    "relu_forward",
    "relu_backward",
    "softmax",
    "log_softmax",
    "dense_forward",
    "dense_backward",
    "softmax_cross_entropy",
    "mse_loss",
    "gradcheck",
    "numerical_gradient",
    "relative_error",
    "GradcheckResult",
    "GradcheckError",
]
# --- training (issue 4): layers, model, optimizers, datasets ---
from .layers import (  # noqa: E402
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    SoftmaxCrossEntropy,
)
from .model import CheckpointError, Sequential, load, load_checkpoint, lenet5  # noqa: E402
from .optim import SGD, Adam  # noqa: E402
from . import datasets  # noqa: E402

__all__ += [
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "ReLU",
    "Flatten",
    "Dense",
    "SoftmaxCrossEntropy",
    "Sequential",
    "lenet5",
    "load",
    "load_checkpoint",
    "CheckpointError",
    "SGD",
    "Adam",
    "datasets",
]


def build_info():
    """Describe how the compiled kernels were built and which variant was loaded.

    Returns
    -------
    dict
        ``kernels`` maps each kernel module to the build chosen at import
        (``'avx2+fma'`` or ``'baseline x86-64'``), ``openmp`` says whether the kernels
        were compiled with OpenMP (so ``prange`` loops can use several threads) and
        ``threads`` is the current default thread count.
    """
    from .conv import _conv

    return {
        "version": __version__,
        "kernels": _chosen_kernels(),
        "openmp": bool(_conv.OPENMP),
        "threads": get_num_threads(),
    }
from . import check  # noqa: E402, F401  (cycnn.check: checkers for your own code)
