"""Fixtures and helpers shared by the test modules."""

import numpy as np
import pytest

#: relative tolerance per dtype when comparing two correct implementations
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


def torch_or_skip():
    """Import torch or skip the calling test with a visible reason."""
    return pytest.importorskip(
        "torch", reason="PyTorch is not installed: the PyTorch oracle is skipped "
        "(CI installs torch==2.13.0)"
    )
