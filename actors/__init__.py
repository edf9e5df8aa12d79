"""actors: trio-native pipeline orchestration.

Declare stages and their dependencies once; each stage runs as a trio actor
that starts the moment its own inputs are ready, under one supervisor.

Layout (each group imports only from the groups before it; tests/test_layers.py
keeps it so):

1. ``_version``, ``_util``, ``_exceptions``, ``_sketch``
2. declarations and results: ``_context``, ``_results``, ``_definition``
3. ``_graph`` (build: never imports trio), ``_events``, ``_observers``, ``_logging``
4. ``_core/``: the kernel, the only code that starts tasks and opens channels
5. ``_diagram``, ``_analysis/`` (log records and reports), ``_cli/``, ``_aio``
6. the public namespaces: this facade, ``actors.analysis``, ``actors.logging``
"""

from __future__ import annotations

from ._context import PipelineContext as PipelineContext
from ._core import ItemTap as ItemTap
from ._core import LiveRun as LiveRun
from ._core import PipelineExecutor as PipelineExecutor
from ._core import Progress as Progress
from ._core import ProgressTap as ProgressTap
from ._core import TapItem as TapItem
from ._core import run as run
from ._definition import Condition as Condition
from ._definition import ExecutionPattern as ExecutionPattern
from ._definition import PipelineDefinition as PipelineDefinition
from ._definition import PipelineStage as PipelineStage
from ._definition import RetryConfig as RetryConfig
from ._definition import Stage as Stage
from ._definition import StageDefinition as StageDefinition
from ._definition import StageFunction as StageFunction
from ._definition import StreamFunction as StreamFunction
from ._definition import StreamingStage as StreamingStage
from ._diagram import render_diagram as render_diagram
from ._events import CheckpointCorrupt as CheckpointCorrupt
from ._events import CheckpointFailed as CheckpointFailed
from ._events import CheckpointSkipped as CheckpointSkipped
from ._events import ItemFinished as ItemFinished
from ._events import LimitPaused as LimitPaused
from ._events import LimitWaited as LimitWaited
from ._events import OffloadOrphaned as OffloadOrphaned
from ._events import PipelineFinished as PipelineFinished
from ._events import PipelineStarted as PipelineStarted
from ._events import StageFinished as StageFinished
from ._events import StageRestored as StageRestored
from ._events import StageRetrying as StageRetrying
from ._events import StageStarted as StageStarted
from ._events import StageUnresponsive as StageUnresponsive
from ._exceptions import ActorsError as ActorsError
from ._exceptions import PipelineValidationError as PipelineValidationError
from ._exceptions import StageContractError as StageContractError
from ._exceptions import StageTimeoutError as StageTimeoutError
from ._exceptions import StreamReplayMismatch as StreamReplayMismatch
from ._limits import RateLimit as RateLimit
from ._limits import RateLimited as RateLimited
from ._limits import retry_after as retry_after
from ._logging import LoggingObserver as LoggingObserver
from ._observers import Observer as Observer
from ._results import PipelineResult as PipelineResult
from ._results import PipelineStatus as PipelineStatus
from ._results import StageProfile as StageProfile
from ._results import StageResult as StageResult
from ._results import StageStatus as StageStatus
from ._results import TimelineEntry as TimelineEntry
from ._results import cancelled_result as cancelled_result
from ._results import failure_result as failure_result
from ._results import skipped_result as skipped_result
from ._results import success_result as success_result
from ._util import fix_module_names as _fix_module_names
from ._version import __version__ as __version__

__all__ = [
    "ActorsError",
    "CheckpointCorrupt",
    "CheckpointFailed",
    "CheckpointSkipped",
    "Condition",
    "ExecutionPattern",
    "ItemFinished",
    "ItemTap",
    "LimitPaused",
    "LimitWaited",
    "LiveRun",
    "LoggingObserver",
    "Observer",
    "OffloadOrphaned",
    "PipelineContext",
    "PipelineDefinition",
    "PipelineExecutor",
    "PipelineFinished",
    "PipelineResult",
    "PipelineStage",
    "PipelineStarted",
    "PipelineStatus",
    "PipelineValidationError",
    "Progress",
    "ProgressTap",
    "RateLimit",
    "RateLimited",
    "RetryConfig",
    "Stage",
    "StageContractError",
    "StageDefinition",
    "StageFinished",
    "StageFunction",
    "StageProfile",
    "StageRestored",
    "StageResult",
    "StageRetrying",
    "StageStarted",
    "StageStatus",
    "StageTimeoutError",
    "StageUnresponsive",
    "StreamFunction",
    "StreamReplayMismatch",
    "StreamingStage",
    "TapItem",
    "TimelineEntry",
    "cancelled_result",
    "failure_result",
    "render_diagram",
    "retry_after",
    "run",
    "skipped_result",
    "success_result",
]


_fix_module_names(globals(), __all__)
