"""glibc malloc settings for streaming on the CPU: keep freed memory for the next frame instead of returning it.

A 1.2B frame allocates and frees about a gigabyte of activations. With glibc's defaults, freed blocks above its
adaptive thresholds go back to the kernel (``munmap``, heap trimming) and the next frame faults every page in again,
zero-filled, which costs a large share of a CPU frame in kernel time (benchmarks/README.md has the counts). Fixing
the mmap threshold at its maximum, never trimming the heap and growing it in large steps makes every frame after
the first reuse the same pages, at the price of the process keeping its peak heap.

PyTorch's CPU tuning guide suggests preloading jemalloc or tcmalloc for the same reason; those cannot be loaded
from inside a running process, while ``mallopt`` can, so this is the one setting a library can make for its user.
It is skipped when the user already chose (``MALLOC_*`` variables, ``glibc.malloc`` tunables, a preloaded
allocator), on other C libraries, and when ``STREAMVGGT_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

OPT_OUT_ENV = "STREAMVGGT_TUNE_MALLOC"
# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2); larger blocks are mapped anyway.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Heap tops up to this size stay with the process (the largest value mallopt's int takes).
TRIM_THRESHOLD_BYTES = 2**31 - 1
# Extra room each heap growth asks for: smaller pads leave most of a 1.2B frame's page faults in place
# (benchmarks/README.md). Untouched pad pages cost address space, not memory.
TOP_PAD_BYTES = 512 * 2**20

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to its maximum and stop heap trimming, once per process.

    Returns True when the settings are in force (set now or earlier), False when skipped (see module doc).
    """
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    reason = _reason_to_skip()
    if reason:
        log.debug("malloc settings left as they are: %s", reason)
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("malloc settings left as they are: no mallopt in this process")
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    settings += ((_M_TOP_PAD, TOP_PAD_BYTES),)
    applied = all([bool(mallopt(param, value)) for param, value in settings])
    log.info("malloc keeps freed memory for the next frame (%s=0 turns this off)", OPT_OUT_ENV)
    return applied


def _reason_to_skip() -> str:
    if os.environ.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{OPT_OUT_ENV} is off"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    chosen = sorted(name for name in os.environ if name.startswith("MALLOC_") and name.endswith("_"))
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return "set by the environment (" + ", ".join(chosen) + ")"
    preload = os.environ.get("LD_PRELOAD", "")
    if "malloc" in preload:
        return f"another allocator is preloaded ({preload})"
    return ""
