"""Decode lanes as worker processes (``vidline.workers``): the worker's loop over a decode pass, the
errors and log records it hands to the run, a worker that dies, and a run whose lanes are processes
giving the timeline that thread lanes give."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vidline.errors import (
    AnswerParseError,
    AuthenticationError,
    DecodeError,
    ServerError,
    StalePayloadError,
    UnsupportedVideoError,
    VidlineError,
)
from vidline.models.base import nearby_host
from vidline.models.payload import EncodedVideo, EncodeOptions, StreamSpec
from vidline.synth import Marker, make_video
from vidline.types import Frame, Window
from vidline.workers import (
    CLIP,
    FAILED,
    DecodeWorker,
    WindowChunks,
    encode_windows,
    portable,
    processes_available,
)

needs_fork = pytest.mark.skipif(not processes_available(), reason="decode worker processes need fork (Linux)")


def _frame(t: float, value: int = 0) -> Frame:
    return Frame(t=t, image=np.full((56, 84, 3), value, np.uint8))


def _spec(origin: float, preset: str = "ultrafast") -> StreamSpec:
    return StreamSpec(2.0, origin, "vllm", "video", EncodeOptions(), 4, preset)


# -------------------------------------------------------------------------------- the worker's loop

def test_encode_windows_encodes_overlapping_windows_as_their_frames_come() -> None:
    # windows 0 [0, 2) and 1 [1, 3) overlap: their frames interleave, each window ends with (i, None)
    events = [(0, _frame(0.0)), (0, _frame(0.5)), (0, _frame(1.0)), (1, _frame(1.0)), (0, _frame(1.5)),
              (0, None), (1, _frame(1.5)), (1, _frame(2.0)), (1, _frame(2.5)), (1, None), (2, None)]
    asked: list[int] = []
    told: list[tuple[Any, ...]] = []

    def ask(i: int) -> StreamSpec:
        asked.append(i)
        return _spec(float(i))

    assert encode_windows(iter(events), ask, told.append) is True
    assert asked == [0, 1]  # once per window, at its first frame; window 2 had none: never asked
    assert [(m[0], m[1], m[3]) for m in told] == [(CLIP, 0, 4), (CLIP, 1, 4)]
    for message in told:
        clip = message[2]
        assert isinstance(clip, EncodedVideo) and clip.kind == "mp4" and clip.n_frames == 4
        assert b"cabac=0" in clip.data[0]  # the spec's preset (ultrafast) was used
        pickle.loads(pickle.dumps(clip))  # it crosses the pipe


def test_encode_windows_reports_a_failed_window_and_drops_its_later_frames() -> None:
    bad = Frame(t=0.5, image=np.zeros((40, 60, 3), np.uint8))  # another size than the clip's first frame
    events = [(0, _frame(0.0)), (1, _frame(0.0)), (0, bad), (0, _frame(1.0)), (0, None), (1, _frame(0.5)),
              (1, None)]
    told: list[tuple[Any, ...]] = []
    calls = {"add": 0}

    import vidline.models.payload as payload

    class Picky(payload.StreamedVideo):
        def add(self, frame: Frame) -> None:
            calls["add"] += 1
            if frame.image.shape[0] == 40:
                raise ValueError("frame size changed")
            super().add(frame)

    mp = pytest.MonkeyPatch()
    mp.setattr("vidline.workers.open_stream", lambda spec: Picky(spec.fps, spec.origin, spec.flavour, spec.opts))
    try:
        assert encode_windows(iter(events), lambda i: _spec(0.0), told.append)
    finally:
        mp.undo()
    assert [(m[0], m[1]) for m in told] == [(FAILED, 0), (CLIP, 1)]
    assert isinstance(told[0][2], ValueError) and "frame size changed" in str(told[0][2])
    assert calls["add"] == 4  # window 0's frame after the failure was not fed


def test_encode_windows_stops_when_the_run_answers_none() -> None:
    told: list[tuple[Any, ...]] = []
    events = iter([(0, _frame(0.0)), (0, None), (1, _frame(1.0)), (1, None)])
    answers = iter([_spec(0.0), None])
    assert encode_windows(events, lambda i: next(answers), told.append) is False
    assert [(m[0], m[1]) for m in told] == [(CLIP, 0)]


# -------------------------------------------------------------------------------- stretches of windows

@pytest.mark.parametrize(("windows", "workers", "chunks"), [
    (32, 2, 8),  # the bench hour: 4 stretches of 4 windows per worker
    (32, 1, 1),  # one worker: one pass, no extra seek
    (9, 2, 2),  # too few windows for more than one stretch of 4 each per worker
    (12, 2, 3),
    (100, 2, 8),
    (100, 4, 16),
    (3, 2, 2),
])
def test_chunk_count(windows: int, workers: int, chunks: int) -> None:
    from vidline.pipeline import chunk_count

    assert chunk_count(windows, workers) == chunks


def test_window_chunks_are_handed_out_in_order_once_each_across_threads() -> None:
    import threading

    stretches = [[Window(i * 4 + k, float(i * 4 + k), float(i * 4 + k + 1)) for k in range(4)] for i in range(50)]
    chunks = WindowChunks(stretches)
    taken: list[tuple[int, list[Window]]] = []
    lock = threading.Lock()

    def worker() -> None:
        while (chunk := chunks.take()) is not None:
            with lock:
                taken.append(chunk)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(offset for offset, _ in taken) == list(range(0, 200, 4))
    for offset, windows in taken:  # a window's place is its offset + its position in the stretch
        assert [w.index for w in windows] == list(range(offset, offset + 4))
    assert chunks.take() is None


# -------------------------------------------------------------------------------- what crosses the pipe

@pytest.mark.parametrize("exc", [
    DecodeError("/v/a.mp4", "corrupt packet at 12.0 s"),
    UnsupportedVideoError("/v/b.mp4", "frames of 10000x20 are over 200:1"),
    AuthenticationError("openai: HTTP 401: bad key", status=401),
    ServerError("openai: HTTP 503", status=503, retryable=True),
    StalePayloadError("the streamed payload is over the data-URI limit"),
    AnswerParseError("no JSON in the answer", raw="{oops"),
])
def test_vidline_errors_survive_pickling_with_their_attributes(exc: VidlineError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.__dict__ == exc.__dict__
    assert portable(exc) is exc


def test_an_error_that_cannot_be_pickled_becomes_a_runtime_error_with_its_text() -> None:
    class Odd(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"odd {a} {b}")

    out = portable(Odd(1, 2))
    assert isinstance(out, RuntimeError) and str(out) == "Odd: odd 1 2"


# -------------------------------------------------------------------------------- nearby servers

@pytest.mark.parametrize(("url", "nearby"), [
    ("http://127.0.0.1:8000/v1", True),
    ("http://localhost:8000/v1", True),
    ("http://[::1]:8000/v1", True),
    ("http://10.1.2.3/v1", True),
    ("http://192.168.1.20:8000/v1", True),
    ("http://172.16.0.5/v1", True),
    ("http://169.254.1.1/v1", True),
    ("http://gpu-box.local:8000/v1", True),
    ("127.0.0.1:8000", True),  # no scheme
    ("https://dashscope.aliyuncs.com/compatible-mode/v1", False),
    ("https://api.openai.com/v1", False),
    ("http://8.8.8.8/v1", False),
    ("http://vllm.internal.example/v1", False),  # a name would need a lookup: not assumed near
    (None, False),
    ("", False),
    ("http://[bad/v1", False),
])
def test_nearby_host(url: str | None, nearby: bool) -> None:
    assert nearby_host(url) is nearby


def test_a_nearby_servers_clips_are_encoded_with_the_fastest_preset() -> None:
    from vidline.media.plan import SamplingPlan
    from vidline.models import make_backend
    from vidline.models.config import ModelConfig
    from vidline.models.window import WindowAnalyzer

    plan = SamplingPlan(start=0.0, end=2.0, fps=2.0, timestamps=(0.0, 0.5, 1.0, 1.5), width=84, height=56)
    presets = {}
    for url in ("http://127.0.0.1:9/v1", "https://vllm.example.com/v1"):
        analyzer = WindowAnalyzer(make_backend(ModelConfig("openai", base_url=url, model="m", server="vllm")), None)
        spec = analyzer.stream_spec(Window(0, 0.0, 2.0), plan)
        urgent = analyzer.stream_spec(Window(0, 0.0, 2.0), plan, urgent=True)
        assert spec is not None and urgent is not None
        presets[url] = (spec.preset, urgent.preset)
    assert presets == {"http://127.0.0.1:9/v1": ("ultrafast", "ultrafast"),
                       "https://vllm.example.com/v1": ("superfast", "ultrafast")}


# -------------------------------------------------------------------------------- real worker processes

@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("workers")
    return make_video(d / "w.mp4", duration=12.0, fps=10, size=(160, 120),
                      markers=[Marker("red square", 2.0, 5.0), Marker("green circle", 7.0, 10.0)], gop=10)


def _worker(video: Path, decoder: Any, windows: list[Window]) -> DecodeWorker:
    from vidline.media.plan import SamplingBudget
    from vidline.media.probe import probe

    return DecodeWorker(decoder, video, probe(video), WindowChunks([windows]), SamplingBudget(fps=2.0), "yuv420p", 1,
                        "test-worker")


@needs_fork
def test_a_worker_process_decodes_and_encodes_its_windows(small_video: Path) -> None:
    from vidline.media.sampler import stream_windows

    windows = [Window(0, 0.0, 6.0), Window(1, 5.0, 12.0)]
    worker = _worker(small_video, stream_windows, windows)
    clips = {}
    try:
        for message in worker.messages():
            if message[0] == "spec":
                worker.reply(_spec(windows[message[1]].start))
            else:
                assert message[0] == CLIP
                clips[message[1]] = message[3]
    finally:
        worker.stop()
    assert clips == {0: 12, 1: 14}  # 2 fps over [0, 6) and [5, 12)
    assert worker.process.exitcode == 0


def _dies(*_a: Any, **_k: Any) -> Iterator[tuple[int, Frame | None]]:
    os._exit(7)
    yield 0, None  # pragma: no cover


def _fails(*_a: Any, **_k: Any) -> Iterator[tuple[int, Frame | None]]:
    logging.getLogger("vidline").warning("decoding stopped at 3.0 s of 12.0 s: the file is cut")
    raise DecodeError("w.mp4", "corrupt data at 3.0 s")
    yield 0, None  # pragma: no cover


@needs_fork
def test_a_worker_that_dies_is_a_decode_error_naming_the_file(small_video: Path) -> None:
    worker = _worker(small_video, _dies, [Window(0, 0.0, 6.0)])
    try:
        with pytest.raises(DecodeError, match=r"w\.mp4: the decoding process stopped unexpectedly \(exit code 7\)"):
            list(worker.messages())
    finally:
        worker.stop()


@needs_fork
def test_a_workers_error_and_warnings_reach_the_run(small_video: Path, caplog: pytest.LogCaptureFixture) -> None:
    worker = _worker(small_video, _fails, [Window(0, 0.0, 6.0)])
    try:
        with caplog.at_level(logging.WARNING, logger="vidline"), pytest.raises(DecodeError, match="corrupt data"):
            list(worker.messages())
    finally:
        worker.stop()
    assert [r.getMessage() for r in caplog.records] == ["decoding stopped at 3.0 s of 12.0 s: the file is cut"]


@needs_fork
def test_stopping_a_busy_worker_ends_its_process(small_video: Path) -> None:
    from vidline.media.sampler import stream_windows

    worker = _worker(small_video, stream_windows, [Window(0, 0.0, 6.0), Window(1, 5.0, 12.0)])
    first = next(worker.messages())  # it waits for the spec of window 0
    assert first == ("spec", 0)
    worker.stop()
    assert not worker.process.is_alive()


@needs_fork
@pytest.mark.parametrize("stretches", ["one per worker", "one window each"])
def test_process_lanes_and_thread_lanes_give_the_same_timeline(refserver: Any, small_video: Path,
                                                               monkeypatch: pytest.MonkeyPatch, stretches: str) -> None:
    import vidline.pipeline
    import vidline.workers as workers
    from vidline.models.config import ModelConfig
    from vidline.pipeline import analyze

    if stretches == "one window each":  # 8 windows: 8 stretches handed out to the two workers as they ask
        monkeypatch.setattr(vidline.pipeline, "MIN_WINDOWS_PER_LANE", 1)
        monkeypatch.setattr(vidline.pipeline, "CHUNKS_PER_WORKER", 100)
    refserver.configure(latency=0.0)
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key="sk-test", model=refserver.model,
                      server="vllm")
    before = len(refserver.generation_requests)
    started: dict[bool, int] = {}
    real_start = workers.DecodeWorker.__init__
    runs = {}
    for p in (True, False):
        started[p] = 0

        def counting(self: Any, *a: Any, _p: bool = p, **k: Any) -> None:
            started[_p] += 1
            real_start(self, *a, **k)

        mp = pytest.MonkeyPatch()
        mp.setattr(workers.DecodeWorker, "__init__", counting)
        try:
            runs[p] = analyze(small_video, config=cfg, window=2.0, overlap=0.5, fps=2.0, cache=False, decoders=2,
                              processes=p)
        finally:
            mp.undo()
    assert started == {True: 2, False: 0}  # two worker processes, or none
    assert len(refserver.generation_requests) - before == 2 * len(runs[True].windows)
    for tl in runs.values():
        assert not tl.partial and all(w.status == "ok" for w in tl.windows)
        assert [e.label for e in tl.events] == ["red square", "green circle"]
    a, b = runs[True], runs[False]
    assert [(w.index, w.frames, w.estimated_tokens) for w in a.windows] == [
        (w.index, w.frames, w.estimated_tokens) for w in b.windows]
    for x, y in zip(a.events, b.events, strict=True):
        assert (x.label, x.windows) == (y.label, y.windows)
        assert x.start == pytest.approx(y.start, abs=0.05) and x.end == pytest.approx(y.end, abs=0.05)


def _breaks_after_a_window(path: Any, windows: Any, budget: Any, **kwargs: Any) -> Iterator[tuple[int, Frame | None]]:
    """The real decode pass of a lane's first window, then a decode error (a corrupt stretch)."""
    from vidline.media.sampler import stream_windows

    for i, frame in stream_windows(path, windows, budget, **kwargs):
        if i > 0:
            raise DecodeError(path, "corrupt data at 6.0 s")
        yield i, frame


