"""Table-driven tests of vidline.parse: raw model answers -> clip-relative events."""

from __future__ import annotations

import logging
import time

import pytest

from vidline.errors import AnswerParseError
from vidline.parse import RawEvent, format_timestamp, is_nothing_found, parse_answer, parse_time, to_absolute
from vidline.types import Window

# (raw answer, [(start, end, substring expected in label)])
CASES: list[tuple[str, list[tuple[float, float, str]]]] = [
    # --- JSON lists and objects
    ('[{"start": 1, "end": 2.5, "label": "red square"}]', [(1, 2.5, "red square")]),
    ('[{"start_time": 3.0, "end_time": 4.5, "event": "door opens"}]', [(3, 4.5, "door opens")]),
    ('[{"timestamp": [1.5, 3.0], "description": "a dog runs"}]', [(1.5, 3, "a dog runs")]),
    (
        '{"events": [{"start": 0, "end": 2, "label": "a"}, {"start": 5, "end": 6, "label": "b"}]}',
        [(0, 2, "a"), (5, 6, "b")],
    ),
    ('{"events": [{"start": "00:01", "end": "00:02.5", "label": "x"}]}', [(1, 2.5, "x")]),
    ('[{"start": "12.5s", "end": "15s", "label": "car"}]', [(12.5, 15, "car")]),
    ('[{"start_time": "00:00:12.500", "end_time": "00:00:15,250", "label": "y"}]', [(12.5, 15.25, "y")]),
    ('[{"start_time": "1:02:03", "end_time": "1:02:04.5", "label": "late"}]', [(3723, 3724.5, "late")]),
    ('[{"Start Time": 1, "End-Time": 2, "Event": "caps"}]', [(1, 2, "caps")]),
    ('[{"begin": 1, "finish": 2, "name": "n"}]', [(1, 2, "n")]),
    ('[{"time": "00:05 - 00:07", "label": "range string"}]', [(5, 7, "range string")]),
    ('[{"timestamp": ["00:01.00", "00:03.00"], "label": "strs"}]', [(1, 3, "strs")]),
    ('[[1.0, 2.0, "list row"], [3, 4, "second"]]', [(1, 2, "list row"), (3, 4, "second")]),
    (
        '{"red square": [[1, 2], [5, 6]], "green circle": [3, 4]}',
        [(1, 2, "red square"), (5, 6, "red square"), (3, 4, "green circle")],
    ),
    ('{"results": [{"start": 1, "end": 2, "label": "r", "confidence": 0.9}]}', [(1, 2, "r")]),
    ('{"start": 7, "end": 9, "label": "single object"}', [(7, 9, "single object")]),
    # --- Qwen cookbook: fenced JSON with mm:ss.ff, prose around it
    (
        'Here are the events:\n```json\n[\n  {"start_time": "00:23.90", "end_time": "01:35.60", "description": "A man cooks."}\n]\n```\nHope this helps!',
        [(23.9, 95.6, "A man cooks")],
    ),
    ('```\n[{"start": 2, "end": 4, "label": "plain fence"}]\n```', [(2, 4, "plain fence")]),
    ('The answer is [{"start": 2, "end": 4, "label": "inline"}] as requested.', [(2, 4, "inline")]),
    (
        '<think>Let me look at the frames... 1 - 2?</think>[{"start": 8, "end": 9, "label": "after thinking"}]',
        [(8, 9, "after thinking")],
    ),
    # --- truncated JSON: complete items are recovered
    (
        '[{"start": 1, "end": 2, "label": "a"}, {"start": 3, "end": 4, "label": "b"}, {"start": 5, "end"',
        [(1, 2, "a"), (3, 4, "b")],
    ),
    (
        '```json\n{"events": [{"start_time": "00:01.00", "end_time": "00:02.00", "description": "one"}, {"start_time": "00:0',
        [(1, 2, "one")],
    ),
    ('[{"start": 1, "end": 2, "label": "has \\"quote\\" and }"}, {"start": 3', [(1, 2, 'has "quote" and }')]),
    # --- Qwen prose forms
    ("The given query happens in 64.0 - 72.0 seconds.", [(64, 72, "")]),
    ("The event happens in 3.2 - 5.5 seconds.", [(3.2, 5.5, "")]),
    ("From 12s to 15.5s: the red square is visible", [(12, 15.5, "red square")]),
    ("00:12 - 00:15: a red car stops", [(12, 15, "a red car stops")]),
    ("00:12.5 – 00:15: en dash", [(12.5, 15, "en dash")]),
    (
        "[00:01 - 00:03] red square\n[00:05 - 00:06] green circle",
        [(1, 3, "red square"), (5, 6, "green circle")],
    ),
    (
        "- 1.5s - 3s: red square\n- 4.0s - 6.0s: green circle",
        [(1.5, 3, "red square"), (4, 6, "green circle")],
    ),
    ("1. 00:01-00:02 first\n2. 00:03-00:04 second", [(1, 2, "first"), (3, 4, "second")]),
    ("The red square appears between 2 and 4 seconds.", [(2, 4, "red square")]),
    (
        "From 00:02 to 00:04 a red square is visible. From 00:05.5 to 00:07 a green circle is visible.",
        [(2, 4, "red square"), (5.5, 7, "green circle")],
    ),
    ("A blue triangle is shown from 1:05 to 1:10.", [(65, 70, "blue triangle")]),
    ("Between 3 and 5 seconds, a dog jumps.", [(3, 5, "dog jumps")]),
    ("12:34.56 - 12:40.00 training form", [(754.56, 760.0, "training form")]),
    ("The red square appears at 00:05.", [(5, 5, "red square")]),
    # --- SRT-like arrows
    ("00:00:12.000 --> 00:00:15.500 red square", [(12, 15.5, "red square")]),
    (
        "1\n00:00:12,000 --> 00:00:15,500\nred square\n\n2\n00:00:20,000 --> 00:00:21,000\ngreen circle",
        [(12, 15.5, "red square"), (20, 21, "green circle")],
    ),
    ("00:01.000 --> 00:02.000 short arrow", [(1, 2, "short arrow")]),
    # --- tables
    (
        "| start | end | event |\n|---|---|---|\n| 00:01 | 00:03 | red square |\n| 00:04 | 00:05 | green circle |",
        [(1, 3, "red square"), (4, 5, "green circle")],
    ),
    # --- near-JSON and key/value prose
    ("[{'start': 1.0, 'end': 2.0, 'label': 'python literal'}]", [(1, 2, "python literal")]),
    ('[{"start": 1, "end": 2, "label": "trailing comma",},]', [(1, 2, "trailing comma")]),
    ('[{"timestamps": "1.0-3.0", "event": "range in a string"}]', [(1, 3, "range in a string")]),
    ("Start: 00:01, End: 00:03 - red square", [(1, 3, "red square")]),
    ("* [1.0s, 3.0s] red square", [(1, 3, "red square")]),
    ("**00:01 - 00:03**: bold times", [(1, 3, "bold times")]),
    (
        "- **Red square**: 1.0s – 2.5s\n- **Green circle**: 2.0s – 3.5s",
        [(1, 2.5, "red square"), (2, 3.5, "green circle")],
    ),
    ("The event occurs between 00:00:01 and 00:00:02.", [(1, 2, "")]),
    ("<think>hmm</think>\nThe given query happens in 1.0 - 2.5 seconds.", [(1, 2.5, "")]),
    # --- Chinese prose
    ("在 12.5 秒到 15 秒之间出现红色方块。", [(12.5, 15, "红色方块")]),
    ("红色方块出现在 00:02 到 00:04。", [(2, 4, "红色方块")]),
    ("从第3秒到第5秒，一只狗在跑。", [(3, 5, "狗")]),
    ("起始时间：00:01，结束时间：00:03，事件：红色方块出现", [(1, 3, "红色方块")]),
    ('[{"开始时间": "00:01", "结束时间": "00:03", "事件": "红色方块"}]', [(1, 3, "红色方块")]),
    # --- a non-finite time drops its event (it used to become an instant at the other end)
    ('{"events": [{"start": NaN, "end": 3, "label": "a"}, {"start": 1, "end": 2, "label": "b"}]}', [(1, 2, "b")]),
    ('[{"start": 5, "end": Infinity, "label": "a"}, {"start": 6, "end": 7, "label": "b"}]', [(6, 7, "b")]),
    ('[{"start": 5, "end": null, "label": "a"}]', [(5, 5, "a")]),  # null / missing / wordy end: an instant
    ('[{"start": 5, "end": "", "label": "a"}]', [(5, 5, "a")]),
    ('{"start": "00:05", "end": "later", "label": "a"}', [(5, 5, "a")]),
]

