"""Event index and search: idempotent indexing, ranking, filters, FTS fallback, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vidline.cli import main
from vidline.errors import ConfigError
from vidline.index import (
    EventIndex,
    fts_query,
    index_timeline,
    parse_time,
    query_tokens,
    run_identity,
    search,
)


def timeline(path: str, events: list[tuple[float, float, str, str | None]], *, query: str | None = None,
             model: str = "qwen-ref", usage: int = 100, status: str = "ok") -> dict:
    return {
        "video": {"path": path, "duration": 600.0},
        "query": query, "backend": "openai", "model": model, "mode": "video",
        "events": [{"start": s, "end": e, "label": lab, "description": d, "confidence": None, "windows": [0]}
                   for s, e, lab, d in events],
        "windows": [{"index": 0, "start": 0.0, "end": 120.0, "frames": 8, "status": status, "error": None,
                     "estimated_tokens": 1000, "usage": {"prompt_tokens": usage, "completion_tokens": 5}}],
        "usage": {"prompt_tokens": usage, "completion_tokens": 5},
    }


DOCK = timeline("/rec/dock_cam1.mp4", [
    (10.0, 20.0, "forklift", "a yellow forklift enters the dock"),
    (65.0, 70.0, "person", "a worker walks past the forklift"),
    (300.0, 310.0, "truck", "a red truck reverses to the loading bay"),
])
GATE = timeline("/rec/gate_cam2.mp4", [
    (5.0, 8.0, "car", "a car stops at the gate"),
    (400.0, 420.0, "forklifts", "two forklifts cross the yard"),
])


@pytest.fixture
def idx(tmp_path: Path) -> EventIndex:
    i = EventIndex(tmp_path / "index.db")
    i.add_timeline(DOCK)
    i.add_timeline(GATE)
    yield i
    i.close()


@pytest.mark.parametrize("text,expected", [
    ("90", 90.0), ("90.5", 90.5), ("1:30", 90.0), ("01:02:03.5", 3723.5), ("0:00:00", 0.0), (12, 12.0),
    ("15s", 15.0),
])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["abc", "-5", "1:2:3:4", ""])
def test_parse_time_rejects(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_time(bad)


def test_query_is_sanitised_for_fts() -> None:
    toks = query_tokens('forklift AND "dock" -(x) NEAR:')
    assert toks == ["forklift", "and", "dock", "x", "near"]
    assert fts_query(["a", "b"]) == '"a"* "b"*'
    assert fts_query(["a", "b"], any_token=True) == '"a"* OR "b"*'


def test_search_ranks_label_matches_first(idx: EventIndex) -> None:
    hits = idx.search("forklift")
    # 3 events mention forklift(s): two in the label (stemming finds "forklifts"), one in a description only
    assert len(hits) == 3
    assert {(h.video, h.start) for h in hits[:2]} == {("/rec/dock_cam1.mp4", 10.0), ("/rec/gate_cam2.mp4", 400.0)}
    assert hits[2].label == "person"
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert "[forklift" in hits[0].snippet.lower()


def test_search_all_words_then_any(idx: EventIndex) -> None:
    hits = idx.search("red truck")
    assert [(h.label, h.start) for h in hits] == [("truck", 300.0)]
    # no event has both words: fall back to any word
    hits = idx.search("truck gate")
    assert {h.label for h in hits} == {"truck", "car"}
    assert idx.search("zebra") == []


def test_prefix_and_punctuation(idx: EventIndex) -> None:
    assert [h.label for h in idx.search("fork")][:1] in (["forklift"], ["forklifts"])
    assert idx.search('"forklift" AND (') != []  # operators are plain words, never syntax errors


def test_filters(idx: EventIndex) -> None:
    assert {h.video for h in idx.search("forklift", video_glob="*gate*")} == {"/rec/gate_cam2.mp4"}
    assert {h.video for h in idx.search("forklift", video_glob="dock_cam1.mp4")} == {"/rec/dock_cam1.mp4"}
    # overlap semantics: [after, before] keeps events overlapping the range
    assert sorted(h.start for h in idx.search("forklift", after="00:01:00", before=500)) == [65.0, 400.0]
    assert [h.start for h in idx.search("forklift", after=15)] != []
    assert {h.start for h in idx.search("forklift", after=15, before=16)} == {10.0}
    assert [h.start for h in idx.search("forklift", before="0:09")] == []
    assert [h.label for h in idx.search("forklift", label="PERSON")] == ["person"]
    assert len(idx.search("forklift", limit=1)) == 1
    with pytest.raises(ConfigError):
        idx.search("forklift", after=100, before=50)


def test_empty_query_lists_in_time_order(idx: EventIndex) -> None:
    hits = idx.search("", video_glob="*dock*")
    assert [h.start for h in hits] == [10.0, 65.0, 300.0]


def test_idempotent_and_replace(tmp_path: Path) -> None:
    with EventIndex(tmp_path / "i.db") as i:
        assert i.add_timeline(DOCK).status == "added"
        # same run again, with different volatile fields (usage, window status): stored once
        again = timeline("/rec/dock_cam1.mp4", [(e["start"], e["end"], e["label"], e["description"])
                                                for e in DOCK["events"]], usage=999, status="cached")
        assert i.add_timeline(again).status == "unchanged"
        assert i.stats() == {"videos": 1, "runs": 1, "events": 3}
        assert len(i.search("forklift")) == 2
        # same analysis with a changed result replaces its events
        changed = timeline("/rec/dock_cam1.mp4", [(10.0, 21.0, "forklift", "a forklift enters the dock")])
        assert i.add_timeline(changed).status == "replaced"
        assert i.stats() == {"videos": 1, "runs": 1, "events": 1}
        assert [(h.start, h.end) for h in i.search("forklift")] == [(10.0, 21.0)]
        assert i.search("worker") == []  # the replaced event is gone from the FTS index too
        # a different question on the same video is a separate run
        other = timeline("/rec/dock_cam1.mp4", [(1.0, 2.0, "door", None)], query="when does the door open?")
        assert i.add_timeline(other).status == "added"
        assert i.stats() == {"videos": 1, "runs": 2, "events": 2}
        assert i.search("door")[0].query == "when does the door open?"
        assert i.remove_video("/rec/dock_cam1.mp4") == 2
        assert i.stats() == {"videos": 0, "runs": 0, "events": 0}


def test_run_identity_ignores_volatile_fields() -> None:
    a = run_identity(DOCK)
    b = run_identity({**DOCK, "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    assert a == b
    c = run_identity({**DOCK, "model": "other"})
    assert c[0] != a[0]


def test_accepts_timeline_objects_and_files(tmp_path: Path) -> None:
    class FakeTimeline:
        def to_dict(self) -> dict:
            return GATE

    f = tmp_path / "t.json"
    f.write_text(json.dumps(DOCK))
    with EventIndex(tmp_path / "i.db") as i:
        i.add_timeline(FakeTimeline())
        i.add_timeline(f)
        assert i.stats()["runs"] == 2
        with pytest.raises(ConfigError):
            i.add_timeline({"no": "events"})
        with pytest.raises(ConfigError):
            i.add_timeline(tmp_path / "missing.json")


def test_like_fallback_without_fts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "i.db"
    with EventIndex(db, use_fts=False) as i:
        i.add_timeline(DOCK)
        i.add_timeline(GATE)
        hits = i.search("forklift")
        assert {(h.video, h.start) for h in hits} == {("/rec/dock_cam1.mp4", 10.0), ("/rec/dock_cam1.mp4", 65.0),
                                                      ("/rec/gate_cam2.mp4", 400.0)}
        assert all("[" in h.snippet for h in hits)
        assert [h.start for h in i.search("red truck")] == [300.0]
    assert "FTS5" in caplog.text
    # a later FTS-capable session rebuilds the full-text index from the events table
    with EventIndex(db) as i:
        assert len(i.search("forklift")) == 3


def test_module_search_and_env_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDLINE_DB", str(tmp_path / "env.db"))
    with EventIndex() as i:
        i.add_timeline(DOCK)
    assert (tmp_path / "env.db").exists()
    assert [h.label for h in search("truck")] == ["truck"]


def test_not_an_index(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError):
        EventIndex(bad)


def test_cli_index_and_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    t1, t2 = tmp_path / "dock.json", tmp_path / "gate.json"
    t1.write_text(json.dumps(DOCK))
    t2.write_text(json.dumps(GATE))
    assert main(["index", str(t1), str(t2), "--db", db]) == 0
    assert main(["index", str(t1), "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("added") == 2 and "unchanged" in out

    assert main(["search", "forklift", "--db", db, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["label"] in ("forklift", "forklifts")

    assert main(["search", "forklift", "--db", db, "--video", "*gate*", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("video,start,end,label,snippet") and len(lines) == 2
    assert "/rec/gate_cam2.mp4,400.0,420.0,forklifts" in lines[1]

    assert main(["search", "truck", "--db", db, "--after", "0:04:00", "--before", "0:06:00"]) == 0
    table = capsys.readouterr().out
    assert "00:05:00.000" in table and "truck" in table and "forklift" not in table

    assert main(["search", "x", "--db", db, "--after", "soon"]) == 2
    assert "bad time" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "nope.json"), "--db", db]) == 2


def test_accepts_real_timeline(tmp_path: Path) -> None:
    timeline_mod = pytest.importorskip("vidline.timeline")
    tl = timeline_mod.Timeline.from_dict(DOCK)
    with EventIndex(tmp_path / "i.db") as i:
        assert i.add_timeline(tl).status == "added"
        assert i.add_timeline(DOCK).status == "unchanged"  # the object and its JSON are the same run
        hit = i.search("truck")[0]
    assert (hit.video, hit.start, hit.end, hit.label) == ("/rec/dock_cam1.mp4", 300.0, 310.0, "truck")


def test_relative_video_paths_are_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "cam.mp4").write_bytes(b"x")
    tl = folder / "cam.json"
    tl.write_text(json.dumps(timeline("cam.mp4", [(1.0, 2.0, "door", None)])))
    monkeypatch.chdir(tmp_path)
    with EventIndex(tmp_path / "i.db") as i:
        assert i.add_timeline(tl).video == str(folder / "cam.mp4")  # found next to the timeline file
        monkeypatch.chdir(folder)
        # the same run seen from the video's folder (relative to the cwd) is the same run
        assert i.add_timeline(timeline("cam.mp4", [(1.0, 2.0, "door", None)])).status == "unchanged"
        assert i.add_timeline(timeline("gone.mp4", [(1.0, 2.0, "door", None)])).video == "gone.mp4"


def test_a_moved_results_folder_finds_its_video(tmp_path: Path) -> None:
    """An absolute stored path that no longer exists: the video of that name beside the timeline."""
    from vidline.index import resolve_video_path

    old, new = tmp_path / "A", tmp_path / "B"
    new.mkdir()
    (new / "cam.mp4").write_bytes(b"x")
    (new / "cam.json").write_text("{}")
    assert resolve_video_path(str(old / "cam.mp4"), new / "cam.json") == str(new / "cam.mp4")
    assert resolve_video_path(str(old / "gone.mp4"), new / "cam.json") == str(old / "gone.mp4")


# ----------------------------------------------------------------------------------------- CJK search (D1)

ZH = timeline("/rec/zh_dock.mp4", [
    (10.0, 20.0, "叉车进入码头", "一辆黄色叉车从左侧驶入码头"),
    (30.0, 35.0, "红色方块 red square", None),
    (40.0, 45.0, "工人", "工人在仓库门口等待卡车"),
    (50.0, 55.0, "forklift", "叉车sign on the wall"),
    (60.0, 65.0, "フォークリフトが入る", "倉庫の入り口"),
    (70.0, 75.0, "지게차가 도착", None),
])


@pytest.fixture
def zh_idx(tmp_path: Path) -> EventIndex:
    i = EventIndex(tmp_path / "zh.db")
    i.add_timeline(ZH)
    i.add_timeline(DOCK)
    yield i
    i.close()


@pytest.mark.parametrize("query,starts", [
    ("叉车", {10.0, 50.0}),             # start of a CJK run (worked before)
    ("码头", {10.0}),                   # end of a run
    ("进入", {10.0}),                   # middle of a run
    ("叉车进入码头", {10.0}),           # the whole label
    ("车进", {10.0}),                   # any substring, across "words"
    ("码", {10.0}),                     # one character
    ("方块", {30.0}),                   # CJK then Latin in one label
    ("红色方块", {30.0}),
    ("方块 red", {30.0}),               # mixed query: all words
    ("方块red", {30.0}),                # no space between CJK and Latin in the query
    ("red squ", {30.0}),                # Latin prefix matching next to CJK
    ("sign", {50.0}),                   # Latin directly after CJK in the text
    ("门口", {40.0}),                   # description only
    ("卡车 工人", {40.0}),              # two CJK words, both required
    ("リフト", {60.0}),                 # katakana inside a run
    ("入り口", {60.0}),                 # kanji + hiragana
    ("게차", {70.0}),                   # hangul inside a word
    ("码头 zebra", {10.0}),             # no event has both words: any word
    ("白色叉车", {10.0, 50.0}),         # no event has the phrase: any two-character piece (叉车)
    ("黄色的叉车", {10.0, 50.0}),
    ("码头仓库", {10.0, 40.0}),
    ("白色", set()),                    # two characters are one piece: no fallback
    ("zebra", set()),
])
def test_cjk_substrings_are_found(zh_idx: EventIndex, query: str, starts: set[float]) -> None:
    hits = zh_idx.search(query)
    assert {h.start for h in hits if h.video == "/rec/zh_dock.mp4"} == starts


def test_latin_search_next_to_cjk_events(zh_idx: EventIndex) -> None:
    hits = zh_idx.search("forklift")
    assert {(h.video, h.start) for h in hits} == {
        ("/rec/dock_cam1.mp4", 10.0), ("/rec/dock_cam1.mp4", 65.0), ("/rec/zh_dock.mp4", 50.0)}
    assert zh_idx.search('"码头" AND (') != []  # operators and quotes stay plain text


def test_cjk_snippets_and_ranking(zh_idx: EventIndex) -> None:
    hits = zh_idx.search("码头")
    assert len(hits) == 1
    assert "\u200b" not in hits[0].snippet  # the segmentation marks never show
    assert "[码头]" in hits[0].snippet
    assert hits[0].label == "叉车进入码头"
    # a label match ranks above a description-only match
    hits = zh_idx.search("叉车")
    assert [h.start for h in hits] == [10.0, 50.0]
    assert hits[0].score > hits[1].score
    # the fallback ranks events holding more of the query's pieces first (黄色 + 叉车 before 叉车)
    assert [h.start for h in zh_idx.search("黄色的叉车")] == [10.0, 50.0]


def test_cjk_query_helpers() -> None:
    assert query_tokens("码头 red") == ["码头", "red"]
    assert fts_query(["码头"]) == '"码 头"'
    assert fts_query(["方块red"]) == '"方 块 red"*'
    assert fts_query(["red", "码头"], any_token=True) == '"red"* OR "码 头"'


def test_cjk_like_fallback(tmp_path: Path) -> None:
    with EventIndex(tmp_path / "i.db", use_fts=False) as i:
        i.add_timeline(ZH)
        assert {h.start for h in i.search("码头")} == {10.0}
        assert {h.start for h in i.search("方块red")} == {30.0}


def _old_style_db(path: Path) -> None:
    """An index written by vidline <= 0.x: FTS5 external-content table over events, user_version 1."""
    import sqlite3

    from vidline.index import _SCHEMA

    con = sqlite3.connect(path)
    con.executescript(_SCHEMA)
    con.executescript("CREATE VIRTUAL TABLE events_fts USING fts5(label, description, content='events', "
                      "content_rowid='id', tokenize='porter unicode61');")
    con.execute("INSERT INTO videos(id, path, name) VALUES(1, '/rec/zh_dock.mp4', 'zh_dock.mp4')")
    con.execute("INSERT INTO runs(id, run_key, content_hash, video_id, indexed_at) VALUES(1, 'k', 'h', 1, 0)")
    for i, (label, desc) in enumerate([("叉车进入码头", "黄色叉车"), ("forklift", "a forklift enters")], 1):
        con.execute('INSERT INTO events(id, run_id, video_id, start, "end", label, description) '
                    "VALUES(?, 1, 1, ?, ?, ?, ?)", (i, i * 10.0, i * 10.0 + 5, label, desc))
        con.execute("INSERT INTO events_fts(rowid, label, description) VALUES(?, ?, ?)", (i, label, desc))
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()


def test_old_index_is_upgraded_on_open(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _old_style_db(db)
    with EventIndex(db) as i:
        assert [h.start for h in i.search("码头")] == [10.0]
        assert [h.start for h in i.search("forklift")] == [20.0]
        assert i.stats() == {"videos": 1, "runs": 1, "events": 2}
        i.add_timeline(ZH)  # writing after the upgrade works
        assert len(i.search("码头")) == 2  # the old event and the new one
    with EventIndex(db) as i:  # the upgrade happened once: the next open finds the index up to date
        assert not i._needs_setup()
        assert i._con.execute("PRAGMA user_version").fetchone()[0] == 2
        assert len(i.search("叉车")) == 3


# ----------------------------------------------------------------------------------------- concurrency (D3)


def _index_worker(db: str, timelines: list[dict], barrier: Any, out: Any) -> None:
    try:
        barrier.wait(timeout=60)
        with EventIndex(db) as i:
            statuses = [i.add_timeline(t).status for t in timelines[::2]]
        # the rest one by one, opening the index each time (what `vidline timeline --index` does)
        statuses += [index_timeline(t, db).status for t in timelines[1::2]]
        out.put(statuses)
    except BaseException as exc:  # reported to the test, never lost in a child's stderr
        out.put(f"{type(exc).__name__}: {exc}")


def _many(n: int, prefix: str) -> list[dict]:
    return [timeline(f"/rec/{prefix}{k:03d}.mp4", [(1.0, 2.0, "forklift", f"{prefix} event {k}"),
                                                  (3.0, 4.0, "叉车进入码头", None)]) for k in range(n)]


def test_concurrent_indexing_same_and_different_runs(tmp_path: Path) -> None:
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    db = str(tmp_path / "race.db")
    shared = _many(40, "same")
    jobs = [shared, shared, shared, shared + _many(10, "own_a"), _many(20, "own_b")]
    barrier = ctx.Barrier(len(jobs))
    out = ctx.Queue()
    procs = [ctx.Process(target=_index_worker, args=(db, job, barrier, out)) for job in jobs]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    errors = [r for r in results if isinstance(r, str)]
    assert errors == []
    statuses = [s for r in results for s in r]
    # each of the 40 shared runs is added by exactly one process, "unchanged" for the three others
    assert statuses.count("added") == 40 + 10 + 20
    assert statuses.count("unchanged") == 3 * 40
    assert "replaced" not in statuses
    with EventIndex(db) as i:
        assert i.stats() == {"videos": 70, "runs": 70, "events": 140}
        assert len(i.search("码头", limit=500)) == 70
        assert len(i.search("forklift", limit=500)) == 70


def test_cli_index_concurrent_processes(tmp_path: Path) -> None:
    """Three `vidline index` commands on the same files at once: no traceback, every file indexed."""
    import subprocess
    import sys

    files = []
    for k, t in enumerate(_many(30, "cli")):
        f = tmp_path / f"t{k}.json"
        f.write_text(json.dumps(t))
        files.append(str(f))
    db = str(tmp_path / "race.db")
    cmd = [sys.executable, "-m", "vidline", "index", *files, "--db", db]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outs]
    assert not any("Traceback" in err for _, err in outs)
    lines = [line for out, _ in outs for line in out.splitlines()]
    assert len(lines) == 90
    assert sum(line.startswith("added") for line in lines) == 30
    with EventIndex(db) as i:
        assert i.stats()["runs"] == 30


# ----------------------------------------------------------------------------------------- arrays (D5)


def test_index_a_json_array_of_timelines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([DOCK, GATE]))  # what `vidline timeline A B` prints
    db = str(tmp_path / "a.db")
    assert main(["index", str(arr), "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("added") == 2 and "dock_cam1.mp4" in out and "gate_cam2.mp4" in out
    with EventIndex(db) as i:
        assert i.stats() == {"videos": 2, "runs": 2, "events": 5}
        assert [r.status for r in i.add_timeline_file(arr)] == ["unchanged", "unchanged"]
        assert [r.status for r in i.add_timelines([arr, ZH])] == ["unchanged", "unchanged", "added"]
    # from stdin
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([DOCK, ZH])))
    assert main(["index", "-", "--db", db]) == 0
    assert capsys.readouterr().out.count("unchanged") == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(GATE)))  # a single object from stdin
    assert main(["index", "-", "--db", db]) == 0
    assert "unchanged" in capsys.readouterr().out
    # an empty array (no timeline could be made) indexes nothing, without error
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert main(["index", str(empty), "--db", db]) == 0
    # an array with a non-timeline element is refused as a whole, naming the element
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([DOCK, {"no": "events"}]))
    with EventIndex(db) as i, pytest.raises(ConfigError, match=r"bad.json\[1\]"):
        i.add_timeline_file(bad)


def test_cli_index_reports_a_bad_file_and_indexes_the_rest(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    good1, bad, good2 = tmp_path / "g1.json", tmp_path / "bad.json", tmp_path / "g2.json"
    good1.write_text(json.dumps(DOCK))
    bad.write_text("{not json")
    good2.write_text(json.dumps(GATE))
    db = str(tmp_path / "b.db")
    assert main(["index", str(good1), str(bad), str(good2), "--db", db]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("added") == 2
    assert "bad.json" in captured.err and captured.err.count("error") == 1
    with EventIndex(db) as i:
        assert i.stats()["runs"] == 2


def test_table_aligns_wide_characters() -> None:
    from vidline.cli.search import display_width, format_table

    table = format_table(["label", "x"], [["叉车进入码头", "1"], ["forklift", "2"]]).splitlines()
    assert len({display_width(line[: line.index(x)]) for line, x in zip(table[2:], "12", strict=True)}) == 1
    clipped = format_table(["l"], [["码" * 40]], max_width=10).splitlines()[2]
    assert display_width(clipped) <= 10 and clipped.endswith("…")


def test_an_array_with_a_bad_event_indexes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the bad event is in the second element: the first was once committed before it was found
    broken = json.loads(json.dumps(GATE))
    del broken["events"][1]["end"]
    both = tmp_path / "both.json"
    both.write_text(json.dumps([DOCK, broken]))
    db = str(tmp_path / "c.db")
    assert main(["index", str(both), "--db", db]) == 2
    err = capsys.readouterr().err
    assert "both.json[1]: event 1: 'end' must be a finite number (missing)" in err
    with EventIndex(db) as i:
        assert i.stats()["events"] == 0


@pytest.mark.parametrize(("query", "labels"), [("🚜", ["tractor 🚜"]), ("++", ["c++ build"]), ("?", []),
                                              ("🚜 ++", [])])
@pytest.mark.parametrize("fts", [True, False])
def test_a_query_of_symbols_matches_them_as_text(tmp_path: Path, query: str, labels: list[str], fts: bool) -> None:
    # a query with no word once listed every event, as if it matched
    with EventIndex(tmp_path / "s.db", use_fts=fts) as i:
        i.add_timeline(timeline("/rec/farm.mp4", [(1.0, 2.0, "tractor 🚜", None), (3.0, 4.0, "c++ build", None),
                                                  (5.0, 6.0, "cow", "grazing")]))
        assert [h.label for h in i.search(query)] == labels


def test_prune_forgets_videos_whose_file_is_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept, gone = tmp_path / "kept.mp4", tmp_path / "gone.mp4"
    kept.write_bytes(b"x")
    gone.write_bytes(b"x")
    db = str(tmp_path / "p.db")
    with EventIndex(db) as i:
        i.add_timeline(timeline(str(kept), [(1.0, 2.0, "forklift", None)]))
        i.add_timeline(timeline(str(gone), [(1.0, 2.0, "forklift", None), (5.0, 6.0, "truck", None)]))
    gone.unlink()  # deleted, or moved and indexed again under its new path
    assert main(["index", "--prune", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "gone.mp4" in out and "kept.mp4" not in out
    with EventIndex(db) as i:
        assert i.videos() == [str(kept)] and [h.video for h in i.search("forklift")] == [str(kept)]
    assert main(["index", "--db", db]) == 2  # nothing to do
    assert "--prune" in capsys.readouterr().err
