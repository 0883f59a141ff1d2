"""A local, embedded event index: many timelines in one SQLite file, searchable by text.

The store is a single SQLite database (standard library ``sqlite3``, no server) with three tables
and a full-text index:

- ``videos``  one row per video path;
- ``runs``    one row per indexed timeline run (video + query + backend + model + mode + windows);
- ``events``  the run's events (start, end, label, description, confidence);
- ``events_fts``  an FTS5 table over label and description (porter stemming), ranked with bm25.

CJK text (Chinese, Japanese, Korean) has no spaces between words, and FTS5's unicode61 tokenizer
reads a whole run of CJK characters as one token, which only its start would match. So the text
given to the FTS table has a zero-width space (U+200B, a separator for unicode61) around every CJK
character: each is its own token, and a CJK query word becomes the phrase of its characters, which
finds it anywhere in a run. The FTS table keeps its own copy of that text (for snippets, with the
marks removed); Latin-script text is stored and matched exactly as written. An index written before
(an FTS table over the ``events`` table's text) is rebuilt on open, once.

When the SQLite build lacks FTS5, search falls back to ``LIKE`` matching (unranked) with a warning.

Every write is one ``BEGIN IMMEDIATE`` transaction, so several processes can index into the same
file at once: a run that another process has just added is ``unchanged``, never an error.

Indexing is idempotent: a run is identified by its video path, query, backend, model, mode and window
plan. Indexing the same run again stores nothing new; indexing a changed version of it (for example
after failed windows were retried) replaces its events.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidline.errors import ConfigError
from vidline.log import logger

SCHEMA_VERSION = 2  # 2: the FTS table holds CJK-segmented text (1: FTS over ``events``)
DB_ENV = "VIDLINE_DB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    duration REAL,
    info TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    run_key TEXT NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    query TEXT,
    backend TEXT,
    model TEXT,
    mode TEXT,
    source TEXT,
    n_events INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    confidence REAL,
    windows TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_video_start ON events(video_id, start);
CREATE INDEX IF NOT EXISTS runs_video ON runs(video_id);
"""

_FTS_ARGS = "label, description, tokenize='porter unicode61'"
_FTS_SCHEMA = f"CREATE VIRTUAL TABLE events_fts USING fts5({_FTS_ARGS})"

# Letters of scripts written without spaces between words: each one is indexed as its own token.
_CJK = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303c\u3040-\u30ff\u3100-\u312f\u3131-\u318e"
    "\u31a0-\u31bf\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_EDGE_RE = re.compile(f"(?<=[{_CJK}])(?=\\w)|(?<=\\w)(?=[{_CJK}])")
_CJK_UNITS_RE = re.compile(f"[{_CJK}]|[^{_CJK}]+")
_ZWSP = "\u200b"

# Timeline fields that change between two runs of the same analysis without changing its result.
_VOLATILE_TOP = {"usage", "created", "created_at", "elapsed", "timing", "cache", "version"}
_VOLATILE_WINDOW = {"status", "usage", "error", "estimated_tokens"}


@dataclass(frozen=True)
class SearchHit:
    """One matching event."""

    video: str
    start: float
    end: float
    label: str
    description: str | None
    snippet: str
    score: float  # higher is better (negated bm25); 0.0 for unranked matches
    confidence: float | None = None
    query: str | None = None  # the question the run asked the model (None: default timeline prompt)
    backend: str | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = round(self.start, 3)
        d["end"] = round(self.end, 3)
        d["score"] = round(self.score, 4)
        return d


@dataclass(frozen=True)
class IndexResult:
    """What ``add_timeline`` did: ``status`` is "added", "unchanged" or "replaced"."""

    run_id: int
    status: str
    video: str
    n_events: int


def default_db_path() -> Path:
    """``$VIDLINE_DB`` when set, else ``<user data dir>/vidline/index.db``."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("vidline")) / "index.db"


def fts5_available() -> bool:
    """Whether this Python's SQLite build has the FTS5 extension."""
    try:
        con = sqlite3.connect(":memory:")
        try:
            con.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return True


