"""The one orchestrator behind ``vidline timeline`` and ``vidline.analyze()``.

Model path, in order:

1. probe the video;
2. plan the windows and each window's sampling (pure; no decoding yet);
3. answer windows from the cache (no decoding, no request for those);
4. decode the missing windows in one streaming pass per decode lane (``media.stream_windows``;
   planar yuv420p frames when the payload is an mp4, so x264 needs no colour conversion). The
   windows are cut into contiguous stretches of the video decoded side by side (``decode_lanes``);
5. encode each window's payload while it is decoded (an mp4 takes each frame as it comes, so a
   window's frames are never all held), and send the payloads from a pool of ``concurrency``
   request threads while decoding continues. On Linux each lane is a forked worker process that
   decodes and encodes (``vidline.workers``: neither waits for the GIL of the process that sends);
   elsewhere (or ``processes=False``) a lane is a decoder thread feeding encoder threads. Memory is
   bounded: the frames a lane holds (a worker only x264's; a thread lane about the windows'
   overlap, waiting for an encoder) and the windows between the end of their decoding and a
   finished request (``concurrency`` + ``prefetch``, holding only their small encoded payload).
   Decoding pauses when the server is slower than the decoders; a request slot that frees up finds
   its next payload ready;
6. parse each answer (``WindowAnalyzer.to_events``), store it in the cache (atomic write);
7. merge the events of all windows (``merge.merge_events``) into a :class:`~vidline.timeline.Timeline`.

A window that fails after the backend's retries (or whose answer cannot be parsed) is recorded with
status ``failed`` and a one-line error; the others continue. An :class:`AuthenticationError` stops
the run at once. Ctrl-C stops decoding; answers already received are in the cache.

Without a model (``backend="motion"``, or ``"auto"`` with nothing configured) the offline motion
detector (:mod:`vidline.motion`) makes the timeline.
"""

from __future__ import annotations

import bisect
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vidline.cache import CachedAnswer, WindowCache, cache_key, resolve_cache_dir, video_fingerprint
from vidline.errors import (
    AnswerParseError,
    AuthenticationError,
    BackendError,
    ConfigError,
    DecodeError,
    ServerError,
    ServerUnreachableError,
    StalePayloadError,
    VidlineError,
    require_number,
)
from vidline.handoff import POLL, FrameFeed, acquire_unless_stopped
from vidline.log import logger
from vidline.models.base import warm_up_in_background
from vidline.models.config import ModelConfig, resolve_model_config
from vidline.motion import MotionParams
from vidline.progress import Progress
from vidline.types import Event, Frame, Usage, VideoInfo, Window, WindowRecord

if TYPE_CHECKING:
    from vidline.handoff import FrameFeed
    from vidline.media.plan import SamplingBudget, SamplingPlan
    from vidline.media.sampler import WindowFrames
    from vidline.models.window import WindowAnalyzer
    from vidline.scenes import SceneParams
    from vidline.timeline import Timeline
    from vidline.workers import DecodeWorker

_T = TypeVar("_T")
AUTO_LANES = 2  # parallel decoders at most by default (each adds a decoder and an x264 instance)
MIN_WINDOWS_PER_LANE = 4
CHUNKS_PER_WORKER = 4  # stretches per decode worker process, handed out as workers become free
ENCODE_COST = 5.0  # x264 (superfast) CPU per pixel sent / H.264 decoding CPU per pixel decoded (measured)
BASE_MB = 125  # the libraries (numpy, PyAV, openai, dashscope: ~121 MB imported), one decoder and x264
LANE_MB = 60  # a further decode lane's decoder and x264 instance (measured: 720p source, 1008x560 clips)
BUDGET_SLACK = 8  # frames a decoder may run ahead of its encoders beyond the windows' overlap

NO_MODEL_HELP = (
    "no model is configured: pass --base-url URL (or set OPENAI_BASE_URL) for an OpenAI-compatible "
    "server such as vLLM, or set DASHSCOPE_API_KEY for DashScope; add --model NAME if the server has several"
)
_MODEL_OPTIONS = ("base_url", "api_key", "model", "mode", "server", "burn_timestamps", "timeout", "retry",
                  "max_tokens", "system_prompt", "language", "temperature", "seed")
_MOTION_OPTIONS = ("threshold", "min_event", "merge_gap", "pre", "post", "motion_fps", "motion_width",
                   "motion_method", "roi")
_SCENE_OPTIONS = ("scene_threshold", "min_scene")
OFFLINE_BACKENDS = ("motion", "scenes")


# --------------------------------------------------------------------------------------------------
# options and backend selection


@dataclass(frozen=True)
class RunOptions:
    """How a model run plans and sends its windows."""

    window: float | None = None  # None: media.plan_windows' default
    overlap: float | None = None
    fps: float | str = "auto"
    max_frames: int | None = None
    concurrency: int = 4
    queue: int | None = None  # payloads encoded ahead of a free request slot (--prefetch); None: concurrency
    cache_dir: Path | None = None
    decoders: int | None = None  # parallel decoders, each over its own stretch of the video; None: auto
    processes: bool = True  # decode lanes as worker processes where the platform forks (else threads)

    @property
    def prefetch(self) -> int:
        return self.concurrency if self.queue is None else self.queue

    def validate(self) -> None:
        require_number("--concurrency", self.concurrency, minimum=1, integer=True)
        if self.queue is not None:
            require_number("--prefetch", self.queue, minimum=0, integer=True)
        if self.decoders is not None:
            require_number("--decoders", self.decoders, minimum=1, integer=True)
        if not isinstance(self.processes, bool):
            raise ConfigError(f"processes must be True or False, got {self.processes!r}")
        if self.window is not None:
            require_number("--window", self.window, above=0)
        if self.overlap is not None:
            require_number("--overlap", self.overlap, minimum=0)
        if self.max_frames is not None:
            require_number("--max-frames", self.max_frames, minimum=2, integer=True)
        if isinstance(self.fps, str):
            if self.fps != "auto":
                raise ConfigError(f"--fps must be 'auto' or a number, got {self.fps!r}")
        else:
            require_number("--fps", self.fps, above=0)


def check_inputs(path: object, query: object) -> None:
    """ConfigError unless ``path`` is a path (str or os.PathLike) and ``query`` a string or None."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"the video must be a path (str or os.PathLike), got {type(path).__name__}")
    if query is not None and not isinstance(query, str):
        raise ConfigError(f"query must be a string or None, got {type(query).__name__}")


def select_model(config: ModelConfig | None, backend: str, query: str | None,
                 model_options: dict[str, Any]) -> ModelConfig | None:
    """The model to use, or None for the offline motion backend (see module doc)."""
    if config is None:
        config = resolve_model_config(backend, **model_options)
    elif model_options:
        config = config.with_(**{k: v for k, v in model_options.items() if v is not None})
    if config is not None:
        return config
    if query:
        if backend in OFFLINE_BACKENDS:
            raise ConfigError(f"the {backend} backend cannot answer a --query; " + NO_MODEL_HELP)
        raise ConfigError("--query needs a model; " + NO_MODEL_HELP)
    if backend == "auto":
        logger.warning("no model configured; using the offline motion backend (--backend motion). "
                       "To use a model pass --base-url/--model or set OPENAI_BASE_URL or DASHSCOPE_API_KEY")
    return None


def _analysis_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options both offline detectors take: analysis rate and width, and the regions watched."""
    from vidline.motion import regions

    kw: dict[str, Any] = {}
    if options.get("motion_fps") is not None:
        kw["fps"] = options["motion_fps"]
    if options.get("motion_width") is not None:
        kw["width"] = options["motion_width"]
    if options.get("roi"):
        kw["roi"] = regions(options["roi"])
    return kw


