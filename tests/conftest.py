"""Shared fixtures: structlog is captured so tests never print."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _quiet_structlog() -> Iterator[None]:
    """Keep the library's events out of the test output (and reset afterwards)."""
    with structlog.testing.capture_logs():
        yield
