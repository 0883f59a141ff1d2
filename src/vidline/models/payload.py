"""Request bodies for every server flavour and payload mode, and the time scale each one implies.

Every server tells time differently (see /work/shared/protocols.md). For each video part we first
decide the *server clock*: the clip-relative time the server will assign to each frame we send
(``model_times``). Then the frames are encoded so that everything the model sees agrees with that
clock (mp4 PTS, DashScope ``fps``, timestamps written beside frames, burned-in timestamps), and
``time_scale`` maps the clock back to real seconds (least-squares fit through the window origin, so
an exact 1.0 whenever the server is told the real times).

| flavour          | ``video`` mode                                   | ``frames`` mode                                 |
|------------------|--------------------------------------------------|-------------------------------------------------|
| dashscope native | ``{"video": "data:video/mp4;base64,..", "fps"}`` | ``{"video": [jpeg data URIs], "fps": F}``        |
|                  | (PTS on the k/F grid the server samples)         |                                                 |
| dashscope-compat | ``video_url`` mp4 data URI                       | ``{"type": "video", "video": [...]}`` (0.5 s)   |
| vllm             | ``video_url`` mp4 (PTS k/F) + media_io fps 2F    | one ``data:video/jpeg;base64,<f1>,<f2>`` URL    |
|                  | (fallback: PTS retimed to 0.5 s, 2 fps default)  | (fps via media_io_kwargs, else vLLM's 1 fps)    |
| generic          | ``video_url`` mp4 data URI                       | ``image_url`` parts, each after a text part     |
|                  |                                                  | ``Frame at t=12.50s:``                          |

Pure except for encoding (JPEG/mp4 in memory); no network.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from vidline.encode import X264_PRESET, Mp4Writer, burn_timestamp, downscale, encode_jpeg, encode_mp4
from vidline.errors import StalePayloadError
from vidline.log import logger
from vidline.media.plan import (
    estimate_image_tokens,
    estimate_video_tokens,
    image_size_for,
    smart_resize,
)
from vidline.models.base import ChatRequest, ImagePart, TextPart, VideoPart
from vidline.models.config import DASHSCOPE_DATA_URI_LIMIT, PayloadMode
from vidline.types import Frame

Flavour = Literal["dashscope", "dashscope-compat", "vllm", "generic"]
_T = TypeVar("_T")

PAYLOAD_VERSION = 3  # bump when the bytes sent for the same frames change (cache key part; 2: x264 superfast;
#                     3: DashScope lists of 1-3 frames repeat each frame at a multiple of the rate)

DASHSCOPE_MIN_FRAMES = 4
DASHSCOPE_MAX_FRAMES = 512
DASHSCOPE_FPS_RANGE = (0.1, 10.0)
COMPAT_FRAME_SPACING = 0.5  # DashScope compatible mode assumes 0.5 s between listed frames
VLLM_DEFAULT_VIDEO_FPS = 2.0  # vLLM resamples an mp4 at 2 fps without media_io_kwargs
VLLM_JPEG_LIST_DEFAULT_FPS = 1.0  # vLLM's jpeg_sequence loader: fps = media_io_kwargs fps or 1
VLLM_JPEG_LIST_MAX_FRAMES = 32  # ... and it keeps only the first num_frames (default 32) frames
VLLM_MP4_FPS_HEADROOM = 2.0  # ask vLLM to sample an mp4 faster than its real rate: it then keeps all
FRAME_TEXT_FORMAT = "Frame at t={t:.2f}s:"
CHAT_TEMPLATE_TOKENS = 20  # Qwen chat template (+ its default system prompt): approximate

DEFAULT_MODES: dict[str, PayloadMode] = {
    "dashscope": "frames",
    "dashscope-compat": "video",
    "vllm": "video",
    "generic": "frames",
}


@dataclass(frozen=True)
class EncodeOptions:
    jpeg_quality: int = 85
    crf: int = 23
    scale: float = 1.0
    max_data_uri_bytes: int = DASHSCOPE_DATA_URI_LIMIT
    burn_timestamps: bool = False
    media_io_fps: bool = True  # vLLM: send extra_body media_io_kwargs.video.fps

    @classmethod
    def for_shrink(cls, level: int, **kw: Any) -> EncodeOptions:
        """Options after ``level`` payload shrinks (smaller frames, lower quality)."""
        level = max(0, level)
        return cls(jpeg_quality=max(40, 85 - 15 * level), crf=min(40, 23 + 5 * level),
                   scale=0.75**level, **kw)


@dataclass
class BuiltPayload:
    """A request body for one server flavour (OpenAI ``messages`` or DashScope native ``messages``)."""

    messages: list[dict[str, Any]]
    extra_body: dict[str, Any] = field(default_factory=dict)
    time_scale: float = 1.0
    media_bytes: int = 0
    shape: str = ""
    visual_tokens: int = 0
    time_scales: tuple[float, ...] = ()  # each video part's (``time_scale`` is the first one's)


# ---------------------------------------------------------------------------------------------
# time


@dataclass(frozen=True)
class Clock:
    """How the server will time a video part: the clip time it gives each frame we send."""

    model_times: tuple[float, ...]  # clip-relative seconds the server assigns, one per frame sent
    real_times: tuple[float, ...]  # real seconds from the part's origin, one per frame sent
    fps_told: float | None  # fps we state explicitly (DashScope fps / vLLM media_io fps), if any
    retimed: bool = False  # the mp4 PTS are the model times, not the real ones

    @property
    def time_scale(self) -> float:
        return fit_time_scale(self.model_times, self.real_times)


def fit_time_scale(model_times: Sequence[float], real_times: Sequence[float]) -> float:
    """Least-squares ``s`` in ``real = s * model``: 1.0 when the clock is the real time, and also when
    ``s`` moves no time by more than half a frame step (sampled frames sit on the source's frames, a
    little off the grid the server is told: a 25 fps source sampled at 2 fps fits 0.9987, which is
    no scale, and would hold a streamed answer back to be rewritten)."""
    sxx = sum(x * x for x in model_times)
    if sxx <= 0:
        return 1.0
    s = sum(x * y for x, y in zip(model_times, real_times, strict=False)) / sxx
    if abs(s - 1.0) < 1e-6:
        return 1.0
    if len(real_times) >= 2:
        span = max(real_times) - min(real_times)
        half_step = 0.5 * span / (len(real_times) - 1)
        if abs(s - 1.0) * max(abs(t) for t in real_times) <= half_step:
            return 1.0
    return s


def clip_fps(part: VideoPart) -> float:
    """The real frame rate of the part's frames (n / span, using the plan's fps when given)."""
    if part.fps and part.fps > 0:
        return float(part.fps)
    n = len(part.frames)
    if n < 2:
        return 1.0
    span = part.frames[-1].t - part.frames[0].t
    return (n - 1) / span if span > 0 else 1.0


@dataclass(frozen=True)
class ClockRule:
    """How a server times frame ``i`` of a part: its real clip time, or ``i * num / div`` (a grid)."""

    num: float = 0.0
    div: float = 1.0
    fps_told: float | None = None
    retimed: bool = False  # an mp4's PTS are the model times, not the real ones
    real: bool = False  # the server reads the real times

    def model_time(self, i: int, real: float) -> float:
        return real if self.real else i * self.num / self.div

    def clock(self, real: tuple[float, ...]) -> Clock:
        return Clock(tuple(self.model_time(i, r) for i, r in enumerate(real)), real, self.fps_told,
                     retimed=self.retimed)


def clock_rule(fps: float, flavour: Flavour, mode: PayloadMode, *, media_io_fps: bool = True) -> ClockRule:
    """The server clock of a part sampled at ``fps`` and sent as ``mode`` to ``flavour`` (module table)."""
    if mode == "video":
        if flavour == "vllm" and not media_io_fps:
            # vLLM samples at 2 fps: write the frames 0.5 s apart so it keeps every one of them.
            return ClockRule(1, VLLM_DEFAULT_VIDEO_FPS, None, retimed=True)
        if flavour in ("dashscope", "vllm"):
            # These servers sample the clip at the fps we state and time frame k at k / fps, whatever
            # the PTS say: write the frames exactly on that grid so none is skipped or doubled.
            # The spacing is a whole number of milliseconds so PTS, duration and fps agree exactly.
            step_ms = grid_step_ms(fps)
            return ClockRule(step_ms, 1000.0, 1000.0 / step_ms, retimed=True)
        return ClockRule(real=True)  # servers that read the clip's own timestamps
    # frames mode
    if flavour == "dashscope":
        ds_fps = _clamp_fps(fps)
        return ClockRule(1, ds_fps, ds_fps)
    if flavour == "dashscope-compat":
        return ClockRule(COMPAT_FRAME_SPACING, 1)
    if flavour == "vllm":
        list_fps = round(fps, 6) if media_io_fps else None
        return ClockRule(1.0 / (list_fps or VLLM_JPEG_LIST_DEFAULT_FPS), 1, list_fps)
    return ClockRule(real=True)  # generic: real times written beside each frame


def clock_for(part: VideoPart, flavour: Flavour, mode: PayloadMode, *, media_io_fps: bool = True) -> Clock:
    """The server clock for ``part`` sent as ``mode`` to ``flavour`` (see the module table)."""
    real = tuple(f.t - part.origin for f in part.frames)
    return clock_rule(clip_fps(part), flavour, mode, media_io_fps=media_io_fps).clock(real)


def grid_step_ms(fps: float) -> int:
    """Frame spacing in whole milliseconds for ``fps`` (within DashScope's 0.1-10 fps)."""
    lo, hi = DASHSCOPE_FPS_RANGE
    return int(min(round(1000.0 / lo), max(round(1000.0 / hi), round(1000.0 / fps))))


def _clamp_fps(fps: float) -> float:
    lo, hi = DASHSCOPE_FPS_RANGE
    return round(min(hi, max(lo, fps)), 6)


# ---------------------------------------------------------------------------------------------
# frames helpers


@dataclass(frozen=True)
class FrameLayout:
    """The list a server gets for ``n`` frames handed in, within its frame-count limits.

    ``index[place]`` is the frame shown at each place of the list; ``fps`` is the list's rate in real
    time (what the server clock is built from); ``hold[place]`` is how long after its frame's own
    time that place stands for. A frame repeated to reach DashScope's 4-frame minimum *holds* its
    picture until the next frame: each of ``n < 4`` frames is shown ``k = ceil(4 / n)`` times at
    ``k`` times the rate, so the server, which times place ``m`` at ``m / (k * fps)``, still sees
    every frame at its real time (and a 1-3 frame list never runs past the frames' own span)."""

    index: tuple[int, ...]
    fps: float
    hold: tuple[float, ...]

    @property
    def whole(self) -> bool:
        """Every frame handed in, once each, in order (no limit applied)."""
        return self.index == tuple(range(len(self.index)))


_said: dict[str, bool] = {}  # warnings given once per process


def list_frame_cap(n: int, flavour: Flavour, mode: PayloadMode, *, media_io_fps: bool = True) -> int | None:
    """How many of ``n`` sampled frames a frame list keeps (evenly subsampled), when the server's
    limit cuts it: DashScope's 512, vLLM's 32 without per-request ``num_frames``; None when all go."""
    if mode != "frames":
        return None
    if flavour == "vllm" and not media_io_fps and n > VLLM_JPEG_LIST_MAX_FRAMES:
        return VLLM_JPEG_LIST_MAX_FRAMES
    if flavour in ("dashscope", "dashscope-compat") and n > DASHSCOPE_MAX_FRAMES:
        return DASHSCOPE_MAX_FRAMES
    return None


def frames_sent(n: int, flavour: Flavour, mode: PayloadMode, *, media_io_fps: bool = True) -> int:
    """The distinct video frames a payload of ``n`` sampled frames holds (``list_frame_cap``)."""
    cap = list_frame_cap(n, flavour, mode, media_io_fps=media_io_fps)
    return n if cap is None else min(n, cap)


def frame_layout(n: int, fps: float, flavour: Flavour, mode: PayloadMode, *,
                 media_io_fps: bool = True) -> FrameLayout:
    """Respect DashScope's 4-512 frames per list (subsample evenly above, repeat each frame below: see
    ``FrameLayout``) and vLLM's 32-frame cut of a jpeg list when ``num_frames`` cannot be sent per
    request, for ``n`` frames sampled at ``fps``."""
    index = list(range(n))
    cap = list_frame_cap(n, flavour, mode, media_io_fps=media_io_fps)
    if cap == VLLM_JPEG_LIST_MAX_FRAMES and flavour == "vllm" and not _said.get("vllm-cut"):
        _said["vllm-cut"] = True  # once per process, not once per window
        logger.warning("vLLM keeps only %d frames of a jpeg list without per-request media_io_kwargs: "
                       "sending %d of %d frames (use video mode, or start vLLM with "
                       "--trust-request-mm-kwargs)", VLLM_JPEG_LIST_MAX_FRAMES, VLLM_JPEG_LIST_MAX_FRAMES, n)
    if flavour in ("dashscope", "dashscope-compat") and mode == "frames" and 0 < n < DASHSCOPE_MIN_FRAMES:
        return _padded_layout(n, fps, DASHSCOPE_FPS_RANGE[1] if flavour == "dashscope" else None)
    if cap is not None:
        index = [int(i) for i in np.linspace(0, n - 1, cap).round().astype(int)]
        fps = fps * (cap - 1) / max(1, n - 1)  # evenly subsampled: the list's own rate
    return FrameLayout(tuple(index), fps, (0.0,) * len(index))


def _padded_layout(n: int, fps: float, max_fps: float | None) -> FrameLayout:
    """``n`` (1-3) frames at ``fps`` laid out as a list of at least 4 on a finer grid: place ``m`` shows
    the latest frame sampled by ``m / rate``. ``rate`` is ``k * fps`` with ``k = ceil(4 / n)`` (each
    frame ``k`` times), held to the server's ``max_fps``; only then may the last places lie past the
    frames' span (by less than 4 / ``max_fps`` s; the answer is clamped to the window)."""
    fps = fps if fps > 0 else 1.0
    k = math.ceil(DASHSCOPE_MIN_FRAMES / n)
    rate = k * fps
    if max_fps is not None:
        rate = max(fps, min(max_fps, rate))
    count = max(DASHSCOPE_MIN_FRAMES, math.ceil(n * rate / fps - 1e-9))
    index = tuple(min(n - 1, int(m * fps / rate + 1e-9)) for m in range(count))
    hold = tuple(m / rate - i / fps for m, i in enumerate(index))
    return FrameLayout(index, rate, hold)


def limit_frames(frames: Sequence[_T], flavour: Flavour, mode: PayloadMode, *, fps: float = 1.0,
                 media_io_fps: bool = True) -> list[_T]:
    """The frames of ``frame_layout`` (in the order sent; ``frames`` can be indices)."""
    layout = frame_layout(len(frames), fps, flavour, mode, media_io_fps=media_io_fps)
    return [frames[i] for i in layout.index]


def _prepare_frames(frames: Sequence[Frame], model_times: Sequence[float], opts: EncodeOptions) -> list[Frame]:
    """The frames as they will be shown: downscaled and/or with burned-in times when asked (RGB),
    else untouched (a yuv420p frame then reaches x264 without any conversion)."""
    return [_shown_frame(f, mt, opts) for f, mt in zip(frames, model_times, strict=False)]


def _shown_frame(frame: Frame, model_time: float, opts: EncodeOptions) -> Frame:
    if opts.scale >= 0.999 and not opts.burn_timestamps:
        return frame
    img = frame.rgb() if opts.scale >= 0.999 else downscale(frame.rgb(), opts.scale)
    if opts.burn_timestamps:
        img = burn_timestamp(img, model_time)
    return Frame(t=frame.t, image=img)


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def b64_len(n_bytes: int) -> int:
    return 4 * math.ceil(n_bytes / 3)


MP4_URI_PREFIX = "data:video/mp4;base64,"


def mp4_uri_len(data: bytes) -> int:
    """Length of the data URI that carries the mp4 ``data``."""
    return len(MP4_URI_PREFIX) + b64_len(len(data))


def jpegs_uri_len(data: Sequence[bytes], *, per_item_limit: bool) -> int:
    """What a data-URI limit is checked against for a JPEG list: its largest data URI
    (``per_item_limit``: see ``limit_per_item``), else the one URI that carries them all."""
    if per_item_limit:
        return max(b64_len(len(d)) for d in data) + len(MP4_URI_PREFIX)
    return sum(b64_len(len(d)) + 1 for d in data) + len(MP4_URI_PREFIX)


def limit_per_item(flavour: Flavour, mode: PayloadMode) -> bool:
    """Whether the data-URI limit applies to each JPEG of a frame list (DashScope lists, generic image
    parts) rather than to the one URI that carries the part (an mp4, vLLM's ``data:video/jpeg``
    list)."""
    return mode == "frames" and flavour != "vllm"


# ---------------------------------------------------------------------------------------------
# encoded media


@dataclass
class EncodedVideo:
    kind: Literal["mp4", "jpegs"]
    data: list[bytes]  # one mp4, or one JPEG per frame
    clock: Clock
    width: int
    height: int
    n_frames: int  # frames sent
    key: tuple[object, ...] = ()  # (flavour, mode, options) it was encoded for (a streamed clip)

    @property
    def n_bytes(self) -> int:
        return sum(len(d) for d in self.data)


class StreamedVideo:
    """A window's mp4 encoded while its frames are still being decoded (the timeline's path for
    ``video`` mode): ``add`` each frame as it arrives, then ``finish``. The clip is the one
    ``encode_video_part`` would make from the same frames at the first quality step; put it in the
    request as ``VideoPart(frames=[], ..., encoded=...)``.

    Only the frames x264 still looks ahead on are held, never the window's list."""

    def __init__(self, fps: float, origin: float, flavour: Flavour, opts: EncodeOptions, *,
                 preset: str = X264_PRESET) -> None:
        self.origin = origin
        self.opts = opts
        self.key: tuple[object, ...] = (flavour, "video", opts)  # the preset changes bytes, not what is shown
        self.rule = clock_rule(fps, flavour, "video", media_io_fps=opts.media_io_fps)
        self._real: list[float] = []
        rate = fps if self.rule.real else self.rule.div / self.rule.num
        self._writer = Mp4Writer(crf=opts.crf, rate=rate, preset=preset)

    @property
    def n_frames(self) -> int:
        return len(self._real)

    def add(self, frame: Frame) -> None:
        i, real = len(self._real), frame.t - self.origin
        self._real.append(real)
        model = self.rule.model_time(i, real)
        self._writer.add(_shown_frame(frame, model, self.opts), model if self.rule.retimed else real)

    def finish(self) -> EncodedVideo | None:
        """The encoded clip; None when it is over the data-URI limit (the caller then builds the payload
        from the frames, which lowers the quality step by step)."""
        data = self._writer.finish()  # (closes the file; on an error the caller's ``close`` does)
        if mp4_uri_len(data) > self.opts.max_data_uri_bytes:
            return None
        size = self._writer.size
        assert size is not None
        return EncodedVideo("mp4", [data], self.rule.clock(tuple(self._real)), size[0], size[1], len(self._real),
                            key=self.key)

    def close(self) -> None:
        self._writer.close()


class StreamedFrames:
    """A window's frame list (``frames`` mode) compressed to JPEG while its frames are still being
    decoded: each frame is shown (burned-in time, scale) and compressed as it arrives, so only the
    JPEGs are held, never the window's pictures (1.7 MB each at Qwen's video size, ~0.1 MB as JPEG).

    The list is the one ``encode_video_part`` would make from the same frames at the first quality
    step: the same frames kept or repeated for the server's frame-count limits, the same clock, the
    same bytes. Which frames a limit keeps depends on the count, so it is laid out for the window's
    ``n_planned`` frames; when no limit applies, any count is taken. Put the result in the request as
    ``VideoPart(frames=[], ..., encoded=...)``."""

    def __init__(self, fps: float, origin: float, flavour: Flavour, opts: EncodeOptions, n_planned: int) -> None:
        self.origin = origin
        self.opts = opts
        self.key: tuple[object, ...] = (flavour, "frames", opts)
        self._flavour = flavour
        self._per_item = limit_per_item(flavour, "frames")
        self._planned = n_planned
        self._fps = fps
        layout = self._layout(n_planned)
        self._limited = not layout.whole
        self._hold = layout.hold
        self.rule = clock_rule(layout.fps, flavour, "frames", media_io_fps=opts.media_io_fps)
        self._places: dict[int, list[int]] = {}  # frame handed in -> its places in the list sent
        for place, i in enumerate(layout.index):
            self._places.setdefault(i, []).append(place)
        self._data: dict[int, bytes] = {}
        self._real: dict[int, float] = {}
        self._size: tuple[int, int] | None = None
        self.n_frames = 0  # frames handed in

    def _layout(self, n: int) -> FrameLayout:
        return frame_layout(n, self._fps, self._flavour, "frames", media_io_fps=self.opts.media_io_fps)

    def add(self, frame: Frame) -> None:
        i, real = self.n_frames, frame.t - self.origin
        self.n_frames += 1
        for place in self._places.get(i, ()) if self._limited else (i,):
            shown = _shown_frame(frame, self.rule.model_time(place, real), self.opts)
            self._data[place] = encode_jpeg(shown.rgb(), self.opts.jpeg_quality)
            self._real[place] = real + (self._hold[place] if self._limited else 0.0)
            self._size = shown.size

    def finish(self) -> EncodedVideo | None:
        """The encoded list; None when it is over the data-URI limit (the caller then builds the payload
        from the frames, which lowers the quality step by step). StalePayloadError when a limit
        applies and the frames handed in are not the ``n_planned`` the list was laid out for (the
        file ended inside the window)."""
        # laid out for the planned count; else each frame in its own place: right as long as no limit
        # applies to the count that came
        whole = self.n_frames == self._planned if self._limited else self._layout(self.n_frames).whole
        if self._size is None or not whole:
            raise StalePayloadError(f"{self.n_frames} of the window's {self._planned} frames arrived")
        n = len(self._data)
        data = [self._data[place] for place in range(n)]
        if jpegs_uri_len(data, per_item_limit=self._per_item) > self.opts.max_data_uri_bytes:
            return None
        width, height = self._size
        real = tuple(self._real[place] for place in range(n))
        return EncodedVideo("jpegs", data, self.rule.clock(real), width, height, n, key=self.key)

    def close(self) -> None:
        self._data.clear()


@dataclass(frozen=True)
class StreamSpec:
    """How one window's payload is encoded while its frames are decoded (picklable: a decode worker
    process gets it from the run): the window's sampling fps and start, the payload's flavour, mode and
    options, the frames planned, and x264's preset (``video`` mode)."""

    fps: float
    origin: float
    flavour: Flavour
    mode: PayloadMode
    opts: EncodeOptions
    n_planned: int
    preset: str = X264_PRESET


def open_stream(spec: StreamSpec) -> StreamedVideo | StreamedFrames:
    """The streamed encoder ``spec`` asks for: an mp4 (``video``) or a JPEG list (``frames``)."""
    if spec.mode == "video":
        return StreamedVideo(spec.fps, spec.origin, spec.flavour, spec.opts, preset=spec.preset)
    return StreamedFrames(spec.fps, spec.origin, spec.flavour, spec.opts, spec.n_planned)


def encode_video_part(part: VideoPart, flavour: Flavour, mode: PayloadMode, opts: EncodeOptions) -> EncodedVideo:
    """Encode a video part, lowering quality / size until it fits ``opts.max_data_uri_bytes`` (each
    JPEG's URI or the whole part's, per ``limit_per_item``)."""
    if part.encoded is not None:  # streamed while decoding (StreamedVideo, StreamedFrames)
        if part.encoded.key == (flavour, mode, opts):
            return part.encoded
        if not part.frames:
            raise StalePayloadError("the streamed clip was encoded for other settings and its frames are gone")
    layout = frame_layout(len(part.frames), clip_fps(part), flavour, mode, media_io_fps=opts.media_io_fps)
    frames = [part.frames[i] for i in layout.index]
    real = tuple(part.frames[i].t - part.origin + hold for i, hold in zip(layout.index, layout.hold, strict=True))
    clock = clock_rule(layout.fps, flavour, mode, media_io_fps=opts.media_io_fps).clock(real)
    crf, quality, scale = opts.crf, opts.jpeg_quality, opts.scale
    for _ in range(12):
        o = EncodeOptions(jpeg_quality=quality, crf=crf, scale=scale, burn_timestamps=opts.burn_timestamps)
        shown = _prepare_frames(frames, clock.model_times, o)
        w, h = shown[0].size
        if mode == "video":
            times = clock.model_times if clock.retimed else None
            data = [encode_mp4(shown, crf=crf, origin=part.origin, times=times)]
            size = mp4_uri_len(data[0])
            h, w = h - h % 2, w - w % 2
        else:
            data = [encode_jpeg(f.rgb(), quality) for f in shown]
            size = jpegs_uri_len(data, per_item_limit=limit_per_item(flavour, mode))
        if size <= opts.max_data_uri_bytes:
            return EncodedVideo("mp4" if mode == "video" else "jpegs", data, clock, w, h, len(frames))
        logger.debug("payload %d bytes > limit %d: lowering quality/size", size, opts.max_data_uri_bytes)
        if mode == "video" and crf < 38:
            crf += 5
        elif mode == "frames" and quality > 45:
            quality -= 15
        else:
            scale *= 0.7
    return EncodedVideo("mp4" if mode == "video" else "jpegs", data, clock, w, h, len(frames))


def encode_image_part(part: ImagePart, opts: EncodeOptions) -> tuple[str, int, int]:
    """(data URI, height, width as sent) for an image; arrays are resized by Qwen's image rule."""
    if isinstance(part.image, (bytes, bytearray)):
        raw = bytes(part.image)
        with Image.open(io.BytesIO(raw)) as im:
            w, h = im.size
            fmt = (im.format or "JPEG").lower()
        mime = "image/png" if fmt == "png" else ("image/webp" if fmt == "webp" else "image/jpeg")
        return data_uri(mime, raw), h, w
    img = np.asarray(part.image)
    h, w = img.shape[:2]
    th, tw = image_size_for(h, w)
    if opts.scale < 0.999:
        th, tw = smart_resize(max(28, int(th * opts.scale)), max(28, int(tw * opts.scale)),
                              min_pixels=4 * 28 * 28, max_pixels=th * tw)
    if (th, tw) != (h, w):
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img[..., :3]).astype(np.uint8)).resize((tw, th), Image.Resampling.BICUBIC))
    return data_uri("image/jpeg", encode_jpeg(img, opts.jpeg_quality)), th, tw


