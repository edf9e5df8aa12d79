"""Test your pipelines on virtual time: scripted stages, faults, exact timelines.

Example::

    from actors.testing import assert_timeline, raises, returns, run, script
    from actors.testing import with_stages

    pipeline = with_stages(
        my_pipeline,
        fetch=script(raises(ConnectionError("reset"), after=0.1), returns([1, 2])),
    )
    test_run = run(pipeline)
    assert test_run.result.success
    assert_timeline(test_run, '''
        0.00 fetch started
        0.10 fetch failed attempt=1 ConnectionError: reset
        ...
    ''', mode="subsequence")

Importing this module imports neither hypothesis nor OpenTelemetry;
:mod:`actors.testing.strategies` needs hypothesis.
"""

from __future__ import annotations

from .._util import fix_module_names as _fix_module_names
from . import faults
from ._assertions import (
    EventPattern,
    assert_cancelled_promptly,
    assert_events,
    assert_timeline,
    event,
)
from ._llm import (
    Completion,
    Failure,
    FakeLLM,
    LLMCall,
    fails,
    rate_limit,
)
from ._recorder import Recorder
from ._run import TestRun, arun, run, with_stages
from ._script import (
    Call,
    Outcome,
    ScriptedStage,
    Yields,
    blocks_sync,
    hangs,
    per_item,
    raises,
    returns,
    returns_input,
    script,
    swallows_cancel,
    yields,
)

__all__ = [
    "Call",
    "Completion",
    "EventPattern",
    "Failure",
    "FakeLLM",
    "LLMCall",
    "Outcome",
    "Recorder",
    "ScriptedStage",
    "TestRun",
    "Yields",
    "arun",
    "assert_cancelled_promptly",
    "assert_events",
    "assert_timeline",
    "blocks_sync",
    "event",
    "fails",
    "faults",
    "hangs",
    "per_item",
    "raises",
    "rate_limit",
    "returns",
    "returns_input",
    "run",
    "script",
    "swallows_cancel",
    "with_stages",
    "yields",
]

_fix_module_names(globals(), __all__)
