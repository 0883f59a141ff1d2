"""glibc's malloc thresholds, fixed instead of dynamic, for a process vidline owns: the CLI's (see
``vidline.cli.runtime``) and each decode worker process's (``vidline.workers``)."""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters, their values here, and the environment variables that set them instead
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
_SETTINGS = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
             (_M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"))


def tune_allocator(mmap: int = MMAP_THRESHOLD, trim: int = TRIM_THRESHOLD) -> list[str]:
    """Fix glibc's mmap threshold (default 4 MB) and its trim threshold (default 16 MB), each unless
    its environment variable (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) sets it; the
    names of the variables set here (none off glibc)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    values = {_M_MMAP_THRESHOLD: mmap, _M_TRIM_THRESHOLD: trim}
    return [env for param, _default, env in _SETTINGS if env not in os.environ and mallopt(param, values[param])]
