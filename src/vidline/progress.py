"""Progress reporting for long runs: windows done, tokens used, ETA (tqdm on stderr).

Works on a non-TTY (a log file, CI): tqdm then redraws less often so the log stays readable.
``enabled=False`` (``--quiet``) turns it into a no-op. One ``Progress`` can span several videos:
call :meth:`add_total` as each video's windows are planned.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """A thread-safe progress bar counting windows, with tokens used and failures as a postfix."""

    def __init__(self, total: int = 0, *, enabled: bool = True, desc: str = "windows",
                 file: TextIO | None = None) -> None:
        self.enabled = enabled
        self.tokens = 0
        self.failed = 0
        self.cached = 0
        self.done = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            stream = file if file is not None else sys.stderr
            tty = bool(getattr(stream, "isatty", lambda: False)())
            self._bar = tqdm(total=total, desc=desc, unit="win", file=stream, dynamic_ncols=tty,
                             mininterval=0.2 if tty else 5.0, leave=True, disable=False)

    def add_total(self, n: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.total = (self._bar.total or 0) + n
                self._bar.refresh()

    def set_description(self, desc: str) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.set_description_str(desc, refresh=False)

    def advance(self, *, tokens: int = 0, status: str = "ok") -> None:
        """One window finished (``status`` ok | cached | failed) having used ``tokens`` tokens."""
        with self._lock:
            self.done += 1
            self.tokens += tokens
            if status == "failed":
                self.failed += 1
            elif status == "cached":
                self.cached += 1
            if self._bar is not None:
                post = {"tokens": self.tokens}
                if self.cached:
                    post["cached"] = self.cached
                if self.failed:
                    post["failed"] = self.failed
                self._bar.set_postfix(post, refresh=False)
                self._bar.update(1)

    def update(self, n: int) -> None:
        """Advance the bar by ``n`` units without counting a window (e.g. seconds of video scanned)."""
        if self._bar is not None and n > 0:
            with self._lock:
                self._bar.update(n)

    def write(self, message: str) -> None:
        """A line on stderr that does not break the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
