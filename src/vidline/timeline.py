"""``Timeline``: the result of analysing one video, with its JSON form and exports.

JSON shape (stable; scripts rely on it)::

    {"video": {"path", "duration", ...}, "query", "backend", "model", "mode",
     "events": [{"start", "end", "label", "description", "confidence", "windows"}],
     "windows": [{"index", "start", "end", "frames", "status", "error", "estimated_tokens", "usage"}],
     "usage": {"prompt_tokens", "completion_tokens"}}

Times are seconds from the first displayed frame; events are sorted by start.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidline.errors import ConfigError, require_number
from vidline.types import Event, Usage, WindowRecord

__all__ = ["FORMATS", "Timeline"]

FORMATS = ("json", "csv", "srt", "vtt", "html", "edl")
_SUFFIX_FORMATS = {
    ".edl": "edl",
    ".json": "json",
    ".csv": "csv",
    ".srt": "srt",
    ".vtt": "vtt",
    ".html": "html",
    ".htm": "html",
}
_KEYS = ("video", "query", "backend", "model", "mode", "events", "windows", "usage")


def format_for_output(path: str | os.PathLike[str] | None, format: str | None = None) -> str:
    """The export format for an output ``path``: ``format`` when given, else the path's suffix
    (``.json``, ``.csv``, ``.srt``, ``.vtt``, ``.html``, ``.edl``), else JSON when it has none.
    ConfigError for a suffix of no format (``report.pdf`` would get JSON)."""
    if format:
        fmt = format.lower().lstrip(".")
        if fmt not in FORMATS and fmt != "htm":
            raise ConfigError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
        return "html" if fmt == "htm" else fmt
    if path is None:
        return "json"
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if suffix and not out.is_dir():
        raise ConfigError(f"{out}: cannot tell the format from {suffix}: name the file .json, .csv, .srt, "
                          ".vtt, .html or .edl, or give the format (--format; format= in Python)")
    return "json"


def _event_key(e: Event) -> tuple[float, float, str]:
    return (e.start, e.end, e.label)


@dataclass
class Timeline:
    """Events found in one video plus how the run went (windows, usage)."""

    video: dict[str, Any] = field(default_factory=dict)
    query: str | None = None
    backend: str = ""
    model: str | None = None
    mode: str | None = None
    events: list[Event] = field(default_factory=list)
    windows: list[WindowRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level JSON keys, kept on round-trip

    def __post_init__(self) -> None:
        self.events = sorted(self.events, key=_event_key)
        self.windows = sorted(self.windows, key=lambda w: w.index)

    # ---------------------------------------------------------------- convenience

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    @property
    def duration(self) -> float | None:
        d = self.video.get("duration")
        return float(d) if isinstance(d, (int, float)) else None

    @property
    def labels(self) -> list[str]:
        """Distinct labels in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.events:
            seen.setdefault(e.label, None)
        return list(seen)

    @property
    def failed_windows(self) -> list[WindowRecord]:
        return [w for w in self.windows if w.status == "failed"]

    @property
    def partial(self) -> bool:
        """True when some windows failed, so events in their stretches may be missing."""
        return bool(self.failed_windows)

    def sorted_events(self) -> list[Event]:
        """The events sorted by (start, end, label), even if ``events`` was edited in place."""
        return sorted(self.events, key=_event_key)

    # ---------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        video = dict(self.video)
        video.setdefault("path", None)
        video.setdefault("duration", None)
        d: dict[str, Any] = {
            "video": video,
            "query": self.query,
            "backend": self.backend,
            "model": self.model,
            "mode": self.mode,
            "events": [_event_dict(e) for e in self.sorted_events()],
            "windows": [w.to_dict() for w in self.windows],
            "usage": self.usage.to_dict(),
        }
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Timeline:
        if isinstance(d, list) and d and all(isinstance(x, dict) and "events" in x for x in d):
            # what `vidline timeline A B` prints
            raise ConfigError(f"holds a JSON array of {len(d)} timelines (a several-video run's output), not one "
                              "timeline: take one (e.g. jq '.[0]'), or run the timeline with -o DIR for one file "
                              "per video")
        if not isinstance(d, dict) or not isinstance(d.get("events", []), list):
            raise ConfigError("not a vidline timeline: expected an object with an 'events' list")
        from vidline.index import check_events

        try:
            check_events(d)
        except ConfigError as exc:
            raise ConfigError(f"not a valid vidline timeline: {exc}") from exc
        try:
            usage = d.get("usage") or {}
            return cls(
                video=dict(d.get("video") or {}),
                query=d.get("query"),
                backend=str(d.get("backend") or ""),
                model=d.get("model"),
                mode=d.get("mode"),
                events=[Event.from_dict(e) for e in d.get("events", [])],
                windows=[WindowRecord.from_dict(w) for w in d.get("windows", []) or []],
                usage=Usage(
                    int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)
                ),
                extra={k: v for k, v in d.items() if k not in _KEYS},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"not a valid vidline timeline: {exc!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"timeline is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Timeline:
        """Read a timeline JSON file written by ``save``/``vidline timeline``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read timeline {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:  # e.g. the video given instead of its timeline
            raise ConfigError(f"{path}: not a timeline JSON file (not UTF-8 text)") from exc
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    # ---------------------------------------------------------------- exports

    def to_csv(self) -> str:
        from vidline.export.csv import events_to_csv

        return events_to_csv(self.sorted_events())

    def to_srt(self) -> str:
        from vidline.export.subtitles import events_to_srt

        return events_to_srt(self.sorted_events())

    def to_vtt(self) -> str:
        from vidline.export.subtitles import events_to_vtt

        note = f"vidline timeline of {self.video.get('path') or 'video'}"
        if self.query:
            note += f"; query: {self.query}"
        return events_to_vtt(self.sorted_events(), note=note)

    def to_edl(self) -> str:
        """A CMX 3600 EDL: the events as a cut list an editor imports (see vidline.export.edl)."""
        from vidline.export.edl import events_to_edl

        path = str(self.video.get("path") or "")
        fps = self.video.get("fps")
        name = os.path.basename(path)
        return events_to_edl(self.sorted_events(), fps=float(fps) if isinstance(fps, (int, float)) and fps > 0
                             else 25.0, title=f"vidline {name or 'timeline'}", clip_name=name)

    def to_html(
        self,
        thumbnails: bool = True,
        *,
        video_href: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> str:
        """Self-contained HTML report (see vidline.export.html.render_report)."""
        from vidline.export.html import render_report

        return render_report(self, thumbnails=thumbnails, video_href=video_href, base_dir=base_dir)

    def render(self, format: str, **options: Any) -> str:
        """The timeline in one of ``FORMATS``."""
        fmt = format.lower().lstrip(".")
        if fmt == "json":
            return self.to_json() + "\n"
        if fmt == "csv":
            return self.to_csv()
        if fmt == "srt":
            return self.to_srt()
        if fmt == "vtt":
            return self.to_vtt()
        if fmt in ("html", "htm"):
            return self.to_html(**options)
        if fmt == "edl":
            return self.to_edl()
        raise ConfigError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")

    def save(self, path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Path:
        """Write the timeline; ``format`` defaults to the file suffix (JSON when it has none; a suffix
        of no format, such as ``report.pdf``, is a ConfigError rather than JSON under that name).

        HTML reports link to the video by a path relative to the report's folder.
        """
        out = Path(path)
        fmt = format_for_output(out, format)
        if fmt == "html":
            options.setdefault("base_dir", out.parent)
        text = self.render(fmt, **options)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from exc
        return out

    # ---------------------------------------------------------------- filtering

    def filter(
        self,
        label: str | None = None,
        *,
        min_confidence: float | None = None,
        start: float | None = None,
        end: float | None = None,
        regex: bool = False,
    ) -> Timeline:
        """A new Timeline with only the matching events (windows and usage are kept).

        ``label``: case-insensitive substring of the event label (``regex=True``: a regular
        expression searched case-insensitively). ``min_confidence``: drops events below it and
        events with no confidence. ``start``/``end``: keep events overlapping ``[start, end]``.
        """
        if label is not None and not isinstance(label, str):
            raise ConfigError(f"label must be text, got {label!r}")
        for name, value in (("min_confidence", min_confidence), ("start", start), ("end", end)):
            if value is not None:
                require_number(name, value)
        pattern: re.Pattern[str] | None = None
        if label is not None and regex:
            try:
                pattern = re.compile(label, re.IGNORECASE)
            except re.error as exc:
                raise ConfigError(f"bad label pattern {label!r}: {exc}") from exc
        needle = label.casefold() if label is not None else None

        def keep(e: Event) -> bool:
            if pattern is not None:
                if not pattern.search(e.label):
                    return False
            elif needle is not None and needle not in e.label.casefold():
                return False
            if min_confidence is not None and (e.confidence is None or e.confidence < min_confidence):
                return False
            if start is not None and e.end < start:
                return False
            return not (end is not None and e.start > end)

        return Timeline(
            video=dict(self.video),
            query=self.query,
            backend=self.backend,
            model=self.model,
            mode=self.mode,
            events=[e for e in self.events if keep(e)],
            windows=list(self.windows),
            usage=self.usage,
            extra=dict(self.extra),
        )

    # ---------------------------------------------------------------- notebooks

    def _repr_html_(self) -> str:
        from vidline.export.html import events_table, timeline_svg, video_href_for

        href = video_href_for(self.video.get("path"))
        head = (
            f"<b>Timeline</b> of <code>{_esc(str(self.video.get('path') or ''))}</code>: "
            f"{len(self.events)} events"
            + (f" for <i>{_esc(self.query)}</i>" if self.query else "")
            + f" · {_esc(self.backend)}"
            + (f" / {_esc(self.model)}" if self.model else "")
            + f" · {self.usage.prompt_tokens}+{self.usage.completion_tokens} tokens"
        )
        if self.partial:
            head += f' · <b style="color:#d62728">partial: {len(self.failed_windows)} windows failed</b>'
        shown = self.sorted_events()[:50]
        more = f"<p>… and {len(self.events) - 50} more events</p>" if len(self.events) > 50 else ""
        return (
            f"<div>{head}"
            + timeline_svg(self.events, self.windows, duration=self.duration, video_href=href, width=760)
            + events_table(shown, video_href=href, max_time=self.duration)
            + more
            + "</div>"
        )

    def __repr__(self) -> str:
        return (
            f"Timeline(video={self.video.get('path')!r}, query={self.query!r}, backend={self.backend!r}, "
            f"model={self.model!r}, events={len(self.events)}, windows={len(self.windows)}, "
            f"failed={len(self.failed_windows)})"
        )


def _event_dict(e: Event) -> dict[str, Any]:
    d = e.to_dict()
    c = d.get("confidence")
    if c is not None:
        d["confidence"] = float(c) if math.isfinite(float(c)) else None  # JSON has no NaN
    return d


def _esc(text: str | None) -> str:
    from html import escape

    return escape(text or "")
