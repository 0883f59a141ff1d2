"""decord FrameSource (optional: ``pip install 'vidline[decord]'``).

Frame times come from ``VideoReader.get_frame_timestamp`` (real PTS, so VFR is exact); targets are
mapped to the nearest frame index and fetched with ``get_batch`` in small chunks so memory stays
bounded. decord decodes every frame up to the requested ones, so it is not faster than PyAV; it is
here for environments that already standardise on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from vidline.errors import ConfigError, VideoOpenError
from vidline.log import logger
from vidline.media.source import FrameSource, Target, check_sorted
from vidline.types import Frame, VideoInfo

BATCH = 16


def _import_decord() -> Any:
    try:
        import decord
    except ImportError as exc:
        raise ConfigError(
            "the decord backend needs the 'decord' package: pip install 'vidline[decord]' (or use backend='pyav')"
        ) from exc
    return decord


class DecordSource(FrameSource):
    name = "decord"

    def __init__(self, path: str | os.PathLike[str], info: VideoInfo) -> None:
        super().__init__(path, info)
        self._decord = _import_decord()
        self._readers: dict[tuple[int, int], Any] = {}
        self._times: np.ndarray | None = None

    def _reader(self, size: tuple[int, int]) -> Any:
        if size not in self._readers:
            w, h = size
            try:
                self._readers[size] = self._decord.VideoReader(
                    self.path, ctx=self._decord.cpu(0), width=w, height=h
                )
            except Exception as exc:  # decord raises its own DECORDError / RuntimeError
                raise VideoOpenError(
                    self.path, f"decord cannot open it ({' '.join(str(exc).split())[:120]})"
                ) from exc
        return self._readers[size]

    def _frame_times(self, vr: Any) -> np.ndarray:
        if self._times is None:
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
        if gray:
            img = (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114).astype(np.uint8)
        return np.ascontiguousarray(img)

    def _fetch(self, vr: Any, indices: list[int]) -> np.ndarray:
        return np.asarray(vr.get_batch(indices).asnumpy())

    def read(self, targets: Sequence[Target], *, gray: bool = False,
             pixel_format: str = "rgb24") -> Iterator[Frame]:
        """decord decodes to RGB only: a ``yuv420p`` preference is answered with RGB frames."""
        check_sorted(targets)
        fmt = "gray" if gray else "rgb24"
        if not targets:
            return
        tb = self.info.time_base
        first_vr = self._reader(self.output_size(targets[0]))
        times = self._frame_times(first_vr)
        n = len(times)
        if n == 0:
            return
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
                size = self.output_size(target)
                t = float(times[j])
                pts = round(Fraction(t + self.info.start_time).limit_denominator(10**6) / tb)
                yield Frame(t=t, image=self._fix(arrays[size][j], size, gray), pts=int(pts), time_base=tb,
                            format=fmt)

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
