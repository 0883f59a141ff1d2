"""CMX 3600 EDL export: the events as a cut list an editor imports (Premiere, Resolve, Final Cut via
converters, Avid).

Each event is one edit: its source in/out are the event's times in the video (timecode at the
video's frame rate, non-drop-frame), and the record in/out lay the events end to end from 00:00:00:00,
so the imported sequence is a highlight reel of the events in time order. The reel is ``AX`` (a
file-based source) and a ``* FROM CLIP NAME:`` line names the video; the label and description
follow as ``* COMMENT:`` lines. Events shorter than one frame are shown for one frame.

Timecode uses the nearest whole frame rate (29.97 fps is counted at 30, non-drop, as most tools do
for EDLs of file-based media); source times come from the video's start, so an editor's clip whose
timecode starts at 00:00:00:00 lines up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vidline.types import Event

MAX_EVENTS = 999  # CMX 3600 numbers edits 001-999


def timecode(seconds: float, fps: int) -> str:
    """``HH:MM:SS:FF`` of ``seconds`` at ``fps`` whole frames per second (non-drop-frame)."""
    frames = max(0, int(math.floor(seconds * fps + 1e-6)))
    ff = frames % fps
    total = frames // fps
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}:{ff:02d}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def events_to_edl(events: Sequence[Event], *, fps: float, title: str = "vidline", clip_name: str = "") -> str:
    """The CMX 3600 EDL text of ``events`` (sorted by start) for a video of ``fps`` frames per second.

    More than 999 events are cut to the first 999 (the format's numbering), said in a comment."""
    rate = max(1, round(fps or 25.0))
    lines = [f"TITLE: {_one_line(title)[:70]}", "FCM: NON-DROP FRAME", ""]
    ordered = sorted(events, key=lambda e: (e.start, e.end))
    record = 0  # frames on the record side, events end to end
    for n, e in enumerate(ordered[:MAX_EVENTS], start=1):
        src_in = max(0, int(math.floor(e.start * rate + 1e-6)))
        src_out = max(src_in + 1, int(math.ceil(e.end * rate - 1e-6)))
        length = src_out - src_in
        lines.append(f"{n:03d}  AX       V     C        {timecode(src_in / rate, rate)} {timecode(src_out / rate, rate)} "
                     f"{timecode(record / rate, rate)} {timecode((record + length) / rate, rate)}")
        if clip_name:
            lines.append(f"* FROM CLIP NAME: {_one_line(clip_name)}")
        comment = _one_line(e.label or "event")
        if e.description and _one_line(e.description) != comment:
            comment += f" - {_one_line(e.description)}"
        lines.append(f"* COMMENT: {comment}")
        lines.append("")
        record += length
    if len(ordered) > MAX_EVENTS:
        lines.append(f"* {len(ordered) - MAX_EVENTS} more events left out: CMX 3600 numbers 999 edits at most")
    return "\n".join(lines).rstrip("\n") + "\n"
