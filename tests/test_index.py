"""Event index and search: idempotent indexing, ranking, filters, FTS fallback, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidline.cli import main
from vidline.errors import ConfigError
from vidline.index import EventIndex, fts_query, parse_time, query_tokens, run_identity, search


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
