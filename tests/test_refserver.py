"""The reference server, driven through the real openai and dashscope SDKs.

Every timing assertion compares against the synthetic markers' ground truth (vidline.synth.Marker
intervals) within one frame spacing, never against the server's own arithmetic.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import dashscope
import httpx
import openai
import pytest
import requests

from tests.refserver import STYLES, RefServer
from tests.refserver.media import image_tokens, timestamp_in_text, video_tokens
from tests.refserver.payloads import frames_at, jpeg_data_url, jpeg_list_url, mp4_data_url
from vidline.parse import RawEvent, parse_answer
from vidline.synth import Marker

MARKERS = [
    Marker("red square", 1.0, 2.5, x=0.3, size=0.3),
    Marker("green circle", 2.0, 3.5, x=0.72, size=0.3),
]
TIMELINE_PROMPT = (
    "List every notable event in this video clip. Give the start and end of each event in seconds from the "
    'start of the clip. Answer with JSON only: {"events": [{"start": 1.0, "end": 2.0, "label": "..."}]}'
)
DURATION = 4.0


def sample_times(fps: float, duration: float = DURATION, start: float = 0.0) -> list[float]:
    n = int(round(duration * fps))
    return [start + i / fps for i in range(n)]


def client(server: RefServer, *, base_url: str | None = None, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url or server.openai_base_url, api_key="sk-test", max_retries=retries)


def assert_matches_markers(
    events: Sequence[RawEvent],
    markers: Sequence[Marker],
    tol: float,
    *,
    offset: float = 0.0,
    scale: float = 1.0,
) -> None:
    """Each marker is reported once, with start/end within ``tol`` of the ground truth."""
    assert len(events) == len(markers), events
    for m in markers:
        hits = [e for e in events if m.label in e.label or m.label in (e.description or "")]
        assert len(hits) == 1, (m.label, events)
        ev = hits[0]
        assert abs(ev.start * scale - (m.start - offset)) <= tol + 1e-6, (m, ev)
        assert abs(ev.end * scale - (m.end - offset)) <= tol + 1e-6, (m, ev)


def chat(c: openai.OpenAI, server: RefServer, content: list[dict[str, Any]], **kw: Any) -> str:
    r = c.chat.completions.create(model=server.model, messages=[{"role": "user", "content": content}], **kw)
    return r.choices[0].message.content or ""


# --------------------------------------------------------------------------------------- OpenAI


def test_models_endpoint(refserver: RefServer) -> None:
    models = client(refserver).models.list()
    assert [m.id for m in models.data] == [refserver.model]
    assert refserver.last.status == 200 and refserver.last.api == "models"


def test_mp4_with_media_io_fps(refserver: RefServer) -> None:
    fps = 2.0
    times = sample_times(fps)
    url = mp4_data_url(frames_at(times, MARKERS), [t - times[0] for t in times])
    text = chat(
        client(refserver),
        refserver,
        [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
        extra_body={"media_io_kwargs": {"video": {"fps": fps}}},
    )
    assert_matches_markers(parse_answer(text), MARKERS, 1 / fps)
    rec = refserver.last
    assert (rec.status, rec.fps_used, rec.time_source, rec.n_frames) == (200, fps, "pts", 8)
    assert rec.media == ["openai.video_url.mp4"]
    assert rec.media_io_kwargs == {"video": {"fps": fps}}


@pytest.mark.parametrize("told", [4.0, 2.0, 30.0, None])
def test_mp4_asked_for_more_fps_than_it_has_keeps_every_frame(refserver: RefServer, told: float | None) -> None:
    # vLLM's loader samples min(total frames, duration * fps) frames, so asking for more than the clip
    # has (vidline asks 2F for a clip at F) keeps every frame once, timed by the clip's own clock: the
    # same frames and tokens as the clip itself, not twice as many (protocols.md: vLLM's default 2 fps
    # gives 8 frames of a 4 s clip, and 8 frames of 320x240 are 560 visual tokens)
    times = sample_times(1.0 if told is None else 2.0)  # 4 s: 4 frames at 1 fps (default 2 fps) or 8 at 2 fps
    url = mp4_data_url(frames_at(times, MARKERS, size=(320, 240)), times)
    extra = {"media_io_kwargs": {"video": {"fps": told}}} if told else None
    text = chat(
        client(refserver),
        refserver,
        [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
        extra_body=extra,
    )
    rec = refserver.last
    assert rec.n_frames == len(times) and rec.frame_times == times
    assert rec.fps_used == pytest.approx(1.0 / (times[1] - times[0])) and rec.time_source == "pts"
    assert rec.visual_tokens == video_tokens(len(times), 240, 320)
    assert_matches_markers(parse_answer(text), MARKERS, times[1] - times[0])


def test_mp4_asked_for_fewer_fps_is_resampled(refserver: RefServer) -> None:
    times = [i / 10 for i in range(40)]  # 4 s at 10 fps, asked at 1 fps: 4 frames (protocols.md: 310 tokens)
    url = mp4_data_url(frames_at(times, MARKERS, size=(320, 240)), times)
    chat(client(refserver), refserver,
         [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "describe"}],
         extra_body={"media_io_kwargs": {"video": {"fps": 1.0}}})  # fmt: skip
    rec = refserver.last
    assert rec.n_frames == 4 and rec.frame_times == [0.0, 1.0, 2.0, 3.0] and rec.fps_used == 1.0
    assert rec.visual_tokens == 280


def test_vidline_vllm_video_payload_is_billed_as_estimated(refserver: RefServer) -> None:
    # what vidline sends to vLLM in video mode (mp4 on the k/F grid, media_io fps 2F) costs exactly its
    # estimate: every frame once
    from vidline.models.base import ChatRequest, TextPart, VideoPart
    from vidline.models.payload import EncodeOptions, build_openai, estimate_video_part_tokens
    from vidline.types import Frame

    clip = [i * 0.5 for i in range(16)]  # a window at 600 s, 2 fps
    images = frames_at(clip, MARKERS, size=(320, 240))
    part = VideoPart(frames=[Frame(t=600 + t, image=im) for t, im in zip(clip, images, strict=True)], fps=2.0,
                     origin=600.0)
    built = build_openai(ChatRequest([part, TextPart(TIMELINE_PROMPT)]), "vllm", "video", EncodeOptions())
    assert built.extra_body == {"media_io_kwargs": {"video": {"fps": 4.0}}}
    text = chat(client(refserver), refserver, built.messages[-1]["content"], extra_body=built.extra_body)
    rec = refserver.last
    assert rec.n_frames == 16 and rec.visual_tokens == built.visual_tokens
    assert rec.visual_tokens + 2 == estimate_video_part_tokens(16, 240, 320, "vllm", "video", EncodeOptions())
    assert_matches_markers(parse_answer(text), MARKERS, 0.5)  # clip times: the frames show MARKERS from 0


def test_vfr_mp4_window_not_at_zero_uses_pts(refserver: RefServer) -> None:
    # frames of a window starting at 600 s: dense at first (10 fps), then sparse (2 fps); the mp4's PTS
    # are the real times minus 600. The server samples at its default 2 fps, by PTS.
    window_start = 600.0
    real = [window_start + i * 0.1 for i in range(20)] + [window_start + 2.0 + i * 0.5 for i in range(4)]
    markers = [
        Marker(m.label, m.start + window_start, m.end + window_start, x=m.x, size=m.size) for m in MARKERS
    ]
    url = mp4_data_url(frames_at(real, markers), [t - window_start for t in real])
    text = chat(
        client(refserver),
        refserver,
        [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
    )
    events = parse_answer(text)
    assert_matches_markers(events, markers, 0.5, offset=window_start)
    assert refserver.last.fps_used == 2.0


def test_mp4_clock_starts_at_first_frame(refserver: RefServer) -> None:
    # first frame PTS 0.25 s: like a real server the model counts from the first frame it sees
    times = [0.25 + i * 0.5 for i in range(8)]
    url = mp4_data_url(frames_at(times, MARKERS), times)
    text = chat(
        client(refserver),
        refserver,
        [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
    )
    assert_matches_markers(parse_answer(text), MARKERS, 0.5, offset=0.25)
    assert refserver.last.frame_times[0] == 0.0


def test_media_io_kwargs_rejected_when_untrusted() -> None:
    with RefServer(trust_mm_kwargs=False) as server:
        url = mp4_data_url(frames_at(sample_times(2.0), MARKERS), sample_times(2.0))
        with pytest.raises(openai.BadRequestError) as info:
            chat(
                client(server),
                server,
                [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
                extra_body={"media_io_kwargs": {"video": {"fps": 2.0}}},
            )
        assert "Per-request media_io_kwargs are disabled by default" in str(info.value)
        assert server.last.status == 400 and server.last.fault == "media_io_kwargs"


@pytest.mark.parametrize("told_fps", [2.0, None])
def test_vllm_jpeg_list(refserver: RefServer, told_fps: float | None) -> None:
    fps = 2.0
    url = jpeg_list_url(frames_at(sample_times(fps), MARKERS))
    extra = {"media_io_kwargs": {"video": {"fps": told_fps}}} if told_fps else None
    text = chat(
        client(refserver),
        refserver,
        [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": TIMELINE_PROMPT}],
        extra_body=extra,
    )
    # without a told fps, vLLM's jpeg-list loader assumes 1 fps: times come back doubled
    scale = 1.0 if told_fps else fps / refserver.jpeg_list_fps
    assert_matches_markers(parse_answer(text), MARKERS, 1 / fps, scale=1 / scale)
    assert refserver.last.media == ["openai.video_url.jpeg_list"]
    assert refserver.last.n_frames == 8


@pytest.mark.parametrize("fmt", ["t={t:.2f}s", "[{t:.1f}s]", "Frame at t={t:.2f}s:", "00:{t:04.1f}", "{t}s"])
def test_image_parts_with_text_timestamps(refserver: RefServer, fmt: str) -> None:
    times = sample_times(2.0, start=10.0)  # the client wrote absolute times: the model repeats them
    content: list[dict[str, Any]] = [{"type": "text", "text": TIMELINE_PROMPT}]
    for t, img in zip(times, frames_at(times, _shift(MARKERS, 10.0)), strict=True):
        content.append({"type": "text", "text": fmt.format(t=t)})
        content.append({"type": "image_url", "image_url": {"url": jpeg_data_url(img)}})
    events = parse_answer(chat(client(refserver), refserver, content))
    assert_matches_markers(events, _shift(MARKERS, 10.0), 0.5)
    assert refserver.last.time_source == "text" and refserver.last.n_images == 8


def test_image_parts_without_timestamps_assume_2fps(refserver: RefServer) -> None:
    times = sample_times(1.0)  # sent at 1 fps, the model assumes 0.5 s spacing: half the real times
    content: list[dict[str, Any]] = [{"type": "text", "text": TIMELINE_PROMPT}]
    content += [
        {"type": "image_url", "image_url": {"url": jpeg_data_url(im)}} for im in frames_at(times, MARKERS)
    ]
    events = parse_answer(chat(client(refserver), refserver, content))
    assert_matches_markers(events, MARKERS, 1.0, scale=2.0)
    assert refserver.last.time_source == "default"


def test_dashscope_compat_frame_list(refserver: RefServer) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    c = client(refserver, base_url=refserver.compat_base_url)
    text = chat(c, refserver, [{"type": "video", "video": urls}, {"type": "text", "text": TIMELINE_PROMPT}])
    assert_matches_markers(parse_answer(text), MARKERS, 0.5)
    assert refserver.last.api == "compat" and refserver.last.fps_used == 2.0


def test_openai_streaming_with_usage(refserver: RefServer) -> None:
    fps = 2.0
    url = mp4_data_url(frames_at(sample_times(fps), MARKERS), sample_times(fps))
    stream = client(refserver).chat.completions.create(
        model=refserver.model,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                               {"type": "text", "text": TIMELINE_PROMPT}]}],
    )  # fmt: skip
    text, usage, chunks = "", None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert chunks > 3
    assert_matches_markers(parse_answer(text), MARKERS, 1 / fps)
    assert usage is not None and usage.prompt_tokens == refserver.last.prompt_tokens > 560
    assert refserver.last.stream and text == refserver.last.answer


@pytest.mark.parametrize("style", STYLES)
def test_every_style_parses(style: str) -> None:
    with RefServer(styles=[style]) as server:
        urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
        markers = MARKERS if style != "qwen_prose" else MARKERS[:1]
        prompt = TIMELINE_PROMPT + (" Query: red square." if style == "qwen_prose" else "")
        c = client(server, base_url=server.compat_base_url)
        text = chat(c, server, [{"type": "video", "video": urls}, {"type": "text", "text": prompt}])
        events = parse_answer(text, default_label="red square")
        assert_matches_markers(events, markers, 0.5)
        assert server.last.style == style


def test_styles_rotate(refserver: RefServer) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    c = client(refserver, base_url=refserver.compat_base_url)
    for _ in range(4):
        text = chat(
            c, refserver, [{"type": "video", "video": urls}, {"type": "text", "text": TIMELINE_PROMPT}]
        )
        assert_matches_markers(parse_answer(text), MARKERS, 0.5)
    used = [r.style for r in refserver.generation_requests]
    assert len(set(used)) >= 3, used


def test_query_filters_labels(refserver: RefServer) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    c = client(refserver, base_url=refserver.compat_base_url)
    prompt = "Find every time the following happens: green circle. Answer JSON with start and end."
    events = parse_answer(
        chat(c, refserver, [{"type": "video", "video": urls}, {"type": "text", "text": prompt}])
    )
    assert_matches_markers(events, MARKERS[1:], 0.5)
    prompt = "Find every time the following happens: blue triangle. Answer JSON with start and end."
    assert (
        parse_answer(chat(c, refserver, [{"type": "video", "video": urls}, {"type": "text", "text": prompt}]))
        == []
    )


def test_freeform_question_answered_from_frames(refserver: RefServer) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    c = client(refserver, base_url=refserver.compat_base_url)
    text = chat(
        c,
        refserver,
        [{"type": "video", "video": urls}, {"type": "text", "text": "Which shapes appear and when?"}],
    )
    assert text.startswith("From 00:01 to 00:02.5 a red square is visible.")
    assert_matches_markers(parse_answer(text), MARKERS, 0.5)
    assert refserver.last.kind == "freeform"
    zh = chat(c, refserver, [{"type": "video", "video": urls}, {"type": "text", "text": "请描述下视频内容"}])
    assert "red square" in zh and "从 00:01 到 00:02.5" in zh


def test_several_images_and_text_only_reduce(refserver: RefServer) -> None:
    c = client(refserver)
    imgs = frames_at([1.5, 3.0, 0.0], MARKERS)
    text = chat(
        c,
        refserver,
        [{"type": "image_url", "image_url": {"url": jpeg_data_url(imgs[0])}},
         {"type": "image_url", "image_url": {"url": jpeg_data_url(imgs[1])}},
         {"type": "text", "text": "What is in these images?"}],
    )  # fmt: skip
    assert text == "Image 1 shows a red square. Image 2 shows a green circle."
    single = chat(c, refserver, [{"type": "image_url", "image_url": {"url": jpeg_data_url(imgs[2])}},
                                 {"type": "text", "text": "What is in this image?"}])  # fmt: skip
    assert "grey background" in single
    captions = (
        "Captions of a long video:\n[40:00 - 42:00] 2415.0s - 2417.0s: a red square is visible\n"
        "[42:00 - 44:00] 2520s - 2530.5s: a green circle is visible\nQuestion: which shapes appear and when?"
    )
    answer = chat(c, refserver, [{"type": "text", "text": captions}])
    assert (
        answer
        == "From 40:15 to 40:17 a red square is visible. From 42:00 to 42:10.5 a green circle is visible."
    )
    assert refserver.last.kind == "text"


# ------------------------------------------------------------------------------------- DashScope


def ds_call(server: RefServer, content: list[dict[str, Any]], **kw: Any) -> Any:
    return dashscope.MultiModalConversation.call(
        model=server.model,
        api_key=kw.pop("api_key", "sk-test"),
        base_address=server.dashscope_base_url,
        messages=[{"role": "user", "content": content}],
        **kw,
    )


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_dashscope_native_frame_list_fps(refserver: RefServer, fps: float) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(fps), MARKERS)]
    resp = ds_call(refserver, [{"video": urls, "fps": fps}, {"text": TIMELINE_PROMPT}])
    assert resp.status_code == 200, resp
    text = resp.output.choices[0].message.content[0]["text"]
    assert_matches_markers(parse_answer(text), MARKERS, 1 / fps)
    assert resp.usage.input_tokens == refserver.last.prompt_tokens
    assert resp.usage["video_tokens"] == video_tokens(len(urls), 120, 160)
    assert refserver.last.headers["Authorization"] == "***"
    assert refserver.last.fps_used == fps and refserver.last.time_source == "fps"


def test_dashscope_native_mp4(refserver: RefServer) -> None:
    times = sample_times(4.0)
    url = mp4_data_url(frames_at(times, MARKERS), times)
    resp = ds_call(refserver, [{"video": url, "fps": 4}, {"text": TIMELINE_PROMPT}])
    assert resp.status_code == 200, resp
    assert_matches_markers(parse_answer(resp.output.choices[0].message.content[0]["text"]), MARKERS, 0.25)
    assert refserver.last.media == ["dashscope.video_mp4"] and refserver.last.n_frames == 16


@pytest.mark.parametrize("incremental", [True, None, False])
def test_dashscope_sse(refserver: RefServer, incremental: bool | None) -> None:
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    kw: dict[str, Any] = {"stream": True}
    if incremental is not None:
        kw["incremental_output"] = incremental
    texts = []
    for resp in ds_call(
        refserver, [{"video": urls, "fps": 2}, {"text": "Which shapes appear and when?"}], **kw
    ):
        assert resp.status_code == 200, resp
        texts.append(
            resp.output.choices[0].message.content[0]["text"]
            if resp.output.choices[0].message.content
            else ""
        )
    full = refserver.last.answer
    assert full and len(texts) > 2
    if incremental is None:  # server default: cumulative text
        assert texts[-1] == full
    elif incremental:
        assert "".join(texts) == full
    else:  # the SDK asks for deltas and merges them back into cumulative text
        assert texts[-1] == full
    assert_matches_markers(parse_answer(full), MARKERS, 0.5)
    assert refserver.last.stream


def test_dashscope_wrong_key_and_frame_limits(refserver: RefServer) -> None:
    urls = [jpeg_data_url(im) for im in frames_at([0.0, 0.5], MARKERS)]
    bad = ds_call(refserver, [{"text": "hello"}], api_key="sk-wrong")
    assert (bad.status_code, bad.code) == (401, "InvalidApiKey")
    assert "sk-wrong" not in json.dumps(refserver.last.headers)
    few = ds_call(refserver, [{"video": urls, "fps": 2}, {"text": TIMELINE_PROMPT}])
    assert few.status_code == 400 and "between 4 and 512" in few.message


# ------------------------------------------------------------------------------------------ faults


def test_wrong_key_openai(refserver: RefServer) -> None:
    c = openai.OpenAI(base_url=refserver.openai_base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    with pytest.raises(openai.AuthenticationError):
        chat(c, refserver, [{"type": "text", "text": "hi"}])
    assert [r.status for r in refserver.requests] == [401, 401]
    assert all(r.fault == "auth" for r in refserver.requests)


def test_body_limit_413(refserver: RefServer) -> None:
    refserver.configure(max_body_bytes=1000)
    url = jpeg_data_url(frames_at([0.0], MARKERS)[0])
    with pytest.raises(openai.APIStatusError) as info:
        chat(client(refserver), refserver, [{"type": "image_url", "image_url": {"url": url}}])
    assert info.value.status_code == 413
    assert refserver.last.body_bytes > 1000 and refserver.last.fault == "too_large"


def test_rate_limit_with_retry_after(refserver: RefServer) -> None:
    refserver.configure(rate_limit_first=2, retry_after=0.05)
    with pytest.raises(openai.RateLimitError) as info:
        chat(client(refserver), refserver, [{"type": "text", "text": "hi"}])
    assert info.value.response.headers["retry-after"] == "0.05"
    # the SDK's own retries honour Retry-After and then succeed
    chat(client(refserver, retries=2), refserver, [{"type": "text", "text": "hi"}])
    assert [r.status for r in refserver.requests] == [429, 429, 200]
    resp = requests.post(
        refserver.url + "/v1/chat/completions",
        json={"model": refserver.model},
        headers={"Authorization": "Bearer sk-test"},
    )
    assert resp.status_code == 400  # the quota is used up; now a bad (empty) request


def test_random_5xx_is_seeded() -> None:
    def statuses(seed: int) -> list[int]:
        with RefServer(fail_rate=0.5, seed=seed) as server:
            c = client(server)
            for _ in range(10):
                with contextlib.suppress(openai.InternalServerError):
                    chat(c, server, [{"type": "text", "text": "hi"}])
            return [r.status for r in server.requests]

    first = statuses(1)
    assert first == statuses(1)
    assert any(s >= 500 for s in first) and any(s == 200 for s in first)


def test_latency(refserver: RefServer) -> None:
    refserver.configure(latency=0.3)
    t0 = time.monotonic()
    chat(client(refserver), refserver, [{"type": "text", "text": "hi"}])
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(
            base_url=refserver.openai_base_url, api_key="sk-test", max_retries=0, timeout=0.1
        ).models.list()


def test_dropped_stream_openai_and_dashscope(refserver: RefServer) -> None:
    refserver.configure(drop_stream_after=3)
    urls = [jpeg_data_url(im) for im in frames_at(sample_times(2.0), MARKERS)]
    stream = client(refserver, base_url=refserver.compat_base_url).chat.completions.create(
        model=refserver.model,
        stream=True,
        messages=[
            {
                "role": "user",
                "content": [{"type": "video", "video": urls}, {"type": "text", "text": "describe"}],
            }
        ],
    )
    got = ""
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in stream:
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert refserver.last.fault == "dropped" and refserver.last.chunks_sent == 3
    assert got and got != refserver.last.answer
    with pytest.raises(requests.exceptions.RequestException):
        for _ in ds_call(refserver, [{"video": urls, "fps": 2}, {"text": "describe"}], stream=True,
                         incremental_output=True):  # fmt: skip
            pass
    assert refserver.last.fault == "dropped"


def test_context_limit(refserver: RefServer) -> None:
    refserver.configure(context_limit=500)
    url = mp4_data_url(frames_at(sample_times(2.0), MARKERS), sample_times(2.0))
    with pytest.raises(openai.BadRequestError) as info:
        chat(client(refserver), refserver, [{"type": "video_url", "video_url": {"url": url}}], max_tokens=100)
    assert "maximum context length is 500 tokens" in str(info.value)
    resp = ds_call(refserver, [{"video": url, "fps": 2}, {"text": "describe"}])
    assert resp.status_code == 400 and "input length" in resp.message


def test_unknown_model_and_remote_urls(refserver: RefServer) -> None:
    c = client(refserver)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as info:
        chat(c, refserver, [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}])
    assert "cannot fetch https URLs" in str(info.value)


def test_configure_reset_and_threads(refserver: RefServer) -> None:
    with pytest.raises(TypeError):
        refserver.configure(no_such_fault=1)
    refserver.configure(fail_rate=1.0)
    refserver.reset()
    assert refserver.requests == [] and refserver.fail_rate == 0.0
    url = jpeg_list_url(frames_at(sample_times(2.0), MARKERS))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            c = client(refserver)
            text = chat(c, refserver, [{"type": "video_url", "video_url": {"url": url}},
                                       {"type": "text", "text": TIMELINE_PROMPT}],
                        extra_body={"media_io_kwargs": {"video": {"fps": 2}}})  # fmt: skip
            assert_matches_markers(parse_answer(text), MARKERS, 0.5)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(refserver.requests) == 6 and all(r.status == 200 for r in refserver.requests)


# ------------------------------------------------------------------------------------ accounting


def test_token_counts_match_vllm_measurements() -> None:
    # protocols.md: vLLM measured 560 visual tokens for 8 frames of 320x240 (resized 280x392) and
    # 391 (= 420 - text) for one 640x480 image
    assert video_tokens(8, 240, 320) == 560
    assert image_tokens(480, 640) == 17 * 23
    assert video_tokens(7, 240, 320) == 560  # odd frame counts are padded to even
    assert video_tokens(20, 360, 640) == 10 * 13 * 23  # 10 s 640x360 at 2 fps (3020 incl. text)


def test_usage_reports_visual_tokens(refserver: RefServer) -> None:
    times = [i / 10 for i in range(40)]  # 4 s at 10 fps, 320x240, like the vLLM measurement
    url = mp4_data_url(frames_at(times, MARKERS, size=(320, 240)), times)
    r = client(refserver).chat.completions.create(
        model=refserver.model,
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                               {"type": "text", "text": "describe"}]}],
    )  # fmt: skip
    assert refserver.last.visual_tokens == 560 and refserver.last.n_frames == 8
    assert r.usage is not None and 560 < r.usage.prompt_tokens < 600


def test_timestamp_text_parts_are_billed(refserver: RefServer) -> None:
    # the text beside each frame ("Frame at t=12.50s:") is text the server tokenizes like any other
    img = jpeg_data_url(frames_at([0.0], MARKERS)[0])
    content: list[dict[str, Any]] = [{"type": "text", "text": "describe"}]
    chat(client(refserver), refserver, [*content, {"type": "image_url", "image_url": {"url": img}}])
    bare = refserver.last.prompt_tokens
    label = "Frame at t=12.50s:"
    chat(client(refserver), refserver,
         [*content, {"type": "text", "text": label}, {"type": "image_url", "image_url": {"url": img}}])  # fmt: skip
    assert refserver.last.frame_times == [12.5] and refserver.last.prompt == "describe"
    assert refserver.last.prompt_tokens == bare + 5  # 18 characters


def test_timestamp_text_forms() -> None:
    assert timestamp_in_text("t=12.5s") == 12.5
    assert timestamp_in_text("[12.5s]") == 12.5
    assert timestamp_in_text("00:12.5") == 12.5
    assert timestamp_in_text("00:00:12.500") == 12.5
    assert timestamp_in_text("Frame at t=12.50s:") == 12.5
    assert timestamp_in_text("12.5 秒") == 12.5
    assert timestamp_in_text("describe the video") is None
    assert timestamp_in_text("x" * 100 + " 12s") is None


def _shift(markers: Sequence[Marker], dt: float) -> list[Marker]:
    return [Marker(m.label, m.start + dt, m.end + dt, x=m.x, size=m.size) for m in markers]


def test_payload_helper_roundtrip() -> None:
    url = jpeg_list_url(frames_at([0.0, 1.5], MARKERS))
    head, payload = url.split(",", 1)
    assert head == "data:video/jpeg;base64" and len(payload.split(",")) == 2
    assert base64.b64decode(payload.split(",")[0])[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("n", "h", "w"),
    [(8, 240, 320), (7, 240, 320), (4, 120, 160), (64, 720, 1280), (768, 1080, 1920), (2, 28, 5000)],
)
def test_server_tokens_agree_with_media_plan(n: int, h: int, w: int) -> None:
    # two independent implementations of Qwen's rules: the client's estimate (frames resized by the
    # plan) must equal what the server counts for the frames as received
    plan = pytest.importorskip("vidline.media.plan")
    rh, rw = plan.frame_size_for(n, h, w, plan.SamplingBudget())
    assert plan.estimate_video_tokens(n, rh, rw) == video_tokens(n, h, w)
    assert plan.estimate_image_tokens(*plan.image_size_for(h, w)) == image_tokens(h, w)


def test_no_auth_no_retry_after_and_uploads() -> None:
    with RefServer(api_key=None, rate_limit_first=1, retry_after=None) as server:
        c = openai.OpenAI(base_url=server.openai_base_url, api_key="anything", max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            chat(c, server, [{"type": "text", "text": "hi"}])
        assert "retry-after" not in info.value.response.headers
        assert chat(c, server, [{"type": "text", "text": "hi"}])
        up = requests.get(server.url + "/api/v1/uploads?action=getPolicy", timeout=5)
        assert up.status_code == 400 and "upload" in (server.last.error or "")


def test_stream_error_event_mid_answer(refserver: RefServer) -> None:
    refserver.configure(stream_error_after=2)
    stream = client(refserver).chat.completions.create(
        model=refserver.model, stream=True, messages=[{"role": "user", "content": "describe"}]
    )
    with pytest.raises(openai.APIError, match="injected fault"):
        for _ in stream:
            pass
    assert refserver.last.fault == "stream_error"
    got = [r for r in ds_call(refserver, [{"text": "describe"}], stream=True, incremental_output=True)]
    assert got[-1].status_code == 500 and got[-1].code == "InternalError"
    assert refserver.last.fault == "stream_error"


def test_max_in_flight_counts_concurrent_requests(refserver: RefServer) -> None:
    refserver.configure(latency=1.0)
    clients = [client(refserver) for _ in range(3)]
    barrier = threading.Barrier(3)

    def call(c: openai.OpenAI) -> None:
        barrier.wait(10)
        chat(c, refserver, [{"type": "text", "text": "hi"}])

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert refserver.max_in_flight == 3
    deadline = time.monotonic() + 5  # handlers leave just after their last byte is written
    while refserver.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refserver.in_flight == 0
    refserver.reset()
    assert refserver.max_in_flight == 0
