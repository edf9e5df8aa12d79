"""JSON-lines log -> records (``_records``); text (``_text``), Mermaid gantt
(``_gantt``) and HTML (``_html``) reports of them; ``actors.analysis`` is the
public face."""

from __future__ import annotations

from ._records import (
    LogReport as LogReport,
)
from ._records import (
    PauseRecord as PauseRecord,
)
from ._records import (
    RetryRecord as RetryRecord,
)
from ._records import (
    RunRecord as RunRecord,
)
from ._records import (
    StageRecord as StageRecord,
)
from ._records import (
    parse_log as parse_log,
)
from ._records import (
    read_log as read_log,
)
from ._text import render_critical_path as render_critical_path
from ._text import render_summary as render_summary
from ._timeline import TimelineFormat as TimelineFormat
from ._timeline import render_timeline as render_timeline
