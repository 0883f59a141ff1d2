"""probe(): sizes, rotation, durations, offsets, VFR, audio, truncation, bad input."""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.fixtures.media import SynthVideo
from vidline.errors import NoVideoStreamError, VideoOpenError
from vidline.media.plan import SamplingBudget
from vidline.media.probe import probe
from vidline.media.sampler import sample
from vidline.synth import Marker


def test_probe_cfr(cfr_video: SynthVideo) -> None:
    info = probe(cfr_video.path)
    assert (info.container, info.codec) == ("mp4", "h264")
    assert (info.width, info.height) == (320, 240)
    assert (info.display_width, info.display_height) == (320, 240)
    assert info.rotation == 0
    assert info.duration == pytest.approx(cfr_video.duration, abs=1e-3)
    assert info.fps == pytest.approx(10)
    assert not info.is_vfr
    assert info.frame_count == len(cfr_video.frame_times)
    assert info.keyframe_interval == pytest.approx(1.0)  # gop=10 at 10 fps
    assert info.start_time == 0.0
    assert not info.has_audio
    assert not info.truncated


def test_probe_start_offset(offset_video: SynthVideo) -> None:
    info = probe(offset_video.path)
    assert info.start_time == pytest.approx(7.5)
    assert info.duration == pytest.approx(offset_video.duration, abs=1e-3)  # from the first displayed frame


def test_probe_vfr(vfr_video: SynthVideo) -> None:
    info = probe(vfr_video.path)
    assert info.is_vfr
    assert info.frame_count == len(vfr_video.frame_times)
    # the last frame is at 4.5 - 1/30; its duration is not stored in a VFR mp4
    assert vfr_video.frame_times[-1] <= info.duration <= vfr_video.duration + 1e-3
    assert info.fps == pytest.approx(len(vfr_video.frame_times) / info.duration, rel=0.01)


def test_probe_rotation(rotated_video: SynthVideo) -> None:
    info = probe(rotated_video.path)
    assert info.rotation == 90
    assert (info.width, info.height) == (240, 320)  # coded
    assert (info.display_width, info.display_height) == (320, 240)  # what a player shows


def test_probe_portrait(portrait_video: SynthVideo) -> None:
    info = probe(portrait_video.path)
    assert info.rotation == 0
    assert (info.display_width, info.display_height) == (180, 320)


def test_probe_audio(audio_video: SynthVideo) -> None:
    assert probe(audio_video.path).has_audio


def test_probe_truncated_mp4(truncated_video: SynthVideo) -> None:
    info = probe(truncated_video.path)
    assert info.truncated
    assert 0.5 < info.duration < truncated_video.duration - 0.5


def test_probe_long(long_video: SynthVideo) -> None:
    info = probe(long_video.path)
    assert info.duration == pytest.approx(630.0, abs=1e-3)
    assert info.keyframe_interval == pytest.approx(10.0)
    assert (info.display_width, info.display_height) == (64, 48)


