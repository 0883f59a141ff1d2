"""`vidline timeline`: the CLI contract (exit codes, one-line errors, outputs, dry run, resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from vidline.cache import WindowCache
from vidline.cli import main
from vidline.synth import Marker, make_video

pytest.importorskip("vidline.timeline")

MODEL_ENV = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL")
TRUTH = [("green circle", 2.0, 6.0), ("blue triangle", 13.0, 19.0), ("red square", 31.0, 35.0)]


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in MODEL_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VIDLINE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    markers = [Marker("green circle", 2.0, 6.0, x=0.2, dx=0.15), Marker("blue triangle", 13.0, 19.0),
               Marker("red square", 31.0, 35.0, x=0.3, dx=0.1)]
    return make_video(d / "clip.mp4", duration=40.0, fps=4, size=(160, 120), markers=markers)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["timeline", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_auto_without_model_falls_back_to_motion(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), "--quiet", "--pre", "0", "--post", "0")
    assert code == 0, err
    assert "motion" in err  # says so on stderr
    doc = json.loads(out)
    assert doc["backend"] == "motion" and doc["video"]["duration"] == pytest.approx(40.0, abs=0.3)
    spans = [(e["start"], e["end"]) for e in doc["events"]]
    # the two moving markers, and the static triangle (13-19 s) while it is foreground: it arrived and
    # stayed, and the spot it leaves differs from the learned background for a few seconds more
    assert len(spans) == 3, spans
    assert spans[0][0] == pytest.approx(2.0, abs=0.5) and spans[0][1] == pytest.approx(6.0, abs=0.5)
    assert spans[1][0] == pytest.approx(13.0, abs=0.5) and 19.0 <= spans[1][1] <= 24.0
    assert spans[2][0] == pytest.approx(31.0, abs=0.5) and spans[2][1] == pytest.approx(35.0, abs=0.5)
    assert all(e["label"] == "motion" for e in doc["events"])
    # frame differencing: change only, the static triangle is no motion
    code, out, err = _run(capsys, str(clip), "--quiet", "--pre", "0", "--post", "0", "--motion-method", "diff")
    assert code == 0 and len(json.loads(out)["events"]) == 2, err


def test_query_without_model_is_one_line_error(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), "--query", "a red car", "--quiet")
    assert code == 2 and out == ""
    line = _one_line(err)
    assert "--base-url" in line and "OPENAI_BASE_URL" in line and "DASHSCOPE_API_KEY" in line


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "directory"])
def test_bad_video_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(5000))
    elif kind == "directory":
        path.mkdir()
    code, out, err = _run(capsys, str(path), "--backend", "motion", "--quiet")
    assert code != 0 and out == ""
    assert str(path) in _one_line(err)


def test_dry_run_contacts_no_server(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    # port 9 (discard) is closed: any contact would fail the run
    code, out, err = _run(capsys, str(clip), "--dry-run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                          "--window", "12", "--overlap", "3", "--fps", "2", "--price-per-1k", "0.002")
    assert code == 0, err
    assert "windows" in out and "estimated tokens" in out and "estimated price" in out
    code, out, err = _run(capsys, str(clip), "--dry-run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                          "--window", "12", "--overlap", "3", "--fps", "2", "--format", "json")
    doc = json.loads(out)
    wins = doc["windows"]
    assert wins[0]["start"] == 0.0 and wins[-1]["end"] == pytest.approx(40.0, abs=0.3)
    assert all(b["start"] < a["end"] for a, b in zip(wins, wins[1:], strict=False))  # overlapping cover
    assert all(w["end"] - w["start"] <= 12.0 for w in wins)
    assert doc["total_estimated_tokens"] > 0 and doc["total_payload_bytes"] > 0
    for w in wins:  # 2 fps, even counts (Qwen pairs frames)
        assert w["frames"] % 2 == 0 and abs(w["frames"] - 2 * (w["end"] - w["start"])) <= 2


def test_motion_formats_to_files(capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path) -> None:
    for fmt in ("json", "csv", "srt", "vtt", "html"):
        out_path = tmp_path / f"t.{fmt}"
        code, out, err = _run(capsys, str(clip), "--backend", "motion", "--quiet", "-o", str(out_path))
        assert code == 0 and out == "", err
        text = out_path.read_text()
        assert text.strip()
    assert json.loads((tmp_path / "t.json").read_text())["backend"] == "motion"
    assert (tmp_path / "t.vtt").read_text().startswith("WEBVTT")


def test_several_videos_one_json_array(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), str(clip), "--backend", "motion", "--quiet")
    assert code == 0, err
    docs = json.loads(out)
    assert isinstance(docs, list) and len(docs) == 2


def test_several_videos_a_bad_one_loses_nothing(capsys: pytest.CaptureFixture[str], clip: Path,
                                                tmp_path: Path, refserver: Any) -> None:
    """A file Qwen's planner refuses (250:1 frames), one without timestamps and a missing one:
    the good video's timeline is still written, stdout is still an array; when no video can be
    analysed the exit is an error."""
    wide = make_video(tmp_path / "wide.mp4", duration=1.0, fps=4, size=(2000, 8))
    raw = tmp_path / "raw.h264"  # an elementary stream: no container, no timestamps
    with av.open(str(raw), "w", format="h264") as out_c:
        stream = out_c.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            out_c.mux(stream.encode(frame))
        out_c.mux(stream.encode())
    missing = str(tmp_path / "missing.mp4")
    code, out, err = _run(capsys, str(clip), str(wide), str(raw), missing, *_model_args(refserver), "--quiet")
    assert code == 3, err
    docs = json.loads(out)
    assert isinstance(docs, list) and [Path(d["video"]["path"]).name for d in docs] == [clip.name]
    for name in ("wide.mp4", "raw.h264", "missing.mp4"):
        assert name in err
    assert "Traceback" not in err
    code, out, err = _run(capsys, str(wide), missing, *_model_args(refserver), "--quiet")
    assert code == 1 and json.loads(out) == [], err


def test_a_frame_models_cannot_take_is_a_video_error_naming_the_file(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    """250:1 frames are over Qwen's 200:1 limit: one line naming the file and what can read it, exit 1
    (the video's problem, not a bad option), for a model run, its dry run, ``ask`` and ``sample``."""
    wide = make_video(tmp_path / "wide.mp4", duration=1.0, fps=4, size=(2000, 8))
    model = ["--base-url", "http://127.0.0.1:9/v1", "--api-key", "k", "--model", "m", "--server", "vllm", "--quiet"]
    for argv in (["timeline", str(wide), *model], ["timeline", str(wide), *model, "--dry-run"],
                 ["ask", str(wide), "what happens?", *model, "--dry-run"], ["sample", str(wide), "--out", str(tmp_path / "f")]):
        code = main(argv)
        out, err = capsys.readouterr()
        line = _one_line(err)
        assert code == 1 and str(wide) in line and "200:1" in line and "--backend motion" in line, (argv, err)


def test_motion_takes_any_aspect_ratio(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The motion detector samples its own small frames: Qwen's 200:1 limit is not its business."""
    wide = make_video(tmp_path / "wide.mp4", duration=2.0, fps=4, size=(2000, 8))
    tall = make_video(tmp_path / "tall.mp4", duration=2.0, fps=4, size=(8, 2000))  # was refused (8x2000)
    for video in (wide, tall):
        for backend in ("motion", "scenes"):
            code, out, err = _run(capsys, str(video), "--backend", backend, "--quiet")
            assert code == 0 and json.loads(out)["windows"][0]["status"] == "ok", (video, backend, err)


def test_several_videos_need_a_directory_for_other_formats(capsys: pytest.CaptureFixture[str], clip: Path,
                                                           tmp_path: Path) -> None:
    code, out, err = _run(capsys, str(clip), str(clip), "--backend", "motion", "--quiet", "--format", "csv")
    assert code == 2 and out == "" and "-o DIR" in err
    code, out, err = _run(capsys, str(clip), str(clip), "--backend", "motion", "--quiet", "--format", "csv",
                          "-o", str(tmp_path / "out"))
    assert code == 0 and out == "", err
    assert (tmp_path / "out" / f"{clip.stem}.csv").read_text().startswith("start")


# ------------------------------------------------------------------------------------------------
# against the reference server


def _model_args(server: Any, key: str = "sk-test") -> list[str]:
    return ["--base-url", server.openai_base_url, "--api-key", key, "--model", "qwen2.5-vl-ref",
            "--window", "12", "--overlap", "3", "--fps", "2", "--retries", "1"]


@pytest.mark.parametrize("decoders", [[], ["--decoders", "2"]])
def test_model_timeline_stdout(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any,
                               decoders: list[str]) -> None:
    code, out, err = _run(capsys, str(clip), *_model_args(refserver), "--quiet", *decoders)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backend"] == "openai" and doc["model"] == "qwen2.5-vl-ref"
    labels = sorted(e["label"] for e in doc["events"])
    assert labels == sorted(t[0] for t in TRUTH)  # each once: no duplicates across windows
    for e in doc["events"]:
        s, t = next((s, t) for lab, s, t in TRUTH if lab == e["label"])
        assert abs(e["start"] - s) < 1.5 and abs(e["end"] - t) < 1.5
    assert {w["status"] for w in doc["windows"]} == {"ok"}
    assert doc["usage"]["prompt_tokens"] > 0


def test_bad_decoders_is_one_line(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any) -> None:
    code, out, err = _run(capsys, str(clip), *_model_args(refserver), "--quiet", "--decoders", "0")
    assert code == 2 and out == "" and "--decoders must be >= 1" in _one_line(err)
    assert not refserver.requests


def test_wrong_key_is_one_line(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any) -> None:
    code, out, err = _run(capsys, str(clip), *_model_args(refserver, key="sk-wrong"), "--quiet")
    assert code != 0 and out == ""
    line = _one_line(err)
    assert "sk-wrong" not in line and ("401" in line or "auth" in line.lower() or "key" in line.lower())
    assert len(refserver.generation_requests) <= 4  # stopped at the first windows (concurrency 4), not all 5


def test_partial_failures_exit_3(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any) -> None:
    refserver.configure(fail_rate=0.5, seed=3)  # sequential requests: a deterministic fault sequence
    code, out, err = _run(capsys, str(clip), *_model_args(refserver), "--quiet", "--no-cache", "--concurrency", "1")
    doc = json.loads(out)
    failed = [w for w in doc["windows"] if w["status"] == "failed"]
    ok = [w for w in doc["windows"] if w["status"] == "ok"]
    if not failed or not ok:
        pytest.skip(f"fail_rate gave {len(failed)} failed / {len(ok)} ok windows; nothing partial to check")
    assert code == 3
    for w in failed:
        assert f"window {w['index']} " in err and w["error"]


def _processes_with(text: str) -> list[str]:
    """The processes whose command line contains ``text`` (Linux; none elsewhere)."""
    found = []
    for pid in os.listdir("/proc") if sys.platform.startswith("linux") else ():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(pid)
    return found


def test_resume_after_kill_sends_only_missing(clip: Path, refserver: Any, tmp_path: Path) -> None:
    cache = tmp_path / "resume-cache"
    refserver.configure(latency=0.4)
    cmd = [sys.executable, "-m", "vidline", "timeline", str(clip), *_model_args(refserver), "--quiet",
           "--concurrency", "1", "--cache-dir", str(cache), "-o", str(tmp_path / "killed.json")]
    env = {k: v for k, v in os.environ.items() if k not in MODEL_ENV}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(WindowCache(cache).keys()) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # its decode worker processes (which share its command line) end with it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _processes_with(str(cache)):
        time.sleep(0.05)
    assert not _processes_with(str(cache))
    done = len(WindowCache(cache).keys())  # not a write the kill cut short (its temporary file)
    assert 2 <= done < 5, done  # 5 windows of 10.4 s
    sent_before = len(refserver.generation_requests)
    refserver.configure(latency=0.0)
    out = tmp_path / "resumed.json"
    code = main(["timeline", str(clip), *_model_args(refserver), "--quiet", "--cache-dir", str(cache), "-o", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    statuses = [w["status"] for w in doc["windows"]]
    assert statuses.count("cached") == done and statuses.count("ok") == len(statuses) - done
    assert len(refserver.generation_requests) - sent_before == len(statuses) - done
    assert sorted(e["label"] for e in doc["events"]) == sorted(t[0] for t in TRUTH)


@pytest.mark.parametrize("decoders", ["1", "2"])
def test_ctrl_c_exits_130_and_leaves_cache_consistent(clip: Path, refserver: Any, tmp_path: Path,
                                                      decoders: str) -> None:
    cache = tmp_path / "sigint-cache"
    refserver.configure(latency=0.3)
    cmd = [sys.executable, "-m", "vidline", "timeline", str(clip), *_model_args(refserver), "--quiet",
           "--concurrency", "2", "--cache-dir", str(cache), "--decoders", decoders]
    env = {k: v for k, v in os.environ.items() if k not in MODEL_ENV}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(cache.glob("windows/*/*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    entries = list(cache.glob("windows/*/*.json"))
    assert entries and not list(cache.rglob(".tmp-*"))
    # no decode worker process is left behind (they share the run's command line)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _processes_with(str(cache)):
        time.sleep(0.05)
    assert not _processes_with(str(cache))
    for e in entries:  # every entry is complete JSON
        assert "text" in json.loads(e.read_text())


def test_every_window_failing_is_exit_1(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any) -> None:
    refserver.configure(fail_rate=1.0)
    code, out, err = _run(capsys, str(clip), *_model_args(refserver), "--quiet", "--no-cache")
    assert code == 1
    assert "every window failed" in err
    assert json.loads(out)["events"] == []
    # several videos, none with a window that worked: a failure too (it was "partial", exit 3)
    import shutil

    other = clip.parent / "copy_of_clip.mp4"
    shutil.copy(clip, other)
    code, out, err = _run(capsys, str(clip), str(other), *_model_args(refserver), "--quiet", "--no-cache")
    assert code == 1, err
    assert [d["events"] for d in json.loads(out)] == [[], []]


def test_unreachable_server_fails_fast_with_one_line(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, out, err = _run(capsys, str(clip), "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m",
                          "--retries", "0", "--quiet", "--no-cache", "--concurrency", "1")
    assert code != 0 and out == ""
    assert "unreachable" in _one_line(err)
    assert f"at http://127.0.0.1:{port}/v1" in err  # which URL was tried (a typo, the SDK's default)
    assert time.monotonic() - t0 < 20


def test_folder_run_indexes_and_keeps_going_past_a_bad_file(
    capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "recordings"
    (folder / "cam2").mkdir(parents=True)
    (folder / "cam1.mp4").write_bytes(clip.read_bytes())
    (folder / "cam2" / "late.mp4").write_bytes(clip.read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    (folder / "notes.txt").write_text("not a video")
    db = tmp_path / "index.db"
    code, out, err = _run(capsys, str(folder), *_model_args(refserver), "--window", "20", "--overlap", "2",
                          "--fps", "1", "--quiet", "--index", "--db", str(db), "-o", str(tmp_path / "out"))
    assert code == 3, err  # partial: one recording could not be read
    assert "broken.mp4" in err and "Traceback" not in err
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.json"))
    assert written == ["cam1.json", "cam2/late.json"]  # the folders below the one given
    from vidline.index import EventIndex

    hits = EventIndex(db).search("red square")
    assert {Path(h.video).name for h in hits} == {"cam1.mp4", "late.mp4"}
    for h in hits:
        assert h.start == pytest.approx(31.0, abs=1.5) and h.end == pytest.approx(35.0, abs=1.5)
    # indexing the same runs again stores nothing new
    code2, _, err2 = _run(capsys, str(folder / "cam1.mp4"), *_model_args(refserver), "--window", "20",
                          "--overlap", "2", "--fps", "1", "--quiet", "--index", "--db", str(db))
    assert code2 == 0, err2
    assert len(EventIndex(db).search("red square")) == 2


def test_empty_folder_is_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, str(tmp_path / "empty"))
    assert code == 2
    assert "no video files" in _one_line(err)


def test_console_exit_after_a_normal_run_keeps_every_output(clip: Path, refserver: Any, tmp_path: Path) -> None:
    """`python -m vidline` skips the interpreter's teardown after exit 0 / 3: stdout through a pipe and
    the -o file must be complete."""
    env = {k: v for k, v in os.environ.items() if k not in MODEL_ENV}
    base = [sys.executable, "-m", "vidline", "timeline", str(clip), *_model_args(refserver), "--quiet", "--no-cache"]
    proc = subprocess.run(base, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the whole document arrived before the process ended
    assert sorted(e["label"] for e in doc["events"]) == sorted(t[0] for t in TRUTH)
    out = tmp_path / "t.csv"
    proc = subprocess.run([*base, "-o", str(out)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0 and out.read_text().count("\n") == len(doc["events"]) + 1


@pytest.mark.parametrize("argv", [
    ["timeline", "{clip}", "--backend", "motion", "--window", "inf"],
    ["timeline", "{clip}", "--backend", "motion", "--fps", "nan"],
    ["timeline", "{clip}", "--backend", "motion", "--pre", "nan"],
    ["sample", "{clip}", "--fps", "inf", "--out", "{tmp}"],
    ["sample", "{clip}", "--start", "nan", "--out", "{tmp}"],
    ["plan", "{clip}", "--backend", "bogus"],
    ["plan", "{clip}", "--mode", "bogus"],
    ["plan", "{clip}", "--overlap", "nan"],
])
def test_non_finite_and_unknown_values_are_usage_errors(capsys: pytest.CaptureFixture[str], clip: Path,
                                                        tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([a.format(clip=clip, tmp=tmp_path / "out") for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("vidline")


def test_no_model_is_said_once_for_several_videos(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), str(clip), "--quiet")
    assert code == 0 and len(json.loads(out)) == 2, err
    assert err.count("no model configured") == 1


def test_several_videos_of_the_same_name_get_their_own_files(capsys: pytest.CaptureFixture[str], clip: Path,
                                                             tmp_path: Path) -> None:
    """An NVR layout (day1/00.mp4, day2/00.mp4) and two containers of one name: -o DIR keeps the
    folders below the shared one and the extension where stems clash, so nothing is overwritten."""
    nvr = tmp_path / "nvr"
    for day in ("day1", "day2"):
        (nvr / day).mkdir(parents=True)
        (nvr / day / "00.mp4").write_bytes(clip.read_bytes())
    make_video(nvr / "day2" / "00.mkv", duration=4.0, fps=4, size=(160, 120))
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, str(nvr), "--backend", "motion", "--quiet", "-o", str(out))
    assert code == 0 and stdout == "", err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.json"))
    assert written == ["day1/00.json", "day2/00.mkv.json", "day2/00.mp4.json"]
    assert json.loads((out / "day2" / "00.mkv.json").read_text())["video"]["path"].endswith("00.mkv")


@pytest.mark.parametrize("how", ["model", "url", "dashscope-model"])
def test_wrong_model_or_url_stops_at_the_first_window(capsys: pytest.CaptureFixture[str], clip: Path,
                                                      refserver: Any, how: str) -> None:
    """A 404 before any answer (no such model; a base URL without /v1), or DashScope's 400 "Model not
    exist", is said once and stops the run, like a wrong key, instead of failing every window the same
    way."""
    args = _model_args(refserver)
    if how == "model":
        args[args.index("--model") + 1] = "no-such-model"
    elif how == "url":
        args[args.index("--base-url") + 1] = refserver.openai_base_url.removesuffix("/v1")
    else:
        args[args.index("--base-url") + 1] = refserver.dashscope_base_url
        args[args.index("--model") + 1] = "no-such-model"
        args += ["--backend", "dashscope"]
    code, out, err = _run(capsys, str(clip), *args, "--quiet", "--no-cache", "--concurrency", "1")
    assert code == 1 and out == ""
    assert ("400" if how == "dashscope-model" else "404") in _one_line(err)
    assert ("missing /v1?" in err) == (how == "url")
    # a wrong model on an OpenAI-compatible server: the models it serves are named
    assert ("the server serves: qwen2.5-vl-ref; choose with --model" in err) == (how == "model")
    assert len(refserver.requests) <= 3  # GET /models, then one window (not all 4)


def test_a_window_longer_than_a_request_is_said(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--dry-run",
                          "--window", "1000")
    assert code == 0 and "longer than one request may cover (600 s)" in err


def test_without_model_the_cache_key_names_the_served_model(capsys: pytest.CaptureFixture[str], clip: Path,
                                                            refserver: Any) -> None:
    """No --model: the run uses the server's only model, and its cached answers are keyed by that name,
    so the same URL serving another model later does not get the first one's answers back."""
    args = _model_args(refserver)
    del args[args.index("--model"):args.index("--model") + 2]
    code, out, err = _run(capsys, str(clip), *args, "--quiet")
    assert code == 0 and json.loads(out)["model"] == "qwen2.5-vl-ref", err
    code, out, err = _run(capsys, str(clip), *args, "--quiet")  # the same server: all cached
    assert {w["status"] for w in json.loads(out)["windows"]} == {"cached"}, err
    served = refserver.model
    try:
        refserver.model = "another-vl"
        code, out, err = _run(capsys, str(clip), *args, "--quiet")
    finally:
        refserver.model = served
    doc = json.loads(out)
    assert code == 0 and doc["model"] == "another-vl", err
    assert {w["status"] for w in doc["windows"]} == {"ok"}  # asked again, not the old model's answers


def test_windows_fit_the_servers_context(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         refserver: Any) -> None:
    """vLLM says its context (max_model_len): windows planned at ~20k tokens for a 12k server are sent
    with smaller frames, first time, instead of each being refused and shrunk; a re-run is all cached."""
    video = make_video(tmp_path / "hd.mp4", duration=60.0, fps=4, size=(1280, 720),
                       markers=[Marker("red square", 10.0, 20.0)])
    refserver.configure(context_limit=12000)
    args = [*_model_args(refserver), "--server", "vllm", "--window", "60", "--fps", "2"]
    code, out, err = _run(capsys, str(video), *args, "--quiet")
    doc = json.loads(out)
    assert code == 0, err
    assert "do not fit the server's context of 12000 tokens" in err
    chats = [r for r in refserver.requests if r.api != "models"]
    assert [r.status for r in chats] == [200] and chats[0].prompt_tokens + 1024 <= 12000
    assert [(e["label"], round(e["start"]), round(e["end"])) for e in doc["events"]] == [("red square", 10, 20)]
    refserver.reset()
    refserver.configure(context_limit=12000)
    code, out, err = _run(capsys, str(video), *args, "--quiet")
    assert code == 0 and {w["status"] for w in json.loads(out)["windows"]} == {"cached"}, err
    assert not [r for r in refserver.requests if r.api != "models"]


def test_a_server_without_a_model_list_is_not_waited_for(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    """--server vllm asks GET /v1/models only for the context length (nice to know): a server that
    answers it 501 is asked once, not retried with backoff before the first window (that cost ~8 s)."""
    import http.server
    import threading

    gets: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            gets.append(self.path)
            self.send_error(501)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": "[]"}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        code, out, err = _run(capsys, str(clip), "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
                              "--api-key", "k", "--model", "m", "--server", "vllm", "--window", "20",
                              "--quiet", "--no-cache")
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
    assert code == 0 and json.loads(out)["events"] == [], err
    assert len(gets) == 1 and elapsed < 4.0, (gets, elapsed)


def test_estimates_follow_a_vllm_fallback(capsys: pytest.CaptureFixture[str], clip: Path, refserver: Any) -> None:
    """vLLM without --trust-request-mm-kwargs cuts a JPEG list to 32 frames: after the fallback each
    window's record estimates what was sent (it kept the 40-frame plan's, ~25 % too high)."""
    refserver.configure(trust_mm_kwargs=False)
    args = [*_model_args(refserver), "--server", "vllm", "--mode", "frames", "--window", "20", "--overlap", "0",
            "--fps", "2", "--quiet", "--no-cache", "--concurrency", "1"]
    code, out, err = _run(capsys, str(clip), *args)
    assert code == 0, err
    for w in json.loads(out)["windows"]:
        used = w["usage"]["prompt_tokens"]
        assert abs(w["estimated_tokens"] - used) <= 0.05 * used, (w["estimated_tokens"], used)
        assert w["frames"] == 32  # the frames sent (40 sampled, evenly cut to vLLM's 32)
    # the same for windows whose answer cannot be parsed (the real vLLM's gibberish)
    refserver.configure(styles=["gibberish"])
    code, out, err = _run(capsys, str(clip), *args)
    windows = json.loads(out)["windows"]
    assert {w["status"] for w in windows} == {"failed"}, err
    for w in windows:
        used = w["usage"]["prompt_tokens"]
        assert abs(w["estimated_tokens"] - used) <= 0.05 * used, (w["estimated_tokens"], used)


def _offline_server_args(server: Any, *extra: str) -> list[str]:
    args = [*_model_args(server), "--retries", "0", "--concurrency", "1", "--quiet", *extra]
    del args[args.index("--model"):args.index("--model") + 2]  # keyed by the model the server serves
    return args


def test_cached_rerun_while_the_server_is_down(capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path) -> None:
    """A run without --model keys its answers by the model the server said it serves. Re-run while the
    server is down, it answers from the cache with what the server said then, instead of failing; a
    window that is not cached fails as unreachable, and the others are kept (exit 3, partial)."""
    from tests.refserver import RefServer

    server = RefServer()
    args = _offline_server_args(server)
    try:
        code, out, err = _run(capsys, str(clip), *args)
        first = json.loads(out)
        assert code == 0 and first["model"] == "qwen2.5-vl-ref", err
    finally:
        server.stop()
    code, out, err = _run(capsys, str(clip), *args)  # nothing listens on that port now
    doc = json.loads(out)
    assert code == 0, err
    assert "unreachable" in err and "answering from the cache with what the server said on" in err
    assert {w["status"] for w in doc["windows"]} == {"cached"} and doc["model"] == "qwen2.5-vl-ref"
    assert doc["events"] == first["events"]
    entries = sorted((tmp_path / "cache" / "windows").glob("*/*.json"))
    entries[0].unlink()  # one answer lost: that window needs the server
    code, out, err = _run(capsys, str(clip), *args)
    doc = json.loads(out)
    assert code == 3, err  # partial: the cached windows are kept
    failed = [w for w in doc["windows"] if w["status"] == "failed"]
    assert len(failed) == 1 and "unreachable" in failed[0]["error"]
    assert sum(w["status"] == "cached" for w in doc["windows"]) == len(doc["windows"]) - 1
    assert "keeping the" in err and "windows already answered" in err


def test_context_fitted_rerun_while_the_server_is_down(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Windows planned smaller to fit vLLM's context are keyed by that plan: a re-run with the server
    down plans them the same way from what the server said (max_model_len), and finds them cached."""
    from tests.refserver import RefServer

    video = make_video(tmp_path / "hd.mp4", duration=30.0, fps=4, size=(1280, 720),
                       markers=[Marker("red square", 10.0, 20.0)])
    server = RefServer(context_limit=12000)
    args = [*_offline_server_args(server, "--server", "vllm"), "--window", "30", "--fps", "2"]
    try:
        code, out, err = _run(capsys, str(video), *args)
        assert code == 0 and "do not fit the server's context of 12000 tokens" in err, err
    finally:
        server.stop()
    code, out, err = _run(capsys, str(video), *args)
    assert code == 0, err
    doc = json.loads(out)
    assert {w["status"] for w in doc["windows"]} == {"cached"}, err
    assert "context_length 12000" in err
    assert [(e["label"], round(e["start"]), round(e["end"])) for e in doc["events"]] == [("red square", 10, 20)]


def test_a_down_server_with_nothing_remembered_is_still_one_line(capsys: pytest.CaptureFixture[str], clip: Path,
                                                                 tmp_path: Path) -> None:
    from tests.refserver import RefServer

    server = RefServer()
    server.stop()
    code, out, err = _run(capsys, str(clip), *_offline_server_args(server))
    assert code == 1 and out == "" and "unreachable" in _one_line(err)


def test_a_server_gone_midway_through_several_videos_keeps_the_timelines_made(
    capsys: pytest.CaptureFixture[str], clip: Path, tmp_path: Path
) -> None:
    from tests.refserver import RefServer

    other = make_video(tmp_path / "other.mp4", duration=12.0, fps=4, size=(160, 120),
                       markers=[Marker("red square", 3.0, 6.0)])
    server = RefServer()
    args = [*_model_args(server), "--retries", "0", "--quiet"]
    try:
        code, _out, err = _run(capsys, str(clip), *args)
        assert code == 0, err
    finally:
        server.stop()
    code, out, err = _run(capsys, str(clip), str(other), *args)  # the first is cached, the second is not
    assert code == 1 and "unreachable" in err
    docs = json.loads(out)
    assert [Path(d["video"]["path"]).name for d in docs] == ["clip.mp4"]
    assert {w["status"] for w in docs[0]["windows"]} == {"cached"}


def test_down_server_after_a_fully_cached_run_without_model(capsys: pytest.CaptureFixture[str], clip: Path) -> None:
    """The served model a key names is kept even when no window needed the server: run 1 with
    --model, run 2 without it (all cached: one GET /v1/models), run 3 without it, server down."""
    from tests.refserver import RefServer

    server = RefServer()
    with_model = [*_model_args(server), "--retries", "0", "--concurrency", "1", "--quiet"]
    try:
        assert _run(capsys, str(clip), *with_model)[0] == 0
        code, out, err = _run(capsys, str(clip), *_offline_server_args(server))
        assert code == 0 and {w["status"] for w in json.loads(out)["windows"]} == {"cached"}, err
    finally:
        server.stop()
    code, out, err = _run(capsys, str(clip), *_offline_server_args(server))
    assert code == 0, err
    assert {w["status"] for w in json.loads(out)["windows"]} == {"cached"}


def test_progress_in_a_log_keeps_failures_on_their_own_lines(capsys: pytest.CaptureFixture[str], clip: Path,
                                                              refserver: Any) -> None:
    # on a non-TTY the failed windows were glued to the bar's "0/13" line, and "0%" came twice
    refserver.configure(fail_rate=0.5, seed=3)
    code, _out, err = _run(capsys, str(clip), *_model_args(refserver), "--no-cache", "--retries", "0")
    assert code == 3, err
    lines = err.splitlines()
    listed = [ln for ln in lines if "windows failed (partial timeline)" in ln]
    assert len(listed) == 1 and listed[0].startswith("vidline: ")
    first_fail = lines.index(listed[0])
    assert all(ln.startswith("vidline:   window ") for ln in lines[first_fail + 1:] if ln.strip())
    assert sum(ln.count(" 0%") for ln in lines) <= 1


def test_an_output_suffix_of_no_format_is_refused_first(capsys: pytest.CaptureFixture[str], clip: Path,
                                                        tmp_path: Path) -> None:
    # -o report.pdf wrote JSON into report.pdf and exited 0
    code, _out, err = _run(capsys, str(clip), "--backend", "motion", "--quiet", "-o", str(tmp_path / "report.pdf"))
    assert code == 2 and "cannot tell the format from .pdf" in err
    assert not (tmp_path / "report.pdf").exists()
    code, _out, err = _run(capsys, str(clip), "--backend", "motion", "--quiet", "-o", str(tmp_path / "report.pdf"),
                           "--format", "csv")
    assert code == 0 and (tmp_path / "report.pdf").read_text().startswith("start,end")


def test_dry_run_prices_a_query_before_any_server_is_configured(capsys: pytest.CaptureFixture[str],
                                                                clip: Path) -> None:
    code, out, err = _run(capsys, str(clip), "--query", "a forklift", "--dry-run", "--price-per-1k", "0.002")
    assert code == 0, err
    assert "estimated price" in out and "vllm (assumed)" in out and "no model configured" in err


def test_a_generic_server_that_says_its_context_is_fitted_too(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               refserver: Any) -> None:
    """A server built like vLLM but not saying so (SGLang, a proxy) reports max_model_len too: it was
    ignored, and every window was refused with a 400."""
    video = make_video(tmp_path / "hd.mp4", duration=60.0, fps=4, size=(1280, 720),
                       markers=[Marker("red square", 10.0, 20.0)])
    refserver.configure(context_limit=12000)
    args = [*_model_args(refserver), "--server", "generic", "--mode", "video", "--window", "60", "--fps", "2"]
    code, out, err = _run(capsys, str(video), *args, "--quiet")
    assert code == 0, err
    assert "do not fit the server's context of 12000 tokens" in err and "frames of" in err
    chats = [r for r in refserver.requests if r.api != "models"]
    assert [r.status for r in chats] == [200] and chats[0].prompt_tokens + 1024 <= 12000
