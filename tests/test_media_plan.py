"""Qwen geometry and sampling plans: tables of facts measured on real servers (protocols.md)."""

from __future__ import annotations

import pytest

from vidline.errors import ConfigError
from vidline.media.plan import (
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    SamplingBudget,
    estimate_image_tokens,
    estimate_video_tokens,
    image_size_for,
    plan_sampling,
    smart_resize,
)


# The three server-measured facts the issue requires, exactly as stated.
def test_fact_4s_10fps_320x240_mp4_at_2fps() -> None:
    plan = plan_sampling(0.0, 4.0, SamplingBudget(fps=2.0), src_width=320, src_height=240, src_fps=10)
    assert plan.n_frames == 8
    assert (plan.height, plan.width) == (280, 392)
    assert plan.tokens == 560
    # the same via auto (2 fps is auto's ceiling) and the vLLM prompt of 587 = 560 + 2 markers + 25 text
    auto = plan_sampling(0.0, 4.0, SamplingBudget(), src_width=320, src_height=240, src_fps=10)
    assert (auto.n_frames, auto.height, auto.width, auto.tokens) == (8, 280, 392, 560)


def test_fact_640x480_image() -> None:
    assert image_size_for(480, 640) == (476, 644)
    assert estimate_image_tokens(476, 644) == 391


def test_fact_cookbook_60_frames() -> None:
    assert estimate_video_tokens(60, 532, 952) == 19380


@pytest.mark.parametrize(
    ("h", "w", "min_px", "max_px", "expected"),
    [
        (240, 320, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, (280, 392)),  # too small: scaled up, ceil
        (480, 640, 4 * 28 * 28, 16384 * 28 * 28, (476, 644)),  # nearest multiples
        (720, 1280, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, (560, 1008)),  # too big: scaled down, floor
        (1080, 1920, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, (560, 1008)),
        (10, 10, 4 * 28 * 28, 16384 * 28 * 28, (56, 56)),
        (360, 640, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, (364, 644)),
    ],
)
def test_smart_resize_table(h: int, w: int, min_px: int, max_px: int, expected: tuple[int, int]) -> None:
    rh, rw = smart_resize(h, w, min_pixels=min_px, max_pixels=max_px)
    assert (rh, rw) == expected
    assert rh % 28 == 0 and rw % 28 == 0


def test_smart_resize_rejects_extreme_aspect() -> None:
    with pytest.raises(ConfigError):
        smart_resize(10, 2100)


@pytest.mark.parametrize(
    ("n", "h", "w", "tokens"),
    [
        (8, 280, 392, 560),
        (7, 280, 392, 560),
        (1, 28, 28, 1),
        (2, 28, 28, 1),
        (0, 28, 28, 0),
        (4, 560, 1008, 1440),
    ],
)
def test_video_tokens_table(n: int, h: int, w: int, tokens: int) -> None:
    assert estimate_video_tokens(n, h, w) == tokens


@pytest.mark.parametrize(
    ("start", "end", "budget", "n", "fps"),
    [
        (0, 4, SamplingBudget(fps=2.0), 8, 2.0),
        (0, 60, SamplingBudget(), 120, 2.0),  # auto: 2 fps ceiling
        (0, 600, SamplingBudget(max_frames=512), 512, 512 / 600),  # auto limited by max frames
        (0, 3600, SamplingBudget(), 768, 768 / 3600),  # qwen's 768-frame cap
        (0, 36000, SamplingBudget(), 3600, 0.1),  # floor wins over max_frames
        (0, 60, SamplingBudget(fps=0.5), 30, 0.5),
        (0, 4.5, SamplingBudget(fps=1.0), 4, 4 / 4.5),  # floor to even
        (0, 3, SamplingBudget(fps=1.0), 4, 4 / 3),  # at least 4 frames (still <= 2 fps)
        (0, 1, SamplingBudget(fps=2.0), 2, 2.0),  # too short for 4 frames at <= 2 fps
        (10, 20, SamplingBudget(fps=5.0, max_fps=5.0), 50, 5.0),  # above 2 fps only when asked
        # even counts in exact arithmetic survive float rounding: (10.2 - 9.8) * 10 = 3.99999999999998
        (9.8, 10.2, SamplingBudget(fps=10.0), 4, 10.0),
        (1.1, 2.3, SamplingBudget(fps=5.0), 6, 5.0),  # 5.999999999999998
        (1.1, 1.3, SamplingBudget(fps=20.0), 4, 20.0),  # 3.999999999999999
        (2.2, 2.4, SamplingBudget(fps=10.0), 2, 10.0),  # 1.9999999999999973
        (0.1, 0.3, SamplingBudget(fps=20.0, max_fps=20.0), 4, 20.0),  # auto-style floor with max_fps
    ],
)
def test_plan_counts_table(start: float, end: float, budget: SamplingBudget, n: int, fps: float) -> None:
    plan = plan_sampling(start, end, budget, src_width=320, src_height=240)
    assert plan.n_frames == n
    assert plan.n_frames % 2 == 0
    assert plan.fps == pytest.approx(fps)
    assert plan.timestamps[0] == start
    assert all(start <= t < end for t in plan.timestamps)
    assert all(
        b - a == pytest.approx(1 / plan.fps)
        for a, b in zip(plan.timestamps, plan.timestamps[1:], strict=False)
    )


