"""Window planning: coverage, overlap, no tiny tail, limits."""

from __future__ import annotations

import math

import pytest

from vidline.errors import ConfigError
from vidline.media.windows import max_frames_for, max_window_for, plan_windows


@pytest.mark.parametrize(
    ("duration", "window", "overlap", "n"),
    [
        (60, 120, 10, 1),
        (120, 120, 10, 1),
        (121, 120, 10, 2),  # not 120 + a 1 s tail: two balanced windows
        (230, 120, 10, 2),
        (231, 120, 10, 3),
        (3600, 120, 10, 33),
        (3600, 600, 0, 6),
        (10.5, 2, 0.5, 7),
    ],
)
def test_plan_windows_table(duration: float, window: float, overlap: float, n: int) -> None:
    ws = plan_windows(duration, window, overlap)
    assert len(ws) == n
    assert ws[0].start == 0
    assert ws[-1].end == pytest.approx(duration)
    assert [w.index for w in ws] == list(range(n))
    lengths = [w.end - w.start for w in ws]
    assert max(lengths) <= window + 1e-6
    if n > 1:
        # never a tiny tail: every window at least half the asked length and all alike
        assert min(lengths) >= (window - overlap) / 2 + overlap - 1e-6
        assert max(lengths) - min(lengths) < 1e-3
        for a, b in zip(ws, ws[1:], strict=False):
            assert a.end - b.start == pytest.approx(overlap, abs=1e-3)  # overlap kept, no gaps


def test_max_window_bounds_window() -> None:
    ws = plan_windows(3000, 900, 10, max_window=max_window_for("video", "dashscope"))
    assert all(w.end - w.start <= 600 + 1e-6 for w in ws)


def test_limits_from_protocols() -> None:
    assert max_window_for("video", "dashscope") == 600  # Qwen2.5-VL: 2 s - 10 min
    assert max_window_for("frames", "dashscope") == 600
    assert max_frames_for("dashscope") == 512  # frame lists of 4-512
    assert max_frames_for("openai") == 768
    assert math.isinf(max_window_for(None, "motion"))


@pytest.mark.parametrize(("duration", "window", "overlap"), [
    (0, 10, 1), (10, 0, 0), (10, 5, 5), (10, 5, -1),
    (math.inf, 10, 1), (math.nan, 10, 1), (10, math.inf, 1),  # OverflowError / a silent plan before
])
def test_bad_windows(duration: float, window: float, overlap: float) -> None:
    with pytest.raises(ConfigError):
        plan_windows(duration, window, overlap)


def test_window_cap_note() -> None:
    from vidline.media.windows import window_cap_note

    assert window_cap_note(None, 600.0) is None and window_cap_note(600.0, 600.0) is None
    assert window_cap_note(1000.0, 600.0) == (
        "--window 1000 s is longer than one request may cover (600 s): windows are at most that")