@needs_fork
@pytest.mark.parametrize("fault", ["decode error", "wrong key"])
def test_a_run_with_worker_processes_stops_at_once_with_the_first_error(
        refserver: Any, small_video: Path, fault: str) -> None:
    """A worker's decode error, or a 401 from the server, ends the run with that error: the other
    workers are stopped at once (none left running), not waited for."""
    import multiprocessing
    import time

    from vidline.errors import AuthenticationError
    from vidline.models.config import ModelConfig
    from vidline.pipeline import ModelRun, RunOptions
    from vidline.progress import Progress

    refserver.configure(latency=0.0)
    key = "sk-test" if fault == "decode error" else "wrong-key"
    cfg = ModelConfig("openai", base_url=refserver.openai_base_url, api_key=key, model=refserver.model, server="vllm")
    decoder = _breaks_after_a_window if fault == "decode error" else None
    run = ModelRun(small_video, None, cfg, RunOptions(window=2.0, overlap=0.5, fps=2.0, decoders=2),
                   Progress(enabled=False), decoder=decoder)
    t0 = time.monotonic()
    with pytest.raises(DecodeError if fault == "decode error" else AuthenticationError) as info:
        run.execute()
    assert time.monotonic() - t0 < 10
    assert ("corrupt data at 6.0 s" if fault == "decode error" else "401") in str(info.value)
    assert not multiprocessing.active_children()


