"""vidline probe / plan / sample through vidline.cli.main."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.media import SynthVideo
from vidline.cli import main


def test_probe_json(offset_video: SynthVideo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(offset_video.path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["start_time"] == pytest.approx(7.5)
    assert d["duration"] == pytest.approx(3.0, abs=1e-3)
    assert d["display_width"] == 320


def test_probe_text(rotated_video: SynthVideo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", str(rotated_video.path)]) == 0
    out = capsys.readouterr().out
    assert "240x320" in out and "320x240 (rotation 90)" in out


def test_plan(long_video: SynthVideo, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["plan", str(long_video.path), "--window", "120", "--overlap", "10", "--fps", "1", "--json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    ws = d["windows"]
    assert len(ws) == 6 and ws[0]["start"] == 0 and ws[-1]["end"] == pytest.approx(630.0)
    assert all(w["frames"] % 2 == 0 for w in ws)
    assert d["total_tokens"] == sum(w["tokens"] for w in ws) > 0
    assert main(["plan", str(long_video.path)]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "visual tokens" in out


def test_sample_writes_frames(
    offset_video: SynthVideo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frames"
    assert (
        main(
            ["sample", str(offset_video.path), "--fps", "2", "--start", "1", "--end", "2", "--out", str(out)]
        )
        == 0
    )
    manifest = json.loads((out / "frames.json").read_text())
    ts = [f["t"] for f in manifest["frames"]]
    assert ts == pytest.approx([1.0, 1.5])  # 10 fps source: frames exist at the targets
    assert [f["file"] for f in manifest["frames"]] == ["000001.000.jpg", "000001.500.jpg"]
    assert manifest["frames"][0]["pts"] == round((1.0 + 7.5) * 90000)
    for f in manifest["frames"]:
        assert (out / f["file"]).stat().st_size > 0
        assert f["width"] % 28 == 0 and f["height"] % 28 == 0


def test_sample_max_pixels(cfr_video: SynthVideo, tmp_path: Path) -> None:
    out = tmp_path / "small"
    assert (
        main(["sample", str(cfr_video.path), "--fps", "auto", "--max-pixels", "20000", "--out", str(out)])
        == 0
    )
    frames = json.loads((out / "frames.json").read_text())["frames"]
    assert len(frames) == 8
    assert all(f["width"] * f["height"] <= 20000 for f in frames)


@pytest.mark.parametrize(
    "fixture", ["empty_file", "random_bytes_file", "audio_only_file", "missing", "media_dir"]
)
@pytest.mark.parametrize("command", ["probe", "plan", "sample"])
def test_bad_input_one_line(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fixture: str,
    command: str,
) -> None:
    path = str(tmp_path / "missing.mp4") if fixture == "missing" else str(request.getfixturevalue(fixture))
    argv = [command, path] + (["--out", str(tmp_path / "o")] if command == "sample" else [])
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert path in lines[0] and "Traceback" not in captured.err


@pytest.mark.parametrize("command", [["probe"], ["plan"], ["sample", "--out", "frames"]])
def test_file_without_duration_is_a_file_error(
    make_synth_video: Callable[..., SynthVideo], command: list[str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw H.264 stream (no timestamps): one line naming the file, exit 1 (not 2, "bad options")."""
    video = make_synth_video("raw-cli.h264", duration=1.0, fps=10)
    args = [command[0], str(video.path), *[str(tmp_path / a) if a == "frames" else a for a in command[1:]]]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(video.path) in err and "no usable duration" in err


@pytest.mark.parametrize("option", [["--max-frames", "0"], ["--max-pixels", "0"], ["--quality", "500"],
                                    ["--quality", "0"]])
def test_sample_bad_numbers_are_refused(cfr_video: SynthVideo, tmp_path: Path, option: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # --max-frames 0 was ignored silently (-3 was refused); --quality 500 was accepted
    with pytest.raises(SystemExit) as info:
        main(["sample", str(cfr_video.path), "--out", str(tmp_path / "o"), *option])
    assert info.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_sample_manifest_fps_is_rounded(cfr_video: SynthVideo, tmp_path: Path) -> None:
    assert main(["sample", str(cfr_video.path), "--out", str(tmp_path / "o"), "--start", "0.3", "--end", "1.7",
                 "--fps", "3"]) == 0
    fps = json.loads((tmp_path / "o" / "frames.json").read_text())["fps"]
    assert fps == round(fps, 6)


def test_a_url_is_named_as_given(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sample", "http://127.0.0.1:9/x.mp4", "--out", str(tmp_path / "o")]) == 1
    assert "http://127.0.0.1:9/x.mp4: no such file (only local files are read)" in capsys.readouterr().err
