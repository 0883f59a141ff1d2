"""The orchestrator: concurrency, bounded memory, failures, cache/resume, Ctrl-C, auth.

Part 1 drives ModelRun with an injected fake analyzer/decoder (fast, deterministic; ground truth from
marker intervals). Part 2 runs the real stack end-to-end against the reference server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vidline.errors import (
    AnswerParseError,
    AuthenticationError,
    ConfigError,
    ServerError,
    ServerUnreachableError,
)
from vidline.models.config import ModelConfig
from vidline.pipeline import ModelRun, RunOptions, analyze, dry_run, select_model
from vidline.progress import Progress
from vidline.synth import Marker, make_video
from vidline.types import Event, Frame, Window

pytest.importorskip("vidline.timeline")

DURATION = 60.0
# ground truth: a marker fully inside window 0, one across the 20/25 s boundary area, one late
TRUTH = [("green circle", 3.0, 8.0), ("blue triangle", 17.0, 27.0), ("red square", 44.0, 50.0)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pipe")
    return make_video(d / "v.mp4", duration=DURATION, fps=2, size=(160, 120))


@dataclass
class FakeWF:
    window: Window
    plan: Any
    frames: list[Frame]


@dataclass
class Decoder:
    """A stream_windows stand-in (frames of overlapping windows interleaved by time, then each
    window's end) that records which windows it decoded."""

    fail_after: int | None = None  # raise KeyboardInterrupt after this many windows ended
    stop_at: float | None = None  # the "file" ends here (truncated): later windows end short
    decoded: list[int] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)

    def __call__(self, path: Any, windows: Sequence[Window], budget: Any, *, info: Any = None,
                 pixel_format: str = "rgb24", threads: int | None = None,
                 warn_truncated: bool = True) -> Iterator[tuple[int, Frame | None]]:
        from vidline.media.plan import plan_sampling

        self.formats.append(pixel_format)
        plans = [plan_sampling(w.start, w.end, budget, src_width=info.display_width,
                               src_height=info.display_height, src_fps=info.fps) for w in windows]
        entries = sorted((t, n) for n, plan in enumerate(plans) for t in plan.timestamps)
        left = [plan.n_frames for plan in plans]
        ended = 0
        for t, n in entries:
            yield n, Frame(t=t, image=np.zeros((8, 8, 3), np.uint8))
            left[n] -= 1
            if left[n] == 0:
                if self.fail_after is not None and ended >= self.fail_after:
                    raise KeyboardInterrupt
                ended += 1
                self.decoded.append(windows[n].index)
                yield n, None
            if self.stop_at is not None and t >= self.stop_at:
                break
        for n, rest in enumerate(left):  # cut short by the end of the data
            if 0 < rest < plans[n].n_frames or (rest and self.stop_at is not None):
                yield n, None