EMPTY = [
    "[]",
    "```json\n[]\n```",
    '{"events": []}',
    "No matching events.",
    "There are no events matching the query.",
    "The red square does not appear in this video.",
    "Nothing found.",
    "None",
    "I could not find the requested event in the video.",
    "视频中没有出现红色方块。",
    "未找到相关事件。",
]

UNPARSEABLE = [
    "",
    "   ",
    "I like turtles.",
    "The video shows a grey background.",
    '[{"start": 1, "end"',  # truncated before any complete item
    '[{"foo": "bar"}]',  # JSON without any time
    "asdfgh 12 qwerty",
    '[{"start": NaN, "end": 3, "label": "a"}]',  # the only event has no usable start
]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_parse_answer_table(raw: str, expected: list[tuple[float, float, str]]) -> None:
    events = parse_answer(raw)
    assert len(events) == len(expected), events
    for ev, (start, end, label) in zip(events, expected, strict=True):
        assert ev.start == pytest.approx(start, abs=1e-6)
        assert ev.end == pytest.approx(end, abs=1e-6)
        assert label.lower() in ev.label.lower(), ev


def test_table_is_large() -> None:
    assert len(CASES) + len(EMPTY) + len(UNPARSEABLE) >= 40


@pytest.mark.parametrize("raw", EMPTY)
def test_nothing_found_is_empty(raw: str) -> None:
    assert parse_answer(raw) == []


