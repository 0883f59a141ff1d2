"""The committed samples: deterministic regeneration, ground truth, and the example scripts (run as
subprocesses against the reference server, or offline with the motion backend)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from vidline.synth import Marker, active_labels, detect_markers

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
GT = json.loads((SAMPLES / "samples.json").read_text())
TIME_RE = re.compile(r"(\d\d):(\d\d):(\d\d\.\d\d\d)")


def _seconds(text: str) -> float:
    h, m, s = TIME_RE.fullmatch(text).groups()  # type: ignore[union-attr]
    return int(h) * 3600 + int(m) * 60 + float(s)


def markers(name: str) -> list[Marker]:
    return [Marker(**m) for m in GT[name]["markers"]]


def run_script(script: str, *args: str, env_extra: dict[str, str] | None = None,
               timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "DASHSCOPE_", "VIDLINE_"))}
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, str(SAMPLES / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def needs_pipeline() -> None:
    pytest.importorskip("vidline.timeline")
    pytest.importorskip("vidline.pipeline")


def test_samples_are_small_and_match_ground_truth() -> None:
    for name, spec in GT.items():
        path = SAMPLES / name
        assert path.stat().st_size < 1_000_000
        ms = markers(name)
        with av.open(str(path)) as c:
            frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        assert len(frames) == round(spec["duration"] * spec["fps"])
        assert frames[0][1].shape == (spec["height"], spec["width"], 3)
        for t, img in frames[::8]:
            assert detect_markers(img) == active_labels(ms, t), (name, t)


def test_make_samples_is_deterministic() -> None:
    res = run_script("make_samples.py", "--check", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "up to date" in res.stdout


def test_samples_check_tolerates_x264_drift_but_not_another_picture() -> None:
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dock = SAMPLES / "dock.mp4"
    assert mod.same_pictures(dock, dock) and not mod.same_pictures(dock, SAMPLES / "shapes.mp4")
    base = [(i * 512, np.full((24, 32, 3), 128, np.uint8)) for i in range(5)]
    drift = [(p, img.copy()) for p, img in base]
    drift[2][1][3:5, 3:5] += 3  # x264's rate control: a block a few levels off
    patch = [(p, img.copy()) for p, img in base]
    patch[2][1][4:14, 4:14] = 255  # a drawn shape: another picture
    late = [(p + (512 if i == 3 else 0), img) for i, (p, img) in enumerate(base)]
    assert mod.frames_match(base, drift)
    assert not mod.frames_match(base, patch)
    assert not mod.frames_match(base, late)
    assert not mod.frames_match(base, base[:4])


def test_search_folder_offline_motion(tmp_path: Path) -> None:
    needs_pipeline()
    res = run_script("search_folder.py", str(SAMPLES), "motion", "--db", str(tmp_path / "i.db"))
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("dock.mp4")]
    # the motion backend finds each crossing in dock.mp4 (events padded by the detector's pre/post)
    for m in markers("dock.mp4"):
        assert any(_seconds(r[1]) <= m.start + 0.5 and _seconds(r[2]) >= m.end - 0.5 for r in rows), (m, rows)


def test_search_folder_with_model(refserver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    needs_pipeline()
    env = {"OPENAI_BASE_URL": refserver.openai_base_url, "OPENAI_API_KEY": "sk-test"}
    res = run_script("search_folder.py", str(SAMPLES), "square", "--db", str(tmp_path / "i.db"), env_extra=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for name in ("dock.mp4", "shapes.mp4"):
        for m in markers(name):
            found = [ln for ln in lines if ln.startswith(name) and m.label in ln]
            if "square" not in m.label:
                assert not found  # searching "square" does not list circles or triangles
                continue
            spans = [[_seconds(x.group(0)) for x in TIME_RE.finditer(ln)] for ln in found]
            assert any(abs(s[0] - m.start) <= 1.5 and abs(s[1] - m.end) <= 1.5 for s in spans), (m, found)
    assert refserver.requests, "the script never reached the server"


def test_custom_prompt_with_model(refserver) -> None:  # type: ignore[no-untyped-def]
    needs_pipeline()
    env = {"OPENAI_BASE_URL": refserver.openai_base_url, "OPENAI_API_KEY": "sk-test"}
    res = run_script("custom_prompt.py", str(SAMPLES / "shapes.mp4"),
                     "When is a red square or a green circle visible?", env_extra=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["question"].startswith("When is a red square")
    got = {(e["label"], e["start"], e["end"]) for e in out["events"]}
    for m in markers("shapes.mp4"):
        if m.label in ("red square", "green circle"):
            assert any(lab == m.label and abs(s - m.start) <= 1.5 and abs(e - m.end) <= 1.5
                       for lab, s, e in got), (m, got)
    assert all(TIME_RE.fullmatch(e["start_time"]) for e in out["events"])


def test_custom_prompt_without_model_explains() -> None:
    needs_pipeline()
    res = run_script("custom_prompt.py")
    assert res.returncode == 2
    assert "OPENAI_BASE_URL" in res.stderr