class FakeAnalyzer:
    """Answers with the ground-truth intervals clipped to the window, in clip-relative seconds."""

    def __init__(self, *, fail: set[int] = frozenset(), garbage: set[int] = frozenset(),  # type: ignore[assignment]
                 auth: bool = False, latency: float = 0.0,
                 unreachable: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.backend = SimpleNamespace(config=ModelConfig("openai", model="fake-vl"), default_mode="video")
        self.fail, self.garbage, self.auth, self.latency = fail, garbage, auth, latency
        self.unreachable = unreachable
        self.calls: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def identity(self) -> dict[str, object]:
        return {"model": "fake-vl", "prompt": "v1"}

    def estimate(self, plan: Any) -> tuple[int, int]:
        return plan.n_frames * 10, plan.n_frames * 1000

    def prepare(self, wf: FakeWF, *, release: bool = True) -> Any:
        """The 'encoded payload': only the window survives (the frames are dropped)."""
        return SimpleNamespace(window=wf.window)

    def send(self, prepared: Any, reload: Any = None) -> tuple[str, Any, float]:
        return self.analyze(prepared)

    def analyze(self, wf: FakeWF) -> tuple[str, Any, float]:
        with self._lock:
            self.calls.append(wf.window.index)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
            if self.auth:
                raise AuthenticationError("401 Unauthorized: check --api-key", status=401)
            if wf.window.index in self.fail:
                raise ServerError("server error 500 after 4 retries", status=500)
            if wf.window.index in self.unreachable:
                raise ServerUnreachableError("openai: server unreachable (connection refused)")
            from vidline.types import Usage

            if wf.window.index in self.garbage:
                return "I am not sure what happens here.", Usage(100, 10), 1.0
            w = wf.window
            events = [{"start": max(s, w.start) - w.start, "end": min(e, w.end) - w.start, "label": lab}
                      for lab, s, e in TRUTH if s < w.end and e > w.start]
            return json.dumps(events), Usage(100, 10), 1.0
        finally:
            with self._lock:
                self.in_flight -= 1

    def to_events(self, text: str, window: Window, time_scale: float = 1.0) -> list[Event]:
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise AnswerParseError("no events found in the answer", raw=text) from exc
        return [Event(window.start + d["start"] * time_scale, window.start + d["end"] * time_scale, d["label"],
                      windows=[window.index]) for d in items]


def _run(video: Path, analyzer: FakeAnalyzer, decoder: Decoder, cache: Path | None,
         **opts: Any) -> Any:
    options = RunOptions(window=opts.pop("window", 20.0), overlap=opts.pop("overlap", 5.0),
                         fps=opts.pop("fps", 1.0), concurrency=opts.pop("concurrency", 3), cache_dir=cache,
                         queue=opts.pop("prefetch", None), decoders=opts.pop("decoders", None))
    run = ModelRun(video, "shapes", ModelConfig("openai", model="fake-vl"), options, Progress(enabled=False),
                   analyzer=analyzer, decoder=decoder)  # type: ignore[arg-type]
    return run.execute()


def _spans(tl: Any) -> list[tuple[str, float, float]]:
    return [(e.label, round(e.start, 2), round(e.end, 2)) for e in tl.events]


@pytest.mark.parametrize("decoders", [1, 2])
def test_events_absolute_merged_across_windows(video: Path, decoders: int) -> None:
    an, dec = FakeAnalyzer(), Decoder()
    tl = _run(video, an, dec, None, decoders=decoders)
    assert tl.windows[0].start == 0.0 and tl.windows[1].start > 10.0  # later windows start mid-video
    assert _spans(tl) == [(lab, s, e) for lab, s, e in sorted(TRUTH, key=lambda x: x[1])]
    blue = next(e for e in tl.events if e.label == "blue triangle")
    assert len(blue.windows) >= 2  # reported by two windows, merged into one event
    assert all(w.status == "ok" for w in tl.windows) and not tl.partial
    assert sorted(dec.decoded) == sorted(an.calls) == [w.index for w in tl.windows]
    assert tl.usage.prompt_tokens == 100 * len(tl.windows)


@pytest.mark.parametrize("decoders", [1, 2])
def test_failed_and_unparseable_windows_are_recorded_and_others_continue(video: Path, decoders: int) -> None:
    an = FakeAnalyzer(fail={1}, garbage={3})
    tl = _run(video, an, Decoder(), None, decoders=decoders)
    status = {w.index: (w.status, w.error) for w in tl.windows}
    assert status[1][0] == "failed" and "500" in (status[1][1] or "")
    assert status[3][0] == "failed" and "unparseable" in (status[3][1] or "")
    assert "\n" not in (status[1][1] or "")
    assert tl.partial and [w.index for w in tl.failed_windows] == [1, 3]
    assert ("green circle", 3.0, 8.0) in _spans(tl)  # window 0 is intact
    # the unparseable answer cost tokens: they are on its window and in the total; the 500 cost none
    assert tl.windows[3].usage is not None and tl.windows[3].usage.prompt_tokens == 100
    assert tl.windows[1].usage is None
    assert tl.usage.prompt_tokens == 100 * (len(tl.windows) - 1)


@pytest.mark.parametrize("decoders", [1, 2])
def test_authentication_error_stops_the_run(video: Path, decoders: int) -> None:
    an = FakeAnalyzer(auth=True, latency=0.05)
    with pytest.raises(AuthenticationError):
        _run(video, an, Decoder(), None, concurrency=2, decoders=decoders)
    assert len(an.calls) <= 2 + 1  # stops at the first windows in flight; never reaches all 4


def test_unreachable_at_start_stops_but_later_is_one_failed_window(video: Path) -> None:
    an = FakeAnalyzer(unreachable={0, 1, 2, 3})
    with pytest.raises(ServerUnreachableError):
        _run(video, an, Decoder(), None, concurrency=1)
    assert an.calls == [0]  # never reached: no point waiting out every window's retries
    tl = _run(video, FakeAnalyzer(unreachable={2}), Decoder(), None, concurrency=1)
    assert [w.index for w in tl.failed_windows] == [2] and "unreachable" in (tl.windows[2].error or "")


class Tracker:
    """Frames alive (decoded, not yet taken by an encoder or released) and windows between the end of
    their decoding and a finished request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames = 0
        self.pending: set[int] = set()
        self.peak = {"frames": 0, "pending": 0}
        self.max_frames = 0  # the most frames one window has

    def decoder(self) -> Decoder:
        tracker = self

        class CountingDecoder(Decoder):
            def __call__(self, *a: Any, **k: Any) -> Iterator[tuple[int, Frame | None]]:
                windows = a[1]
                counts: dict[int, int] = {}
                for n, frame in super().__call__(*a, **k):
                    with tracker.lock:
                        if frame is not None:
                            tracker.frames += 1
                            counts[n] = counts.get(n, 0) + 1
                            tracker.max_frames = max(tracker.max_frames, counts[n])
                        else:
                            tracker.pending.add(windows[n].index)
                        tracker.peak["frames"] = max(tracker.peak["frames"], tracker.frames)
                        tracker.peak["pending"] = max(tracker.peak["pending"], len(tracker.pending))
                    yield n, frame

        return CountingDecoder()

    def released(self, n: int) -> None:
        with self.lock:
            self.frames -= n

    def answered(self, index: int) -> None:
        with self.lock:
            self.pending.discard(index)


@pytest.mark.parametrize("decoders", [1, 2])
def test_windows_in_flight_are_bounded(video: Path, decoders: int) -> None:
    """Collected payloads (not mp4): frames live from decoding until the window is encoded. Each
    decode lane has its own encoders and frame budget; the request slots are shared."""
    from vidline.pipeline import BUDGET_SLACK, encoder_threads

    tracker = Tracker()

    class ReleasingAnalyzer(FakeAnalyzer):
        def prepare(self, wf: FakeWF, *, release: bool = True) -> Any:
            time.sleep(0.02)  # encoding takes a while
            try:
                return super().prepare(wf)
            finally:
                tracker.released(len(wf.frames))

        def analyze(self, wf: FakeWF) -> tuple[str, Any, float]:
            try:
                return super().analyze(wf)
            finally:
                tracker.answered(wf.window.index)

    an = ReleasingAnalyzer(latency=0.1)
    t0 = time.monotonic()
    tl = _run(video, an, tracker.decoder(), None, window=10.0, overlap=2.0, concurrency=2, prefetch=1,
              decoders=decoders)
    elapsed = time.monotonic() - t0
    n = len(tl.windows)
    assert n >= 7 and all(w.status == "ok" for w in tl.windows)
    assert an.max_in_flight == 2  # requests really ran concurrently, never more than `concurrency`
    # per lane: frames exist for the windows being collected or encoded (one per encoder thread), the
    # frame budget waiting to be taken (the next window's frames in the 2 s overlap: at most 3, + 1,
    # + slack), and the frame in the decoder's hand ...
    per_lane = max(1, encoder_threads(2) // decoders)
    assert tracker.peak["frames"] <= decoders * (per_lane * tracker.max_frames + 3 + 1 + BUDGET_SLACK + 1)
    # ... and decoding waits for a request slot: concurrency + prefetch windows between decode and answer
    # (+ the one whose end each decoder holds while it waits for a slot)
    assert tracker.peak["pending"] <= 2 + 1 + decoders
    assert elapsed < n * 0.1 * 0.8  # concurrency actually overlapped the latency


@pytest.mark.parametrize("decoders", [1, 2])
def test_mp4_windows_are_encoded_while_decoded(video: Path, decoders: int) -> None:
    """Streamed payloads (mp4): the encoder takes each frame as it is decoded, so at most the frame
    budget waits (per decode lane), and a window's encode starts before its last frame is decoded."""
    from vidline.pipeline import BUDGET_SLACK

    tracker = Tracker()
    order: list[tuple[str, int]] = []  # ("took", window) / ("end", window), in time order

    class StreamingAnalyzer(FakeAnalyzer):
        def prepare_stream(self, window: Window, plan: Any, frames: Any, **kw: Any) -> Any:
            n = 0
            for _frame in frames:
                with tracker.lock:
                    order.append(("took", window.index))
                tracker.released(1)
                n += 1
                time.sleep(0.002)  # x264 takes a while per frame
            assert n == plan.n_frames
            return SimpleNamespace(window=window)

        def prepare(self, wf: FakeWF, *, release: bool = True) -> Any:
            raise AssertionError("a streamed window is not collected")

        def analyze(self, wf: FakeWF) -> tuple[str, Any, float]:
            try:
                return super().analyze(wf)
            finally:
                tracker.answered(wf.window.index)

    class EndMarkingDecoder(Decoder):
        def __call__(self, *a: Any, **k: Any) -> Iterator[tuple[int, Frame | None]]:
            windows = a[1]
            for n, frame in tracker.decoder()(*a, **k):
                time.sleep(0.005)  # decoding takes a while per frame (longer than encoding)
                if frame is None:
                    with tracker.lock:
                        order.append(("end", windows[n].index))
                yield n, frame

    tl = _run(video, StreamingAnalyzer(latency=0.05), EndMarkingDecoder(), None, window=10.0, overlap=2.0,
              concurrency=2, prefetch=1, decoders=decoders)
    assert len(tl.windows) >= 7 and all(w.status == "ok" for w in tl.windows)
    assert _spans(tl) == _spans(_run(video, FakeAnalyzer(), Decoder(), None, window=10.0, overlap=2.0))
    # waiting (the next window's <= 3 overlap frames + 1 + slack) + in the decoder's hand + taken
    assert tracker.peak["frames"] <= decoders * (3 + 1 + BUDGET_SLACK + 2)
    assert tracker.peak["pending"] <= 2 + 1 + decoders
    for w in tl.windows:
        assert order.index(("took", w.index)) < order.index(("end", w.index))


class UrgencyAnalyzer(FakeAnalyzer):
    """Streams each window's frames and records whether the run asked for an ``urgent`` payload."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.urgent: dict[int, bool] = {}

    def prepare_stream(self, window: Window, plan: Any, frames: Any, *, urgent: bool = False) -> Any:
        for _frame in frames:
            pass
        self.urgent[window.index] = urgent
        return SimpleNamespace(window=window)


def test_payloads_are_urgent_only_while_a_request_slot_waits(video: Path) -> None:
    """x264's fastest preset is asked for while payloads find a request slot free (the run's start, or a
    server that answers faster than windows are decoded), not once they queue for a slow server."""
    slow_server = UrgencyAnalyzer(latency=0.25)
    tl = _run(video, slow_server, Decoder(), None, window=10.0, overlap=2.0, concurrency=1, prefetch=1,
              decoders=1)
    n = len(tl.windows)
    assert n >= 7 and sorted(slow_server.urgent) == list(range(n))
    # the first two: window 0 finds the slot free, so window 1 is urgent too; window 1 waits for it
    assert [slow_server.urgent[i] for i in range(n)] == [True, True] + [False] * (n - 2)

    class SlowDecoder(Decoder):
        def __call__(self, *a: Any, **k: Any) -> Iterator[tuple[int, Frame | None]]:
            for item in super().__call__(*a, **k):
                time.sleep(0.02)  # slower than the server: each request is done before the next window
                yield item

    fast_server = UrgencyAnalyzer()
    tl = _run(video, fast_server, SlowDecoder(), None, window=10.0, overlap=2.0, concurrency=1, prefetch=1,
              decoders=1)
    assert len(fast_server.urgent) == len(tl.windows) and all(fast_server.urgent.values())


def test_the_backend_warms_up_in_a_thread_while_the_run_decodes(video: Path, tmp_path: Path) -> None:
    """The SDK import and client (``Backend.warm_up``) are made beside the decoding, not before it; a run
    that sends nothing (every window cached) does not make them."""
    seen: list[str] = []

    def analyzer() -> FakeAnalyzer:
        an = FakeAnalyzer()
        an.backend.warm_up = lambda: seen.append(threading.current_thread().name)  # type: ignore[attr-defined]
        return an

    _run(video, analyzer(), Decoder(), tmp_path)
    assert seen == ["vidline-warm-up"]
    tl = _run(video, analyzer(), Decoder(), tmp_path)
    assert all(w.status == "cached" for w in tl.windows) and seen == ["vidline-warm-up"]


def test_decoder_is_asked_for_the_analyzers_pixel_format(video: Path) -> None:
    class YuvAnalyzer(FakeAnalyzer):
        pixel_format = "yuv420p"

    dec = Decoder()
    _run(video, FakeAnalyzer(), dec, None)
    assert set(dec.formats) == {"rgb24"}
    dec = Decoder()
    _run(video, YuvAnalyzer(), dec, None)
    assert set(dec.formats) == {"yuv420p"}


@pytest.mark.parametrize("decoders", [1, 2])
def test_encode_failure_is_one_failed_window(video: Path, decoders: int) -> None:
    class BrokenEncoder(FakeAnalyzer):
        def prepare(self, wf: FakeWF, *, release: bool = True) -> Any:
            if wf.window.index == 1:
                raise ValueError("x264 refused the frames")
            return super().prepare(wf)

    tl = _run(video, BrokenEncoder(), Decoder(), None, decoders=decoders)
    assert [w.index for w in tl.failed_windows] == [1]
    assert "internal error (ValueError): x264 refused the frames" in (tl.windows[1].error or "")
    assert tl.windows[0].status == "ok" and tl.windows[2].status == "ok"


@pytest.mark.parametrize("decoders", [1, 2])
def test_cache_rerun_sends_and_decodes_nothing(video: Path, tmp_path: Path, decoders: int) -> None:
    first = _run(video, FakeAnalyzer(), Decoder(), tmp_path, decoders=decoders)
    an, dec = FakeAnalyzer(), Decoder()
    again = _run(video, an, dec, tmp_path, decoders=decoders)
    assert an.calls == [] and dec.decoded == []
    assert {w.status for w in again.windows} == {"cached"}
    assert _spans(again) == _spans(first)
    assert again.windows[0].usage is not None  # the stored usage is kept per window
    assert again.usage.prompt_tokens == 0  # nothing spent this run


def test_failed_windows_are_not_cached_and_retried(video: Path, tmp_path: Path) -> None:
    _run(video, FakeAnalyzer(fail={2}, garbage={0}), Decoder(), tmp_path)
    an, dec = FakeAnalyzer(), Decoder()
    tl = _run(video, an, dec, tmp_path)
    assert sorted(an.calls) == [0, 2] and sorted(dec.decoded) == [0, 2]
    assert {w.index: w.status for w in tl.windows} == {0: "ok", 1: "cached", 2: "ok", 3: "cached"}
    assert not tl.partial


@pytest.mark.parametrize("decoders", [1, 2])
def test_ctrl_c_keeps_done_windows_and_resume_sends_only_missing(video: Path, tmp_path: Path, decoders: int) -> None:
    an = FakeAnalyzer()
    windows = {"window": 10.0, "overlap": 2.0}  # 7 windows: each of 2 lanes stops after its 2nd
    with pytest.raises(KeyboardInterrupt):
        _run(video, an, Decoder(fail_after=2), tmp_path, concurrency=1, decoders=decoders, **windows)
    time.sleep(0.05)  # let a request that was in flight finish writing (atomically)
    done = set(an.calls)
    assert done and len(done) <= 2 * decoders
    an2, dec2 = FakeAnalyzer(), Decoder()
    tl = _run(video, an2, dec2, tmp_path, **windows)
    assert set(an2.calls) == {w.index for w in tl.windows} - done
    assert not tl.partial and len(tl.events) == 3


def test_query_without_model_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL.*DASHSCOPE_API_KEY"):
        select_model(None, "auto", "a red car", {})
    assert select_model(None, "auto", None, {}) is None  # falls back to motion
    assert select_model(None, "auto", None, {"base_url": "http://x/v1"}).backend == "openai"  # type: ignore[union-attr]


def test_a_window_the_file_ends_in_says_why_it_failed(video: Path) -> None:
    """A truncated file: the window left with one frame fails naming the cause (it said 'could not be
    decoded again'); the windows before it are answered."""
    tl = _run(video, FakeAnalyzer(), Decoder(stop_at=41.5), None)  # the last window [41.25, 60) gets 1 frame
    assert [w.status for w in tl.windows] == ["ok", "ok", "ok", "failed"]
    assert tl.windows[2].frames < 18  # cut short, trimmed to an even count, still sent
    assert "fewer than 2 decodable frames (file truncated or damaged)" in (tl.windows[3].error or "")


def test_bad_options(video: Path) -> None:
    with pytest.raises(ConfigError):
        analyze(video, backend="motion", concurrency=0)
    with pytest.raises(ConfigError):
        analyze(video, backend="motion", bogus=1)


@pytest.mark.parametrize(("args", "kwargs", "name"), [
    ((), {"window": "10"}, "--window"),
    ((), {"window": float("inf")}, "--window"),
    ((), {"overlap": float("nan")}, "--overlap"),
    ((), {"fps": float("nan")}, "--fps"),
    ((), {"concurrency": 2.5}, "--concurrency"),
    ((), {"threshold": "0.1"}, "--threshold"),
    ((), {"pre": -1.0}, "--pre"),
    (("a red car",), {"mode": "frame", "base_url": "http://127.0.0.1:9/v1"}, "mode"),
    ((5,), {"base_url": "http://127.0.0.1:9/v1"}, "query"),
])
def test_bad_arguments_are_config_errors(video: Path, args: tuple[object, ...], kwargs: dict[str, object],
                                         name: str) -> None:
    """Wrong types and non-finite numbers are refused by name, before any decoding or request."""
    kwargs = {"backend": "auto", "cache": False, **kwargs}
    with pytest.raises(ConfigError, match=name):
        analyze(video, *args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="path"):
        analyze(123, backend="motion")  # type: ignore[arg-type]


def test_dry_run_motion_contacts_nothing(video: Path) -> None:
    rep = dry_run(video, backend="motion")
    assert rep.backend == "motion" and rep.total_tokens == 0 and rep.windows[0].frames == int(DURATION * 4)


def test_dry_run_model_plan(video: Path) -> None:
    rep = dry_run(video, "cars", config=ModelConfig("openai", base_url="http://127.0.0.1:9/v1", model="m"),
                  window=20.0, overlap=5.0, fps=1.0, price_per_1k=0.5)
    assert len(rep.windows) == 4
    assert all(w.frames % 2 == 0 and w.width % 28 == 0 and w.height % 28 == 0 for w in rep.windows)
    assert all(w.estimated_tokens > 0 and w.payload_bytes > 0 for w in rep.windows)
    assert rep.price == pytest.approx(rep.total_tokens / 1000 * 0.5, rel=1e-3)
    assert "estimated price" in rep.to_text()


@pytest.mark.parametrize(("kwargs", "server", "assumed", "mode"), [
    ({"base_url": "http://10.0.0.1:8000/v1"}, "vllm", True, "video"),  # an OpenAI URL that says nothing
    ({"base_url": "http://10.0.0.1:8000/v1", "server": "generic"}, "generic", False, "frames"),
    ({"base_url": "http://10.0.0.1:8000/v1", "server": "vllm"}, "vllm", False, "video"),
    ({"base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1"}, "dashscope-compat", False, "video"),
])
def test_dry_run_says_which_server_it_assumed(video: Path, kwargs: dict[str, Any], server: str, assumed: bool,
                                              mode: str) -> None:
    cfg = ModelConfig("openai", model="m", **kwargs)
    rep = dry_run(video, "cars", config=cfg, window=20.0, overlap=5.0, fps=1.0)
    assert (rep.server, rep.server_assumed, rep.mode) == (server, assumed, mode)
    text, doc = rep.to_text(), rep.to_dict()
    assert (doc["server"], doc["server_assumed"], doc["mode"]) == (server, assumed, mode)
    assert f"server: {server}" in text
    if assumed:
        assert "server: vllm (assumed)" in text and "--server" in text and "--mode" in text
        assert "--server" in doc["note"] and "assumed vllm" in doc["note"]
    else:
        assert "assumed" not in text and doc["note"] is None


def test_dry_run_generic_server_counts_images(video: Path) -> None:
    # a generic OpenAI-compatible server gets one image per frame: about twice the assumed vLLM's tokens
    cfg = ModelConfig("openai", base_url="http://10.0.0.1:8000/v1", model="m")
    vllm = dry_run(video, "cars", config=cfg, window=20.0, overlap=5.0, fps=1.0)
    generic = dry_run(video, "cars", config=cfg.with_(server="generic"), window=20.0, overlap=5.0, fps=1.0)
    assert [w.frames for w in generic.windows] == [w.frames for w in vllm.windows]
    assert generic.total_tokens > 1.8 * vllm.total_tokens
    ds = dry_run(video, "cars", config=ModelConfig("dashscope", api_key="sk-x"), window=20.0, overlap=5.0, fps=1.0)
    assert (ds.server, ds.server_assumed, ds.note) == ("dashscope", False, None)


# ------------------------------------------------------------------------------------------------
# end-to-end through the real SDKs and the reference server


@pytest.fixture(scope="module")
def marker_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("e2e")
    markers = [Marker("green circle", 2.0, 6.0), Marker("blue triangle", 13.0, 19.0), Marker("red square", 31.0, 35.0)]
    return make_video(d / "m.mp4", duration=40.0, fps=4, size=(160, 120), markers=markers)


E2E_TRUTH = [("green circle", 2.0, 6.0), ("blue triangle", 13.0, 19.0), ("red square", 31.0, 35.0)]


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def _check_truth(tl: Any) -> None:
    for label, s, e in E2E_TRUTH:
        hits = [ev for ev in tl.events if ev.label == label]
        assert len(hits) == 1, (label, _spans(tl))  # found once: no duplicates across windows
        assert _iou((hits[0].start, hits[0].end), (s, e)) >= 0.5, (label, _spans(tl))
    assert all(ev.label in {t[0] for t in E2E_TRUTH} for ev in tl.events)
    # the static stretch 20-30 s (and 36-40 s) yields nothing
    assert not [ev for ev in tl.events if ev.start >= 20.5 and ev.end <= 30.5]


@pytest.mark.parametrize("backend", ["openai", "dashscope"])
def test_e2e_reference_server(refserver: Any, marker_video: Path, tmp_path: Path, backend: str) -> None:
    url = refserver.openai_base_url if backend == "openai" else refserver.dashscope_base_url
    cfg = ModelConfig(backend, base_url=url, api_key="sk-test", model="qwen2.5-vl-ref")  # type: ignore[arg-type]
    tl = analyze(marker_video, config=cfg, window=12.0, overlap=3.0, fps=2.0, cache=tmp_path)
    assert tl.windows[1].start > 0 and not tl.partial
    _check_truth(tl)
    n = len(refserver.generation_requests)
    assert n == len(tl.windows)
    again = analyze(marker_video, config=cfg, window=12.0, overlap=3.0, fps=2.0, cache=tmp_path)
    assert len(refserver.generation_requests) == n  # cache hit: nothing re-sent
    assert {w.status for w in again.windows} == {"cached"}
    _check_truth(again)


def test_progress_non_tty_shows_windows_and_tokens() -> None:
    import io

    buf = io.StringIO()  # not a TTY
    p = Progress(file=buf)
    p.add_total(3)
    p.advance(tokens=120)
    p.advance(status="cached")
    p.advance(status="failed")
    p.close()
    text = buf.getvalue()
    assert "3/3" in text and "tokens=120" in text and "failed=1" in text and "cached=1" in text
    quiet = io.StringIO()
    q = Progress(enabled=False, file=quiet)
    q.add_total(2)
    q.advance(tokens=5)
    q.close()
    assert quiet.getvalue() == "" and q.tokens == 5


def test_model_name_from_server_when_not_configured(refserver: Any, marker_video: Path) -> None:
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", server="vllm")
    tl = analyze(marker_video, config=cfg, window=20.0, overlap=2.0, fps=1.0, cache=False)
    assert tl.model == "qwen2.5-vl-ref" and not tl.partial


def test_model_name_survives_a_fully_cached_rerun(refserver: Any, marker_video: Path, tmp_path: Path) -> None:
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", server="vllm")
    first = analyze(marker_video, config=cfg, window=20.0, overlap=2.0, fps=1.0, cache=tmp_path)
    sent = len(refserver.generation_requests)
    again = analyze(marker_video, config=cfg, window=20.0, overlap=2.0, fps=1.0, cache=tmp_path)
    assert len(refserver.generation_requests) == sent
    assert {w.status for w in again.windows} == {"cached"}
    assert first.model == again.model == "qwen2.5-vl-ref"


def test_detected_server_decides_mode_and_estimates_and_cached_rerun_asks_nothing(
    refserver: Any, marker_video: Path, tmp_path: Path
) -> None:
    # the reference server is no vLLM (owned_by), so frames go as image_url parts with their times:
    # the timeline must say "frames" and estimate the image tokens it really sends
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", model="qwen2.5-vl-ref")
    tl = analyze(marker_video, config=cfg, window=20.0, overlap=2.0, fps=1.0, cache=tmp_path)
    assert tl.mode == "frames" and not tl.partial
    assert {r.media[0] for r in refserver.generation_requests} == {"openai.image_url"}
    for w in tl.windows:
        visual = next(r.visual_tokens for r in refserver.generation_requests if len(r.media) == w.frames)
        assert w.usage is not None and w.estimated_tokens is not None
        assert visual <= w.estimated_tokens <= w.usage.prompt_tokens * 1.25
    seen = len(refserver.requests)
    again = analyze(marker_video, config=cfg, window=20.0, overlap=2.0, fps=1.0, cache=tmp_path)
    assert len(refserver.requests) == seen  # not even GET /v1/models
    assert again.mode == "frames" and [w.estimated_tokens for w in again.windows] == [
        w.estimated_tokens for w in tl.windows
    ]


@pytest.mark.parametrize("trust", [True, False])
def test_e2e_vllm_mp4_payloads_encoded_ahead(refserver: Any, marker_video: Path, trust: bool) -> None:
    """vLLM mp4 payloads: planar YUV frames straight to x264, encoded ahead of a free request slot. An
    untrusted server refuses media_io_kwargs: the payloads already encoded are rebuilt from a second
    decode of their window, and the timeline is the same."""
    refserver.configure(trust_mm_kwargs=trust, latency=0.05)
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", model="qwen2.5-vl-ref",
                      server="vllm")
    tl = analyze(marker_video, config=cfg, window=8.0, overlap=2.0, fps=2.0, cache=False, concurrency=2)
    assert not tl.partial and tl.mode == "video"
    _check_truth(tl)
    gen = [r for r in refserver.requests if r.api == "openai" and r.status in (200, 400)]
    ok = [r for r in gen if r.status == 200]
    assert len(ok) == len(tl.windows)
    if not trust:
        assert gen[0].status == 400 and all(r.media_io_kwargs is None for r in ok)
    else:
        assert all(r.status == 200 and r.media_io_kwargs for r in gen)


