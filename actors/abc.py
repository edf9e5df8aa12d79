"""Interfaces to implement: what the executor calls, and when.

:class:`Observer` receives a run's events; :class:`AttemptHook` wraps every
attempt in a context of its own (tracing makes its span current there).
Both are passed to :class:`~actors.PipelineExecutor` in ``observers``.
:class:`Store` is a checkpoint store (``PipelineExecutor(store=...)``, see
:mod:`actors.checkpoint`); :class:`Offloader` runs a stage's sync function
elsewhere (``StageDefinition(offload=...)``, see :mod:`actors.offload`).
"""

from __future__ import annotations

from ._checkpoint import Store
from ._observers import AttemptHook, Observer
from ._offloader import Offloader
from ._util import fix_module_names as _fix_module_names

__all__ = ["AttemptHook", "Observer", "Offloader", "Store"]

_fix_module_names(globals(), __all__)
