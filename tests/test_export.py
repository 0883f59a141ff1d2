"""Exports: CSV, SRT, WebVTT (strict validators), HTML report with thumbnails, time links."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidline.errors import ConfigError, VideoOpenError
from vidline.export.csv import COLUMNS, events_to_csv
from vidline.export.edl import events_to_edl, timecode
from vidline.export.html import linkify_times, time_link, timeline_svg, video_href_for
from vidline.export.subtitles import events_to_srt, events_to_vtt
from vidline.export.thumbnails import extract_thumbnails
from vidline.synth import Marker, detect_markers, make_video
from vidline.timeline import Timeline
from vidline.types import Event, Usage, WindowRecord

# ------------------------------------------------------------------------------ fixtures

# ground truth written into the synthetic video
MARKERS = [
    Marker("red square", 0.5, 1.5, x=0.25),
    Marker("green circle", 2.0, 3.0, x=0.75),
]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("export")
    return make_video(d / "clip.mp4", duration=4.0, fps=10, size=(320, 240), markers=MARKERS, gop=10)


def _events() -> list[Event]:
    return [
        Event(0.5, 1.5, "red square", "a red square at 00:01 on the left", 0.9, [0]),
        Event(2.0, 3.0, "green circle", None, None, [0, 1]),
    ]


def _timeline(path: str | Path, **kw: object) -> Timeline:
    windows = [
        WindowRecord(0, 0.0, 2.5, 8, "ok", None, 1200, Usage(1100, 40)),
        WindowRecord(1, 2.0, 4.0, 8, "failed", "server error 500 <html>", 1200, None),
    ]
    args: dict = dict(
        video={"path": str(path), "duration": 4.0, "width": 320, "height": 240},
        query="find <shapes> & colours",
        backend="openai",
        model="qwen2.5-vl-7b",
        mode="video",
        events=_events(),
        windows=windows,
        usage=Usage(1100, 40),
    )
    args.update(kw)
    return Timeline(**args)


# ------------------------------------------------------------------------------ CSV


def test_csv_rows_and_columns() -> None:
    text = events_to_csv(_events() + [Event(3723.25, 3725.5, 'quote "x", comma', "two\nlines", 0.5, [3])])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0].keys()) == COLUMNS
    assert len(rows) == 3
    assert rows[0]["start"] == "0.500" and rows[0]["end"] == "1.500"
    assert rows[0]["start_time"] == "00:00:00.500" and rows[0]["end_time"] == "00:00:01.500"
    assert rows[0]["label"] == "red square" and rows[0]["confidence"] == "0.9" and rows[0]["windows"] == "0"
    assert rows[1]["windows"] == "0;1" and rows[1]["confidence"] == "" and rows[1]["description"] == ""
    assert rows[2]["start_time"] == "01:02:03.250" and rows[2]["duration"] == "2.250"
    assert rows[2]["label"] == 'quote "x", comma' and rows[2]["description"] == "two\nlines"


def test_csv_loads_in_pandas() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(io.StringIO(events_to_csv(_events())))
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert df["start"].tolist() == [0.5, 2.0]


def test_csv_empty_has_header() -> None:
    assert events_to_csv([]).strip() == ",".join(COLUMNS)


# ------------------------------------------------------------------------------ subtitles

SRT_TIME = re.compile(r"^(\d{2}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2}):([0-5]\d):([0-5]\d),(\d{3})$")
VTT_TIME = re.compile(
    r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})(?: .*)?$"
)


def _secs(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def validate_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """Strict SubRip check; returns the cues."""
    assert text.endswith("\n") and not text.endswith("\n\n\n")
    assert "\r" not in text
    cues = []
    blocks = text.rstrip("\n").split("\n\n")
    for n, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(n), f"index {lines[0]!r} should be {n}"
        m = SRT_TIME.match(lines[1])
        assert m, lines[1]
        start, end = _secs(*m.groups()[:4]), _secs(*m.groups()[4:])
        assert end > start
        text_lines = lines[2:]
        assert text_lines and all(line.strip() for line in text_lines), "empty cue text"
        assert not any("-->" in line for line in text_lines)
        cues.append((start, end, text_lines))
    return cues


def validate_vtt(text: str) -> list[tuple[float, float, list[str]]]:
    """Strict WebVTT check (header, blocks separated by blank lines, cue timings, no '-->' in text)."""
    assert text.startswith("WEBVTT\n") and text.endswith("\n")
    blocks = text.rstrip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    prev_start = -1.0
    for block in blocks[1:]:
        lines = block.split("\n")
        assert all(line != "" for line in lines)
        if lines[0].startswith("NOTE"):
            assert not any("-->" in line for line in lines)
            continue
        if "-->" not in lines[0]:
            ident = lines.pop(0)
            assert "-->" not in ident
        m = VTT_TIME.match(lines[0])
        assert m, lines[0]
        start, end = _secs(*m.groups()[:4]), _secs(*m.groups()[4:])
        assert end > start and start >= prev_start, "cues must be in start order"
        prev_start = start
        body = lines[1:]
        assert body and all(line.strip() for line in body)
        assert not any("-->" in line for line in body)
        for line in body:
            assert not re.search(r"&(?!amp;|lt;|gt;|nbsp;|lrm;|rlm;)", line) and "<" not in line
        cues.append((start, end, body))
    return cues


TRICKY = [
    Event(1.0, 2.5, "red square", "seen --> here\n\nand there", 0.8, [0]),
    Event(0.0, 0.0, "flash", None, None, [0]),  # an instant
    Event(3723.25, 3725.5, "<b>bold</b> & co", None, None, [1]),
    Event(5.0, 6.0, "", "   ", None, []),
]


def test_srt_is_strictly_valid_and_exact() -> None:
    cues = validate_srt(events_to_srt(TRICKY))
    assert [(s, e) for s, e, _ in cues] == [(0.0, 0.5), (1.0, 2.5), (5.0, 6.0), (3723.25, 3725.5)]
    assert cues[1][2] == ["red square", "seen -> here and there"]
    assert events_to_srt(TRICKY).split("\n")[1] == "00:00:00,000 --> 00:00:00,500"
    assert "00:00:01,000 --> 00:00:02,500" in events_to_srt(TRICKY)
    assert "01:02:03,250 --> 01:02:05,500" in events_to_srt(TRICKY)
    assert events_to_srt([]) == ""


def test_vtt_is_strictly_valid_and_exact() -> None:
    text = events_to_vtt(TRICKY, note="query: a --> b")
    cues = validate_vtt(text)
    assert [(s, e) for s, e, _ in cues] == [(0.0, 0.5), (1.0, 2.5), (5.0, 6.0), (3723.25, 3725.5)]
    assert "00:00:01.000 --> 00:00:02.500" in text
    assert cues[3][2] == ["&lt;b&gt;bold&lt;/b&gt; &amp; co"]
    assert validate_vtt(events_to_vtt([])) == []


def test_timeline_subtitles_match_ground_truth() -> None:
    tl = _timeline("clip.mp4")
    srt = validate_srt(tl.to_srt())
    vtt = validate_vtt(tl.to_vtt())
    truth = [(m.start, m.end) for m in MARKERS]
    assert [(s, e) for s, e, _ in srt] == truth
    assert [(s, e) for s, e, _ in vtt] == truth
    assert srt[0][2][0] == "red square"


# ------------------------------------------------------------------------------ time links


@pytest.mark.parametrize(
    "text,times",
    [
        ("at 00:12 the door opens", [("00:12", "12")]),
        ("from 1:02:03.5 to 1:02:05", [("1:02:03.5", "3723.5"), ("1:02:05", "3725")]),
        ("00:00:01,250 --> x", [("00:00:01,250", "1.25")]),
        ("after 12.5s and 3 seconds", [("12.5s", "12.5"), ("3 seconds", "3")]),
        ("在12秒时", [("12秒", "12")]),
        ("range 00:12-00:15.", [("00:12", "12"), ("00:15", "15")]),
        ("ratio 16:9, version 1.2.3, 1:75, 10:61:00, 5 cars", []),
    ],
)
def test_linkify_times(text: str, times: list[tuple[str, str]]) -> None:
    html = linkify_times(text, "clip.mp4")
    found = re.findall(r'<a class="t" href="clip\.mp4#t=([0-9.]+)" data-t="[0-9.]+">([^<]*)</a>', html)
    assert [(label, t) for t, label in found] == times


def test_linkify_escapes_and_handles_no_video() -> None:
    html = linkify_times("<script>x</script> at 0:05 & more\nnext", 'v"id.mp4')
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; more" in html
    assert 'href="v&quot;id.mp4#t=5"' in html and "<br>" in html
    assert linkify_times("at 0:05") == 'at <span class="t" data-t="5">0:05</span>'
    assert "href" not in linkify_times("at 9:00", "v.mp4", max_time=60.0)


def test_time_link_and_video_href(tmp_path: Path) -> None:
    assert time_link(123.4, "v.mp4") == '<a class="t" href="v.mp4#t=123.4" data-t="123.4">00:02:03</a>'
    (tmp_path / "videos").mkdir()
    v = tmp_path / "videos" / "my clip.mp4"
    assert video_href_for(str(v), tmp_path / "reports") == "../videos/my%20clip.mp4"
    assert video_href_for(str(v)) == v.resolve().as_uri()
    assert video_href_for("https://example.com/v.mp4", tmp_path) == "https://example.com/v.mp4"
    assert video_href_for(None) is None


# ------------------------------------------------------------------------------ thumbnails


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_thumbnails_show_the_frame_at_that_time(video: Path) -> None:
    jpegs = extract_thumbnails(video, [2.5, 1.0, 3.9, 99.0, 0.0])
    assert all(j is not None for j in jpegs)
    imgs = [_decode(j) for j in jpegs if j]
    assert imgs[0].shape == (120, 160, 3)  # downscaled to 160 px wide
    assert detect_markers(imgs[0]) == ["green circle"]
    assert detect_markers(imgs[1]) == ["red square"]
    assert detect_markers(imgs[2]) == [] and detect_markers(imgs[3]) == [] and detect_markers(imgs[4]) == []


def test_thumbnails_offset_and_rotated(tmp_path: Path) -> None:
    markers = [Marker("blue triangle", 1.0, 2.0, x=0.2, size=0.3)]
    off = make_video(
        tmp_path / "off.mp4", duration=3.0, fps=10, size=(160, 120), markers=markers, start_time=5.0
    )
    (j,) = extract_thumbnails(off, [1.5])
    assert j is not None and detect_markers(_decode(j)) == ["blue triangle"]
    rot = make_video(
        tmp_path / "rot.mp4", duration=3.0, fps=10, size=(160, 120), markers=markers, rotation=90
    )
    (j,) = extract_thumbnails(rot, [1.5])
    assert j is not None
    img = _decode(j)
    assert img.shape[1] > img.shape[0], "upright (landscape) after applying rotation"
    left, right = img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2 :]
    assert detect_markers(left) == ["blue triangle"] and detect_markers(right) == []


def test_thumbnails_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(VideoOpenError):
        extract_thumbnails(tmp_path / "nope.mp4", [1.0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoOpenError):
        extract_thumbnails(bad, [1.0])


# ------------------------------------------------------------------------------ HTML report


class _Collector(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input", "rect", "line", "path", "circle"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    p.close()
    assert p.stack == [], f"unclosed tags: {p.stack}"
    return p


def test_html_report_with_thumbnails(video: Path, tmp_path: Path) -> None:
    tl = _timeline(video)
    out = tl.save(tmp_path / "report.html")
    html = out.read_text()
    p = parse_html(html)
    text = "".join(p.text)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == 2
    # the thumbnail of each event shows that event's marker (midpoint frame)
    for attrs, marker in zip(imgs, MARKERS, strict=True):
        src = attrs["src"] or ""
        assert src.startswith("data:image/jpeg;base64,")
        assert detect_markers(_decode(base64.b64decode(src.split(",", 1)[1]))) == [marker.label]
    # escaped query, model, usage, windows
    assert "find <shapes> & colours" in text and "<shapes>" not in html
    assert "qwen2.5-vl-7b" in text and "1100 prompt + 40 completion tokens" in text
    assert "server error 500 <html>" in text and "Partial timeline" in text
    # media-fragment links relative to the report, times in hh:mm:ss
    hrefs = [a.get("href") for t, a in p.tags if t == "a"]
    assert "clip.mp4#t=0.5" in [h.rsplit("/", 1)[-1] for h in hrefs if h]
    assert all(not h.startswith("/") for h in hrefs if h and "#t=" in h)
    # the description's "00:01" became a link too
    assert re.search(r'#t=1" data-t="1">00:01</a>', html)
    # SVG plot: one lane per label, one bar per event, window strip with the failed one in red
    assert len([1 for t, a in p.tags if t == "svg"]) == 1
    bars = [a for t, a in p.tags if t == "rect" and a.get("class") == "ev"]
    assert len(bars) == 2
    failed = [a for t, a in p.tags if t == "rect" and (a.get("class") or "").startswith("win failed")]
    assert len(failed) == 1 and failed[0]["fill"] == "#d62728"
    assert "00:00:02" in text  # axis labels in hh:mm:ss
    # self-contained: no external resources
    assert not re.search(r'(src|href)="https?://', html)
    assert not any(t in ("script", "link") for t, _ in p.tags)


def test_html_report_without_video_says_so(tmp_path: Path) -> None:
    tl = _timeline(tmp_path / "gone.mp4")
    html = tl.to_html()
    p = parse_html(html)
    assert not [1 for t, _ in p.tags if t == "img"]
    assert "Thumbnails unavailable" in html and "gone.mp4" in html
    html2 = tl.to_html(thumbnails=False)
    assert "not requested" in html2
    parse_html(html2)


def test_html_report_empty_timeline_and_hostile_labels() -> None:
    tl = Timeline(video={"path": None, "duration": None}, backend="motion")
    parse_html(tl.to_html())
    evil = Event(1, 2, '"><script>alert(1)</script>', "<img src=x onerror=alert(1)>", None, [0])
    html = Timeline(video={"path": "a.mp4", "duration": 3}, events=[evil]).to_html(thumbnails=False)
    parse_html(html)
    assert "<script>" not in html and "<img src=x" not in html


def test_svg_axis_ticks_for_an_hour() -> None:
    svg = timeline_svg([Event(100, 200, "x")], duration=3600.0)
    assert "01:00:00" in svg and "00:10:00" in svg
    parse_html(svg)


# ------------------------------------------------------------------------------ hostile saved timelines


@pytest.mark.parametrize("text", ["a ----> b", "x ---> y", "--->", "a -- > b ---->>", "—-->"])
def test_no_arrow_survives_in_cue_text_or_the_note(text: str) -> None:
    # one replace pass turned "--->" into "-->": a parser then reads the cue text as a timing line
    events = [Event(1.0, 2.0, text, f"desc {text}", None, [0])]
    srt = events_to_srt(events)
    validate_srt(srt)
    assert srt.count("-->") == 1  # the timing line only
    vtt = events_to_vtt(events, note=f"query: find {text}")
    validate_vtt(vtt)
    assert vtt.count("-->") == 1


def test_null_label_and_numeric_description_load_as_text() -> None:
    tl = Timeline.from_dict({"events": [{"start": 1, "end": 2, "label": None, "description": 42}]})
    (e,) = tl.events
    assert e.label == "" and e.description == "42"
    assert "None" not in tl.to_csv() and "None" not in tl.to_srt()
    assert json.loads(tl.to_json())["events"][0]["label"] == ""
    validate_srt(tl.to_srt())
    parse_html(tl.to_html(thumbnails=False))


@pytest.mark.parametrize(("event", "field"), [
    ({"start": 1, "end": float("inf"), "label": "x"}, "'end' must be a finite number"),
    ({"start": float("nan"), "end": 2, "label": "x"}, "'start' must be a finite number"),
    ({"start": 1, "end": None, "label": "x"}, "'end' must be a finite number (got None)"),
    ({"start": 1, "label": "x"}, "'end' must be a finite number (missing)"),
    ({"start": "abc", "end": 2}, "'start' must be a finite number"),
    ({"start": True, "end": 2}, "'start' must be a finite number"),
    ({"start": 1, "end": 2, "confidence": "high"}, "'confidence' must be a finite number"),
    ({"start": 1, "end": 2, "windows": "0;1"}, "'windows' must be a list"),
    ("not an event", "an event must be a JSON object"),
])
def test_bad_saved_events_are_config_errors_naming_event_and_field(event: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Timeline.from_dict({"events": [{"start": 0, "end": 1, "label": "ok"}, event]})
    assert "event 1: " in str(info.value) and field in str(info.value)


@pytest.mark.parametrize("fmt", ["csv", "srt", "vtt", "html"])
def test_export_cli_bad_event_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    from vidline.cli import main

    path = tmp_path / "t.json"
    path.write_text('{"events": [{"start": 1, "end": Infinity, "label": "x"}]}')
    code = main(["export", str(path), "--format", fmt, "-o", str(tmp_path / f"out.{fmt}")])
    err = capsys.readouterr().err
    assert code != 0 and "event 0: 'end' must be a finite number" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_export_of_a_several_video_array_says_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vidline.cli import main

    one = {"video": {"path": "a.mp4"}, "events": []}
    path = tmp_path / "both.json"
    path.write_text(json.dumps([one, one]))
    assert main(["export", str(path), "--format", "csv"]) != 0
    err = capsys.readouterr().err
    assert "JSON array of 2 timelines" in err and "jq '.[0]'" in err


def test_thumbnails_of_many_close_and_repeated_times_equal_one_seek_each(video: Path) -> None:
    # events close together are decoded in one forward pass and a frame shown by several events is
    # encoded once: the JPEGs must be exactly those of one seek per time
    times = [3.9, 0.0, 0.05, 0.1, 0.1, 0.55, 1.0, 1.02, 2.5, 2.5, 0.3, 3.95, 9.0, 1.7]
    many = extract_thumbnails(video, times)
    one_by_one = [extract_thumbnails(video, [t])[0] for t in times]
    assert all(j is not None for j in many)
    assert many == one_by_one
    assert many[3] is many[4]  # the same frame: one encode


def test_timeline_cli_html_links_the_video_relative_to_the_report(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from vidline.cli import main

    proj = tmp_path / "proj"
    (proj / "out").mkdir(parents=True)
    clip = make_video(proj / "cam.mp4", duration=4.0, fps=10, size=(160, 120), markers=MARKERS)
    code = main(["timeline", str(clip), "--backend", "motion", "--quiet", "-o", str(proj / "out" / "r.html")])
    assert code == 0, capsys.readouterr().err
    html = (proj / "out" / "r.html").read_text()
    assert 'href="../cam.mp4' in html and "file://" not in html


@pytest.mark.parametrize(("name", "preset", "gop"), [("plain.ts", "ultrafast", 30), ("bframes.ts", "medium", 40),
                                                     ("plain.mp4", "ultrafast", 30)])
def test_thumbnails_show_the_right_frame_in_mpeg_ts(tmp_path: Path, name: str, preset: str, gop: int) -> None:
    # MPEG-TS seeks land on the keyframe after the point asked (with B-frames, even a seek to the
    # start does): thumbnails showed frame 30 for 1.2 s, or nothing near the end
    from tests.fixtures.media import clock_markers
    from vidline.synth import MARKER_STYLES, active_labels

    markers = clock_markers(6.4, 10)
    path = make_video(tmp_path / name, duration=6.4, fps=10, size=(160, 120), markers=markers, gop=gop,
                      preset=preset, start_time=100.0)
    times = [0.0, 1.2, 3.0, 5.0, 6.0]
    labels = list(MARKER_STYLES)

    def frame_number(jpeg: bytes | None) -> int | None:
        return None if jpeg is None else sum(1 << labels.index(x) for x in detect_markers(_decode(jpeg)))

    expected = [sum(1 << labels.index(x) for x in active_labels(markers, t)) for t in times]
    assert [frame_number(extract_thumbnails(path, [t])[0]) for t in times] == expected  # one by one
    assert [frame_number(j) for j in extract_thumbnails(path, times)] == expected  # together


# ------------------------------------------------------------------------------ EDL

EDL_EDIT = re.compile(r"^(\d{3})  AX       V     C        (\d\d:\d\d:\d\d:\d\d) (\d\d:\d\d:\d\d:\d\d) "
                      r"(\d\d:\d\d:\d\d:\d\d) (\d\d:\d\d:\d\d:\d\d)$")


def _tc_frames(tc: str, fps: int) -> int:
    h, m, s, f = (int(x) for x in tc.split(":"))
    assert f < fps and m < 60 and s < 60
    return ((h * 60 + m) * 60 + s) * fps + f


def validate_edl(text: str, fps: int) -> list[tuple[int, int, int, int, list[str]]]:
    """Strict CMX 3600 check: title, FCM, numbered edits in order, record side end to end."""
    lines = text.splitlines()
    assert lines[0].startswith("TITLE: ") and lines[1] == "FCM: NON-DROP FRAME"
    edits: list[tuple[int, int, int, int, list[str]]] = []
    for line in lines[2:]:
        m = EDL_EDIT.match(line)
        if m:
            assert int(m.group(1)) == len(edits) + 1
            si, so, ri, ro = (_tc_frames(m.group(k), fps) for k in range(2, 6))
            assert so > si and ro - ri == so - si
            assert ri == (edits[-1][3] if edits else 0)  # end to end from 00:00:00:00
            edits.append((si, so, ri, ro, []))
        elif line.startswith("* "):
            assert edits and "\n" not in line
            edits[-1][4].append(line)
        else:
            assert line == "", line
    return edits


def test_edl_is_a_valid_cut_list() -> None:
    events = [Event(62.5, 65.0, "forklift", "a yellow forklift\\nenters", 0.9, [0]),
              Event(3600.04, 3600.05, "flash", None, None, [1]), Event(1.0, 2.0, "car", "car", None, [0])]
    text = events_to_edl(events, fps=25.0, title="vidline dock.mp4", clip_name="dock.mp4")
    edits = validate_edl(text, 25)
    assert [(si, so) for si, so, *_ in edits] == [(25, 50), (1562, 1625), (90001, 90002)]  # a 10-ms event: one frame
    assert edits[1][4] == ["* FROM CLIP NAME: dock.mp4", "* COMMENT: forklift - a yellow forklift\\nenters"]
    assert edits[0][4][-1] == "* COMMENT: car"  # the description is not repeated
    assert timecode(3723.5, 30) == "01:02:03:15" and timecode(0, 25) == "00:00:00:00"
    # 29.97 fps counts at 30 (non-drop); over 999 events the rest is said, not numbered 1000
    many = [Event(float(i), i + 0.5, "x") for i in range(1005)]
    text = events_to_edl(many, fps=29.97)
    assert len(validate_edl(text, 30)) == 999 and "6 more events left out" in text


def test_timeline_edl_through_cli(tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vidline.cli import main

    tl = _timeline(video)
    tl.video["fps"] = 10.0
    saved = tl.save(tmp_path / "t.json")
    assert main(["export", str(saved), "-o", str(tmp_path / "cuts.edl")]) == 0
    edits = validate_edl((tmp_path / "cuts.edl").read_text(), 10)
    assert [(si, so) for si, so, *_ in edits] == [(5, 15), (20, 30)]
    assert Timeline.load(saved).render("edl") == (tmp_path / "cuts.edl").read_text()


def test_export_refuses_an_output_suffix_of_no_format(tmp_path: Path, video: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from vidline.cli import main

    saved = _timeline(video).save(tmp_path / "t.json")
    assert main(["export", str(saved), "-o", str(tmp_path / "report.pdf")]) == 2
    assert "cannot tell the format from .pdf" in capsys.readouterr().err and not (tmp_path / "report.pdf").exists()