# ----------------------------------------------------------------------------------------- pure helpers


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()[:32]


def timeline_to_dict(timeline: Any) -> dict[str, Any]:
    """Accept a ``vidline.Timeline``, a dict in the timeline JSON shape, or a path to a JSON file."""
    if isinstance(timeline, dict):
        d = timeline
    elif isinstance(timeline, (str, os.PathLike)):
        items = read_timeline_file(timeline)
        if len(items) != 1:
            raise ConfigError(f"{timeline}: holds a JSON array of {len(items)} timelines: index it with "
                              "EventIndex.add_timeline_file() (or `vidline index`)")
        d = items[0]
    elif hasattr(timeline, "to_dict"):
        d = timeline.to_dict()
    else:
        raise ConfigError(f"cannot index a {type(timeline).__name__}: expected a Timeline or its JSON dict")
    if not isinstance(d, dict) or not isinstance(d.get("events"), list):
        raise ConfigError("not a timeline: expected a JSON object with an 'events' list")
    check_events(d)
    return d


def check_events(d: dict[str, Any], where: str | None = None) -> None:
    """ConfigError naming the event (and ``where``) when an event of timeline dict ``d`` is not one a
    timeline holds (``Event.from_dict``: finite times, ...)."""
    from vidline.types import Event

    for i, event in enumerate(d.get("events") or []):
        try:
            Event.from_dict(event)
        except ValueError as exc:
            raise ConfigError(f"{where + ': ' if where else ''}event {i}: {exc}") from exc


def timeline_dicts(data: Any, name: str = "timeline") -> list[dict[str, Any]]:
    """The timelines in parsed JSON: an object is one timeline, an array (what ``vidline timeline A B``
    prints) holds several. Every element is checked before any is returned."""
    items, array = (data, True) if isinstance(data, list) else ([data], False)
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("events"), list):
            where = f"{name}[{k}]" if array else name
            raise ConfigError(f"{where}: not a timeline: expected a JSON object with an 'events' list")
    for k, item in enumerate(items):  # every element whole before any is used: none half-indexed
        check_events(item, f"{name}[{k}]" if array else name)
    return list(items)


def read_timeline_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The timelines of a JSON file holding one timeline object or an array of them."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such timeline file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a timeline JSON file ({exc})") from exc
    return timeline_dicts(data, str(path))


def _video_path(d: dict[str, Any]) -> str:
    video = d.get("video")
    path = video.get("path") if isinstance(video, dict) else video
    if not path:
        raise ConfigError("timeline has no video path (video.path)")
    return os.path.normpath(str(path))


def resolve_video_path(path: str, source: str | os.PathLike[str] | None = None) -> str:
    """An absolute path for a timeline's video path, when the file can be found: as stored (relative
    ones from the current directory), else beside the timeline file ``source``: at the stored relative
    path, then by the video's file name (a results folder moved or copied with its video). Otherwise
    the stored path, normalised."""
    if os.path.exists(path):
        return os.path.normpath(os.path.abspath(path))
    if source is not None:
        folder = os.path.dirname(os.path.abspath(source))
        candidates = [] if os.path.isabs(path) else [os.path.join(folder, path)]
        candidates.append(os.path.join(folder, os.path.basename(path)))
        for candidate in candidates:
            if os.path.exists(candidate):
                return os.path.normpath(candidate)
    return os.path.normpath(path)


def run_identity(d: dict[str, Any]) -> tuple[str, str]:
    """``(run_key, content_hash)`` of a timeline dict.

    ``run_key`` names the analysis (video, query, backend, model, mode, window plan); ``content_hash``
    covers its result too (the canonical JSON minus volatile fields such as usage and window status).
    """
    windows = [
        (round(float(w.get("start", 0.0)), 3), round(float(w.get("end", 0.0)), 3))
        for w in d.get("windows") or []
        if isinstance(w, dict)
    ]
    key = {
        "video": _video_path(d),
        "query": d.get("query"),
        "backend": d.get("backend"),
        "model": d.get("model"),
        "mode": d.get("mode"),
        "windows": windows,
    }
    content = {k: v for k, v in d.items() if k not in _VOLATILE_TOP}
    if isinstance(content.get("windows"), list):
        content["windows"] = [
            {k: v for k, v in w.items() if k not in _VOLATILE_WINDOW} if isinstance(w, dict) else w
            for w in content["windows"]
        ]
    return _digest(key), _digest(content)


