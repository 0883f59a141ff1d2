"""The timeline's encode-while-decoding path (``WindowAnalyzer.prepare_stream``): the clip x264 makes
from frames handed over one by one is the clip the collected path makes, for every mp4 flavour, and the
JPEG list compressed frame by frame is the collected list, for every frame-list flavour; a streamed
payload that cannot be used makes the run decode the window again.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.refserver import RefServer
from vidline.errors import StalePayloadError
from vidline.media.plan import SamplingBudget
from vidline.media.sampler import WindowFrames, sample_windows
from vidline.models import make_backend
from vidline.models.config import ModelConfig
from vidline.models.window import WindowAnalyzer
from vidline.synth import Marker, make_video
from vidline.types import Frame, Window

MARKERS = [Marker("red square", 2.0, 6.0), Marker("green circle", 9.0, 13.0)]
# never contacted: building a payload needs no I/O once the flavour is set. Not a nearby host (a
# server on this machine gets every clip x264-ultrafast: ``Backend.nearby``), so the streamed clip is
# encoded as the collected one
URL = "http://vllm.test:9/v1"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("s") / "v.mp4", duration=16.0, fps=10, size=(200, 150),
                      markers=MARKERS)


class Passes:
    """The decode passes of a run, as the number of windows each was asked for. Kept in a file, so a
    pass made in a forked decode worker process counts too."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, n: int) -> None:
        with open(self.path, "a") as f:  # one short O_APPEND write: whole lines from any process
            f.write(f"{n}\n")

    def read(self) -> list[int]:
        return [int(x) for x in self.path.read_text().split()] if self.path.exists() else []

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def __eq__(self, other: object) -> bool:
        return self.read() == other

    def __getitem__(self, k: Any) -> Any:
        return self.read()[k]

    def __repr__(self) -> str:
        return repr(self.read())


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Passes:
    """The decode passes of a run: how many windows each was asked for (in this process or a worker)."""
    import vidline.media.sampler as sampler

    seen = Passes(tmp_path / "passes.txt")
    real = sampler.stream_windows

    def counting(*a: Any, **k: Any) -> Any:
        seen.add(len(a[1]))
        return real(*a, **k)

    monkeypatch.setattr(sampler, "stream_windows", counting)
    return seen


def _window(video: Path, analyzer: WindowAnalyzer) -> WindowFrames:
    return next(sample_windows(video, [Window(0, 1.0, 15.0)], SamplingBudget(fps=2.0),
                               pixel_format=analyzer.pixel_format))


def _clip(payload: Any) -> tuple[list[int], list[np.ndarray], float]:
    """(PTS, pictures, stream rate) of the mp4 inside a built payload."""
    text = str(payload.messages)
    start = text.index("data:video/mp4;base64,") + len("data:video/mp4;base64,")
    import base64

    data = base64.b64decode(text[start:text.index("'", start)])
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        return [int(f.pts) for f in frames], [f.to_ndarray(format="rgb24") for f in frames], float(stream.average_rate)


