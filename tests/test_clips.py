"""Clip export: stream copy (keyframe cut) and re-encode (frame-exact), checked against synth ground truth."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import pytest

from vidline.cli import main
from vidline.clips import clip_filename, extract_clip, extract_event_clips, file_timestamp, slugify
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
