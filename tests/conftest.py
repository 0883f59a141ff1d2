"""Shared fixtures. Media fixtures (generated videos) and the reference server live in tests/fixtures/."""

from tests.fixtures.media import *  # noqa: F403
from tests.fixtures.server import *  # noqa: F403
