"""The ``vidline`` command line: a thin layer over the public Python API.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser to a ``run(args) -> int`` callable. Errors from the library's hierarchy
become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from vidline.errors import VidlineError

# Order here is the order in ``vidline --help``.
COMMAND_MODULES = [
    "probe",
    "plan",
    "sample",
    "timeline",
    "export",
    "index",
    "search",
    "clip",
    "ask",
]

EXIT_INTERRUPTED = 130
EXIT_PARTIAL = 3  # some windows failed; the rest was written


def build_parser() -> argparse.ArgumentParser:
    from vidline import __version__

    parser = argparse.ArgumentParser(
        prog="vidline",
        description="Find when things happen in long videos with vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"vidline {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"vidline.cli.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not built yet
            if exc.name == f"vidline.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vidline: %(message)s"))
    log = logging.getLogger("vidline")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    _setup_logging(args.verbose)
    from vidline.cli.runtime import tune_allocator

    tune_allocator()
    try:
        code = args.func(args)
    except VidlineError as exc:
        print(f"vidline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OSError as exc:  # stdout on a full disk (/dev/full), an output that cannot be written
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"vidline: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    return int(code or 0)


def _exit_on_second_interrupt() -> None:
    """A second Ctrl-C, while the requests in flight are waited for, exits at once (no traceback from
    the interpreter's thread joins)."""
    import signal

    def quit_now(_signum: int, _frame: object) -> None:
        try:
            sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERRUPTED)

    with contextlib.suppress(ValueError):  # not the main thread: nothing to install
        signal.signal(signal.SIGINT, quit_now)


def entry() -> NoReturn:
    """The console script (``vidline``) and ``python -m vidline``: ``main()``, then a quick exit.

    After a run that ended normally (exit 0, or 3 = partial: every output is written and closed),
    stdout and stderr are flushed and the interpreter's teardown is skipped (``os._exit``): freeing
    the modules of the openai SDK, pydantic, numpy and PyAV one by one measured ~0.2 s per command.
    Any other ending exits normally, so atexit handlers run (an interrupted timeline waits for the
    requests in flight, whose answers are then cached). Ctrl-C before a command runs (while its
    modules load and its arguments are read) is the same one line as during it."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("vidline: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code in (0, EXIT_PARTIAL):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe: let the normal exit deal with it
            pass
        else:
            logging.shutdown()
            os._exit(code)
    if code == EXIT_INTERRUPTED:  # the exit waits for the requests in flight (their answers are cached)
        _exit_on_second_interrupt()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
