"""Finding the video files a user means (folders expand to the videos below them)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vidline.errors import ConfigError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".flv",
                              ".wmv", ".mpg", ".mpeg", ".3gp", ".h264", ".hevc"})


def find_videos(inputs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given (in order); each folder replaced by the video files below it (recursive, sorted,
    hidden files skipped). A folder holding no video file is a ConfigError."""
    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
            if not found:
                raise ConfigError(f"{item}: no video files found in this folder")
            out.extend(found)
        else:
            out.append(str(item))
    return out
