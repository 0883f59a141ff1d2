"""vidline's one named logger. The library never prints; the CLI configures handlers."""

from __future__ import annotations

import logging

logger = logging.getLogger("vidline")
logger.addHandler(logging.NullHandler())
