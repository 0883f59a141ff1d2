"""The offline scenes backend: cut detection (pure, table-tested) and end to end on generated videos."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidline.cli import main
from vidline.errors import ConfigError
from vidline.scenes import SceneParams, content_change, detect_scenes, find_cuts, scene_events

P = SceneParams()


def _times(n: int, fps: float = 4.0) -> list[float]:
    return [i / fps for i in range(n)]


# (changes per sample at 4 fps, expected cut times): changes[i] is from sample i-1 to sample i
CUT_CASES = [
    ("static, one cut", [0.0] * 10 + [0.6] + [0.0] * 10, [2.5]),
    ("two cuts", [0.0] * 10 + [0.5] + [0.01] * 12 + [0.4] + [0.0] * 5, [2.5, 5.75]),
    ("below the threshold", [0.0] * 10 + [0.05] + [0.0] * 10, []),
    # a pan: every frame changes a lot, none much more than its neighbours
    ("camera pan", [0.0] + [0.3, 0.32, 0.29, 0.31, 0.3, 0.33, 0.3, 0.28, 0.3, 0.31], []),
    # a cut during a pan still stands out
    ("cut in a pan", [0.0] + [0.05] * 8 + [0.6] + [0.05] * 8, [2.25]),
    # a flash: out and back, 0.25 s apart: one cut (the second is within min_scene)
    ("flash", [0.0] * 10 + [0.7, 0.7] + [0.0] * 10, [2.5]),
    ("cuts closer than min_scene", [0.0] * 10 + [0.5] + [0.0] * 3 + [0.5] + [0.0] * 20, [2.5]),
    ("cut right at the start", [0.0, 0.9] + [0.0] * 20, []),  # 0.25 s in: within min_scene of 0
    ("empty", [], []),
]


@pytest.mark.parametrize(("name", "changes", "expected"), CUT_CASES, ids=[c[0] for c in CUT_CASES])
def test_find_cuts(name: str, changes: list[float], expected: list[float]) -> None:
    cuts = find_cuts(_times(len(changes)), changes, P)
    assert [t for t, _c in cuts] == pytest.approx(expected)


def test_min_scene_zero_keeps_a_cut_at_the_start() -> None:
    changes = [0.0, 0.9] + [0.0] * 20
    assert [t for t, _c in find_cuts(_times(len(changes)), changes, SceneParams(min_scene=0.0))] == [0.25]


def test_scene_events_cover_the_video() -> None:
    events = scene_events([(2.5, 0.6), (5.75, 0.08)], 9.0, P)
    assert [(e.start, e.end) for e in events] == [(0.0, 2.5), (2.5, 5.75), (5.75, 9.0)]
    assert [e.label for e in events] == ["scene"] * 3
    assert [e.description for e in events] == ["scene 1 of 3", "scene 2 of 3", "scene 3 of 3"]
    assert events[0].confidence is None and events[1].confidence == pytest.approx(0.6 / 0.68, abs=1e-3)
    assert events[2].confidence == 0.5  # right at the threshold
    assert [(e.start, e.end) for e in scene_events([], 9.0, P)] == [(0.0, 9.0)]


def test_content_change() -> None:
    black = np.zeros((4, 4, 3), np.uint8)
    white = np.full((4, 4, 3), 255, np.uint8)
    assert content_change(black, white) == 1.0 and content_change(black, black) == 0.0
    red = black.copy()
    red[..., 0] = 255  # the largest channel difference: a red object on black is a full change
    assert content_change(black, red) == 1.0


def test_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="--scene-threshold"):
        SceneParams(threshold=0).validate()
    with pytest.raises(ConfigError, match="--min-scene"):
        SceneParams(min_scene=-1).validate()


SHOTS = [(0.0, 6.0), (6.0, 13.5), (13.5, 20.0)]


def _shots_video(path: Path, fps: int = 10) -> Path:
    """Three shots (different patterns), each with a square moving across it, and a slow pan in the
    second: cuts at 6.0 and 13.5 s only."""
    rng = np.random.default_rng(0)
    w, h = 160, 120
    # smooth pictures (coarse noise, enlarged): a pan shifts them a little, as a camera does a scene
    patterns = [np.kron(rng.integers(0, 255, (h // 20, w * 2 // 20, 3), dtype=np.uint8),
                        np.ones((20, 20, 1), np.uint8)) for _ in SHOTS]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(int(SHOTS[-1][1] * fps)):
            t = i / fps
            k = next(j for j, (a, b) in enumerate(SHOTS) if a <= t < b)
            shift = int(8 * (t - SHOTS[k][0])) if k == 1 else 0  # 8 px/s pan in the second shot
            img = np.ascontiguousarray(patterns[k][:, shift:shift + w])
            x = int(10 + 20 * (t - SHOTS[k][0]))
            img[50:70, x:x + 20] = (255, 0, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shots_video(tmp_path_factory.mktemp("scenes") / "shots.mp4")


def test_detect_scenes_finds_the_shots(shots: Path) -> None:
    from vidline.media.probe import probe
    from vidline.scenes import scene_changes

    info = probe(shots)
    times, changes = scene_changes(shots, P, src_width=info.width, src_height=info.height, duration=info.duration)
    assert len(find_cuts(times, changes, SceneParams(ratio=1.0))) > 3  # the pan is over the threshold alone
    events = detect_scenes(shots)
    assert [e.start for e in events] == pytest.approx([a for a, _b in SHOTS], abs=0.26)  # one sample at 4 fps
    assert [e.end for e in events] == pytest.approx([b for _a, b in SHOTS], abs=0.26)


def test_cli_scenes_backend(shots: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "DASHSCOPE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["timeline", str(shots), "--backend", "scenes", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["backend"] == "scenes" and doc["model"] is None
    assert [e["start"] for e in doc["events"]] == pytest.approx([a for a, _b in SHOTS], abs=0.26)
    assert [e["label"] for e in doc["events"]] == ["scene"] * 3 and doc["windows"][0]["status"] == "ok"
    # a higher threshold keeps only the stronger cut; --min-scene longer than a shot drops cuts
    assert main(["timeline", str(shots), "--backend", "scenes", "--quiet", "--min-scene", "8"]) == 0
    assert len(json.loads(capsys.readouterr().out)["events"]) == 2
    # the other outputs work as for any timeline
    assert main(["timeline", str(shots), "--backend", "scenes", "--quiet", "-o", str(tmp_path / "s.srt")]) == 0
    assert (tmp_path / "s.srt").read_text().count("-->") == 3
    assert main(["timeline", str(shots), "--backend", "scenes", "--dry-run"]) == 0
    assert "offline scene-cut detector" in capsys.readouterr().out
    assert main(["timeline", str(shots), "--backend", "scenes", "--query", "a dog"]) == 2
    assert "scenes backend cannot answer a --query" in capsys.readouterr().err


def test_api_scenes_backend(shots: Path) -> None:
    import vidline

    tl = vidline.analyze(shots, backend="scenes", min_scene=1.0, cache=False)
    assert tl.backend == "scenes" and len(tl.events) == 3
    with pytest.raises(ConfigError, match="--scene-threshold"):
        vidline.analyze(shots, backend="scenes", scene_threshold=2.0, cache=False)


def test_cli_roi_for_motion_and_scenes(shots: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the whole picture changes at each cut: a region sees the same cuts; a bad region is a bad option
    assert main(["timeline", str(shots), "--backend", "scenes", "--quiet", "--roi", "0,0,0.5,0.5"]) == 0
    assert len(json.loads(capsys.readouterr().out)["events"]) == 3
    with pytest.raises(SystemExit) as info:
        main(["timeline", str(shots), "--backend", "motion", "--roi", "0,0,1"])
    assert info.value.code == 2


def test_detect_scenes_watches_the_regions_given(shots: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vidline.scenes as scenes

    seen: list[object] = []
    real = scenes.scene_changes

    def spy(path: object, params: SceneParams, **kw: object) -> object:
        seen.append(params.roi)
        return real(path, params, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(scenes, "scene_changes", spy)
    events = detect_scenes(shots, roi=[(0, 0, 0.5, 0.5)])
    assert seen == [((0.0, 0.0, 0.5, 0.5),)] and len(events) == 3  # the whole picture cuts: the region too
    with pytest.raises(ConfigError):
        detect_scenes(shots, roi=[(0, 0, 0, 1)])