def test_dry_run_memory_estimate_counts_frames_being_decoded_and_payloads_waiting(video: Path) -> None:
    from vidline.pipeline import BASE_MB, BUDGET_SLACK

    cfg = ModelConfig("openai", base_url="http://127.0.0.1:9/v1", model="m", server="vllm")
    video_mode = dry_run(video, config=cfg, window=20.0, overlap=5.0, fps=1.0, concurrency=3)
    frames_mode = dry_run(video, config=cfg.with_(mode="frames"), window=20.0, overlap=5.0, fps=1.0, concurrency=3)
    assert video_mode.bytes_per_pixel == 1.5 and frames_mode.bytes_per_pixel == 3.0  # planar YUV for mp4 payloads
    # an mp4 or a JPEG list is encoded while decoded: only the frames that run ahead of the encoder
    # wait (the overlap's + slack), never a whole window
    w = video_mode.windows[0]
    assert video_mode.decoders == 1  # 3 windows: one decoder
    overlap_frames = 5 + 1  # 5 s at 1 fps
    assert BUDGET_SLACK < video_mode.decoded_frames <= overlap_frames + 1 + BUDGET_SLACK < w.frames
    assert frames_mode.decoded_frames == video_mode.decoded_frames
    assert video_mode.windows_in_flight == 3 + 3  # concurrency + prefetch (default: concurrency)
    frames = video_mode.decoded_frames * w.width * w.height * 1.5
    payloads = video_mode.windows_in_flight * max(x.payload_bytes for x in video_mode.windows)
    assert video_mode.peak_memory_mb == int(BASE_MB + (frames + payloads) / 2**20)
    lanes = dry_run(video, config=cfg, window=20.0, overlap=5.0, fps=1.0, concurrency=3, decoders=2)
    assert lanes.decoders == 2 and lanes.peak_memory_mb > video_mode.peak_memory_mb + 50  # a second decoder, x264
    assert f"~{video_mode.peak_memory_mb} MB peak memory" in video_mode.to_text()


