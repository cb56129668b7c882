"""Memory freed by one training step stays mapped for the next (glibc's malloc only).

A training step allocates its activations and gradients afresh (a LeNet-5 step of 64
images: a few MB, in arrays of up to a megabyte) and frees them when it ends. glibc's
malloc hands the free top of its heap back to the system once it outgrows the trim
threshold, which it adjusts as it goes and which stays at a few MB; the next step then
touches those pages again, and every first touch of a page is a page fault (on a virtual
machine, microseconds each). Measured on a 2-CPU VM: 50 to 250 page faults per LeNet-5
step, and a step of 2.3-2.5 ms on one thread that took 1.87 ms, with no fault, once the
freed memory stayed mapped.

So the first training step of a process (and every shard worker) sets two of malloc's
thresholds: the free top of the heap is kept up to :data:`TRIM_THRESHOLD` bytes, and
arrays up to :data:`MMAP_THRESHOLD` bytes come from the heap (the largest threshold glibc
would choose itself; without it, fixing the first would fix this one at 128 kB, and every
larger array would be mapped and faulted afresh). The cost is that a process may keep up
to :data:`TRIM_THRESHOLD` bytes more resident after training than it would have.
``CYCNN_KEEP_HEAP=0`` in the environment leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: bytes of free memory at the top of the heap that malloc keeps instead of returning them
TRIM_THRESHOLD = 64 << 20
#: the size from which malloc maps an array on its own instead of taking it from the heap
MMAP_THRESHOLD = 32 << 20

#: whether :func:`keep_freed_memory` sets anything (``CYCNN_KEEP_HEAP=0`` turns it off)
ENABLED = os.environ.get("CYCNN_KEEP_HEAP", "1") not in ("", "0")

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: None until the first call; then whether the thresholds were set in this process
kept = None


def keep_freed_memory() -> bool:
    """Set malloc's thresholds once per process (see the module); returns whether they
    are set. Does nothing off glibc, or with ``CYCNN_KEEP_HEAP=0``."""
    global kept
    if kept is None:
        kept = ENABLED and sys.platform.startswith("linux") and _mallopt()
    return kept


def _mallopt() -> bool:
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: other parameters
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the mmap threshold first: setting either stops glibc adjusting both
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
