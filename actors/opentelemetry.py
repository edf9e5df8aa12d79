"""OpenTelemetry tracing for pipeline runs (the ``otel`` extra).

Example::

    from actors import PipelineExecutor
    from actors.opentelemetry import OpenTelemetryObserver

    executor = PipelineExecutor(observers=[OpenTelemetryObserver()])

Importing this module imports ``opentelemetry``; ``import actors`` does not.
"""

from __future__ import annotations

from ._otel import OpenTelemetryObserver, add_trace_ids
from ._util import fix_module_names as _fix_module_names

__all__ = ["OpenTelemetryObserver", "add_trace_ids"]

_fix_module_names(globals(), __all__)
