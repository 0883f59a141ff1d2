"""FrameFeed: frames from the decoder thread to a window's encoder thread, under a shared budget."""

from __future__ import annotations

import threading
import time

import numpy as np

from vidline.handoff import FrameFeed
from vidline.types import Frame


def _frame(t: float) -> Frame:
    return Frame(t=t, image=np.zeros((2, 2, 3), np.uint8))


def test_frames_arrive_in_order_while_the_window_is_still_decoded() -> None:
    budget = threading.Semaphore(100)
    feed = FrameFeed(budget)
    seen: list[float] = []
    took_first = threading.Event()

    def encoder() -> None:
        for f in feed:
            seen.append(f.t)
            took_first.set()

    th = threading.Thread(target=encoder)
    th.start()
    feed.put(_frame(0.0))
    assert took_first.wait(2.0)  # taken before the window is closed
    for t in (1.0, 2.0, 3.0):
        feed.put(_frame(t))
    feed.close(complete=True, slot=True)
    th.join(2.0)
    assert not th.is_alive() and seen == [0.0, 1.0, 2.0, 3.0]
    assert feed.count == 4 and feed.complete and feed.slot and feed.closed


def test_put_waits_while_the_budget_is_used_up() -> None:
    budget = threading.Semaphore(2)
    feed = FrameFeed(budget)
    feed.put(_frame(0.0))
    feed.put(_frame(1.0))
    third = threading.Thread(target=feed.put, args=(_frame(2.0),))
    third.start()
    time.sleep(0.05)
    assert third.is_alive()  # the decoder waits for the encoder
    it = iter(feed)
    assert next(it).t == 0.0  # taking a frame frees one place
    third.join(2.0)
    assert not third.is_alive() and feed.count == 3


def test_put_gives_up_waiting_when_the_run_stops() -> None:
    budget = threading.Semaphore(1)
    stop = threading.Event()
    feed = FrameFeed(budget, stop)
    feed.put(_frame(0.0))
    second = threading.Thread(target=feed.put, args=(_frame(1.0),))
    second.start()
    time.sleep(0.05)
    assert second.is_alive()  # no encoder takes frames: the decoder waits ...
    stop.set()
    second.join(2.0)
    assert not second.is_alive() and feed.count == 1  # ... until the run stops; the frame is dropped


def test_discard_gives_the_budget_back_and_drops_later_frames() -> None:
    budget = threading.Semaphore(3)
    feed = FrameFeed(budget)
    for t in (0.0, 1.0, 2.0):
        feed.put(_frame(t))
    feed.discard()
    feed.put(_frame(3.0))  # dropped, does not block
    assert list(feed) == []
    assert all(budget.acquire(blocking=False) for _ in range(3))  # all three places are free again
    feed.close(complete=False)
    feed.wait_closed()
    assert not feed.complete and not feed.slot


def test_wait_closed_blocks_until_the_decoder_closes() -> None:
    feed = FrameFeed(threading.Semaphore(1))
    done = threading.Event()

    def waiter() -> None:
        feed.wait_closed()
        done.set()

    threading.Thread(target=waiter).start()
    assert not done.wait(0.05)
    feed.close(complete=True)
    assert done.wait(2.0)