def _same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Two x264 encodings of the same picture. Bit-exact is too strict: the same frames, settings and
    build give a clip that now and then differs by a level or two on a few blocks (measured: max
    difference 3, PSNR > 73 dB, about 1 process in 10; x264's float rate control, not the input).
    A wrong frame, order or burned-in time differs by far more (a burned digit: 255 on its pixels)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return a.shape == b.shape and int(diff.max()) <= 8 and float(diff.mean()) < 0.05


CONFIGS = {
    "vllm": {"backend": "openai", "base_url": URL, "model": "m", "server": "vllm"},
    "vllm-untrusted": {"backend": "openai", "base_url": URL, "model": "m", "server": "vllm",
                       "send_media_io_fps": False},
    "vllm-burned": {"backend": "openai", "base_url": URL, "model": "m", "server": "vllm", "burn_timestamps": True},
    "dashscope-compat": {"backend": "openai", "base_url": URL, "model": "m", "server": "dashscope-compat",
                         "mode": "video"},
    "generic-video": {"backend": "openai", "base_url": URL, "model": "m", "server": "generic", "mode": "video"},
    "dashscope-native-video": {"backend": "dashscope", "api_key": "k", "model": "m", "mode": "video"},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_streamed_clip_is_the_collected_clip(video: Path, name: str) -> None:
    analyzer = WindowAnalyzer(make_backend(ModelConfig(**CONFIGS[name])), "shapes")  # type: ignore[arg-type]
    wf = _window(video, analyzer)
    collected = analyzer.prepare(wf, release=False)
    handed: list[int] = []

    def one_by_one() -> Iterator[Frame]:
        for i, f in enumerate(wf.frames):
            handed.append(i)
            yield f

    streamed = analyzer.prepare_stream(wf.window, wf.plan, one_by_one())
    assert streamed is not None and streamed.released and handed == list(range(len(wf.frames)))
    a, b = collected.payload, streamed.payload
    assert (b.shape, b.extra_body, b.visual_tokens) == (a.shape, a.extra_body, a.visual_tokens)
    assert b.time_scale == pytest.approx(a.time_scale, abs=1e-12)
    assert streamed.settings == collected.settings
    pts_a, pics_a, rate_a = _clip(a)
    pts_b, pics_b, rate_b = _clip(b)
    assert pts_b == pts_a and len(pics_b) == len(wf.frames)
    assert all(_same_picture(x, y) for x, y in zip(pics_a, pics_b, strict=True))
    if name != "generic-video":  # grid clocks: the same rate (real clocks store the plan's fps)
        assert rate_b == rate_a
    # the text parts (prompt, times written for the model) are the same too
    assert str(b.messages).split("data:video/mp4")[0] == str(a.messages).split("data:video/mp4")[0]


def _mp4_bytes(payload: Any) -> bytes:
    import base64

    text = str(payload.messages)
    start = text.index("data:video/mp4;base64,") + len("data:video/mp4;base64,")
    return base64.b64decode(text[start:text.index("'", start)])


def test_an_urgent_streamed_clip_is_the_same_clip_encoded_faster(video: Path) -> None:
    """``urgent`` (a request slot waits for it) changes x264's preset (ultrafast: no CABAC), never what is
    sent: the same pictures at the same times, the same payload shape and estimate."""
    analyzer = WindowAnalyzer(make_backend(ModelConfig(**CONFIGS["vllm"])), "shapes")  # type: ignore[arg-type]
    wf = _window(video, analyzer)
    normal = analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames))
    urgent = analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames), urgent=True)
    assert normal is not None and urgent is not None
    a, b = normal.payload, urgent.payload
    assert (b.shape, b.extra_body, b.visual_tokens, b.time_scale) == (a.shape, a.extra_body, a.visual_tokens,
                                                                     a.time_scale)
    assert b"cabac=1" in _mp4_bytes(a) and b"cabac=0" in _mp4_bytes(b)  # x264's settings, written in the clip
    pts_a, pics_a, rate_a = _clip(a)
    pts_b, pics_b, rate_b = _clip(b)
    assert (pts_b, rate_b) == (pts_a, rate_a) and len(pics_b) == len(wf.frames)
    for x, y in zip(pics_a, pics_b, strict=True):  # the same pictures, up to the two encodings' losses
        assert float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()) < 3.0


FRAME_LISTS = {  # name: (config, sampling fps, window end)
    "vllm": ({"backend": "openai", "base_url": URL, "model": "m", "server": "vllm", "mode": "frames"}, 2.0, 15.0),
    # no per-request media_io_kwargs: vLLM keeps 32 frames of a list, so 42 are cut to 32 evenly
    "vllm-untrusted-42": ({"backend": "openai", "base_url": URL, "model": "m", "server": "vllm", "mode": "frames",
                           "send_media_io_fps": False}, 3.0, 15.0),
    "dashscope-compat": ({"backend": "openai", "base_url": URL, "model": "m", "server": "dashscope-compat",
                          "mode": "frames"}, 2.0, 15.0),
    "generic": ({"backend": "openai", "base_url": URL, "model": "m", "server": "generic"}, 2.0, 15.0),
    "generic-burned": ({"backend": "openai", "base_url": URL, "model": "m", "server": "generic",
                        "burn_timestamps": True}, 2.0, 15.0),
    "dashscope-native": ({"backend": "dashscope", "api_key": "k", "model": "m"}, 2.0, 15.0),
    "dashscope-native-burned": ({"backend": "dashscope", "api_key": "k", "model": "m", "burn_timestamps": True},
                                2.0, 15.0),
    # two frames: DashScope wants at least 4, so the last one is repeated (each copy burned with its time)
    "dashscope-native-2-burned": ({"backend": "dashscope", "api_key": "k", "model": "m", "burn_timestamps": True},
                                  2.0, 2.0),
}


@pytest.mark.parametrize("name", list(FRAME_LISTS))
def test_streamed_frame_list_is_the_collected_list(video: Path, name: str) -> None:
    """``frames`` mode: each frame is compressed to JPEG as it arrives; the request is byte for byte
    the one the collected frames give (JPEG is deterministic), including the frames kept for a
    server's frame-count limits, their clock and the times written or burned for the model."""
    cfg, fps, end = FRAME_LISTS[name]
    analyzer = WindowAnalyzer(make_backend(ModelConfig(**cfg)), "shapes")  # type: ignore[arg-type]
    wf = next(sample_windows(video, [Window(0, 1.0, end)], SamplingBudget(fps=fps),
                             pixel_format=analyzer.pixel_format))
    assert analyzer.pixel_format == "rgb24"
    collected = analyzer.prepare(wf, release=False)
    taken: list[Frame] = []

    def one_by_one() -> Iterator[Frame]:
        for f in wf.frames:
            taken.append(f)
            yield f

    streamed = analyzer.prepare_stream(wf.window, wf.plan, one_by_one())
    assert streamed is not None and streamed.released and len(taken) == len(wf.frames)
    a, b = collected.payload, streamed.payload
    assert b.messages == a.messages and b.extra_body == a.extra_body
    assert (b.shape, b.visual_tokens, b.media_bytes) == (a.shape, a.visual_tokens, a.media_bytes)
    assert b.time_scale == pytest.approx(a.time_scale, abs=1e-12)
    assert streamed.settings == collected.settings
    sent = str(b.messages).count("/9j/")  # one base64 JPEG start per frame sent
    expected = {"vllm-untrusted-42": 32, "dashscope-native-2-burned": 4}.get(name, len(wf.frames))
    assert len(wf.frames) == {"vllm-untrusted-42": 42, "dashscope-native-2-burned": 2}.get(name, 28)
    assert sent == expected


def test_a_backend_that_cannot_say_its_encoding_is_not_streamed(video: Path) -> None:
    backend = make_backend(ModelConfig(backend="openai", base_url=URL, model="m", server="generic"))
    backend.stream_encoding = lambda request: None  # type: ignore[method-assign]
    analyzer = WindowAnalyzer(backend, None)

    def untouchable() -> Iterator[Frame]:
        raise AssertionError("the frames must be left for prepare()")
        yield  # pragma: no cover

    wf = _window(video, analyzer)
    assert analyzer.prepare_stream(wf.window, wf.plan, untouchable()) is None


def test_streamed_frame_list_refused_over_the_limit_or_short_of_frames(video: Path) -> None:
    small = ModelConfig(backend="dashscope", api_key="k", model="m", max_data_uri_bytes=500)
    analyzer = WindowAnalyzer(make_backend(small), None)
    wf = _window(video, analyzer)
    with pytest.raises(StalePayloadError, match="data-URI limit"):
        analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames))


