"""Clip export: stream copy (keyframe cut) and re-encode (frame-exact), checked against synth ground truth."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vidline.cli import main
from vidline.clips import (
    EmptyClipError,
    clip_filename,
    extract_clip,
    extract_event_clips,
    file_timestamp,
    slugify,
)
from vidline.errors import ConfigError, NoVideoStreamError, VideoOpenError
from vidline.synth import Marker, active_labels, detect_markers, frame_times, make_audio_only, make_video

FPS = 10
GOP = 15  # frames: a keyframe every 1.5 s -> keyframes at 0, 1.5, 3.0, ...
GOP_S = GOP / FPS
DURATION = 12.0
MARKERS = [
    Marker("red square", 2.0, 4.0, x=0.3),
    Marker("green circle", 5.2, 7.1, x=0.7),
    Marker("blue triangle", 9.0, 10.5, x=0.5),
]
TIMES = [float(t) for t in frame_times(DURATION, FPS)]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "src.mp4"
    return make_video(path, duration=DURATION, fps=FPS, size=(160, 120), markers=MARKERS, gop=GOP, audio=True)


def decode(path: Path) -> list[tuple[float, list[str]]]:
    with av.open(str(path)) as c:
        return [(float(f.time), detect_markers(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]


def audio_span(path: Path) -> tuple[float, float] | None:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        frames = list(c.decode(audio=0))
    return float(frames[0].time), float(frames[-1].time + Fraction(frames[-1].samples, frames[-1].sample_rate))


@pytest.mark.parametrize("seconds,expected", [(0, "00-00-00.000"), (62.5, "00-01-02.500"),
                                              (3723.0004, "01-02-03.000")])
def test_file_timestamp(seconds: float, expected: str) -> None:
    assert file_timestamp(seconds) == expected


def test_names() -> None:
    assert slugify("Yellow forklift / Dock #3") == "yellow-forklift-dock-3"
    assert slugify("!!!") == "event"
    assert clip_filename("dock", 62.5, 65, "red square") == "dock_00-01-02.500_00-01-05.000_red-square.mp4"
    assert clip_filename("dock", 0, 1) == "dock_00-00-00.000_00-00-01.000.mp4"


@pytest.mark.parametrize("start,end", [(2.35, 4.5), (5.2, 7.1), (0.0, 1.0), (9.05, 30.0)])
def test_stream_copy_starts_at_keyframe(video: Path, tmp_path: Path, start: float, end: float) -> None:
    out = tmp_path / "copy.mp4"
    res = extract_clip(video, start, end, out)
    assert not res.reencoded
    # starts at the keyframe at or before the requested start, at most one GOP earlier
    assert res.start <= start + 1e-6
    assert start - res.start < GOP_S + 1e-6
    assert any(abs(res.start - k * GOP_S) < 1e-6 for k in range(10))  # a real keyframe time
    frames = decode(out)
    assert frames[0][0] == pytest.approx(0.0, abs=1e-3)
    expected = [t for t in TIMES if res.start - 1e-6 <= t < min(end, DURATION) - 1e-6]
    assert len(frames) == len(expected) == res.frames
    # every output frame shows what the source showed at the corresponding time
    for (t_out, seen), t_src in zip(frames, expected, strict=True):
        assert t_out + res.start == pytest.approx(t_src, abs=1e-3)
        assert seen == active_labels(MARKERS, t_src), t_src
    span = audio_span(out)  # audio copied along
    assert span is not None
    assert span[0] < 0.1 and abs(span[1] - (min(end, DURATION) - res.start)) < 0.2


@pytest.mark.parametrize("start,end", [(2.35, 4.5), (5.2, 7.1), (9.95, 10.55)])
def test_reencode_is_frame_exact(video: Path, tmp_path: Path, start: float, end: float) -> None:
    out = tmp_path / "exact.mp4"
    res = extract_clip(video, start, end, out, reencode=True)
    expected = [t for t in TIMES if start - 1e-6 <= t < end - 1e-6]
    assert res.reencoded and res.frames == len(expected)
    assert res.start == pytest.approx(expected[0], abs=1e-3)
    assert res.start - start < 1 / FPS  # within one frame of the request
    frames = decode(out)
    assert [round(t, 3) for t, _ in frames] == [round(t - expected[0], 3) for t in expected]
    for (_t, seen), t_src in zip(frames, expected, strict=True):
        assert seen == active_labels(MARKERS, t_src), t_src
    span = audio_span(out)
    assert span is not None
    assert span[0] == pytest.approx(0.0, abs=0.05)
    assert span[1] == pytest.approx(end - expected[0], abs=0.15)


def test_marker_clip_contains_the_marker(video: Path, tmp_path: Path) -> None:
    res = extract_clip(video, 9.0, 10.5, tmp_path / "m.mp4", reencode=True, audio=False)
    frames = decode(res.path)
    assert all(seen == ["blue triangle"] for _t, seen in frames)
    assert audio_span(res.path) is None


def test_bad_inputs(video: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        extract_clip(video, 3.0, 3.0, tmp_path / "x.mp4")
    with pytest.raises(ConfigError):
        extract_clip(video, 4.0, 2.0, tmp_path / "x.mp4")
    with pytest.raises(ConfigError):
        extract_clip(video, 50.0, 60.0, tmp_path / "x.mp4")
    with pytest.raises(VideoOpenError):
        extract_clip(tmp_path / "missing.mp4", 0, 1, tmp_path / "x.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(VideoOpenError):
        extract_clip(junk, 0, 1, tmp_path / "x.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoOpenError):
        extract_clip(empty, 0, 1, tmp_path / "x.mp4")
    with pytest.raises(VideoOpenError):
        extract_clip(tmp_path, 0, 1, tmp_path / "x.mp4")
    with pytest.raises(NoVideoStreamError):
        extract_clip(make_audio_only(tmp_path / "a.m4a"), 0, 1, tmp_path / "x.mp4")


def _timeline(video: Path) -> dict:
    return {"video": {"path": str(video), "duration": DURATION}, "query": None, "backend": "motion",
            "model": None, "mode": None, "windows": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0},
            "events": [{"start": m.start, "end": m.end, "label": m.label, "description": None,
                        "confidence": None, "windows": [0]} for m in MARKERS]}


def test_event_clips(video: Path, tmp_path: Path) -> None:
    results = extract_event_clips(_timeline(video), tmp_path / "out", pad=0.5, reencode=True)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "src_00-00-01.500_00-00-04.500_red-square.mp4",
        "src_00-00-04.700_00-00-07.600_green-circle.mp4",
        "src_00-00-08.500_00-00-11.000_blue-triangle.mp4",
    ]
    for res, m in zip(results, MARKERS, strict=True):
        labels = [lab for _t, seen in decode(res.path) for lab in seen]
        assert labels.count(m.label) == round((m.end - m.start) * FPS)  # every marker frame, no more
    only = extract_event_clips(_timeline(video), tmp_path / "only", label="CIRCLE")
    assert [r.label for r in only] == ["green circle"]
    assert only[0].start <= 5.2 and only[0].path.name.startswith("src_00-00-05.200_00-00-07.100")


def test_cli_clip_and_clips(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.mp4"
    assert main(["clip", str(video), "--start", "0:02.35", "--end", "4.5", "-o", str(out)]) == 0
    assert "00:00:01.500" in capsys.readouterr().out  # the keyframe the copy starts at
    assert len(decode(out)) == 30
    assert main(["clip", str(video), "--start", "5", "--end", "4", "-o", str(out)]) == 2
    assert "must be after" in capsys.readouterr().err
    assert main(["clip", str(tmp_path / "nope.mp4"), "--start", "0", "--end", "1", "-o", str(out)]) != 0
    tl = tmp_path / "t.json"
    tl.write_text(json.dumps(_timeline(video)))
    assert main(["clips", str(tl), "--out", str(tmp_path / "d"), "--label", "red"]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["src_00-00-02.000_00-00-04.000_red-square.mp4"]


def test_event_clips_finds_video_next_to_timeline(video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _timeline(video)
    d["video"]["path"] = video.name  # relative, as saved from the video's folder
    tl = video.parent / "rel.json"
    tl.write_text(json.dumps(d))
    monkeypatch.chdir(tmp_path)
    results = extract_event_clips(tl, tmp_path / "o", label="blue")
    assert len(results) == 1 and results[0].frames > 0


def test_event_clips_after_the_results_folder_moved(video: Path, tmp_path: Path) -> None:
    """Timelines store the video's absolute path; a results folder moved with its video still works
    (the video is looked for beside the timeline by its file name)."""
    import shutil

    old = tmp_path / "A"
    old.mkdir()
    shutil.copy(video, old / video.name)
    d = _timeline(old / video.name)
    d["video"]["path"] = str(old / video.name)
    (old / "t.json").write_text(json.dumps(d))
    new = tmp_path / "B"
    old.rename(new)
    results = extract_event_clips(new / "t.json", tmp_path / "o", label="blue")
    assert len(results) == 1 and results[0].frames > 0


# ----------------------------------------------------------------------------------------- QA regressions


def _centroid(image: np.ndarray, color: tuple[int, int, int]) -> tuple[float, float]:
    """(x, y) centre of the pixels of ``color``, as fractions of the width/height."""
    mask = np.abs(image.astype(np.int16) - np.array(color, dtype=np.int16)).max(axis=2) < 60
    ys, xs = np.nonzero(mask)
    assert len(xs) > 0, "colour not found"
    return float(xs.mean() + 0.5) / image.shape[1], float(ys.mean() + 0.5) / image.shape[0]


def _decode_rgb(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


OFF_CENTRE = [Marker("red square", 1.0, 2.0, x=0.25, y=0.3, size=0.2)]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_reencode_rotated_video_is_upright(tmp_path: Path, rotation: int) -> None:
    """D7: the display-matrix rotation is applied to the pixels (the clip has no matrix left)."""
    src = make_video(tmp_path / f"rot{rotation}.mp4", duration=3.0, fps=FPS, size=(160, 120), markers=OFF_CENTRE,
                     rotation=rotation)
    res = extract_clip(src, 0.5, 2.5, tmp_path / "c.mp4", reencode=True)
    assert res.frames == 20
    with av.open(str(res.path)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (160, 120)
        assert all(round(f.rotation) == 0 for f in c.decode(video=0))
    frames = _decode_rgb(res.path)
    assert len(frames) == 20
    for t_out, img in frames:
        t_src = res.start + t_out
        assert detect_markers(img) == active_labels(OFF_CENTRE, t_src), t_src
        if active_labels(OFF_CENTRE, t_src):
            x, y = _centroid(img, (220, 30, 30))
            assert x == pytest.approx(0.25, abs=0.03) and y == pytest.approx(0.3, abs=0.03), (x, y)


@pytest.mark.parametrize("size,rotation,ext", [((161, 121), 0, ".mkv"), ((160, 121), 0, ".mkv"),
                                               ((161, 121), 90, ".mkv"), ((161, 120), 270, ".mp4")])
def test_reencode_odd_size_is_padded_to_even(tmp_path: Path, size: tuple[int, int], rotation: int, ext: str) -> None:
    """D8: odd sides (x264/yuv420p needs even ones) are padded by one pixel, content unchanged."""
    src = make_video(tmp_path / f"odd{ext}", duration=3.0, fps=FPS, size=size, markers=OFF_CENTRE, codec="ffv1",
                     rotation=rotation)
    res = extract_clip(src, 0.8, 2.2, tmp_path / f"c{ext}", reencode=True)
    w, h = size
    with av.open(str(res.path)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (w + w % 2, h + h % 2)
    frames = _decode_rgb(res.path)
    assert len(frames) == res.frames == 14
    for t_out, img in frames:
        t_src = res.start + t_out
        assert detect_markers(img) == active_labels(OFF_CENTRE, t_src), t_src
        if active_labels(OFF_CENTRE, t_src):
            x, y = _centroid(img[:h, :w], (220, 30, 30))
            assert x == pytest.approx(0.25, abs=0.03) and y == pytest.approx(0.3, abs=0.03), (x, y)
        # the added row/column repeats the picture's edge (background, not black or green)
        assert np.abs(img[-1].astype(int) - img[-2].astype(int)).mean() < 40
        assert np.abs(img[:, -1].astype(int) - img[:, -2].astype(int)).mean() < 40


@pytest.mark.parametrize("name,problem", [
    ("l.xyz", "unsupported format .xyz: use .mp4, .mkv or .mov"),
    ("m.avi", "unsupported format .avi"),
    ("noext", "unsupported format (no file extension)"),
    ("existing_dir", "is a directory"),
    ("blocker/z.mp4", "blocker is not a folder"),
    ("blocker/sub/z.mp4", "blocker is not a folder"),
    ("SRC", "is the input video"),
])
def test_cli_clip_bad_output_paths(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   name: str, problem: str) -> None:
    """D9: one line naming the output and the problem, non-zero exit, no traceback, nothing written."""
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = video if name == "SRC" else tmp_path / name
    size_before = video.stat().st_size
    for extra in ([], ["--reencode"]):
        code = main(["clip", str(video), "--start", "1", "--end", "2", "-o", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and err.startswith("vidline: error: ")
        assert str(out) in err and problem in err
        assert str(video) not in err.replace(str(out), "") or name == "SRC"
    assert not (tmp_path / name).is_file() or name == "SRC"
    assert video.stat().st_size == size_before


def test_clip_mux_error_blames_the_output(video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D9: a libav error raised while writing names the output file, not the input; no partial file."""
    out = tmp_path / "c.mp4"
    real_open = av.open

    def failing_open(file: Any, mode: str = "r", **kw: Any) -> Any:
        container = real_open(file, mode, **kw)
        if mode != "w":
            return container

        class Failing:
            def __getattr__(self, name: str) -> Any:
                return getattr(container, name)

            def mux(self, _pkt: Any) -> None:
                raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input", str(file))

        return Failing()

    monkeypatch.setattr(av, "open", failing_open)
    with pytest.raises(ConfigError) as info:
        extract_clip(video, 1, 2, out)
    assert str(out) in str(info.value) and str(video) not in str(info.value)
    assert not out.exists()


