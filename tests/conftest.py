"""Fixtures and helpers shared by the test modules."""

import importlib
import os

import numpy as np
import pytest

import cycnn

#: relative tolerance per dtype when comparing two correct implementations
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


#: skip a test that needs two threads when the kernels were built without OpenMP
needs_openmp = pytest.mark.skipif(
    not cycnn.build_info()["openmp"],
    reason="the kernels were built without OpenMP (CYCNN_NO_OPENMP=1 or no compiler "
    "support): every loop runs on one thread, so there is nothing to compare",
)


@pytest.fixture
def one_thread():
    """Run a test on one thread (modules that compare bits or time tiny runs use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import cycnn
    old = cycnn.get_num_threads()
    cycnn.set_num_threads(1)
    yield
    cycnn.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    """The bundled digits, loaded once per module."""
    import cycnn
    return cycnn.datasets.load_digits()


@pytest.fixture
def always_parallel(monkeypatch):
    """Lower the size thresholds below which cycnn's loops stay on one thread, so that
    ``threads=2`` really runs two threads even on the small arrays of a test."""
    import cycnn.activations
    import cycnn.conv
    import cycnn.norm
    import cycnn.pool

    monkeypatch.setattr(cycnn.conv, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(cycnn.conv, "FAST_PARALLEL_MIN_MACS", 0)
    monkeypatch.setattr(cycnn.pool, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(cycnn.norm, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(cycnn.activations, "PARALLEL_MIN_ELEMENTS", 0)


def needs_browser(executable, what):
    """A mark that skips without a browser, unless ``CYCNN_REQUIRE_BROWSER=1`` (set by
    .ci/run once it has installed one): then a missing browser fails the test."""
    if executable is not None:
        return lambda test: test  # nothing to add (an empty usefixtures() warns)
    if os.environ.get("CYCNN_REQUIRE_BROWSER", "") not in ("", "0"):
        return pytest.mark.usefixtures("_browser_required")
    return pytest.mark.skip(
        reason=f"chromium is not installed (apt-get install -y chromium): {what}")


@pytest.fixture(scope="session")  # before any module fixture that would start the browser
def _browser_required():
    pytest.fail("CYCNN_REQUIRE_BROWSER=1 but no chromium is installed: the browser tests "
                "cannot run")


def extra_or_skip(module, reason):
    """Import ``module`` (a package of the test extras: onnx, onnxruntime, safetensors) or
    skip the calling test with ``reason``, unless ``CYCNN_REQUIRE_EXTRAS=1`` (set by .ci/run,
    which installs the extras): then a missing package fails the test, so CI cannot pass
    with the ONNX and safetensors round trips skipped."""
    if os.environ.get("CYCNN_REQUIRE_EXTRAS", "") not in ("", "0"):
        try:
            return importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"CYCNN_REQUIRE_EXTRAS=1 but {module} cannot be imported ({e})")
    return pytest.importorskip(module, reason=reason)


def torch_or_skip():
    """Import torch or skip the calling test with a visible reason.

    ``CYCNN_TEST_WITHOUT_TORCH=1`` skips them even where torch is installed (CI runs the
    suite that way on the baseline build and on the other Pythons).
    """
    if os.environ.get("CYCNN_TEST_WITHOUT_TORCH", "") not in ("", "0"):
        pytest.skip("CYCNN_TEST_WITHOUT_TORCH=1: the PyTorch oracle is skipped on purpose",
                    allow_module_level=True)
    return pytest.importorskip(
        "torch", reason="PyTorch is not installed: the PyTorch oracle is skipped "
        "(CI installs torch==2.13.0)"
    )