@pytest.mark.parametrize("raw", UNPARSEABLE)
def test_unparseable_raises(raw: str) -> None:
    with pytest.raises(AnswerParseError) as info:
        parse_answer(raw)
    assert info.value.raw == raw
    assert "\n" not in str(info.value)


def test_default_label_fills_unnamed_events() -> None:
    events = parse_answer("The given query happens in 64.0 - 72.0 seconds.", default_label="a dog")
    assert [(e.start, e.end, e.label) for e in events] == [(64.0, 72.0, "a dog")]
    named = parse_answer('[{"start": 1, "end": 2, "label": "cat"}]', default_label="a dog")
    assert named[0].label == "cat"


def test_json_keeps_description_and_confidence() -> None:
    (ev,) = parse_answer('[{"start": 1, "end": 2, "label": "x", "description": "long text", "score": 0.75}]')
    assert ev.description == "long text"
    assert ev.confidence == 0.75


def test_is_nothing_found() -> None:
    assert is_nothing_found("No matching events.")
    assert not is_nothing_found("From 1s to 2s: red square")


TIMES: list[tuple[str | float | int, float]] = [
    (12, 12.0),
    (12.5, 12.5),
    ("12", 12.0),
    ("12.5", 12.5),
    ("12.5s", 12.5),
    ("12.5 s", 12.5),
    ("12.5 seconds", 12.5),
    ("12.5秒", 12.5),
    ("1m30s", 90.0),
    ("1 min 30 sec", 90.0),
    ("1分30秒", 90.0),
    ("1500ms", 1.5),
    ("01:30", 90.0),
    ("1:30", 90.0),
    ("01:35.60", 95.6),
    ("00:23.90", 23.9),
    ("1:02:03", 3723.0),
    ("01:02:03.500", 3723.5),
    ("01:02:03,250", 3723.25),
    (" '00:00:05' ", 5.0),
    ("[12.5s]", 12.5),
    ("90:00", 5400.0),
]