def test_auto_never_exceeds_2fps_and_never_below_floor() -> None:
    for duration in (2, 7, 33, 100, 599, 1800, 7200):
        plan = plan_sampling(0, duration, SamplingBudget(min_fps=0.25), src_width=640, src_height=360)
        assert plan.fps <= 2.0 + 1e-9
        assert plan.fps >= 0.25 - 1e-9


def test_auto_token_budget() -> None:
    free = plan_sampling(0, 120, SamplingBudget(), src_width=1280, src_height=720)
    capped = plan_sampling(0, 120, SamplingBudget(max_tokens=20000), src_width=1280, src_height=720)
    assert capped.tokens <= 20000 < free.tokens
    assert capped.fps >= 0.1


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080), (720, 1280), (640, 480), (3840, 2160)])
@pytest.mark.parametrize("duration", [30, 120, 300, 599])
def test_auto_token_budget_shrinks_frames_to_the_minimum_before_the_fps_drops(
    width: int, height: int, duration: float
) -> None:
    # a token cap first shrinks frames (past the total-pixel share, down to Qwen's minimum size) and
    # only then lowers the frame rate: a 5-min 720p clip fits 24576 tokens at > 1 fps, not 0.5
    budget = SamplingBudget(min_fps=0.5, max_tokens=24576)
    plan = plan_sampling(0, duration, budget, src_width=width, src_height=height)
    assert plan.tokens <= 24576 and plan.fps >= 0.5 - 1e-9
    assert plan.width % 28 == 0 and plan.height % 28 == 0

    assert smart_resize(plan.height, plan.width) == (plan.height, plan.width)  # a server keeps the size
    assert plan.width * plan.height >= VIDEO_MIN_PIXELS  # never below Qwen's minimum
    free = plan_sampling(0, duration, SamplingBudget(min_fps=0.5), src_width=width, src_height=height)
    if free.tokens <= 24576:
        assert plan == free  # a cap that is not reached changes nothing
    elif plan.fps < 2.0 - 1e-9:
        # the rate dropped only once frames are (about) Qwen's minimum: two more would not fit
        assert plan.width * plan.height <= 1.15 * VIDEO_MIN_PIXELS
        assert estimate_video_tokens(plan.n_frames + 2, plan.height, plan.width) > 24576
    if duration == 300 and (width, height) == (1280, 720):
        assert plan.fps > 1.0 and (plan.width, plan.height) == (448, 252)  # was 0.5 fps at 1008x560


def test_token_cap_at_the_fps_floor_takes_the_smallest_frames() -> None:
    # the floor wins over the cap; its frames are then as small as the plan makes them
    plan = plan_sampling(0, 600, SamplingBudget(min_fps=1.0, max_tokens=1000), src_width=1280, src_height=720)
    assert plan.n_frames == 600
    assert (plan.width, plan.height) == (448, 252)


def test_total_pixels_shrinks_frames() -> None:
    # qwen-vl-utils: per-frame max = total / n * 2, bounded below by 1.05 * min pixels
    plan = plan_sampling(
        0, 60, SamplingBudget(fps=2.0, total_pixels=120 * 28 * 28 * 64), src_width=1280, src_height=720
    )
    assert plan.n_frames == 120
    assert plan.width * plan.height <= 128 * 28 * 28
    assert plan.width % 28 == 0 and plan.height % 28 == 0


def test_source_frame_cap() -> None:
    plan = plan_sampling(0, 4, SamplingBudget(fps=10, max_fps=10), src_width=320, src_height=240, src_fps=5)
    assert plan.n_frames == 20


def test_source_frame_cap_tolerates_rounding() -> None:
    # (0.9 - 0.7) * 20 = 4.000000000000002 source frames: capped at 4, not rounded up to 6
    plan = plan_sampling(0.7, 0.9, SamplingBudget(fps=40), src_width=320, src_height=240, src_fps=20)
    assert plan.n_frames == 4


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -1}, {"min_fps": 3.0}, {"max_frames": 1}])
def test_bad_budget(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SamplingBudget(**kwargs)  # type: ignore[arg-type]


def test_empty_range() -> None:
    with pytest.raises(ConfigError):
        plan_sampling(5, 5, SamplingBudget(), src_width=320, src_height=240)
