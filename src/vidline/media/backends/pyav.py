"""PyAV FrameSource (the default backend).

Decoding strategy, chosen per video and per target as decoding goes:

* sequential: decode forward and keep the frame nearest each target (cost = one full decode);
* keyframe-aware seeking: before moving on to the next target, seek to the last keyframe at or before
  it when that keyframe lies at least ``MIN_SKIP_FRAMES`` frames past the current decode position
  (keyframe times from the container index when there is one, otherwise from the probed keyframe
  interval). With sparse targets this skips whole GOPs; with targets a little denser than keyframes
  it skips the tail of each GOP after its last target (1 fps on a 1-s GOP decodes about one frame
  per target instead of every frame). A seek costs less than decoding three frames: with the index
  it is a lookup and a decoder flush, and the keyframe it lands on is decoded either way.
* keyframes only (``keyframes()``): ``codec_context.skip_frame = "NONKEY"``.

Threads: FFmpeg's automatic frame + slice threading over every CPU by default; ``threads=1``
decodes on the calling thread only, which is what a caller wants when its other CPUs are busy
with other work (the timeline's payload encoders): oversubscribed frame threads spend their time
handing frames to each other (measured: a 60-min 640x360 decode plus encoding cost 2.3x the CPU
of each alone).

Frames are converted with a cached ``VideoReformatter`` (libswscale, area filter) straight to the
output size and format (RGB, or planar yuv420p for the mp4 payload path, which then needs no colour
conversion at all), so no full-resolution RGB array is ever made; only the current and previous decoded
frames are held.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidline.log import logger
from vidline.media.pixels import FORMATS, frame_array, i420_rotate
from vidline.media.probe import frame_ticks, open_container, true_last_pts
from vidline.media.source import FrameSource, Target, check_sorted
from vidline.types import Frame, VideoInfo

STRATEGIES = ("auto", "sequential", "seek")
# a seek (index lookup + decoder flush, and with frame threads their refill) is worth it when it skips
# this many frames of decoding (measured: 720p 4-s GOPs at 1 fps 8-12 % less CPU than with the former
# 1 s / 10 frames, a 1-s GOP 7x less; 320x240 neither gains nor loses)
MIN_SKIP_FRAMES = 3


class PyAVSource(FrameSource):
    name = "pyav"

    def __init__(self, path: Any, info: VideoInfo, *, strategy: str = "auto", threads: int | None = None) -> None:
        super().__init__(path, info)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}")
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1 (or None for automatic)")
        self.strategy = strategy
        self.threads = threads
        self.stats: dict[str, int] = {"seeks": 0, "backward_seeks": 0, "overshoots": 0, "decoded": 0, "errors": 0}
        self._warned = False
        self._seeking_disabled = False
        # learned from seeks that landed past their target (see ``_back_off``): how far before a target
        # the keyframe sought must lie (index), and how much earlier than planned to seek (no index)
        self._lead = 0.0
        self._seek_back = 0.0
        # one reformatter per source keeps libswscale's context cached between frames
        self._reformatter = VideoReformatter()

    # -- helpers ---------------------------------------------------------------------------
    def _open(self) -> tuple[Any, Any, Fraction, int]:
        container = open_container(self.path)
        stream = container.streams.video[0]
        if self.threads == 1:
            stream.thread_type = "NONE"  # no decoder threads: their hand-offs cost more than they give
        else:
            stream.thread_type = "AUTO"
            if self.threads:
                stream.codec_context.thread_count = self.threads
        tb: Fraction = stream.time_base or self.info.time_base
        first = round(Fraction(self.info.start_time).limit_denominator(10**9) / tb)
        return container, stream, tb, first

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decoded frames in presentation order; damaged packets are skipped, EOF errors end it.

        The last frame is held back until the stream ends, for ``true_last_pts`` (a PTS FFmpeg made up
        becomes one frame step after the frame before it, as probe has it)."""
        held: Any = None
        before: int | None = None  # the PTS of the frame before ``held``
        try:
            for packet in container.demux(stream):
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError as exc:
                    self.stats["errors"] += 1
                    logger.debug("%s: skipping undecodable packet at pts %s: %s", self.path, packet.pts, exc)
                    continue
                for f in frames:
                    self.stats["decoded"] += 1
                    if held is not None:
                        before = held.pts
                        yield held
                    held = f
        except av.error.FFmpegError as exc:  # demuxer gave up (e.g. data missing)
            logger.debug("%s: demuxing stopped: %s", self.path, exc)
        if held is not None:
            if before is not None and held.pts is not None:
                held.pts = true_last_pts(before, held.pts, frame_ticks(self.info.fps, stream.time_base))
            yield held

    def _keyframe_times(self, stream: Any, tb: Fraction, first: int) -> list[float] | None:
        """Display times of the keyframes, from the container index (None without an index).

        Index timestamps are decode times (DTS); seeking is by presentation time. With B-frames a
        keyframe is shown ``delay`` ticks after it is decoded, where ``delay`` is the first frame's
        PTS minus the first DTS; without this shift a seek to a keyframe's DTS lands one GOP early.
        """
        entries = stream.index_entries
        if len(entries) < 2:
            return None
        delay = max(0, first - entries[0].timestamp)
        return [float((e.timestamp + delay - first) * tb) for e in entries if e.is_keyframe]

    def _seek_point(self, pos: float, target: float, keys: list[float] | None) -> float | None:
        """Where to seek before decoding towards ``target`` (None: keep decoding forward).

        Seek only when a keyframe lies after the current position ``pos`` (by at least
        ``MIN_SKIP_FRAMES`` frames) and at or before the target.
        """
        if self.strategy == "sequential" or self._seeking_disabled:
            return None
        margin = 2.0 / self.info.fps if self.info.fps else 0.1
        if self.strategy == "seek":
            point = max(0.0, target - margin - self._seek_back)
            # a fresh decode already starts at the first frame
            return point if target > pos and (point > 0.0 or pos > -math.inf) else None
        if keys is not None:
            # a seek flushes the decoder (and its threads' work): worth it only when it skips at
            # least MIN_SKIP_FRAMES frames of decoding
            min_skip = MIN_SKIP_FRAMES / self.info.fps if self.info.fps else 0.1
            k = bisect.bisect_right(keys, target - self._lead + 1e-6) - 1
            return keys[k] if k >= 0 and keys[k] > max(pos, 0.0) + min_skip else None
        interval = self.info.keyframe_interval
        limit = 2.0 * interval if interval else 30.0
        return max(0.0, target - margin - self._seek_back) if target - max(pos, 0.0) > limit else None

    def _back_off(self, sought: float, landed: float, target: float, keys: list[float] | None) -> float:
        """Where to seek again after a seek to ``sought`` whose first frame (at ``landed``) is past
        ``target``: a full pass may show frames before ``landed`` that are nearer the target, which this
        seek did not decode. Two causes: a keyframe shown after frames decoded after it (the leading
        pictures of an open GOP, MPEG-4 B-frames in AVI), whose index time is then too early; and a
        demuxer that lands on the keyframe *after* the point asked (MPEG-TS has no index). Either way
        the next seek goes further back (strictly earlier, so this ends at the start of the file), and
        later seeks keep that distance."""
        self.stats["overshoots"] += 1
        if keys is not None:
            self._lead = max(self._lead, landed - sought)
            k = bisect.bisect_right(keys, min(sought, target - self._lead) - 1e-6) - 1
            return keys[k] if k >= 0 else 0.0
        # at least the distance already learned: the distance doubles with each overshoot in a row, so
        # even a file with a keyframe every frame needs few retries
        step = max(self.info.keyframe_interval or 1.0, landed - target, self._seek_back)
        self._seek_back += step
        return max(0.0, sought - step)

    def _convert(self, f: Any, size: tuple[int, int], fmt: str) -> tuple[np.ndarray, str]:
        """(array, format) of decoded frame ``f`` scaled to ``size`` (upright) in ``fmt``
        ("rgb24", "gray" or "yuv420p"; yuv420p needs even sides, else RGB is given)."""
        w, h = size
        if fmt == "yuv420p" and (w % 2 or h % 2):
            fmt = "rgb24"
        rot = self.info.rotation
        cw, ch = (h, w) if rot in (90, 270) else (w, h)
        out = self._reformatter.reformat(f, width=cw, height=ch, format=fmt, interpolation="AREA")
        arr = frame_array(out)
        if rot and fmt == "yuv420p":
            arr = i420_rotate(arr, rot)
        elif rot:
            arr = np.ascontiguousarray(np.rot90(arr, k=-(rot // 90)))
        return arr, fmt

    def _warn_truncated(self, last_t: float | None) -> None:
        at = last_t if last_t is not None else 0.0
        self.truncated_at = at
        if not self._warned and self.warn_truncated:
            self._warned = True
            logger.warning("%s: decoding stopped at %.3f s (file truncated or damaged)", self.path, at)

    # -- FrameSource ---------------------------------------------------------------------
    def read(self, targets: Sequence[Target], *, gray: bool = False,
             pixel_format: str = "rgb24") -> Iterator[Frame]:
        check_sorted(targets)
        fmt = "gray" if gray else pixel_format
        if fmt not in FORMATS:
            raise ValueError(f"pixel_format must be one of {FORMATS}")
        if not targets:
            return
        container, stream, tb, first = self._open()
        try:
            keys = self._keyframe_times(stream, tb, first) if self.strategy == "auto" else None
            n = len(targets)
            i = 0
            pos = -math.inf
            prev: tuple[Any, float] | None = None
            cache: tuple[Any, tuple[int, int], np.ndarray, str] | None = None
            frames = self._decode(container, stream)
            tb_num, tb_den = tb.numerator, tb.denominator  # int arithmetic: Fraction costs ~1.5 us a frame

            def make(choice: tuple[Any, float], target: Target) -> Frame:
                nonlocal cache
                f, t = choice
                size = self.output_size(target)
                if cache is not None and cache[0] is f and cache[1] == size:
                    img, got = cache[2], cache[3]
                else:
                    img, got = self._convert(f, size, fmt)
                    cache = (f, size, img, got)
                return Frame(t=t, image=img, pts=int(f.pts), time_base=tb, format=got)

            retry: float | None = None  # seek again from here: the last seek landed past its target
            while i < n:
                retrying = retry is not None
                seek_to = retry if retry is not None else self._seek_point(pos, targets[i].t, keys)
                retry = None
                before_seek = pos
                if seek_to is not None:
                    if seek_to > 0.0:
                        container.seek(
                            first + round(seek_to / tb), stream=stream, backward=True, any_frame=False
                        )
                    else:  # back to the first frame: opened again, since a seek to the first timestamp
                        container.close()  # lands on the second keyframe with some demuxers (MPEG-TS)
                        container, stream, tb, first = self._open()
                    self.stats["seeks"] += 1
                    frames = self._decode(container, stream)
                    prev = None
                    pos = -math.inf
                sought = seek_to  # the first frame after a seek is checked
                for f in frames:
                    if f.pts is None:
                        continue
                    t = (f.pts - first) * tb_num / tb_den  # exact rational, correctly rounded
                    if prev is not None and t <= prev[1]:
                        continue
                    if sought is not None:
                        if sought > 0.0 and t > targets[i].t + 1e-6:
                            retry = self._back_off(sought, t, targets[i].t, keys)
                            break
                        if not retrying and before_seek > -math.inf and t < before_seek - 1e-6:
                            # the seek landed before where we already were: seeking does not help on
                            # this file (odd index); decode sequentially from here on
                            self.stats["backward_seeks"] += 1
                            self._seeking_disabled = True
                        sought = None
                    pos = t
                    if t < targets[i].t:
                        prev = (f, t)
                        continue
                    while i < n and targets[i].t <= t:
                        tt = targets[i].t
                        choice = prev if prev is not None and tt - prev[1] <= t - tt else (f, t)
                        yield make(choice, targets[i])
                        i += 1
                    prev = (f, t)
                    break
                else:  # decoder exhausted
                    yield from self._finish(targets[i:], prev, make)
                    break
        finally:
            container.close()

    def _finish(self, rest: Sequence[Target], prev: tuple[Any, float] | None, make: Any) -> Iterator[Frame]:
        """Targets after the last decoded frame: the last frame if the file ended normally."""
        if prev is None:
            self._warn_truncated(None)
            return
        last_t = prev[1]
        frame_dur = 1.0 / self.info.fps if self.info.fps else 0.1
        complete = last_t + 1.5 * frame_dur + 0.05 >= self.info.duration
        for target in rest:
            if complete or target.t <= last_t + frame_dur:
                yield make(prev, target)
            else:
                self._warn_truncated(last_t)
                return
        if not complete or self.info.truncated:
            self._warn_truncated(last_t)

    def keyframes(
        self,
        start: float = 0.0,
        end: float | None = None,
        *,
        size: tuple[int, int] | None = None,
        gray: bool = False,
    ) -> Iterator[Frame]:
        container, stream, tb, first = self._open()
        try:
            stream.codec_context.skip_frame = "NONKEY"
            if start > 0:
                container.seek(first + int(start / tb), stream=stream, backward=True, any_frame=False)
            out = size or (self.info.display_width, self.info.display_height)
            for f in self._decode(container, stream):
                if f.pts is None:
                    continue
                t = float((f.pts - first) * tb)
                if t < start - 1e-6:
                    continue
                if end is not None and t >= end:
                    break
                img, got = self._convert(f, out, "gray" if gray else "rgb24")
                yield Frame(t=t, image=img, pts=int(f.pts), time_base=tb, format=got)
        finally:
            container.close()