@pytest.mark.parametrize(("name", "window", "fps", "handed", "ok"), [
    # vLLM's 32 of 42 are laid out for 42: one frame short, the layout is wrong
    ("vllm-untrusted-42", Window(0, 1.0, 15.0), 3.0, 41, False),
    # no limit for 28 frames nor for 27: the 27 that came are the list (the run drops a short window
    # anyway and encodes it again from a second decode)
    ("dashscope-native", Window(0, 1.0, 15.0), 2.0, 27, True),
    # 5 planned, 3 came: DashScope would need the last one repeated
    ("dashscope-native", Window(0, 1.0, 3.0), 2.0, 3, False),
    ("dashscope-native-2-burned", Window(0, 1.0, 2.0), 2.0, 1, False),
])
def test_streamed_frame_list_short_of_frames(video: Path, name: str, window: Window, fps: float, handed: int,
                                             ok: bool) -> None:
    cfg = FRAME_LISTS[name][0]
    analyzer = WindowAnalyzer(make_backend(ModelConfig(**cfg)), None)  # type: ignore[arg-type]
    wf = next(sample_windows(video, [window], SamplingBudget(fps=fps), pixel_format="rgb24"))
    assert len(wf.frames) > handed
    if ok:
        streamed = analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames[:handed]))
        assert streamed is not None and str(streamed.payload.messages).count("/9j/") == handed
    else:
        with pytest.raises(StalePayloadError, match=f"{handed} of the window's {len(wf.frames)} frames"):
            analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames[:handed]))


