"""Interfaces to implement: what the executor calls, and when.

:class:`Observer` receives a run's events; :class:`AttemptHook` wraps every
attempt in a context of its own (tracing makes its span current there).
Both are passed to :class:`~actors.PipelineExecutor` in ``observers``.
"""

from __future__ import annotations

from ._observers import AttemptHook, Observer
from ._util import fix_module_names as _fix_module_names

__all__ = ["AttemptHook", "Observer"]

_fix_module_names(globals(), __all__)