# ---------------------------------------------------------------------------------------------
# token estimates (Qwen2.5-VL rules; exact for what a vLLM Qwen2.5-VL server computes)


def video_tokens_as_sent(n_frames: int, height: int, width: int) -> int:
    h, w = smart_resize(height, width)
    return estimate_video_tokens(n_frames, h, w)


def image_tokens_as_sent(height: int, width: int) -> int:
    return estimate_image_tokens(*image_size_for(height, width))


def estimate_text_tokens(text: str) -> int:
    """Approximate: ~4 characters per token for Latin text, 1 per CJK character; the real count depends
    on the server's tokenizer."""
    if not text:
        return 0
    cjk = sum(1 for c in text if "\u3000" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af")
    return cjk + math.ceil((len(text) - cjk) / 4)


def estimate_part_tokens(part: TextPart | ImagePart | VideoPart, flavour: Flavour, mode: PayloadMode,
                         opts: EncodeOptions) -> int:
    """Tokens of one part without encoding anything."""
    if isinstance(part, TextPart):
        return estimate_text_tokens(part.text)
    if isinstance(part, ImagePart):
        if isinstance(part.image, (bytes, bytearray)):
            with Image.open(io.BytesIO(bytes(part.image))) as im:
                w, h = im.size
        else:
            h, w = np.asarray(part.image).shape[:2]
        return image_tokens_as_sent(h, w) + 2
    if not part.frames:
        return 0
    w, h = part.frames[0].size
    return estimate_video_part_tokens(len(part.frames), h, w, flavour, mode, opts, fps=clip_fps(part))


def estimate_video_part_tokens(n: int, height: int, width: int, flavour: Flavour, mode: PayloadMode,
                               opts: EncodeOptions, *, fps: float | None = None) -> int:
    """Tokens of ``n`` frames of ``height x width``, sampled at ``fps``, sent as ``mode`` to ``flavour``
    (no encoding). ``fps`` only matters for 1-3 frames sent as a DashScope list faster than 2.5 fps
    (the padded list is then shorter than ``ceil(4 / n) * n``)."""
    if n <= 0:
        return 0
    if flavour in ("dashscope", "dashscope-compat") and mode == "frames":
        n = len(frame_layout(n, fps or 1.0, flavour, mode).index)
    n = frames_sent(n, flavour, mode, media_io_fps=opts.media_io_fps)  # a list the server's limit cuts
    h, w = height, width
    if opts.scale < 0.999:
        h, w = max(16, int(h * opts.scale)) // 2 * 2, max(16, int(w * opts.scale)) // 2 * 2
    elif mode == "video":
        h, w = h - h % 2, w - w % 2
    if mode == "frames" and flavour == "generic":
        per = image_tokens_as_sent(h, w) + 2
        label = estimate_text_tokens(FRAME_TEXT_FORMAT.format(t=12.5))
        return n * (per + label)
    if mode == "video" and flavour == "vllm" and n >= 4:
        n = n - n % 2  # vLLM's Qwen2 video loader floors the sampled count to even
    return video_tokens_as_sent(n, h, w) + 2


# ---------------------------------------------------------------------------------------------
# request bodies


def build_openai(request: ChatRequest, flavour: Flavour, mode: PayloadMode, opts: EncodeOptions) -> BuiltPayload:
    """OpenAI chat-completions ``messages`` (+ ``extra_body``) for ``flavour``."""
    content: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    time_scale: float | None = None
    scales: list[float] = []
    media = 0
    shape = ""
    tokens = 0
    for part in request.parts:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url, h, w = encode_image_part(part, opts)
            content.append({"type": "image_url", "image_url": {"url": url}})
            media += len(url)
            tokens += image_tokens_as_sent(h, w)
            shape = shape or "image_url"
        else:
            if flavour == "generic" and mode == "frames":
                ev = encode_video_part(part, flavour, mode, opts)
                for d, rel in zip(ev.data, ev.clock.model_times, strict=False):
                    url = data_uri("image/jpeg", d)
                    content.append({"type": "text", "text": FRAME_TEXT_FORMAT.format(t=rel)})
                    content.append({"type": "image_url", "image_url": {"url": url}})
                    media += len(url)
                    tokens += image_tokens_as_sent(ev.height, ev.width)
                shape = "generic/image_url+text-times"
            elif mode == "frames" and flavour == "dashscope-compat":
                ev = encode_video_part(part, flavour, mode, opts)
                urls = [data_uri("image/jpeg", d) for d in ev.data]
                content.append({"type": "video", "video": urls})
                media += sum(len(u) for u in urls)
                tokens += video_tokens_as_sent(ev.n_frames, ev.height, ev.width)
                shape = "dashscope-compat/video-list"
            elif mode == "frames":  # vllm (and anything that takes vLLM's jpeg sequence)
                ev = encode_video_part(part, flavour, mode, opts)
                url = "data:video/jpeg;base64," + ",".join(base64.b64encode(d).decode("ascii") for d in ev.data)
                content.append({"type": "video_url", "video_url": {"url": url}})
                media += len(url)
                tokens += video_tokens_as_sent(ev.n_frames, ev.height, ev.width)
                if ev.clock.fps_told:  # the jpeg list's time base, and lift the 32-frame cut
                    extra = {"media_io_kwargs": {"video": {"fps": ev.clock.fps_told, "num_frames": ev.n_frames}}}
                shape = f"{flavour}/video-jpeg-list" + ("+fps" if ev.clock.fps_told else "")
            else:  # video mode: one mp4
                ev = encode_video_part(part, flavour, mode, opts)
                url = data_uri("video/mp4", ev.data[0])
                content.append({"type": "video_url", "video_url": {"url": url}})
                media += len(url)
                n = ev.n_frames - ev.n_frames % 2 if (flavour == "vllm" and ev.n_frames >= 4) else ev.n_frames
                tokens += video_tokens_as_sent(n, ev.height, ev.width)
                if flavour == "vllm" and ev.clock.fps_told:
                    # vLLM times an mp4 by its container fps; the requested fps only decides how many
                    # frames it samples, so ask for more than there are and it keeps every frame. It is
                    # one setting for the whole request: the fastest video's.
                    fps = round(min(30.0, ev.clock.fps_told * VLLM_MP4_FPS_HEADROOM), 6)
                    told = extra.get("media_io_kwargs", {}).get("video", {}).get("fps", 0.0)
                    extra = {"media_io_kwargs": {"video": {"fps": max(fps, told)}}}
                shape = f"{flavour}/video-mp4" + ("+fps" if extra else ("-retimed" if flavour == "vllm" else ""))
            scales.append(ev.clock.time_scale)
            if time_scale is None:
                time_scale = ev.clock.time_scale
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": content})
    return BuiltPayload(messages, extra, time_scale or 1.0, media, shape or "text", tokens, tuple(scales))


def dashscope_safe_text(text: str) -> str:
    """The DashScope SDK uploads any ``text`` item that names a local file (or starts with file://)
    to OSS; a trailing space keeps a question such as ``notes.txt`` a question."""
    stripped = text.strip()
    if stripped.startswith(("file://", "oss://")):
        return " " + text
    try:
        if stripped and len(stripped) < 4096 and os.path.isfile(os.path.expanduser(text)):
            return text + " "
    except (OSError, ValueError):
        pass
    return text


def build_dashscope(request: ChatRequest, mode: PayloadMode, opts: EncodeOptions) -> BuiltPayload:
    """DashScope native ``messages`` (MultiModalConversation). Only data URIs: never file paths."""
    content: list[dict[str, Any]] = []
    time_scale: float | None = None
    scales: list[float] = []
    media = 0
    shape = ""
    tokens = 0
    for part in request.parts:
        if isinstance(part, TextPart):
            content.append({"text": dashscope_safe_text(part.text)})
        elif isinstance(part, ImagePart):
            url, h, w = encode_image_part(part, opts)
            content.append({"image": url})
            media += len(url)
            tokens += image_tokens_as_sent(h, w)
            shape = shape or "image"
        else:
            ev = encode_video_part(part, "dashscope", mode, opts)
            item: dict[str, Any]
            if mode == "frames":
                urls = [data_uri("image/jpeg", d) for d in ev.data]
                item = {"video": urls}
                media += sum(len(u) for u in urls)
                shape = "dashscope/video-list+fps"
            else:
                url = data_uri("video/mp4", ev.data[0])
                item = {"video": url}
                media += len(url)
                shape = "dashscope/video-mp4+fps"
            if ev.clock.fps_told:
                item["fps"] = ev.clock.fps_told
            content.append(item)
            tokens += video_tokens_as_sent(ev.n_frames, ev.height, ev.width)
            scales.append(ev.clock.time_scale)
            if time_scale is None:
                time_scale = ev.clock.time_scale
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": [{"text": request.system}]})
    messages.append({"role": "user", "content": content})
    return BuiltPayload(messages, {}, time_scale or 1.0, media, shape or "text", tokens, tuple(scales))


def estimate_request_tokens(request: ChatRequest, flavour: Flavour, mode: PayloadMode,
                            opts: EncodeOptions | None = None) -> int:
    """Visual tokens (exact under Qwen2.5-VL rules) plus approximate text tokens; no encoding."""
    opts = opts or EncodeOptions()
    total = sum(estimate_part_tokens(p, flavour, mode, opts) for p in request.parts)
    if request.system:
        total += estimate_text_tokens(request.system)
    return total + CHAT_TEMPLATE_TOKENS


def estimate_payload_bytes(n_frames: int, height: int, width: int, mode: PayloadMode) -> int:
    """Rough base64 payload size without encoding (for dry runs): JPEG ~0.1 byte/px at q85,
    H.264 ~0.03 byte/px per frame for small clips."""
    per_px = 0.1 if mode == "frames" else 0.03
    return b64_len(int(n_frames * height * width * per_px)) + 64