_TOKEN_RE = re.compile(r"\w+", re.UNICODE)


def has_cjk(text: str) -> bool:
    return not text.isascii() and _CJK_RE.search(text) is not None


def fts_text(text: str) -> str:
    """The text the FTS table indexes: ``text`` with a zero-width space between a CJK character and
    any letter or digit next to it, so that unicode61 makes every CJK character a token. Text
    without CJK is returned as is."""
    if not has_cjk(text):
        return text
    return _CJK_EDGE_RE.sub(_ZWSP, text)


def query_tokens(query: str) -> list[str]:
    """The words of a free-text query (punctuation and FTS operators are treated as plain text)."""
    return [t.lower() for t in _TOKEN_RE.findall(query)]


def _cjk_phrase(units: Sequence[str], prefix: bool) -> str:
    # a quoted string of several tokens is an FTS5 phrase: the characters must be adjacent, in order
    last_latin = not _CJK_RE.match(units[-1])
    return '"' + " ".join(units) + '"' + ("*" if prefix and last_latin else "")


def _fts_term(token: str, *, prefix: bool, pieces: bool) -> list[str]:
    """FTS5 terms for one query word. A word with CJK characters is the phrase of its characters
    (and Latin parts); with ``pieces``, a CJK run longer than two characters is split into its
    two-character pieces instead (the "any word" fallback: CJK words are not delimited)."""
    if not has_cjk(token):
        return [f'"{token}"' + ("*" if prefix else "")]
    units = _CJK_UNITS_RE.findall(token)
    if not pieces:
        return [_cjk_phrase(units, prefix)]
    terms: list[str] = []
    run: list[str] = []
    for u in [*units, ""]:
        if u and _CJK_RE.match(u):
            run.append(u)
            continue
        if len(run) > 2:
            terms += [f'"{a} {b}"' for a, b in zip(run, run[1:], strict=False)]
        elif run:
            terms.append(_cjk_phrase(run, prefix))
        run = []
        if u:
            terms.append(f'"{u}"' + ("*" if prefix else ""))
    return list(dict.fromkeys(terms))


def fts_query(tokens: Sequence[str], *, any_token: bool = False, prefix: bool = True) -> str:
    """An FTS5 MATCH expression: every token quoted (so no syntax errors), prefix-matched, AND/OR-ed.

    A token with CJK characters becomes the phrase of its characters (``"码 头"``), matching them
    anywhere in the text; with ``any_token`` its two-character pieces are OR-ed instead.
    """
    parts = [t for tok in tokens for t in _fts_term(tok, prefix=prefix, pieces=any_token)]
    return (" OR " if any_token else " ").join(parts)


def _like_tokens(tokens: Sequence[str]) -> list[str]:
    # "方块red" in a query finds "方块 red" too: CJK runs and other letters are matched separately
    out: list[str] = []
    for t in tokens:
        out += re.findall(f"[{_CJK}]+|[^{_CJK}]+", t) if has_cjk(t) else [t]
    return out


def parse_time(value: str | float | int) -> float:
    """Seconds from ``"90"``, ``"90.5"``, ``"1:30"``, ``"00:01:30.5"``, ``"15s"`` (also numbers); a
    ConfigError (one line, exit code 2) for anything else or a negative time."""
    from vidline.parse import parse_time as parse_any_time

    try:
        seconds = parse_any_time(value)
    except ValueError as exc:
        raise ConfigError(f"bad time {value!r}: use seconds (90.5) or hh:mm:ss(.ms)") from exc
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"bad time {value!r}: must be >= 0")
    return seconds


