"""Offload backends: run a stage's sync function off the event loop.

``_protocol`` holds the :class:`Offloader` protocol, the orphan reporter the
attempt loop installs, and the validation the graph builder calls;
``_thread``, ``_process`` and ``_dask`` are the three backends. The process
and Dask backends import trio-parallel and distributed only when used.
"""

from __future__ import annotations

from ._dask import DaskOffloader as DaskOffloader
from ._dask import to_dask as to_dask
from ._process import ProcessOffloader as ProcessOffloader
from ._process import to_process as to_process
from ._protocol import Offloader as Offloader
from ._protocol import OnOrphaned as OnOrphaned
from ._protocol import offload_problem as offload_problem
from ._protocol import reporting_orphans as reporting_orphans
from ._thread import ThreadOffloader as ThreadOffloader
from ._thread import to_thread as to_thread
