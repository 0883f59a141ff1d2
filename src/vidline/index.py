"""A local, embedded event index: many timelines in one SQLite file, searchable by text.

The store is a single SQLite database (standard library ``sqlite3``, no server) with three tables
and a full-text index:

- ``videos``  one row per video path;
- ``runs``    one row per indexed timeline run (video + query + backend + model + mode + windows);
- ``events``  the run's events (start, end, label, description, confidence);
- ``events_fts``  an FTS5 table over label and description (porter stemming), ranked with bm25.

When the SQLite build lacks FTS5, search falls back to ``LIKE`` matching (unranked) with a warning.

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

SCHEMA_VERSION = 1
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

_FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    label, description, content='events', content_rowid='id', tokenize='porter unicode61'
);
"""

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
        try:
            d = json.loads(Path(timeline).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{timeline}: no such timeline file") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{timeline}: not a timeline JSON file ({exc})") from exc
    elif hasattr(timeline, "to_dict"):
        d = timeline.to_dict()
    else:
        raise ConfigError(f"cannot index a {type(timeline).__name__}: expected a Timeline or its JSON dict")
    if not isinstance(d, dict) or not isinstance(d.get("events"), list):
        raise ConfigError("not a timeline: expected a JSON object with an 'events' list")
    return d


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


def query_tokens(query: str) -> list[str]:
    """The words of a free-text query (punctuation and FTS operators are treated as plain text)."""
    return [t.lower() for t in _TOKEN_RE.findall(query)]


def fts_query(tokens: Sequence[str], *, any_token: bool = False, prefix: bool = True) -> str:
    """An FTS5 MATCH expression: every token quoted (so no syntax errors), prefix-matched, AND/OR-ed."""
    parts = [f'"{t}"' + ("*" if prefix else "") for t in tokens]
    return (" OR " if any_token else " ").join(parts)


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
        try:
            self._con = sqlite3.connect(str(self.path), timeout=30.0)
            self._con.execute("PRAGMA foreign_keys = ON")
            self._check_schema()
            self.fts = fts5_available() if use_fts is None else use_fts
            with self._con:
                self._con.executescript(_SCHEMA)
                if self.fts:
                    self._con.executescript(_FTS_SCHEMA)
                    self._sync_fts()
                self._con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: cannot open event index ({exc})") from exc
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

    def _check_schema(self) -> None:
        version = self._con.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise ConfigError(f"{self.path}: index schema version {version} is not supported")
        if version == 0:
            tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "events" not in tables:
                raise ConfigError(f"{self.path}: not a vidline index (it holds other tables)")

    def _sync_fts(self) -> None:
        """Rebuild the FTS index when it is out of step (e.g. events written by a no-FTS session)."""
        n_events = self._con.execute("SELECT count(*) FROM events").fetchone()[0]
        n_fts = self._con.execute("SELECT count(*) FROM events_fts_docsize").fetchone()[0]
        if n_events != n_fts:
            self._con.execute("INSERT INTO events_fts(events_fts) VALUES('rebuild')")

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
        con = self._con
        with con:
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
            rows = []
            for e in d["events"]:
                try:
                    rows.append((
                        run_id, video_id, float(e["start"]), float(e["end"]), str(e.get("label") or ""),
                        e.get("description"),
                        None if e.get("confidence") is None else float(e["confidence"]),
                        json.dumps(e.get("windows") or []),
                    ))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ConfigError(f"{source or video}: malformed event {e!r}") from exc
            self._insert_events(rows)
            con.execute("UPDATE runs SET n_events = ? WHERE id = ?", (len(rows), run_id))
        self._dirty = True
        logger.info("indexed %s: %d events (%s)", video, len(rows), status)
        return IndexResult(run_id, status, video, len(rows))

    def add_timelines(self, timelines: Iterable[Any]) -> list[IndexResult]:
        return [self.add_timeline(t) for t in timelines]

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
                    (cur.lastrowid, r[4], r[5] or ""),
                )

    def _delete_run_events(self, run_id: int) -> None:
        con = self._con
        if self.fts:
            con.execute(
                "INSERT INTO events_fts(events_fts, rowid, label, description) "
                "SELECT 'delete', id, label, coalesce(description, '') FROM events WHERE run_id = ?",
                (run_id,),
            )
        con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))

    def remove_video(self, path: str) -> int:
        """Forget a video and all its runs; returns the number of events removed."""
        con = self._con
        with con:
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
        no event has all of them), best first (bm25, label weighted over description).

        ``video_glob`` matches the video's path or file name (``*dock*``, ``cam?.mp4``). ``after`` /
        ``before`` (seconds or ``hh:mm:ss``) keep events overlapping that time range. An empty query
        lists every event in the filters, ordered by video and start time.
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
        if not tokens:
            return self._list(where, params, limit)
        if self.fts:
            hits = self._fts(fts_query(tokens), where, params, limit)
            if not hits and len(tokens) > 1:
                hits = self._fts(fts_query(tokens, any_token=True), where, params, limit)
            return hits
        return self._like(tokens, where, params, limit)

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
            SearchHit(video=r[0], start=r[1], end=r[2], label=r[3], description=r[4], snippet=r[5] or "",
                      score=float(r[6] or 0.0), confidence=r[7], query=r[8], backend=r[9], model=r[10])
            for r in rows
        ]

    def _fts(self, match: str, where: list[str], params: list[Any], limit: int) -> list[SearchHit]:
        sql = self._SELECT.format(
            snippet="snippet(events_fts, -1, '[', ']', '…', 12)",
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
