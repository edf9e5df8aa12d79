"""The kernel: the only code that starts tasks and opens channels.

``_state`` (what the supervisor and its actors share), ``_wiring`` (the
channels), ``_attempts`` (the one caller of user code), ``_fan_out``,
``_streaming``, ``_actor`` and ``_supervisor``, each importing only the ones
before it.
"""

from ._supervisor import PipelineExecutor as PipelineExecutor
from ._supervisor import run as run
