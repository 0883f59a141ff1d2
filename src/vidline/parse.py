"""Turn a model's raw answer into events. Pure: no I/O, no network, no clock.

``parse_answer`` accepts the many shapes Qwen-VL (and other models) answer in -- JSON lists,
``{"events": [...]}`` objects, fenced or truncated JSON, Qwen's cookbook prose ("The given query
happens in 64.0 - 72.0 seconds."), ``00:12 - 00:15: label`` lines, SRT-like arrows, Chinese prose --
and returns clip-relative :class:`RawEvent` objects. ``to_absolute`` turns them into absolute
:class:`~vidline.types.Event` objects for one window. See docs/parsing.md for the full list.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vidline.errors import AnswerParseError
from vidline.log import logger
from vidline.types import Event, Window

__all__ = [
    "RawEvent",
    "format_timestamp",
    "is_nothing_found",
    "parse_answer",
    "parse_time",
    "to_absolute",
]


@dataclass(frozen=True)
class RawEvent:
    """One event as the model stated it: seconds from the start of the clip it was sent."""

    start: float
    end: float
    label: str
    description: str | None = None
    confidence: float | None = None


# --------------------------------------------------------------------------------------------
# times

_NUM = r"\d+(?:[.,]\d+)?"
_CLOCK_RE = re.compile(r"^(?:(\d+):)?(\d{1,3}):(\d{1,2}(?:[.,]\d+)?)$")
_UNIT_RE = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)\s*(?:h|hr|hrs|hours?|小时|時)\s*)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)\s*(?:m|min|mins|minutes?|分钟|分鐘|分)\s*)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)(?![\d.])\s*(?:s|sec|secs|seconds?|秒|秒钟)?\s*)?$"
)


def parse_time(value: str | float | int) -> float:
    """Seconds from a number or a time string; raises ``ValueError`` when it is not a time.

    Accepts ``12``, ``12.5``, ``"12.5s"``, ``"12.5 seconds"``, ``"12.5秒"``, ``"1m30s"``, ``"1分30秒"``,
    ``"01:30"`` / ``"01:30.25"`` (mm:ss[.ff]), ``"1:02:03"`` / ``"01:02:03.500"`` / ``"01:02:03,500"``
    (hh:mm:ss[.mmm]), and ``"1500ms"``.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        out = _parse_time_str(value)
    else:
        raise ValueError(f"not a time: {value!r}")
    if not math.isfinite(out):
        raise ValueError(f"not a finite time: {value!r}")
    return out


def _parse_time_str(value: str) -> float:
    s = value.strip().strip("\"'`[]()（）【】").strip().lower()
    s = s.replace("：", ":").replace("，", ",")
    if not s:
        raise ValueError("empty time")
    m = _CLOCK_RE.match(s)
    if m:
        hours = int(m.group(1)) if m.group(1) else 0
        minutes = int(m.group(2))
        seconds = float(m.group(3).replace(",", "."))
        return hours * 3600 + minutes * 60 + seconds
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:ms|millis|milliseconds?|毫秒)", s)
    if m:
        return float(m.group(1)) / 1000
    m = _UNIT_RE.match(s)
    if m and any(m.group(k) for k in ("h", "m", "s")):
        total = 0.0
        if m.group("h"):
            total += float(m.group("h")) * 3600
        if m.group("m"):
            total += float(m.group("m")) * 60
        if m.group("s"):
            total += float(m.group("s"))
        return total
    # a plain number with a decimal comma ("12,5")
    if re.fullmatch(r"\d+,\d+", s):
        return float(s.replace(",", "."))
    raise ValueError(f"not a time: {value!r}")


def format_timestamp(seconds: float, *, sep: str = ".", hours: bool = True) -> str:
    """``00:01:02.500`` (``hours=False``: ``01:02.500``; ``sep=","`` for SRT)."""
    sign = "-" if seconds < 0 else ""
    total_ms = int(round(abs(seconds) * 1000))
    secs, ms = divmod(total_ms, 1000)
    mins, secs = divmod(secs, 60)
    if hours:
        hrs, mins = divmod(mins, 60)
        return f"{sign}{hrs:02d}:{mins:02d}:{secs:02d}{sep}{ms:03d}"
    return f"{sign}{mins:02d}:{secs:02d}{sep}{ms:03d}"