@pytest.mark.parametrize(("spans", "ahead"), [
    ([(0, 10)], 0),
    ([(0, 10), (11, 20)], 0),  # one after the other
    ([(0, 10), (8, 18), (16, 26)], 3),  # 2 s overlaps: 8, 9, 10 of the next window come first
    ([(0, 10), (4, 14), (8, 18)], 10),  # window 0 ends after 4..10 of window 1 and 8..10 of window 2
    ([(0, 10), (10, 20)], 1),  # a shared sample time
])
def test_frame_budget(spans: list[tuple[float, float]], ahead: int) -> None:
    from vidline.pipeline import BUDGET_SLACK, WindowJob, frame_budget, frames_ahead

    jobs = [WindowJob(Window(i, s, e), SimpleNamespace(timestamps=[float(t) for t in range(s, e + 1)],  # type: ignore[arg-type]
                                                       n_frames=e - s + 1), 0, 0) for i, (s, e) in enumerate(spans)]
    assert frames_ahead(jobs) == ahead
    # the frames that wait while the earliest open window is finished (+ 1), and some slack
    assert frame_budget(jobs) == ahead + 1 + BUDGET_SLACK


def _jobs(spans: list[tuple[float, float]]) -> list[Any]:
    from vidline.pipeline import WindowJob

    return [WindowJob(Window(i, s, e), SimpleNamespace(timestamps=[s, e], n_frames=2),  # type: ignore[arg-type]
                      estimated_tokens=0, payload_bytes=0)
            for i, (s, e) in enumerate(spans)]


