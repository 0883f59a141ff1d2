"""probe(): sizes, rotation, durations, offsets, VFR, audio, truncation, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.media import SynthVideo
from vidline.errors import NoVideoStreamError, VideoOpenError
from vidline.media.probe import probe


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
