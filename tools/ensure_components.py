"""Make sure the real components the tests start are installed.

The test suite starts a ``redis-server`` on 127.0.0.1 (the shared rate-limit
backend) and Debian's headless ``chromium`` (the HTML report check) itself,
and stops them again. This installs the missing ones with apt when run as
root on Debian (as CI is); anywhere else it says what to install and fails,
so a missing component is never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

COMPONENTS = {"redis-server": "redis-server", "chromium": "chromium"}
"""Command -> Debian package."""


def main() -> int:
    """Install what is missing (apt, as root) or explain; return the exit code."""
    missing = [pkg for cmd, pkg in COMPONENTS.items() if shutil.which(cmd) is None]
    if not missing:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            f"the tests need {', '.join(missing)}: install "
            f"{' '.join(missing)} (Debian: sudo apt-get install {' '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
