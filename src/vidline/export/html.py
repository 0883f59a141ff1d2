"""Self-contained HTML report of a timeline, plus the time-link helpers other outputs reuse.

The report is one file with no external resources: inline CSS, an inline SVG timeline plot (one
lane per label, a window-coverage strip with failed windows in red), one JPEG thumbnail per event
(base64, from the video at the event's midpoint) and tables of events and windows. Every time is a
media-fragment link ``VIDEO#t=SECONDS`` that opens the video at that moment. All text is escaped.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from vidline.export.timefmt import fragment_time, hms, hms_ms
from vidline.log import logger
from vidline.types import Event, WindowRecord

if TYPE_CHECKING:
    from vidline.timeline import Timeline

__all__ = ["linkify_times", "time_link", "video_href_for", "timeline_svg", "events_table", "render_report"]

# --------------------------------------------------------------------------------------- links

# 1:02:03.5 / 01:02:03,250   |   00:12 / 12:34.5   |   12.5s / 12 sec / 3 seconds / 12秒
_TIME_RE = re.compile(
    r"(?<![0-9A-Za-z_:.])(?:"
    r"(?P<h>\d{1,2}):(?P<hm>[0-5]\d):(?P<hs>[0-5]\d)(?:[.,](?P<hf>\d{1,3}))?"
    r"|(?P<m>\d{1,3}):(?P<ms>[0-5]\d)(?:[.,](?P<mf>\d{1,3}))?"
    r"|(?P<s>\d+(?:\.\d+)?)\s?(?:seconds|second|secs|sec|s|秒)"
    r")(?![0-9A-Za-z_:])"
)


def _match_seconds(m: re.Match[str]) -> float:
    if m.group("h") is not None:
        frac = float("0." + m.group("hf")) if m.group("hf") else 0.0
        return int(m.group("h")) * 3600 + int(m.group("hm")) * 60 + int(m.group("hs")) + frac
    if m.group("m") is not None:
        frac = float("0." + m.group("mf")) if m.group("mf") else 0.0
        return int(m.group("m")) * 60 + int(m.group("ms")) + frac
    return float(m.group("s"))


def time_link(seconds: float, video_href: str | None, text: str | None = None) -> str:
    """``<a class="t" href="VIDEO#t=123.4">00:02:03</a>`` (a ``<span>`` when there is no video)."""
    label = escape(text if text is not None else hms(seconds))
    t = fragment_time(seconds)
    if not video_href:
        return f'<span class="t" data-t="{t}">{label}</span>'
    return f'<a class="t" href="{escape(video_href, quote=True)}#t={t}" data-t="{t}">{label}</a>'


def linkify_times(text: str, video_href: str | None = None, *, max_time: float | None = None) -> str:
    """Escape ``text`` for HTML and turn the times it mentions into ``#t=`` links to ``video_href``.

    Recognised: ``1:02:03``, ``01:02:03.5``, ``00:12``, ``12:34.5``, ``12.5s``, ``3 seconds``,
    ``12秒``. Times beyond ``max_time`` (e.g. the video duration) are left as plain text. Newlines
    become ``<br>``.
    """
    out: list[str] = []
    pos = 0
    for m in _TIME_RE.finditer(text):
        seconds = _match_seconds(m)
        if max_time is not None and seconds > max_time + 1e-6:
            continue
        out.append(escape(text[pos : m.start()]))
        out.append(time_link(seconds, video_href, m.group(0)))
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out).replace("\n", "<br>\n")


def video_href_for(video_path: str | None, base_dir: str | os.PathLike[str] | None = None) -> str | None:
    """A URL for the video: relative to ``base_dir`` (where the HTML is saved) when given, else a
    ``file://`` URI of the absolute path. URLs pass through unchanged."""
    if not video_path:
        return None
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", video_path):
        return video_path
    p = Path(video_path)
    if base_dir is not None:
        try:
            rel = os.path.relpath(p.resolve(), Path(base_dir).resolve())
            return quote(Path(rel).as_posix())
        except ValueError:  # different drive on Windows
            pass
    return p.resolve().as_uri()