def test_streamed_clip_over_the_limit_is_refused(video: Path) -> None:
    cfg = ModelConfig(backend="openai", base_url=URL, model="m", server="vllm", max_data_uri_bytes=3000)
    analyzer = WindowAnalyzer(make_backend(cfg), None)
    wf = _window(video, analyzer)
    with pytest.raises(StalePayloadError, match="data-URI limit"):
        analyzer.prepare_stream(wf.window, wf.plan, iter(wf.frames))
    with pytest.raises(StalePayloadError, match="no frame"):
        analyzer.prepare_stream(wf.window, wf.plan, iter([]))


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "threads"])
def test_run_decodes_a_refused_streamed_window_again(refserver: RefServer, video: Path, calls: Passes,
                                                     processes: bool) -> None:
    """Over the data-URI limit, the run decodes the window a second time and sends the collected
    clip at lower quality; the events are right."""
    from vidline.pipeline import analyze

    kw = {"base_url": refserver.openai_base_url, "api_key": "sk-test", "model": refserver.model, "server": "vllm"}
    small = analyze(video, window=8.0, overlap=2.0, fps=2.0, cache=False, decoders=1, processes=processes, **kw)
    assert calls == [len(small.windows)] and all(w.status == "ok" for w in small.windows)
    calls.clear()
    cfg = ModelConfig(backend="openai", max_data_uri_bytes=6000, **kw)  # type: ignore[arg-type]
    tl = analyze(video, config=cfg, window=8.0, overlap=2.0, fps=2.0, cache=False, decoders=1, processes=processes)
    assert calls[0] == len(tl.windows) and calls[1:] == [1] * len(tl.windows)  # one more decode per window
    assert all(w.status == "ok" for w in tl.windows)
    spans = [(e.label, round(e.start), round(e.end)) for e in tl.events]
    assert spans == [(e.label, round(e.start), round(e.end)) for e in small.events]
    assert [(m.label, m.start, m.end) for m in MARKERS] == [(lab, float(s), float(e)) for lab, s, e in spans]


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "threads"])
def test_timeline_of_a_truncated_file_streams_what_exists(refserver: RefServer, tmp_path: Path,
                                                           calls: Passes, processes: bool) -> None:
    """The file ends inside a window: that window's streamed clip is dropped and the window is encoded
    from a second decode (an even count of the frames that exist); the windows before are streamed,
    the ones after fail as not decoded; nothing raises."""
    from vidline.pipeline import analyze

    # Matroska: the header still claims the full length, so windows are planned past the cut
    full = make_video(tmp_path / "full.mkv", duration=16.0, fps=10, size=(200, 150), markers=MARKERS, gop=10)
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    import logging

    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("vidline").addHandler(handler)
    try:
        tl = analyze(cut, window=5.0, overlap=1.0, fps=2.0, cache=False, base_url=refserver.openai_base_url,
                     api_key="sk-test", model=refserver.model, server="vllm", decoders=1, processes=processes)
    finally:
        logging.getLogger("vidline").removeHandler(handler)
    status = [w.status for w in tl.windows]
    assert status[0] == "ok" and "failed" in status and tl.partial
    ok = [w for w in tl.windows if w.status == "ok"]
    assert all(w.frames % 2 == 0 for w in ok)
    assert ok[-1].frames < ok[0].frames  # the cut window: only the frames that exist
    assert calls == [len(tl.windows), 1]  # one second decode: the cut window
    assert all(w.error == "window was not decoded" for w in tl.windows if w.status == "failed")
    # the file's end is reported once (a worker process's warning through this process's handlers),
    # not again by the second decode of the cut window
    assert len([w for w in warnings if "decoding stopped" in w]) == 1
    # a cached re-run reports the frames that were sent, not the planned ones
    opts: dict[str, Any] = {"window": 5.0, "overlap": 1.0, "fps": 2.0, "base_url": refserver.openai_base_url,
                            "api_key": "sk-test", "model": refserver.model, "server": "vllm", "processes": processes}
    first = analyze(cut, cache=tmp_path / "cache", **opts)
    again = analyze(cut, cache=tmp_path / "cache", **opts)
    assert {w.status for w in again.windows if w.status != "failed"} == {"cached"}
    assert [w.frames for w in again.windows if w.status == "cached"] == [w.frames for w in first.windows
                                                                        if w.status == "ok"]


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "threads"])
@pytest.mark.parametrize("flavour", ["dashscope", "vllm-frames"])
def test_run_streams_frame_lists_in_one_decode_with_few_frames_alive(
        refserver: RefServer, video: Path, monkeypatch: pytest.MonkeyPatch, flavour: str, processes: bool,
        tmp_path: Path) -> None:
    """A ``frames``-mode timeline compresses each frame as it is decoded: one decode pass (no window
    refused and decoded again), the events right, and far fewer frames alive at once than a window
    has (a collected window holds all of its frames until it is encoded). The frames alive are
    counted in the process that decodes (a worker writes its peak to a file)."""
    import threading
    import weakref

    import vidline.media.sampler as sampler
    from vidline.pipeline import analyze

    lock = threading.Lock()
    alive = {"now": 0, "peak": 0, "passes": 0}
    real = sampler.stream_windows
    record = tmp_path / "alive.txt"

    def gone() -> None:
        with lock:
            alive["now"] -= 1

    def tracking(*a: Any, **k: Any) -> Iterator[tuple[int, Frame | None]]:
        alive["passes"] += 1
        for i, frame in real(*a, **k):
            if frame is not None:
                with lock:
                    alive["now"] += 1
                    alive["peak"] = max(alive["peak"], alive["now"])
                weakref.finalize(frame, gone)
            yield i, frame
            del frame
        record.write_text(f"{alive['passes']} {alive['peak']}")

    monkeypatch.setattr(sampler, "stream_windows", tracking)
    if flavour == "dashscope":
        cfg = ModelConfig("dashscope", base_url=refserver.dashscope_base_url, api_key="sk-test", model=refserver.model)
    else:
        cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", model=refserver.model,
                          server="vllm", mode="frames")
    tl = analyze(video, config=cfg, window=8.0, overlap=1.0, fps=5.0, cache=False, decoders=1, concurrency=1,
                 processes=processes)
    assert all(w.status == "ok" for w in tl.windows) and len(tl.windows) >= 2
    passes, peak = (int(x) for x in record.read_text().split())
    alive["peak"] = peak
    assert passes == 1  # every streamed list was used
    per_window = max(w.frames for w in tl.windows)
    assert per_window >= 30
    assert alive["peak"] <= 20  # the frame budget (overlap 5 + 1 + 8) and the frames in hand
    assert [(e.label, round(e.start), round(e.end)) for e in tl.events] == [
        (m.label, round(m.start), round(m.end)) for m in MARKERS]
