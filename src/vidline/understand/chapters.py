"""Chapter marks: parse a model's answer, normalise, and format (pure functions, no I/O).

Normalisation follows YouTube's rules for description chapters: the first chapter starts at 00:00,
chapters are in order, and each is at least ``min_length`` seconds long (YouTube wants 10 s; shorter
ones are merged into the previous chapter). Each chapter ends where the next starts; the last ends
at the video's duration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vidline.understand.times import format_clock, parse_clock

__all__ = ["Chapter", "parse_chapters", "normalize_chapters", "format_chapters", "to_youtube", "to_vtt", "to_json"]


@dataclass(frozen=True)
class Chapter:
    """One chapter ``[start, end)`` in seconds from the first displayed frame."""

    start: float
    end: float
    title: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(float(self.start), 3), "end": round(float(self.end), 3), "title": self.title}


_TIME = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?|\d+(?:\.\d+)?\s*(?:seconds|second|secs|sec|s(?![a-z])|秒)?"
_LINE = re.compile(
    rf"""^\s*(?:[-*•+]|\d+[.)](?=\s))?\s*(?:\*\*)?\s*[\[(]?\s*(?:from\s+|at\s+)?
    (?P<t1>{_TIME})
    (?:\s*(?:-->|-|–|—|~|to)\s*(?P<t2>{_TIME}))?
    \s*[\])]?\s*(?:\*\*)?\s*[:：\-–—|.)]*\s*(?P<title>.*?)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TITLE_KEYS = ("title", "name", "label", "chapter", "description", "summary")
_START_KEYS = ("start", "start_time", "time", "timestamp", "begin")
_END_KEYS = ("end", "end_time", "stop")


def _to_seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)) and value:
        return _to_seconds(value[0])
    if isinstance(value, str):
        text = re.sub(r"\s*(?:seconds|second|secs|sec|s|秒)\s*$", "", value.strip(), flags=re.IGNORECASE)
        try:
            return parse_clock(text)
        except ValueError:
            return None
    return None


def _from_json(text: str) -> list[tuple[float, float | None, str]] | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        start = min((i for i in (cand.find("["), cand.find("{")) if i >= 0), default=-1)
        if start < 0:
            continue
        end = max(cand.rfind("]"), cand.rfind("}"))
        try:
            data = json.loads(cand[start : end + 1])
        except ValueError:
            continue
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        if not isinstance(data, list):
            continue
        out: list[tuple[float, float | None, str]] = []
        for item in data:
            if not isinstance(item, dict):
                continue
            s = next((_to_seconds(item[k]) for k in _START_KEYS if k in item), None)
            e = next((_to_seconds(item[k]) for k in _END_KEYS if k in item), None)
            if e is None and isinstance(item.get("timestamp"), (list, tuple)) and len(item["timestamp"]) > 1:
                e = _to_seconds(item["timestamp"][1])
            title = next((str(item[k]) for k in _TITLE_KEYS if item.get(k)), "")
            if s is not None:
                out.append((s, e, _clean_title(title)))
        if out:
            return out
    return None


def _clean_title(title: str) -> str:
    """One line of plain text: markdown emphasis and code marks, quotes and trailing punctuation
    removed, any run of whitespace (newlines included) made one space."""
    title = re.sub(r"\*\*|__|`", "", title)
    title = re.sub(r"\s+", " ", title).strip()
    return title.strip(" \"'“”").rstrip(" .;,").strip()


def _one_line(title: str) -> str:
    """A title as one line (a newline would end a WebVTT cue, or leave a YouTube line without a time)."""
    return re.sub(r"\s+", " ", title).strip()


def parse_chapters(text: str) -> list[tuple[float, float | None, str]]:
    """``(start, end or None, title)`` triples from a model answer: JSON (optionally fenced, a list or
    ``{"chapters": [...]}``) or lines like ``00:00 Intro`` / ``00:12 - 00:40: Title`` / ``[12s] Title``.
    Times are as written (the caller has already made them absolute). Lines without a leading time
    are ignored; an answer without any gives ``[]``."""
    found = _from_json(text)
    if found is not None:
        return found
    out: list[tuple[float, float | None, str]] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or not m.group("title"):
            continue
        s = _to_seconds(m.group("t1"))
        e = _to_seconds(m.group("t2")) if m.group("t2") else None
        title = _clean_title(m.group("title"))
        if s is None or not title:
            continue
        out.append((s, e, title))
    return out


def normalize_chapters(
    raw: Sequence[tuple[float, float | None, str]],
    duration: float,
    *,
    min_length: float | None = None,
    default_title: str = "Video",
) -> list[Chapter]:
    """Order, clamp and join chapters so they tile ``[0, duration]`` with the first at 0.

    ``min_length`` defaults to ``min(10, duration / 20)`` (YouTube's 10 s, scaled down for short clips).
    A chapter shorter than that is merged into the previous one (its title is dropped). Duplicate
    titles in a row are merged. An empty list gives one chapter covering the whole video.
    """
    duration = max(0.0, duration)
    if min_length is None:
        min_length = min(10.0, duration / 20)
    items = sorted(
        ((min(max(0.0, s), duration), t) for s, _e, t in raw if t and 0 <= s <= duration + 0.5),
        key=lambda x: x[0],
    )
    if not items:
        return [Chapter(0.0, duration, default_title)]
    # YouTube: the first chapter starts at 00:00 (an intro before the first cited time joins it)
    starts: list[tuple[float, str]] = [(0.0, items[0][1])]
    for s, title in items[1:]:
        if title == starts[-1][1] or s - starts[-1][0] < min_length:
            continue  # too close to the previous chapter: merged into it
        starts.append((s, title))
    # the last chapter must be long enough too
    while len(starts) > 1 and duration - starts[-1][0] < min_length:
        starts.pop()
    chapters = []
    for i, (s, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else duration
        chapters.append(Chapter(s, end, title))
    return chapters


def to_youtube(chapters: Sequence[Chapter]) -> str:
    """``00:00 Title`` lines (``H:MM:SS`` when the video reaches an hour), first at 00:00."""
    hours = any(c.end >= 3600 or c.start >= 3600 for c in chapters)
    lines = []
    for c in chapters:
        stamp = format_clock(int(c.start), hours=None)
        if hours and ":" in stamp and stamp.count(":") == 1:
            stamp = "0:" + stamp
        lines.append(f"{stamp} {_one_line(c.title)}")
    return "\n".join(lines) + "\n"


def _vtt_time(t: float) -> str:
    return format_clock(t, frac_digits=3, hours=True)


def to_vtt(chapters: Sequence[Chapter]) -> str:
    """A WebVTT chapters track (``<track kind="chapters">``)."""
    parts = ["WEBVTT", ""]
    for i, c in enumerate(chapters, 1):
        title = _one_line(c.title).replace("-->", "->")
        parts += [f"Chapter {i}", f"{_vtt_time(c.start)} --> {_vtt_time(c.end)}", title, ""]
    return "\n".join(parts)


def to_json(chapters: Sequence[Chapter], indent: int | None = 2) -> str:
    return json.dumps([c.to_dict() for c in chapters], indent=indent, ensure_ascii=False) + "\n"


def format_chapters(chapters: Sequence[Chapter], fmt: str = "youtube") -> str:
    if fmt == "youtube":
        return to_youtube(chapters)
    if fmt == "vtt":
        return to_vtt(chapters)
    if fmt == "json":
        return to_json(chapters)
    raise ValueError(f"unknown chapter format {fmt!r}: choose youtube, vtt or json")