# --------------------------------------------------------------------------------------- SVG plot

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
_STATUS_COLOURS = {"ok": "#9ccc9c", "cached": "#9cc3e6", "failed": "#d62728"}


def _nice_step(span: float, target_ticks: int = 8) -> float:
    raw = max(span, 1e-6) / target_ticks
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if step >= raw:
            return float(step)
    return float(math.ceil(raw / 3600) * 3600)


def _lanes(events: Sequence[Event]) -> list[str]:
    lanes: list[str] = []
    for e in sorted(events, key=lambda x: (x.start, x.end)):
        if e.label not in lanes:
            lanes.append(e.label)
    return lanes


def timeline_svg(
    events: Sequence[Event],
    windows: Sequence[WindowRecord] = (),
    *,
    duration: float | None = None,
    video_href: str | None = None,
    width: int = 960,
) -> str:
    """Inline SVG: one lane per label with a bar per event (each a link to its start), an
    ``hh:mm:ss`` axis, and a strip showing window coverage (failed windows in red)."""
    ends = [e.end for e in events] + [w.end for w in windows]
    total = max([duration or 0.0, *ends, 1e-3])
    lanes = _lanes(events)
    left, right, lane_h, top = 150, 28, 22, 8
    strip_h = 10 if windows else 0
    plot_w = width - left - right
    axis_y = top + lane_h * len(lanes) + (strip_h + 8 if windows else 0)
    height = axis_y + 24

    def x(t: float) -> float:
        return left + plot_w * max(0.0, min(t, total)) / total

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="event timeline">'
    ]
    for i, label in enumerate(lanes):
        y = top + i * lane_h
        colour = _PALETTE[i % len(_PALETTE)]
        if i % 2 == 0:
            parts.append(f'<rect x="{left}" y="{y}" width="{plot_w}" height="{lane_h}" fill="#f4f4f4"/>')
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text x="{left - 6}" y="{y + lane_h * 0.68:.1f}" text-anchor="end" font-size="12">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
        )
        for e in events:
            if e.label != label:
                continue
            x0, x1 = x(e.start), x(e.end)
            tip = f"{e.label}: {hms_ms(e.start)} – {hms_ms(e.end)}"
            if e.description:
                tip += f" — {e.description}"
            bar = (
                f'<rect class="ev" x="{x0:.2f}" y="{y + 3}" width="{max(x1 - x0, 2.0):.2f}" '
                f'height="{lane_h - 6}" rx="2" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
            if video_href:
                href = escape(f"{video_href}#t={fragment_time(e.start)}", quote=True)
                bar = f'<a href="{href}">{bar}</a>'
            parts.append(bar)
    if windows:
        y = top + lane_h * len(lanes) + 4
        parts.append(
            f'<text x="{left - 6}" y="{y + strip_h - 1}" text-anchor="end" font-size="11" fill="#555">windows</text>'
        )
        for w in sorted(windows, key=lambda w: (w.status == "failed", w.index)):  # failed on top
            colour = _STATUS_COLOURS.get(w.status, "#cccccc")
            tip = f"window {w.index}: {hms(w.start)} – {hms(w.end)} {w.status}"
            if w.error:
                tip += f": {w.error}"
            cls = "win failed" if w.status == "failed" else "win"
            parts.append(
                f'<rect class="{cls}" x="{x(w.start):.2f}" y="{y}" width="{max(x(w.end) - x(w.start), 1.0):.2f}" '
                f'height="{strip_h}" fill="{colour}" fill-opacity="0.8" stroke="#fff" stroke-width="0.5">'
                f"<title>{escape(tip)}</title></rect>"
            )
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>')
    step = _nice_step(total)
    t = 0.0
    while t <= total + 1e-9:
        xt = x(t)
        parts.append(f'<line x1="{xt:.2f}" y1="{axis_y}" x2="{xt:.2f}" y2="{axis_y + 4}" stroke="#333"/>')
        parts.append(
            f'<text x="{xt:.2f}" y="{axis_y + 16}" text-anchor="middle" font-size="10">{hms(t)}</text>'
        )
        t += step
    parts.append("</svg>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------- tables


def _fmt_conf(c: float | None) -> str:
    return "" if c is None else f"{float(c):.2f}"


def events_table(
    events: Sequence[Event],
    *,
    video_href: str | None = None,
    thumbs: Sequence[str | None] | None = None,
    max_time: float | None = None,
) -> str:
    """``<table>`` of events; ``thumbs`` are data URIs (or None) aligned with ``events``."""
    head = (
        ["#"]
        + (["frame"] if thumbs is not None else [])
        + ["start", "end", "duration", "label", "description", "confidence", "windows"]
    )
    rows = [
        '<table class="events">',
        "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
        "<tbody>",
    ]
    for i, e in enumerate(events):
        cells = [str(i + 1)]
        if thumbs is not None:
            uri = thumbs[i] if i < len(thumbs) else None
            if uri:
                mid = (e.start + e.end) / 2
                img = f'<img class="thumb" src="{uri}" alt="frame at {escape(hms_ms(mid))}" width="160">'
                if video_href:
                    img = f'<a href="{escape(video_href, quote=True)}#t={fragment_time(e.start)}">{img}</a>'
                cells.append(img)
            else:
                cells.append('<span class="nothumb">–</span>')
        cells += [
            time_link(e.start, video_href, hms_ms(e.start)),
            time_link(e.end, video_href, hms_ms(e.end)),
            f"{e.end - e.start:.1f} s",
            escape(e.label),
            linkify_times(e.description, video_href, max_time=max_time) if e.description else "",
            _fmt_conf(e.confidence),
            escape(", ".join(str(w) for w in e.windows)),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


def windows_table(windows: Sequence[WindowRecord], *, video_href: str | None = None) -> str:
    head = [
        "window",
        "start",
        "end",
        "frames",
        "status",
        "estimated tokens",
        "prompt tokens",
        "completion tokens",
        "error",
    ]
    rows = [
        '<table class="windows">',
        "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>",
        "<tbody>",
    ]
    for w in windows:
        cls = ' class="failed"' if w.status == "failed" else ""
        cells = [
            str(w.index),
            time_link(w.start, video_href),
            time_link(w.end, video_href),
            str(w.frames),
            escape(w.status),
            "" if w.estimated_tokens is None else str(w.estimated_tokens),
            "" if w.usage is None else str(w.usage.prompt_tokens),
            "" if w.usage is None else str(w.usage.completion_tokens),
            escape(w.error or ""),
        ]
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------- report

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:1.6em}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}
dl.meta dt{font-weight:600;color:#555} dl.meta dd{margin:0}
table{border-collapse:collapse;font-size:.9em;margin-top:.4em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr.failed td{background:#fde8e8}
a.t{font-variant-numeric:tabular-nums;text-decoration:none;color:#0b57d0} a.t:hover{text-decoration:underline}
img.thumb{display:block;border-radius:3px}
.note{background:#fff7e0;border-left:4px solid #f0b000;padding:.4em .8em;margin:.6em 0}
.warn{background:#fde8e8;border-left:4px solid #d62728;padding:.4em .8em;margin:.6em 0}
svg.timeline{max-width:100%;height:auto;font-family:inherit}
footer{margin-top:2em;color:#888;font-size:.8em}
"""


def _meta_row(name: str, value_html: str) -> str:
    return f"<dt>{escape(name)}</dt><dd>{value_html}</dd>"


def render_report(
    timeline: Timeline,
    *,
    thumbnails: bool = True,
    video_href: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    thumb_width: int = 160,
) -> str:
    """The full HTML document for ``timeline``.

    ``video_href`` overrides the link target of every time (default: the video path, relative to
    ``base_dir`` when given, else a ``file://`` URI). With ``thumbnails=False`` (or when the video
    cannot be read) the report says so and shows no frames.
    """
    from vidline import __version__

    video = timeline.video or {}
    path = str(video.get("path") or "")
    duration = video.get("duration")
    dur = float(duration) if isinstance(duration, (int, float)) else None
    href = video_href if video_href is not None else video_href_for(path or None, base_dir)
    events = timeline.sorted_events()

    thumbs: list[str | None] | None = None
    thumb_note = ""
    if thumbnails and events:
        thumbs, thumb_note = _thumbnails(path, events, thumb_width)
    elif not thumbnails:
        thumb_note = "Thumbnails were not requested."

    title = f"vidline timeline — {Path(path).name or 'video'}"
    meta = [
        _meta_row(
            "video", f'<a href="{escape(href, quote=True)}">{escape(path)}</a>' if href else escape(path)
        ),
        _meta_row("duration", escape(hms_ms(dur)) if dur is not None else "unknown"),
    ]
    for key in ("width", "height", "fps", "codec"):
        if key in video and video[key] is not None:
            meta.append(_meta_row(key, escape(str(video[key]))))
    meta += [
        _meta_row("query", escape(timeline.query) if timeline.query else "<em>none (all events)</em>"),
        _meta_row("backend", escape(timeline.backend or "")),
        _meta_row("model", escape(timeline.model or "—")),
        _meta_row("mode", escape(timeline.mode or "—")),
        _meta_row("events", str(len(events))),
        _meta_row(
            "windows",
            f"{len(timeline.windows)} ({len(timeline.failed_windows)} failed)" if timeline.windows else "—",
        ),
        _meta_row(
            "usage",
            f"{timeline.usage.prompt_tokens} prompt + {timeline.usage.completion_tokens} completion tokens",
        ),
    ]
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if timeline.partial:
        failed = ", ".join(str(w.index) for w in timeline.failed_windows)
        body.append(
            f'<p class="warn">Partial timeline: {len(timeline.failed_windows)} of {len(timeline.windows)} '
            f"windows failed ({escape(failed)}); events in those stretches may be missing.</p>"
        )
    body.append('<dl class="meta">' + "".join(meta) + "</dl>")
    body.append("<h2>Timeline</h2>")
    body.append(timeline_svg(events, timeline.windows, duration=dur, video_href=href))
    body.append(f"<h2>Events ({len(events)})</h2>")
    if thumb_note:
        body.append(f'<p class="note">{escape(thumb_note)}</p>')
    if events:
        body.append(events_table(events, video_href=href, thumbs=thumbs, max_time=dur))
    else:
        body.append("<p>No events.</p>")
    if timeline.windows:
        body.append(f"<h2>Windows ({len(timeline.windows)})</h2>")
        body.append(windows_table(timeline.windows, video_href=href))
    body.append(
        f"<footer>Generated by vidline {escape(__version__)}. Times link to the video "
        "(media fragments, <code>#t=seconds</code>).</footer>"
    )
    body.append("</body></html>")
    return "\n".join(body) + "\n"


def _thumbnails(path: str, events: Sequence[Event], width: int) -> tuple[list[str | None] | None, str]:
    from vidline.errors import VidlineError
    from vidline.export.thumbnails import data_uri, extract_thumbnails

    if not path or not os.path.isfile(path):
        return None, f"Thumbnails unavailable: the video was not found at {path or '(no path)'}."
    try:
        jpegs = extract_thumbnails(path, [(e.start + e.end) / 2 for e in events], width=width)
    except (VidlineError, OSError) as exc:
        logger.warning("thumbnails unavailable: %s", exc)
        return None, f"Thumbnails unavailable: {exc}"
    return [data_uri(j) if j else None for j in jpegs], ""
