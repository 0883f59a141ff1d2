"""Time references in free-form model text (pure functions, no I/O).

A caption written for one window says "00:15" meaning 15 s after the window's first frame. Before
the final (reduce) request sees it, :func:`rewrite_caption_times` turns every such reference into an
absolute time of the whole video ("40:15" for a window starting at 40:00), so the final answer can
cite times the user can seek to.

Recognised forms (each may be preceded by "at", "from", ... and appear inside brackets):

==============================  =======================================
``mm:ss``, ``m:ss``             clock, minutes and seconds
``hh:mm:ss``                    clock with hours
``mm:ss.ff`` / ``hh:mm:ss,mmm`` clock with a fraction (Qwen, SRT)
``12s``, ``12.5 s``, ``12 sec``  seconds with a unit (also ``seconds``, ``秒``)
``12-15s``, ``12 to 15 seconds`` a range whose unit follows the second number
``t=12.5``                      a media-fragment style offset
``"start": 12.5``               JSON keys start/end/start_time/end_time/time/timestamp
==============================  =======================================

Clock and unit forms are rewritten as clocks (``MM:SS`` or ``H:MM:SS``, keeping the fraction digits
the original had); ``t=`` and JSON numbers stay plain seconds so they keep their syntax.
"""

from __future__ import annotations

import re

__all__ = ["format_clock", "parse_clock", "rewrite_caption_times", "find_time_references"]

_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"(?:seconds|second|secs|sec|s\b|秒)"
_CLOCK = r"(?<![\d:.,])(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?(?![\d:])"

_PATTERN = re.compile(
    "|".join(
        [
            # 12-15s, 12 to 15 seconds, 12.0 - 15.5 seconds
            rf"(?P<range>(?<![\w.:])(?P<r1>{_NUM})(?P<rsep>\s*(?:-|–|—|~|to)\s*)(?P<r2>{_NUM})(?P<runit>\s*{_UNIT}))",
            rf"(?P<clock>{_CLOCK})",
            rf"(?P<secs>(?<![\w.:])(?P<sv>{_NUM})(?P<sunit>\s*{_UNIT}))",
            rf"(?P<tq>\bt\s*=\s*)(?P<tv>{_NUM})",
            rf"(?P<jk>\"(?:start|end|start_time|end_time|time|timestamp)\"\s*:\s*)(?P<jv>{_NUM})(?![\d:])",
        ]
    ),
    re.IGNORECASE,
)


def parse_clock(text: str) -> float:
    """``"01:02"`` -> 62.0, ``"1:02:03,5"`` -> 3723.5 (also plain seconds ``"12.5"``)."""
    text = text.strip().replace(",", ".")
    parts = text.split(":")
    if len(parts) > 3 or not all(p.replace(".", "", 1).isdigit() for p in parts):
        raise ValueError(f"not a clock time: {text!r}")
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def format_clock(seconds: float, *, frac_digits: int = 0, hours: bool | None = None) -> str:
    """``MM:SS``; ``H:MM:SS`` from one hour on (``hours=None``); ``HH:MM:SS`` when ``hours`` is True;
    ``MMM:SS`` past an hour when ``hours`` is False. ``frac_digits`` decimals."""
    seconds = max(0.0, seconds)
    scale = 10**frac_digits
    total = round(seconds * scale)
    whole, frac = divmod(total, scale)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    if hours:
        text = f"{h:02d}:{m:02d}:{s:02d}"
    elif hours is None and h:
        text = f"{h}:{m:02d}:{s:02d}"
    else:
        text = f"{m + 60 * h:02d}:{s:02d}"
    if frac_digits:
        text += f".{frac:0{frac_digits}d}"
    return text


def _frac_digits(number: str) -> int:
    m = re.search(r"[.,](\d+)$", number)
    return len(m.group(1)) if m else 0


def _abs(value: float, offset: float, scale: float) -> float:
    return offset + value * scale


def rewrite_caption_times(text: str, offset: float, *, scale: float = 1.0) -> str:
    """Rewrite every clip-relative time in ``text`` as an absolute time: ``offset + scale * t``.

    ``offset`` is the window's start in seconds; ``scale`` is the backend's ``time_scale`` (the
    factor that turns the model's clip-relative seconds into real seconds, 1.0 almost always).
    Text without time references is returned unchanged.
    """
    if not text:
        return text

    def clock(value: float, digits: int, had_hours: bool) -> str:
        return format_clock(_abs(value, offset, scale), frac_digits=digits, hours=True if had_hours else None)

    def repl(m: re.Match[str]) -> str:
        if m.group("range"):
            a, b = m.group("r1"), m.group("r2")
            digits = max(_frac_digits(a), _frac_digits(b))
            return clock(float(a), digits, False) + m.group("rsep") + clock(float(b), digits, False)
        if m.group("clock"):
            raw = m.group("clock")
            had_hours = raw.count(":") == 2
            return clock(parse_clock(raw), _frac_digits(raw), had_hours)
        if m.group("secs"):
            v = m.group("sv")
            return clock(float(v), _frac_digits(v), False)
        if m.group("tq"):
            v = _abs(float(m.group("tv")), offset, scale)
            return m.group("tq") + _plain(v)
        v = _abs(float(m.group("jv")), offset, scale)
        return m.group("jk") + _plain(v)

    return _PATTERN.sub(repl, text)


def _plain(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def find_time_references(text: str) -> list[tuple[int, int, float]]:
    """``(start_index, end_index, seconds)`` of every time reference in ``text`` (ranges give two)."""
    refs: list[tuple[int, int, float]] = []
    for m in _PATTERN.finditer(text):
        if m.group("range"):
            refs.append((m.start("r1"), m.end("r1"), float(m.group("r1"))))
            refs.append((m.start("r2"), m.end("runit"), float(m.group("r2"))))
        elif m.group("clock"):
            refs.append((m.start(), m.end(), parse_clock(m.group("clock"))))
        elif m.group("secs"):
            refs.append((m.start(), m.end(), float(m.group("sv"))))
        elif m.group("tq"):
            refs.append((m.start(), m.end(), float(m.group("tv"))))
        else:
            refs.append((m.start("jv"), m.end("jv"), float(m.group("jv"))))
    return refs
