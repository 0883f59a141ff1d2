"""The answer cache: keys, atomic writes, misses on corruption."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vidline.cache import CachedAnswer, WindowCache, cache_key, resolve_cache_dir, video_fingerprint
from vidline.errors import CacheError
from vidline.types import Usage

BASE = dict(fingerprint="100:abc:10.000", start=0.0, end=60.0, fps=2.0, width=336, height=252, n_frames=120,
            mode="video", identity={"backend": "openai", "model": "m", "prompt": "p"}, prompt="red car")


@pytest.mark.parametrize("change", [
    {"fingerprint": "101:abc:10.000"}, {"start": 50.0}, {"end": 61.0}, {"fps": 1.0}, {"width": 364},
    {"n_frames": 118}, {"mode": "frames"}, {"identity": {"backend": "openai", "model": "m2", "prompt": "p"}},
    {"prompt": "blue car"}, {"prompt": None},
])
def test_key_changes_with_every_part(change: dict[str, object]) -> None:
    assert cache_key(**{**BASE, **change}) != cache_key(**BASE)  # type: ignore[arg-type]


def test_key_is_stable_and_order_independent() -> None:
    k1 = cache_key(**BASE)  # type: ignore[arg-type]
    k2 = cache_key(**{**BASE, "identity": {"prompt": "p", "model": "m", "backend": "openai"}})  # type: ignore[arg-type]
    assert k1 == k2 and len(k1) == 64


def test_round_trip_and_miss(tmp_path: Path) -> None:
    c = WindowCache(tmp_path)
    assert c.get("ab" * 32) is None
    c.put("ab" * 32, CachedAnswer("[]", Usage(10, 2), 0.5))
    got = c.get("ab" * 32)
    assert got == CachedAnswer("[]", Usage(10, 2), 0.5)
    assert "ab" * 32 in c and c.keys() == ["ab" * 32]
    # no temporary files left behind
    assert [p.name for p in (tmp_path / "windows").rglob("*")] == ["ab", "ab" * 32 + ".json"]
    full = CachedAnswer("[]", Usage(1, 1), 1.0, model="m", mode="video", estimated_tokens=9, frames=12)
    c.put("ef" * 32, full)
    assert c.get("ef" * 32) == full
    (tmp_path / "windows" / "ab" / ".tmp-x1y2.json").write_text("{")  # a write cut short by a kill
    assert c.keys() == ["ab" * 32, "ef" * 32]


def test_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    c = WindowCache(tmp_path)
    c.put("cd" * 32, CachedAnswer("x"))
    path = tmp_path / "windows" / "cd" / ("cd" * 32 + ".json")
    path.write_text('{"v": 1, "te')  # a torn write (what os.replace prevents)
    assert c.get("cd" * 32) is None


def test_interrupted_put_leaves_old_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = WindowCache(tmp_path)
    c.put("ef" * 32, CachedAnswer("old"))

    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        c.put("ef" * 32, CachedAnswer("new"))
    monkeypatch.undo()
    assert c.get("ef" * 32) == CachedAnswer("old")
    assert not [p for p in (tmp_path / "windows").rglob(".tmp-*")]


def test_fingerprint_sees_content_not_name(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    a.write_bytes(b"x" * 3_000_000)
    b = tmp_path / "b.bin"
    b.write_bytes(b"x" * 3_000_000)
    assert video_fingerprint(a, 1.0) == video_fingerprint(b, 1.0)
    b.write_bytes(b"x" * 2_999_999 + b"y")  # last byte differs
    assert video_fingerprint(a, 1.0) != video_fingerprint(b, 1.0)
    assert video_fingerprint(a, 1.0) != video_fingerprint(a, 2.0)


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDLINE_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(True) == tmp_path / "env"
    assert resolve_cache_dir(False) is None
    assert resolve_cache_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("VIDLINE_CACHE_DIR")
    assert "vidline" in str(resolve_cache_dir(True))


def test_unusable_dir(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(CacheError):
        WindowCache(f)


def test_read_only_dir_is_read_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A cache directory that cannot be written (a shared mount) answers what it holds and stores
    nothing, with one warning, instead of stopping the run. (Root ignores chmod, so os.access is
    stubbed the way a read-only mount answers.)"""
    cache = WindowCache(tmp_path)
    cache.put("k1", CachedAnswer(text="[]", usage=None, time_scale=1.0))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with caplog.at_level("WARNING", logger="vidline"):
        ro = WindowCache(tmp_path)
    assert "not writable" in caplog.text and "--no-cache" in caplog.text
    assert ro.get("k1") is not None
    ro.put("k2", CachedAnswer(text="[]", usage=None, time_scale=1.0))
    assert "k2" not in ro and ro.keys() == ["k1"]


def test_a_cache_that_cannot_be_created_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A read-only file system (or a parent of someone else's) where the cache would be created: the
    run goes on without a cache, with one warning (it stopped the run)."""
    import errno as errno_

    def refuse(self: Path, *a: object, **k: object) -> None:
        raise OSError(errno_.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with caplog.at_level("WARNING", logger="vidline"):
        cache = WindowCache(tmp_path / "ro")
    assert "cannot be created" in caplog.text and not cache.writable
    assert cache.get("k") is None and "k" not in cache
    cache.put("k", CachedAnswer(text="[]", usage=None, time_scale=1.0))  # nothing, no error
    assert cache.keys() == []


def test_entries_are_readable_by_others_as_umask_allows(tmp_path: Path) -> None:
    # mkstemp's 0600 made every entry unreadable to another user sharing the cache: each of their
    # runs was all misses, sent and billed again
    from vidline.cache import _FILE_MODE

    umask = os.umask(0)
    os.umask(umask)
    assert 0o666 & ~umask == _FILE_MODE  # what open() gives a new file
    cache = WindowCache(tmp_path)
    cache.put("k1", CachedAnswer(text="[]", usage=None, time_scale=1.0))
    cache.remember_server({"base_url": "x"}, {"model": "m"})
    entries = list((tmp_path / "windows").glob("*/*.json")) + list((tmp_path / "servers").glob("*.json"))
    assert len(entries) == 2
    assert all(p.stat().st_mode & 0o777 == _FILE_MODE for p in entries)


def test_temporary_files_of_killed_writes_are_swept(tmp_path: Path) -> None:
    # a SIGKILL between the write and the rename left .tmp-*.json files for good
    cache = WindowCache(tmp_path)
    cache.put("ab12", CachedAnswer(text="[]", usage=None, time_scale=1.0))
    old_tmp = tmp_path / "windows" / "ab" / ".tmp-old.json"
    new_tmp = tmp_path / "windows" / "ab" / ".tmp-new.json"
    server_tmp = tmp_path / "servers" / ".tmp-x.json"
    server_tmp.parent.mkdir()
    for f in (old_tmp, new_tmp, server_tmp):
        f.write_text("{")
    two_hours_ago = time.time() - 7200
    for f in (old_tmp, server_tmp):
        os.utime(f, (two_hours_ago, two_hours_ago))
    os.utime(tmp_path / ".swept", (two_hours_ago - 86400,) * 2)
    WindowCache(tmp_path)
    assert not old_tmp.exists() and not server_tmp.exists()
    assert new_tmp.exists()  # a write in progress elsewhere is left alone
    assert cache.get("ab12") is not None