def format_time(seconds: float) -> str:
    """``hh:mm:ss.mmm``."""
    from vidline.export.timefmt import hms_ms

    return hms_ms(seconds)


def _like_snippet(text: str, tokens: Sequence[str], width: int = 60) -> str:
    low = text.lower()
    pos = min((p for p in (low.find(t) for t in tokens) if p >= 0), default=0)
    begin = max(0, pos - width // 3)
    piece = text[begin : begin + width]
    for t in tokens:
        piece = re.sub(f"({re.escape(t)})", r"[\1]", piece, flags=re.IGNORECASE)
    return ("…" if begin else "") + piece + ("…" if begin + width < len(text) else "")


# ----------------------------------------------------------------------------------------- the index


class EventIndex:
    """An event index in one SQLite file. Use as a context manager or call ``close()``.

    >>> with EventIndex("events.db") as idx:
    ...     idx.add_timeline(timeline)
    ...     hits = idx.search("forklift", video_glob="*dock*", after=60)
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, use_fts: bool | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self._dirty = False
        if str(self.path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create index directory {self.path.parent}: {exc}") from exc
        self.fts = fts5_available() if use_fts is None else use_fts
        try:
            self._con = sqlite3.connect(str(self.path), timeout=self.BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: cannot open event index ({exc})") from exc
        try:
            self._con.execute("PRAGMA foreign_keys = ON")
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise ConfigError(f"{self.path}: cannot open event index ({exc})") from exc
        except BaseException:
            self._con.close()
            raise
        if not self.fts:
            logger.warning("SQLite has no FTS5 here: search falls back to unranked LIKE matching")

    # -- lifecycle

    def close(self) -> None:
        if self._dirty:
            # fresh statistics let the query planner pick the right index (e.g. a --video filter)
            with contextlib.suppress(sqlite3.Error), self._con:
                self._con.execute("PRAGMA analysis_limit = 1000")
                self._con.execute("ANALYZE")
        self._con.close()

    def __enter__(self) -> EventIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's write transaction

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, begun IMMEDIATE: it holds the database's write lock from its first
        read, so what it reads (is this run indexed?) cannot change before it writes. Another process
        writing at the same time waits (up to ``BUSY_TIMEOUT``) instead of failing."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"{self.path}: cannot write to the event index ({exc})") from exc
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        try:
            con.commit()
        except sqlite3.OperationalError as exc:
            con.rollback()
            raise ConfigError(f"{self.path}: cannot write to the event index ({exc})") from exc

    def _schema_version(self) -> int:
        version = int(self._con.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, 1, SCHEMA_VERSION):
            raise ConfigError(f"{self.path}: index schema version {version} is not supported "
                              "(written by a newer vidline)")
        if version == 0:
            tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "events" not in tables:
                raise ConfigError(f"{self.path}: not a vidline index (it holds other tables)")
        return version

    def _fts_state(self) -> str:
        """"ok", "missing", "old" (another definition, e.g. the version-1 table over ``events``) or
        "stale" (not the same rows as ``events``, e.g. after a session without FTS5 wrote events)."""
        row = self._con.execute("SELECT sql FROM sqlite_master WHERE name = 'events_fts'").fetchone()
        if row is None:
            return "missing"
        if "".join(str(row[0]).split()).lower() != "".join(_FTS_SCHEMA.split()).lower():
            return "old"
        events = self._con.execute("SELECT count(*), coalesce(max(id), 0) FROM events").fetchone()
        fts = self._con.execute("SELECT count(*), coalesce(max(id), 0) FROM events_fts_docsize").fetchone()
        return "ok" if tuple(events) == tuple(fts) else "stale"

    def _needs_setup(self) -> bool:
        version = self._schema_version()
        if version != SCHEMA_VERSION:
            return True
        return self.fts and self._fts_state() != "ok"

    def _setup(self) -> None:
        """Create or upgrade the schema, in one write transaction (re-checked under the write lock, so
        processes opening a new or old index at once do it once). Nothing is written when the
        index is up to date, so searching needs no write access."""
        if not self._needs_setup():
            return
        with self._write() as con:
            version = self._schema_version()
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            if self.fts:
                state = self._fts_state()
                if state != "ok":
                    if state == "old":
                        logger.info("%s: rebuilding the full-text index (CJK search)", self.path)
                    self._rebuild_fts(drop=state != "missing")
            if version != SCHEMA_VERSION:
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _rebuild_fts(self, *, drop: bool) -> None:
        """(Re)create the FTS table from the ``events`` table."""
        con = self._con
        if drop:
            con.execute("DROP TABLE events_fts")
        con.execute(_FTS_SCHEMA)
        rows = con.execute("SELECT id, label, coalesce(description, '') FROM events").fetchall()
        con.executemany(
            "INSERT INTO events_fts(rowid, label, description) VALUES(?, ?, ?)",
            ((i, fts_text(label), fts_text(desc)) for i, label, desc in rows),
        )

    # -- writing

    def add_timeline(self, timeline: Any, source: str | os.PathLike[str] | None = None) -> IndexResult:
        """Index one timeline (``Timeline``, its JSON dict, or a path to its JSON file). Idempotent."""
        if source is None and isinstance(timeline, (str, os.PathLike)):
            source = timeline
        d = timeline_to_dict(timeline)
        video = resolve_video_path(_video_path(d), source)
        if isinstance(d.get("video"), dict):
            d = {**d, "video": {**d["video"], "path": video}}
        else:
            d = {**d, "video": video}
        run_key, content_hash = run_identity(d)
        info = d.get("video") if isinstance(d.get("video"), dict) else {"path": video}
        duration = info.get("duration") if isinstance(info, dict) else None
        events = []
        for e in d["events"]:
            try:
                events.append((
                    float(e["start"]), float(e["end"]), str(e.get("label") or ""), e.get("description"),
                    None if e.get("confidence") is None else float(e["confidence"]),
                    json.dumps(e.get("windows") or []),
                ))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{source or video}: malformed event {e!r}") from exc
        with self._write() as con:
            row = con.execute("SELECT id, content_hash FROM runs WHERE run_key = ?", (run_key,)).fetchone()
            if row and row[1] == content_hash:
                n = con.execute("SELECT n_events FROM runs WHERE id = ?", (row[0],)).fetchone()[0]
                return IndexResult(row[0], "unchanged", video, n)
            con.execute(
                "INSERT INTO videos(path, name, duration, info) VALUES(?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET duration = excluded.duration, info = excluded.info",
                (video, os.path.basename(video), duration, _canonical(info)),
            )
            video_id = con.execute("SELECT id FROM videos WHERE path = ?", (video,)).fetchone()[0]
            if row:
                self._delete_run_events(row[0])
                run_id = row[0]
                con.execute(
                    "UPDATE runs SET content_hash = ?, source = ?, indexed_at = ? WHERE id = ?",
                    (content_hash, str(source) if source else None, time.time(), run_id),
                )
                status = "replaced"
            else:
                cur = con.execute(
                    "INSERT INTO runs(run_key, content_hash, video_id, query, backend, model, mode, source, "
                    "indexed_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_key, content_hash, video_id, d.get("query"), d.get("backend"), d.get("model"),
                     d.get("mode"), str(source) if source else None, time.time()),
                )
                run_id = int(cur.lastrowid or 0)
                status = "added"
            rows = [(run_id, video_id, *e) for e in events]
            self._insert_events(rows)
            con.execute("UPDATE runs SET n_events = ? WHERE id = ?", (len(rows), run_id))
        self._dirty = True
        logger.info("indexed %s: %d events (%s)", video, len(rows), status)
        return IndexResult(run_id, status, video, len(rows))

    def add_timeline_file(self, path: str | os.PathLike[str]) -> list[IndexResult]:
        """Index every timeline of a JSON file: one timeline object, or an array of them (the stdout
        of ``vidline timeline A B``). The file is read and checked before anything is indexed."""
        return [self.add_timeline(d, source=path) for d in read_timeline_file(path)]

    def add_timelines(self, timelines: Iterable[Any]) -> list[IndexResult]:
        """Index several timelines; a path may name a file holding an array of timelines."""
        out: list[IndexResult] = []
        for t in timelines:
            if isinstance(t, (str, os.PathLike)):
                out += self.add_timeline_file(t)
            else:
                out.append(self.add_timeline(t))
        return out

    def _insert_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        con = self._con
        for r in rows:
            cur = con.execute(
                'INSERT INTO events(run_id, video_id, start, "end", label, description, confidence, windows) '
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                r,
            )
            if self.fts:
                con.execute(
                    "INSERT INTO events_fts(rowid, label, description) VALUES(?, ?, ?)",
                    (cur.lastrowid, fts_text(r[4]), fts_text(r[5] or "")),
                )

    def _delete_run_events(self, run_id: int) -> None:
        con = self._con
        if self.fts:
            con.execute("DELETE FROM events_fts WHERE rowid IN (SELECT id FROM events WHERE run_id = ?)",
                        (run_id,))
        con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))

    def remove_video(self, path: str) -> int:
        """Forget a video and all its runs; returns the number of events removed."""
        with self._write() as con:
            row = con.execute("SELECT id FROM videos WHERE path = ?", (os.path.normpath(path),)).fetchone()
            if not row:
                return 0
            n = 0
            for (run_id,) in con.execute("SELECT id FROM runs WHERE video_id = ?", (row[0],)).fetchall():
                n += con.execute("SELECT count(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
                self._delete_run_events(run_id)
            con.execute("DELETE FROM runs WHERE video_id = ?", (row[0],))
            con.execute("DELETE FROM videos WHERE id = ?", (row[0],))
        return n

    # -- reading

    def stats(self) -> dict[str, int]:
        c = self._con
        return {
            "videos": c.execute("SELECT count(*) FROM videos").fetchone()[0],
            "runs": c.execute("SELECT count(*) FROM runs").fetchone()[0],
            "events": c.execute("SELECT count(*) FROM events").fetchone()[0],
        }

    def videos(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT path FROM videos ORDER BY path")]

    def prune(self) -> list[tuple[str, int]]:
        """Forget every video whose file no longer exists (deleted, or moved and indexed again under
        its new path, which left the old one's events behind): ``(path, events removed)`` of each."""
        return [(path, self.remove_video(path)) for path in self.videos() if not os.path.exists(path)]

    def search(
        self,
        query: str | None,
        *,
        video_glob: str | None = None,
        after: float | str | None = None,
        before: float | str | None = None,
        label: str | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Events matching ``query`` (all words, prefix-matched and stemmed; falls back to any word when
        no event has all of them), best first (bm25, label weighted over description). A word in CJK
        characters matches those characters anywhere in the text (in that order, adjacent); in the
        fallback, any two-character piece of it does.

        ``video_glob`` matches the video's path or file name (``*dock*``, ``cam?.mp4``). ``after`` /
        ``before`` (seconds or ``hh:mm:ss``) keep events overlapping that time range. An empty query
        lists every event in the filters, ordered by video and start time; a query of symbols only
        (an emoji, ``++``) matches them as text in the label or description.
        """
        if limit <= 0:
            raise ConfigError("limit must be positive")
        lo = parse_time(after) if after is not None else None
        hi = parse_time(before) if before is not None else None
        if lo is not None and hi is not None and hi < lo:
            raise ConfigError(f"--before ({hi:g}) is earlier than --after ({lo:g})")
        where: list[str] = []
        params: list[Any] = []
        if video_glob:
            where.append("(v.path GLOB ? OR v.name GLOB ?)")
            params += [video_glob, video_glob]
        if lo is not None:
            where.append('e."end" > ?')
            params.append(lo)
        if hi is not None:
            where.append("e.start < ?")
            params.append(hi)
        if label:
            where.append("e.label = ? COLLATE NOCASE")
            params.append(label)
        tokens = query_tokens(query or "")
        if not tokens and (query or "").strip():
            # only symbols or emoji ("🚜", "++"): no word to match, so the text itself, anywhere
            return self._like((query or "").split(), where, params, limit)
        if not tokens:
            return self._list(where, params, limit)
        if self.fts:
            # a CJK snippet of 12 tokens would be 12 characters: give it more
            width = 32 if any(has_cjk(t) for t in tokens) else 12
            hits = self._fts(fts_query(tokens), where, params, limit, width)
            if not hits and (len(tokens) > 1 or len(_CJK_RE.findall(tokens[0])) > 2):
                hits = self._fts(fts_query(tokens, any_token=True), where, params, limit, width)
            return hits
        return self._like(_like_tokens(tokens), where, params, limit)

    _SELECT = (
        'SELECT v.path, e.start, e."end", e.label, e.description, {snippet}, {score}, e.confidence, '
        "r.query, r.backend, r.model FROM {src} "
    )

    def _rows(self, sql: str, params: Sequence[Any]) -> list[SearchHit]:
        try:
            rows = self._con.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"search failed: {exc}") from exc
        return [
            SearchHit(video=r[0], start=r[1], end=r[2], label=r[3], description=r[4],
                      snippet=(r[5] or "").replace(_ZWSP, ""),
                      score=float(r[6] or 0.0), confidence=r[7], query=r[8], backend=r[9], model=r[10])
            for r in rows
        ]

    def _fts(self, match: str, where: list[str], params: list[Any], limit: int,
             width: int = 12) -> list[SearchHit]:
        sql = self._SELECT.format(
            snippet=f"snippet(events_fts, -1, '[', ']', '…', {int(width)})",
            score="-bm25(events_fts, 4.0, 1.0)",
            src="events_fts JOIN events e ON e.id = events_fts.rowid "
            "JOIN videos v ON v.id = e.video_id JOIN runs r ON r.id = e.run_id ",
        )
        sql += "WHERE events_fts MATCH ? " + "".join(f"AND {w} " for w in where)
        sql += "ORDER BY bm25(events_fts, 4.0, 1.0), v.path, e.start LIMIT ?"
        return self._rows(sql, [match, *params, limit])

    def _list(self, where: list[str], params: list[Any], limit: int) -> list[SearchHit]:
        sql = self._SELECT.format(
            snippet="coalesce(e.description, e.label)",
            score="0.0",
            src="events e JOIN videos v ON v.id = e.video_id JOIN runs r ON r.id = e.run_id ",
        )
        if where:
            sql += "WHERE " + " AND ".join(where) + " "
        sql += "ORDER BY v.path, e.start LIMIT ?"
        return self._rows(sql, [*params, limit])

    def _like(self, tokens: list[str], where: list[str], params: list[Any], limit: int) -> list[SearchHit]:
        # Unranked fallback: every token must appear in the label or description.
        conds = list(where)
        p = list(params)
        for t in tokens:
            conds.append("(e.label LIKE ? ESCAPE '\\' OR e.description LIKE ? ESCAPE '\\')")
            pat = "%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            p += [pat, pat]
        hits = self._list(conds, p, limit)
        out = []
        for h in hits:
            text = h.label + (" — " + h.description if h.description else "")
            out.append(SearchHit(h.video, h.start, h.end, h.label, h.description, _like_snippet(text, tokens),
                                 0.0, h.confidence, h.query, h.backend, h.model))
        return out


@contextlib.contextmanager
def open_index(db: str | os.PathLike[str] | None = None) -> Iterator[EventIndex]:
    idx = EventIndex(db)
    try:
        yield idx
    finally:
        idx.close()


def search(query: str | None, db: str | os.PathLike[str] | None = None, **kw: Any) -> list[SearchHit]:
    """Search the event index at ``db`` (default: ``$VIDLINE_DB`` or the user data dir)."""
    with open_index(db) as idx:
        return idx.search(query, **kw)


def index_timeline(timeline: Any, db: str | os.PathLike[str] | None = None) -> IndexResult:
    """Add one timeline to the index at ``db`` (what ``vidline timeline --index`` calls)."""
    with open_index(db) as idx:
        return idx.add_timeline(timeline)
