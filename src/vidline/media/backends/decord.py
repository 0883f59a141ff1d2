"""decord FrameSource (optional: ``pip install 'vidline[decord]'``).

Frame times come from ``VideoReader.get_frame_timestamp`` (real PTS, so VFR is exact); targets are
mapped to the nearest frame index. decord decodes every frame up to the requested ones, so it is not
faster than PyAV; it is here for environments that already standardise on it.

decord numbers frames by counting what the decoder gives after each seek, assuming the seek landed
exactly on the keyframe its index names. With frame reordering (B-frames) that is not true:

* open GOPs (x264 ``open-gop``, HEVC) drop the leading pictures after a seek, MPEG-4 part 2 in AVI
  lands elsewhere too, so a random access ``get_batch`` returns a frame up to a GOP away from the
  index asked (content ~1 s off while the reported timestamps look right);
* MPEG-TS (no index) and similar containers with B-frames land on the *second* keyframe even when
  asked for the first, so even a plain pass from the start is one GOP late.

So the mode is chosen per file (``decord_mode``): without reordering, random access (``get_batch``
in small chunks); with reordering in an indexed container (mp4/mov, Matroska/WebM, AVI), one forward
pass from a fresh reader that never seeks (``skip_frames`` only inside a GOP); with reordering in any
other container, or when decord cannot open the file at all, the PyAV backend is used instead, with
one warning. Never frames with confident but wrong timestamps.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vidline.errors import ConfigError, VideoOpenError
from vidline.log import logger
from vidline.media.probe import frame_ticks, open_container, true_last_pts
from vidline.media.source import FrameSource, Target, check_sorted
from vidline.types import Frame, VideoInfo

BATCH = 16
# containers with an index in which a forward decord pass from a fresh reader starts on the first frame
# even with B-frames / open GOPs (tested: H.264 open GOP, HEVC, MPEG-4 part 2 with B-frames)
SEQUENTIAL_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
_HEAD_PACKETS = 250  # packets looked at for frame reordering when the codec does not say
_warned: set[tuple[str, str]] = set()  # (path, reason) already warned about: one warning per file


def _import_decord() -> Any:
    try:
        import decord
    except ImportError as exc:
        raise ConfigError(
            "the decord backend needs the 'decord' package: pip install 'vidline[decord]' (or use backend='pyav')"
        ) from exc
    # its own FFmpeg logs decoder chatter ("mmco: unref short failure") straight to stderr: errors only
    decord.logging.set_level(decord.logging.ERROR)
    return decord


def decord_mode(path: str | os.PathLike[str]) -> str:
    """How decord can be trusted with this file: "random", "sequential" or "unsupported"."""
    container = open_container(path)
    try:
        stream = container.streams.video[0]
        formats = set(str(container.format.name).split(","))
        reorders = bool(stream.codec_context.has_b_frames)
        if not reorders:
            latest: int | None = None
            try:
                for i, packet in enumerate(container.demux(stream)):
                    if i >= _HEAD_PACKETS:
                        break
                    if packet.pts is None:
                        continue
                    if latest is not None and packet.pts < latest:
                        reorders = True
                        break
                    latest = packet.pts if latest is None else max(latest, packet.pts)
            except av.error.FFmpegError:
                pass
    finally:
        container.close()
    if not reorders:
        return "random"
    return "sequential" if formats & SEQUENTIAL_FORMATS else "unsupported"


def open_decord(path: str | os.PathLike[str], info: VideoInfo, *, threads: int | None = None) -> FrameSource:
    """A DecordSource when decord decodes this file right, else a PyAVSource (with one warning)."""
    decord = _import_decord()
    mode = decord_mode(path)
    reason = ""
    if mode == "unsupported":
        reason = "decord returns wrong frames for B-frames in this container"
    else:
        source = DecordSource(path, info, mode=mode, decord=decord)
        try:
            source._reader((info.display_width, info.display_height))
        except VideoOpenError as exc:
            reason = exc.problem
        else:
            return source
    key = (str(path), reason)
    if key not in _warned:
        _warned.add(key)
        logger.warning("%s: %s; decoding with PyAV instead", path, reason)
    from vidline.media.backends.pyav import PyAVSource

    return PyAVSource(path, info, threads=threads)


class DecordSource(FrameSource):
    name = "decord"

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo, *, mode: str = "random",
                 decord: Any = None) -> None:
        super().__init__(path, info)
        if mode not in ("random", "sequential"):
            raise ValueError("mode must be 'random' or 'sequential'")
        self.mode = mode
        self._decord = decord or _import_decord()
        self._readers: dict[tuple[int, int], Any] = {}
        self._times: np.ndarray | None = None
        self._pts: list[int] | None = None  # exact source PTS of each frame, when the packets gave them

    def _new_reader(self, size: tuple[int, int]) -> Any:
        w, h = size
        try:
            return self._decord.VideoReader(self.path, ctx=self._decord.cpu(0), width=w, height=h)
        except Exception as exc:  # decord raises its own DECORDError / RuntimeError
            raise VideoOpenError(
                self.path, f"decord cannot open it ({' '.join(str(exc).split())[:120]})"
            ) from exc

    def _reader(self, size: tuple[int, int]) -> Any:
        if size not in self._readers:
            self._readers[size] = self._new_reader(size)
        return self._readers[size]

    def _packet_pts(self, n: int) -> list[int] | None:
        """The exact presentation timestamps of the video's ``n`` frames, in order, from its packets
        (PyAV demuxes without decoding: ~0.3 s for 90,000 packets). decord's own are float32 seconds
        from the stream's origin: milliseconds off on a recording that starts hours in (MPEG-TS, a
        camera's clock). None when the packets do not number ``n``."""
        try:
            container = open_container(self.path)
        except VideoOpenError:
            return None
        try:
            stream = container.streams.video[0]
            pts = sorted({int(p.pts) for p in container.demux(stream) if p.pts is not None and p.size})
        except av.error.FFmpegError as exc:
            logger.debug("%s: no packet timestamps (%s)", self.path, exc)
            return None
        finally:
            container.close()
        if len(pts) >= 2:
            pts[-1] = true_last_pts(pts[-2], pts[-1], frame_ticks(self.info.fps, self.info.time_base))
        return pts if len(pts) == n else None

    def _frame_times(self, vr: Any) -> np.ndarray:
        if self._times is None:
            exact = self._packet_pts(len(vr))
            if exact is not None:
                tb = self.info.time_base
                self._pts = exact
                self._times = np.array([float((p - exact[0]) * tb) for p in exact], dtype=np.float64)
                return self._times
            ts = np.asarray(vr.get_frame_timestamp(np.arange(len(vr))), dtype=np.float64)[:, 0]
            if len(ts) > 1 and (not np.all(np.isfinite(ts)) or ts.min() < -1e6 or np.any(np.diff(ts) <= 0)):
                # no usable timestamps (AVI: decord reports FFmpeg's "no PTS" for every frame): time the
                # frames by their index and the probed frame rate
                logger.debug("%s: decord gives no frame timestamps; using index / fps", self.path)
                ts = np.arange(len(ts), dtype=np.float64) / (self.info.fps or float(vr.get_avg_fps()) or 1.0)
            self._times = ts - ts[0] if len(ts) else ts
        return self._times

    def _fix(self, img: np.ndarray, size: tuple[int, int], gray: bool) -> np.ndarray:
        # decord applies the display matrix itself (FFmpeg autorotate); only rotate when the
        # decoded shape is still in coded orientation (older decord builds).
        w, h = size
        if img.shape[0] != h and img.shape[0] == w and self.info.rotation in (90, 270):
            img = np.rot90(img, k=-(self.info.rotation // 90))
        if img.shape[:2] != (h, w):  # sequential pass over targets of several sizes: decoded at display size
            img = (av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                   .reformat(width=w, height=h, interpolation="AREA").to_ndarray())
        if gray:
            img = (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114).astype(np.uint8)
        return np.ascontiguousarray(img)

    def _fetch(self, vr: Any, indices: list[int]) -> np.ndarray:
        return np.asarray(vr.get_batch(indices).asnumpy())

    def _choose(self, targets: Sequence[Target], times: np.ndarray) -> list[tuple[Target, int]]:
        """The frame index nearest each target; stops (with the truncation warning) past the end."""
        n = len(times)
        frame_dur = 1.0 / self.info.fps if self.info.fps else 0.1
        chosen: list[tuple[Target, int]] = []
        for target in targets:
            j = int(np.searchsorted(times, target.t, side="left"))
            if j >= n:
                if (
                    target.t > times[-1] + frame_dur
                    and times[-1] + 1.5 * frame_dur + 0.05 < self.info.duration
                ):
                    self.truncated_at = float(times[-1])
                    if self.warn_truncated:
                        logger.warning(
                            "%s: decoding stopped at %.3f s (file truncated or damaged)", self.path, times[-1]
                        )
                    break
                j = n - 1
            elif j > 0 and target.t - times[j - 1] <= times[j] - target.t:
                j -= 1
            chosen.append((target, j))
        return chosen

    def _frame(self, target: Target, j: int, img: np.ndarray, gray: bool) -> Frame:
        assert self._times is not None
        t = float(self._times[j])
        tb = self.info.time_base
        if self._pts is not None:
            pts = self._pts[j]
        else:
            pts = round(Fraction(t + self.info.start_time).limit_denominator(10**6) / tb)
        return Frame(t=t, image=self._fix(img, self.output_size(target), gray), pts=int(pts), time_base=tb,
                     format="gray" if gray else "rgb24")

    def read(self, targets: Sequence[Target], *, gray: bool = False,
             pixel_format: str = "rgb24") -> Iterator[Frame]:
        """decord decodes to RGB only: a ``yuv420p`` preference is answered with RGB frames."""
        check_sorted(targets)
        if not targets:
            return
        times = self._frame_times(self._reader(self.output_size(targets[0])))
        if len(times) == 0:
            return
        chosen = self._choose(targets, times)
        if self.mode == "sequential":
            yield from self._read_sequential(chosen, times, gray)
            return
        for k in range(0, len(chosen), BATCH):
            chunk = chosen[k : k + BATCH]
            by_size: dict[tuple[int, int], list[int]] = {}
            for target, j in chunk:
                by_size.setdefault(self.output_size(target), []).append(j)
            arrays = {}
            for size, idx in by_size.items():
                uniq = sorted(set(idx))
                batch = self._fetch(self._reader(size), uniq)
                arrays[size] = {j: batch[m] for m, j in enumerate(uniq)}
            for target, j in chunk:
                yield self._frame(target, j, arrays[self.output_size(target)][j], gray)

    def _read_sequential(self, chosen: list[tuple[Target, int]], times: np.ndarray,
                         gray: bool) -> Iterator[Frame]:
        """One forward pass from a fresh reader; never a seek (decord's seeks miscount reordered frames)."""
        if not chosen:
            return
        sizes = {self.output_size(target) for target, _ in chosen}
        size = sizes.pop() if len(sizes) == 1 else (self.info.display_width, self.info.display_height)
        vr = self._new_reader(size)  # a reader that has moved can only go back by seeking
        try:
            keys = sorted(int(k) for k in vr.get_key_indices())
            pos = 0  # index of the frame ``next()`` gives
            current: tuple[int, np.ndarray] | None = None
            for target, j in chosen:
                if current is None or current[0] != j:
                    while pos < j:
                        # decord seeks when a skip crosses a keyframe: skip only up to the next one
                        nxt = bisect.bisect_right(keys, pos)
                        limit = keys[nxt] - 1 if nxt < len(keys) else j
                        step = min(j, limit) - pos
                        if step > 0:
                            vr.skip_frames(step)
                            pos += step
                        else:
                            vr.next()
                            pos += 1
                    current = (j, np.asarray(vr.next().asnumpy()))
                    pos += 1
                yield self._frame(target, j, current[1], gray)
        finally:
            del vr

    def keyframes(
        self,
        start: float = 0.0,
        end: float | None = None,
        *,
        size: tuple[int, int] | None = None,
        gray: bool = False,
    ) -> Iterator[Frame]:
        out = size or (self.info.display_width, self.info.display_height)
        vr = self._reader(out)
        times = self._frame_times(vr)
        keys = [
            int(k)
            for k in vr.get_key_indices()
            if times[k] >= start - 1e-6 and (end is None or times[k] < end)
        ]
        targets = [Target(float(times[k]), out[0], out[1]) for k in keys]
        yield from self.read(targets, gray=gray)

    def close(self) -> None:
        self._readers.clear()