@needs_fork
def test_a_worker_process_sets_its_own_malloc_thresholds(small_video: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import vidline.workers as workers
    from vidline.media.sampler import stream_windows

    seen = tmp_path / "thresholds.txt"
    monkeypatch.setattr(workers, "tune_allocator", lambda mmap, trim: seen.write_text(f"{mmap} {trim}") and [])
    worker = _worker(small_video, stream_windows, [Window(0, 0.0, 2.0)])
    try:
        for message in worker.messages():
            if message[0] == "spec":
                worker.reply(_spec(0.0))
    finally:
        worker.stop()
    assert seen.read_text() == f"{2 << 20} {2 << 20}"  # in the worker, not in this process


@pytest.mark.parametrize("value", ["no", 0, None])
def test_processes_must_be_a_bool(small_video: Path, value: object) -> None:
    from vidline.errors import ConfigError
    from vidline.pipeline import analyze

    with pytest.raises(ConfigError, match="processes must be True or False"):
        analyze(small_video, base_url="http://127.0.0.1:9/v1", model="m", processes=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "nice"), [(None, 10), ("0", 0), ("3", 3)])
def test_worker_nice_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                     nice: int) -> None:
    from vidline.workers import worker_nice

    if value is None:
        monkeypatch.delenv("VIDLINE_WORKER_NICE", raising=False)
    else:
        monkeypatch.setenv("VIDLINE_WORKER_NICE", value)
    assert worker_nice() == nice


@needs_fork
def test_a_bad_worker_nice_is_one_config_error_before_any_fork(refserver: Any, small_video: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing

    from vidline.errors import ConfigError
    from vidline.pipeline import analyze

    monkeypatch.setenv("VIDLINE_WORKER_NICE", "high")
    with pytest.raises(ConfigError, match="VIDLINE_WORKER_NICE must be an integer, got 'high'"):
        analyze(small_video, base_url=refserver.openai_base_url, api_key="sk-test", model=refserver.model,
                server="vllm", cache=False, window=4.0, overlap=1.0)
    assert not multiprocessing.active_children()