# --------------------------------------------------------------------------------------------
# JSON answers

_START_KEYS = (
    "start", "start_time", "starttime", "start_sec", "start_secs", "start_seconds", "start_s",
    "start_ts", "start_timestamp", "begin", "begin_time", "from", "t_start", "t0", "onset",
    "开始时间", "起始时间", "开始", "起始",
)  # fmt: skip
_END_KEYS = (
    "end", "end_time", "endtime", "end_sec", "end_secs", "end_seconds", "end_s", "end_ts",
    "end_timestamp", "stop", "stop_time", "finish", "to", "until", "t_end", "t1", "offset",
    "结束时间", "终止时间", "结束", "终止",
)  # fmt: skip
_PAIR_KEYS = (
    "timestamp", "timestamps", "time", "times", "interval", "span", "segment", "time_range",
    "timerange", "range", "period", "duration_range", "time_span", "timespan", "start_end",
    "时间", "时间段", "时间戳", "时间范围",
)  # fmt: skip
_LABEL_KEYS = (
    "label", "event", "name", "event_name", "type", "class", "category", "object", "action",
    "query", "title", "activity", "事件", "标签", "名称", "类别",
)  # fmt: skip
_DESC_KEYS = (
    "description",
    "desc",
    "details",
    "detail",
    "caption",
    "summary",
    "text",
    "content",
    "描述",
    "说明",
    "内容",
)
_CONF_KEYS = ("confidence", "score", "probability", "prob", "conf")
_LIST_KEYS = ("events", "results", "segments", "timeline", "items", "detections", "answer", "data", "output")


def _norm_key(key: str) -> str:
    return re.sub(r"[\s\-]+", "_", key.strip().lower())


def _time_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)):
        if len(value) >= 2:
            a, b = _time_or_none(value[0]), _time_or_none(value[1])
            if a is not None and b is not None:
                return a, b
        if len(value) == 1:
            a = _time_or_none(value[0])
            if a is not None:
                return a, a
        return None
    if isinstance(value, dict):
        ev = _event_from_dict(value, allow_pair=False)
        return (ev.start, ev.end) if ev else None
    if isinstance(value, str):
        m = _LOOSE_PAIR_RE.match(value)
        if m:
            a, b = _time_or_none(m.group(1)), _time_or_none(m.group(2))
            if a is not None and b is not None:
                return a, b
        found = list(_find_ranges(value))
        if found:
            return found[0][0], found[0][1]
    a = _time_or_none(value)
    return (a, a) if a is not None else None


