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
``1m30s``, ``1 min 30 sec``     minutes and seconds (also ``1分30秒``); ``2 minutes``
``12-15s``, ``12 to 15 seconds`` a range whose unit follows the second number (also
                                ``between 12 and 15 seconds``, ``12到15秒``)
``t=12.5``                      a media-fragment style offset
``"start": 12.5``               JSON keys start/end/start_time/end_time/time/timestamp
==============================  =======================================

A clock may be followed by a colon (``00:05 - 00:20: label``) and a number by CJK text (``在5秒``).
A length of time is left as written: seconds or minutes after "for", "lasting", "every", "within",
"in", "持续", ... or before "long", "later", "apart", "之前", ... ("visible for 15 seconds"). "After
15 seconds" and "15秒后" are moments (15 s into the clip).

Clock and unit forms are rewritten as clocks (``MM:SS`` or ``H:MM:SS``, keeping the fraction digits
the original had); ``t=`` and JSON numbers stay plain seconds so they keep their syntax.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_clock", "parse_clock", "rewrite_caption_times", "find_time_references"]

_NUM = r"\d+(?:\.\d+)?"
_SEC = r"(?:seconds|second|secs|sec|s(?![A-Za-z])|秒)"
_MIN = r"(?:minutes|minute|mins|min|m(?![A-Za-z])|分钟|分)"
# not inside a word or a number; a CJK character may come right before ("在5秒")
_LEFT = r"(?<![A-Za-z0-9_.:])"
# a clock may be followed by ":" ("00:05 - 00:20: label"), not by more clock digits
_CLOCK = r"(?<![\d:.,])(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?(?!\d|:\d)"

_PATTERN = re.compile(
    "|".join(
        [
            # 12-15s, 12 to 15 seconds, between 12 and 15 seconds, 12.0 - 15.5 seconds, 5到20秒
            rf"(?P<range>{_LEFT}(?P<r1>{_NUM})(?P<rsep>\s*(?:-|–|—|~|to|and|到|至)\s*)(?P<r2>{_NUM})(?P<runit>\s*{_SEC}))",
            rf"(?P<clock>{_CLOCK})",
            # 1m30s, 1 min 30 sec, 1分30秒
            rf"(?P<ms>{_LEFT}(?P<mv>\d+)\s*{_MIN}\s*(?P<msv>{_NUM})\s*{_SEC})",
            rf"(?P<secs>{_LEFT}(?P<sv>{_NUM})(?P<sunit>\s*{_SEC}))",
            rf"(?P<mins>{_LEFT}(?P<mnv>{_NUM})\s*(?:minutes|minute|mins|min(?![A-Za-z])|分钟))",
            rf"(?P<tq>\bt\s*=\s*)(?P<tv>{_NUM})",
            rf"(?P<jk>\"(?:start|end|start_time|end_time|time|timestamp)\"\s*:\s*)(?P<jv>{_NUM})(?![\d:])",
        ]
    ),
    re.IGNORECASE,
)

# a length of time, not a moment: "for 15 seconds", "lasting 2 minutes", "15 seconds long/later"
_DURATION_BEFORE = re.compile(
    r"(?:\b(?:for|lasting|lasts|lasted|last|takes|took|duration(?:\s+of)?|length(?:\s+of)?|every|each|"
    r"within|in)|持续|长达|历时|每|经过)\s*(?:about|around|approximately|roughly|nearly|almost|over|under|"
    r"just|only|another|a\s+further|more\s+than|less\s+than|at\s+least)?\s*$",
    re.IGNORECASE,
)
_DURATION_AFTER = re.compile(r"\s*(?:long\b|later\b|earlier\b|apart\b|in\s+length\b|each\b|per\b|之前|以前|长)",
                             re.IGNORECASE)


def _is_duration(text: str, m: re.Match[str]) -> bool:
    """Whether the seconds/minutes at ``m`` are a length of time (left as written), not a moment."""
    return bool(_DURATION_BEFORE.search(text[max(0, m.start() - 40):m.start()])
                or _DURATION_AFTER.match(text, m.end()))


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
    total = math.floor(seconds * scale + 0.5 + 1e-9)  # half up: 0.5 s is 00:01, not 00:00
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
        seconds = _abs(value, offset, scale)
        if scale != 1.0 and not digits and abs(seconds - round(seconds)) > 0.05:
            digits = 1  # a rescaled whole second is seldom whole: 00:01 at scale 0.5 is 00:00.5, not 00:01
        return format_clock(seconds, frac_digits=digits, hours=True if had_hours else None)

    def repl(m: re.Match[str]) -> str:
        if m.group("range"):
            a, b = m.group("r1"), m.group("r2")
            digits = max(_frac_digits(a), _frac_digits(b))
            return clock(float(a), digits, False) + m.group("rsep") + clock(float(b), digits, False)
        if m.group("clock"):
            raw = m.group("clock")
            had_hours = raw.count(":") == 2
            return clock(parse_clock(raw), _frac_digits(raw), had_hours)
        if m.group("ms") or m.group("secs") or m.group("mins"):
            if _is_duration(text, m):
                return m.group(0)
            if m.group("ms"):
                v = m.group("msv")
                return clock(60 * float(m.group("mv")) + float(v), _frac_digits(v), False)
            if m.group("secs"):
                v = m.group("sv")
                return clock(float(v), _frac_digits(v), False)
            v = m.group("mnv")
            return clock(60 * float(v), _frac_digits(v), False)
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
        elif (m.group("ms") or m.group("secs") or m.group("mins")) and _is_duration(text, m):
            continue
        elif m.group("ms"):
            refs.append((m.start(), m.end(), 60 * float(m.group("mv")) + float(m.group("msv"))))
        elif m.group("secs"):
            refs.append((m.start(), m.end(), float(m.group("sv"))))
        elif m.group("mins"):
            refs.append((m.start(), m.end(), 60 * float(m.group("mnv"))))
        elif m.group("tq"):
            refs.append((m.start(), m.end(), float(m.group("tv"))))
        else:
            refs.append((m.start("jv"), m.end("jv"), float(m.group("jv"))))
    return refs
