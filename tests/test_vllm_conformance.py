"""Conformance against a real vLLM server serving (tiny) Qwen2.5-VL: every payload vidline's OpenAI
mode sends is accepted, and the visual-token estimate is exact.

Visual tokens are measured as ``usage.prompt_tokens`` minus the ``prompt_tokens`` of the same
request with its media items removed (text kept). That difference also contains the two vision
marker tokens (<|vision_start|>, <|vision_end|>) around each media item.

Start the server first (see docs/backends.md):
    bash /work/shared/realserver/setup.sh
    URL=$(bash /work/shared/realserver/serve.sh 8012 [--trust-request-mm-kwargs])
    VIDLINE_VLLM_URL=$URL .venv/bin/python -m pytest -m vllm tests/test_vllm_conformance.py
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from vidline.errors import AnswerParseError
from vidline.models import ChatRequest, ImagePart, TextPart, VideoPart, make_backend
from vidline.models.config import ModelConfig, RetryPolicy
from vidline.models.openai_backend import OpenAIBackend
from vidline.models.window import WindowAnalyzer
from vidline.synth import Marker, render_frame
from vidline.types import Frame, Window

pytestmark = pytest.mark.vllm

VLLM_URL = os.environ.get("VIDLINE_VLLM_URL", "http://127.0.0.1:8012/v1")
MARKERS = [Marker("red square", 1.0, 3.0), Marker("green circle", 4.0, 6.0)]


def server_info(url: str = VLLM_URL) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=3) as r:
            return dict(json.load(r))
    except Exception:
        return None


@pytest.fixture(scope="module")
def vllm_url() -> str:
    if server_info() is None:
        pytest.skip(f"no vLLM server at {VLLM_URL} (set VIDLINE_VLLM_URL; see docs/backends.md)")
    return VLLM_URL


def video_part(n: int, w: int, h: int, *, origin: float = 600.0, spacing: float = 0.5) -> VideoPart:
    frames = [Frame(t=origin + i * spacing, image=render_frame(i * spacing, w, h, MARKERS)) for i in range(n)]
    return VideoPart(frames=frames, fps=1.0 / spacing, origin=origin)


@dataclass
class Measured:
    shape: str
    detail: str
    estimate: int  # vidline's visual-token estimate (without vision markers)
    media_items: int
    with_media: int
    without_media: int

    @property
    def measured(self) -> int:
        return self.with_media - self.without_media

    @property
    def exact(self) -> bool:
        return self.measured == self.estimate + 2 * self.media_items


def _strip_media(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    out, n = [], 0
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            kept = [c for c in content if c.get("type") == "text"]
            n += len(content) - len(kept)
            content = kept
        out.append({**m, "content": content})
    return out, n


def measure(backend: OpenAIBackend, request: ChatRequest, detail: str) -> Measured:
    """Send through vidline (accepted?), then the same messages with and without media."""
    resp = backend.chat(request)  # the real path, with its fallbacks
    payload = backend.build(request)  # what vidline sends now (after any fallback)
    assert resp.usage is not None
    bare, n_media = _strip_media(payload.messages)
    client = backend._client
    without = client.chat.completions.create(model=backend.model, messages=bare, max_tokens=1, temperature=0)  # type: ignore[arg-type]
    assert without.usage is not None
    return Measured(payload.shape, detail, payload.visual_tokens, n_media, resp.usage.prompt_tokens,
                    without.usage.prompt_tokens)


def cases() -> list[tuple[str, str, ChatRequest]]:
    """(server flavour, description, request) for every payload shape of the OpenAI mode."""
    q = TextPart("List the events as JSON.")
    out: list[tuple[str, str, ChatRequest]] = []
    for mode in ("video", "frames"):
        out.append(("vllm", f"{mode}: 8 frames 392x280", ChatRequest([video_part(8, 392, 280), q], mode=mode)))  # type: ignore[arg-type]
        out.append(("vllm", f"{mode}: 8 frames 320x240 (upscaled)", ChatRequest([video_part(8, 320, 240), q], mode=mode)))  # type: ignore[arg-type]
        out.append(("vllm", f"{mode}: 16 frames 448x252 at 1 fps", ChatRequest([video_part(16, 448, 252, spacing=1.0), q], mode=mode)))  # type: ignore[arg-type]
    jitter = video_part(60, 392, 280, spacing=2.0)
    rng = np.random.default_rng(0)
    jitter.frames = [Frame(t=f.t + (float(rng.uniform(-0.3, 0.3)) if i else 0.0), image=f.image)
                     for i, f in enumerate(jitter.frames)]  # VFR source: uneven real spacing
    for mode in ("video", "frames"):
        out.append(("vllm", f"{mode}: 60 frames 392x280, uneven 2 s spacing (VFR)", ChatRequest([jitter, q], mode=mode)))  # type: ignore[arg-type]
    out.append(("vllm", "frames: 7 frames (odd) 392x280", ChatRequest([video_part(7, 392, 280), q], mode="frames")))
    out.append(("generic", "frames: 6 image_url parts 392x280 + text times", ChatRequest([video_part(6, 392, 280), q], mode="frames")))
    img = np.asarray(render_frame(2.0, 640, 480, MARKERS))
    out.append(("vllm", "image: 640x480 array", ChatRequest([ImagePart(img), TextPart("What shapes are visible?")])))
    out.append(("vllm", "image: 2 images 320x240 + 1000x600",
                ChatRequest([ImagePart(np.asarray(render_frame(2.0, 320, 240, MARKERS))),
                             ImagePart(np.asarray(render_frame(5.0, 1000, 600, MARKERS))), TextPart("Compare.")])))
    return out


def run_all(url: str) -> tuple[list[Measured], bool]:
    results: list[Measured] = []
    backends: dict[str, OpenAIBackend] = {}
    media_io = True
    for flavour, detail, request in cases():
        if flavour not in backends:
            cfg = ModelConfig(backend="openai", base_url=url, api_key="EMPTY", server="auto" if flavour == "vllm" else flavour,
                              max_tokens=4, retry=RetryPolicy(max_retries=1, backoff_base=0.1))
            b = make_backend(cfg)
            assert isinstance(b, OpenAIBackend)
            backends[flavour] = b
        b = backends[flavour]
        results.append(measure(b, request, detail))
        if flavour == "vllm":
            media_io = b._media_io_ok
    return results, media_io


def test_every_openai_payload_is_accepted_and_visual_tokens_are_exact(vllm_url: str) -> None:
    results, _ = run_all(vllm_url)
    assert results
    for r in results:
        assert r.exact, r


def test_window_analyzer_round_trip_on_real_server(vllm_url: str) -> None:
    backend = make_backend(ModelConfig(backend="openai", base_url=vllm_url, api_key="EMPTY", max_tokens=16))
    assert backend.list_models() and isinstance(backend, OpenAIBackend) and backend.flavour == "vllm"
    analyzer = WindowAnalyzer(backend, "red square")

    class WF:  # the shape of media.sampler.WindowFrames that WindowAnalyzer uses
        def __init__(self) -> None:
            part = video_part(8, 392, 280)
            self.window = Window(3, 600.0, 604.0)
            self.frames = part.frames

            class Plan:
                fps = 2.0
                n_frames = 8
                width = 392
                height = 280
                start = 600.0
                end = 604.0

            self.plan = Plan()

    wf = WF()
    text, usage, scale = analyzer.analyze(wf)[:3]  # type: ignore[arg-type]
    assert usage is not None and usage.prompt_tokens > 560
    est, _ = analyzer.estimate(wf.plan)  # type: ignore[arg-type]
    assert abs(est - usage.prompt_tokens) / usage.prompt_tokens < 0.25  # text part is approximate
    try:
        events = analyzer.to_events(text, wf.window, scale)
    except AnswerParseError:
        return  # the tiny random model answers gibberish: a recorded parse error is expected
    assert all(600.0 <= e.start <= e.end <= 604.0 for e in events)


def markdown_table(results: list[Measured], media_io: bool) -> str:
    lines = [
        f"server media_io_kwargs accepted: {media_io}",
        "",
        "| payload shape | request | media items | estimate (visual) | measured (with - without media) | markers | exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.shape} | {r.detail} | {r.media_items} | {r.estimate} | {r.measured} "
                     f"({r.with_media} - {r.without_media}) | {2 * r.media_items} | {'yes' if r.exact else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m tests.test_vllm_conformance  -> markdown table
    res, ok = run_all(VLLM_URL)
    print(markdown_table(res, ok))


def test_too_long_prompt_is_payload_too_large_and_the_window_shrinks_once(vllm_url: str) -> None:
    from vidline.errors import PayloadTooLargeError

    backend = make_backend(ModelConfig(backend="openai", base_url=vllm_url, api_key="EMPTY", max_tokens=4,
                                       retry=RetryPolicy(max_retries=0)))
    part = video_part(240, 392, 280, spacing=0.5)  # 120 * 140 = 16800 visual tokens > --max-model-len 16384
    with pytest.raises(PayloadTooLargeError):
        backend.chat(ChatRequest([part, TextPart("events?")], mode="video"))
    analyzer = WindowAnalyzer(backend, None)

    class Plan:
        fps = 2.0
        n_frames = 240
        width = 392
        height = 280
        start = 600.0
        end = 720.0

    class WF:
        window = Window(0, 600.0, 720.0)
        frames = part.frames
        plan = Plan()

    _text, usage, scale = analyzer.analyze(WF())[:3]  # type: ignore[arg-type]
    assert usage is not None and usage.prompt_tokens < 16384  # half the frames, smaller frames
    assert scale == pytest.approx(1.0, abs=0.02) or scale == pytest.approx(2.0, abs=0.05)


def test_timeline_encode_ahead_on_real_server(vllm_url: str, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The whole timeline run against real vLLM: planar-YUV mp4 payloads encoded ahead of the requests.
    Without --trust-request-mm-kwargs the payloads already encoded with media_io_kwargs are rebuilt
    from a second decode; every window must get a 200 answer (the tiny random model's text may not
    parse: that is the only failure allowed)."""
    from vidline.pipeline import analyze
    from vidline.synth import make_video

    video = make_video(tmp_path / "v.mp4", duration=24.0, fps=10, size=(320, 240), markers=MARKERS)
    cfg = ModelConfig(backend="openai", base_url=vllm_url, api_key="EMPTY", max_tokens=16,
                      retry=RetryPolicy(max_retries=1, backoff_base=0.1))
    tl = analyze(video, config=cfg, window=8.0, overlap=2.0, fps=2.0, cache=False, concurrency=2)
    assert tl.mode == "video" and len(tl.windows) >= 3
    for w in tl.windows:
        assert w.status == "ok" or (w.error or "").startswith("unparseable answer"), w
    ok = [w for w in tl.windows if w.status == "ok"]
    assert all(w.usage and w.usage.prompt_tokens > 0 for w in ok)
    info = server_info(vllm_url)
    assert info is not None
