"""Choose, at import time, which build of each kernel module to use.

setup.py compiles every kernel module once per row of its ``VARIANTS`` table (for
instance ``cycnn._conv_avx512``, ``cycnn._conv_avx2``) beside the baseline build
``cycnn._conv`` that runs on any x86-64 CPU. The generated module ``cycnn._cpu`` carries
the same table and asks the CPU which features it has (the compiler's
``__builtin_cpu_supports``, which also checks that the OS saves the wide registers).
:func:`load` tries the variants best first and takes the first whose features the CPU has
and which imports, the way NumPy dispatches its own SIMD loops; the baseline is the last
resort.

Environment variables, read at import: ``CYCNN_FORCE_BASELINE=1`` loads the baseline
build; ``CYCNN_VARIANT=avx2`` (a suffix from the table) asks for one variant, falling back
to the baseline if the CPU cannot run it. The tests use both to check every build.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform

try:
    from . import _cpu
except ImportError:  # pragma: no cover - a build without the generated module
    _cpu = None

_CHOSEN: dict[str, str] = {}


def cpu_features() -> set[str]:
    """The CPU features, among those the variants need, that this machine supports."""
    return _cpu.cpu_features() if _cpu is not None else set()


def variants() -> list[tuple[str, list[str]]]:
    """The build variants of setup.py's table as ``(suffix, features needed)``, best first
    (baseline excluded), whether or not this installation has them."""
    return [(s, list(f)) for s, f in _cpu.VARIANTS] if _cpu is not None else []


def requested() -> list[str]:
    """The variants the build was asked to compile (``CYCNN_VARIANTS`` can narrow them)."""
    return list(getattr(_cpu, "REQUESTED", [])) if _cpu is not None else []


def built(name: str = "_conv") -> list[str]:
    """The variants of kernel module ``name`` present in this installation, best first."""
    found = []
    for suffix, _ in variants():
        try:
            if importlib.util.find_spec(f"cycnn.{name}_{suffix}") is not None:
                found.append(suffix)
        except (ImportError, ValueError):
            pass
    return found


def cpu_model() -> str:
    """The processor's model name, as the OS reports it ('' when it does not)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def candidates() -> list[str]:
    """Suffixes of the variants this CPU can run, best first, after the environment's say."""
    if os.environ.get("CYCNN_FORCE_BASELINE", "") not in ("", "0") or not _x86():
        return []
    have = cpu_features()
    present = built()
    runnable = [s for s, needs in variants() if set(needs) <= have and s in present]
    asked = os.environ.get("CYCNN_VARIANT", "").strip()
    if asked:
        return [s for s in runnable if s == asked]
    return runnable


def baseline_name() -> str:
    return "baseline x86-64" if _x86() else "baseline"


def load(name: str):
    """Import the best build of kernel module ``cycnn.<name>`` that this CPU can run."""
    for suffix in candidates():
        try:
            mod = importlib.import_module(f"cycnn.{name}_{suffix}")
        except ImportError:
            continue
        _CHOSEN[name] = suffix
        return mod
    mod = importlib.import_module(f"cycnn.{name}")
    _CHOSEN[name] = baseline_name()
    return mod


def chosen() -> dict[str, str]:
    """Which build was loaded for each kernel module, e.g. ``{'_conv': 'avx2'}``."""
    return dict(_CHOSEN)