@pytest.mark.parametrize(
    ("fixture", "error", "words"),
    [
        ("empty_file", VideoOpenError, "empty"),
        ("random_bytes_file", VideoOpenError, "not a readable media file"),
        ("audio_only_file", NoVideoStreamError, "no video stream"),
        ("missing_path", VideoOpenError, "no such file"),
        ("media_dir", VideoOpenError, "directory"),
    ],
)
def test_bad_input(request: pytest.FixtureRequest, fixture: str, error: type[Exception], words: str) -> None:
    path = request.getfixturevalue(fixture) if fixture != "missing_path" else Path("/nonexistent/x.mp4")
    with pytest.raises(error) as exc:
        probe(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg and words in msg
    if error is VideoOpenError and fixture != "audio_only_file":
        assert not isinstance(exc.value, NoVideoStreamError)


def test_probe_bframes(bframes_video: SynthVideo) -> None:
    # B-frames: the first packet's DTS is negative; time 0 is still the first displayed frame
    info = probe(bframes_video.path)
    assert info.start_time == 0.0
    assert info.duration == pytest.approx(bframes_video.duration, abs=1e-3)
    assert info.keyframe_interval == pytest.approx(2.0)
    assert not info.is_vfr


# ---- duration is the video stream's own extent, whatever the other streams and the container say


@pytest.mark.parametrize("ext", ["mkv", "flv", "ts"])
def test_probe_audio_longer_than_video(
    make_synth_video: Callable[..., SynthVideo], ext: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Matroska / FLV / MPEG-TS store no video duration; FFmpeg's is the longest stream's. A 2 s video
    with 4 s of audio is 2 s long, and sampling it warns about nothing (it is not truncated)."""
    video = make_synth_video(f"longaudio.{ext}", duration=2.0, fps=10, audio=True, audio_duration=4.0,
                             markers=(Marker("red square", 1.0, 2.0),))
    info = probe(video.path)
    assert info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.frame_count == 20
    assert not info.truncated
    with caplog.at_level(logging.WARNING, logger="vidline"):
        frames = list(sample(video.path, SamplingBudget(fps=2.0)))
    assert [round(f.t, 3) for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert not caplog.records


def test_probe_flv_bframes_start_offset(make_synth_video: Callable[..., SynthVideo]) -> None:
    # FLV cannot store negative DTS: with B-frames the first frame is shown at 0.2 s; the header's
    # duration (3.2 s) counts from 0
    video = make_synth_video("bframes.flv", duration=3.0, fps=10, preset="medium")
    info = probe(video.path)
    assert info.start_time == pytest.approx(0.2)
    assert info.duration == pytest.approx(3.0, abs=1e-3)
    assert info.frame_count == 30


def test_probe_vfr_mpegts_offset(make_synth_video: Callable[..., SynthVideo]) -> None:
    # last frame at 5.96 s of a 25 fps tail: 6.0 s (FFmpeg's estimate says 6.06)
    video = make_synth_video("vfr-offset-probe.ts", duration=6.0, fps=[(0, 2, 10), (2, 4, 2), (4, 6, 25)],
                             start_time=3.3)
    info = probe(video.path)
    assert info.start_time == pytest.approx(3.3)
    assert info.duration == pytest.approx(6.0, abs=1e-3)


def test_probe_avi_bframes(make_synth_video: Callable[..., SynthVideo]) -> None:
    # MPEG-4 B-frames in AVI: the first frame is shown at 0.1 s; 50 frames last 5.0 s from there
    video = make_synth_video("bframes-probe.avi", duration=5.0, fps=10, codec="mpeg4", options={"bf": "2"})
    info = probe(video.path)
    assert info.duration == pytest.approx(5.0, abs=1e-3)
    assert info.frame_count == 50


@pytest.mark.parametrize("before,last,step,expected", [
    (7140, 7141, 60, 7200),  # AVI holding H.264: DTS + 1 tick, one frame step after the one before
    (7140, 7200, 60, 7200),  # a true step
    (7140, 7170, 60, 7170),  # half a step (VFR): kept
    (7140, 7140, 60, 7140),  # not after it: kept
    (100, 101, 3, 101),  # a step of a few ticks cannot tell
])
def test_true_last_pts(before: int, last: int, step: int, expected: int) -> None:
    from vidline.media.probe import true_last_pts

    assert true_last_pts(before, last, step) == expected


def test_probe_h264_in_avi(tmp_path: Path) -> None:
    """H.264 in AVI: FFmpeg shows each frame one step after its DTS but makes the last one up (its DTS
    + 1 tick), which made 120 frames at 10 fps probe 11.90 s, sample 22 frames at 2 fps, not 24, and
    time the last frame 11.80 s."""
    from vidline.media.plan import SamplingBudget
    from vidline.media.sampler import sample
    from vidline.synth import make_video

    path = make_video(tmp_path / "h264.avi", duration=12.0, fps=10, size=(160, 120))
    info = probe(path)
    assert (info.duration, info.fps, info.frame_count) == (pytest.approx(12.0, abs=1e-6), pytest.approx(10.0), 120)
    assert len(list(sample(path, SamplingBudget(fps=2.0)))) == 24
    # the decoded last frame has its true time too (FFmpeg's made-up PTS put it at 11.80 s), by both
    # decoders
    import importlib.util

    for backend in ("pyav", "decord") if importlib.util.find_spec("decord") else ("pyav",):
        times = [f.t for f in sample(path, SamplingBudget(fps=10.0), backend=backend)]
        assert times[-3:] == pytest.approx([11.7, 11.8, 11.9], abs=1e-6) and len(times) == 120, backend


def test_probe_truncated_mkv(truncated_mkv_video: SynthVideo) -> None:
    # the header still says 4 s and no stream gets near it: not mistaken for a shorter video (the
    # length is the header's; decoding finds the cut and warns once, see test_conformance_truncated)
    info = probe(truncated_mkv_video.path)
    assert info.duration == pytest.approx(truncated_mkv_video.duration, abs=1e-3)


def test_probe_edit_list_frame_count(make_synth_video: Callable[..., SynthVideo], media_dir: Path) -> None:
    """An mp4 cut with ``ffmpeg -ss 1.5 -c copy``: the GOP before the cut is kept but an edit list hides
    its first frames; they are not counted."""
    src = make_synth_video("editlist-src.mp4", duration=6.0, fps=10, preset="medium", gop=20)
    path = media_dir / "editlist.mp4"
    with av.open(str(src.path)) as inp, av.open(str(path), "w") as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        cut = int(Fraction(3, 2) / stream.time_base)
        packets = [p for p in inp.demux(stream) if p.size]
        first = max(i for i, p in enumerate(packets) if p.is_keyframe and p.pts <= cut)
        for packet in packets[first:]:
            packet.pts -= cut
            packet.dts -= cut
            packet.stream = ostream
            out.mux(packet)
    with av.open(str(path)) as c:
        shown = sum(1 for _ in c.decode(video=0))
    assert shown == 45  # 6 s - 1.5 s at 10 fps
    info = probe(path)
    assert info.duration == pytest.approx(4.5, abs=1e-3)
    assert info.frame_count == shown


def test_probe_raw_stream_without_timestamps(make_synth_video: Callable[..., SynthVideo]) -> None:
    """A raw H.264 elementary stream has no timestamps: a one-line VideoError naming the file."""
    video = make_synth_video("raw.h264", duration=2.0, fps=10)
    with pytest.raises(VideoOpenError) as exc:
        probe(video.path)
    msg = str(exc.value)
    assert "\n" not in msg and str(video.path) in msg and "no usable duration" in msg


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_a_still_image_is_not_a_video(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    # it probed as a 1-frame, 0.04-s video, and `timeline` made an empty timeline of it
    from PIL import Image

    from vidline.cli import main
    from vidline.understand.api import probe_input

    path = tmp_path / f"still.{fmt.lower()}"
    Image.new("RGB", (64, 48), (200, 0, 0)).save(path, format=fmt)
    with pytest.raises(VideoOpenError, match=r"a still image \(\w+\), not a video"):
        probe(path)
    assert main(["timeline", str(path), "--backend", "motion", "--quiet"]) == 1
    assert "still image" in capsys.readouterr().err
    bare = tmp_path / "still_no_extension"
    bare.write_bytes(path.read_bytes())
    assert probe_input(bare).media.kind == "image"  # `ask` still takes it, as an image


@pytest.mark.parametrize(("sar", "shown"), [(Fraction(64, 45), (512, 288)), (Fraction(16, 15), (384, 288)),
                                            (Fraction(8, 9), (360, 324))])
def test_anamorphic_video_is_shown_with_square_pixels(tmp_path: Path, sar: Fraction, shown: tuple[int, int]) -> None:
    # pixels that are not square (PAL 16:9 at 64:45, DV at 16:15 or 8:9) were sent as stored: the model
    # saw every object squeezed (a square 0.70 as wide as tall at 64:45)
    from vidline.media.source import Target, available_backends, open_source
    from vidline.synth import make_video

    path = make_video(tmp_path / "anamorphic.mp4", duration=2.0, fps=5, size=(360, 288), sar=sar,
                      markers=[Marker("red square", 0.0, 2.0, x=0.5, size=0.5)])
    info = probe(path)
    assert (info.display_width, info.display_height) == shown and info.sample_aspect_ratio == sar
    assert (info.width, info.height) == (360, 288)
    assert info.to_dict()["sample_aspect_ratio"] == f"{sar.numerator}:{sar.denominator}"
    for backend in available_backends():
        # planned frames (Qwen's sizes, multiples of 28) have the shown shape
        (frame, *_rest) = sample(path, SamplingBudget(fps=1.0), backend=backend)
        h, w = frame.rgb().shape[:2]
        assert abs(w / h - shown[0] / shown[1]) < 0.075, (backend, w, h)
        # at the shown size, the square is square (stored, it is 45/64, 15/16 or 9/8 as wide as tall)
        src = open_source(path, info, backend)
        try:
            (frame,) = src.read([Target(1.0, *shown)])
        finally:
            src.close()
        assert frame.rgb().shape[:2] == (shown[1], shown[0])
        red = np.argwhere((frame.rgb()[..., 0] > 180) & (frame.rgb()[..., 1] < 80))
        (y0, x0), (y1, x1) = red.min(axis=0), red.max(axis=0)
        assert abs((x1 - x0) / (y1 - y0) - 1) < 0.03, (backend, x1 - x0, y1 - y0)


def test_anamorphic_clips_and_thumbnails_keep_the_shape(tmp_path: Path) -> None:
    import io

    from PIL import Image

    from vidline.clips import extract_clip
    from vidline.export.thumbnails import extract_thumbnails
    from vidline.synth import make_video

    path = make_video(tmp_path / "a.mp4", duration=2.0, fps=5, size=(360, 288), sar=Fraction(64, 45))
    for reencode in (False, True):
        out = extract_clip(path, 0.0, 1.0, tmp_path / f"c{int(reencode)}.mp4", reencode=reencode).path
        assert probe(out).sample_aspect_ratio == Fraction(64, 45)
    (jpeg,) = extract_thumbnails(path, [1.0], width=160)
    assert jpeg is not None and Image.open(io.BytesIO(jpeg)).size == (160, 90)


@pytest.mark.parametrize("ext", ["ts", "mkv", "mp4"])
def test_variable_rate_without_a_frame_index(tmp_path: Path, ext: str) -> None:
    # 2 fps for 10 s, then 30 fps: MPEG-TS and Matroska have no per-frame index, and FFmpeg's rate is a
    # guess from the first frames (2) or the header's (30). The TS probed as 2 fps CFR, ~60 frames, and
    # every plan was capped at 2 fps (`sample --fps 10` gave 20 frames where 100 exist)
    from vidline.synth import make_video

    path = make_video(tmp_path / f"vfr.{ext}", duration=30.0, fps=[(0, 10, 2), (10, 30, 30)], size=(64, 48))
    info = probe(path)
    assert info.is_vfr and info.frame_count == 620 and info.fps == pytest.approx(620 / 30, rel=0.01)
    frames = list(sample(path, SamplingBudget(fps=10.0, max_fps=10.0), start=10.0, end=20.0))
    assert len(frames) == 100
    assert len({round(f.t, 3) for f in frames}) == 100  # distinct source frames


def test_constant_rate_ts_is_not_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a constant-rate stream never pays for the packet count
    from vidline.media import probe as probe_module
    from vidline.synth import make_video

    path = make_video(tmp_path / "cfr.ts", duration=6.0, fps=10, size=(64, 48))
    monkeypatch.setattr(probe_module, "_count_frames", lambda *a: pytest.fail("counted a CFR stream"))
    info = probe(path)
    assert not info.is_vfr and info.fps == pytest.approx(10.0)
