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
        self._desc = desc
        self._unit = "win"
        self._file = file
        self._total = total
        self._closed = False
        self._tty = False

    def _ensure_bar(self) -> Any:
        """The tqdm bar, created on first use (so messages logged while planning come before it)."""
        if self._bar is None and self.enabled and not self._closed:
            from tqdm import tqdm

            stream = self._file if self._file is not None else sys.stderr
            tty = bool(getattr(stream, "isatty", lambda: False)())
            self._tty = tty
            self._bar = tqdm(total=self._total, desc=self._desc, unit=self._unit, file=stream, dynamic_ncols=tty,
                             mininterval=0.2 if tty else 5.0, leave=True)
        return self._bar

    def add_total(self, n: int, *, unit: str | None = None) -> None:
        """Announce ``n`` more units of work (windows, or seconds of video with ``unit="s"``)."""
        with self._lock:
            if unit and self._bar is None:
                self._unit = unit
            self._total += n
            bar = self._ensure_bar()
            if bar is not None:
                bar.total = self._total
                if self._tty:  # a log (non-TTY) gets a line per refresh: the next update says it
                    bar.refresh()

    def set_description(self, desc: str) -> None:
        with self._lock:
            self._desc = desc
            if self._bar is not None:
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
            if self._ensure_bar() is not None:
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
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
