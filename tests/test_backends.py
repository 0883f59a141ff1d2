"""End to end through the real openai and dashscope SDKs against the reference server.

Ground truth is the marker intervals written into the synthetic videos; the reference server only
sees the pixels and the clock each payload carries, so events coming back at the right absolute
times show that time survived encoding, the server's clock and vidline's rescaling.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.refserver import RefServer
from vidline.errors import (
    AuthenticationError,
    ConfigError,
    RateLimitError,
    ServerError,
    ServerUnreachableError,
)
from vidline.media.plan import SamplingBudget
from vidline.media.sampler import sample_windows
from vidline.models import ChatRequest, ImagePart, TextPart, VideoPart, make_backend
from vidline.models.base import Backend
from vidline.models.config import ModelConfig, RetryPolicy, Timeout
from vidline.models.openai_backend import OpenAIBackend
from vidline.models.window import WindowAnalyzer
from vidline.synth import Marker, make_video, render_frame
from vidline.types import Event, Frame, Window

KEY = "sk-test"
FAST_RETRY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05, jitter=0.1)
MARKERS = [Marker("red square", 10.0, 13.0), Marker("green circle", 15.0, 17.5), Marker("blue triangle", 2.0, 4.0)]
WINDOW = Window(1, 8.0, 18.0)  # does not start at 0
TOL = 0.6  # one frame at 2 fps plus rounding in the answer styles


@pytest.fixture(scope="module")
def cfr_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "cfr.mp4", duration=20.0, fps=10, size=(160, 120), markers=MARKERS)


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    segments = [(0.0, 9.0, 25.0), (9.0, 14.0, 4.0), (14.0, 20.0, 12.0)]
    return make_video(tmp_path_factory.mktemp("v") / "vfr.mp4", duration=20.0, fps=segments, size=(160, 120),
                      markers=MARKERS)


def openai_cfg(srv: RefServer, **kw: object) -> ModelConfig:
    base = {"backend": "openai", "base_url": srv.openai_base_url, "api_key": KEY, "model": srv.model,
            "server": "vllm", "retry": FAST_RETRY, "timeout": Timeout(connect=2, read=10)}
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def dashscope_cfg(srv: RefServer, **kw: object) -> ModelConfig:
    base = {"backend": "dashscope", "base_url": srv.dashscope_base_url, "api_key": KEY, "model": srv.model,
            "retry": FAST_RETRY, "timeout": Timeout(connect=2, read=10)}
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


def run_windows(backend: Backend, path: Path, windows: list[Window], query: str | None = None,
                fps: float = 2.0) -> list[Event]:
    analyzer = WindowAnalyzer(backend, query)
    events: list[Event] = []
    for wf in sample_windows(path, windows, SamplingBudget(fps=fps)):
        text, usage, scale = analyzer.analyze(wf)[:3]
        assert usage is not None and usage.prompt_tokens > 0
        events += analyzer.to_events(text, wf.window, scale)
    return events


def assert_ground_truth(events: list[Event], window: Window, tol: float = TOL) -> None:
    """Every marker inside the window comes back (clamped to the window) at its true absolute time."""
    expected = [(m.label, max(m.start, window.start), min(m.end, window.end))
                for m in MARKERS if m.end > window.start and m.start < window.end]
    assert len(events) == len(expected), events
    for label, start, end in expected:
        match = [e for e in events if label in e.label or e.label in label]
        assert match, (label, events)
        e = match[0]
        assert abs(e.start - start) <= tol and abs(e.end - end) <= tol, (label, start, end, e)
        assert e.windows == [window.index]


# ------------------------------------------------------------------------------------- time survives

@pytest.mark.parametrize("mode", ["video", "frames"])
@pytest.mark.parametrize("trust", [True, False])
def test_openai_vllm_times(refserver: RefServer, cfr_video: Path, mode: str, trust: bool) -> None:
    refserver.configure(trust_mm_kwargs=trust)
    backend = make_backend(openai_cfg(refserver, mode=mode))
    assert_ground_truth(run_windows(backend, cfr_video, [WINDOW]), WINDOW)
    ok = [r for r in refserver.requests if r.status == 200 and r.api == "openai"]
    assert ok and all(r.n_frames == 20 or mode == "video" for r in ok)
    if not trust:  # refused once with 400, then never sent again
        assert [r.status for r in refserver.requests if r.api == "openai"][0] == 400
        assert all(r.media_io_kwargs is None for r in ok)
        assert ok[0].fps_used == (2.0 if mode == "video" else 1.0)  # vLLM: mp4 at 2 fps, jpeg list at 1


@pytest.mark.parametrize("mode", ["video", "frames"])
def test_dashscope_native_times(refserver: RefServer, cfr_video: Path, mode: str) -> None:
    backend = make_backend(dashscope_cfg(refserver, mode=mode))
    assert_ground_truth(run_windows(backend, cfr_video, [WINDOW]), WINDOW)
    (rec,) = [r for r in refserver.requests if r.api == "dashscope"]
    assert rec.time_source in ("fps", "pts") and rec.fps_used == pytest.approx(2.0)
    assert rec.parameters.get("seed") == 1234 and rec.parameters.get("temperature") == 0


@pytest.mark.parametrize("mode", ["video", "frames"])
def test_dashscope_compat_mode_times(refserver: RefServer, cfr_video: Path, mode: str) -> None:
    backend = make_backend(openai_cfg(refserver, base_url=refserver.compat_base_url, server="auto", mode=mode))
    assert isinstance(backend, OpenAIBackend) and backend.flavour == "dashscope-compat"
    assert_ground_truth(run_windows(backend, cfr_video, [WINDOW]), WINDOW)
    if mode == "frames":  # a frame list is read at 0.5 s spacing: vidline rescales
        rec = [r for r in refserver.requests if r.status == 200][-1]
        assert rec.media == ["openai.video"]


def test_generic_server_gets_images_with_written_times(refserver: RefServer, cfr_video: Path) -> None:
    backend = make_backend(openai_cfg(refserver, server="auto", model=None))
    assert isinstance(backend, OpenAIBackend)
    assert backend.model == refserver.model  # the only served model, from GET /v1/models
    assert backend.flavour == "generic"  # owned_by is not "vllm"
    assert_ground_truth(run_windows(backend, cfr_video, [WINDOW]), WINDOW)
    rec = [r for r in refserver.requests if r.status == 200][-1]
    assert rec.time_source == "text" and rec.n_images == 20


@pytest.mark.parametrize("backend_name", ["openai", "dashscope"])
@pytest.mark.parametrize("mode", ["video", "frames"])
def test_vfr_video_several_windows(refserver: RefServer, vfr_video: Path, backend_name: str, mode: str) -> None:
    cfg = (openai_cfg if backend_name == "openai" else dashscope_cfg)(refserver, mode=mode)
    windows = [Window(0, 0.0, 10.0), Window(1, 8.0, 18.0), Window(2, 16.0, 20.0)]
    events = run_windows(make_backend(cfg), vfr_video, windows, fps=1.0)
    for w in windows:
        assert_ground_truth([e for e in events if e.windows == [w.index]], w, tol=1.1)


def test_burned_timestamps_and_query(refserver: RefServer, cfr_video: Path) -> None:
    backend = make_backend(openai_cfg(refserver, burn_timestamps=True, mode="frames"))
    events = run_windows(backend, cfr_video, [WINDOW], query="green circle")
    assert len(events) == 1 and abs(events[0].start - 15.0) <= TOL and abs(events[0].end - 17.5) <= TOL
    rec = [r for r in refserver.requests if r.status == 200][-1]
    assert "green circle" in rec.prompt and rec.json_mode


# ----------------------------------------------------------------------------------- reliability

def _tiny_request() -> ChatRequest:
    frames = [Frame(t=100 + i * 0.5, image=render_frame(i * 0.5, 112, 84, MARKERS)) for i in range(4)]
    return ChatRequest([VideoPart(frames, 2.0, 100.0), TextPart("What happens? Answer with JSON events.")],
                       json_mode=True)


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_retry_after_is_honoured(refserver: RefServer, which: str) -> None:
    refserver.configure(rate_limit_first=2, retry_after=0.3)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    t0 = time.monotonic()
    make_backend(cfg).chat(_tiny_request())
    elapsed = time.monotonic() - t0
    assert [r.status for r in refserver.requests] == [429, 429, 200]
    assert elapsed >= 0.55  # two waits of Retry-After 0.3 s (backoff alone would be ~0.03 s)


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_rate_limit_exhausted(refserver: RefServer, which: str) -> None:
    refserver.configure(rate_limit_first=10, retry_after=0.01)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, retry=RetryPolicy(max_retries=2, backoff_base=0.01))
    with pytest.raises(RateLimitError):
        make_backend(cfg).chat(_tiny_request())
    assert len(refserver.requests) == 3


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_5xx_retried_then_reported(refserver: RefServer, which: str) -> None:
    refserver.configure(fail_rate=1.0)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    with pytest.raises(ServerError) as info:
        make_backend(cfg).chat(_tiny_request())
    assert info.value.status is not None and info.value.status >= 500
    assert len(refserver.requests) == FAST_RETRY.max_retries + 1


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_timeout_per_request(refserver: RefServer, which: str) -> None:
    refserver.configure(latency=3.0)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(
        refserver, timeout=Timeout(connect=1, read=0.4), retry=RetryPolicy(max_retries=1, backoff_base=0.01))
    t0 = time.monotonic()
    with pytest.raises(ServerUnreachableError, match="timed out"):
        make_backend(cfg).chat(_tiny_request())
    assert time.monotonic() - t0 < 2.5


def test_connection_refused_is_unreachable() -> None:
    cfg = ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", api_key=KEY, model="m",
                      retry=RetryPolicy(max_retries=1, backoff_base=0.01))
    with pytest.raises(ServerUnreachableError):
        make_backend(cfg).chat(_tiny_request())


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_wrong_key_fails_fast_and_is_never_shown(refserver: RefServer, which: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-wrong-key-0123456789"
    caplog.set_level(logging.DEBUG)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, api_key=secret)
    with pytest.raises(AuthenticationError) as info:
        make_backend(cfg).chat(_tiny_request())
    assert len(refserver.requests) == 1  # not retried
    assert "authentication" in str(info.value).lower() and "\n" not in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in caplog.text
    assert secret not in repr(cfg)


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_413_shrinks_and_retries_once(refserver: RefServer, cfr_video: Path, which: str) -> None:
    wf = next(iter(sample_windows(cfr_video, [WINDOW], SamplingBudget(fps=2.0))))
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, mode="frames")
    backend = make_backend(cfg)
    analyzer = WindowAnalyzer(backend, None)
    size = len(str(backend.build(analyzer.build_request(wf)).messages))  # type: ignore[attr-defined]
    refserver.configure(max_body_bytes=int(size * 0.8))
    sent = analyzer.analyze(wf)
    text, scale = sent.text, sent.time_scale
    assert [r.status for r in refserver.requests] == [413, 200]
    assert refserver.requests[1].n_frames == 10
    # what was really sent, for the window's record (it reported the unshrunk plan)
    assert sent.frames == 10 and sent.usage is not None and sent.estimated_tokens is not None
    assert abs(sent.estimated_tokens - sent.usage.prompt_tokens) <= 0.05 * sent.usage.prompt_tokens
    assert sent.estimated_tokens < 0.75 * backend.estimate_tokens(analyzer.build_request(wf))
    assert_ground_truth(analyzer.to_events(text, wf.window, scale), WINDOW, tol=1.1)
    refserver.reset()
    refserver.configure(max_body_bytes=1000)  # still too large after shrinking: reported, not looped
    with pytest.raises(Exception, match="too large"):
        analyzer.analyze(wf)
    assert [r.status for r in refserver.requests] == [413, 413]


def test_context_limit_is_payload_too_large(refserver: RefServer) -> None:
    refserver.configure(context_limit=50)
    from vidline.errors import PayloadTooLargeError

    for cfg in (openai_cfg(refserver), dashscope_cfg(refserver)):
        with pytest.raises(PayloadTooLargeError):
            make_backend(cfg).chat(_tiny_request())


def test_no_model_with_several_served_is_a_config_error() -> None:
    class Page:
        data = [type("M", (), {"id": "a", "owned_by": "vllm"})(), type("M", (), {"id": "b", "owned_by": "vllm"})()]

    class Models:
        def list(self) -> Page:
            return Page()

    class Client:
        models = Models()

    backend = OpenAIBackend(ModelConfig(backend="openai", base_url="http://x/v1", api_key="k"), client=Client())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="a, b"):
        _ = backend.model


# ------------------------------------------------------------------------------ streaming, images

@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_streaming_matches_the_full_answer(refserver: RefServer, which: str) -> None:
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    backend = make_backend(cfg)
    req = ChatRequest([_tiny_request().parts[0], TextPart("Describe what you see and when.")])
    full = backend.chat(req).text
    chunks = list(backend.chat_stream(req))
    assert len(chunks) > 1 and "".join(chunks) == full
    assert refserver.requests[-1].stream
    assert backend.last_usage is not None and backend.last_usage.completion_tokens > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_dropped_stream_raises(refserver: RefServer, which: str) -> None:
    refserver.configure(drop_stream_after=2)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    req = ChatRequest([_tiny_request().parts[0], TextPart("Describe what you see and when.")])
    got: list[str] = []
    with pytest.raises(ServerUnreachableError):
        for c in make_backend(cfg).chat_stream(req):
            got.append(c)
    assert len(got) <= 2


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_several_images(refserver: RefServer, which: str) -> None:
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    imgs = [ImagePart(render_frame(t, 160, 120, MARKERS)) for t in (3.0, 11.0, 16.0)]
    resp = make_backend(cfg).chat(ChatRequest([*imgs, TextPart("Which shapes do these images show?")]))
    rec = refserver.requests[-1]
    assert rec.n_images == 3 and rec.status == 200
    for label in ("blue triangle", "red square", "green circle"):
        assert label in resp.text


@pytest.mark.parametrize("mode", ["video", "frames"])
@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_estimate_matches_reference_server_tokens(refserver: RefServer, cfr_video: Path, which: str, mode: str) -> None:
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, mode=mode)
    backend = make_backend(cfg)
    wf = next(iter(sample_windows(cfr_video, [WINDOW], SamplingBudget(fps=2.0))))
    analyzer = WindowAnalyzer(backend, None)
    req = analyzer.build_request(wf)
    resp = backend.chat(req)
    rec = refserver.requests[-1]
    assert resp.extra["estimated_visual_tokens"] == rec.visual_tokens
    est, _bytes = analyzer.estimate(wf.plan)
    assert est == backend.estimate_tokens(req)
    assert abs(est - rec.prompt_tokens) <= 0.15 * rec.prompt_tokens


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_key_not_in_debug_logs_or_responses(refserver: RefServer, which: str, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-distinctive-secret-42"
    refserver.configure(api_key=secret, rate_limit_first=1, retry_after=0.01)
    caplog.set_level(logging.DEBUG)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, api_key=secret)
    backend = make_backend(cfg)
    resp = backend.chat(_tiny_request())
    assert resp.text and secret not in caplog.text and secret not in repr(resp)
    assert refserver.requests[-1].headers.get("Authorization", "***").endswith("***")


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_one_backend_shared_by_threads(refserver: RefServer, which: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    refserver.configure(trust_mm_kwargs=False, latency=0.05)
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, mode="video")
    backend = make_backend(cfg)
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda _: backend.chat(_tiny_request()).text, range(8)))
    assert len(texts) == 8 and all(texts)
    assert sum(1 for r in refserver.requests if r.status == 200) == 8


# ------------------------------------------------------------------------- payloads encoded ahead


def _yuv_window(path: Path) -> object:
    return next(iter(sample_windows(path, [WINDOW], SamplingBudget(fps=2.0), pixel_format="yuv420p")))


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_prepared_payload_is_sent_without_its_frames(refserver: RefServer, cfr_video: Path, which: str) -> None:
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver, mode="video")
    analyzer = WindowAnalyzer(make_backend(cfg), None)
    assert analyzer.pixel_format == "yuv420p"  # mp4 payload: the decoder's planar YUV goes straight to x264
    wf = _yuv_window(cfr_video)
    assert {f.format for f in wf.frames} == {"yuv420p"}  # type: ignore[attr-defined]
    prepared = analyzer.prepare(wf)  # type: ignore[arg-type]
    assert prepared.released and prepared.request.videos[0].frames == []

    def no_reload() -> object:
        raise AssertionError("a valid prepared payload needs no second decode")

    text, _usage, scale = analyzer.send(prepared, no_reload)[:3]  # type: ignore[arg-type]
    assert [r.status for r in refserver.requests] == [200]
    assert_ground_truth(analyzer.to_events(text, WINDOW, scale), WINDOW)


def test_payloads_outdated_by_the_media_io_fallback_are_rebuilt_from_a_second_decode(
        refserver: RefServer, cfr_video: Path) -> None:
    refserver.configure(trust_mm_kwargs=False)
    analyzer = WindowAnalyzer(make_backend(openai_cfg(refserver, mode="video")), None)
    # two windows encoded ahead (with media_io_kwargs), frames released, before the server refuses them
    prepared = [analyzer.prepare(_yuv_window(cfr_video)) for _ in range(2)]  # type: ignore[arg-type]
    reloads: list[int] = []

    def reload() -> object:
        reloads.append(1)
        return _yuv_window(cfr_video)

    for p in prepared:
        text, _usage, scale = analyzer.send(p, reload)[:3]  # type: ignore[arg-type]
        assert_ground_truth(analyzer.to_events(text, WINDOW, scale), WINDOW)
    assert [r.status for r in refserver.requests] == [400, 200, 200]
    assert refserver.requests[1].media_io_kwargs is None and refserver.requests[2].media_io_kwargs is None
    assert len(reloads) == 2  # each released payload was rebuilt once, from its window decoded again


def test_413_on_a_released_payload_decodes_again_and_shrinks(refserver: RefServer, cfr_video: Path) -> None:
    analyzer = WindowAnalyzer(make_backend(openai_cfg(refserver, mode="frames")), None)
    wf = next(iter(sample_windows(cfr_video, [WINDOW], SamplingBudget(fps=2.0))))
    prepared = analyzer.prepare(wf)
    refserver.configure(max_body_bytes=int(len(str(prepared.payload.messages)) * 0.8))
    text, _usage, scale = analyzer.send(prepared, lambda: wf)[:3]
    assert [r.status for r in refserver.requests] == [413, 200] and refserver.requests[1].n_frames == 10
    assert_ground_truth(analyzer.to_events(text, WINDOW, scale), WINDOW, tol=1.1)
    with pytest.raises(Exception, match="too large"):  # without a way to decode again it is reported
        refserver.reset()
        refserver.configure(max_body_bytes=int(len(str(prepared.payload.messages)) * 0.8))
        analyzer.send(analyzer.prepare(wf))


@pytest.mark.parametrize(("changes", "field"), [
    ({"mode": "frame"}, "mode"),  # a typo used to send no media at all
    ({"mode": "Video"}, "mode"),
    ({"server": "foo"}, "server"),
    ({"backend": "motion"}, "backend"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": float("nan")}, "timeout"),
    ({"timeout": "5"}, "timeout"),
    ({"concurrency": 2.5}, "concurrency"),
    ({"concurrency": 0}, "concurrency"),
    ({"max_tokens": True}, "max_tokens"),
    ({"temperature": -1.0}, "temperature"),
    ({"seed": 1.5}, "seed"),
    ({"model": 3}, "model"),
    ({"base_url": b"http://x"}, "base_url"),
])
def test_model_config_refuses_what_requests_cannot_honour(changes: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"backend": "openai"}
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_model_config_takes_seconds_for_timeout() -> None:
    assert ModelConfig("openai", timeout=5).timeout == Timeout(read=5.0)  # type: ignore[arg-type]
    assert ModelConfig("dashscope", mode=None, timeout=Timeout(2, 7)).timeout == Timeout(2, 7)


def test_analyze_refuses_an_unknown_mode(cfr_video: Path) -> None:
    from vidline.pipeline import analyze

    with pytest.raises(ConfigError, match="mode"):
        analyze(cfr_video, "x", backend="openai", base_url="http://127.0.0.1:9/v1", mode="frame", cache=False)


@pytest.mark.parametrize("make", [lambda: Timeout(connect=0), lambda: Timeout(read=float("inf")),
                                  lambda: RetryPolicy(max_retries=-1), lambda: RetryPolicy(max_retries=1.5),
                                  lambda: RetryPolicy(backoff_base=float("nan"))])
def test_settings_objects_refuse_bad_numbers(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


# ------------------------------------------------------------- DashScope lists shorter than 4 frames
# DashScope takes 4-512 frames per list: 1-3 sampled frames must still come back at their real times
# (each frame is repeated on a finer grid, never the last one past the clip).

SHORT = [Marker("green circle", 0.0, 0.5), Marker("blue triangle", 0.5, 1.0), Marker("red square", 1.0, 1.5)]
TIGHT = 0.05  # the frames are exactly where the markers change: no sampling slack


def _short_events(backend: Backend, n: int, origin: float = 100.0) -> tuple[list[Event], Window]:
    """``n`` frames 0.5 s apart (frame i shows SHORT[i]) from a window at ``origin``, through the timeline path."""
    window = Window(3, origin, origin + 0.5 * n)
    frames = [Frame(t=origin + 0.5 * i, image=render_frame(0.5 * i, 160, 120, SHORT)) for i in range(n)]
    analyzer = WindowAnalyzer(backend, None)
    req = analyzer._request(window, VideoPart(frames, 2.0, origin))
    resp = backend.chat(req)
    return analyzer.to_events(resp.text, window, resp.time_scale), window


def _assert_markers(events: list[Event], markers: list[Marker], offset: float, tol: float = TIGHT) -> None:
    assert sorted(e.label for e in events) == sorted(m.label for m in markers), events
    for m in markers:
        (e,) = [e for e in events if e.label == m.label]
        assert abs(e.start - (offset + m.start)) <= tol and abs(e.end - (offset + m.end)) <= tol, (m, e)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("which", ["dashscope", "dashscope-compat", "dashscope-video"])
def test_dashscope_lists_of_1_to_3_frames_keep_real_times(refserver: RefServer, n: int, which: str) -> None:
    if which == "dashscope-compat":
        cfg = openai_cfg(refserver, base_url=refserver.compat_base_url, server="auto", mode="frames")
    else:
        cfg = dashscope_cfg(refserver, mode="video" if which == "dashscope-video" else "frames")
    events, window = _short_events(make_backend(cfg), n)
    _assert_markers(events, SHORT[:n], window.start)
    rec = [r for r in refserver.requests if r.status == 200][-1]
    if which == "dashscope":  # each frame twice (4 times for one) at that multiple of the rate
        assert rec.n_frames == n * -(-4 // n) and rec.fps_used == pytest.approx(2.0 * -(-4 // n))


@pytest.mark.parametrize(("duration", "src_fps", "marker"), [
    (1.0, 10, Marker("red square", 0.5, 1.0)),  # sampled at 0 and 0.5 s
    (2.0, 1, Marker("red square", 1.0, 2.0)),  # sampled at 0 and 1 s
])
@pytest.mark.parametrize("mode", ["frames", "video"])
def test_dashscope_short_clips(refserver: RefServer, tmp_path: Path, duration: float, src_fps: int,
                               marker: Marker, mode: str) -> None:
    path = make_video(tmp_path / "short.mp4", duration=duration, fps=src_fps, size=(160, 120), markers=[marker])
    backend = make_backend(dashscope_cfg(refserver, mode=mode))
    window = Window(0, 0.0, duration)
    events = run_windows(backend, path, [window])
    _assert_markers(events, [marker], 0.0)
    assert [r.n_frames for r in refserver.requests if r.status == 200] == [4 if mode == "frames" else 2]


def _cut_after(full: Path, dst: Path, last: float) -> None:
    """``full`` cut to the shortest prefix whose last decodable frame is at ``last`` s (``dst``)."""
    import io

    import av

    data = full.read_bytes()

    def last_time(n: int) -> float:
        t = -1.0
        try:
            with av.open(io.BytesIO(data[:n])) as c:
                for f in c.decode(video=0):
                    t = float(f.time)
        except av.error.FFmpegError:
            pass
        return t

    lo, hi = 0, len(data)  # smallest prefix decoding up to ``last``
    while lo < hi:
        mid = (lo + hi) // 2
        if last_time(mid) >= last - 1e-3:
            hi = mid
        else:
            lo = mid + 1
    assert abs(last_time(lo) - last) < 1e-3
    dst.write_bytes(data[:lo])


CUT_MARKERS = [Marker("green circle", 0.5, 1.5), Marker("red square", 2.0, 2.5), Marker("blue triangle", 2.5, 3.0),
               Marker("yellow square", 3.0, 3.5)]


@pytest.mark.parametrize("last", [2.5, 3.3])
@pytest.mark.parametrize("mode", ["frames", "video"])
def test_dashscope_window_cut_short_by_a_truncated_file(refserver: RefServer, tmp_path: Path, last: float,
                                                        mode: str) -> None:
    """The file ends inside the second window: 2 of its 4 planned frames are sent (the sampler skips a
    window with fewer than 2 and sends an even count; 1 and 3 frames are checked above); the timeline
    still gives each marker in them at its real time (the window is not clamped to the file's end)."""
    n = 2
    from vidline.pipeline import analyze

    # Matroska: the header still claims 8 s, so the window [2, 4) is planned with 4 frames at 2 fps
    full = make_video(tmp_path / "full.mkv", duration=8.0, fps=10, size=(160, 120), markers=CUT_MARKERS, gop=1)
    cut = tmp_path / "cut.mkv"
    _cut_after(full, cut, last)
    tl = analyze(cut, config=dashscope_cfg(refserver, mode=mode), window=2.0, overlap=0.0, fps=2.0, cache=False,
                 decoders=1)
    assert [(w.start, w.end, w.frames, w.status) for w in tl.windows[:2]] == [(0.0, 2.0, 4, "ok"),
                                                                               (2.0, 4.0, n, "ok")]
    assert {w.status for w in tl.windows[2:]} == {"failed"}  # after the file's end
    _assert_markers(tl.events, [m for m in CUT_MARKERS if m.start < 2.0 + 0.5 * n], 0.0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_ask_about_a_short_clip_cites_real_times(refserver: RefServer, tmp_path: Path, which: str,
                                                 stream: bool) -> None:
    """``ask`` about a 1 s clip (2 frames, padded to 4 for DashScope) cites the marker's real times."""
    from vidline.understand import ask

    path = make_video(tmp_path / "one.mp4", duration=1.0, fps=10, size=(160, 120),
                      markers=[Marker("red square", 0.5, 1.0)])
    cfg = (openai_cfg if which == "openai" else dashscope_cfg)(refserver)
    if stream:
        s = ask(path, "when is the red square visible?", config=cfg, cache=False, stream=True)
        text = "".join(s)
        answer = s.answer
        assert answer is not None and answer.text == text
    else:
        answer = ask(path, "when is the red square visible?", config=cfg, cache=False)
    assert answer.path == "single" and "red square" in answer.text
    assert answer.citations == pytest.approx([0.5, 1.0]), answer.text


@pytest.mark.parametrize("which", ["openai", "dashscope"])
def test_cancel_stops_retrying_at_once(refserver: RefServer, which: str) -> None:
    # Ctrl-C "stops sending": a window answered 429 with Retry-After 20 s kept its whole schedule
    import threading

    refserver.configure(rate_limit_first=10, retry_after=20.0)
    backend = make_backend((openai_cfg if which == "openai" else dashscope_cfg)(
        refserver, retry=RetryPolicy(max_retries=5, backoff_base=0.01)))
    threading.Timer(0.5, backend.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(RateLimitError):
        backend.chat(_tiny_request())
    assert time.monotonic() - t0 < 3.0
    assert len(refserver.requests) == 1  # no request after the cancel


def test_openai_client_is_made_on_first_use_or_by_warm_up() -> None:
    """The SDK (a ~0.5 s import) and its client are made when first needed, or ahead by ``warm_up`` (a run
    calls it in a thread while it decodes); closing a backend that never made one makes none."""
    from vidline.models.openai_backend import OpenAIBackend

    cfg = ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", api_key="k", model="m", server="vllm")
    backend = OpenAIBackend(cfg)
    assert backend._client_obj is None
    backend.close()
    assert backend._client_obj is None
    backend.warm_up()
    client = backend._client_obj
    assert client is not None and str(client.base_url) == "http://127.0.0.1:9/v1/" and client.max_retries == 0
    assert backend._client is client  # made once


def test_openai_errors_are_caught_without_importing_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``except`` clause of a request never imports the SDK: Ctrl-C interrupting its import on the
    main thread (server detection) stays an interrupt, not an import of half-loaded modules."""
    import sys

    import openai

    from vidline.errors import BackendError
    from vidline.models.openai_backend import OpenAIBackend, _caught

    assert _caught() == (openai.OpenAIError, BackendError)
    monkeypatch.delitem(sys.modules, "openai")
    assert _caught() == (BackendError,) and "openai" not in sys.modules
    backend = OpenAIBackend(ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", api_key="k", model="m"))

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backend._call(interrupted, "GET /models", retry=False)
    assert "openai" not in sys.modules
