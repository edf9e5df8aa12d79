"""Durable runs: keys, the JSON codec, stores and the recorder.

``_keys`` (digests, code fingerprints), ``_codec`` (JSON by declared type),
``_records`` (the checked JSON form of what a store holds), ``_store`` (the
protocol and MemoryStore), ``_file`` and ``_sqlite`` (stores on disk) and
``_recorder`` (writes a run's journal from trio, off the event loop).
"""

from ._file import FileStore as FileStore
from ._records import Entry as Entry
from ._records import RunInfo as RunInfo
from ._sqlite import SQLiteStore as SQLiteStore
from ._store import JournalContents as JournalContents
from ._store import MemoryStore as MemoryStore
from ._store import Store as Store