def _scene_params(options: dict[str, Any]) -> SceneParams:
    from vidline.scenes import SceneParams

    kw = _analysis_options(options)
    if options.get("scene_threshold") is not None:
        kw["threshold"] = options["scene_threshold"]
    if options.get("min_scene") is not None:
        kw["min_scene"] = options["min_scene"]
    params = SceneParams(**kw)
    params.validate()
    return params


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], MotionParams]:
    unknown = set(options) - set(_MODEL_OPTIONS) - set(_MOTION_OPTIONS) - set(_SCENE_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown option(s) for analyze(): {', '.join(sorted(unknown))}")
    model_opts = {k: options[k] for k in _MODEL_OPTIONS if options.get(k) is not None}
    motion_kw = {k: options[k] for k in ("threshold", "min_event", "merge_gap", "pre", "post")
                 if options.get(k) is not None}
    motion_kw.update(_analysis_options(options))
    if options.get("motion_method") is not None:
        motion_kw["method"] = options["motion_method"]
    params = MotionParams(**motion_kw)
    params.validate()
    return model_opts, params


def _progress_for(progress: bool | Progress) -> tuple[Progress, bool]:
    """(reporter, owned): a caller-supplied Progress is shared (e.g. one bar over several videos)."""
    if isinstance(progress, Progress):
        return progress, False
    return Progress(enabled=bool(progress)), True


# --------------------------------------------------------------------------------------------------
# public API


def analyze(
    path: str | os.PathLike[str],
    query: str | None = None,
    *,
    config: ModelConfig | None = None,
    backend: str = "auto",
    window: float | None = None,
    overlap: float | None = None,
    fps: float | str = "auto",
    max_frames: int | None = None,
    concurrency: int = 4,
    cache: bool | str | Path = True,
    progress: bool | Progress = False,
    prefetch: int | None = None,
    decoders: int | None = None,
    processes: bool = True,
    **options: Any,
) -> Timeline:
    """Find the events of a video (matching ``query`` when given) and return a merged Timeline.

    ``options``: model settings (``base_url``, ``api_key``, ``model``, ``mode``, ...; used when
    ``config`` is None, else they override it), motion settings (``threshold``, ``min_event``,
    ``merge_gap``, ``pre``, ``post``, ``motion_fps``, ``motion_width``, ``motion_method``
    "background" | "diff", ``roi``: regions watched, ``(x, y, w, h)`` fractions or pixels, or a list of
    them; also for scenes) and, with
    ``backend="scenes"``, scene settings (``scene_threshold``, ``min_scene``; ``motion_fps`` and
    ``motion_width`` set its analysis rate and width too). ``prefetch``: window payloads
    encoded ahead of a free request slot (default: ``concurrency``; each holds only its encoded payload).
    ``decoders``: parallel decoders, each over its own stretch of the video (default: one per CPU, at
    most 2, with at least 4 windows each). ``processes``: on Linux each decoder is a forked worker
    process that also encodes its windows' payloads (no GIL shared with the requests); False keeps
    them threads of this process (a program that must not fork).
    Raises ConfigError, VideoError, AuthenticationError, CacheError; other window failures are
    recorded in the Timeline (``timeline.partial``).
    """
    check_inputs(path, query)
    model_opts, motion_params = _split_options(options)
    run_opts = RunOptions(window=window, overlap=overlap, fps=fps, max_frames=max_frames,
                          concurrency=concurrency, queue=prefetch, cache_dir=resolve_cache_dir(cache),
                          decoders=decoders, processes=processes)
    run_opts.validate()
    cfg = select_model(config, backend, query, model_opts)
    reporter, owned = _progress_for(progress)
    try:
        if cfg is None:
            ignored = [name for name, value in (("window", window), ("overlap", overlap), ("max_frames", max_frames),
                                                ("fps", None if fps == "auto" else fps)) if value is not None]
            detector = "scenes" if backend == "scenes" else "motion"
            if ignored:
                logger.warning("the %s backend samples on its own (motion_fps, motion_width); it ignores %s",
                               detector, ", ".join(ignored))
            if detector == "scenes":
                return analyze_scenes(path, _scene_params(options), progress=reporter)
            return analyze_motion(path, motion_params, progress=reporter)
        return ModelRun(path, query, cfg.with_(concurrency=concurrency), run_opts, reporter).execute()
    finally:
        if owned:
            reporter.close()


def analyze_motion(path: str | os.PathLike[str], params: MotionParams | None = None, *,
                   progress: Progress | None = None) -> Timeline:
    """The offline motion timeline (no model, no network)."""
    from vidline.motion import motion_scores, segment_scores

    motion = params or MotionParams()
    motion.validate()

    def run(info: VideoInfo, tick: Callable[[float], None]) -> tuple[int, list[Event]]:
        times, scores = motion_scores(path, motion, src_width=info.display_width, src_height=info.display_height,
                                      duration=info.duration, on_frame=tick)
        return len(times), segment_scores(times, scores, motion, duration=info.duration)

    return _offline_timeline(path, "motion", run, progress)


def analyze_scenes(path: str | os.PathLike[str], params: SceneParams | None = None, *,
                   progress: Progress | None = None) -> Timeline:
    """The offline scene timeline: shots or slides as ``scene`` events (no model, no network)."""
    from vidline.scenes import SceneParams, find_cuts, scene_changes, scene_events

    scenes = params or SceneParams()
    scenes.validate()

    def run(info: VideoInfo, tick: Callable[[float], None]) -> tuple[int, list[Event]]:
        times, changes = scene_changes(path, scenes, src_width=info.display_width, src_height=info.display_height,
                                       duration=info.duration, on_frame=tick)
        return len(times), scene_events(find_cuts(times, changes, scenes), info.duration, scenes)

    return _offline_timeline(path, "scenes", run, progress)


def _offline_timeline(path: str | os.PathLike[str], backend: str,
                      run: Callable[[VideoInfo, Callable[[float], None]], tuple[int, list[Event]]],
                      progress: Progress | None) -> Timeline:
    """A timeline of one offline detector's pass over the video (progress in seconds of video)."""
    from vidline.media.probe import probe
    from vidline.timeline import Timeline

    info = probe(path)
    seconds = max(1, round(info.duration))
    done = [0]

    def tick(t: float) -> None:
        if progress is not None and int(t) > done[0]:
            progress.update(min(seconds, int(t)) - done[0])
            done[0] = min(seconds, int(t))

    if progress is not None:
        progress.set_description(backend)
        progress.add_total(seconds, unit="s")
    n_frames, events = run(info, tick)
    if progress is not None:
        progress.update(seconds - done[0])
    for ev in events:
        ev.windows = [0]
    record = WindowRecord(index=0, start=0.0, end=info.duration, frames=n_frames, status="ok")
    return Timeline(video=_video_dict(path, info), query=None, backend=backend, model=None, mode=None,
                    events=events, windows=[record], usage=Usage())


def _no_such_model(exc: ServerError) -> bool:
    """A 404 (no such model or route: a wrong --model, a base URL without /v1) or a model the server
    says it does not have: every window would fail the same way."""
    from vidline.models.retry import NO_SUCH_MODEL

    return exc.status == 404 or bool(NO_SUCH_MODEL.search(str(exc)))


def _too_few_frames(path: str | os.PathLike[str], job: WindowJob) -> DecodeError:
    return DecodeError(path, f"window {job.window.index} [{job.window.start:.1f}-{job.window.end:.1f} s] has fewer "
                             "than 2 decodable frames (file truncated or damaged)")


def _video_dict(path: str | os.PathLike[str], info: VideoInfo) -> dict[str, Any]:
    return {
        "path": os.path.abspath(path),  # a saved timeline then finds its video from any directory
        "duration": round(info.duration, 3),
        "width": info.display_width,
        "height": info.display_height,
        "fps": round(info.fps, 3),
        "codec": info.codec,
        "container": info.container,
        "size_bytes": info.size_bytes,
    }


# --------------------------------------------------------------------------------------------------
# the model run


@dataclass
class WindowJob:
    """One planned window: its sampling plan, estimate and cache key."""

    window: Window
    plan: SamplingPlan
    estimated_tokens: int
    payload_bytes: int
    key: str | None = None


@dataclass
class WindowResult:
    record: WindowRecord
    events: list[Event] = field(default_factory=list)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ModelRun:
    """One video through one model: plan -> cache -> stream-decode + send -> parse -> merge."""

    def __init__(self, path: str | os.PathLike[str], query: str | None, config: ModelConfig,
                 options: RunOptions, progress: Progress, *, analyzer: WindowAnalyzer | None = None,
                 decoder: Callable[..., Iterable[tuple[int, Frame | None]]] | None = None) -> None:
        """``analyzer`` / ``decoder`` (``media.stream_windows``-like) can be injected for tests."""
        self.path = path
        self._analyzer = analyzer
        self._decoder = decoder
        self.query = query
        self.config = config
        self.options = options
        self.progress = progress
        self.results: dict[int, WindowResult] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abandon = False  # Ctrl-C with decode lanes: stop without waiting for requests in flight
        self._fatal: BaseException | None = None
        self._stopped_by: BaseException | None = None  # the fatal error a partial timeline was kept after
        self._answered = False  # the server has answered at least once in this run
        # requests queued or being sent, and whether the last payload queued found a request slot free
        # (``_encode``: then the next payload is urgent)
        self._in_flight = 0
        self._slot_was_free = True
        self._cached_model: str | None = None  # the model named by cached answers
        self._cached_mode: str | None = None  # the payload mode recorded with cached answers
        self.cache: WindowCache | None = WindowCache(options.cache_dir) if options.cache_dir else None

    # -- steps -------------------------------------------------------------------------------------

    def execute(self) -> Timeline:
        from vidline.media.probe import probe

        info = probe(self.path)
        if self._analyzer is None:
            from vidline.models import make_backend
            from vidline.models.window import WindowAnalyzer

            self._analyzer = WindowAnalyzer(make_backend(self.config), self.query)
        self.analyzer: WindowAnalyzer = self._analyzer
        self.budget = make_budget(self.options, self.config.backend)
        jobs = plan_jobs(info, self.analyzer, self.config, self.options, self.budget)
        self.progress.add_total(len(jobs))
        try:
            jobs = self._identify(info, jobs)
        except ServerUnreachableError as exc:
            if not self._assume_remembered_server(exc):
                raise
            jobs = self._identify(info, jobs)  # as the earlier run planned and keyed them, with no I/O
        else:  # the server could not say what it serves or its context (the lookups that only inform)
            down = getattr(getattr(self.analyzer, "backend", None), "unreachable", None)
            cache = self.cache
            missing_keys = cache is not None and any(job.key is None or job.key not in cache for job in jobs)
            if down is not None and missing_keys and self._assume_remembered_server(down):
                jobs = self._identify(info, jobs)
        self.mode = payload_mode(self.config, getattr(self.analyzer, "backend", None))
        missing = [job for job in jobs if not self._answer_from_cache(job)]
        if missing:
            try:
                self._send(info, missing)
            except BackendError as exc:
                # a stop (wrong key, server gone, no such model) after windows were answered, from the
                # cache or not: those are kept, in a partial timeline whose other windows say why
                kept = sum(1 for r in self.results.values() if r.record.status in ("ok", "cached"))
                if exc is not self._fatal or not kept:
                    raise
                self._stopped_by = exc
                logger.warning("%s: run stopped; keeping the %d of %d windows already answered", _one_line(exc),
                               kept, len(jobs))
        return self._timeline(info, jobs)

    def _identify(self, info: VideoInfo, jobs: list[WindowJob]) -> list[WindowJob]:
        """Key the jobs; when some answer is not cached, find out what the server is (payload shape,
        context) and plan, estimate and key again from that. The jobs to run."""
        self._key(info, jobs)
        cache = self.cache
        needs_server = cache is None or any(job.key is None or job.key not in cache for job in jobs)
        if needs_server and self._detect_server():  # the payload shape is known: estimate what is sent
            exact_jobs = plan_jobs(info, self.analyzer, self.config, self.options, self.budget)
            fitted = self._fit_context(info, exact_jobs)
            if fitted is not None:  # smaller frames, so that windows fit the server: planned and keyed again
                jobs = fitted
                self._key(info, jobs)
            else:
                for job, exact in zip(jobs, exact_jobs, strict=True):
                    job.estimated_tokens, job.payload_bytes = exact.estimated_tokens, exact.payload_bytes
        self._remember_server()  # the served model a key names (even when every answer is cached), its context
        return jobs

    def _remember_server(self) -> None:
        """Keep what the server said about itself (``Backend.server_facts``) in the cache, for re-runs
        while it is unreachable."""
        backend = getattr(self.analyzer, "backend", None)
        server_facts = getattr(backend, "server_facts", None)
        if self.cache is None or not callable(server_facts) or getattr(backend, "unreachable", None) is not None:
            return
        facts = {k: v for k, v in server_facts().items() if v is not None}
        if facts:
            self.cache.remember_server(self.config.identity(), facts)

    def _assume_remembered_server(self, exc: ServerUnreachableError) -> bool:
        """The server is unreachable: take what it said about itself in an earlier run as known, so
        the answers cached then are found (windows not cached fail as unreachable). False when no
        earlier run remembered anything."""
        backend = getattr(self.analyzer, "backend", None)
        facts = self.cache.recall_server(self.config.identity()) if self.cache is not None else None
        if not facts or backend is None:
            return False
        backend.assume_server_facts(facts)
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(facts.get("seen") or 0))
        known = ", ".join(f"{k} {v}" for k, v in facts.items() if k != "seen" and v is not None)
        logger.warning("%s; answering from the cache with what the server said on %s (%s)", _one_line(exc), seen,
                       known or "nothing new")
        return True

    def _key(self, info: VideoInfo, jobs: Sequence[WindowJob]) -> None:
        """Each job's cache key (when there is a cache). Keyed by the configured mode: the config's
        identity (base URL, server flavour setting) decides the payload shape, so a cached re-run needs
        no window request, not even one to detect the server."""
        if self.cache is None:
            return
        from vidline.models.base import keyed_model

        fingerprint = video_fingerprint(self.path, info.duration)
        identity = self.analyzer.identity()
        if identity.get("model") is None:  # the server's only model, named (one GET /v1/models)
            identity = {**identity, "model": keyed_model(getattr(self.analyzer, "backend", None), None)}
        for job in jobs:
            job.key = job_key(job, fingerprint, self.config.mode or "auto", identity, self.query)

    def _fit_context(self, info: VideoInfo, jobs: Sequence[WindowJob]) -> list[WindowJob] | None:
        """The jobs planned again with smaller frames (and, at ``--fps auto``, fewer) when the largest
        window would not fit the server's context with its answer (vLLM says ``max_model_len``); None
        when they fit or the context is unknown. What still does not fit is shrunk once on the
        server's refusal, as before."""
        from vidline.media.plan import FRAME_FACTOR

        context_length = getattr(getattr(self.analyzer, "backend", None), "context_length", None)
        context = context_length() if callable(context_length) else None
        largest = max(jobs, key=lambda j: j.estimated_tokens or 0, default=None)
        if not context or largest is None or not largest.estimated_tokens:
            return None
        room = context - self.config.max_tokens
        if largest.estimated_tokens <= room:
            return None
        share = 0.95 * max(room, 1) / largest.estimated_tokens
        p = largest.plan
        total = max(1, int(p.n_frames / FRAME_FACTOR * p.width * p.height * share))
        self.budget = replace(self.budget, total_pixels=total, max_tokens=int(0.95 * max(room, 1)))
        fitted = plan_jobs(info, self.analyzer, self.config, self.options, self.budget)
        fullest = max(fitted, key=lambda j: j.estimated_tokens or 0)
        biggest, q = fullest.estimated_tokens or 0, fullest.plan
        logger.warning("windows of ~%d tokens do not fit the server's context of %d tokens with a %d-token answer: "
                       "sending %d frames of %dx%d per window instead of %d of %dx%d (~%d tokens)",
                       largest.estimated_tokens, context, self.config.max_tokens, q.n_frames, q.width, q.height,
                       p.n_frames, p.width, p.height, biggest)
        return fitted

    def _detect_server(self) -> bool:
        """``detect_server`` on the analyzer's backend: True when its server's flavour is now known."""
        from vidline.models.base import detect_server

        return detect_server(getattr(self.analyzer, "backend", None))

    def _answer_from_cache(self, job: WindowJob) -> bool:
        if self.cache is None or job.key is None:
            return False
        hit = self.cache.get(job.key)
        if hit is None:
            return False
        try:
            events = self._events(hit.text, job.window, hit.time_scale)
        except AnswerParseError:
            return False  # parser changed since; treat as a miss
        record = WindowRecord(index=job.window.index, start=job.window.start, end=job.window.end,
                              frames=hit.frames or job.plan.n_frames, status="cached",
                              estimated_tokens=hit.estimated_tokens or job.estimated_tokens, usage=hit.usage)
        self._cached_model = self._cached_model or hit.model
        self._cached_mode = self._cached_mode or hit.mode
        self.results[job.window.index] = WindowResult(record, events)
        self.progress.advance(status="cached")
        return True

    def _send(self, info: VideoInfo, jobs: Sequence[WindowJob]) -> None:
        """Stream-decode ``jobs``' windows, encode each window while it is decoded and send the payloads
        concurrently (request threads).

        The windows are split into ``decode_lanes``: contiguous stretches of the video, each decoded by
        its own decoder. Where it can (Linux, a backend that says how it encodes), each lane is a
        worker process that decodes and encodes (``vidline.workers``: no GIL shared with the requests);
        else a lane is a decoder thread (this thread when there is one) feeding encoder threads. The
        request threads and slots are shared.

        Bounds keep memory flat: per lane, the frames decoded but not yet taken by an encoder
        (``frame_budget``, thread lanes; a worker encodes each frame as it is decoded) and the windows
        being encoded; and, shared, at most ``concurrency + prefetch`` windows between the end of their
        decoding and a finished request (the waiting ones hold only their small encoded payload), so
        decoding pauses when the server is slower than the decoders, and a request slot that frees up
        finds its next payload ready.
        """
        processes = self._use_processes(jobs)
        lanes = decode_lanes(jobs, self.options.decoders, heavy=processes or decode_heavy(info, jobs))
        slots = threading.BoundedSemaphore(self.options.concurrency + self.options.prefetch)
        requests = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="vidline-request")
        try:
            if processes:
                self._process_lanes(info, jobs, len(lanes), slots, requests)
            else:
                # the SDK's import (~0.5 s), unless asking the server about itself made it already,
                # overlaps the first windows' decoding
                warm_up_in_background(getattr(self.analyzer, "backend", None))
                n_encoders = lane_encoders(self.options.concurrency, len(lanes))
                # the decoders get the CPUs the encoders do not use (oversubscribed frame threads cost CPU)
                threads = max(1, (usable_cpus() - n_encoders * len(lanes)) // len(lanes))
                if len(lanes) == 1:
                    self._lane(info, lanes[0], slots, requests, n_encoders, threads)
                else:
                    self._run_lanes([functools.partial(self._lane, info, lane, slots, requests, n_encoders, threads)
                                     for lane in lanes])
        except BaseException:
            self._stop.set()
            cancel = getattr(getattr(self.analyzer, "backend", None), "cancel", None)
            if callable(cancel):  # Ctrl-C stops sending: no retry of a failing window either
                cancel()
            requests.shutdown(wait=False, cancel_futures=True)
            raise
        requests.shutdown(wait=True)
        if self._fatal is not None:
            raise self._fatal

    def _use_processes(self, jobs: Sequence[WindowJob]) -> bool:
        """Whether the lanes are worker processes: forking is available and the analyzer says how each
        payload is encoded (``stream_spec``; an injected test double may not)."""
        from vidline.workers import processes_available

        if not self.options.processes or not jobs or not processes_available():
            return False
        spec = getattr(self.analyzer, "stream_spec", None)
        return callable(spec) and spec(jobs[0].window, jobs[0].plan) is not None

    def _run_lanes(self, runs: Sequence[Callable[[], None]], abandon: Callable[[], None] | None = None) -> None:
        """Run each lane in its own thread; this thread waits (and takes Ctrl-C). The first error of a
        lane stops the others and is raised here. ``abandon`` stops what the lanes wait on (worker
        processes) once the run stops (Ctrl-C, a wrong key, a lane's error)."""
        errors: list[BaseException] = []

        def run(lane: Callable[[], None]) -> None:
            try:
                lane()
            except BaseException as exc:  # handed to the waiting thread
                errors.append(exc)
                self._stop.set()

        workers = [threading.Thread(target=run, args=(lane,), name=f"vidline-lane_{k}", daemon=True)
                   for k, lane in enumerate(runs)]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                while worker.is_alive():
                    worker.join(POLL)
                    if abandon is not None and self._stop.is_set():
                        abandon()  # the lanes still waiting for their worker return at once
                        abandon = None
        except BaseException:  # Ctrl-C: the lanes stop at their next frame and leave in-flight requests
            self._abandon = True
            self._stop.set()
            if abandon is not None:
                abandon()
            for worker in workers:
                if worker.ident is not None:  # started
                    worker.join()
            raise
        if errors:
            raise errors[0]

    def _process_lanes(self, info: VideoInfo, jobs: Sequence[WindowJob], n_workers: int,
                       slots: threading.BoundedSemaphore, requests: ThreadPoolExecutor) -> None:
        """``n_workers`` decode worker processes (``vidline.workers``) taking contiguous stretches of the
        windows as they become free, each read by a thread of this process that queues the payloads'
        requests."""
        from vidline.workers import DecodeWorker, WindowChunks, worker_nice

        nice = worker_nice()
        pixel_format = getattr(self.analyzer, "pixel_format", "rgb24")
        # each worker decodes and encodes in one thread: a decoder thread per CPU the workers leave over
        threads = max(1, usable_cpus() // n_workers - 1)
        stretches = decode_lanes(jobs, chunk_count(len(jobs), n_workers))
        chunks = WindowChunks([[job.window for job in stretch] for stretch in stretches])
        placed = [job for stretch in stretches for job in stretch]  # the workers name windows by place
        workers: list[DecodeWorker] = []

        def stop_all() -> None:
            for worker in workers:
                worker.stop()

        try:
            for k in range(n_workers):
                workers.append(DecodeWorker(self._decode, self.path, info, chunks, self.budget, pixel_format, threads,
                                            name=f"vidline-decode_{k}", nice=nice))
            # the SDK's import (~0.5 s) overlaps the first windows' decoding; only after the forks, which
            # must not copy an import under way
            warm_up_in_background(getattr(self.analyzer, "backend", None))
            self._run_lanes([functools.partial(self._read_worker, info, worker, placed, slots, requests, pixel_format,
                                               threads) for worker in workers], abandon=stop_all)
        finally:
            stop_all()

    def _read_worker(self, info: VideoInfo, worker: DecodeWorker, jobs: Sequence[WindowJob],
                     slots: threading.BoundedSemaphore, requests: ThreadPoolExecutor, pixel_format: str,
                     threads: int) -> None:
        """A lane's thread: answer its worker's questions (each window's encoding) and queue the request
        of each payload it hands over, once a request slot is free."""
        from vidline.workers import CLIP, SPEC

        for message in worker.messages():
            if self._stop.is_set():
                return
            kind, job = message[0], jobs[message[1]]
            if kind == SPEC:
                worker.reply(self.analyzer.stream_spec(job.window, job.plan, urgent=self._slot_was_free))
                continue
            if not acquire_unless_stopped(slots, self._stop):
                return
            reload = functools.partial(self._reload, info, job, pixel_format, threads)
            step = (functools.partial(self._prepare_clip, job, message[2], message[3], reload) if kind == CLIP
                    else functools.partial(self._after_stream_failed, job, message[2], reload))  # FAILED: not encoded
            self._queue(job, self._guarded(job, job.plan.n_frames, step), slots, requests, reload)

    def _prepare_clip(self, job: WindowJob, encoded: Any, count: int,
                      reload: Callable[[], WindowFrames]) -> tuple[Any, int]:
        """(the window's prepared request, frames in it) around a worker's payload; built again from a
        second decode when it is over the size limit or the file ended inside the window."""
        if count >= job.plan.n_frames:
            try:
                return self.analyzer.prepared_from(job.window, job.plan, encoded), count
            except StalePayloadError as exc:
                return self._after_stream_failed(job, exc, reload)
        return self._after_stream_failed(job, StalePayloadError(f"{count} of {job.plan.n_frames} frames: the file"
                                                                " ends inside it"), reload)

    def _after_stream_failed(self, job: WindowJob, error: BaseException,
                             reload: Callable[[], WindowFrames]) -> tuple[Any, int]:
        """The window's payload built from a second decode when its streamed payload cannot be used
        (``StalePayloadError``: over the size limit, or the file ended inside the window); any other
        error is the window's failure."""
        if not isinstance(error, StalePayloadError):
            raise error
        logger.debug("window %d: %s; encoding it again from a second decode", job.window.index, error)
        return self._prepare_collected(reload())

    def _decode(self, path: str | os.PathLike[str], windows: Sequence[Window], budget: SamplingBudget,
                **kwargs: Any) -> Iterable[tuple[int, Frame | None]]:
        """The run's streaming decoder (``media.stream_windows``, or the one injected)."""
        stream = self._decoder
        if stream is None:
            from vidline.media.sampler import stream_windows

            stream = self._decoder = stream_windows
        return stream(path, windows, budget, **kwargs)

    def _reload(self, info: VideoInfo, job: WindowJob, pixel_format: str, threads: int) -> WindowFrames:
        """The window decoded again (a payload outdated by a server fallback, a shrink, a window cut by
        the end of a truncated file)."""
        from vidline.media.sampler import collect_windows

        again = self._decode(self.path, [job.window], self.budget, info=info, pixel_format=pixel_format,
                             threads=threads, warn_truncated=False)  # the first pass warned already
        for wf in collect_windows(self.path, [job.window], [job.plan], again):
            return wf
        raise _too_few_frames(self.path, job)

    def _lane(self, info: VideoInfo, jobs: Sequence[WindowJob], slots: threading.BoundedSemaphore,
              requests: ThreadPoolExecutor, n_encoders: int, threads: int) -> None:
        """One decoder over ``jobs``' windows (in one pass), feeding ``n_encoders`` encoder threads that
        queue each finished payload on ``requests``; returns when its windows are answered (or, when
        the run is abandoned, as soon as it has stopped decoding)."""

        pixel_format = getattr(self.analyzer, "pixel_format", "rgb24")
        budget = threading.Semaphore(frame_budget(jobs))
        windows = [job.window for job in jobs]
        events: Iterator[tuple[int, Frame | None]] = iter(
            self._decode(self.path, windows, self.budget, info=info, pixel_format=pixel_format, threads=threads))

        def reload(job: WindowJob) -> WindowFrames:
            return self._reload(info, job, pixel_format, threads)

        # windows are encoded in the order they start, n_encoders at a time: the frames of the next
        # window(s) wait in the budget until an encoder is free (one x264 instance per encoder thread:
        # ~50 MB each for 1008x560 frames)
        encoders = ThreadPoolExecutor(max_workers=n_encoders, thread_name_prefix="vidline-encode")
        feeds: dict[int, FrameFeed] = {}
        encoded: list[Future[Future[None] | None]] = []
        try:
            for i, frame in events:
                if self._stop.is_set():
                    break
                feed = feeds.get(i)
                if frame is not None:
                    if feed is None:
                        feed = feeds[i] = FrameFeed(budget, self._stop)
                        encoded.append(encoders.submit(self._encode, jobs[i], feed, slots, requests,
                                                       functools.partial(reload, jobs[i])))
                    feed.put(frame)
                    del frame
                elif feed is not None:  # the window's last frame is in
                    if not acquire_unless_stopped(slots, self._stop):
                        break
                    del feeds[i]
                    feed.close(complete=feed.count >= jobs[i].plan.n_frames, slot=True)
            for feed in feeds.values():  # stopped early
                feed.close(complete=False)
            feeds.clear()
            for fut in encoded:
                sent = self._result(fut)
                if sent is not None:
                    self._result(sent)
                if self._abandon:  # Ctrl-C with lanes: leave the encoders and the requests in flight
                    encoders.shutdown(wait=False, cancel_futures=True)
                    return
        except BaseException:
            self._stop.set()
            for feed in feeds.values():
                feed.close(complete=False)
            encoders.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # stop the decoder early (auth error) and release the file
        encoders.shutdown(wait=True)

    def _result(self, future: Future[_T]) -> _T | None:
        """``future.result()``, or None as soon as the run is abandoned (Ctrl-C with decode lanes)."""
        while True:
            try:
                return future.result(timeout=POLL)
            except TimeoutError:
                if self._abandon:
                    return None

    def _encode(self, job: WindowJob, feed: FrameFeed, slots: threading.BoundedSemaphore,
                requests: ThreadPoolExecutor, reload: Callable[[], WindowFrames]) -> Future[None] | None:
        """Encoder thread: build the window's payload from its frames as they are decoded, then queue its
        request. Never raises; gives the window's request slot back itself when no request is queued.

        While payloads find a request slot free when they are ready (the run's start, a server that
        answers faster than windows are decoded), the next one is encoded ``urgent`` (x264's fastest
        preset: the encoding CPU delays a request); once they wait for a slot, with the preset that
        makes smaller clips."""
        built = None if self._stop.is_set() else self._guarded(
            job, job.plan.n_frames, lambda: self._prepare(job, feed, reload, self._slot_was_free))
        feed.discard()  # frames still coming for this window are not needed (a failure, or a stop)
        feed.wait_closed()
        if not feed.slot:
            return None
        return self._queue(job, built, slots, requests, reload)

    def _queue(self, job: WindowJob, built: tuple[Any, int] | None, slots: threading.BoundedSemaphore,
               requests: ThreadPoolExecutor, reload: Callable[[], WindowFrames]) -> Future[None] | None:
        """Queue the request of a prepared window (``built``: (request, frames); None: nothing to send),
        which holds one of ``slots`` until it is answered; the slot is given back at once when no request
        is queued. Remembers whether the request found a free slot (then the next payload is urgent)."""
        if built is not None and not self._stop.is_set():
            prepared, n_frames = built

            def done(_f: object) -> None:
                with self._lock:
                    self._in_flight -= 1
                slots.release()

            with self._lock:
                self._slot_was_free = self._in_flight < self.options.concurrency
                self._in_flight += 1
            try:
                fut = requests.submit(self._work, job, prepared, n_frames, reload)
            except RuntimeError:  # the request pool shut down (the run is stopping)
                done(None)
                return None
            fut.add_done_callback(done)
            return fut
        slots.release()
        return None

    def _prepare(self, job: WindowJob, feed: FrameFeed, reload: Callable[[], WindowFrames],
                 urgent: bool = False) -> tuple[Any, int] | None:
        """(the window's prepared request, frames in it): streamed into the encoder frame by frame when
        the analyzer can (``prepare_stream``: an mp4 or a JPEG list), else from the collected frames
        (``prepare``). None when the run is stopping."""
        from vidline.media.sampler import window_frames

        prepare_stream = getattr(self.analyzer, "prepare_stream", None)
        prepared = None
        refused: StalePayloadError | None = None
        if prepare_stream is not None:
            try:
                prepared = prepare_stream(job.window, job.plan, feed, urgent=urgent)
            except StalePayloadError as exc:  # over the size limit, or a fallback changed the encoding
                refused = exc
                feed.discard()
        streamed = prepared is not None or refused is not None
        frames = [] if streamed else list(feed)  # the analyzer cannot stream: collect the window
        feed.wait_closed()
        if not feed.slot:  # the run is stopping
            return None
        if prepared is not None and feed.complete:
            return prepared, feed.count
        if streamed:  # the streamed clip is refused, or the file ended inside the window (an even count)
            return self._after_stream_failed(job, refused or StalePayloadError("the file ends inside it"), reload)
        wf = window_frames(self.path, job.window, job.plan, frames)
        del frames
        if wf is None:
            raise _too_few_frames(self.path, job)
        return self._prepare_collected(wf)

    def _prepare_collected(self, wf: WindowFrames) -> tuple[Any, int]:
        return self.analyzer.prepare(wf), len(wf.frames)

    def _work(self, job: WindowJob, prepared: Any, n_frames: int, reload: Callable[[], WindowFrames]) -> None:
        """Request thread: send one prepared window, parse, cache. Never raises (errors become records)."""
        if self._stop.is_set():
            return

        sent = self._guarded(job, n_frames, lambda: self.analyzer.send(prepared, reload))
        if sent is None:
            return
        text, usage, time_scale = sent[:3]
        # a payload shrunk after a too-large answer, or a frame list the server's limit cuts: the
        # record says what was really sent
        sent_frames = getattr(self.analyzer, "frames_sent", None)
        n_frames = getattr(sent, "frames", None) or (sent_frames(n_frames) if callable(sent_frames) else n_frames)
        # ... and after a server fallback (vLLM refusing per-request fps), what its defaults made of it
        job.estimated_tokens = int(getattr(sent, "estimated_tokens", None) or self._estimate_now(job))
        estimated = job.estimated_tokens  # for the failed record of an unparseable answer too
        self._answered = True
        try:
            events = self._events(text, job.window, time_scale)
        except AnswerParseError as exc:  # failed, but its tokens were spent: they are counted
            self._record_failure(job, n_frames, exc, prefix="unparseable answer: ", usage=usage)
            return
        if self.cache is not None and job.key is not None:
            model = self.config.model or self._served_model()
            self.cache.put(job.key, CachedAnswer(text=text, usage=usage, time_scale=time_scale, model=model,
                                                 mode=self.mode, estimated_tokens=estimated, frames=n_frames))
        record = WindowRecord(index=job.window.index, start=job.window.start, end=job.window.end, frames=n_frames,
                              status="ok", estimated_tokens=estimated, usage=usage)
        with self._lock:
            self.results[job.window.index] = WindowResult(record, events)
        tokens = (usage.prompt_tokens + usage.completion_tokens) if usage else 0
        self.progress.advance(tokens=tokens)

    def _estimate_now(self, job: WindowJob) -> int:
        """The window's estimate as the backend now sends it (it may have fallen back since planning)."""
        estimate = getattr(self.analyzer, "estimate", None)
        return int(estimate(job.plan)[0]) if callable(estimate) else job.estimated_tokens

    def _guarded(self, job: WindowJob, n_frames: int, step: Callable[[], _T]) -> _T | None:
        """``step()``, or None after recording the window as failed. A wrong key, a server never
        reached, or a 404 before any answer (a wrong --model, a base URL without /v1) also stops the run."""
        try:
            return step()
        except (AuthenticationError, ServerUnreachableError, ServerError) as exc:
            # a wrong key stops the run at once; so does a server that was never reached (after the
            # backend's retries) or that has no such model or route, rather than failing every window
            # the same way
            never_answered = not self._answered and (not isinstance(exc, ServerError) or _no_such_model(exc))
            if isinstance(exc, AuthenticationError) or never_answered:
                with self._lock:
                    if self._fatal is None:
                        self._fatal = exc
                self._stop.set()
            self._record_failure(job, n_frames, exc)
        except AnswerParseError as exc:
            self._record_failure(job, n_frames, exc, prefix="unparseable answer: ")
        except VidlineError as exc:
            self._record_failure(job, n_frames, exc)
        except Exception as exc:  # a bug must not lose the other windows
            logger.debug("window %d crashed", job.window.index, exc_info=True)
            self._record_failure(job, n_frames, exc, prefix=f"internal error ({type(exc).__name__}): ")
        return None

    def _record_failure(self, job: WindowJob, n_frames: int, exc: BaseException, prefix: str = "",
                        usage: Usage | None = None) -> None:
        """The window as failed; ``usage``: the tokens its answer cost (an answer that could not be
        parsed)."""
        error = prefix + _one_line(exc)
        logger.info("window %d [%.1f-%.1f s] failed: %s", job.window.index, job.window.start, job.window.end, error)
        record = WindowRecord(index=job.window.index, start=job.window.start, end=job.window.end, frames=n_frames,
                              status="failed", error=error, estimated_tokens=job.estimated_tokens, usage=usage)
        with self._lock:
            self.results[job.window.index] = WindowResult(record)
        self.progress.advance(status="failed", tokens=(usage.prompt_tokens + usage.completion_tokens) if usage else 0)

    def _events(self, text: str, window: Window, time_scale: float) -> list[Event]:
        events = self.analyzer.to_events(text, window, time_scale)
        for ev in events:
            if not ev.windows:
                ev.windows = [window.index]
        return events

    def _served_model(self) -> str | None:
        """The model the backend used when the config named none (e.g. the server's only model)."""
        backend = getattr(self.analyzer, "backend", None)
        if not self._answered or backend is None:
            return None
        try:  # resolved while answering, so no further request
            resolved = getattr(backend, "model", None)
        except VidlineError:
            return None
        return resolved if isinstance(resolved, str) else None

    def _timeline(self, info: VideoInfo, jobs: Sequence[WindowJob]) -> Timeline:
        from vidline.merge import merge_events
        from vidline.timeline import Timeline

        records: list[WindowRecord] = []
        events: list[Event] = []
        for job in jobs:
            result = self.results.get(job.window.index)
            if result is None:  # never decoded (decoder stopped early) or never sent (the run stopped)
                error = (f"not sent: {_one_line(self._stopped_by)}" if self._stopped_by is not None
                         else "window was not decoded")
                result = WindowResult(WindowRecord(index=job.window.index, start=job.window.start,
                                                   end=job.window.end, frames=0, status="failed",
                                                   error=error, estimated_tokens=job.estimated_tokens))
            records.append(result.record)
            events.extend(result.events)
        # the tokens this run spent: answered windows, parsed or not (cached answers cost nothing now)
        usage = sum((r.usage for r in records if r.status != "cached" and r.usage), Usage())
        merged = sorted(merge_events(events), key=lambda e: (e.start, e.end, e.label))
        model = self.config.model or self._served_model() or self._cached_model
        return Timeline(video=_video_dict(self.path, info), query=self.query, backend=self.config.backend,
                        model=model, mode=self.mode if self._answered else (self._cached_mode or self.mode),
                        events=merged, windows=records, usage=usage)


# --------------------------------------------------------------------------------------------------
# planning helpers (pure apart from the analyzer's estimate)


def usable_cpus() -> int:
    """The CPUs this process may run on (containers, taskset), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 2


def frame_budget(jobs: Sequence[WindowJob]) -> int:
    """Frames decoded but not yet taken by an encoder, at most (per decode lane): the frames of later
    windows decoded before the earliest open window's last one (they wait while an encoder finishes
    that window; a smaller budget would leave the decoder waiting for itself), + 1, + ``BUDGET_SLACK``
    to ride out an encoder's pause between two windows."""
    return frames_ahead(jobs) + 1 + BUDGET_SLACK


def frames_ahead(jobs: Sequence[WindowJob]) -> int:
    """The most frames of later windows that are decoded before some window's last frame (the
    overlap's frames where consecutive windows overlap)."""
    plans = sorted((list(job.plan.timestamps) for job in jobs if job.plan.timestamps), key=lambda ts: ts[0])
    most = 0
    for i, ts in enumerate(plans):
        end = ts[-1]
        ahead = 0
        for later in plans[i + 1:]:
            if later[0] > end:
                break
            ahead += bisect.bisect_right(later, end)
        most = max(most, ahead)
    return most


def lane_count(n_windows: int, decoders: int | None = None, cpus: int | None = None,
               heavy: bool = True) -> int:
    """How many parallel decoders a run uses: ``decoders`` when given, else (when decoding is the
    heavier half of the work: ``heavy``, see ``decode_heavy``) one per CPU up to ``AUTO_LANES``, with
    at least ``MIN_WINDOWS_PER_LANE`` windows each; never more than the windows."""
    if decoders is None:
        cpus = usable_cpus() if cpus is None else cpus
        decoders = min(cpus, AUTO_LANES, n_windows // MIN_WINDOWS_PER_LANE) if heavy else 1
    return max(1, min(decoders, n_windows))


def decode_heavy(info: VideoInfo, jobs: Sequence[WindowJob]) -> bool:
    """Whether decoding ``jobs``' stretch of the video costs at least twice what encoding their
    payloads does (pure estimate: pixels decoded against pixels sent, x264 at ``ENCODE_COST`` times
    the decoder's cost per pixel). A second decoder helps only then: the encoders share the CPUs.
    A 720p or 1080p camera hour at 1 fps is decode-heavy (~5x, ~13x); a 320x240 10 fps one is not."""
    if not jobs:
        return False
    span = max(job.window.end for job in jobs) - min(job.window.start for job in jobs)
    decoded = float(info.width) * info.height * (info.fps or 25.0) * max(0.0, span)
    sent = sum(float(job.plan.n_frames) * job.plan.width * job.plan.height for job in jobs)
    return decoded >= 2.0 * ENCODE_COST * sent


def decode_lanes(jobs: Sequence[WindowJob], decoders: int | None = None, cpus: int | None = None,
                 heavy: bool = True) -> list[list[WindowJob]]:
    """``jobs`` (in time order) cut into ``lane_count`` contiguous runs of windows spanning about equal
    stretches of video (a sequential decode costs the video time it crosses), one per decoder."""
    n = lane_count(len(jobs), decoders, cpus, heavy)
    if n == 1:
        return [list(jobs)]
    spans = [max(0.0, job.window.end - job.window.start) for job in jobs]
    total = sum(spans) or float(len(jobs))
    lanes: list[list[WindowJob]] = [[] for _ in range(n)]
    done = 0.0
    for job, span in zip(jobs, spans, strict=True):  # by the middle of each window: never out of order
        lanes[min(n - 1, int(n * (done + span / 2) / total))].append(job)
        done += span
    return [lane for lane in lanes if lane]


def chunk_count(n_windows: int, workers: int) -> int:
    """Stretches of the video for ``workers`` decode worker processes to share: ``CHUNKS_PER_WORKER``
    each (a worker that gets through its stretches sooner takes more), with at least
    ``MIN_WINDOWS_PER_LANE`` windows in each (every stretch costs a seek and decodes its first window's
    overlap again); one for one worker."""
    if workers <= 1:
        return 1
    return max(workers, min(n_windows // MIN_WINDOWS_PER_LANE, CHUNKS_PER_WORKER * workers))


def lane_encoders(concurrency: int, lanes: int) -> int:
    """Encoder threads of each decode lane: the run's ``encoder_threads`` shared out, at least one."""
    return max(1, encoder_threads(concurrency) // lanes)


def encoder_threads(concurrency: int) -> int:
    """Threads that encode payloads beside the decoder: half the CPUs (the decoder has the rest),
    never more than the requests in flight."""
    return max(1, min(concurrency, usable_cpus() // 2))


def payload_mode(config: ModelConfig, backend: object | None = None) -> str:
    """The payload mode the run uses (the backend's default when the config leaves it open)."""
    if config.mode:
        return config.mode
    from vidline.models.base import Backend

    if isinstance(backend, Backend):
        from vidline.models.window import backend_mode

        return backend_mode(backend)
    mode = getattr(backend, "default_mode", None)
    return mode if isinstance(mode, str) else "video"


def make_budget(options: RunOptions, backend_name: str | None = None) -> SamplingBudget:
    from vidline.media.plan import SamplingBudget
    from vidline.media.windows import max_frames_for

    kwargs: dict[str, Any] = {"fps": options.fps}
    if backend_name is not None:
        kwargs["max_frames"] = max_frames_for(backend_name)
    if isinstance(options.fps, (int, float)):
        kwargs["max_fps"] = max(2.0, float(options.fps))
        kwargs["min_fps"] = min(0.1, float(options.fps))
    if options.max_frames is not None:
        kwargs["max_frames"] = options.max_frames
    return SamplingBudget(**kwargs)


def plan_windows_for(info: VideoInfo, config: ModelConfig | None, options: RunOptions,
                     mode: str | None = None) -> list[Window]:
    from vidline.media.windows import max_window_for, plan_windows

    kwargs: dict[str, Any] = {}
    if options.window is not None:
        kwargs["window"] = options.window
    if options.overlap is not None:
        kwargs["overlap"] = options.overlap
    if config is not None:
        kwargs["max_window"] = max_window_for(mode or payload_mode(config), config.backend)
    return plan_windows(info.duration, **kwargs)


def plan_jobs(info: VideoInfo, analyzer: WindowAnalyzer | None, config: ModelConfig | None,
              options: RunOptions, budget: SamplingBudget) -> list[WindowJob]:
    from vidline.media.sampler import plan_windows_sampling

    backend = getattr(analyzer, "backend", None)
    mode = payload_mode(config, backend) if config is not None else None
    windows = plan_windows_for(info, config, options, mode)
    jobs: list[WindowJob] = []
    for w, plan in zip(windows, plan_windows_sampling(info, windows, budget), strict=True):
        if analyzer is not None:
            tokens, nbytes = analyzer.estimate(plan)
        else:
            tokens, nbytes = plan.tokens, rough_payload_bytes(plan)
        jobs.append(WindowJob(window=w, plan=plan, estimated_tokens=int(tokens), payload_bytes=int(nbytes)))
    return jobs


def rough_payload_bytes(plan: SamplingPlan) -> int:
    """A model-independent payload estimate: ~0.08 byte per pixel per JPEG frame, base64-inflated."""
    return int(plan.n_frames * plan.width * plan.height * 0.08 * 4 / 3)


def job_key(job: WindowJob, fingerprint: str, mode: str, identity: dict[str, Any], query: str | None) -> str:
    p = job.plan
    return cache_key(fingerprint=fingerprint, start=job.window.start, end=job.window.end, fps=p.fps,
                     width=p.width, height=p.height, n_frames=p.n_frames, mode=mode, identity=identity,
                     prompt=query)


# --------------------------------------------------------------------------------------------------
# dry run


@dataclass
class DryRunWindow:
    index: int
    start: float
    end: float
    frames: int
    width: int
    height: int
    fps: float
    estimated_tokens: int
    payload_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": round(self.start, 3), "end": round(self.end, 3),
                "frames": self.frames, "fps": round(self.fps, 4), "width": self.width, "height": self.height,
                "estimated_tokens": self.estimated_tokens, "payload_bytes": self.payload_bytes}


@dataclass
class DryRunReport:
    """What a run would send, computed without contacting any server."""

    video: dict[str, Any]
    backend: str
    model: str | None
    mode: str | None
    windows: list[DryRunWindow]
    price_per_1k: float | None = None
    note: str | None = None
    server: str | None = None  # the server flavour the estimates assume ("vllm", "generic", ...)
    server_assumed: bool = False  # not known without contacting the server: vLLM's was assumed
    windows_in_flight: int = 0  # encoded payloads held at once (concurrency + prefetch)
    decoded_frames: int = 1  # decoded frames held at once (at most), in all decode lanes
    bytes_per_pixel: float = 3.0  # of the decoded frames: 3 RGB, 1.5 planar yuv420p (mp4 payloads)
    decoders: int = 1  # decode lanes

    @property
    def peak_memory_mb(self) -> int:
        """Rough peak RSS: ~125 MB of libraries (measured: the imports alone are ~121 MB) and one decoder + encoder, ~60 MB for each further
        decode lane, + the decoded frames held at most (about the windows' overlap per lane: payloads
        are encoded while decoded) + the encoded payloads waiting for (or in) a request."""
        frame = max((w.width * w.height * self.bytes_per_pixel for w in self.windows), default=0)
        payload = max((w.payload_bytes for w in self.windows), default=0)
        fixed = BASE_MB + LANE_MB * (max(1, self.decoders) - 1)
        return int(fixed + (max(1, self.decoded_frames) * frame + self.windows_in_flight * payload) / 2**20)

    @property
    def total_tokens(self) -> int:
        return sum(w.estimated_tokens for w in self.windows)

    @property
    def total_bytes(self) -> int:
        return sum(w.payload_bytes for w in self.windows)

    @property
    def total_frames(self) -> int:
        return sum(w.frames for w in self.windows)

    @property
    def price(self) -> float | None:
        return None if self.price_per_1k is None else round(self.total_tokens / 1000 * self.price_per_1k, 4)

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.video, "backend": self.backend, "server": self.server,
                "server_assumed": self.server_assumed, "model": self.model, "mode": self.mode,
                "windows": [w.to_dict() for w in self.windows], "total_frames": self.total_frames,
                "total_estimated_tokens": self.total_tokens, "total_payload_bytes": self.total_bytes,
                "price_per_1k": self.price_per_1k, "estimated_price": self.price,
                "estimated_peak_memory_mb": self.peak_memory_mb, "note": self.note}

    def to_text(self) -> str:
        v = self.video
        lines = [f"video: {v['path']}  {v['duration']:.1f} s  {v['width']}x{v['height']}  {v['fps']} fps",
                 f"backend: {self.backend}"
                 + (f"  server: {self.server}{' (assumed)' if self.server_assumed else ''}" if self.server else "")
                 + f"  model: {self.model or '-'}  mode: {self.mode or '-'}"]
        if self.note:
            lines.append(f"note: {self.note}")
        lines.append(f"{'window':>6} {'start':>9} {'end':>9} {'frames':>6} {'fps':>6} {'size':>9} "
                     f"{'tokens':>8} {'payload':>10}")
        for w in self.windows:
            lines.append(f"{w.index:>6} {w.start:>9.1f} {w.end:>9.1f} {w.frames:>6} {w.fps:>6.2f} "
                         f"{f'{w.width}x{w.height}':>9} {w.estimated_tokens:>8} {_human_bytes(w.payload_bytes):>10}")
        lines.append(f"total: {len(self.windows)} windows, {self.total_frames} frames, "
                     f"{self.total_tokens} estimated tokens, {_human_bytes(self.total_bytes)} payload, "
                     f"~{self.peak_memory_mb} MB peak memory")
        if self.price is not None:
            lines.append(f"estimated price: {self.price:.4f} (at {self.price_per_1k} per 1k tokens)")
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def dry_run(
    path: str | os.PathLike[str],
    query: str | None = None,
    *,
    config: ModelConfig | None = None,
    backend: str = "auto",
    window: float | None = None,
    overlap: float | None = None,
    fps: float | str = "auto",
    max_frames: int | None = None,
    concurrency: int = 4,
    prefetch: int | None = None,
    price_per_1k: float | None = None,
    decoders: int | None = None,
    **options: Any,
) -> DryRunReport:
    """Plan a run (windows, frames, sizes, payload bytes, tokens, price) without contacting a server."""
    from vidline.media.probe import probe

    check_inputs(path, query)
    model_opts, motion_params = _split_options(options)
    if price_per_1k is not None:
        require_number("--price-per-1k", price_per_1k, minimum=0)
    run_opts = RunOptions(window=window, overlap=overlap, fps=fps, max_frames=max_frames, concurrency=concurrency,
                          queue=prefetch, decoders=decoders)
    run_opts.validate()
    cfg = select_model(config, backend, query, model_opts)
    info = probe(path)
    if cfg is None:
        return _motion_dry_run(path, info, motion_params, price_per_1k, backend="scenes" if backend == "scenes"
                               else "motion")
    analyzer = _offline_analyzer(cfg, query)
    jobs = plan_jobs(info, analyzer, cfg, run_opts, make_budget(run_opts, cfg.backend))
    rows = [DryRunWindow(j.window.index, j.window.start, j.window.end, j.plan.n_frames, j.plan.width,
                         j.plan.height, j.plan.fps, j.estimated_tokens, j.payload_bytes) for j in jobs]
    mode = payload_mode(cfg, getattr(analyzer, "backend", None))
    server, assumed = _dry_run_server(cfg, getattr(analyzer, "backend", None))
    # frames held, per decode lane: a payload (mp4 or JPEG list) is encoded as its window is decoded,
    # so only the frames waiting for an encoder (frame_budget: about the windows' overlap)
    from vidline.workers import processes_available

    lanes = decode_lanes(jobs, run_opts.decoders, heavy=processes_available() or decode_heavy(info, jobs))
    held = sum(frame_budget(lane) for lane in lanes)
    model = cfg.model
    if model is None and cfg.backend == "dashscope":
        from vidline.models.dashscope_backend import DEFAULT_DASHSCOPE_MODEL

        model = f"{DEFAULT_DASHSCOPE_MODEL} (default)"  # what the run will ask for
    return DryRunReport(video=_video_dict(path, info), backend=cfg.backend, model=model,
                        mode=mode, windows=rows, server=server, server_assumed=assumed,
                        note=assumed_server_note(server, mode) if assumed else None,
                        price_per_1k=price_per_1k, windows_in_flight=run_opts.concurrency + run_opts.prefetch,
                        decoded_frames=held, decoders=len(lanes),
                        bytes_per_pixel=1.5 if (getattr(analyzer, "pixel_format", "rgb24") == "yuv420p") else 3.0)


def _dry_run_server(cfg: ModelConfig, backend: object | None) -> tuple[str | None, bool]:
    """(server flavour the dry run's estimates assume, whether that is a guess). An OpenAI-compatible
    server whose flavour neither ``--server`` nor the URL gives is taken for vLLM (the documented
    self-hosted server) without asking it."""
    if cfg.backend == "dashscope":
        return "dashscope", False
    from vidline.models.base import Backend

    if not isinstance(backend, Backend):
        return None, False
    from vidline.models.window import backend_flavour

    return backend_flavour(backend), getattr(backend, "_flavour", None) is None


def assumed_server_note(server: str | None, mode: str | None) -> str:
    """What a dry run says when it had to guess the server flavour."""
    return (f"server flavour unknown without contacting the server: assumed {server} ({mode} mode); choose "
            "with --server vllm|generic|dashscope-compat and --mode video|frames (a generic "
            "OpenAI-compatible server gets one image per frame, about twice the tokens)")


def _offline_analyzer(cfg: ModelConfig, query: str | None) -> WindowAnalyzer | None:
    """A WindowAnalyzer for estimates only; None (model-independent estimate) if it cannot be built."""
    try:
        from vidline.models import make_backend
        from vidline.models.window import WindowAnalyzer

        return WindowAnalyzer(make_backend(cfg), query)
    except (ImportError, VidlineError) as exc:
        logger.debug("dry run uses the model-independent estimate: %s", exc)
        return None


def _motion_dry_run(path: str | os.PathLike[str], info: VideoInfo, params: MotionParams,
                    price_per_1k: float | None, *, backend: str = "motion") -> DryRunReport:
    from vidline.motion import analysis_size

    w, h = analysis_size(info.display_width, info.display_height, params.width)
    n = int(info.duration * params.fps)
    row = DryRunWindow(0, 0.0, info.duration, n, w, h, params.fps, 0, 0)
    detector = "scene-cut" if backend == "scenes" else "motion"
    return DryRunReport(video=_video_dict(path, info), backend=backend, model=None, mode=None, windows=[row],
                        price_per_1k=price_per_1k, note=f"offline {detector} detector: no server, no tokens")


def iter_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The video paths of a command line, in order (folders are a later extension)."""
    return [str(p) for p in paths]
