"""Time formatting shared by the exporters (pure)."""

from __future__ import annotations


def split_ms(seconds: float) -> tuple[int, int, int, int]:
    """(hours, minutes, seconds, milliseconds) of a non-negative time, rounded to the millisecond."""
    total_ms = int(round(max(0.0, seconds) * 1000))
    secs, ms = divmod(total_ms, 1000)
    mins, secs = divmod(secs, 60)
    hrs, mins = divmod(mins, 60)
    return hrs, mins, secs, ms


def hms_ms(seconds: float, sep: str = ".") -> str:
    """``00:01:02.500`` (``sep=","`` gives the SRT form ``00:01:02,500``)."""
    h, m, s, ms = split_ms(seconds)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def hms(seconds: float) -> str:
    """``00:01:02`` (whole seconds, truncated toward the start of the second the time falls in)."""
    h, m, s, _ = split_ms(int(max(0.0, seconds)))
    return f"{h:02d}:{m:02d}:{s:02d}"


def short_time(seconds: float) -> str:
    """``1:02`` / ``1:02:03`` style used in compact displays (no hours when under one hour)."""
    h, m, s, _ = split_ms(int(max(0.0, seconds)))
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fragment_time(seconds: float) -> str:
    """The ``t=`` value of a media-fragment URL: ``123.4``, ``0``, ``12.25`` (millisecond precision)."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return text or "0"
