"""The pytest plugin: fixtures for testing pipelines, with or without pytest-trio.

Registered through the ``pytest11`` entry point ``actors``; without the
installed entry point, enable it with ``-p actors.testing._plugin``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._checkpoint import MemoryStore
from .._definition import PipelineDefinition
from ._llm import FakeLLM
from ._recorder import Recorder
from ._run import TestRun, arun, run


class Runner:
    """The ``actors_run`` fixture: runs pipelines on virtual time, keeps every run.

    Call it in a plain test (a fresh ``trio.run`` per call); ``await
    actors_run.arun(...)`` in a trio test (use ``autojump_clock`` there).
    Both take the arguments of :func:`actors.testing.run`.
    """

    def __init__(self) -> None:
        self.runs: list[TestRun] = []

    def __call__(
        self, definition: PipelineDefinition, *args: Any, **kwargs: Any
    ) -> TestRun:
        """Run synchronously on a mock clock; return the record."""
        done = run(definition, *args, **kwargs)
        self.runs.append(done)
        return done

    async def arun(
        self, definition: PipelineDefinition, *args: Any, **kwargs: Any
    ) -> TestRun:
        """Run in the current trio run; return the record. A checkpoint."""
        done = await arun(definition, *args, **kwargs)
        self.runs.append(done)
        return done


@pytest.fixture
def actors_run() -> Runner:
    """A runner on virtual time: ``actors_run(p)``, or ``await actors_run.arun(p)``."""
    return Runner()


@pytest.fixture
def recorder() -> Recorder:
    """A fresh Recorder: pass it in your executor's ``observers``."""
    return Recorder()


@pytest.fixture
def fake_llm() -> FakeLLM:
    """A fresh FakeLLM: rules with ``fake_llm.reply(pattern, text)``."""
    return FakeLLM()


@pytest.fixture
def memory_store() -> MemoryStore:
    """A fresh, empty MemoryStore: ``run(p, store=memory_store)``, then resume."""
    return MemoryStore()
