"""Offload backends: run a stage's sync function off the event loop.

The :class:`Offloader` protocol and the validation the graph builder calls
are declarations, in ``actors/_offloader.py``; here, ``_orphans`` holds the
orphan reporter the attempt loop installs, and ``_thread``, ``_process`` and
``_dask`` are the three backends. The process
and Dask backends import trio-parallel and distributed only when used.
"""

from __future__ import annotations

from ._dask import DaskOffloader as DaskOffloader
from ._dask import to_dask as to_dask
from ._orphans import call_offloaded as call_offloaded
from ._orphans import reporting_orphans as reporting_orphans
from ._orphans import set_orphan_reporter as set_orphan_reporter
from ._process import ProcessOffloader as ProcessOffloader
from ._process import to_process as to_process
from ._thread import ThreadOffloader as ThreadOffloader
from ._thread import to_thread as to_thread