@pytest.mark.parametrize(("value", "seconds"), TIMES)
def test_parse_time(value: str | float | int, seconds: float) -> None:
    assert parse_time(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "abc", "12:xx", "nan", float("nan"), float("inf"), True, None, "1:2:3:4"]
)
def test_parse_time_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "kwargs", "text"),
    [
        (62.5, {}, "00:01:02.500"),
        (0, {}, "00:00:00.000"),
        (3723.25, {"sep": ","}, "01:02:03,250"),
        (62.5, {"hours": False}, "01:02.500"),
        (5400, {"hours": False}, "90:00.000"),
        (1.0005, {}, "00:00:01.000"),
        (59.9996, {}, "00:01:00.000"),
    ],
)
def test_format_timestamp(seconds: float, kwargs: dict[str, object], text: str) -> None:
    assert format_timestamp(seconds, **kwargs) == text  # type: ignore[arg-type]
    assert parse_time(text) == pytest.approx(round(seconds, 3))


def test_to_absolute_offsets_scales_and_clamps(caplog: pytest.LogCaptureFixture) -> None:
    window = Window(index=3, start=600.0, end=720.0)
    raw = [
        RawEvent(12.0, 15.0, "inside"),
        RawEvent(-2.0, 1.0, "clamped start"),
        RawEvent(118.0, 125.0, "clamped end"),
        RawEvent(5.0, 4.0, "reversed"),
        RawEvent(130.0, 140.0, "after window"),
        RawEvent(-10.0, -5.0, "before window"),
        RawEvent(30.0, 30.0, "instant"),
    ]
    with caplog.at_level(logging.DEBUG, logger="vidline"):
        events = to_absolute(raw, window)
    got = [(e.start, e.end, e.label, e.windows) for e in events]
    assert got == [
        (612.0, 615.0, "inside", [3]),
        (600.0, 601.0, "clamped start", [3]),
        (718.0, 720.0, "clamped end", [3]),
        (630.0, 630.0, "instant", [3]),
    ]
    dropped = " ".join(r.getMessage() for r in caplog.records)
    for label in ("reversed", "after window", "before window"):
        assert label in dropped


def test_to_absolute_time_scale_applies_before_offset() -> None:
    window = Window(index=0, start=100.0, end=200.0)
    (ev,) = to_absolute([RawEvent(10.0, 20.0, "x")], window, time_scale=2.0, window_index=7)
    assert (ev.start, ev.end, ev.windows) == (120.0, 140.0, [7])


def test_roundtrip_parse_then_absolute() -> None:
    window = Window(index=1, start=600.0, end=720.0)
    events = to_absolute(parse_answer("00:12 - 00:15: a red car stops"), window)
    assert [(e.start, e.end) for e in events] == [(612.0, 615.0)]


@pytest.mark.parametrize(
    "raw",
    [
        "1" * 20000,
        '{"start": ' * 2000,
        "[" * 10000,
        "[{" * 3000,
        "1 2 3 - 4 - 5 " * 5000,
        "00:01 " * 20000,
        "1:" * 20000,
    ],
    ids=["digits", "nested-dicts", "brackets", "mixed", "dashes", "clocks", "colons"],
)
def test_pathological_input_is_fast(raw: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(AnswerParseError):
        parse_answer(raw)
    assert time.perf_counter() - t0 < 2.0


def test_long_answer_is_fast() -> None:
    raw = "\n".join(
        f"- {i // 60:02d}:{i % 60:02d} - {i // 60:02d}:{i % 60:02d}.5: thing {i}" for i in range(3000)
    )
    t0 = time.perf_counter()
    events = parse_answer(raw)
    assert len(events) == 3000 and events[-1].start == 2999.0 and events[-1].end == 2999.5
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("00:00 - 00:03: blue triangle", "blue triangle"),
        ("From 12s to 15.5s: a dog runs", "a dog runs"),
        ("00:00:01.000 --> 00:00:02.500 red square", "red square"),
        ("A red car stops at the gate from 12s to 15s.", "A red car stops at the gate"),
        ("From 00:02 to 00:06 a red square is visible.", "a red square is visible"),
        ("在 12.5 秒到 15 秒之间，一辆红色汽车停下。", "一辆红色汽车停下"),
        ("At 00:05 a man waves.", "a man waves"),
        ("The given query happens in 64.0 - 72.0 seconds.", None),
    ],
)
def test_prose_descriptions_carry_no_clip_relative_times(raw: str, description: str | None) -> None:
    # the times in the sentence are clip-relative: left in the description they would contradict the
    # event's absolute start/end once the window offset is added
    (ev,) = parse_answer(raw)
    assert ev.description == description