_LOOSE_PAIR_RE = re.compile(
    r"^\s*[\[(]?\s*([^\s,~\-–—]+?(?:\s*[a-z秒]+)?)\s*(?:-{1,3}>?|–|—|~|,|to|至|到)\s*([^\s,\])]+?(?:\s*[a-z秒]+)?)\s*[\])]?\s*$",
    re.I,
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _event_from_dict(d: dict[str, Any], *, allow_pair: bool = True) -> RawEvent | None:
    keys = {_norm_key(str(k)): v for k, v in d.items()}
    start = next((_time_or_none(keys[k]) for k in _START_KEYS if k in keys), None)
    end = next((_time_or_none(keys[k]) for k in _END_KEYS if k in keys), None)
    # a non-finite start or end (NaN, Infinity: JSON that Python reads as floats) makes the event
    # unusable: dropped, not turned into an instant at its other end. A missing, null or wordy one
    # ("end": "later") is an instant at the time that is given.
    for names in (_START_KEYS, _END_KEYS):
        given = next((keys[k] for k in names if k in keys), None)
        if isinstance(given, float) and not math.isfinite(given):
            return None
    if allow_pair and (start is None or end is None):
        for k in _PAIR_KEYS:
            if k in keys:
                pair = _pair(keys[k])
                if pair is not None:
                    if start is None and end is None:
                        start, end = pair
                    elif start is None:
                        start = pair[0]
                    else:
                        end = pair[1]
                    break
    if start is None and end is None:
        return None
    if start is None:
        start = end
    if end is None:
        end = start
    assert start is not None and end is not None
    label = next((t for k in _LABEL_KEYS if k in keys and (t := _text(keys[k]))), None)
    desc = next((t for k in _DESC_KEYS if k in keys and (t := _text(keys[k]))), None)
    conf: float | None = None
    for k in _CONF_KEYS:
        if k in keys:
            try:
                conf = float(keys[k])
            except (TypeError, ValueError):
                conf = None
            break
    return RawEvent(start, end, label if label is not None else (desc or ""), desc, conf)


def _events_from_json(obj: Any) -> list[RawEvent] | None:
    """Events from a decoded JSON value; ``None`` when it does not look like an answer at all."""
    if isinstance(obj, list):
        if not obj:
            return []
        out: list[RawEvent] = []
        recognised = False
        for item in obj:
            if isinstance(item, dict):
                ev = _event_from_dict(item)
                if ev is not None:
                    out.append(ev)
                    recognised = True
                else:
                    nested = _events_from_json(item)
                    if nested is not None:
                        out.extend(nested)
                        recognised = True
            elif isinstance(item, (list, tuple)) and len(item) >= 2:
                # [start, end, "label"?]
                a, b = _time_or_none(item[0]), _time_or_none(item[1])
                if a is not None and b is not None:
                    label = _text(item[2]) if len(item) > 2 else None
                    out.append(RawEvent(a, b, label or ""))
                    recognised = True
        return out if recognised else None
    if isinstance(obj, dict):
        keys = {_norm_key(str(k)): v for k, v in obj.items()}
        for k in _LIST_KEYS:
            if k in keys and isinstance(keys[k], list):
                return _events_from_json(keys[k])
        ev = _event_from_dict(obj)
        if ev is not None:
            return [ev]
        # {"red square": [[1, 2], [5, 6]]} or {"red square": [1, 2]}
        out = []
        for k, v in obj.items():
            if isinstance(v, (list, tuple)) and v:
                pairs = v if isinstance(v[0], (list, tuple, dict)) else [v]
                for p in pairs:
                    pr = _pair(p)
                    if pr is not None:
                        out.append(RawEvent(pr[0], pr[1], str(k)))
        if out:
            return out
        # any list-valued key holding event dicts
        for v in obj.values():
            if isinstance(v, list):
                nested = _events_from_json(v)
                if nested is not None:
                    return nested
        return None
    return None


_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n?(.*?)(?:```|\Z)", re.S)
_DECODER = json.JSONDecoder()


def _json_candidates(text: str) -> Iterator[str]:
    for m in _FENCE_RE.finditer(text):
        yield m.group(2).strip()
    yield text


def _try_json(text: str) -> list[RawEvent] | None:
    """Events from JSON anywhere in ``text`` (fenced, embedded in prose, or truncated)."""
    for cand in _json_candidates(text):
        if not cand:
            continue
        # 1. the whole candidate
        try:
            result = _events_from_json(json.loads(cand))
        except (ValueError, RecursionError):
            result = None
        if result is not None:
            return result
        # 2. every complete JSON value that looks like an answer, in order; this also recovers the
        #    complete items of a truncated list (the outer list fails to decode, its items do not)
        found = _scan_json_values(cand)
        if found is not None:
            return found
        # 3. near-JSON: trailing commas, Python literals ('single quotes', None, True)
        found = _near_json(cand)
        if found is not None:
            return found
    return None


_MAX_JSON_ATTEMPTS = 4000  # bounds the work on pathological input (each attempt is a C-speed scan)


def _scan_json_values(text: str) -> list[RawEvent] | None:
    out: list[RawEvent] = []
    recognised = False
    attempts = 0
    pos = 0
    n = len(text)
    while pos < n:
        i = min((j for j in (text.find("{", pos), text.find("[", pos)) if j >= 0), default=-1)
        if i < 0:
            break
        attempts += 1
        if attempts > _MAX_JSON_ATTEMPTS:
            break
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except ValueError:
            pos = i + 1
            continue
        except RecursionError:  # absurdly nested brackets: not an answer
            break
        events = _events_from_json(obj)
        if events is None:
            pos = i + 1
            continue
        recognised = True
        out.extend(events)
        pos = end
    if out:
        if text.lstrip()[:1] in "[{" and not _complete_json(text):
            logger.debug("recovered %d event(s) from incomplete JSON", len(out))
        return out
    if not recognised:
        # bare [a, b, "label"] rows inside a truncated outer list
        for m in re.finditer(r"\[\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*\"([^\"]*)\"\s*\]", text):
            out.append(RawEvent(float(m.group(1)), float(m.group(2)), m.group(3)))
        if out:
            return out
    return [] if recognised else None


def _near_json(text: str) -> list[RawEvent] | None:
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    end = max(text.rfind("]"), text.rfind("}"))
    if end <= start:
        return None
    chunk = text[start : end + 1]
    no_trailing = re.sub(r",\s*([\]}])", r"\1", chunk)
    if no_trailing != chunk:
        found = _scan_json_values(no_trailing)
        if found is not None:
            return found
    if "'" in chunk:
        try:
            obj = ast.literal_eval(no_trailing)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        return _events_from_json(obj)
    return None


def _complete_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# prose answers

_CLOCK = r"(?<![\d.:])\d{1,3}:\d{2}(?::\d{2})?(?:[.,]\d{1,6})?"
_N = r"(?<![\d.])\d{1,7}(?:\.\d{1,6})?"  # a number starting at a number boundary: bounded backtracking
_UNIT = r"(?:s|sec|secs|seconds?|秒|秒钟)"
_T = rf"(?:{_CLOCK}|{_N}(?:\s*{_UNIT}\b|\s*秒)?)"
_SEP = r"(?:-{1,3}>|→|->|–|—|-|~|～|〜|to|until|till|and|至|到|和)"
_RANGE_RE = re.compile(
    rf"(?:第\s*)?(?P<a>{_T})\s*{_SEP}\s*(?:第\s*)?(?P<b>{_T})(?P<unit>\s*{_UNIT}(?![a-z]))?", re.I
)
_ARROW_RE = re.compile(rf"(?P<a>{_CLOCK}|{_N})\s*-->\s*(?P<b>{_CLOCK}|{_N})", re.I)
_CONTEXT_RE = re.compile(r"(?:\bfrom|\bbetween|\bin|\bduring|\bat|从|在|于|自)\s*$", re.I)
_POINT_RE = re.compile(
    rf"(?:\b(?:at|around|about)\s+|在\s*|于\s*|@\s*)(?P<a>{_CLOCK}|\d+(?:\.\d+)?\s*{_UNIT})", re.I
)

_QWEN_FILLER_RE = re.compile(
    r"^(?:the\s+given\s+query|the\s+query|the\s+event|this\s+event|it|this)\s+(?:happens|occurs|takes\s+place|appears|is)"
    r"(?:\s+(?:in|at|during|between|from))?$",
    re.I,
)


def _has_unit_or_clock(tok: str) -> bool:
    return ":" in tok or bool(re.search(_UNIT + r"\s*$", tok.strip(), re.I)) or "秒" in tok


_BRACKET_RE = re.compile(rf"[\[(（【]\s*(?P<a>{_T})\s*[,，;]\s*(?P<b>{_T})\s*[\])）】]", re.I)
_KV_START_RE = re.compile(
    rf"(?:start(?:\s*time)?|begin(?:\s*time)?|from|开始时间|起始时间|开始|起始)\s*[:：=]\s*(?P<t>{_T})", re.I
)
_KV_END_RE = re.compile(
    rf"(?:end(?:\s*time)?|stop|until|to|结束时间|终止时间|结束|终止)\s*[:：=]\s*(?P<t>{_T})", re.I
)
_KV_LABEL_RE = re.compile(
    r"(?:event|label|description|activity|事件|标签|描述|内容)\s*[:：=]\s*(?P<v>.+)$", re.I
)


def _kv_event(line: str) -> RawEvent | None:
    """``Start: 00:01, End: 00:03, Event: x`` / ``起始时间：00:01，结束时间：00:03，事件：x``."""
    ms, me = _KV_START_RE.search(line), _KV_END_RE.search(line)
    if not ms or not me or me.start() < ms.end():
        return None
    try:
        a, b = parse_time(ms.group("t")), parse_time(me.group("t"))
    except ValueError:
        return None
    ml = _KV_LABEL_RE.search(line, me.end())
    if ml:
        label = _clean_label(ml.group("v"))
    else:
        label = _clean_label(line[me.end() :]) or _clean_prefix(line[: ms.start()])
    return RawEvent(a, b, label, line)


def _find_ranges(line: str) -> Iterator[tuple[float, float, int, int]]:
    """(start, end, match start, match end) of every time range in ``line``."""
    taken: list[tuple[int, int]] = []
    for m in _BRACKET_RE.finditer(line):
        try:
            yield parse_time(m.group("a")), parse_time(m.group("b")), m.start(), m.end()
            taken.append((m.start(), m.end()))
        except ValueError:
            continue
    for m in _ARROW_RE.finditer(line):
        if any(s <= m.start() < e for s, e in taken):
            continue
        try:
            yield parse_time(m.group("a")), parse_time(m.group("b")), m.start(), m.end()
            taken.append((m.start(), m.end()))
        except ValueError:
            continue
    for m in _RANGE_RE.finditer(line):
        if any(s <= m.start() < e for s, e in taken):
            continue
        a, b = m.group("a"), m.group("b")
        explicit = (
            _has_unit_or_clock(a)
            or _has_unit_or_clock(b)
            or bool(m.group("unit"))
            or bool(_CONTEXT_RE.search(line[max(0, m.start() - 24) : m.start()]))
        )
        if not explicit:
            continue
        # a unit word after a clock time ("00:04 second ...") belongs to the label
        end = m.end() if (m.group("unit") and ":" not in b) else m.end("b")
        try:
            yield parse_time(a), parse_time(b), m.start(), end
        except ValueError:
            continue


_LEAD_JUNK = " \t:：-–—*•·>|,，.。;；)]）】"
_TRAIL_JUNK = " \t:：-–—*•·>|,，.。;；([（【"


def _clean_label(text: str) -> str:
    s = text.strip()
    s = re.sub(r"^\s*(?:之间|之內|之内|期间|内|处)", "", s)
    s = s.strip(_LEAD_JUNK).rstrip(_TRAIL_JUNK).strip()
    s = re.sub(r"^(?:\d+[.)]\s+|#+\s*)", "", s)  # list numbering, markdown headers
    s = s.strip("\"'`*_ ").strip()
    return s


def _clean_prefix(text: str) -> str:
    s = text.strip()
    s = re.sub(r"^\s*(?:[-*•·]\s+|\d+[.)]\s+|#+\s*)", "", s)
    s = re.sub(r"(?:\bfrom|\bbetween|\bin|\bduring|\bat|从|在|于|自)\s*$", "", s, flags=re.I)
    s = s.strip(_LEAD_JUNK).rstrip(_TRAIL_JUNK).strip()
    s = s.strip("\"'`*_[( ").strip()
    if _QWEN_FILLER_RE.match(s):
        return ""
    return s


def _is_noise_line(line: str) -> bool:
    s = line.strip()
    return not s or s.isdigit() or bool(re.fullmatch(r"[-=`*#|: ]+", s))


_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?;])\s+(?=\S)|(?<=[。！？；])")


