"""The kernel: the only code that starts tasks and opens channels.

``_state`` (what the supervisor and its actors share), ``_live`` (what the
caller of ``open_run`` taps), ``_wiring`` (the
channels), ``_attempts`` (the one caller of user code), ``_fan_out``,
``_streaming``, ``_actor`` and ``_supervisor``, each importing only the ones
before it.
"""

from ._live import ItemTap as ItemTap
from ._live import LiveRun as LiveRun
from ._live import Progress as Progress
from ._live import ProgressTap as ProgressTap
from ._live import TapItem as TapItem
from ._supervisor import PipelineExecutor as PipelineExecutor
from ._supervisor import run as run
