"""Pure payload shapes, clocks, limits, token estimates and retry/error rules (no server)."""

from __future__ import annotations

import base64
import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from vidline.errors import (
    AuthenticationError,
    BackendError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    ServerUnreachableError,
    StalePayloadError,
)
from vidline.models.base import ChatRequest, ImagePart, TextPart, VideoPart
from vidline.models.config import RetryPolicy
from vidline.models.payload import (
    EncodeOptions,
    StreamedFrames,
    build_dashscope,
    build_openai,
    clock_for,
    encode_video_part,
    estimate_request_tokens,
    estimate_video_part_tokens,
)
from vidline.models.retry import backoff_delay, call_with_retries, error_for_status, parse_retry_after
from vidline.synth import Marker, detect_markers, render_frame
from vidline.types import Frame

ORIGIN = 600.0
MARKERS = [Marker("red square", 1.0, 3.0)]


def _part(n: int = 8, spacing: float = 2.0, size: tuple[int, int] = (112, 84), origin: float = ORIGIN) -> VideoPart:
    w, h = size
    frames = [Frame(t=origin + i * spacing, image=render_frame(i * spacing, w, h, MARKERS)) for i in range(n)]
    return VideoPart(frames=frames, fps=1.0 / spacing, origin=origin)


def _request(part: VideoPart) -> ChatRequest:
    return ChatRequest(parts=[part, TextPart("find the red square")], system="sys", json_mode=True)


def _b64(url: str) -> bytes:
    return base64.b64decode(url.split(",", 1)[1])


def _mp4_times(data: bytes) -> list[float]:
    with av.open(io.BytesIO(data)) as c:
        return [round(float(f.time), 3) for f in c.decode(video=0)]


# The server clock of each (flavour, mode) for frames 2 s apart from a window at 600 s. Whatever the
# clock, time_scale * (server time of frame i) must equal the real offset of frame i (2 s * i).
CLOCKS = [
    # flavour, mode, media_io, server time of frame i, fps told
    ("vllm", "video", True, lambda i: 2.0 * i, 0.5),
    ("vllm", "video", False, lambda i: 0.5 * i, None),  # vLLM resamples at 2 fps: clip retimed
    ("vllm", "frames", True, lambda i: 2.0 * i, 0.5),
    ("vllm", "frames", False, lambda i: 1.0 * i, None),  # jpeg_sequence default fps 1
    ("dashscope", "frames", True, lambda i: 2.0 * i, 0.5),
    ("dashscope", "video", True, lambda i: 2.0 * i, 0.5),
    ("dashscope-compat", "frames", True, lambda i: 0.5 * i, None),  # assumes 0.5 s spacing
    ("dashscope-compat", "video", True, lambda i: 2.0 * i, None),
    ("generic", "frames", True, lambda i: 2.0 * i, None),
    ("generic", "video", True, lambda i: 2.0 * i, None),
]


@pytest.mark.parametrize(("flavour", "mode", "media_io", "server_time", "told"), CLOCKS)
def test_clock_and_time_scale(flavour, mode, media_io, server_time, told) -> None:  # type: ignore[no-untyped-def]
    part = _part()
    clock = clock_for(part, flavour, mode, media_io_fps=media_io)
    assert clock.model_times == pytest.approx([server_time(i) for i in range(8)])
    assert clock.fps_told == told
    for i in range(8):
        assert clock.time_scale * server_time(i) == pytest.approx(2.0 * i)


