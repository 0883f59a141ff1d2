"""On-disk cache of per-window model answers, so re-runs re-send nothing and killed runs resume.

One JSON file per window answer, named by a SHA-256 key over everything that decides the answer:

* the video fingerprint (size + SHA-256 of the first and last MiB + duration; no full read),
* the window (start, end),
* the sampling (fps, frame size, frame count),
* the payload mode,
* the model identity (``WindowAnalyzer.identity()``: backend, base URL, model, prompt, ...),
* the prompt / query.

Writes are atomic (temporary file in the same directory + ``os.replace``), so a run interrupted at
any moment leaves either the old entry, the new entry or none; never a half-written file. Only
answers that parsed are stored: failed windows are retried on the next run.

Location: ``cache=`` path, else ``$VIDLINE_CACHE_DIR``, else ``platformdirs.user_cache_dir("vidline")``
(``~/.cache/vidline`` on Linux), under a ``windows/`` sub-directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidline.errors import CacheError
from vidline.log import logger
from vidline.types import Usage

CACHE_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
_CHUNK = 1024 * 1024


def default_cache_dir() -> Path:
    """``$VIDLINE_CACHE_DIR`` or the platform's user cache directory for vidline."""
    env = os.environ.get("VIDLINE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vidline"))


def resolve_cache_dir(cache: bool | str | os.PathLike[str] | None) -> Path | None:
    """``True`` -> default directory, ``False``/``None`` -> no cache, a path -> that directory."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return default_cache_dir()
    return Path(cache).expanduser()


def video_fingerprint(path: str | os.PathLike[str], duration: float | None = None) -> str:
    """A cheap content fingerprint: size + hash of the first and last MiB (+ duration when known).

    Survives renames and copies (mtime is deliberately not used); changes when the file's content
    changes at either end or its length changes.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        h = hashlib.sha256()
        with p.open("rb") as f:
            h.update(f.read(_CHUNK))
            if size > _CHUNK:
                f.seek(max(_CHUNK, size - _CHUNK))
                h.update(f.read(_CHUNK))
    except OSError as exc:
        raise CacheError(f"{p}: cannot fingerprint video: {exc.strerror or exc}") from exc
    dur = "" if duration is None else f"{duration:.3f}"
    return f"{size}:{h.hexdigest()[:32]}:{dur}"


def cache_key(
    *,
    fingerprint: str,
    start: float,
    end: float,
    fps: float,
    width: int,
    height: int,
    n_frames: int,
    mode: str | None,
    identity: dict[str, Any],
    prompt: str | None,
) -> str:
    """SHA-256 hex key of the JSON of everything that decides a window's answer (pure)."""
    doc = {
        "v": CACHE_VERSION,
        "video": fingerprint,
        "window": [round(start, 3), round(end, 3)],
        "sampling": {"fps": round(float(fps), 4), "size": [width, height], "n_frames": n_frames},
        "mode": mode,
        "model": identity,
        "prompt": prompt,
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_TMP_PREFIX = ".tmp-"  # an entry being written (renamed into place when complete)

@dataclass
class CachedAnswer:
    """What is stored per window: the raw answer text, the usage and the time scale."""

    text: str
    usage: Usage | None = None
    time_scale: float = 1.0
    model: str | None = None  # the model that answered (when the config named none)
    mode: str | None = None  # the payload mode that was sent
    estimated_tokens: int | None = None  # the estimate for what was sent
    frames: int | None = None  # frames sent (fewer than planned in a window cut by a truncated file)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": CACHE_VERSION,
            "text": self.text,
            "usage": self.usage.to_dict() if self.usage else None,
            "time_scale": self.time_scale,
            "model": self.model,
            "mode": self.mode,
            "estimated_tokens": self.estimated_tokens,
            "frames": self.frames,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CachedAnswer:
        u = d.get("usage")
        usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))) if u else None
        model = d.get("model")
        mode = d.get("mode")
        return cls(text=str(d["text"]), usage=usage, time_scale=float(d.get("time_scale", 1.0)),
                   model=str(model) if model else None, mode=str(mode) if mode else None,
                   estimated_tokens=int(d["estimated_tokens"]) if d.get("estimated_tokens") is not None else None,
                   frames=int(d["frames"]) if d.get("frames") is not None else None)


