"""Shared fixtures. Media fixtures (generated videos) and the reference server live in tests/fixtures/."""

import gc
from collections.abc import Iterator

import pytest

from tests.fixtures.media import *  # noqa: F403
from tests.fixtures.server import *  # noqa: F403


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """The CLI freezes the objects its process has imported (vidline.cli.runtime); tests run the CLI
    in this process, so give the collector everything back after each test."""
    yield
    gc.unfreeze()
