"""Frames handed from the timeline's decoder thread to an encoder thread while a window is decoded.

One ``FrameFeed`` per window. The decoder ``put``s each frame as it is decoded and ``close``s the feed
after the window's last frame; the window's encoder iterates it, taking each frame as it arrives.
All feeds of a run share one semaphore, ``budget``: the frames decoded but not yet taken. When the
encoders fall behind, ``put`` blocks and the decoder waits, so memory stays flat.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from vidline.types import Frame

POLL = 0.1  # seconds between checks of a run's stop event while a thread waits


def acquire_unless_stopped(semaphore: threading.Semaphore, stop: threading.Event | None) -> bool:
    """Acquire ``semaphore``, checking ``stop`` every ``POLL`` seconds; False (not acquired) once it
    is set."""
    while not semaphore.acquire(timeout=POLL):
        if stop is not None and stop.is_set():
            return False
    return True


class FrameFeed:
    """One window's frames, from the decoder thread to the thread that encodes the window."""

    def __init__(self, budget: threading.Semaphore, stop: threading.Event | None = None) -> None:
        self._budget = budget
        self._stop = stop  # the run is stopping: a put waiting for the budget gives up
        self._cond = threading.Condition()
        self._frames: deque[Frame] = deque()
        self._closed = False
        self._discarded = False
        self.count = 0  # frames put (decoder side)
        self.complete = False  # set by close: every planned frame arrived
        self.slot = False  # set by close: the decoder holds a request slot for this window

    # -- decoder side ----------------------------------------------------------------------

    def put(self, frame: Frame) -> None:
        """Queue a frame; waits while the run's budget of queued frames is used up. Frames for a
        discarded feed, or put while the run stops, are dropped."""
        with self._cond:
            if self._discarded:
                return
        if not acquire_unless_stopped(self._budget, self._stop):
            return
        with self._cond:
            if self._discarded:
                self._budget.release()
                return
            self._frames.append(frame)
            self.count += 1
            self._cond.notify_all()

    def close(self, *, complete: bool, slot: bool = False) -> None:
        """The window has no more frames: ``complete`` when all planned frames came, ``slot`` when
        a request slot was taken for it (the encoder then gives it back or passes it on)."""
        with self._cond:
            self.complete = complete
            self.slot = slot
            self._closed = True
            self._cond.notify_all()

    # -- encoder side ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        """The frames in order as they arrive; ends when the feed is closed (or discarded) and empty."""
        while True:
            with self._cond:
                while not self._frames and not self._closed and not self._discarded:
                    self._cond.wait()
                if not self._frames:
                    return
                frame = self._frames.popleft()
            self._budget.release()
            yield frame

    def discard(self) -> None:
        """Drop the queued frames and any later ones (the encoder no longer needs them)."""
        with self._cond:
            self._discarded = True
            dropped = len(self._frames)
            self._frames.clear()
            self._cond.notify_all()
        for _ in range(dropped):
            self._budget.release()

    def wait_closed(self) -> None:
        """Block until the decoder has closed the feed."""
        with self._cond:
            while not self._closed:
                self._cond.wait()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed
