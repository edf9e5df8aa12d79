"""``python -m actors``: the same command line as the ``actors`` script."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
