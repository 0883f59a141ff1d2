"""vidline.understand: pure parts (time rewriting, chapters, path planning, stream restarts) and the
engine against a fake backend that really looks at the frames (marker detection)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidline.errors import AuthenticationError, ConfigError, ServerError, ServerUnreachableError
from vidline.media.plan import image_size_for, plan_sampling
from vidline.models.base import Backend, ChatRequest, ChatResponse, ImagePart
from vidline.models.config import ModelConfig, RetryPolicy
from vidline.models.payload import BuiltPayload, EncodeOptions, estimate_video_part_tokens
from vidline.synth import Marker, detect_markers, make_video
from vidline.types import Usage
from vidline.understand import (
    Answer,
    AnswerStream,
    AskLimits,
    AskPayload,
    IncompleteAnswerError,
    MapStepError,
    MediaInput,
    ask,
    chapters_from_text,
    dry_run,
    find_time_references,
    format_chapters,
    format_clock,
    normalize_chapters,
    parse_chapters,
    plan_ask,
    rewrite_caption_times,
)

# ------------------------------------------------------------------------------------------------
# rewrite_caption_times: a caption from the window at 40:00 that says "00:15" means 40:15

REWRITE_CASES = [
    # (caption, offset, scale, expected)
    ("00:15 a red square appears", 2400, 1.0, "40:15 a red square appears"),
    ("0:15 red", 2400, 1.0, "40:15 red"),
    ("01:05.25 green", 60, 1.0, "02:05.25 green"),
    ("00:23.90 - 01:35.60: car", 600, 1.0, "10:23.90 - 11:35.60: car"),
    ("00:00:12,500 --> 00:00:15,000 text", 3600, 1.0, "01:00:12.500 --> 01:00:15.000 text"),
    ("01:02:03 late", 10, 1.0, "01:02:13 late"),
    ("from 12s to 15.5s: a dog", 2400, 1.0, "from 40:12 to 40:15.5: a dog"),
    ("The given query happens in 64.0 - 72.0 seconds.", 600, 1.0, "The given query happens in 11:04.0 - 11:12.0."),
    ("10 to 20 sec: y", 2400, 1.0, "40:10 to 40:20: y"),
    ("at 5 s", 2400, 1.0, "at 40:05"),
    ("3.5 seconds in", 0, 1.0, "00:03.5 in"),
    ("12秒出现红色方块", 2400, 1.0, "40:12出现红色方块"),
    ("t=4.5 frame", 100, 1.0, "t=104.5 frame"),
    ('{"start": 1.5, "end": 3}', 100, 1.0, '{"start": 101.5, "end": 103}'),
    ('{"start_time": "00:03", "end_time": "00:05"}', 60, 1.0, '{"start_time": "01:03", "end_time": "01:05"}'),
    ("[2.0s - 4.0s] blue", 3597, 1.0, "[59:59.0 - 1:00:01.0] blue"),
    # DashScope compat-mode style rescale: model seconds x 2
    ("4s: red", 100, 2.0, "01:48: red"),
    ("00:04 red", 0, 0.5, "00:02 red"),
    # Qwen's "MM:SS - MM:SS: label" lines: a clock followed by ":" (the end was left clip-relative)
    ("00:05 - 00:20: a blue triangle", 120, 1.0, "02:05 - 02:20: a blue triangle"),
    ("00:15.5: x", 0, 2.0, "00:31.0: x"),
    ("0:00:05: y", 120, 1.0, "00:02:05: y"),
    ("between 5 and 20 seconds", 120, 1.0, "between 02:05 and 02:20"),
    ("在5秒到20秒之间", 120, 1.0, "在02:05到02:20之间"),
    ("5到20秒", 120, 1.0, "02:05到02:20"),
    ("1m30s: red", 120, 1.0, "03:30: red"),
    ("1 min 30 sec", 120, 1.0, "03:30"),
    ("1分30秒出现", 120, 1.0, "03:30出现"),
    ("at 2 minutes", 120, 1.0, "at 04:00"),
    ("after 10 seconds, a man enters", 120, 1.0, "after 02:10, a man enters"),
    ("00:01 to 00:02 a dot", 0, 0.5, "00:00.5 to 00:01 a dot"),  # not "00:01 to 00:01" (nor 00:00)
    ("15秒后出现", 120, 1.0, "02:15后出现"),  # "after 15 seconds": a moment, as in English
    # lengths of time, not moments: left alone
    ("visible for 15 seconds (00:05 - 00:20)", 120, 1.0, "visible for 15 seconds (02:05 - 02:20)"),
    ("it lasts about 2 minutes", 120, 1.0, "it lasts about 2 minutes"),
    ("5 seconds later a car", 120, 1.0, "5 seconds later a car"),
    ("a 10-second clip", 120, 1.0, "a 10-second clip"),
    ("持续5秒", 120, 1.0, "持续5秒"),
    # not times: left alone
    ("3 people and 2.5x zoom, version 1.2, 4 cars", 2400, 1.0, "3 people and 2.5x zoom, version 1.2, 4 cars"),
    ("nothing happens", 2400, 1.0, "nothing happens"),
    ("", 10, 1.0, ""),
]


@pytest.mark.parametrize(("text", "offset", "scale", "expected"), REWRITE_CASES)
def test_rewrite_caption_times(text: str, offset: float, scale: float, expected: str) -> None:
    assert rewrite_caption_times(text, offset, scale=scale) == expected


def test_rewrite_is_single_pass() -> None:
    # a rewritten time is not rewritten again (40:15 must not become 80:15)
    once = rewrite_caption_times("00:15 and 20s", 2400)
    assert once == "40:15 and 40:20"
    assert rewrite_caption_times(once, 0) == once


@pytest.mark.parametrize(("seconds", "kwargs", "expected"), [
    (0, {}, "00:00"), (59.4, {}, "00:59"), (61, {}, "01:01"), (3599, {}, "59:59"), (3600, {}, "1:00:00"),
    (3723.5, {"frac_digits": 1}, "1:02:03.5"), (75, {"hours": True}, "00:01:15"), (4000, {"hours": False}, "66:40"),
    (12.25, {"frac_digits": 3, "hours": True}, "00:00:12.250"), (-3, {}, "00:00"),
])
def test_format_clock(seconds: float, kwargs: dict, expected: str) -> None:
    assert format_clock(seconds, **kwargs) == expected


def test_find_time_references() -> None:
    text = "A red square at 00:05, gone by 12.5s; again 01:02:03 and 3-4 seconds"
    assert [t for _s, _e, t in find_time_references(text)] == [5.0, 12.5, 3723.0, 3.0, 4.0]
    # a length of time is no citation; Qwen's line format and minutes are
    text = "visible for 15 seconds, 00:05 - 00:20: a dog; at 1m30s and 2 minutes"
    assert [t for _s, _e, t in find_time_references(text)] == [5.0, 20.0, 90.0, 120.0]


# ------------------------------------------------------------------------------------------------
# chapters


CHAPTER_TEXT = """Here are the chapters:
00:00 Intro
- 00:12 - 00:40: **Red square** appears
3. [1:05] Green circle.
From 80s to 90s: blue triangle
no time here
"""


def test_parse_chapters_lines() -> None:
    assert parse_chapters(CHAPTER_TEXT) == [
        (0.0, None, "Intro"), (12.0, 40.0, "Red square appears"), (65.0, None, "Green circle"),
        (80.0, 90.0, "blue triangle"),
    ]


@pytest.mark.parametrize("text", [
    '```json\n[{"start": "00:01", "title": "A"}, {"start": 5, "title": "B"}]\n```',
    'Sure! {"chapters": [{"start_time": "0:01", "chapter": "A"}, {"time": "5s", "name": "B"}]}',
    '[{"timestamp": [1, 3], "label": "A"}, {"timestamp": [5, 9], "label": "B"}]',
])
def test_parse_chapters_json(text: str) -> None:
    assert [(s, t) for s, _e, t in parse_chapters(text)] == [(1.0, "A"), (5.0, "B")]


# titles from a JSON answer are cleaned like titles of ``00:00 Title`` lines: one line, no markdown
JSON_TITLES = [
    ("Intro\n\nWelcome", "Intro Welcome"),
    ("**Q&A**", "Q&A"),
    ("  `code`  review\t", "code review"),
    ("\"Quoted title.\"", "Quoted title"),
    ("__Red__ square\r\nappears.", "Red square appears"),
    ("Wrap-up;", "Wrap-up"),
    ("plain", "plain"),
]


@pytest.mark.parametrize(("raw", "clean"), JSON_TITLES)
def test_parse_chapters_json_titles_are_cleaned(raw: str, clean: str) -> None:
    text = json.dumps({"chapters": [{"start": "00:00", "title": raw}, {"start": 70, "title": "End"}]})
    assert parse_chapters(text) == [(0.0, None, clean), (70.0, None, "End")]
    line = f"00:00 {raw}" if "\n" not in raw and "\r" not in raw else None  # the same title on a line
    if line is not None:
        assert parse_chapters(line) == [(0.0, None, clean)]


@pytest.mark.parametrize("fmt", ["youtube", "vtt"])
def test_chapter_titles_with_newlines_stay_one_line(fmt: str) -> None:
    # QA D7: a newline in a JSON title broke the VTT cue and left a YouTube line without a time
    answer = json.dumps([{"start": "00:00", "title": "Intro\n\nWelcome"}, {"start": "01:10", "title": "**Q&A**"}])
    out = format_chapters(normalize_chapters(parse_chapters(answer), 300), fmt)
    if fmt == "youtube":
        assert out.splitlines() == ["00:00 Intro Welcome", "01:10 Q&A"]
    else:
        cues = [b.splitlines() for b in out.strip().split("\n\n")[1:]]
        assert cues == [["Chapter 1", "00:00:00.000 --> 00:01:10.000", "Intro Welcome"],
                        ["Chapter 2", "00:01:10.000 --> 00:05:00.000", "Q&A"]]
    # a Chapter built by hand is written on one line too
    from vidline.understand.chapters import Chapter

    raw = format_chapters([Chapter(0.0, 10.0, "a\nb"), Chapter(10.0, 20.0, "c")], fmt)
    assert "a b" in raw and "a\n" not in raw


def test_normalize_chapters_youtube_rules() -> None:
    raw = [(12.0, None, "Red"), (3.0, None, "Intro"), (14.0, None, "too short"), (40.0, None, "Green"),
           (41.0, None, "Green"), (95.0, None, "tail too short")]
    ch = normalize_chapters(raw, 100.0, min_length=10)
    assert [(c.start, c.end, c.title) for c in ch] == [(0.0, 12.0, "Intro"), (12.0, 40.0, "Red"), (40.0, 100.0, "Green")]
    assert normalize_chapters([], 30.0)[0].start == 0.0 and normalize_chapters([], 30.0)[0].end == 30.0


def test_chapter_formats() -> None:
    ch = chapters_from_text(CHAPTER_TEXT, 100.0, min_length=5)
    yt = format_chapters(ch, "youtube").splitlines()
    assert yt == ["00:00 Intro", "00:12 Red square appears", "01:05 Green circle", "01:20 blue triangle"]
    vtt = format_chapters(ch, "vtt")
    assert vtt.startswith("WEBVTT\n\n")
    cues = [b.splitlines() for b in vtt.strip().split("\n\n")[1:]]
    assert cues[0][1] == "00:00:00.000 --> 00:00:12.000" and cues[0][2] == "Intro"
    assert cues[-1][1] == "00:01:20.000 --> 00:01:40.000"
    data = json.loads(format_chapters(ch, "json"))
    assert data[0] == {"start": 0.0, "end": 12.0, "title": "Intro"}
    assert all(a["end"] == b["start"] for a, b in zip(data, data[1:], strict=False))
    long = normalize_chapters([(0, None, "a"), (4000, None, "b")], 7200)
    assert format_chapters(long, "youtube").splitlines() == ["0:00:00 a", "1:06:40 b"]


# ------------------------------------------------------------------------------------------------
# single vs map-reduce


def _video(duration: float, w: int = 320, h: int = 240, fps: float = 30.0) -> MediaInput:
    return MediaInput("v.mp4", "video", w, h, duration, fps)


@pytest.mark.parametrize(("duration", "expected"), [(4, "single"), (60, "single"), (300, "single"),
                                                    (599, "single"), (601, "map-reduce"), (3600, "map-reduce")])
def test_plan_path_by_duration(duration: float, expected: str) -> None:
    plan = plan_ask([_video(duration)], AskLimits())
    assert plan.path == expected
    if expected == "single":
        sp = plan.inputs[0].sampling
        assert sp is not None and sp.fps >= 0.5 and sp.n_frames <= 768 and sp.tokens <= 24576
        assert plan.n_requests == 1
    else:
        windows = plan.inputs[0].windows
        assert windows[0].start == 0 and windows[-1].end == pytest.approx(duration)
        assert all(w.duration <= 120 + 1e-6 for w in windows)
        assert all(a.end == pytest.approx(b.start) for a, b in zip(windows, windows[1:], strict=False))
        assert plan.n_requests == len(windows) + 1


@pytest.mark.parametrize(("flavour", "mode"), [("vllm", "video"), ("dashscope", "video"), ("vllm", "frames")])
@pytest.mark.parametrize("duration", [120, 300, 599])
def test_plan_hd_video_shrinks_frames_into_one_request(flavour: str, mode: str, duration: float) -> None:
    # a 720p video up to 10 min is one request (frames at Qwen's minimum size, > 0.5 fps), as the docs
    # say; it went map-reduce (~300 s for a 5-min video) when only the total-pixel share shrank frames
    payload = AskPayload(flavour, mode)  # type: ignore[arg-type]
    limits = AskLimits.for_backend("dashscope" if flavour == "dashscope" else "openai", mode)
    plan = plan_ask([_video(duration, 1280, 720, 25.0)], limits, payload=payload)
    assert plan.path == "single", plan.reason
    sp = plan.inputs[0].sampling
    assert sp is not None and sp.fps >= 0.5 and plan.inputs[0].visual_tokens <= 24576
    assert sp.width * sp.height < 2 * 128 * 28 * 28  # shrunk from 1008x560


def test_plan_token_budget_forces_map_reduce() -> None:
    # 200 s needs >= 100 frames at 0.5 fps; at Qwen's minimum frame size that is >= 50 * 140 tokens
    assert plan_ask([_video(200)], AskLimits(max_visual_tokens=4000)).path == "map-reduce"
    assert plan_ask([_video(200)], AskLimits(max_visual_tokens=8000)).path == "single"


def test_plan_dashscope_frame_limit() -> None:
    limits = AskLimits.for_backend("dashscope", "frames")
    assert limits.max_frames == 512
    plan = plan_ask([_video(500)], limits)
    assert plan.inputs[0].sampling is not None and plan.inputs[0].sampling.n_frames <= 512


def test_plan_images_and_forcing() -> None:
    img = MediaInput("a.png", "image", 640, 480)
    plan = plan_ask([img, img])
    assert plan.path == "single"
    assert plan.inputs[0].image_size == image_size_for(480, 640)
    forced = plan_ask([_video(10), img], AskLimits(window=4), strategy="map-reduce")
    assert forced.path == "map-reduce" and len(forced.inputs[0].windows) == 3 and forced.inputs[1].image_size
    assert plan_ask([_video(3600)], strategy="single").path == "single"


PAYLOADS = [("vllm", "video"), ("vllm", "frames"), ("generic", "video"), ("generic", "frames"),
            ("dashscope", "video"), ("dashscope", "frames"), ("dashscope-compat", "video"),
            ("dashscope-compat", "frames")]


@pytest.mark.parametrize("duration", [20, 300, 599, 1800])
@pytest.mark.parametrize(("flavour", "mode"), PAYLOADS)
def test_plan_counts_tokens_as_the_payload_sends_them(flavour: str, mode: str, duration: float) -> None:
    # the fit test, the frame budget, the caption windows and the estimates all count each video the
    # way it will be sent (a generic server's image list costs twice a video's tokens)
    payload = AskPayload(flavour, mode)  # type: ignore[arg-type]
    limits = AskLimits.for_backend("dashscope" if flavour == "dashscope" else "openai", mode)
    item = _video(duration)
    plan = plan_ask([item], limits, payload=payload)
    assert plan.payload == payload and not plan.note
    ip = plan.inputs[0]

    def as_sent(sp):  # noqa: ANN001, ANN202
        return estimate_video_part_tokens(sp.n_frames, sp.height, sp.width, flavour, mode, EncodeOptions())  # type: ignore[arg-type]

    def resampled(start, end):  # noqa: ANN001, ANN202 - what the sampler plans from the input plan's budget
        assert ip.budget is not None
        return plan_sampling(start, end, ip.budget, src_width=item.width, src_height=item.height, src_fps=item.fps)

    if plan.path == "single":
        sp = ip.sampling
        assert sp is not None and sp.fps >= 0.5
        assert ip.visual_tokens == as_sent(sp) <= limits.max_visual_tokens
        assert resampled(0.0, duration) == sp
        assert plan.to_dict()["inputs"][0]["tokens"] == ip.visual_tokens
    else:
        assert ip.window_tokens and len(ip.window_tokens) == len(ip.windows)
        for w, wp, tokens in zip(ip.windows, ip.window_plans, ip.window_tokens, strict=True):
            assert tokens == as_sent(wp) <= limits.max_visual_tokens
            assert resampled(w.start, w.end) == wp
        assert ip.caption_tokens == sum(ip.window_tokens) + 80 * len(ip.windows)


def test_plan_generic_image_list_needs_map_reduce_where_a_video_fits() -> None:
    # 360 s at >= 0.5 fps: 180 frames at Qwen's smallest size fit 24576 tokens as a video (90 x 140),
    # not as 180 images of 140 tokens (+ markers and the time written beside each)
    item = _video(360)
    assert plan_ask([item], payload=AskPayload("vllm", "video")).path == "single"
    generic = plan_ask([item], payload=AskPayload("generic", "frames"))
    assert generic.path == "map-reduce" and "26460 tokens" in generic.reason
    # a shorter one fits, with its frames sized for images: never over the budget as sent
    fits = plan_ask([_video(170)], payload=AskPayload("generic", "frames"))
    sp = fits.inputs[0].sampling
    assert fits.path == "single" and sp is not None
    assert fits.inputs[0].visual_tokens == sp.n_frames * ((sp.height // 28) * (sp.width // 28) + 2 + 5) <= 24576
    assert plan_ask([_video(170)], payload=AskPayload("vllm", "video")).inputs[0].sampling != sp


def test_plan_says_when_the_server_flavour_is_assumed() -> None:
    assumed = plan_ask([_video(60)])
    assert assumed.payload.assumed and assumed.payload.flavour == "vllm" and assumed.payload.mode == "video"
    text = assumed.to_text()
    assert "payload: vllm server, video mode (assumed)" in text and "--server" in text and "--mode" in text
    doc = assumed.to_dict()
    assert (doc["server"], doc["mode"], doc["server_assumed"]) == ("vllm", "video", True) and "--server" in doc["note"]
    known = plan_ask([_video(60)], payload=AskPayload("generic", "frames"))
    assert "assumed" not in known.to_text() and known.to_dict()["note"] is None


@pytest.mark.parametrize(("config", "expected"), [
    (None, ("vllm", "video", True)),
    (ModelConfig("openai", base_url="http://10.0.0.1:8000/v1"), ("vllm", "video", True)),
    (ModelConfig("openai", base_url="http://10.0.0.1:8000/v1", mode="frames"), ("vllm", "frames", True)),
    (ModelConfig("openai", base_url="http://10.0.0.1:8000/v1", server="generic"), ("generic", "frames", False)),
    (ModelConfig("openai", base_url="http://10.0.0.1:8000/v1", server="vllm"), ("vllm", "video", False)),
    (ModelConfig("openai", base_url="https://dashscope.aliyuncs.com/compatible-mode/v1"),
     ("dashscope-compat", "video", False)),
    (ModelConfig("dashscope", api_key="sk-x"), ("dashscope", "frames", False)),
])
def test_payload_known_without_contacting_the_server(config: ModelConfig | None,
                                                     expected: tuple[str, str, bool]) -> None:
    p = AskPayload.for_config(config)
    assert (p.flavour, p.mode, p.assumed) == expected


# ------------------------------------------------------------------------------------------------
# streaming with restarts


def _scripted(attempts: list[tuple[list[str], BaseException | None]]):  # noqa: ANN202
    it = iter(attempts)
    calls = []

    def attempt() -> Iterator[str]:
        chunks, exc = next(it)
        calls.append(1)
        yield from chunks
        if exc is not None:
            raise exc

    return attempt, calls


def _drop() -> ServerUnreachableError:
    return ServerUnreachableError("stream dropped after 5 characters")


def test_stream_resumes_without_duplicates() -> None:
    attempt, calls = _scripted([(["The red ", "squ"], _drop()), (["The red square", " is at 00:01."], None)])
    s = AnswerStream(attempt, sleep=lambda _d: None)
    chunks = list(s)
    assert "".join(chunks) == "The red square is at 00:01."
    assert s.complete and s.text == "The red square is at 00:01." and s.restarts == 1 and len(calls) == 2


def test_stream_divergent_retry_restarts_or_fails() -> None:
    attempt, _ = _scripted([(["Hello"], _drop()), (["Bye", " now"], None)])
    with pytest.raises(IncompleteAnswerError) as info:
        list(AnswerStream(attempt, sleep=lambda _d: None))
    assert info.value.partial == "Hello"
    attempt, _ = _scripted([(["Hello"], _drop()), (["Bye", " now"], None)])
    restarted: list[str] = []
    s = AnswerStream(attempt, sleep=lambda _d: None, on_restart=restarted.append)
    out = list(s)
    assert restarted == ["Hello"] and out[0] == "Hello" and "".join(out[1:]) == "Bye now" and s.text == "Bye now"


def test_stream_exhausted_is_incomplete() -> None:
    attempt, calls = _scripted([(["partial"], ServerError("boom", status=502))] * 3)
    s = AnswerStream(attempt, retry=RetryPolicy(max_retries=2), sleep=lambda _d: None)
    got: list[str] = []
    with pytest.raises(IncompleteAnswerError, match="incomplete") as info:
        for c in s:
            got.append(c)
    assert got == ["partial"] and info.value.partial == "partial" and not s.complete and s.text is None
    assert len(calls) == 3


def test_stream_auth_error_is_not_retried() -> None:
    attempt, calls = _scripted([([], AuthenticationError("bad key", status=401))])
    with pytest.raises(AuthenticationError):
        list(AnswerStream(attempt, sleep=lambda _d: None))
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------------
# the engine, with a fake backend that looks at the frames


MARKERS = (Marker("red square", 1.0, 3.0), Marker("green circle", 4.0, 6.0), Marker("blue triangle", 7.0, 9.0))


@pytest.fixture(scope="module")
def marker_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("understand") / "markers.mp4"
    make_video(path, duration=10.0, fps=10, size=(160, 120), markers=MARKERS)
    return path


class LookingBackend(Backend):
    """Captions: one line per frame, '<clip-relative seconds>s: <labels seen>'. Final: echoes its input."""

    name = "fake"

    def __init__(self, config: ModelConfig, fail_windows: set[float] | None = None) -> None:
        super().__init__(config)
        self.requests: list[ChatRequest] = []
        self.fail_windows = fail_windows or set()
        self.lock = threading.Lock()

    def chat(self, request: ChatRequest) -> ChatResponse:
        with self.lock:
            self.requests.append(request)
        if request.videos and len(request.videos) == 1 and request.videos[0].origin in self.fail_windows:
            raise ServerError("server error (HTTP 500)", status=500)
        lines = []
        for v in request.videos:
            for f in v.frames:
                lines.append(f"{f.t - v.origin:.1f}s: {', '.join(detect_markers(f.image)) or 'nothing'}")
        images = [p for p in request.parts if isinstance(p, ImagePart)]
        for i, p in enumerate(images):
            lines.append(f"image {i}: {np.asarray(p.image).shape}")
        if not request.videos:
            lines.append("FINAL " + request.text)
        return ChatResponse("\n".join(lines), Usage(100, 10), "fake")

    def chat_stream(self, request: ChatRequest) -> Iterator[str]:
        text = self.chat(request).text
        for i in range(0, len(text), 7):
            yield text[i : i + 7]

    def list_models(self) -> list[str]:
        return ["fake"]

    def estimate_tokens(self, request: ChatRequest) -> int:
        return 0

    def build(self, request: ChatRequest) -> BuiltPayload:
        return BuiltPayload(messages=[])


CFG = ModelConfig(backend="openai", base_url="http://127.0.0.1:9", model="fake")


def _caption_times(answer_text: str, label: str) -> list[float]:
    """Absolute times (MM:SS.s) of caption lines that mention ``label`` in the final request echo."""
    out = []
    for line in answer_text.splitlines():
        if label in line:
            refs = find_time_references(line)
            if refs:
                out.append(refs[0][2])
    return out


def test_map_reduce_captions_are_absolute_and_cached(marker_video: Path, tmp_path: Path) -> None:
    backend = LookingBackend(CFG)
    answer = ask(marker_video, "which shapes appear and when?", config=CFG, backend=backend, strategy="map-reduce",
                 window=2.5, caption_fps=2, cache=tmp_path / "cache")
    assert isinstance(answer, Answer) and answer.path == "map-reduce"
    assert len(answer.captions) == 4 and len(backend.requests) == 5
    # every caption line names what the frame showed at that ABSOLUTE time (ground truth: MARKERS)
    for m in MARKERS:
        times = _caption_times(answer, m.label)
        assert times, m.label
        assert all(m.start - 0.05 <= t < m.end + 0.05 for t in times), (m.label, times)
    # the windows starting later than 0 really were offset (else blue at 7-9 s would be cited < 2.5 s)
    assert min(_caption_times(answer, "blue triangle")) >= 7.0 - 0.05
    assert answer.usage == Usage(500, 50)
    # a second run answers every caption from the cache: only the final request is sent
    again = LookingBackend(CFG)
    answer2 = ask(marker_video, "which shapes appear and when?", config=CFG, backend=again, strategy="map-reduce",
                  window=2.5, caption_fps=2, cache=tmp_path / "cache")
    assert len(again.requests) == 1 and [c.status for c in answer2.captions] == ["cached"] * 4
    # ... and a different question re-uses the same captions
    third = LookingBackend(CFG)
    ask(marker_video, "anything green?", config=CFG, backend=third, strategy="map-reduce", window=2.5,
        caption_fps=2, cache=tmp_path / "cache", lang="zh")
    assert len(third.requests) == 1


def test_failed_windows_fail_the_answer_then_resume(marker_video: Path, tmp_path: Path) -> None:
    backend = LookingBackend(CFG, fail_windows={5.0})
    with pytest.raises(MapStepError, match="1 of 4 caption windows failed"):
        ask(marker_video, "q?", config=CFG, backend=backend, strategy="map-reduce", window=2.5, caption_fps=2,
            cache=tmp_path / "c")
    assert not any(not r.videos for r in backend.requests)  # no final request was sent
    healed = LookingBackend(CFG)
    answer = ask(marker_video, "q?", config=CFG, backend=healed, strategy="map-reduce", window=2.5, caption_fps=2,
                 cache=tmp_path / "c")
    assert [c.status for c in answer.captions] == ["cached", "cached", "ok", "cached"]
    assert len(healed.requests) == 2  # the failed window + the final request


def test_single_request_with_images(marker_video: Path, tmp_path: Path) -> None:
    img_path = tmp_path / "still.png"
    Image.fromarray(np.full((300, 500, 3), 128, np.uint8)).save(img_path)
    backend = LookingBackend(CFG)
    answer = ask([marker_video, img_path], "compare", config=CFG, backend=backend, cache=False)
    assert answer.path == "single" and len(backend.requests) == 1
    req = backend.requests[0]
    assert len(req.videos) == 1 and req.videos[0].fps >= 0.5
    frames_t = [f.t for f in req.videos[0].frames]
    assert frames_t[0] < 0.6 and frames_t[-1] > 9.0  # the whole video
    imgs = [p for p in req.parts if isinstance(p, ImagePart)]
    assert len(imgs) == 1 and np.asarray(imgs[0].image).shape[:2] == image_size_for(300, 500)


def test_stream_api_and_answer_html(marker_video: Path) -> None:
    backend = LookingBackend(CFG)
    s = ask(marker_video, "which shapes?", config=CFG, backend=backend, stream=True, cache=False)
    chunks = list(s)
    assert len(chunks) > 3 and s.answer is not None and s.answer.text == "".join(chunks)
    assert s.answer.path == "single" and s.answer.usage is None or isinstance(s.answer.usage, Usage)


def test_answer_html_links_times(marker_video: Path) -> None:
    plan = dry_run(marker_video, "q", config=CFG)
    answer = Answer("The red square is visible 00:01-00:03, the green circle at 00:04 & <b>.", question="q",
                    inputs=[str(marker_video)], plan=plan)
    html = answer._repr_html_()
    assert html.count("<a ") == 3 and "#t=1" in html and "#t=3" in html and "#t=4" in html
    assert "&lt;b&gt;" in html and "<b>.</b>" not in html
    assert answer.citations == [1.0, 3.0, 4.0]
    assert isinstance(answer, str) and answer.startswith("The red square")


def test_dry_run_contacts_nothing(marker_video: Path) -> None:
    plan = dry_run(marker_video, "q", config=CFG)
    assert plan.path == "single" and plan.estimated_tokens > 0
    plan = dry_run(marker_video, "q", config=CFG, window=3, strategy="map-reduce")
    assert plan.path == "map-reduce" and plan.n_requests == 1 + len(plan.inputs[0].windows)


# ------------------------------------------------------------------------------------------------
# against the reference server (real openai / dashscope SDKs, real streaming)

from tests.refserver import RefServer  # noqa: E402

TOL_SINGLE = 0.6  # the server samples at 2 fps in one request
TOL_MAP = 0.7  # caption windows of 2.5 s at 1.6 fps


def _config(server: RefServer, api: str, **kw: object) -> ModelConfig:
    url = server.openai_base_url if api == "openai" else server.dashscope_base_url
    return ModelConfig(backend=api, base_url=url, api_key="sk-test", model="qwen2.5-vl-ref",  # type: ignore[arg-type]
                       retry=RetryPolicy(max_retries=2, backoff_base=0.01), **kw)  # type: ignore[arg-type]


def assert_citations_match_truth(text: str, markers: tuple[Marker, ...], tol: float) -> None:
    """Every sentence that names a marker cites times inside that marker's real interval (+- tol), and
    every marker is cited from (about) its real start to its real end."""
    cited: dict[str, list[float]] = {m.label: [] for m in markers}
    for sentence in text.replace("。", ".\n").replace(". ", ".\n").splitlines():
        for m in markers:
            if m.label in sentence:
                times = [t for _s, _e, t in find_time_references(sentence)]
                assert times, sentence
                for t in times:
                    assert m.start - tol <= t <= m.end + tol, (m.label, t, sentence)
                cited[m.label] += times
    for m in markers:
        assert cited[m.label], f"{m.label} not cited in {text!r}"
        assert abs(min(cited[m.label]) - m.start) <= tol and abs(max(cited[m.label]) - m.end) <= tol, (m, cited)


def _generations(server: RefServer, n: int = 1) -> list:  # noqa: ANN202
    """Generation requests the server logged (it logs just after answering: wait for ``n`` of them)."""
    import time

    deadline = time.monotonic() + 3.0
    while True:
        gens = [r for r in server.requests if r.api in ("openai", "dashscope", "compat") and r.status]
        if len(gens) >= n or time.monotonic() > deadline:
            return gens
        time.sleep(0.02)


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_refserver_single_request(refserver: RefServer, marker_video: Path, api: str) -> None:
    answer = ask(marker_video, "which shapes appear and when?", config=_config(refserver, api), cache=False)
    assert isinstance(answer, Answer) and answer.path == "single" and answer.complete
    gens = _generations(refserver)
    assert len(gens) == 1 and gens[0].kind == "freeform" and not gens[0].stream
    assert_citations_match_truth(answer, MARKERS, TOL_SINGLE)
    assert answer.usage is not None and answer.usage.prompt_tokens == gens[0].prompt_tokens


@pytest.mark.parametrize(("api", "server", "mode", "flavour", "media"), [
    ("openai", "auto", None, "generic", "openai.image_url"),  # the reference server is no vLLM (owned_by)
    ("openai", "generic", "video", "generic", "openai.video_url.mp4"),
    ("openai", "vllm", None, "vllm", "openai.video_url.mp4"),
    ("openai", "vllm", "frames", "vllm", "openai.video_url.jpeg_list"),
    ("dashscope", "auto", None, "dashscope", "dashscope.video_list"),
    ("dashscope", "auto", "video", "dashscope", "dashscope.video_mp4"),
    ("compat", "auto", None, "dashscope-compat", "openai.video_url.mp4"),
    ("compat", "auto", "frames", "dashscope-compat", "openai.video"),
])
def test_refserver_estimate_is_what_the_server_counts(refserver: RefServer, marker_video: Path, api: str,
                                                     server: str, mode: str | None, flavour: str, media: str) -> None:
    # the server is identified before planning (one GET /v1/models when the flavour is open), so the
    # plan, and the estimate ask --json reports, count the payload really sent
    url = {"openai": refserver.openai_base_url, "dashscope": refserver.dashscope_base_url,
           "compat": refserver.compat_base_url}[api]
    cfg = ModelConfig(backend="dashscope" if api == "dashscope" else "openai", base_url=url, api_key="sk-test",
                      model="qwen2.5-vl-ref", server=server, mode=mode,  # type: ignore[arg-type]
                      retry=RetryPolicy(max_retries=1, backoff_base=0.01))
    answer = ask(marker_video, "which shapes appear and when?", config=cfg, cache=False)
    assert isinstance(answer, Answer) and answer.path == "single" and answer.plan is not None
    gens = _generations(refserver)
    assert len(gens) == 1 and set(gens[0].media) == {media}
    payload = answer.plan.payload
    assert payload.flavour == flavour and not payload.assumed
    sp = answer.plan.inputs[0].sampling
    assert sp is not None and (gens[0].n_frames or gens[0].n_images) == sp.n_frames
    # visual tokens as the server counts them, plus its vision markers and (image lists) the time labels
    labels = sum(5 for _ in range(gens[0].n_images))
    assert answer.plan.inputs[0].visual_tokens == gens[0].visual_tokens + 2 * len(gens[0].media) + labels
    estimated, used = answer.to_dict()["estimated_tokens"], answer.usage.prompt_tokens  # type: ignore[union-attr]
    assert abs(estimated - used) <= 0.03 * used, (estimated, used)
    # one GET /v1/models to identify an open flavour, or (vLLM, and servers like it) to read its context
    # length; none for DashScope
    models = [r for r in refserver.requests if r.api == "models"]
    assert len(models) == (1 if api == "openai" else 0)


def test_refserver_generic_budget_is_kept_as_sent(refserver: RefServer, marker_video: Path) -> None:
    # 10 s at >= 0.5 fps: 6 frames of 130 tokens fit 600 as a video (390) but not as images (822):
    # a generic server gets captions instead, each within the budget as it really counts them
    cfg = _config(refserver, "openai")
    assert dry_run(marker_video, "q", config=cfg, max_visual_tokens=600).path == "single"  # assumed vLLM
    assert dry_run(marker_video, "q", config=cfg.with_(server="generic"), max_visual_tokens=600).path == "map-reduce"
    answer = ask(marker_video, "which shapes appear and when?", config=cfg, max_visual_tokens=600, cache=False)
    assert answer.path == "map-reduce" and answer.plan is not None and answer.plan.payload.flavour == "generic"
    gens = _generations(refserver, 2)
    assert gens[0].media and all(m == "openai.image_url" for m in gens[0].media)
    assert all(g.visual_tokens + 2 * len(g.media) <= 600 for g in gens)
    assert_citations_match_truth(answer, MARKERS, 2.0)


def test_refserver_map_reduce_and_cache(refserver: RefServer, marker_video: Path, tmp_path: Path) -> None:
    cfg = _config(refserver, "openai")
    kw = {"config": cfg, "strategy": "map-reduce", "window": 2.5, "caption_fps": 2.0, "cache": tmp_path}
    answer = ask(marker_video, "which shapes appear and when?", **kw)  # type: ignore[arg-type]
    assert answer.path == "map-reduce" and len(answer.captions) == 4
    gens = _generations(refserver, 5)
    assert [g.kind for g in gens] == ["freeform"] * 4 + ["text"]
    # the final request saw absolute times: the blue triangle (7-9 s) lives in the 4th window (7.5-10 s)
    final_prompt = gens[-1].prompt
    assert "00:07.5" in final_prompt and "blue triangle" in final_prompt
    assert_citations_match_truth(answer, MARKERS, TOL_MAP)
    refserver.reset()
    again = ask(marker_video, "which shapes appear and when?", **kw)  # type: ignore[arg-type]
    assert len(_generations(refserver)) == 1 and {c.status for c in again.captions} == {"cached"}
    assert str(again) == str(answer)


def test_refserver_auto_map_reduce_when_over_budget(refserver: RefServer, marker_video: Path) -> None:
    cfg = _config(refserver, "dashscope")
    # 10 s at >= 0.5 fps needs >= 6 frames = 420 tokens at Qwen's smallest frame size: over 300
    plan = dry_run(marker_video, "q", config=cfg, max_visual_tokens=300)
    assert plan.path == "map-reduce" and "tokens" in plan.reason
    answer = ask(marker_video, "which shapes appear and when?", config=cfg, max_visual_tokens=300, window=2.5,
                 caption_fps=2.0, cache=False)
    assert answer.path == "map-reduce"
    assert ask(marker_video, "q", config=cfg, max_visual_tokens=600, cache=False).path == "single"
    assert_citations_match_truth(answer, MARKERS, TOL_MAP)


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_refserver_streaming(refserver: RefServer, marker_video: Path, api: str) -> None:
    s = ask(marker_video, "which shapes appear and when?", config=_config(refserver, api), stream=True, cache=False)
    chunks = list(s)
    assert len(chunks) > 3  # really incremental
    gens = _generations(refserver)
    assert len(gens) == 1 and gens[0].stream and gens[0].chunks_sent >= len(chunks)
    if api == "dashscope":
        assert gens[0].api == "dashscope"  # the native SSE path, not compatible mode
    assert s.complete and s.answer is not None and s.answer.text == "".join(chunks) == gens[0].answer
    assert_citations_match_truth("".join(chunks), MARKERS, TOL_SINGLE)
    assert s.answer.usage is not None and s.answer.usage.completion_tokens > 0


@pytest.mark.parametrize("api", ["openai", "dashscope"])
@pytest.mark.parametrize(("fault", "recorded"), [("drop_stream_after", "dropped"),
                                                 ("stream_error_after", "stream_error")])  # vLLM's error event
def test_refserver_dropped_stream_is_retried_without_duplicates(refserver: RefServer, marker_video: Path,
                                                                api: str, fault: str, recorded: str) -> None:
    expected = str(ask(marker_video, "which shapes appear and when?", config=_config(refserver, api), cache=False))
    refserver.reset()
    refserver.configure(**{fault: 3})
    retries: list[int] = []

    def heal(n: int, _exc: BaseException) -> None:
        retries.append(n)
        refserver.configure(**{fault: None})

    s = ask(marker_video, "which shapes appear and when?", config=_config(refserver, api), stream=True, cache=False,
            on_retry=heal)
    text = "".join(s)
    assert retries == [1] and text == expected and s.complete
    gens = _generations(refserver, 2)
    assert [g.fault for g in gens] == [recorded, None]


def test_refserver_dropped_stream_exhausted_is_incomplete(refserver: RefServer, marker_video: Path) -> None:
    refserver.configure(drop_stream_after=3)
    s = ask(marker_video, "which shapes appear and when?", config=_config(refserver, "openai"), stream=True,
            cache=False)
    got: list[str] = []
    with pytest.raises(IncompleteAnswerError, match="incomplete") as info:
        for chunk in s:
            got.append(chunk)
    assert got and info.value.partial == "".join(got) and not s.complete and s.answer is None
    assert len(_generations(refserver, 3)) == 3  # 1 + max_retries=2, all dropped


@pytest.mark.parametrize("api", ["openai", "dashscope"])
def test_refserver_several_images(refserver: RefServer, tmp_path: Path, api: str) -> None:
    from vidline.synth import render_frame

    paths = []
    for i, label in enumerate(["red square", "green circle"]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(render_frame(0.0, 300 + 20 * i, 200, [Marker(label, 0, 1)])).save(p)
        paths.append(p)
    answer = ask(paths, "what does each image show?", config=_config(refserver, api), cache=False)
    gens = _generations(refserver)
    assert len(gens) == 1 and gens[0].n_images == 2 and gens[0].n_frames == 0
    media = " ".join(gens[0].media)
    assert ("image_url" in media) if api == "openai" else ("image" in media)
    assert gens[0].image_tokens == sum(
        (h // 28) * (w // 28) for h, w in (image_size_for(200, 300), image_size_for(200, 320)))
    # the server describes what it saw in each image (in order)
    assert 0 <= answer.find("red square") < answer.find("green circle")


def test_refserver_chinese_question_and_lang(refserver: RefServer, marker_video: Path) -> None:
    answer = ask(marker_video, "请描述下视频内容", config=_config(refserver, "dashscope"), lang="zh", cache=False)
    gen = _generations(refserver)[0]
    assert gen.system and "Chinese" in gen.system
    assert "可以看到" in answer
    assert_citations_match_truth(answer, MARKERS, TOL_SINGLE)


def test_refserver_describe_and_chapters(refserver: RefServer, marker_video: Path) -> None:
    import vidline

    text = vidline.describe(marker_video, config=_config(refserver, "openai"), cache=False)
    assert_citations_match_truth(str(text), MARKERS, TOL_SINGLE)
    for _ in range(3):  # the server rotates its answer style (JSON, fenced JSON, mm:ss lines, SRT lines)
        marks = vidline.chapters(marker_video, config=_config(refserver, "openai"), cache=False)
        assert marks[0].start == 0.0 and marks[-1].end == pytest.approx(10.0, abs=0.2)
        assert [c.title for c in marks] == [m.label for m in MARKERS]
        for c, m in zip(marks[1:], MARKERS[1:], strict=True):
            assert abs(c.start - m.start) <= TOL_SINGLE
        assert all(a.end == b.start for a, b in zip(marks, marks[1:], strict=False))


def test_caption_windows_run_concurrently(marker_video: Path) -> None:
    barrier = threading.Barrier(3, timeout=10)  # passes only when 3 caption requests are in flight at once

    class Concurrent(LookingBackend):
        def chat(self, request: ChatRequest) -> ChatResponse:
            if request.videos:
                barrier.wait()
            return super().chat(request)

    backend = Concurrent(CFG)
    answer = ask(marker_video, "q", config=CFG, backend=backend, strategy="map-reduce", window=3.4, caption_fps=2,
                 concurrency=3, cache=False)
    assert [c.status for c in answer.captions] == ["ok"] * 3 and not barrier.broken


@pytest.mark.parametrize("stream", [False, True])
def test_refserver_vllm_own_clock_answers_in_real_seconds(
    refserver: RefServer, marker_video: Path, stream: bool
) -> None:
    # vLLM without --trust-request-mm-kwargs: vidline retimes the clip to 0.5 s spacing (here 8 frames
    # over 10 s, so the server's clock runs 2.5x fast) and must scale the answer's times back
    refserver.configure(trust_mm_kwargs=False)
    cfg = _config(refserver, "openai").with_(server="vllm", mode="video")
    result = ask(marker_video, "which shapes appear and when?", config=cfg, stream=stream, max_frames=8,
                 cache=False)
    text = "".join(result) if stream else str(result)
    assert getattr(result, "complete", True)
    served = [g for g in _generations(refserver, 2) if g.status == 200]
    assert served and max(served[-1].frame_times) < 4.0  # the server really saw a compressed clock
    assert_citations_match_truth(text, MARKERS, 1.3)  # 1.25 s between frames


def test_describe_and_chapters_take_one_video(marker_video: Path, tmp_path: Path) -> None:
    """Wrong inputs are one-line ConfigErrors before any request (a list was a TypeError, an image gave a
    0-0 s chapter, a negative min_length was accepted)."""
    from vidline.understand import chapters, describe

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    with pytest.raises(ConfigError, match="one video path"):
        describe([marker_video, marker_video], config=CFG)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a video"):
        chapters(image, config=CFG)
    with pytest.raises(ConfigError, match="min_length"):
        chapters(marker_video, config=CFG, min_length=-1)


def test_refserver_ask_fits_the_servers_context(refserver: RefServer, tmp_path: Path) -> None:
    """vLLM says its context (``max_model_len`` in GET /v1/models): a request planned at ~17k tokens
    for a 12k-token server is planned within it instead (it was refused: 'Input length exceeds the
    model's maximum context length')."""
    video = make_video(tmp_path / "two-min.mp4", duration=120.0, fps=5, size=(320, 240), markers=MARKERS)
    config = _config(refserver, "openai").with_(server="vllm")
    roomy = ask(video, "which shapes appear and when?", config=config, cache=False)  # a 32k server
    assert roomy.usage is not None and roomy.usage.prompt_tokens > 12000
    refserver.configure(context_limit=12000)
    answer = ask(video, "which shapes appear and when?", config=config, cache=False)
    assert _generations(refserver, 2)[-1].status == 200 and answer.usage is not None
    assert answer.usage.prompt_tokens + config.max_tokens <= 12000
    # a long question, and a long system prompt, take their share of the context too (a fixed 512
    # tokens were kept for text: a 1,500-token question was refused after the video was decoded)
    long_question = "which shapes appear and when? " + "Describe every detail of each frame. " * 150
    for cfg, question in ((config, long_question), (config.with_(system_prompt=long_question), "which shapes?")):
        answer = ask(video, question, config=cfg, cache=False)
        assert _generations(refserver)[-1].status == 200
        assert answer.usage is not None and answer.usage.prompt_tokens + config.max_tokens <= 12000
    with pytest.raises(ConfigError, match="leave no room for the video"):
        ask(video, "why? " * 12000, config=config, cache=False)


@pytest.mark.parametrize("api", ["openai", "dashscope"])
@pytest.mark.parametrize("source_fps", [25.0, 29.97])
def test_refserver_streams_a_camera_rate_video(refserver: RefServer, tmp_path: Path, api: str,
                                               source_fps: float) -> None:
    # frames sampled from a 25 / 29.97 fps source sit a little off the grid the server is told: that
    # jitter once counted as a time scale, and the whole answer came as one chunk at the end
    markers = (Marker("red square", 2.0, 5.0), Marker("green circle", 8.0, 11.0))
    video = make_video(tmp_path / "cam.mp4", duration=14.0, fps=source_fps, size=(160, 120), markers=markers)
    cfg = _config(refserver, api).with_(server="vllm") if api == "openai" else _config(refserver, api)
    s = ask(video, "which shapes appear and when?", config=cfg, stream=True, cache=False)
    chunks = list(s)
    assert len(chunks) > 3, chunks
    assert_citations_match_truth("".join(chunks), markers, TOL_SINGLE)


def _two_rates(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[float, float]]]:
    # one long video (sampled below 2 fps in one request) and one short (at 2 fps): different rates
    long = make_video(tmp_path / "long.mp4", duration=300.0, fps=2, size=(112, 84),
                      markers=[Marker("red square", 200.0, 215.0)])
    short = make_video(tmp_path / "short.mp4", duration=20.0, fps=4, size=(112, 84),
                       markers=[Marker("green circle", 8.0, 11.5)])
    return long, short, {"red square": (200.0, 215.0), "green circle": (8.0, 11.5)}


def _cited(text: str, label: str) -> list[float]:
    lines = [ln for ln in text.replace(". ", ".\n").splitlines() if label in ln]
    return [t for ln in lines for _s, _e, t in find_time_references(ln)]


@pytest.mark.parametrize("stream", [False, True])
def test_videos_on_different_clocks_are_not_timed_by_one_scale(refserver: RefServer, tmp_path: Path,
                                                              stream: bool) -> None:
    # vLLM refusing per-request fps retimes each video by its own rate: one rescale for the whole
    # answer put the short video's shapes 3.4x too late. The answer now comes from per-video captions.
    long, short, truth = _two_rates(tmp_path)
    refserver.configure(trust_mm_kwargs=False)
    cfg = _config(refserver, "openai").with_(server="vllm")
    result = ask([long, short], "which shapes appear and when?", config=cfg, stream=stream, cache=False,
                 window=100.0)
    if stream:
        assert isinstance(result, AnswerStream)
        text = "".join(result)
        answer = result.answer
    else:
        answer = result
        text = str(result)
    assert answer is not None and answer.path == "map-reduce"
    for label, (start, end) in truth.items():
        times = _cited(text, label)
        assert times and all(start - 1.5 <= t <= end + 1.5 for t in times), (label, times, text)


def test_several_videos_on_a_request_wide_clock_go_map_reduce() -> None:
    # DashScope compatible mode's frame lists (one 0.5 s clock) and vLLM's jpeg lists (one per-request
    # fps) cannot time two videos sampled at different rates in one request: planned map-reduce
    from vidline.understand.api import _one_clock_for_several

    items = [_video(120, 640, 360), _video(20, 640, 360)]
    for payload, expected in [(AskPayload("dashscope-compat", "frames"), True), (AskPayload("vllm", "frames"), True),
                              (AskPayload("vllm", "video", media_io_fps=False), True),
                              (AskPayload("vllm", "video"), False), (AskPayload("dashscope", "frames"), False),
                              (AskPayload("generic", "frames"), False)]:
        plan = plan_ask(items, payload=payload)
        assert plan.path == "single"
        assert _one_clock_for_several(plan) is expected, payload
    assert not _one_clock_for_several(plan_ask([_video(20), _video(20)], payload=AskPayload("vllm", "frames")))


@pytest.mark.parametrize("strategy", ["single", "map-reduce"])
@pytest.mark.parametrize("stream", [False, True])
def test_refserver_ask_shrinks_a_request_too_large(refserver: RefServer, marker_video: Path, strategy: str,
                                                   stream: bool, caplog: pytest.LogCaptureFixture) -> None:
    # behind a body limit (nginx's 1 MB default) timeline windows were sent smaller after a 413, but
    # every caption window and the single request of ask failed, with "re-run" as the only advice
    cfg = _config(refserver, "openai")
    first = ask(marker_video, "which shapes appear and when?", config=cfg, cache=False, strategy=strategy)
    sizes = [r.body_bytes for r in _generations(refserver) if r.status == 200 and r.visual_tokens]
    refserver.reset()
    refserver.configure(max_body_bytes=int(min(sizes) * 0.8))
    with caplog.at_level("WARNING", logger="vidline"):
        result = ask(marker_video, "which shapes appear and when?", config=cfg, cache=False, strategy=strategy,
                     stream=stream)
        text = "".join(result) if stream else str(result)
    statuses = [r.status for r in _generations(refserver, 2)]
    assert 413 in statuses and statuses[-1] == 200
    assert caplog.text.count("retrying with smaller payloads") == 1  # said once, not per window
    assert first.path == strategy
    # every other frame: half the time resolution (a short shape can fall between the frames kept)
    cited = 0
    for m in MARKERS:
        times = [t for ln in text.replace(". ", ".\n").splitlines() if m.label in ln
                 for _s, _e, t in find_time_references(ln)]
        cited += bool(times)
        assert all(m.start - 1.1 <= t <= m.end + 1.1 for t in times), (m, times, text)
    assert cited >= 2, text