def test_vllm_video_mp4_with_media_io_fps() -> None:
    p = build_openai(_request(_part()), "vllm", "video", EncodeOptions())
    # vLLM times an mp4 by its container fps; asking for 2x the real rate makes it keep every frame
    assert p.extra_body == {"media_io_kwargs": {"video": {"fps": 1.0}}}
    system, user = p.messages
    assert system == {"role": "system", "content": "sys"}
    video, text = user["content"]
    assert video["type"] == "video_url" and video["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert text == {"type": "text", "text": "find the red square"}
    assert _mp4_times(_b64(video["video_url"]["url"])) == [2.0 * i for i in range(8)]
    assert p.time_scale == 1.0
    assert p.visual_tokens == 4 * 10 * 14  # 84x112 frames are scaled up to 280x392 (video min pixels)


def test_vllm_video_fallback_is_retimed_to_half_seconds() -> None:
    p = build_openai(_request(_part()), "vllm", "video", EncodeOptions(media_io_fps=False))
    assert p.extra_body == {}
    url = p.messages[1]["content"][0]["video_url"]["url"]
    assert _mp4_times(_b64(url)) == [0.5 * i for i in range(8)]
    assert p.time_scale == pytest.approx(4.0)
    assert "retimed" in p.shape


def test_vllm_frames_is_one_jpeg_list_url() -> None:
    p = build_openai(_request(_part()), "vllm", "frames", EncodeOptions())
    url = p.messages[1]["content"][0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")
    items = url[len("data:video/jpeg;base64,"):].split(",")
    assert len(items) == 8
    imgs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB")) for s in items]
    # frame i is at 2*i s: the red square (1-3 s) is visible in frame 1 only
    assert [bool(detect_markers(im)) for im in imgs] == [False, True] + [False] * 6
    assert p.extra_body == {"media_io_kwargs": {"video": {"fps": 0.5, "num_frames": 8}}}


def test_vllm_jpeg_list_without_media_io_is_cut_to_32_frames_with_the_right_clock() -> None:
    part = _part(n=40, spacing=1.0, size=(28, 28))
    p = build_openai(_request(part), "vllm", "frames", EncodeOptions(media_io_fps=False))
    url = p.messages[1]["content"][0]["video_url"]["url"]
    assert len(url.split(",")) - 1 == 32 and p.extra_body == {}
    # 32 frames spread over the 39 s span; vLLM times them 1 s apart -> real = 39/31 * server time
    assert p.time_scale == pytest.approx(39 / 31, rel=0.02)
    assert estimate_video_part_tokens(40, 280, 392, "vllm", "frames", EncodeOptions(media_io_fps=False)) - 2 == 16 * 140


def test_dashscope_compat_frames_shape() -> None:
    p = build_openai(_request(_part()), "dashscope-compat", "frames", EncodeOptions())
    item = p.messages[1]["content"][0]
    assert item["type"] == "video" and len(item["video"]) == 8
    assert all(u.startswith("data:image/jpeg;base64,") for u in item["video"])
    assert p.extra_body == {}
    assert p.time_scale == pytest.approx(4.0)


def test_generic_frames_are_images_after_timestamps() -> None:
    p = build_openai(_request(_part(n=4)), "generic", "frames", EncodeOptions())
    content = p.messages[1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url"] * 4 + ["text"]
    assert [c["text"] for c in content[:8:2]] == [f"Frame at t={2.0 * i:.2f}s:" for i in range(4)]
    assert p.time_scale == 1.0


def test_dashscope_native_shapes_never_use_files() -> None:
    frames = build_dashscope(_request(_part()), "frames", EncodeOptions())
    system, user = frames.messages
    assert system == {"role": "system", "content": [{"text": "sys"}]}
    item, text = user["content"]
    assert item["fps"] == 0.5 and len(item["video"]) == 8 and text == {"text": "find the red square"}
    video = build_dashscope(_request(_part()), "video", EncodeOptions())
    item = video.messages[1]["content"][0]
    assert item["video"].startswith("data:video/mp4;base64,") and item["fps"] == 0.5
    assert _mp4_times(_b64(item["video"])) == [2.0 * i for i in range(8)]
    for body in (frames, video):
        dumped = json.dumps(body.messages)
        assert "file://" not in dumped and '"/' not in dumped


@pytest.mark.parametrize(("n", "sent"), [(1, 4), (2, 4), (3, 6), (600, 512), (8, 8)])
def test_dashscope_frame_count_limits(n: int, sent: int) -> None:
    part = _part(n=n, spacing=0.5, size=(28, 28))
    p = build_dashscope(_request(part), "frames", EncodeOptions())
    assert len(p.messages[1]["content"][0]["video"]) == sent
    q = build_openai(_request(part), "dashscope-compat", "frames", EncodeOptions())
    assert len(q.messages[1]["content"][0]["video"]) == sent


# DashScope takes 4-512 frames per list: 1-3 frames are each repeated k = ceil(4/n) times at k times
# the rate (within DashScope's 10 fps), so the server's clock (place m at m / fps told) still maps to
# the real time each frame holds. (n frames, spacing s) -> (frame at each place, fps told)
SHORT_LISTS = [
    (1, 0.5, [0, 0, 0, 0], 8.0),
    (2, 0.5, [0, 0, 1, 1], 4.0),
    (3, 0.5, [0, 0, 1, 1, 2, 2], 4.0),
    (2, 2.0, [0, 0, 1, 1], 1.0),
    (3, 20.0, [0, 0, 1, 1, 2, 2], 0.1),
    (1, 0.25, [0, 0, 0, 0], 10.0),  # 16 fps would be needed: held to 10, the list runs 0.15 s past
    (2, 0.1, [0, 1, 1, 1], 10.0),  # already at 10 fps: the last frame is repeated past the span
    (3, 1 / 6, [0, 0, 1, 1, 2], 10.0),  # 12 fps would be needed: 5 places at 10 fps cover the span
]
SHORT_MARKERS = ["red square", "green circle", "blue triangle"]  # frame i shows marker i only


def _short_part(n: int, spacing: float, origin: float = ORIGIN) -> VideoPart:
    markers = [Marker(label, i * spacing, (i + 1) * spacing) for i, label in enumerate(SHORT_MARKERS)]
    frames = [Frame(t=origin + i * spacing, image=render_frame(i * spacing, 112, 84, markers)) for i in range(n)]
    return VideoPart(frames=frames, fps=1.0 / spacing, origin=origin)


def _shown(urls: list[str]) -> list[int]:
    out = []
    for url in urls:
        (label,) = detect_markers(np.asarray(Image.open(io.BytesIO(_b64(url))).convert("RGB")))
        out.append(SHORT_MARKERS.index(label))
    return out


@pytest.mark.parametrize(("n", "spacing", "shown", "told"), SHORT_LISTS)
def test_dashscope_short_lists_keep_the_real_times(n: int, spacing: float, shown: list[int], told: float) -> None:
    part = _short_part(n, spacing)
    p = build_dashscope(_request(part), "frames", EncodeOptions())
    item = p.messages[1]["content"][0]
    assert item["fps"] == pytest.approx(told) and _shown(item["video"]) == shown
    for place, i in enumerate(shown):
        real = p.time_scale * place / item["fps"]  # the server times place m at m / fps
        assert i * spacing - 1e-9 <= real  # never before the frame it shows was sampled...
        assert real < (i + 1) * spacing or i == n - 1  # ...nor after the next one (the list may run on)
    assert p.time_scale == pytest.approx(1.0)
    if -(-4 // n) / spacing <= 10:  # ceil(4/n) repeats fit in 10 fps: the list ends with the frames' span
        assert len(shown) / told == pytest.approx(n * spacing)
    assert p.visual_tokens + 2 == estimate_video_part_tokens(n, 84, 112, "dashscope", "frames", EncodeOptions(),
                                                             fps=1.0 / spacing)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_dashscope_compat_short_lists_keep_the_real_times(n: int) -> None:
    part = _short_part(n, 2.0)
    p = build_openai(_request(part), "dashscope-compat", "frames", EncodeOptions())
    urls = p.messages[1]["content"][0]["video"]
    k = -(-4 // n)
    assert _shown(urls) == [i for i in range(n) for _ in range(k)]
    # the server reads places 0.5 s apart; each frame holds 2 s, split over its k places
    assert p.time_scale * 0.5 == pytest.approx(2.0 / k)


@pytest.mark.parametrize(("n", "spacing"), [(n, s) for n, s, _shown, _told in SHORT_LISTS])
@pytest.mark.parametrize("burn", [False, True])
def test_streamed_short_list_is_the_built_list(n: int, spacing: float, burn: bool) -> None:
    part = _short_part(n, spacing)
    opts = EncodeOptions(burn_timestamps=burn)
    stream = StreamedFrames(1.0 / spacing, ORIGIN, "dashscope", opts, n)
    for f in part.frames:
        stream.add(f)
    streamed = stream.finish()
    built = encode_video_part(part, "dashscope", "frames", opts)
    assert streamed is not None and streamed.data == built.data
    assert streamed.clock == built.clock and streamed.clock.time_scale == pytest.approx(1.0)


def test_streamed_list_short_of_its_planned_frames_is_refused() -> None:
    stream = StreamedFrames(2.0, ORIGIN, "dashscope", EncodeOptions(), 6)  # the file ends after 2 frames
    for f in _short_part(2, 0.5).frames:
        stream.add(f)
    with pytest.raises(StalePayloadError, match="2 of the window's 6 frames"):
        stream.finish()


def test_data_uri_limit_lowers_quality_instead_of_failing() -> None:
    rng = np.random.default_rng(1)
    frames = [Frame(t=i * 0.5, image=rng.integers(0, 255, (168, 224, 3), dtype=np.uint8)) for i in range(8)]
    part = VideoPart(frames=frames, fps=2.0, origin=0.0)
    limit = 60_000
    for mode in ("video", "frames"):
        full = build_openai(_request(part), "vllm", mode, EncodeOptions())
        assert full.media_bytes > limit
        small = build_openai(_request(part), "vllm", mode, EncodeOptions(max_data_uri_bytes=limit))
        assert small.media_bytes <= limit, mode


def test_burned_timestamps_follow_the_server_clock() -> None:
    part = _part(n=4)
    plain = build_dashscope(_request(part), "frames", EncodeOptions())
    burned = build_dashscope(_request(part), "frames", EncodeOptions(burn_timestamps=True))
    a = [_b64(u) for u in plain.messages[1]["content"][0]["video"]]
    b = [_b64(u) for u in burned.messages[1]["content"][0]["video"]]
    assert all(x != y for x, y in zip(a, b, strict=True))


def test_images_are_resized_by_the_qwen_image_rule() -> None:
    img = np.zeros((480, 640, 3), np.uint8)
    req = ChatRequest(parts=[ImagePart(img), TextPart("what?")])
    p = build_openai(req, "vllm", "video", EncodeOptions())
    url = p.messages[0]["content"][0]["image_url"]["url"]
    assert Image.open(io.BytesIO(_b64(url))).size == (644, 476)
    assert p.visual_tokens == 23 * 17
    png = io.BytesIO()
    Image.fromarray(img).save(png, format="PNG")
    d = build_dashscope(ChatRequest(parts=[ImagePart(png.getvalue())]), "frames", EncodeOptions())
    assert d.messages[0]["content"][0]["image"].startswith("data:image/png;base64,")


# (n frames, h, w, flavour, mode) -> visual tokens by the Qwen2.5-VL rule, worked out by hand
TOKENS = [
    (8, 280, 392, "vllm", "video", 4 * 10 * 14),
    (7, 280, 392, "vllm", "video", 3 * 10 * 14),  # vLLM floors the sampled count to even
    (7, 280, 392, "vllm", "frames", 4 * 10 * 14),  # an odd list repeats its last frame
    (8, 240, 320, "vllm", "frames", 4 * 10 * 14),  # resized up to the 128*28*28 minimum: 280x392
    (2, 280, 392, "dashscope", "frames", 2 * 10 * 14),  # padded to DashScope's 4-frame minimum
    (4, 280, 392, "generic", "frames", None),
]


@pytest.mark.parametrize(("n", "h", "w", "flavour", "mode", "expected"), TOKENS)
def test_visual_token_estimates(n, h, w, flavour, mode, expected) -> None:  # type: ignore[no-untyped-def]
    got = estimate_video_part_tokens(n, h, w, flavour, mode, EncodeOptions())
    if expected is None:  # 4 images of 280x392 = 10*14 each, plus their text labels
        assert got >= 4 * 140 and got < 4 * 160
    else:
        assert got - 2 == expected


def test_request_estimate_counts_text_approximately() -> None:
    part = _part(n=8, size=(392, 280))
    short = estimate_request_tokens(ChatRequest(parts=[part, TextPart("x")]), "vllm", "video")
    long = estimate_request_tokens(ChatRequest(parts=[part, TextPart("word " * 400)]), "vllm", "video")
    assert 560 <= short < 600 and 400 <= long - short <= 600


# ---------------------------------------------------------------------------------- errors, retry

STATUS = [
    (401, "bad key", AuthenticationError, False),
    (403, "forbidden", AuthenticationError, False),
    (413, "body too big", PayloadTooLargeError, False),
    (400, "This model's maximum context length is 16384 tokens. However, you requested 20000", PayloadTooLargeError, False),
    (400, "The decoder prompt (length 17000) is longer than the maximum model length of 16384", PayloadTooLargeError, False),
    (400, "Range of input length should be [1, 129024]", PayloadTooLargeError, False),
    (400, "unknown field foo", ServerError, False),
    (404, "no such model", ServerError, False),
    (408, "timeout", ServerError, True),
    (409, "conflict", ServerError, True),
    (429, "slow down", RateLimitError, True),
    (500, "boom", ServerError, True),
    (503, "overloaded", ServerError, True),
]


@pytest.mark.parametrize(("status", "message", "cls", "retryable"), STATUS)
def test_error_for_status(status: int, message: str, cls: type, retryable: bool) -> None:
    err = error_for_status(status, message + " key=sk-secret-123", secrets=("sk-secret-123",))
    assert type(err) is cls and err.retryable is retryable and err.status == status
    assert "sk-secret-123" not in str(err) and "\n" not in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after": "0.25"}, 0.25), ({"retry-after-ms": "1500"}, 1.5),
     ({}, None), (None, None), ({"Retry-After": "soon"}, None),
     ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0)],
)
def test_parse_retry_after(headers, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse_retry_after(headers) == expected


def test_backoff_is_exponential_with_bounded_jitter_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base=0.5, backoff_max=3.0, jitter=0.25)
    assert [backoff_delay(a, policy, None, rng=lambda: 0.0) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(1, policy, None, rng=lambda: 1.0) == pytest.approx(1.25)
    assert backoff_delay(3, policy, 7.0) == 7.0


def test_call_with_retries_sleeps_retry_after_then_succeeds() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise error_for_status(429, "slow", retry_after=0.7)
        return "ok"

    assert call_with_retries(fn, RetryPolicy(max_retries=4), sleep=sleeps.append) == "ok"
    assert sleeps == [0.7, 0.7]


@pytest.mark.parametrize(
    ("exc", "attempts"),
    [(error_for_status(401, "no"), 1), (error_for_status(400, "bad"), 1),
     (error_for_status(503, "x"), 3), (ServerUnreachableError("down", retryable=True), 3)],
)
def test_call_with_retries_gives_up(exc: BackendError, attempts: int) -> None:
    calls: list[int] = []

    def fn() -> None:
        calls.append(1)
        raise exc

    with pytest.raises(type(exc)):
        call_with_retries(fn, RetryPolicy(max_retries=2, backoff_base=0.0), sleep=lambda s: None)
    assert len(calls) == attempts


def test_dashscope_text_that_names_a_file_is_not_uploaded(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dashscope.utils.oss_utils import check_and_upload

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("private")
    for text in ("notes.txt", f"file://{tmp_path}/notes.txt", "what is in the video?"):
        p = build_dashscope(ChatRequest(parts=[TextPart(text)]), "frames", EncodeOptions())
        item = dict(p.messages[0]["content"][0])
        uploaded, _ = check_and_upload("m", item, "k")  # the SDK's own check (raises on upload attempts)
        assert not uploaded and item["text"].strip() == text


@pytest.mark.parametrize(("source_fps", "plan_fps", "seconds"), [(25.0, 2.0, 20.0), (5.0, 1.5, 30.0),
                                                                 (29.97, 2.0, 120.0), (25.0, 0.7, 300.0)])
def test_sampling_jitter_is_no_time_scale(source_fps: float, plan_fps: float, seconds: float) -> None:
    # frames sampled from a 25 fps source sit up to half a source frame off the plan's grid: the fit
    # once gave 0.9987, which held every streamed answer back to be rewritten (and rewrote nothing)
    from vidline.models.payload import fit_time_scale

    n = int(seconds * plan_fps)
    model = [i / plan_fps for i in range(n)]
    real = [round(t * source_fps) / source_fps for t in model]  # the nearest source frame
    assert fit_time_scale(model, real) == 1.0
    # a real scale (a server that keeps its own 2 fps clock for frames sampled at 1.17 fps) stays
    assert fit_time_scale([i / 2.0 for i in range(n)], real) == pytest.approx(2.0 / plan_fps, rel=0.02)
