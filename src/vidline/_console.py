"""The ``vidline`` console script: ``vidline.cli.entry``, with Ctrl-C while its modules load (numpy,
PyAV, the CLI's commands: ~0.3 s) ending in one line and exit 130 instead of Python's traceback.
This module imports nothing heavy itself (the ``vidline`` package's own imports are light)."""

from __future__ import annotations

import sys
from typing import NoReturn


def main() -> NoReturn:
    try:
        from vidline.cli import entry
    except KeyboardInterrupt:
        sys.stderr.write("vidline: interrupted\n")
        sys.exit(130)  # vidline.cli.EXIT_INTERRUPTED, which is not loaded yet
    entry()