@pytest.mark.parametrize(("spans", "decoders", "cpus", "expected"), [
    ([(0, 10)] * 8, None, 1, [8]),  # one CPU: one decoder
    ([(i * 10, i * 10 + 12) for i in range(8)], None, 2, [4, 4]),  # auto: one per CPU
    ([(i * 10, i * 10 + 12) for i in range(8)], None, 8, [4, 4]),  # auto: at most AUTO_LANES
    ([(i * 10, i * 10 + 12) for i in range(7)], None, 2, [7]),  # auto: at least 4 windows a lane
    ([(i * 10, i * 10 + 12) for i in range(9)], 3, 2, [3, 3, 3]),  # asked for
    ([(0, 10), (10, 20)], 5, 2, [1, 1]),  # never more lanes than windows
    ([(0, 100), (100, 110), (110, 120), (120, 130)], 2, 2, [1, 3]),  # equal stretches of video, not counts
    ([(0, 10), (50, 60), (60, 70), (200, 210)], 2, 2, [2, 2]),  # cached windows in between: by their spans
])
def test_decode_lanes_split_the_video_into_contiguous_stretches(
        spans: list[tuple[float, float]], decoders: int | None, cpus: int, expected: list[int]) -> None:
    from vidline.pipeline import decode_lanes

    jobs = _jobs(spans)
    lanes = decode_lanes(jobs, decoders, cpus=cpus)
    assert [len(lane) for lane in lanes] == expected
    assert [job for lane in lanes for job in lane] == jobs  # every window once, in time order


