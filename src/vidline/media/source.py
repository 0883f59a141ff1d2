"""The ``FrameSource`` interface: turn sorted target times into decoded, resized, upright frames.

Two implementations: ``pyav`` (default, backends/pyav.py) and ``decord`` (optional,
backends/decord.py, imported lazily). Both obey the same contract, checked by one conformance
table in tests/test_media_sampler.py:

* ``read(targets)`` yields exactly one ``Frame`` per target, in target order (targets must be
  sorted by time). Each frame is the source frame whose display time is *nearest* the target
  (ties go to the earlier frame); ``Frame.t`` is that frame's real presentation time in seconds
  from the first displayed frame, ``Frame.pts`` its source PTS. Targets past the last decodable
  frame of a truncated file are dropped (with one warning naming the time where decoding stopped).
* ``keyframes(start, end)`` yields the keyframes displayed in ``[start, end)``.
* Images are RGB ``uint8`` H x W x 3 (or H x W with ``gray=True``), rotation metadata applied,
  resized to the target's ``(width, height)`` (upright size) or the display size when ``None``.
* ``read(..., pixel_format="yuv420p")`` is a *preference*: a backend that can give planar I420
  without going through RGB does (``Frame.format == "yuv420p"``, see media/pixels.py); the others,
  and odd output sizes, give RGB. Consumers look at ``Frame.format`` or call ``Frame.rgb()``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from vidline.errors import ConfigError
from vidline.types import Frame, VideoInfo

BACKENDS = ("pyav", "decord")


@dataclass(frozen=True)
class Target:
    """A wanted frame: time ``t`` (seconds from the first displayed frame) and output size."""

    t: float
    width: int | None = None
    height: int | None = None


class FrameSource(abc.ABC):
    """Decodes frames of one video file. Use as a context manager or call ``close()``."""

    name: str = "?"

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo) -> None:
        self.path = str(path)
        self.info = info
        #: time (s) of the last decodable frame when decoding stopped before the end, else None
        self.truncated_at: float | None = None
        #: log a warning where decoding stops early (off for a second pass over an already reported file)
        self.warn_truncated = True

    @abc.abstractmethod
    def read(self, targets: Sequence[Target], *, gray: bool = False,
             pixel_format: str = "rgb24") -> Iterator[Frame]:
        """One frame per target (nearest by display time), in order; targets sorted by ``t``.

        ``pixel_format="yuv420p"`` asks for planar I420 where the backend can give it cheaply."""

    @abc.abstractmethod
    def keyframes(
        self,
        start: float = 0.0,
        end: float | None = None,
        *,
        size: tuple[int, int] | None = None,
        gray: bool = False,
    ) -> Iterator[Frame]:
        """Keyframes displayed in ``[start, end)``, resized to ``size`` (w, h) when given."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles (sources open lazily per call, so this is often a no-op)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def output_size(self, target: Target) -> tuple[int, int]:
        """Upright ``(width, height)`` for a target (display size when unspecified)."""
        if target.width and target.height:
            return int(target.width), int(target.height)
        return self.info.display_width, self.info.display_height


def check_sorted(targets: Sequence[Target]) -> None:
    for a, b in zip(targets, targets[1:], strict=False):
        if b.t < a.t:
            raise ValueError("targets must be sorted by time")


def open_source(path: str | os.PathLike[str], info: VideoInfo, backend: str = "pyav", *,
                threads: int | None = None) -> FrameSource:
    """The FrameSource for ``backend`` ("pyav" or "decord"). ConfigError for unknown/missing backends.

    decord is used only where it gives the right frames (see backends/decord.py): for B-frames in a
    container without an index (MPEG-TS, FLV, ...), or a file decord cannot open, this returns the
    PyAV source and logs one warning.

    ``threads``: decoder threads (PyAV; None = FFmpeg's automatic frame + slice threading over all
    CPUs, 1 = decode on the calling thread only). The timeline gives the decoder the CPUs its payload
    encoders do not use."""
    if backend == "pyav":
        from vidline.media.backends.pyav import PyAVSource

        return PyAVSource(path, info, threads=threads)
    if backend == "decord":
        from vidline.media.backends.decord import open_decord

        return open_decord(path, info, threads=threads)
    raise ConfigError(f"unknown decoding backend {backend!r} (choose from {', '.join(BACKENDS)})")


def available_backends() -> list[str]:
    """Backends importable in this environment (pyav always)."""
    import importlib.util

    return [b for b in BACKENDS if b == "pyav" or importlib.util.find_spec(b) is not None]
