"""The data-cache sizes the CPU reports, read once at import.

The fast convolution route (``conv._fast_plan``) cuts its work into pieces whose buffers
fit a share of one core's L2 cache, so the sizes come from the machine, not from a
constant tuned on one of them. Linux describes every cache in sysfs
(``/sys/devices/system/cpu/cpu0/cache/index*``: level, type, size and the CPUs sharing
it); where that is missing, ``os.sysconf`` is asked (Python knows the names
``SC_LEVEL1_DCACHE_SIZE`` ... on some platforms); failing both, a size no x86-64 or ARM
core of the last decade falls below is assumed.
"""

from __future__ import annotations

import os
from pathlib import Path

#: assumed when the OS reports nothing: small enough for any current core
DEFAULTS = {"L1d": 32 * 1024, "L2": 256 * 1024, "L3": 2 * 1024 * 1024}

_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")
_SYSCONF = {"L1d": "SC_LEVEL1_DCACHE_SIZE", "L2": "SC_LEVEL2_CACHE_SIZE",
            "L3": "SC_LEVEL3_CACHE_SIZE"}


def _parse_size(text: str) -> int:
    """'48K' -> 49152, '2048K' -> 2097152, '105M' -> 110100480, '512' -> 512."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _count_cpus(cpu_list: str) -> int:
    """'0-3,8' -> 5."""
    n = 0
    for part in cpu_list.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            n += int(hi) - int(lo) + 1
        elif part:
            n += 1
    return max(n, 1)


def _from_sysfs(root: Path = _SYSFS) -> dict:
    found = {}
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        try:
            shared = _count_cpus((index / "shared_cpu_list").read_text())
        except (OSError, ValueError):
            shared = 1
        if kind == "Instruction" or size <= 0:
            continue
        name = "L1d" if level == 1 else f"L{level}"
        if name in DEFAULTS:
            found[name] = (size, shared)
    return found


def _from_sysconf() -> dict:
    found = {}
    for name, key in _SYSCONF.items():
        if key in getattr(os, "sysconf_names", {}):
            try:
                size = os.sysconf(key)
            except (OSError, ValueError):
                continue
            if size > 0:
                found[name] = (size, 1)
    return found


def detect(root: Path = _SYSFS) -> dict:
    """The cache sizes of this machine.

    Returns
    -------
    dict
        ``{"L1d": bytes, "L2": bytes, "L3": bytes, "shared_by": {"L2": cpus, ...},
        "source": {"L2": "sysfs" | "sysconf" | "default", ...}}``. ``shared_by`` counts the
        CPUs that share each cache (1 for a private L2).
    """
    sysfs, sysconf = _from_sysfs(root), _from_sysconf()
    out = {"shared_by": {}, "source": {}}
    for name, default in DEFAULTS.items():
        for source, table in (("sysfs", sysfs), ("sysconf", sysconf)):
            if name in table:
                out[name], out["shared_by"][name] = table[name]
                out["source"][name] = source
                break
        else:
            out[name], out["shared_by"][name], out["source"][name] = default, 1, "default"
    return out


#: read once, at import
CACHES = detect()


def per_core(name: str) -> int:
    """One core's share of cache ``name`` ('L1d', 'L2' or 'L3'), in bytes."""
    return CACHES[name] // max(1, CACHES["shared_by"][name])
