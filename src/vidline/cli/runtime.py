"""Tuning of the ``vidline`` process itself (the CLI owns its process; the library never does this).

* ``tune_allocator`` (``vidline.allocator``): two fixed glibc malloc thresholds instead of its
  dynamic ones.

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
import gc
import importlib
import logging
from collections.abc import Iterator

from vidline.allocator import tune_allocator
from vidline.models.base import set_import_guard
from vidline.models.config import ModelConfig

logger = logging.getLogger("vidline")
_SDK_MODULES = {"openai": "openai", "dashscope": "dashscope"}
__all__ = ["paused_collector", "settle_imports", "tune_allocator"]


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
