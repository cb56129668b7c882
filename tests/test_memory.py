"""Training steps reuse the pages of the steps before them (cycnn/_memory.py)."""

import os
import subprocess
import sys

import pytest


def _glibc():
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


glibc_only = pytest.mark.skipif(not _glibc(),
                                reason="malloc's thresholds are set on Linux with glibc only")

#: a child process: a few LeNet-5 steps of 64, then the page faults of 20 more
_STEPS = """
import resource, numpy as np, cycnn
from cycnn import _memory
cycnn.set_num_threads(1)
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
y = rng.integers(0, 10, 64)
model, opt = cycnn.lenet5(0), cycnn.SGD(lr=0.01, momentum=0.9)
for _ in range(5):
    model.train_step(x, y, opt)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    model.train_step(x, y, opt)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(_memory.kept, faults / 20)
"""


def _faults_per_step(keep):
    env = dict(os.environ, CYCNN_KEEP_HEAP="1" if keep else "0", CYCNN_SHARD_STEPS="0")
    out = subprocess.run([sys.executable, "-c", _STEPS], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    kept, faults = out.stdout.split()
    return kept, float(faults)


@glibc_only
def test_a_step_touches_no_fresh_page():
    """Measured: 1-4 page faults per LeNet-5 step (the interpreter's own), against
    50-250 with glibc's own thresholds (176 with CYCNN_KEEP_HEAP=0)."""
    kept, faults = _faults_per_step(True)
    assert kept == "True"
    assert faults < 20, f"{faults} page faults per training step"


@glibc_only
def test_the_environment_switch_leaves_malloc_alone():
    kept, _ = _faults_per_step(False)
    assert kept == "False"
