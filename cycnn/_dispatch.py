"""Choose, at import time, which build of each kernel module to use.

setup.py compiles every kernel module twice on x86-64: a baseline build that runs on any
x86-64 CPU and an ``_avx2`` build with AVX2 and FMA. This module loads the AVX2 build
when the CPU reports both features, the way NumPy dispatches its own SIMD loops, and
falls back to the baseline otherwise. ``CYCNN_FORCE_BASELINE=1`` forces the baseline
(the tests use it to check the fallback path).
"""

from __future__ import annotations

import importlib
import os
import platform


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _want_avx2() -> bool:
    if os.environ.get("CYCNN_FORCE_BASELINE", "") not in ("", "0"):
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return {"avx2", "fma"} <= _cpu_flags()


_CHOSEN: dict[str, str] = {}


def load(name: str):
    """Import ``cycnn.<name>_avx2`` if this CPU can run it, else ``cycnn.<name>``."""
    if _want_avx2():
        try:
            mod = importlib.import_module(f"cycnn.{name}_avx2")
            _CHOSEN[name] = "avx2+fma"
            return mod
        except ImportError:
            pass
    mod = importlib.import_module(f"cycnn.{name}")
    _CHOSEN[name] = "baseline x86-64" if platform.machine().lower() in ("x86_64", "amd64") \
        else "baseline"
    return mod


def chosen() -> dict[str, str]:
    """Which build was loaded for each kernel module, e.g. ``{'_conv': 'avx2+fma'}``."""
    return dict(_CHOSEN)
