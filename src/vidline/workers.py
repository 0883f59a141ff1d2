"""Decode lanes as worker processes: each worker decodes its stretch of the video and encodes every
window's payload (an mp4 through x264, or a JPEG list) itself, and hands the run the encoded payload.

Why processes: in one process, the decoder, the encoders, the openai SDK's import and the request
threads all take turns at the GIL. PyAV releases it inside FFmpeg and x264, but every frame still
passes through Python (the frame object, the sampler, the hand-off to an encoder), and each hand-off
waits for the GIL behind the others. A worker that decodes and encodes in one thread never waits, and
two of them keep two CPUs busy while the run's process only sends requests.

The conversation over each worker's pipe (worker -> run):

* ``("next",)``: the worker is free; the run answers with the next stretch of windows
  (``WindowChunks``: contiguous runs, several per worker, handed out in time order so that a worker
  whose stretches decode faster takes more), or None: done.
* ``("spec", i)``: window ``i``'s first frame is decoded; the run answers with the window's
  ``payload.StreamSpec`` as the backend now sends it (the x264 preset follows the request slots, a
  server fallback changes the options), or None: stop.
* ``("clip", i, encoded, n_frames)``: window ``i`` is encoded (``encoded`` is None when it is over the
  data-URI limit).
* ``("failed", i, error)``: window ``i`` could not be encoded (``StalePayloadError``: the run decodes
  it again and builds its payload from the frames).
* ``("error", error)``: the decode failed; ``("end",)``: every window is done.
* ``("log", level, message)``: a record of the ``vidline`` logger (a truncated file's warning), which
  the run logs again through its own handlers (a caller's handler in this process sees it).

The pipe is the back-pressure: a worker blocks on sending a payload that the run has not taken, and
the run takes one only when a request slot is free. Workers are forked (Linux), so they need nothing
pickled but their messages, and they start in milliseconds with the modules already imported.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from vidline.allocator import tune_allocator
from vidline.errors import ConfigError, DecodeError
from vidline.log import logger
from vidline.models.payload import StreamedFrames, StreamedVideo, StreamSpec, open_stream

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from vidline.media.plan import SamplingBudget
    from vidline.types import Frame, VideoInfo, Window

NEXT, SPEC, CLIP, FAILED, ERROR, END, LOG = "next", "spec", "clip", "failed", "error", "end", "log"
WORKER_NICE = 10  # a worker's CPU priority below the run's: its requests and the SDK's import never wait for a CPU
# glibc's mmap and trim thresholds in a worker (the CLI's are 4 and 16 MB): its 720p frames (1.4 MB)
# stay on the heap, larger blocks are handed back when freed. Measured on the 720p hour: the run's
# process tree ~25 MB smaller, the same CPU (1 MB: ~37 MB smaller, ~15 % more CPU in page faults)
WORKER_MALLOC_THRESHOLD = 2 << 20
STOP_WAIT = 2.0  # seconds a stopping worker gets before it is killed

Decoder = Callable[..., Iterable[tuple[int, "Frame | None"]]]


def processes_available() -> bool:
    """Whether decode lanes can be worker processes here: forked (Linux), so a worker starts with the
    run's modules and needs nothing pickled but its messages. Elsewhere lanes are threads."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def portable(exc: BaseException) -> BaseException:
    """``exc`` when it survives pickling (vidline's errors do), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an exception class that cannot be rebuilt from its args
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def encode_windows(events: Iterable[tuple[int, Frame | None]], ask: Callable[[int], StreamSpec | None],
                   tell: Callable[[tuple[Any, ...]], None]) -> bool:
    """The worker's loop, over a ``media.stream_windows`` pass: open each window's streamed encoder at
    its first frame (``ask(i)`` for its spec; None: stop), feed it every frame, and ``tell`` each
    finished or failed window. Only the frames x264 looks ahead on are held. False when told to stop."""
    streams: dict[int, StreamedVideo | StreamedFrames] = {}
    skipped: set[int] = set()  # windows that failed: their later frames are dropped
    try:
        for i, frame in events:
            if frame is not None:
                if i in skipped:
                    continue
                stream = streams.get(i)
                if stream is None:
                    spec = ask(i)
                    if spec is None:
                        return False
                    stream = streams[i] = open_stream(spec)
                try:
                    stream.add(frame)
                except Exception as exc:
                    skipped.add(i)
                    streams.pop(i).close()
                    tell((FAILED, i, portable(exc)))
                continue
            stream = streams.pop(i, None)
            if stream is None:  # no frame came for it, or it failed
                continue
            try:
                encoded = stream.finish()
            except Exception as exc:
                tell((FAILED, i, portable(exc)))
            else:
                tell((CLIP, i, encoded, stream.n_frames))
            finally:
                stream.close()
        return True
    finally:
        for stream in streams.values():
            stream.close()


def _worker_main(conn: Connection, decoder: Decoder, path: str | os.PathLike[str], info: VideoInfo,
                 budget: SamplingBudget, pixel_format: str, threads: int, nice: int) -> None:
    """A decode worker process: take the next stretch of windows from the run (``("next",)``), decode it
    in one pass and encode its windows, until none is left; talking over ``conn``. Windows are named by
    their place in the run's list of all the stretches' windows."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle: it stops this process
    try:
        _die_with_parent()
        for end in list(_RUN_ENDS):  # the run's ends of every worker's pipe, copied by the fork: closed, so
            end.close()  # that a run that dies (SIGKILL) is an end of file here, not a pipe held open
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)
        tune_allocator(mmap=WORKER_MALLOC_THRESHOLD, trim=WORKER_MALLOC_THRESHOLD)
        gc.freeze()  # what the fork copied stays out of collections (their scans would copy its pages)
        _forward_logs(conn)
        while True:
            conn.send((NEXT,))
            chunk: tuple[int, list[Window]] | None = conn.recv()
            if chunk is None:
                conn.send((END,))
                return
            if not _encode_chunk(conn, decoder(path, chunk[1], budget, info=info, pixel_format=pixel_format,
                                               threads=threads), chunk[0]):
                return  # told to stop
    except (BrokenPipeError, EOFError):  # the run stopped listening
        pass
    except BaseException as exc:  # handed to the run, which raises it
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            conn.send((ERROR, portable(exc)))
    finally:
        conn.close()


