"""Tuning of the ``vidline`` process itself (the CLI owns its process; the library never does this).

* ``tune_allocator``: two fixed glibc malloc thresholds instead of its dynamic ones.

  - mmap threshold 4 MB: glibc raises its own after the first large block is freed (up to 32 MB),
    after which each window's multi-MB x264 buffers come from the per-thread heaps and stay
    resident (two decode lanes on a 720p hour peaked at ~295 MB). Above 4 MB they are mapped and
    handed back when freed.
  - trim threshold 16 MB: below it, freed memory at the top of a heap is kept for the next block.
    A frame (0.8-1.7 MB at Qwen's video size) is allocated and freed thousands of times per run;
    with a small trim threshold each one is returned to the kernel and faulted in again (measured
    on a 720p hour: 1.5 million page faults, 4.4 s of system time, against 61,000 and 0.8 s, and
    ~13 % less wall time; in ``frames`` mode 3 million faults and 8 s).
* ``settle_imports``: import the model SDK with the garbage collector paused (for a timeline with the
  openai SDK: in the run's warm-up thread, beside its first decoding), then freeze everything
  imported so far. The openai SDK creates some 10^5 objects at import; left in the collector's
  oldest generation they are scanned again by every full collection of the run (measured: 0.3-0.4 s
  of a 3-9 s timeline; the import itself is ~15 % faster without collections).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import logging
import os
import sys
from collections.abc import Iterator

from vidline.models.base import set_import_guard
from vidline.models.config import ModelConfig

logger = logging.getLogger("vidline")

# glibc's mallopt parameters, their values here, and the environment variables that set them instead
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 16 << 20
_SETTINGS = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
             (_M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"))


def tune_allocator() -> list[str]:
    """Fix glibc's mmap threshold at 4 MB and its trim threshold at 16 MB, each unless its environment
    variable (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) sets it; the names of the
    variables set here (none off glibc)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return []
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return [env for param, value, env in _SETTINGS if env not in os.environ and mallopt(param, value)]


_SDK_MODULES = {"openai": "openai", "dashscope": "dashscope"}


def settle_imports(config: ModelConfig | None, *, background: bool = False) -> None:
    """Import what a run with ``config`` needs (its model SDK) without garbage collections, then
    freeze the objects created so far out of later collections.

    ``background`` (the timeline, whose backend warms up in a thread while it decodes): the openai
    SDK is not imported here; its warm-up runs inside ``paused_collector`` instead."""
    module = _SDK_MODULES.get(config.backend) if config is not None else None
    if background and module == "openai":
        set_import_guard(paused_collector)
        module = None
    with paused_collector():
        if module is not None:
            try:
                importlib.import_module(module)
            except ImportError as exc:  # reported by the run itself, with its usual message
                logger.debug("could not preload %s: %s", module, exc)


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """No garbage collection inside; afterwards, everything alive is frozen out of later collections."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