def test_clips_out_is_a_file(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tl = tmp_path / "t.json"
    tl.write_text(json.dumps(_timeline(video)))
    assert main(["clips", str(tl), "--out", str(tl)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tl) in err


@pytest.fixture(scope="module")
def avi_bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # MPEG-4 with B-frames in AVI: the first displayed frame has PTS 1 (0.1 s), stream.start_time is 0.
    # Keyframes are shown at 0, 1.2, 2.1, 3.0 s, ...; each is decoded before the two B-frames shown just
    # before it (e.g. 2.8 and 2.9 s come after the 3.0 s keyframe in the file).
    path = tmp_path_factory.mktemp("avi") / "bf.avi"
    return make_video(path, duration=6.0, fps=FPS, size=(160, 120), markers=AVI_MARKERS, codec="mpeg4", gop=10,
                      options={"bf": "2"})


AVI_MARKERS = [Marker("red square", 2.0, 3.0), Marker("green circle", 4.5, 5.0, x=0.7)]


def test_avi_bframes_same_clock_as_timeline(avi_bframes: Path, tmp_path: Path) -> None:
    """D10: clip times count from the first displayed frame, like probe/sampler/timeline events."""
    from vidline.media.probe import probe
    from vidline.media.source import Target, open_source

    info = probe(avi_bframes)
    assert info.start_time == pytest.approx(0.1)  # the case: PTS 0 is not the first frame
    res = extract_clip(avi_bframes, 2.0, 3.0, tmp_path / "r.mp4", reencode=True)
    frames = decode(res.path)
    assert res.start == pytest.approx(2.0) and res.end == pytest.approx(3.0)
    assert len(frames) == res.frames == 10
    assert all(seen == ["red square"] for _t, seen in frames)  # every frame of the marker, nothing else
    # the sampler (the timeline's frames) shows the same content at the same times
    with open_source(avi_bframes, info) as source:
        sampled = {round(f.t, 3): detect_markers(f.rgb()) for f in source.read([Target(2.0), Target(2.9), Target(3.0)])}
    assert sampled == {2.0: ["red square"], 2.9: ["red square"], 3.0: []}


def test_avi_bframes_stream_copy(avi_bframes: Path, tmp_path: Path) -> None:
    """D10 (copy): the keyframe time is on the timeline clock, undecodable leading B-frames are not
    copied, and the B-frames shown before the end (decoded after the next keyframe) are kept."""
    res = extract_clip(avi_bframes, 2.35, 3.0, tmp_path / "c.mp4")
    assert res.start == pytest.approx(2.1)  # the keyframe at/before 2.35 s, shown at 2.1 s
    frames = decode(res.path)
    assert len(frames) == res.frames
    for t_out, seen in frames:
        assert seen == active_labels(AVI_MARKERS, res.start + t_out), res.start + t_out
    times = [round(res.start + t, 3) for t, _ in frames]
    assert times[:9] == [round(2.1 + 0.1 * i, 3) for i in range(9)]  # every frame up to 2.9 s
    assert res.end == pytest.approx(times[-1] + 0.1)


def test_reencode_vfr_end_is_the_next_frame(tmp_path: Path) -> None:
    """The last frame lasts until the next source frame (not 1/average fps)."""
    src = make_video(tmp_path / "vfr.mkv", duration=6.0, fps=[(0, 2, 25), (2, 4, 3), (4, 6, 25)], size=(160, 120))
    res = extract_clip(src, 2.0, 4.0, tmp_path / "c.mp4", reencode=True)
    assert res.frames == 6 and res.start == pytest.approx(2.0)
    assert res.end == pytest.approx(4.0, abs=1e-3) and res.duration == pytest.approx(2.0, abs=1e-3)
    with av.open(str(res.path)) as c:
        assert c.duration / av.time_base == pytest.approx(2.0, abs=0.01)
        times = [float(f.time) for f in c.decode(video=0)]
    assert times == pytest.approx([0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3], abs=2e-3)
    # a clip ending inside a long frame ends at the requested end
    res = extract_clip(src, 2.0, 3.5, tmp_path / "c2.mp4", reencode=True)
    assert res.frames == 5 and res.end == pytest.approx(3.5, abs=1e-3)


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one frame at 2.0 s shown until 4.0 s: no frame *starts* in [2.5, 3.5)
    path = tmp_path_factory.mktemp("gap") / "gap.mp4"
    return make_video(path, duration=6.0, fps=[(0, 2, 10), (2, 4, 0.5), (4, 6, 10)], size=(160, 120),
                      markers=[Marker("blue triangle", 4.0, 5.0)])


def test_reencode_range_without_frames_is_an_error(gap_video: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e.mp4"
    with pytest.raises(EmptyClipError, match="no video frames between 2.500 s and 3.500 s"):
        extract_clip(gap_video, 2.5, 3.5, out, reencode=True)
    assert not out.exists()
    assert main(["clip", str(gap_video), "--start", "2.5", "--end", "3.5", "-o", str(out), "--reencode"]) == 1
    assert "no video frames" in capsys.readouterr().err and not out.exists()
    # stream copy holds the frame shown during that range (the one at 2.0 s)
    res = extract_clip(gap_video, 2.5, 3.5, out)
    assert res.frames >= 1 and res.start <= 2.0 and res.end == pytest.approx(4.0) and out.exists()


def test_event_clips_skip_ranges_without_frames(gap_video: Path, tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("vidline")
    log.addHandler(handler)
    try:
        tl = {**_timeline(gap_video), "events": [
            {"start": 2.5, "end": 3.5, "label": "nothing", "windows": [0]},
            {"start": 4.0, "end": 5.0, "label": "blue triangle", "windows": [0]}]}
        results = extract_event_clips(tl, tmp_path / "o", reencode=True)
    finally:
        log.removeHandler(handler)
    assert [r.label for r in results] == ["blue triangle"]
    assert [p.name for p in (tmp_path / "o").iterdir()] == [results[0].path.name]
    assert all(seen == ["blue triangle"] for _t, seen in decode(results[0].path))
    assert any("no video frames" in r.getMessage() and "skipped" in r.getMessage() for r in records)


def test_clip_names_never_clash_and_fit_a_file_name() -> None:
    from vidline.clips import MAX_NAME_BYTES, _unused

    used: set[str] = set()
    names = []
    # a label ending in _N once made the de-duplicated name of another event: one clip overwrote another
    for label in ["red square", "red square", "red square_2", "red square", "red square_2"]:
        name = _unused(clip_filename("cam", 1, 2, label), used)
        used.add(name)
        names.append(name)
    assert len(set(names)) == 5
    stem = "监" * 80  # 240 bytes: a valid file name, too long once the times and label are added
    name = clip_filename(stem, 3600, 3700.5, "a forklift enters the loading dock at night")
    assert len(name.encode()) <= MAX_NAME_BYTES - 8 and name.endswith("_a-forklift-enters-the-loading-dock-at-ni.mp4")
    assert name.startswith("监") and "\ufffd" not in name


def test_event_clips_one_file_per_event_whatever_the_labels(video: Path, tmp_path: Path) -> None:
    d = _timeline(video)
    d["events"] = [dict(d["events"][0], label=label) for label in
                   ["red square", "red square", "red square_2", "red square"]]
    results = extract_event_clips(d, tmp_path / "out")
    assert len(results) == 4 and len({r.path for r in results}) == 4
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_event_clips_long_video_name(video: Path, tmp_path: Path) -> None:
    long = tmp_path / ("监" * 80 + ".mp4")
    long.write_bytes(video.read_bytes())
    results = extract_event_clips(_timeline(long), tmp_path / "out")
    assert results and all(r.path.exists() for r in results)


@pytest.mark.parametrize(("event", "message"), [({"end": None}, "event 0: 'end' must be a finite number"),
                                                ({"start": float("inf")}, "event 0: 'start' must be a finite")])
def test_event_clips_bad_event_is_named(video: Path, tmp_path: Path, event: dict, message: str) -> None:
    d = _timeline(video)
    d["events"] = [dict(d["events"][0], **event)]
    with pytest.raises(ConfigError, match=message):
        extract_event_clips(d, tmp_path / "out")


def test_clips_pad_must_be_finite(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="pad must be"):
        extract_event_clips(_timeline(video), tmp_path / "out", pad=float("nan"))
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_timeline(video)))
    with pytest.raises(SystemExit) as info:
        main(["clips", str(path), "--out", str(tmp_path / "o"), "--pad", "nan"])
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_reencode_keeps_a_late_audio_track_late(tmp_path: Path) -> None:
    # the audio starts 3 s into the video: a clip from 2 s has 1 s of silence, then the tone (the tone
    # once started at the clip's time 0, a second early)
    src = make_video(tmp_path / "late.mp4", duration=8.0, fps=FPS, size=(160, 120), audio=True, audio_start=3.0)
    res = extract_clip(src, 2.0, 6.0, tmp_path / "c.mp4", reencode=True)
    assert res.start == pytest.approx(2.0)
    with av.open(str(tmp_path / "c.mp4")) as c:
        frames = list(c.decode(audio=0))
        rate = frames[0].sample_rate
        t_first = float(frames[0].time)
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])  # the first channel
    start = int(round(-t_first * rate))  # samples before the clip's time 0 (encoder priming)

    def rms(a: float, b: float) -> float:
        seg = samples[start + int(a * rate): start + int(b * rate)]
        return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))

    assert rms(0.0, 0.85) < 0.01  # silence until the track starts (2.936 s: AAC's priming)
    assert rms(1.05, 3.9) > 0.07  # the 0.2-amplitude tone (rms 0.14; 0.1 once upmixed to stereo)


@pytest.mark.parametrize("reencode", [False, True])
def test_clips_of_mpeg_ts_with_bframes_start_where_asked(tmp_path: Path, reencode: bool) -> None:
    # an MPEG-TS seek lands on the keyframe after the point asked, with B-frames even from its start:
    # a 1.2-2.0 s clip was "no video frames" (re-encoded) or one frame from 4.0 s (stream copy)
    path = make_video(tmp_path / "bf.ts", duration=6.4, fps=FPS, size=(160, 120), markers=MARKERS, gop=40,
                      preset="medium", start_time=100.0)
    res = extract_clip(path, 2.2, 3.5, tmp_path / "c.mp4", reencode=reencode)
    assert res.start <= 2.2 + 1e-6 and res.end >= 3.5 - 0.11
    frames = decode(tmp_path / "c.mp4")
    shown = [res.start + t - frames[0][0] for t, _m in frames]
    assert shown[0] == pytest.approx(2.2 if reencode else 0.0, abs=0.06)
    # the pictures are those of their times (the red square is on from 2.0 to 4.0 s)
    assert all(("red square" in labels) == (2.0 <= t < 4.0) for t, (_t, labels) in zip(shown, frames, strict=True))
