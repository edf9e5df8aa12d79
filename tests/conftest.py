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


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """Put structlog's whole configuration back after a test reconfigures it."""
    saved = structlog.get_config()
    processors = saved["processors"]
    contents = list(processors)
    yield
    processors[:] = contents  # the same list object: capture_logs holds it
    structlog.configure(**{**saved, "processors": processors})
