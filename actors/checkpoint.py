"""Durable runs: stores that journal a run, so a later run can resume from it.

Give a store to :class:`actors.PipelineExecutor` (``store=``) or to
``execute``; see the "Durable runs" page for keys, what invalidates a result,
and the security model (JSON by declared type, never pickle, digests).
"""

from __future__ import annotations

from ._checkpoint import (
    Entry,
    FileStore,
    JournalContents,
    MemoryStore,
    RunInfo,
    SQLiteStore,
    Store,
)
from ._exceptions import UnencodableOutputError, UnknownRunError
from ._util import fix_module_names as _fix_module_names

__all__ = [
    "Entry",
    "FileStore",
    "JournalContents",
    "MemoryStore",
    "RunInfo",
    "SQLiteStore",
    "Store",
    "UnencodableOutputError",
    "UnknownRunError",
]

_fix_module_names(globals(), __all__)
