"""The ``vidline`` command line: a thin layer over the public Python API.

Each sub-command lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser to a ``run(args) -> int`` callable. Errors from the library's hierarchy
become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