class WindowCache:
    """A directory of ``<key[:2]>/<key>.json`` answer files. Thread-safe (atomic file operations)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root) / "windows"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:  # e.g. a file in the way
                raise CacheError(f"cache directory {self.root} is unusable: {exc.strerror or exc}") from exc
            # a read-only file system or a directory of someone else's: nothing to read, nothing stored,
            # and the run goes on
            self.writable = False
            logger.warning("cache directory %s cannot be created (%s): running without a cache (--cache-dir "
                           "to choose another)", self.root, exc.strerror or exc)
            return
        # a read-only cache (a shared mount, another user's directory) still answers what it holds
        self.writable = os.access(self.root, os.W_OK)
        if not self.writable:
            logger.warning("cache directory %s is not writable: answers are read from it but not stored "
                           "(--no-cache to skip it, --cache-dir to choose another)", self.root)
        else:
            self._sweep()

    def _sweep(self, *, every: float = 86400.0, older: float = 3600.0) -> None:
        """Remove temporary files that a killed write left (SIGKILL between write and rename): at
        most once a day (a marker file's age says when), those older than an hour (a write in
        progress in another process is younger)."""
        marker = self.root.parent / ".swept"
        now = time.time()
        try:
            if now - marker.stat().st_mtime < every:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        for folder in (self.root, self.root.parent / "servers"):
            for tmp in folder.glob(f"**/{_TMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    if now - tmp.stat().st_mtime > older:
                        tmp.unlink()
        with contextlib.suppress(OSError):
            marker.touch()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer, or None when missing or unreadable (a corrupt entry is a miss)."""
        path = self._path(key)
        try:
            with path.open("r", encoding="utf-8") as f:
                data = json.load(f)
            if data.get("v") != CACHE_VERSION:
                return None
            return CachedAnswer.from_dict(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.debug("ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, key: str, answer: CachedAnswer) -> None:
        """Store atomically: write a temporary file beside the target, fsync, then ``os.replace``
        (nothing in a read-only cache)."""
        self._write(self._path(key), answer.to_dict())

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        if not self.writable:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".json", dir=path.parent)
            try:
                # mkstemp makes 0600 files: a cache shared with other users must be readable by them
                os.fchmod(fd, _FILE_MODE)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            # A cache that cannot be written must not fail the run: the answer is still used.
            logger.warning("could not write cache entry %s: %s", path, exc.strerror or exc)

    # -- what a server said about itself --------------------------------------------------------

    def _server_path(self, identity: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
        return self.root.parent / "servers" / f"{digest}.json"

    def remember_server(self, identity: dict[str, Any], facts: dict[str, Any]) -> None:
        """Keep what the server of ``identity`` (a model config's identity) said about itself (served
        model, flavour, context length), so that a re-run while it is unreachable still finds the
        cached answers keyed by them. Added to what was kept before; written only when that changes."""
        stored = self.recall_server(identity) or {}
        stored.pop("seen", None)
        merged = {**stored, **facts}
        if merged == stored:
            return
        self._write(self._server_path(identity), {"v": CACHE_VERSION, "facts": merged, "seen": time.time()})

    def recall_server(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        """The facts ``remember_server`` kept for ``identity`` (with ``seen``, a Unix time), or None."""
        try:
            with self._server_path(identity).open("r", encoding="utf-8") as f:
                data = json.load(f)
            if data.get("v") != CACHE_VERSION or not isinstance(data.get("facts"), dict):
                return None
            return {**data["facts"], "seen": float(data.get("seen") or 0.0)}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.debug("ignoring unreadable server record: %s", exc)
            return None

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> list[str]:
        """The stored keys (a temporary file left by a killed write is not one)."""
        return sorted(p.stem for p in self.root.glob("*/*.json") if not p.name.startswith(_TMP_PREFIX))