def _encode_chunk(conn: Connection, events: Iterable[tuple[int, Frame | None]], offset: int) -> bool:
    """``encode_windows`` over one stretch's decode pass, its windows named ``offset + i``."""

    def ask(i: int) -> StreamSpec | None:
        conn.send((SPEC, offset + i))
        spec: StreamSpec | None = conn.recv()
        return spec

    def tell(message: tuple[Any, ...]) -> None:
        conn.send((message[0], offset + message[1], *message[2:]))

    try:
        return encode_windows(events, ask, tell)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


class WindowChunks:
    """Contiguous stretches of windows, handed out in time order to whichever worker asks first, so a
    worker whose stretches decode faster (a static scene) takes more of them. Thread-safe."""

    def __init__(self, chunks: Sequence[Sequence[Window]]) -> None:
        self._todo: deque[tuple[int, list[Window]]] = deque()
        offset = 0
        for chunk in chunks:
            self._todo.append((offset, list(chunk)))
            offset += len(chunk)
        self._lock = threading.Lock()

    def take(self) -> tuple[int, list[Window]] | None:
        """(place of its first window, its windows) of the next stretch; None when none is left."""
        with self._lock:
            return self._todo.popleft() if self._todo else None


# the run's end of each live worker's pipe (a worker closes its copies: see ``_worker_main``)
_RUN_ENDS: set[Connection] = set()


def _die_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM when the run's process dies (``PR_SET_PDEATHSIG``), and
    leave now if it is already gone (this process was handed to another parent)."""
    with contextlib.suppress(Exception):  # not glibc / not Linux: the closed pipe ends it anyway
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    run = multiprocessing.parent_process()
    if run is not None and os.getppid() != run.pid:
        os._exit(0)


def worker_nice() -> int:
    """The decode workers' ``nice`` increment: ``VIDLINE_WORKER_NICE``, else ``WORKER_NICE``."""
    value = os.environ.get("VIDLINE_WORKER_NICE")
    if value is None:
        return WORKER_NICE
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"VIDLINE_WORKER_NICE must be an integer, got {value!r}") from None


class _Forward(logging.Handler):
    """The worker's ``vidline`` log records, sent to the run (``("log", level, message)``)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the run stopped listening: nothing to tell
            self.conn.send((LOG, record.levelno, record.getMessage()))


def _forward_logs(conn: Connection) -> None:
    """Send the worker's records to the run instead of the handlers the fork copied."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(_Forward(conn))
    logger.propagate = False


class DecodeWorker:
    """One decode worker process, taking its stretches of windows from ``chunks``, and the run's end of
    its pipe. ``nice``: its CPU priority below the run's (``worker_nice``)."""

    def __init__(self, decoder: Decoder, path: str | os.PathLike[str], info: VideoInfo, chunks: WindowChunks,
                 budget: SamplingBudget, pixel_format: str, threads: int, name: str, nice: int = WORKER_NICE) -> None:
        self.path = path
        self.chunks = chunks
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe(duplex=True)
        _RUN_ENDS.add(self.conn)
        self.process: BaseProcess = ctx.Process(
            target=_worker_main, args=(child, decoder, path, info, budget, pixel_format, threads, nice),
            name=name, daemon=True)
        with warnings.catch_warnings():  # Python >= 3.12 warns of forking beside threads: the worker
            warnings.simplefilter("ignore", DeprecationWarning)  # imports nothing and takes no lock
            self.process.start()
        child.close()
        self.finished = False  # the worker said it is done ("end"): it exits by itself
        self.stopping = False  # ``stop`` was called: the pipe's end is no error

    def messages(self) -> Iterator[tuple[Any, ...]]:
        """The worker's messages up to ``("end",)``; an ``("error", exc)`` is raised. A worker that dies
        without saying why (killed, or a crash inside FFmpeg) is a DecodeError naming the file."""
        while True:
            try:
                message: tuple[Any, ...] = self.conn.recv()
            except (EOFError, OSError):
                if self.stopping:  # the run ended it (a stop, Ctrl-C): nothing more to say
                    return
                self.process.join(STOP_WAIT)
                code = self.process.exitcode
                raise DecodeError(self.path, f"the decoding process stopped unexpectedly (exit code {code})") from None
            if message[0] == END:
                self.finished = True
                return
            if message[0] == ERROR:
                raise message[1]
            if message[0] == LOG:
                logger.log(message[1], "%s", message[2])
                continue
            if message[0] == NEXT:
                self.reply(self.chunks.take())
                continue
            yield message

    def reply(self, answer: object) -> None:
        with contextlib.suppress(OSError):  # a worker gone: the next message says why (or that it was stopped)
            self.conn.send(answer)

    def stop(self) -> None:
        """End the worker (at once if it is still decoding; one that is done exits by itself) and close
        the pipe."""
        if self.finished:
            self.process.join(STOP_WAIT)
        self.stopping = True
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(STOP_WAIT)
        if self.process.is_alive():
            logger.debug("decode worker %s did not stop: killing it", self.process.name)
            self.process.kill()
            self.process.join()
        _RUN_ENDS.discard(self.conn)
        self.conn.close()