def _prose_events(text: str) -> list[RawEvent]:
    lines = [ln.strip() for ln in text.splitlines()]
    out: list[RawEvent] = []
    for idx, line in enumerate(lines):
        if not line:
            continue
        if line.count("|") >= 2:
            row = _table_row(line)
            if row is not None:
                out.append(row)
                continue
        kv = _kv_event(line)
        if kv is not None:
            out.append(kv)
            continue
        for sentence in (x.strip() for x in _SENTENCE_SPLIT_RE.split(line)):
            if sentence:
                out.extend(_sentence_events(sentence, lines[idx + 1 : idx + 4]))
    return out


def _sentence_events(sentence: str, following: list[str]) -> list[RawEvent]:
    out: list[RawEvent] = []
    ranges = list(_find_ranges(sentence))
    if not ranges:
        for m in _POINT_RE.finditer(sentence):
            try:
                t = parse_time(m.group("a"))
            except ValueError:
                continue
            label = _clean_label(sentence[m.end() :]) or _clean_prefix(sentence[: m.start()])
            out.append(RawEvent(t, t, label, _without_times(sentence, [(m.start(), m.end())]) or None))
        return out
    for k, (a, b, s, e) in enumerate(ranges):
        nxt = ranges[k + 1][2] if k + 1 < len(ranges) else len(sentence)
        after = _clean_label(sentence[e:nxt])
        before = _clean_prefix(sentence[:s] if k == 0 else sentence[ranges[k - 1][3] : s])
        label = after or before
        # the sentence's own clip-relative times would be wrong once the event is made absolute
        description: str | None = _without_times(sentence, [(r[2], r[3]) for r in ranges]) or None
        if not label and not _QWEN_FILLER_RE.match(_clean_prefix_raw(sentence[:s])):
            # SRT block or "00:12 - 00:15:" with the text on the following line
            for follow in following:
                if _is_noise_line(follow) or list(_find_ranges(follow)):
                    break
                label = _clean_label(follow)
                description = follow
                break
        out.append(RawEvent(a, b, label, description))
    return out


