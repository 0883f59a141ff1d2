"""Sampling against generated ground truth. The conformance table runs on every available backend."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest

from tests.fixtures.media import SynthVideo, clock_markers
from vidline.errors import ConfigError
from vidline.media import source as source_mod
from vidline.media.backends.pyav import PyAVSource
from vidline.media.plan import SamplingBudget
from vidline.media.probe import probe
from vidline.media.sampler import plan_for, sample, sample_windows
from vidline.media.source import Target, available_backends, open_source
from vidline.media.windows import plan_windows
from vidline.synth import Marker, active_labels, detect_markers
from vidline.types import Frame

BACKENDS = available_backends()


def _marker_centre(img: np.ndarray, color: tuple[int, int, int]) -> tuple[float, float]:
    mask = np.abs(img.astype(int) - np.array(color)).max(axis=2) < 60
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "marker not found"
    return xs.mean() / img.shape[1], ys.mean() / img.shape[0]


def _check_times(frames: Sequence[Frame], video: SynthVideo, targets: Sequence[float]) -> None:
    assert len(frames) == len(targets)
    for f, t in zip(frames, targets, strict=False):
        best = min(abs(ft - t) for ft in video.frame_times)
        # the written frame nearest the target (either one on an exact tie)
        allowed = [ft for ft in video.frame_times if abs(ft - t) <= best + 1e-4]
        assert any(abs(f.t - ft) < 1e-3 for ft in allowed), f"target {t}: got {f.t}, expected {allowed}"
        assert f.pts == round((f.t + video.start_time) * 90000)


# ---- conformance table: (fixture, fps) -> frame times equal to the written PTS nearest each target
CASES = [
    ("cfr_video", 2.0),
    ("cfr_video", 0.5),
    ("vfr_video", 1.0),
    ("vfr_video", 7.0),
    ("offset_video", 2.0),
    ("long_video", 0.1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("fixture", "fps"), CASES)
def test_conformance_times_and_content(
    request: pytest.FixtureRequest, backend: str, fixture: str, fps: float
) -> None:
    video: SynthVideo = request.getfixturevalue(fixture)
    budget = SamplingBudget(fps=fps, max_fps=max(fps, 2.0))
    frames = list(sample(video.path, budget, backend=backend))
    plan = plan_for(probe(video.path), budget)
    _check_times(frames, video, plan.timestamps)
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (plan.height, plan.width, 3)
        if video.markers:
            assert detect_markers(f.image) == active_labels(video.markers, f.t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_read_targets(cfr_video: SynthVideo, backend: str) -> None:
    info = probe(cfr_video.path)
    ts = [0.0, 0.04, 0.05, 0.06, 0.06, 1.23, 3.95, 3.99]
    with open_source(cfr_video.path, info, backend) as src:
        frames = list(src.read([Target(t, 160, 120) for t in ts]))
    _check_times(frames, cfr_video, ts)
    assert all(f.image.shape == (120, 160, 3) for f in frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_rotation_upright(rotated_video: SynthVideo, backend: str) -> None:
    frames = list(sample(rotated_video.path, SamplingBudget(fps=2.0), backend=backend, size=(320, 240)))
    assert frames and all(f.image.shape == (240, 320, 3) for f in frames)
    x, y = _marker_centre(frames[0].image, (220, 30, 30))
    assert x == pytest.approx(0.2, abs=0.03) and y == pytest.approx(0.2, abs=0.03)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_portrait(portrait_video: SynthVideo, backend: str) -> None:
    frames = list(sample(portrait_video.path, SamplingBudget(fps=2.0), backend=backend))
    h, w = frames[0].image.shape[:2]
    assert h > w and h % 28 == 0 and w % 28 == 0
    x, y = _marker_centre(frames[0].image, (220, 30, 30))
    assert x == pytest.approx(0.5, abs=0.03) and y == pytest.approx(0.15, abs=0.03)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_keyframes(cfr_video: SynthVideo, backend: str) -> None:
    frames = list(sample(cfr_video.path, keyframes_only=True, backend=backend, size=(64, 48)))
    assert [round(f.t, 3) for f in frames] == [0.0, 1.0, 2.0, 3.0]  # gop=10 at 10 fps


@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_truncated(
    truncated_mkv_video: SynthVideo, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vidline"):
        frames = list(sample(truncated_mkv_video.path, SamplingBudget(fps=5.0, max_fps=5.0), backend=backend))
    assert 2 <= len(frames) < 20
    for f in frames:
        assert any(abs(f.t - ft) < 1e-3 for ft in truncated_mkv_video.frame_times)
    warnings = [r for r in caplog.records if "decoding stopped at" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{frames[-1].t:.3f}" in warnings[0].getMessage() or len(frames) >= 1


def test_truncated_mp4_decodes_prefix(truncated_video: SynthVideo, caplog: pytest.LogCaptureFixture) -> None:
    info = probe(truncated_video.path)
    budget = SamplingBudget(fps=10.0, max_fps=10.0)
    with caplog.at_level(logging.WARNING, logger="vidline"):
        frames = list(sample(truncated_video.path, budget))
    assert frames and frames[-1].t <= info.duration
    _check_times(frames, truncated_video, plan_for(info, budget).timestamps)
    assert sum("decoding stopped at" in r.getMessage() for r in caplog.records) == 1


def test_gray(cfr_video: SynthVideo) -> None:
    frames = list(sample(cfr_video.path, SamplingBudget(fps=1.0), size=(64, 48), gray=True))
    assert frames[0].image.shape == (48, 64)


def test_sample_is_a_lazy_generator(cfr_video: SynthVideo) -> None:
    it = sample(cfr_video.path)
    assert isinstance(it, types.GeneratorType)
    first = next(it)
    assert first.t == 0.0
    it.close()


def test_missing_decord_gives_config_error(monkeypatch: pytest.MonkeyPatch, cfr_video: SynthVideo) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="decord"):
        open_source(cfr_video.path, probe(cfr_video.path), "decord")
    with pytest.raises(ConfigError, match="unknown decoding backend"):
        open_source(cfr_video.path, probe(cfr_video.path), "opencv")


# ---- strategy: keyframe-aware seeking gives the same frames as a full pass, for less decoding
def test_seeking_matches_sequential_and_decodes_less(long_video: SynthVideo) -> None:
    info = probe(long_video.path)
    targets = [Target(t, 64, 48) for t in np.arange(0, 630, 37.0)]  # sparser than the 10 s keyframes
    seq = PyAVSource(long_video.path, info, strategy="sequential")
    auto = PyAVSource(long_video.path, info, strategy="auto")
    a = list(seq.read(targets))
    b = list(auto.read(targets))
    assert [f.t for f in a] == [f.t for f in b]
    assert [f.t for f in b] == pytest.approx([long_video.nearest_frame_time(t.t) for t in targets], abs=1e-3)
    assert auto.stats["seeks"] > 0
    assert auto.stats["decoded"] < seq.stats["decoded"] / 3


# cfr_video: 10 fps, a keyframe every second. (targets, seeks expected): a seek is made when the last
# keyframe at or before the next target lies MIN_SKIP_FRAMES (3) or more frames past the frame decoded last
SEEK_TABLE = [
    # 2 targets a second: after x.5 the keyframe at x+1 is 5 frames ahead -> the GOP's tail is skipped
    pytest.param(np.arange(0, 4, 0.5), 3, id="half-second-targets-skip-gop-tails"),
    # one target a second just after each keyframe: the rest of every GOP is skipped
    pytest.param(np.arange(0.05, 4, 1.0), 3, id="one-per-gop"),
    # one target a frame before each keyframe: the keyframe is 1 frame ahead, not worth a seek
    pytest.param(np.arange(0.9, 4, 1.0), 0, id="keyframe-too-close"),
    # every frame: nothing to skip
    pytest.param(np.arange(0, 4, 0.1), 0, id="every-frame"),
]


@pytest.mark.parametrize(("times", "seeks"), SEEK_TABLE)
def test_seeks_skip_gop_tails_only_when_worth_it(cfr_video: SynthVideo, times: np.ndarray, seeks: int) -> None:
    info = probe(cfr_video.path)
    targets = [Target(float(t), 64, 48) for t in times]
    seq = PyAVSource(cfr_video.path, info, strategy="sequential")
    auto = PyAVSource(cfr_video.path, info)
    a = list(seq.read(targets))
    b = list(auto.read(targets))
    assert [f.pts for f in b] == [f.pts for f in a]
    assert [f.t for f in b] == pytest.approx([cfr_video.nearest_frame_time(t.t) for t in targets], abs=1e-3)
    assert auto.stats["seeks"] == seeks
    if seeks:
        assert auto.stats["decoded"] < seq.stats["decoded"]
    else:
        assert auto.stats["decoded"] == seq.stats["decoded"]


@pytest.mark.parametrize("threads", [1, None])
def test_gop_tail_skipping_with_bframes(bframes_video: SynthVideo, threads: int | None) -> None:
    """Targets every second on 2-s GOPs with B-frames (decode order != display order), with and without
    frame threads: the GOP tails are skipped and every frame is still the one nearest its target."""
    info = probe(bframes_video.path)
    targets = [Target(float(t), 80, 60) for t in np.arange(0.0, 7.9, 1.0)]
    seq = PyAVSource(bframes_video.path, info, strategy="sequential", threads=threads)
    auto = PyAVSource(bframes_video.path, info, threads=threads)
    a = list(seq.read(targets))
    b = list(auto.read(targets))
    assert [f.pts for f in b] == [f.pts for f in a]
    _check_times(b, bframes_video, [t.t for t in targets])
    assert auto.stats["seeks"] > 0
    assert auto.stats["decoded"] < seq.stats["decoded"]


# Files whose keyframe times from the index are too early, or that have no index: a seek can land past
# its target, and the frames a full pass shows before the landing point were not decoded. The source
# seeks further back (stats "overshoots") and still gives every target the frame a full pass gives.
SEEK_FORMATS = [
    pytest.param("opengop.mp4", "libx264", {"x264-params": "open-gop=1:bframes=3"}, 20, id="h264-open-gop-mp4"),
    pytest.param("hevc.mp4", "libx265", {"x265-params": "log-level=error"}, 10, id="hevc-open-gop-mp4"),
    # qmax: at MPEG-4's default quality a marker that just went off leaves a visible ghost in B-frames
    pytest.param("mpeg4.avi", "mpeg4", {"bf": "2", "qmax": "4"}, 10, id="mpeg4-bframes-avi"),
    pytest.param("h264.ts", "libx264", {}, 10, id="h264-mpegts-no-index"),
    # with B-frames a seek to the first timestamp lands on the second keyframe: the start is opened again
    pytest.param("h264-longgop.ts", "libx264", {"x264-params": "bframes=3"}, 40, id="h264-mpegts-4s-gop-bframes"),
]


# more files for the backend table (PyAV's seeks never overshoot on these)
BACKEND_FORMATS = [
    *SEEK_FORMATS,
    pytest.param("opengop.mkv", "libx264", {"x264-params": "open-gop=1:bframes=3"}, 20, id="h264-open-gop-mkv"),
]

_FORMAT_VIDEOS: dict[str, SynthVideo] = {}


def format_video(make_synth_video: Callable[..., SynthVideo], name: str, codec: str, options: dict[str, str],
                 gop: int) -> SynthVideo:
    """12 s, 10 fps, 96x64 in the given container / codec, with a binary frame clock (made once per session)."""
    if codec not in av_codecs():
        pytest.skip(f"this PyAV build has no {codec} encoder")
    if name not in _FORMAT_VIDEOS:
        _FORMAT_VIDEOS[name] = make_synth_video(f"fmt-{name}", duration=12.0, fps=10, size=(96, 64), codec=codec,
                                                gop=gop, options=options, markers=clock_markers(12.0, 10))
    return _FORMAT_VIDEOS[name]


@pytest.mark.parametrize(("name", "codec", "options", "gop"), SEEK_FORMATS)
def test_seeking_exact_across_containers(make_synth_video: Callable[..., SynthVideo], name: str, codec: str,
                                         options: dict[str, str], gop: int) -> None:
    video = format_video(make_synth_video, name, codec, options, gop)
    path = video.path
    info = probe(path)
    overshoots = seeks = 0
    for step in (1.0, 0.7, 2.3):
        targets = [Target(float(t), 48, 32) for t in np.arange(0.02, 11.9, step)]
        full = list(PyAVSource(path, info, strategy="sequential").read(targets))
        assert [f.t for f in full] == pytest.approx([video.nearest_frame_time(t.t) for t in targets], abs=1e-3)
        for threads, strategy in ((1, "auto"), (None, "auto"), (1, "seek")):  # "seek": before every target
            src = PyAVSource(path, info, threads=threads, strategy=strategy)
            got = list(src.read(targets))
            assert [f.pts for f in got] == [f.pts for f in full], (step, threads, strategy, src.stats)
            seeks += src.stats["seeks"]
            overshoots += src.stats["overshoots"]
    assert seeks > 0 and overshoots > 0, (seeks, overshoots)  # the case is exercised


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "codec", "options", "gop"), BACKEND_FORMATS)
def test_backends_times_across_containers(make_synth_video: Callable[..., SynthVideo], backend: str, name: str,
                                          codec: str, options: dict[str, str], gop: int) -> None:
    """Every backend gives each target the written frame nearest it, in every container (decord reports
    no timestamps at all for AVI: its frames are timed by index and frame rate)."""
    video = format_video(make_synth_video, name, codec, options, gop)
    path = video.path
    times = [0.03, 0.72, 1.5, 2.31, 4.66, 5.04, 8.87, 11.5]
    got = list(sample(path, SamplingBudget(fps=1.0, max_frames=64), start=0.0, end=12.0,
                      backend=backend))
    assert len(got) >= 2
    src = open_source(path, probe(path), backend)
    try:
        frames = list(src.read([Target(t, 64, 48) for t in times]))
    finally:
        src.close()
    assert [f.t for f in frames] == pytest.approx([video.nearest_frame_time(t) for t in times], abs=1e-3)
    assert [f.t for f in got] == pytest.approx([video.nearest_frame_time(f.t) for f in got], abs=1e-3)
    # the pictures are the frames at those times (the binary frame clock), not frames from elsewhere
    # with the right timestamps (decord with B-frames in MPEG-TS / AVI / open GOPs, before)
    for f in frames + got:
        assert detect_markers(f.rgb()) == active_labels(video.markers, f.t), (f.t, backend)


# How far decord can be trusted with each kind of file (backends/decord.py): random access without frame
# reordering; one forward pass (no seeks) with B-frames in indexed containers; PyAV instead otherwise.
DECORD_MODES = {
    "opengop.mp4": "sequential",
    "hevc.mp4": "sequential",
    "opengop.mkv": "sequential",
    "mpeg4.avi": "sequential",
    "h264.ts": "random",
    "h264-longgop.ts": "pyav",
}


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
@pytest.mark.parametrize(("name", "codec", "options", "gop"), BACKEND_FORMATS)
def test_decord_used_only_where_it_is_right(make_synth_video: Callable[..., SynthVideo], name: str, codec: str,
                                            options: dict[str, str], gop: int, caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from vidline.media.backends import decord as decord_backend

    monkeypatch.setattr(decord_backend, "_warned", set())  # earlier tests may have opened the file already
    video = format_video(make_synth_video, name, codec, options, gop)
    expected = DECORD_MODES[name]
    info = probe(video.path)
    with caplog.at_level(logging.WARNING, logger="vidline"):
        sources = [open_source(video.path, info, "decord") for _ in range(2)]
    for src in sources:
        assert src.name == ("pyav" if expected == "pyav" else "decord")
        if expected != "pyav":
            assert getattr(src, "mode", None) == expected
        src.close()
    warnings = [r.getMessage() for r in caplog.records if "decoding with PyAV instead" in r.getMessage()]
    if expected == "pyav":
        assert len(warnings) == 1 and str(video.path) in warnings[0] and "B-frames" in warnings[0]
    else:
        assert not warnings


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
def test_decord_falls_back_when_it_cannot_open(make_synth_video: Callable[..., SynthVideo],
                                               caplog: pytest.LogCaptureFixture) -> None:
    """decord cannot open a VFR MPEG-TS at all ("Failed to measure duration/frame-count"): PyAV decodes
    it instead, with one warning, and the frames are right."""
    markers = (Marker("red square", 1.0, 2.0), Marker("green circle", 3.0, 4.0))
    video = make_synth_video("vfr-offset.ts", duration=6.0, fps=[(0, 2, 10), (2, 4, 2), (4, 6, 25)],
                             start_time=3.3, markers=markers)
    with caplog.at_level(logging.WARNING, logger="vidline"):
        frames = list(sample(video.path, SamplingBudget(fps=4.0, max_fps=4.0), backend="decord"))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "decord cannot open it" in warnings[0] and "PyAV" in warnings[0]
    assert len(frames) == 24
    for f in frames:
        assert f.t == pytest.approx(video.nearest_frame_time(f.t), abs=1e-3)
        assert detect_markers(f.image) == active_labels(markers, f.t)


def av_codecs() -> set[str]:
    import av

    return set(av.codecs_available)


# ---- sample_windows: one pass, in order, even counts, ground-truth times
def test_sample_windows_one_pass(long_video: SynthVideo, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = source_mod.open_source

    def counting(*args: object, **kwargs: object) -> object:
        src = real(*args, **kwargs)  # type: ignore[arg-type]
        orig = src.read

        def read(targets: Sequence[Target], **kw: bool) -> Iterator[Frame]:
            calls.append(len(targets))
            return orig(targets, **kw)

        src.read = read  # type: ignore[method-assign]
        return src

    monkeypatch.setattr("vidline.media.sampler.open_source", counting)
    windows = plan_windows(630.0, 120.0, 10.0)
    budget = SamplingBudget(fps=0.5, min_pixels=56 * 56, max_pixels=56 * 84)  # small frames: fast test
    got = list(sample_windows(long_video.path, windows, budget))
    assert len(calls) == 1
    assert [wf.window.index for wf in got] == list(range(len(windows)))
    for wf in got:
        assert len(wf.frames) == wf.plan.n_frames and len(wf.frames) % 2 == 0 and len(wf.frames) >= 4
        assert wf.fps == pytest.approx(wf.plan.n_frames / (wf.window.end - wf.window.start))
        for f, t in zip(wf.frames, wf.plan.timestamps, strict=False):
            assert wf.window.start - 0.5 <= f.t < wf.window.end
            assert f.t == pytest.approx(long_video.nearest_frame_time(t), abs=1e-3)
            assert f.image.shape == (wf.plan.height, wf.plan.width, 3)
            assert detect_markers(f.image) == active_labels(long_video.markers, f.t)


def test_sample_windows_vfr_and_offset(vfr_video: SynthVideo, offset_video: SynthVideo) -> None:
    for video in (vfr_video, offset_video):
        windows = plan_windows(probe(video.path).duration, 2.0, 0.5)
        for wf in sample_windows(video.path, windows, SamplingBudget(fps=2.0)):
            assert [f.t for f in wf.frames] == pytest.approx(
                [video.nearest_frame_time(t) for t in wf.plan.timestamps], abs=1e-3
            )


@pytest.mark.parametrize("step", [0.7, 2.9, 4.1])
def test_bframes_seeking_exact(bframes_video: SynthVideo, step: float) -> None:
    info = probe(bframes_video.path)
    targets = [Target(float(t), 80, 60) for t in np.arange(0.05, 7.9, step)]
    seq = list(PyAVSource(bframes_video.path, info, strategy="sequential").read(targets))
    for strategy in ("auto", "seek"):
        got = list(PyAVSource(bframes_video.path, info, strategy=strategy).read(targets))
        assert [f.t for f in got] == [f.t for f in seq]
        assert [f.pts for f in got] == [f.pts for f in seq]
    _check_times(seq, bframes_video, [t.t for t in targets])


# ---- pixel formats: a yuv420p preference gives planar I420 (pyav) or RGB (decord), same picture


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fixture", ["cfr_video", "rotated_video", "portrait_video"])
def test_conformance_yuv420p_preference(request: pytest.FixtureRequest, backend: str, fixture: str) -> None:
    video: SynthVideo = request.getfixturevalue(fixture)
    info = probe(video.path)
    ts = [0.0, 0.5, 1.5, 2.5]
    size = (info.display_width // 2 * 2, info.display_height // 2 * 2)
    with open_source(video.path, info, backend) as src:
        rgb = list(src.read([Target(t, *size) for t in ts]))
    with open_source(video.path, info, backend) as src:
        yuv = list(src.read([Target(t, *size) for t in ts], pixel_format="yuv420p"))
    assert [f.t for f in yuv] == [f.t for f in rgb] and [f.pts for f in yuv] == [f.pts for f in rgb]
    expected = "yuv420p" if backend == "pyav" else "rgb24"
    for a, b in zip(rgb, yuv, strict=True):
        assert b.format == expected and b.size == size
        if expected == "yuv420p":
            assert b.image.shape == (size[1] * 3 // 2, size[0])
        back = b.rgb()
        assert back.shape == a.image.shape
        assert np.abs(back.astype(int) - a.image.astype(int)).mean() < 4  # same picture, same orientation
        if video.markers:
            assert detect_markers(back) == detect_markers(a.image)


def test_yuv420p_falls_back_to_rgb_for_odd_sizes(cfr_video: SynthVideo) -> None:
    info = probe(cfr_video.path)
    with open_source(cfr_video.path, info) as src:
        (frame,) = src.read([Target(1.0, 81, 61)], pixel_format="yuv420p")
    assert frame.format == "rgb24" and frame.image.shape == (61, 81, 3)


def test_sample_windows_yuv420p(long_video: SynthVideo) -> None:
    info = probe(long_video.path)
    windows = plan_windows(info.duration, window=20.0, overlap=5.0)
    budget = SamplingBudget(fps=1.0)
    rgb = list(sample_windows(long_video.path, windows, budget, info=info))
    yuv = list(sample_windows(long_video.path, windows, budget, info=info, pixel_format="yuv420p"))
    assert [[f.t for f in w.frames] for w in yuv] == [[f.t for f in w.frames] for w in rgb]
    assert all(f.format == "yuv420p" for w in yuv for f in w.frames)


def test_stream_windows_closes_its_reader_itself(cfr_video: SynthVideo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decode pass stops before its reader is exhausted (zip ends with the last target). The
    reader must be closed by the pass, not by the garbage collector: a Ctrl-C that lands while the
    reader closes its file would otherwise be printed as "Exception ignored" and lost."""
    import vidline.media.sampler as sampler

    info = probe(cfr_video.path)

    class EndlessSource:
        path, truncated_at = cfr_video.path, None

        def __init__(self) -> None:
            self.info = info

        def read(self, targets: Sequence[Target], *, pixel_format: str = "rgb24") -> Iterator[Frame]:
            try:
                t = 0.0
                while True:  # more frames than targets
                    yield Frame(t=t, image=np.zeros((4, 4, 3), np.uint8))
                    t += 0.1
            finally:
                raise KeyboardInterrupt  # as if Ctrl-C arrived while the file was being closed

        def close(self) -> None:
            pass

    monkeypatch.setattr(sampler, "open_source", lambda *a, **k: EndlessSource())
    windows = plan_windows(info.duration, window=1.0, overlap=0.0)[:2]
    with pytest.raises(KeyboardInterrupt):
        list(sampler.stream_windows(cfr_video.path, windows, SamplingBudget(fps=2.0), info=info))


@pytest.mark.skipif("decord" not in BACKENDS, reason="decord is not installed")
@pytest.mark.parametrize(("name", "start_time"), [("late10h.ts", 36000.0), ("late25h.mp4", 90000.0)])
def test_decord_times_are_exact_hours_into_a_stream(make_synth_video: Callable[..., SynthVideo], name: str,
                                                    start_time: float) -> None:
    # decord's own timestamps are float32 seconds from the stream's origin: 2-5 ms off at 10-25 h
    video = make_synth_video(name, duration=4.0, fps=10, size=(64, 48), start_time=start_time, gop=10)
    info = probe(video.path)
    targets = [Target(t, 32, 24) for t in (0.0, 0.9, 1.7, 2.6, 3.4, 3.9)]
    pyav = list(PyAVSource(video.path, info).read(targets))
    src = open_source(video.path, info, "decord")
    try:
        assert src.name == "decord"
        got = list(src.read(targets))
    finally:
        src.close()
    assert [f.t for f in got] == [f.t for f in pyav] == pytest.approx([0.0, 0.9, 1.7, 2.6, 3.4, 3.9], abs=1e-9)
    assert [f.pts for f in got] == [f.pts for f in pyav]
