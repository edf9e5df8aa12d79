"""Benchmarks for actors, run with ``python -m bench``.

Every measurement runs the executor and a hand-written trio baseline in the
same process, interleaved, and reports medians and their ratio. Nothing here
is imported by the library or by the tests.
"""

from __future__ import annotations