_LEAD_IN_RE = re.compile(r"(?:\b(?:from|between|in|during|at|to|and)|从|在|于|自|到|至)\s*$", re.I)
_LEAD_OUT_RE = re.compile(r"^\s*(?:seconds?\b|secs?\b|s\b|秒钟?|之间|期间)", re.I)


def _without_times(sentence: str, spans: list[tuple[int, int]]) -> str:
    """``sentence`` with the time expressions at ``spans`` cut out, with the words that led into and
    out of them ("from", "seconds", "之间"); empty when nothing but Qwen's filler is left."""
    pieces, pos = [], 0
    for s, e in sorted(spans):
        pieces.append(_LEAD_IN_RE.sub("", _LEAD_OUT_RE.sub("", sentence[pos:s]) if pos else sentence[pos:s]))
        pos = max(pos, e)
    pieces.append(_LEAD_OUT_RE.sub("", sentence[pos:]))
    text = " ".join(p.strip() for p in pieces if p.strip())
    text = re.sub(r"\s+([:;,.，。：])", r"\1", text)
    text = re.sub(r"([:;,，：])(?=[:;,.，。：])", "", text)
    text = text.strip(_LEAD_JUNK).rstrip(":;,，： ").strip()
    return "" if _QWEN_FILLER_RE.fullmatch(text.rstrip(".。")) else text


def _clean_prefix_raw(text: str) -> str:
    s = re.sub(r"(?:\bfrom|\bbetween|\bin|\bduring|\bat|从|在|于|自)\s*$", "", text.strip(), flags=re.I)
    return s.strip(_LEAD_JUNK).rstrip(_TRAIL_JUNK).strip()


def _table_row(line: str) -> RawEvent | None:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    times: list[float] = []
    rest: list[str] = []
    for c in cells:
        t = _time_or_none(c) if c else None
        if t is not None and len(times) < 2 and (":" in c or re.search(r"\d", c)):
            times.append(t)
        elif c:
            rest.append(c)
    if len(times) == 1:
        # "| 00:12 - 00:15 | red square |"
        for c in cells:
            found = list(_find_ranges(c))
            if found:
                times = [found[0][0], found[0][1]]
                rest = [x for x in cells if x and x != c]
                break
    if len(times) < 2:
        for c in cells:
            found = list(_find_ranges(c))
            if found:
                return RawEvent(found[0][0], found[0][1], " ".join(x for x in cells if x and x != c))
        return None
    return RawEvent(times[0], times[1], " ".join(rest))


# --------------------------------------------------------------------------------------------
# "nothing found"

_NOTHING_RE = re.compile(
    r"(?:^\s*(?:none|null|n/?a|nothing|no|\[\s*\]|\{\s*\})\s*[.!]?\s*$"
    r"|\bno\s+(?:such\s+|matching\s+|relevant\s+|notable\s+|visible\s+|clear\s+)*(?:events?|matches|segments?|occurrences?|moments?|results?|instances?)\b"
    r"|\bnothing\s+(?:matching|relevant|notable|found|happens|was\s+found|is\s+found|of\s+note)\b"
    r"|\b(?:not|never)\s+(?:found|present|visible|detected|shown|seen|appear|appears|occur|occurs|happen|happens)\b"
    r"|\b(?:does|did|do)\s*(?:not|n't)\s+(?:appear|occur|happen|contain|show|see|find)\b"
    r"|\b(?:can|could)\s*(?:not|n't)\s+(?:find|see|locate|identify|detect)\b"
    r"|\bthere\s+(?:is|are|were|was)\s+no\b"
    r"|没有|未发现|未找到|未出现|没出现|不存在|找不到|无相关|无匹配|並未|沒有)",
    re.I | re.M,
)


