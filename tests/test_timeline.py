"""Timeline: JSON shape (issue 4), round-trips, filtering, partial runs, notebook HTML, `vidline export`."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vidline.cli import main
from vidline.errors import ConfigError
from vidline.timeline import Timeline
from vidline.types import Event, Usage, WindowRecord


def _timeline() -> Timeline:
    return Timeline(
        video={"path": "samples/clip.mp4", "duration": 250.0, "fps": 10.0},
        query="shapes",
        backend="dashscope",
        model="qwen-vl-max",
        mode="frames",
        events=[  # deliberately unsorted
            Event(130.0, 140.0, "Green circle", "moves right", 0.7, [1]),
            Event(10.0, 20.25, "red square", None, None, [0]),
            Event(115.0, 125.0, "red square", "second time", 0.95, [0, 1]),
        ],
        windows=[
            WindowRecord(1, 110.0, 230.0, 32, "failed", "HTTP 500", 4000, None),
            WindowRecord(0, 0.0, 120.0, 32, "ok", None, 4000, Usage(3900, 120)),
            WindowRecord(2, 220.0, 250.0, 8, "cached", None, 1000, Usage(990, 30)),
        ],
        usage=Usage(4890, 150),
    )


def test_json_shape_is_exactly_issue_4() -> None:
    d = json.loads(_timeline().to_json())
    assert list(d) == ["video", "query", "backend", "model", "mode", "events", "windows", "usage"]
    assert d["video"]["path"] == "samples/clip.mp4" and d["video"]["duration"] == 250.0
    assert (d["query"], d["backend"], d["model"], d["mode"]) == (
        "shapes",
        "dashscope",
        "qwen-vl-max",
        "frames",
    )
    assert [list(e) for e in d["events"]] == [
        ["start", "end", "label", "description", "confidence", "windows"]
    ] * 3
    assert [e["start"] for e in d["events"]] == [10.0, 115.0, 130.0]  # sorted by start
    assert d["events"][0] == {
        "start": 10.0,
        "end": 20.25,
        "label": "red square",
        "description": None,
        "confidence": None,
        "windows": [0],
    }
    assert [list(w) for w in d["windows"]][0] == [
        "index",
        "start",
        "end",
        "frames",
        "status",
        "error",
        "estimated_tokens",
        "usage",
    ]
    assert [w["status"] for w in d["windows"]] == ["ok", "failed", "cached"]
    assert d["windows"][0]["usage"] == {"prompt_tokens": 3900, "completion_tokens": 120}
    assert d["windows"][1]["usage"] is None and d["windows"][1]["error"] == "HTTP 500"
    assert d["usage"] == {"prompt_tokens": 4890, "completion_tokens": 150}


def test_minimal_timeline_has_every_key() -> None:
    d = Timeline().to_dict()
    assert d["video"] == {"path": None, "duration": None}
    assert (
        d["events"] == []
        and d["windows"] == []
        and d["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    tl = _timeline()
    tl.extra["merge"] = {"gap": 1.0}
    path = tl.save(tmp_path / "out" / "t.json")
    back = Timeline.load(path)
    assert back.to_dict() == tl.to_dict()
    assert back.events == tl.events and back.windows == tl.windows and back.usage == tl.usage
    assert json.loads(path.read_text())["merge"] == {"gap": 1.0}


def test_save_picks_format_from_suffix(tmp_path: Path) -> None:
    tl = _timeline()
    assert tl.save(tmp_path / "a.csv").read_text().startswith("start,end,")
    assert tl.save(tmp_path / "a.srt").read_text().startswith("1\n00:00:10,000 --> 00:00:20,250\n")
    assert tl.save(tmp_path / "a.vtt").read_text().startswith("WEBVTT\n")
    # no suffix: JSON; a suffix of no format is refused (it wrote JSON named .pdf), unless format= says
    assert json.loads(tl.save(tmp_path / "plain").read_text())["events"]
    with pytest.raises(ConfigError, match=r"report\.pdf: cannot tell the format from \.pdf"):
        tl.save(tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()
    assert tl.save(tmp_path / "report.pdf", format="csv").read_text().startswith("start,end,")
    with pytest.raises(ConfigError, match="unknown format"):
        tl.save(tmp_path / "a.json", format="pdf")
    assert tl.save(tmp_path / "a.html", thumbnails=False).read_text().startswith("<!DOCTYPE html>")
    assert json.loads(tl.save(tmp_path / "a.txt", format="json").read_text())["backend"] == "dashscope"
    assert tl.save(tmp_path / "b.out", "csv").read_text().startswith("start,")
    with pytest.raises(ConfigError):
        tl.render("pdf")


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a vidline timeline"),
        ('{"events": [{"label": "x"}]}', "not a valid vidline timeline"),
    ],
)
def test_load_errors_are_one_line_config_errors(tmp_path: Path, content: str | None, match: str) -> None:
    p = tmp_path / "t.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        Timeline.load(p)
    assert "\n" not in str(info.value)


def test_filter() -> None:
    tl = _timeline()
    assert [e.start for e in tl.filter("RED")] == [10.0, 115.0]  # case-insensitive substring
    assert [e.label for e in tl.filter("circle")] == ["Green circle"]
    assert [e.start for e in tl.filter(r"^red\b", regex=True)] == [10.0, 115.0]
    assert [e.start for e in tl.filter("square|circle", regex=True)] == [10.0, 115.0, 130.0]
    assert [e.start for e in tl.filter(min_confidence=0.8)] == [115.0]
    assert [e.start for e in tl.filter(start=118, end=131)] == [115.0, 130.0]
    assert [e.start for e in tl.filter("red", end=100)] == [10.0]
    f = tl.filter("nothing")
    assert f.events == [] and f.windows == tl.windows and f.usage == tl.usage and f.query == tl.query
    assert len(tl.events) == 3  # the original is untouched
    with pytest.raises(ConfigError):
        tl.filter("(", regex=True)


def test_failed_windows_and_partial() -> None:
    tl = _timeline()
    assert [w.index for w in tl.failed_windows] == [1] and tl.partial
    ok = Timeline(windows=[WindowRecord(0, 0, 10, 4, "ok"), WindowRecord(1, 5, 15, 4, "cached")])
    assert not ok.partial and ok.failed_windows == []


def test_convenience() -> None:
    tl = _timeline()
    assert len(tl) == 3 and [e.start for e in tl] == [10.0, 115.0, 130.0]
    assert tl.labels == ["red square", "Green circle"] and tl.duration == 250.0
    assert "events=3" in repr(tl) and "failed=1" in repr(tl)


def test_repr_html_for_notebooks() -> None:
    html = _timeline()._repr_html_()
    parser = HTMLParser()
    parser.feed(html)
    assert "<svg" in html and "<table" in html and "partial" in html
    assert "#t=115" in html and "qwen-vl-max" in html
    assert Timeline()._repr_html_().startswith("<div>")


def test_lazy_public_api() -> None:
    import vidline

    assert vidline.Timeline is Timeline
    assert callable(vidline.merge_events)


# ------------------------------------------------------------------------------ `vidline export`


def test_cli_export_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _timeline().save(tmp_path / "t.json")
    assert main(["export", str(src), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("start,end,start_time") and len(out.splitlines()) == 4
    assert main(["export", str(src), "-o", str(tmp_path / "t.srt")]) == 0
    assert (tmp_path / "t.srt").read_text().startswith("1\n00:00:10,000 --> ")
    assert main(["export", str(src), "--format", "vtt", "-o", str(tmp_path / "subs.txt")]) == 0
    assert (tmp_path / "subs.txt").read_text().startswith("WEBVTT")
    assert main(["export", str(src), "-o", str(tmp_path / "r.html"), "--no-thumbnails"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "<svg" in html and "#t=10" in html
    assert main(["export", str(src), "--label", "circle"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [e["label"] for e in d["events"]] == ["Green circle"]


def test_cli_export_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing.json"), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidline: error: cannot read timeline") and err.count("\n") == 1
    video = tmp_path / "clip.mp4"  # the video given instead of its timeline: binary, not UTF-8
    video.write_bytes(bytes(range(256)) * 8)
    assert main(["export", str(video), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "not a timeline JSON file" in err and err.count("\n") == 1


def test_cli_export_finds_the_video_from_another_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A timeline saved next to its video (relative path) exported from elsewhere: the report links
    to the real file; ``format`` is case-insensitive."""
    from vidline.synth import make_video

    (tmp_path / "rec").mkdir()
    make_video(tmp_path / "rec" / "cam.mp4", duration=2.0, fps=5)
    tl = _timeline()
    tl.video["path"] = "cam.mp4"
    src = tl.save(tmp_path / "rec" / "t.json")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["export", str(src), "-o", "r.html", "--no-thumbnails"]) == 0
    html = (tmp_path / "elsewhere" / "r.html").read_text()
    assert 'href="../rec/cam.mp4#t=10' in html and "not found" not in html
    tl.save(tmp_path / "elsewhere" / "R.HTML", format="HTML", thumbnails=False)
    assert "file://" not in (tmp_path / "elsewhere" / "R.HTML").read_text()


def test_edited_events_still_export_sorted_and_nan_is_null() -> None:
    tl = _timeline()
    tl.events.append(Event(0.0, 1.0, "late addition", None, float("nan"), []))
    d = json.loads(tl.to_json())  # strict JSON: no NaN
    assert [e["start"] for e in d["events"]] == [0.0, 10.0, 115.0, 130.0]
    assert d["events"][0]["confidence"] is None
    assert tl.to_csv().splitlines()[1].startswith("0.000,1.000,")
    assert tl.to_srt().startswith("1\n00:00:00,000 --> 00:00:01,000\nlate addition\n")


@pytest.mark.parametrize(("kwargs", "name"), [({"label": 5}, "label"), ({"min_confidence": "0.5"}, "min_confidence"),
                                              ({"min_confidence": float("nan")}, "min_confidence"),
                                              ({"start": float("nan")}, "start"), ({"end": -float("inf")}, "end"),
                                              ({"start": True}, "start")])
def test_filter_checks_its_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _timeline().filter(**kwargs)