def test_ctrl_c_in_the_main_thread_stops_every_lane_promptly(video: Path) -> None:
    """With decode lanes the main thread only waits; a Ctrl-C there stops the lanes at their next
    frame without waiting for requests in flight."""
    import _thread

    class Interrupting(FakeAnalyzer):
        def analyze(self, wf: FakeWF) -> tuple[str, Any, float]:
            if not self.calls:
                threading.Timer(0.3, _thread.interrupt_main).start()  # once the lanes wait for answers
            return super().analyze(wf)  # a slow server: 2 s per request

    an = Interrupting(latency=2.0)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):  # 4 windows, 2 lanes: all decoded and sent at once
        _run(video, an, Decoder(), None, concurrency=4, prefetch=0, decoders=2)
    assert time.monotonic() - t0 < 1.5  # the requests in flight are not waited for
    lanes = [t for t in threading.enumerate() if t.name.startswith("vidline-decode") and t.is_alive()]
    assert not lanes  # every lane thread has ended
    assert len(an.calls) <= 4


def test_a_failing_lane_stops_the_run_and_its_error_is_raised(video: Path) -> None:
    from vidline.errors import DecodeError

    class LateFailure(Decoder):
        def __call__(self, path: Any, windows: Sequence[Window], *a: Any, **k: Any) -> Any:
            for n, frame in super().__call__(path, windows, *a, **k):
                if windows[0].index > 0:  # the second lane's stretch of the file is damaged
                    raise DecodeError(path, "damaged packet")
                yield n, frame

    an = FakeAnalyzer(latency=0.05)
    with pytest.raises(DecodeError, match="damaged packet"):
        _run(video, an, LateFailure(), None, window=10.0, overlap=2.0, concurrency=2, decoders=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("vidline-decode") and t.is_alive()]