def is_nothing_found(text: str) -> bool:
    """Whether ``text`` says that nothing matching was found (and has no parseable events)."""
    return bool(_NOTHING_RE.search(_strip_thinking(text)))


def _strip_thinking(text: str) -> str:
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    text = re.sub(r"^.*?</think>", "", text, flags=re.S | re.I)  # an unterminated opening tag
    return text.strip()


# --------------------------------------------------------------------------------------------
# public entry points


def parse_answer(text: str, *, default_label: str = "") -> list[RawEvent]:
    """Events (clip-relative seconds) from a model answer.

    Returns ``[]`` for an explicit "nothing found" answer or an empty JSON list. Raises
    :class:`~vidline.errors.AnswerParseError` (with ``raw`` set) when nothing parseable is found, so
    an unusable answer is never mistaken for "no events". Events whose answer names no label (e.g.
    Qwen's "The given query happens in 64.0 - 72.0 seconds.") get ``default_label``.
    """
    if text is None or not str(text).strip():
        raise AnswerParseError("the model returned an empty answer", raw=str(text or ""))
    body = _strip_thinking(str(text))
    events = _try_json(body)
    if events is None:
        events = _prose_events(_unfence(body))
        if not events:
            if is_nothing_found(body):
                return []
            snippet = " ".join(body.split())[:120]
            what = ("no event in the model answer has usable times (NaN or Infinity)"
                    if _TIME_FIELD_RE.search(body) else "could not find any event times in the model answer")
            raise AnswerParseError(
                f"{what}: {snippet!r}", raw=str(text)
            )
    if default_label:
        events = [
            RawEvent(e.start, e.end, e.label or default_label, e.description, e.confidence) for e in events
        ]
    return events


# a JSON field that should hold a time ("start", "end_time", "开始时间", ...)
_TIME_FIELD_RE = re.compile(r'"(?:start|end|begin|from|to|时间|开始|结束)[^"]{0,12}"\s*:', re.I)


def _unfence(text: str) -> str:
    return re.sub(r"```[A-Za-z0-9_-]*", "", text)


def to_absolute(
    events: Iterable[RawEvent],
    window: Window,
    *,
    time_scale: float = 1.0,
    window_index: int | None = None,
) -> list[Event]:
    """Absolute events for ``window``: ``t * time_scale + window.start``, clamped to the window.

    Events that end before they start, lie wholly outside the window, or have non-finite times are
    dropped with a debug log. ``window_index`` (default ``window.index``) is recorded on each event.
    """
    idx = window.index if window_index is None else window_index
    out: list[Event] = []
    for ev in events:
        start = ev.start * time_scale + window.start
        end = ev.end * time_scale + window.start
        if not (math.isfinite(start) and math.isfinite(end)):
            logger.debug("dropping event %r: non-finite time", ev.label)
            continue
        if end < start:
            logger.debug("dropping event %r: end %.3f before start %.3f", ev.label, end, start)
            continue
        if start > window.end or end < window.start:
            logger.debug(
                "dropping event %r: %.3f-%.3f outside window %.3f-%.3f",
                ev.label, start, end, window.start, window.end,
            )  # fmt: skip
            continue
        start = max(start, window.start)
        end = min(end, window.end)
        out.append(Event(start, end, ev.label, ev.description, ev.confidence, [idx]))
    return out
