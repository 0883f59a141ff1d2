"""Motion backend: the pure segmentation (table) and detection on generated videos (ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from vidline.errors import ConfigError
from vidline.motion import MotionParams, analysis_size, frame_score, score_frames, segment_scores
from vidline.types import Frame

RAW = MotionParams(threshold=0.5, min_event=0.0, merge_gap=0.0, pre=0.0, post=0.0)


def _t(n: int, fps: float = 1.0) -> list[float]:
    return [i / fps for i in range(n)]


# (scores at 1 sample/s, params, duration, expected [(start, end)])
SEGMENT_TABLE = [
    ("nothing", [0, 0, 0, 0], RAW, 4.0, []),
    ("one run covers the frame before it", [0, 0, 1, 1, 0, 0], RAW, 6.0, [(1.0, 3.0)]),
    ("run at the very start", [1, 1, 0, 0], RAW, 4.0, [(0.0, 1.0)]),
    ("run to the end", [0, 0, 1, 1], RAW, 4.0, [(1.0, 3.0)]),
    ("two runs with a gap", [0, 1, 0, 0, 0, 1, 0], RAW, 7.0, [(0.0, 1.0), (4.0, 5.0)]),
    ("threshold is inclusive", [0, 0.5, 0.49, 0], RAW, 4.0, [(0.0, 1.0)]),
    ("merge gap joins close runs", [0, 1, 0, 0, 1, 0], MotionParams(threshold=0.5, min_event=0, merge_gap=2.0,
                                                                    pre=0, post=0), 6.0, [(0.0, 4.0)]),
    ("merge gap keeps far runs apart", [0, 1, 0, 0, 0, 0, 1, 0],
     MotionParams(threshold=0.5, min_event=0, merge_gap=2.0, pre=0, post=0), 8.0, [(0.0, 1.0), (5.0, 6.0)]),
    ("min event drops a flicker", [0, 0, 1, 0, 0, 1, 1, 1, 0],
     MotionParams(threshold=0.5, min_event=2.0, merge_gap=0, pre=0, post=0), 9.0, [(4.0, 7.0)]),
    ("padding clamped to the video", [1, 1, 0, 0, 0, 1],
     MotionParams(threshold=0.5, min_event=0, merge_gap=0, pre=1.0, post=1.5), 5.5, [(0.0, 2.5), (3.0, 5.5)]),
    ("padding that overlaps joins", [0, 0, 1, 0, 0, 1, 0, 0],
     MotionParams(threshold=0.5, min_event=0, merge_gap=0, pre=1.0, post=1.0), 8.0, [(0.0, 6.0)]),
]


@pytest.mark.parametrize("name,scores,params,duration,expected", SEGMENT_TABLE, ids=[r[0] for r in SEGMENT_TABLE])
def test_segment_scores_table(name: str, scores: list[float], params: MotionParams, duration: float,
                              expected: list[tuple[float, float]]) -> None:
    events = segment_scores(_t(len(scores)), scores, params, duration=duration)
    got = [x for e in events for x in (e.start, e.end)]
    assert got == pytest.approx([x for pair in expected for x in pair])
    assert all(e.label == "motion" for e in events)


def test_confidence_is_normalised_peak() -> None:
    weak, strong = segment_scores(_t(8), [0, 0.1, 0.1, 0, 0, 0, 0.9, 0], MotionParams(
        threshold=0.1, min_event=0, merge_gap=0, pre=0, post=0), duration=8)
    assert weak.confidence == pytest.approx(0.5)
    assert strong.confidence is not None and 0.85 < strong.confidence <= 1.0


def test_frame_score_counts_changed_pixels_in_any_channel() -> None:
    a = np.full((10, 10, 3), 96, np.uint8)
    b = a.copy()
    b[:2, :5] = (220, 30, 30)  # red on grey: luma nearly equal, colour very different
    assert frame_score(a, b) == pytest.approx(0.1)
    assert frame_score(a, a) == 0.0
    c = a.copy()
    c[0, 0] = 110  # below pixel_delta: noise
    assert frame_score(a, c) == 0.0


def test_score_frames_first_frame_is_zero() -> None:
    imgs = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)]
    times, scores = score_frames(Frame(t=i * 0.5, image=im) for i, im in enumerate(imgs))
    assert times == [0.0, 0.5] and scores == [0.0, 1.0]


def test_analysis_size() -> None:
    assert analysis_size(320, 240, 160) == (160, 120)
    assert analysis_size(100, 50, 160) == (100, 50)  # never upscaled
    w, h = analysis_size(1080, 1920, 160)
    assert w == 160 and h % 2 == 0


def test_bad_params() -> None:
    with pytest.raises(ConfigError):
        MotionParams(threshold=0).validate()
    with pytest.raises(ConfigError):
        MotionParams(pre=-1).validate()


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def test_detect_motion_on_synthetic_video(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("vidline.media.sampler")
    from vidline.motion import detect_motion
    from vidline.synth import Marker, make_video

    # moving green circle during [2, 6); a STATIC blue triangle during [9, 13) (appears/disappears only,
    # more than merge_gap away from the others); moving red square (luma ~ background) during [16, 19)
    markers = [Marker("green circle", 2.0, 6.0, x=0.2, dx=0.15), Marker("blue triangle", 9.0, 13.0),
               Marker("red square", 16.0, 19.0, x=0.2, dx=0.15)]
    path = make_video(tmp_path / "m.mp4", duration=21.0, fps=10, size=(160, 120), markers=markers)
    # frame differencing: only change counts, so the static triangle is two one-sample blips, dropped
    events = detect_motion(path, pre=0.0, post=0.0, method="diff")
    got = [(e.start, e.end) for e in events]
    assert len(got) == 2, got
    assert _iou(got[0], (2.0, 6.0)) >= 0.8, got
    assert _iou(got[1], (16.0, 19.0)) >= 0.75, got
    assert all(e < 8.5 or s > 13.5 for s, e in got)  # the static stretch yields nothing
    assert all(e.label == "motion" and e.confidence is not None and 0 < e.confidence <= 1 for e in events)
    # background subtraction (the default, like DVR-Scan): what arrives and stays is foreground while
    # the background has not absorbed it, so the triangle that sits there for 4 s is an event too
    events = detect_motion(path, pre=0.0, post=0.0)
    got = [(e.start, e.end) for e in events]
    assert len(got) == 3, got
    assert _iou(got[0], (2.0, 6.0)) >= 0.8 and _iou(got[1], (9.0, 13.0)) >= 0.75, got
    assert _iou(got[2], (16.0, 19.0)) >= 0.75, got


def test_background_scores_keep_what_arrives_and_stays() -> None:
    import numpy as np

    from vidline.motion import background_scores, score_frames
    from vidline.types import Frame

    empty = np.zeros((10, 10, 3), np.uint8)
    parked = empty.copy()
    parked[:5] = 200  # half the picture, arrived at sample 4 and stays
    frames = [Frame(t=i / 4, image=empty if i < 4 else parked) for i in range(4 * 50)]
    _t, diff = score_frames(frames)
    assert [round(x, 2) for x in diff[3:7]] == [0.0, 0.5, 0.0, 0.0]  # one blip
    _t, bg = background_scores(frames, alpha=1 / 80)  # adapts over 20 s at 4 fps
    assert all(x == 0.5 for x in bg[4:4 + 4 * 20])  # foreground for 20 s and more ...
    assert bg[-1] == 0.0  # ... until absorbed (200 * (1 - 1/80)^k < 25 after ~166 samples, ~41 s)


def test_motion_method_is_checked() -> None:
    with pytest.raises(ConfigError, match="--motion-method"):
        MotionParams(method="mog2").validate()


@pytest.mark.parametrize("roi", [[(0.0, 0.0, 0.5, 1.0)], [(0, 0, 80, 120)], [(0.0, 0.0, 0.2, 0.5), (0.2, 0.0, 0.3, 1.0)]])
def test_roi_watches_only_its_region(tmp_path, roi) -> None:  # type: ignore[no-untyped-def]
    # DVR-Scan's -roi: a tree swaying on the right of the picture is not motion when only the left is
    # watched; the score is the fraction of the *watched* pixels, so the threshold means the same
    from vidline.motion import detect_motion
    from vidline.synth import Marker, make_video

    markers = [Marker("green circle", 2.0, 6.0, x=0.25, y=0.5, dx=0.02),   # left half
               Marker("red square", 9.0, 13.0, x=0.75, y=0.5, dx=0.02)]    # right half
    path = make_video(tmp_path / "roi.mp4", duration=16.0, fps=10, size=(160, 120), markers=markers)
    whole = detect_motion(path, pre=0.0, post=0.0)
    assert len(whole) == 2, whole
    left = detect_motion(path, pre=0.0, post=0.0, roi=roi)
    assert len(left) == 1 and _iou((left[0].start, left[0].end), (2.0, 6.0)) >= 0.75, left


def test_roi_is_checked() -> None:
    from vidline.motion import check_roi

    with pytest.raises(ConfigError, match="--roi"):
        check_roi([(0.1, 0.1, 0.5)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="--roi w"):
        check_roi([(0.1, 0.1, 0.0, 0.5)])