def test_e2e_two_decode_lanes_give_the_same_timeline(refserver: Any, marker_video: Path) -> None:
    """Real decoding, real mp4 payloads: two lanes decode their halves of the file in parallel and the
    merged timeline is the one a single decoder gives."""
    refserver.configure(latency=0.0)
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", model="qwen2.5-vl-ref",
                      server="vllm")
    one = analyze(marker_video, config=cfg, window=8.0, overlap=2.0, fps=2.0, cache=False, decoders=1)
    two = analyze(marker_video, config=cfg, window=8.0, overlap=2.0, fps=2.0, cache=False, decoders=2)
    assert len(two.windows) >= 4 and not two.partial
    _check_truth(two)
    # (x264 is not bit-reproducible, so the reference server's detections move by a few ms run to run)
    assert [(e.label, e.windows) for e in two.events] == [(e.label, e.windows) for e in one.events]
    for a, b in zip(two.events, one.events, strict=True):
        assert a.start == pytest.approx(b.start, abs=0.05) and a.end == pytest.approx(b.end, abs=0.05)
    assert [(w.index, w.frames) for w in two.windows] == [(w.index, w.frames) for w in one.windows]


@pytest.mark.parametrize(("source", "fps", "sent", "heavy"), [
    ((1920, 1080), 25.0, (1008, 560), True),  # a 1080p camera hour sampled at 1 fps: ~13x
    ((1280, 720), 25.0, (1008, 560), True),  # ~5x
    ((640, 360), 25.0, (644, 364), True),  # ~3x
    ((320, 240), 10.0, (392, 280), False),  # x264 costs as much as the decoding: a second decoder loses
])
def test_decode_heavy_decides_the_default_lanes(source: tuple[int, int], fps: float, sent: tuple[int, int],
                                                heavy: bool) -> None:
    from vidline.pipeline import WindowJob, decode_heavy, lane_count

    info = SimpleNamespace(width=source[0], height=source[1], fps=fps)
    jobs = [WindowJob(Window(i, i * 115.0, i * 115.0 + 125.0),
                      SimpleNamespace(n_frames=122, width=sent[0], height=sent[1]), 0, 0)  # type: ignore[arg-type]
            for i in range(32)]
    assert decode_heavy(info, jobs) is heavy  # type: ignore[arg-type]
    assert lane_count(len(jobs), None, cpus=2, heavy=heavy) == (2 if heavy else 1)
    assert lane_count(len(jobs), 2, cpus=2, heavy=False) == 2  # asked for: always


def test_motion_says_which_model_options_it_ignores(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="vidline"):
        analyze(video, backend="motion", window=10.0, fps=1.0)
    assert "ignores window, fps" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vidline"):
        analyze(video, backend="motion")
    assert "ignores" not in caplog.text
