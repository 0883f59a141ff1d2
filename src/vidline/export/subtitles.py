"""SRT and WebVTT export: one cue per event, valid in players (VLC, mpv, browsers' <track>).

Cue text is the label, then the description on a second line when there is one. Newlines inside
a description are folded (a blank line would end the cue) and ``-->`` is never emitted in text.
Events shorter than ``min_cue`` seconds are shown for ``min_cue`` seconds so they can be seen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vidline.export.timefmt import hms_ms
from vidline.types import Event

MIN_CUE = 0.5


_ARROW = re.compile(r"-{2,}>")


def _one_line(text: object) -> str:
    """``text`` on one line with no ``-->`` in it (any run of dashes before ``>`` becomes ``->``)."""
    return " ".join(_ARROW.sub("->", str(text)).split())


def cue_text(event: Event, *, confidence: bool = False) -> list[str]:
    """The text lines of one cue (never empty)."""
    label = _one_line(event.label) or "event"
    if confidence and event.confidence is not None:
        label = f"{label} ({float(event.confidence):.2f})"
    lines = [label]
    if event.description:
        desc = _one_line(event.description)
        if desc and desc != label:
            lines.append(desc)
    return lines


def _times(event: Event, min_cue: float) -> tuple[float, float]:
    start = max(0.0, event.start)
    end = max(event.end, start + min_cue)
    return start, end


def events_to_srt(events: Sequence[Event], *, min_cue: float = MIN_CUE, confidence: bool = False) -> str:
    """SubRip text: ``1\\n00:00:01,000 --> 00:00:02,500\\nlabel\\n\\n2...``. Empty input gives ``""``."""
    blocks = []
    for i, e in enumerate(sorted(events, key=lambda x: (x.start, x.end)), start=1):
        start, end = _times(e, min_cue)
        lines = cue_text(e, confidence=confidence)
        blocks.append(f"{i}\n{hms_ms(start, ',')} --> {hms_ms(end, ',')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def events_to_vtt(
    events: Sequence[Event],
    *,
    min_cue: float = MIN_CUE,
    confidence: bool = False,
    note: str | None = None,
) -> str:
    """WebVTT text: ``WEBVTT`` header, optional ``NOTE``, then numbered cues ``00:00:01.000 --> ...``."""
    out = ["WEBVTT\n"]
    if note:
        out.append("NOTE " + _one_line(note) + "\n")
    for i, e in enumerate(sorted(events, key=lambda x: (x.start, x.end)), start=1):
        start, end = _times(e, min_cue)
        lines = [_vtt_escape(line) for line in cue_text(e, confidence=confidence)]
        out.append(f"{i}\n{hms_ms(start)} --> {hms_ms(end)}\n" + "\n".join(lines) + "\n")
    return "\n".join(out)
